#!/usr/bin/env node
// Runs the test suite: node:test through tsx over an explicit list of files.
// Node 20's `node --test` neither finds .ts files nor expands globs, and reports
// "0 tests, exit 0" when given nothing, so the list is explicit and a guard fails
// the run when no test ran.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testFiles } from './files.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const only = process.argv.slice(2);
const files = only.length > 0 ? only : testFiles;
if (files.length === 0) {
  console.error('test/run.mjs: no test files listed in test/files.mjs');
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'gnttab-test-'));
const tap = join(dir, 'report.tap');
const res = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    // Resolve `import ... from 'gnttab'` (the package root) to the TypeScript sources.
    '--conditions=source',
    // A fixed fast-check seed unless GNTTAB_FC_SEED says otherwise.
    '--import',
    './test/fc-setup.mjs',
    '--test',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  // Xen's lock-order checker (src/xen/locks.ts) is on for the whole suite.
  { cwd: root, stdio: 'inherit', env: { GNTTAB_LOCK_DEBUG: '1', ...process.env } },
);
let text = '';
try {
  text = readFileSync(tap, 'utf8');
} catch {
  // no report at all: counted as zero tests below
}
rmSync(dir, { recursive: true, force: true });
const count = (name) => Number(text.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
const tests = count('tests');
const pass = count('pass');
const fail = count('fail');
console.log(`\ngnttab tests: ${tests} run, ${pass} passed, ${fail} failed (${files.length} files)`);
if (tests === 0) {
  console.error('test/run.mjs: zero tests ran; treating that as a failure');
  process.exit(1);
}
process.exit(res.status === 0 && fail === 0 ? 0 : 1);
