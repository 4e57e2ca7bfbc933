// The test runner (test/run.mjs) as a developer aims it: folders and files,
// --name patterns, --fast; and its guards (no test ran, a test file not listed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { slowFiles, testFiles } from '../files.mjs';
import { root } from '../helpers/cli.ts';

function runTests(args: string[]) {
  const r = spawnSync(process.execPath, ['test/run.mjs', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300_000,
  });
  const m = /gnttab tests: (\d+) run, (\d+) passed, (\d+) failed(?:, (\d+) skipped)? \((\d+) files/.exec(
    r.stdout,
  );
  return {
    code: r.status,
    out: r.stdout,
    err: r.stderr,
    run: Number(m?.[1] ?? -1),
    skipped: Number(m?.[4] ?? 0),
    files: Number(m?.[5] ?? -1),
  };
}

describe('test/run.mjs', () => {
  it('runs every test file of a folder', () => {
    const r = runTests(['test/abi']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.files, testFiles.filter((f) => f.startsWith('test/abi/')).length);
    assert.ok(r.run > 10, `${r.run} tests ran`);
    assert.match(r.out, /constants\.test\.ts|golden|GNTST/);
  });

  it('--name runs only the tests whose name matches, and fails when none does', () => {
    const all = runTests(['test/abi/event-channel.test.ts']);
    const some = runTests(['test/abi/event-channel.test.ts', '--name', 'EVTCHNOP']);
    assert.equal(all.code, 0, all.err);
    assert.equal(some.code, 0, some.err);
    assert.ok(some.run - some.skipped > 0);
    assert.ok(some.run - some.skipped < all.run, `${some.run - some.skipped} of ${all.run}`);
    const none = runTests(['test/abi/event-channel.test.ts', '--name', 'no test is called this']);
    assert.equal(none.code, 1);
    assert.match(none.err, /zero tests ran/);
  });

  it('a full run refuses a test file that test/files.mjs does not list; a bad target is a usage error', () => {
    const stray = join(root, 'test', 'abi', 'zz-unlisted.test.ts');
    writeFileSync(stray, "import { it } from 'node:test';\nit('x', () => {});\n");
    try {
      const r = runTests(['--fast', '--name', 'nothing']);
      assert.equal(r.code, 1);
      assert.match(r.err, /not listed in test\/files\.mjs[\s\S]*test\/abi\/zz-unlisted\.test\.ts/);
    } finally {
      rmSync(stray, { force: true });
    }
    assert.equal(runTests(['test/nope']).code, 2);
    assert.equal(runTests(['--bogus']).code, 2);
  });

  it('--fast leaves out the slow files, all of them listed', () => {
    for (const f of slowFiles) assert.ok(testFiles.includes(f), `${f} is in the list`);
    assert.ok(testFiles.length - slowFiles.length > 10);
  });
});
