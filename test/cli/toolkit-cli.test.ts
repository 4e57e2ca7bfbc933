// `gnttab explore` and `gnttab attack` run as a user runs them: subprocesses
// through bin/gnttab.mjs, on the shipped examples, on a user's own .ts module
// outside the checkout, with --replay, --json and usage errors (exit 2).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { gnttab, root } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gnttab-toolkit-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const racy = 'examples/racy-revoke/scenario.ts';

describe('gnttab explore (subprocess)', () => {
  it('finds the racy revoke: exit 1, the failure, a replay token; --replay reproduces it; --json says the same', () => {
    const r = gnttab(['explore', racy, '--schedules', '500']);
    assert.equal(r.code, 1, r.err);
    assert.match(r.out, /^FAILED \(check\) in schedule \d+, \d+ steps:$/m);
    assert.match(r.out, /the backend read the secret/);
    const token = /^replay: --replay (\S+)$/m.exec(r.out)?.[1];
    assert.ok(token !== undefined, r.out);
    const trace = r.out.slice(r.out.indexOf('trace:'));

    const again = gnttab(['explore', racy, '--replay', token]);
    assert.equal(again.code, 1, again.err);
    assert.equal(again.out.slice(again.out.indexOf('trace:')), trace);
    assert.doesNotMatch(again.out, /took a different number of steps/);

    const json = gnttab(['explore', racy, '--replay', token, '--json']);
    assert.equal(json.code, 1, json.err);
    const j = JSON.parse(json.out) as { failure: { kind: string; token: string; trace: unknown[] } };
    assert.equal(j.failure.kind, 'check');
    assert.equal(j.failure.token, token);
    assert.ok(j.failure.trace.length > 0);
  });

  it("explores a user's .ts module outside the checkout (TypeScript syntax, loaded through tsx): the real driver passes", () => {
    // A user's ESM project of its own (package.json "type": "module").
    const proj = join(dir, 'my-project');
    mkdirSync(proj);
    writeFileSync(join(proj, 'package.json'), '{ "name": "my-project", "type": "module" }\n');
    const file = join(proj, 'my-scenario.ts');
    const lib = pathToFileURL(join(root, 'src', 'index.ts')).href;
    writeFileSync(
      file,
      [
        `import { defineScenario, revokeScenario, type Scenario } from '${lib}';`,
        'interface Mine { name: string }',
        "const mine: Mine = { name: 'my-revoke' };",
        'const s: Scenario = revokeScenario(undefined, mine.name);',
        'export default defineScenario(s);',
        '',
      ].join('\n'),
    );
    const r = gnttab(['explore', file, '--schedules', '30', '--json']);
    assert.equal(r.code, 0, r.err + r.out);
    const j = JSON.parse(r.out) as { failure: unknown; schedules: number; scenario: string };
    assert.equal(j.failure, null);
    assert.equal(j.schedules, 30);
    assert.equal(j.scenario, 'my-revoke');
  });

  it('usage errors exit 2 and say what is wrong', () => {
    const none = gnttab(['explore']);
    assert.equal(none.code, 2);
    assert.match(none.err, /missing required argument 'scenario'/);
    const bad = gnttab(['explore', racy, '--schedules', 'many']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /expected a whole number/);
  });
});

describe('gnttab attack (subprocess)', () => {
  it('reports the leaky backend example: exit 1, leaked-mappings, and how to run the same moves again', () => {
    const r = gnttab([
      'attack',
      'examples/attack/leaky-backend.ts',
      '--as',
      'frontend',
      '--moves',
      '60',
      '--seed',
      '3',
    ]);
    assert.equal(r.code, 1, r.err + r.out);
    assert.match(r.out, /^FOUND 1 problem:$/m);
    assert.match(r.out, /leaked-mappings: 1 foreign mapping\(s\) still held/);
    assert.match(r.out, /the same moves again:\n {2}gnttab attack \S+leaky-backend\.ts --as frontend/);
    assert.deepEqual(
      r.out.split('\n').filter((l) => l.length > 80),
      [],
    );
  });

  it('gnttab’s own ring frontend against an attacking backend: exit 0, --json with the moves', () => {
    const r = gnttab(['attack', 'ring', '--as', 'backend', '--moves', '60', '--seed', '2', '--json']);
    assert.equal(r.code, 0, r.err + r.out);
    const j = JSON.parse(r.out) as {
      ok: boolean;
      findings: unknown[];
      log: { action: string }[];
      attacker: { end: string };
      victimOutcome: { status: string };
    };
    assert.equal(j.ok, true);
    assert.deepEqual(j.findings, []);
    assert.equal(j.attacker.end, 'died');
    assert.equal(j.victimOutcome.status, 'returned');
    assert.ok(j.log.some((e) => e.action === 'connect'));
  });

  it('usage errors exit 2: no --as, no such module, a bad duration; --help fits 80 columns', () => {
    const noSide = gnttab(['attack', 'ring']);
    assert.equal(noSide.code, 2);
    assert.match(noSide.err, /required option '--as <side>'/);
    const noFile = gnttab(['attack', 'no-such-module.ts', '--as', 'frontend']);
    assert.equal(noFile.code, 2);
    assert.match(noFile.err, /no such module: no-such-module\.ts/);
    const badTime = gnttab(['attack', 'ring', '--as', 'frontend', '--time', 'soon']);
    assert.equal(badTime.code, 2);
    assert.match(badTime.err, /a duration/);
    const help = gnttab(['attack', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /Examples:/);
    assert.deepEqual(
      help.out.split('\n').filter((l) => l.length > 80),
      [],
    );
  });
});
