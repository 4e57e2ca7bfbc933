#!/usr/bin/env node
// The `gnttab` command. In a source checkout (src/ beside bin/, as in a clone
// after `npm ci`) it runs the TypeScript sources through tsx, so an old dist/
// never hides an edit; installed from the package (no src/), it runs dist/.
// GNTTAB_USE_DIST=1 runs dist/ even in a checkout (to test the build).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const sources = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const useDist = process.env.GNTTAB_USE_DIST === '1' || !existsSync(sources);

if (useDist) {
  if (!existsSync(built)) {
    process.stderr.write(`gnttab: ${built} is missing; run \`npm run build\` first\n`);
    process.exit(1);
  }
  const mod = await import(new URL('../dist/cli/main.js', import.meta.url).href);
  await mod.main(process.argv);
} else if (!process.execArgv.includes('--conditions=gnttab-source')) {
  // Scenarios and guests import 'gnttab': in a checkout that must be the sources
  // too (the `gnttab-source` export condition), in this thread and in every worker, so
  // run again with the condition set (workers inherit execArgv).
  // The child gets a terminal's SIGINT itself (same process group); a SIGTERM or
  // SIGHUP sent to this process alone is passed on, so the command never outlives it.
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      '--conditions=gnttab-source',
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit' },
  );
  process.on('SIGINT', () => {});
  for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    process.exit(
      code ?? (signal === 'SIGINT' ? 130 : signal !== null ? 128 + (constants.signals[signal] ?? 0) : 1),
    );
  });
} else {
  const { register } = await import('tsx/esm/api');
  register();
  // src/host/user-module.ts then adds only its ESM-for-.ts hook for a user's module.
  globalThis[Symbol.for('gnttab.tsxRegistered')] = true;
  const mod = await import(new URL('../src/cli/main.ts', import.meta.url).href);
  await mod.main(process.argv);
}
