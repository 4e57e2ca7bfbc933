// gnttab xsa list / run, as a user runs them: a subprocess through bin/gnttab.mjs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gnttab } from '../helpers/cli.ts';

describe('gnttab xsa', () => {
  it('list: every advisory in 80 columns, runnable or with its reason; --json has the same entries', () => {
    const t = gnttab(['xsa', 'list']);
    assert.equal(t.code, 0, t.err);
    for (const line of t.out.split('\n')) assert.ok(line.length <= 80, `too wide: ${line}`);
    assert.match(t.out, /^XSA-18 {2}2012 run {2}GNTTABOP_swap_grant_ref/m);
    assert.match(t.out, /^XSA-268 2018 n\/a/m);
    assert.match(t.out, /not applicable: Arm only/);
    // A worker race that cannot hit its window yet says why: XSA-218's two
    // unmaps are two vCPUs of one domain, and a WorkerHost runs one per domain.
    assert.match(t.out, /^XSA-218 .*\n {6}worker-thread race needs the SMP hypervisor \(issue 8/m);
    // The toolstack's destroy (XSA-236) and transfer (XSA-73) run beside hypercalls: no such line.
    assert.doesNotMatch(t.out, /^XSA-(236|73) .*\n {6}worker-thread race needs/m);
    const j = JSON.parse(gnttab(['xsa', 'list', '--json']).out) as {
      id: number;
      runnable: boolean;
      notApplicable?: string;
      threadsNeed?: string;
    }[];
    assert.match(j.find((e) => e.id === 218)?.threadsNeed ?? '', /two vCPU threads/);
    // XSA-501's copy and set_version run side by side, as do XSA-236's destroy
    // and copy and XSA-287's transfer and map: their races run for real.
    for (const id of [501, 236, 287])
      assert.equal(j.find((e) => e.id === id)?.threadsNeed, undefined, `XSA-${id}`);
    assert.ok(j.some((e) => e.id === 218 && e.runnable));
    assert.ok(j.some((e) => e.id === 284 && !e.runnable && e.notApplicable !== undefined));
  });

  it('run: setup, steps with statuses, expectation, checks, invariants and the result; exit 0 when safe', () => {
    const t = gnttab(['xsa', 'run', '18', 'XSA-382']);
    assert.equal(t.code, 0, t.err);
    for (const line of t.out.split('\n')) assert.ok(line.length <= 80, `too wide: ${line}`);
    assert.match(t.out, /^XSA-18: swap_grant_ref did not check its references$/m);
    assert.match(t.out, /swap_grant_ref\(ref_a 5000, ref_b 9\) -> rc 0, bad_gntref/);
    assert.match(t.out, /get_status_frames\(nr_frames 2, count 1\) -> general_error/);
    assert.match(t.out, /^expectation:$/m);
    assert.match(t.out, /^invariants: all hold$/m);
    assert.match(t.out, /^2 scenarios: 2 safe$/m);
    assert.match(t.err, /\[1\/2\] XSA-18 \.\.\. safe/);
  });

  it('run --json: one result per scenario, races counted on threads and as an interleaving', () => {
    const t = gnttab(['xsa', 'run', '295', '--json', '--hits', '3']);
    assert.equal(t.code, 0, t.err);
    const [r] = JSON.parse(t.out) as {
      id: number;
      outcome: string;
      races: { mode: string; hits: number; target: number }[];
    }[];
    assert.equal(r?.id, 295);
    assert.equal(r?.outcome, 'safe');
    assert.deepEqual(
      r?.races.map((x) => x.mode),
      ['interleaving', 'threads'],
    );
    assert.ok(r!.races[1]!.hits >= 3);
  });

  it('usage errors exit 2 and say what to do: unknown advisory, not applicable, bad --hits', () => {
    const u = gnttab(['xsa', 'run', '999']);
    assert.equal(u.code, 2);
    assert.match(u.err, /no advisory 999 in the catalogue; see `gnttab xsa list`/);
    const n = gnttab(['xsa', 'run', '284']);
    assert.equal(n.code, 2);
    assert.match(n.err, /XSA-284 is not applicable: needs machine frames/);
    assert.equal(gnttab(['xsa', 'run', '18', '--hits', '0']).code, 2);
    assert.equal(gnttab(['xsa', 'run']).code, 2);
  });
});
