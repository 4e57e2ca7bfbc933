// Checks the JSON line printed by readme-host.mjs (stdin).
import { readFileSync } from 'node:fs';

const got = JSON.parse(readFileSync(0, 'utf8'));
const want = { setup: 0, va: 0, map: 0, status: 0, handle: 0, bytes: 'hello, backend!!', invariants: [] };
if (JSON.stringify(got) !== JSON.stringify(want)) {
  console.error(`README host example: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  process.exit(1);
}
console.log('README host example: ok');
