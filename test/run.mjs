#!/usr/bin/env node
// Runs the test suite: node:test through tsx over an explicit list of files.
// Node 20's `node --test` neither finds .ts files nor expands globs, and reports
// "0 tests, exit 0" when given nothing, so the list is explicit (test/files.mjs),
// a full run fails when a *.test.ts exists that the list leaves out, and a run
// in which no test ran fails.
//
//   node test/run.mjs                         every listed file
//   node test/run.mjs test/abi test/xen/copy.test.ts   files and folders
//   node test/run.mjs --name 'setup_table'    only tests whose name matches (a regex)
//   node test/run.mjs --fast                  leave out the slow files (workers, the CLI)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { slowFiles, testFiles } from './files.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

function usage(msg) {
  console.error(
    `test/run.mjs: ${msg}\nusage: node test/run.mjs [--fast] [--name <regex>]... [file or folder]...`,
  );
  process.exit(2);
}

/** Every *.test.ts under `dir`, as paths relative to the root. */
function onDisk(dir) {
  const out = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...onDisk(p));
    else if (e.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

const names = [];
const passThrough = [];
const targets = [];
let fast = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--fast') fast = true;
  else if (a === '--name') {
    if (argv[i + 1] === undefined) usage('--name needs a pattern');
    names.push(argv[++i]);
  } else if (a.startsWith('--name=')) names.push(a.slice('--name='.length));
  else if (a.startsWith('--test-')) passThrough.push(a);
  else if (a.startsWith('-')) usage(`unknown option ${a}`);
  else targets.push(a);
}

const unlisted = onDisk('test').filter((f) => !testFiles.includes(f));
let files;
if (targets.length === 0) {
  if (unlisted.length > 0) {
    console.error(
      `test/run.mjs: test files not listed in test/files.mjs (add them):\n  ${unlisted.join('\n  ')}`,
    );
    process.exit(1);
  }
  files = testFiles;
} else {
  files = [];
  for (const t of targets) {
    const rel = relative(root, resolve(t));
    let st;
    try {
      st = statSync(join(root, rel));
    } catch {
      usage(`no such file or folder: ${t}`);
    }
    const found = st.isDirectory() ? onDisk(rel) : [rel];
    if (found.length === 0) usage(`no *.test.ts under ${t}`);
    for (const f of found) if (!files.includes(f)) files.push(f);
  }
  const missing = files.filter((f) => unlisted.includes(f));
  if (missing.length > 0)
    console.error(`test/run.mjs: note: not listed in test/files.mjs: ${missing.join(', ')}`);
}
if (fast) files = files.filter((f) => !slowFiles.includes(f));
if (files.length === 0) usage('no test files to run');

const dir = mkdtempSync(join(tmpdir(), 'gnttab-test-'));
const tap = join(dir, 'report.tap');
const res = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    // Resolve `import ... from 'gnttab'` (the package root) to the TypeScript sources.
    '--conditions=gnttab-source',
    // A fixed fast-check seed unless GNTTAB_FC_SEED says otherwise.
    '--import',
    './test/fc-setup.mjs',
    '--test',
    // A hang fails its test instead of running into CI's time limit (10 minutes
    // per test or suite; GNTTAB_TEST_TIMEOUT_MS changes it).
    `--test-timeout=${process.env.GNTTAB_TEST_TIMEOUT_MS ?? 600000}`,
    ...names.map((n) => `--test-name-pattern=${n}`),
    ...passThrough,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ],
  // Xen's lock-order checker (src/xen/locks.ts) is on for the whole suite. A run
  // started from inside a test (test/cli/run-tests.test.ts) is a run of its own.
  {
    cwd: root,
    stdio: 'inherit',
    env: { GNTTAB_LOCK_DEBUG: '1', ...process.env, NODE_TEST_CONTEXT: undefined },
  },
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
const skipped = count('skipped');
// A test that ran into --test-timeout is "cancelled", neither passed nor failed.
const cancelled = count('cancelled');
console.log(
  `\ngnttab tests: ${tests} run, ${pass} passed, ${fail} failed${cancelled > 0 ? `, ${cancelled} cancelled (timed out)` : ''}${skipped > 0 ? `, ${skipped} skipped` : ''} (${files.length} files, node ${process.version})`,
);
if (tests - skipped === 0) {
  console.error('test/run.mjs: zero tests ran; treating that as a failure');
  process.exit(1);
}
process.exit(res.status === 0 && fail === 0 && cancelled === 0 ? 0 : 1);
