// Checks the JSON of `gnttab demo --size 1M --json` read from stdin.
import { readFileSync } from 'node:fs';

const j = JSON.parse(readFileSync(0, 'utf8'));
const problems = [];
if (j.ok !== true) problems.push(`ok is ${j.ok}`);
if (j.bytesReceived !== 1024 * 1024) problems.push(`bytesReceived is ${j.bytesReceived}`);
if (j.mismatches !== 0) problems.push(`${j.mismatches} mismatches`);
if (j.leftovers?.length !== 0) problems.push(`leftovers: ${JSON.stringify(j.leftovers)}`);
if (j.invariants?.length !== 0) problems.push(`invariants: ${JSON.stringify(j.invariants)}`);
if (!(j.tables?.length >= 2)) problems.push('fewer than two grant tables');
if (problems.length > 0) {
  console.error(`demo JSON: ${problems.join('; ')}`);
  process.exit(1);
}
console.log(`demo JSON: ok, ${j.bytesReceived} bytes checked, ${j.tables.length} tables`);
