// The schedule explorer: it finds the racy revoke of examples/racy-revoke (a
// plain store where Linux's gnttab_end_foreign_access_ref_v1 does a cmpxchg),
// a replay token reproduces the failure and its trace exactly, and the real
// driver (Gnttab, layouts v1 and v2) survives 10 000 PCT schedules and every
// DFS schedule with up to two preemptions.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explore } from '../../src/toolkit/explore/index.ts';
import { decodeToken, encodeToken, TokenError } from '../../src/toolkit/explore/token.ts';

const racy = new URL('../../examples/racy-revoke/scenario.ts', import.meta.url);
const real = new URL('../../src/toolkit/explore/scenarios/revoke.ts', import.meta.url);
const SCHEDULES = Number(process.env.GNTTAB_EXPLORE_SCHEDULES ?? 10_000);

describe('schedule explorer', () => {
  it('PCT finds the racy revoke within 500 schedules (seed 1), and the token replays it', async () => {
    const r = await explore({ scenario: racy, schedules: 500, seed: 1 });
    const f = r.failure;
    assert.ok(f !== null, `no failure in ${r.schedules} schedules`);
    assert.equal(f.kind, 'check');
    assert.match(f.message, /backend read the secret/);
    const text = f.trace.map((t) => t.text);
    // The window: the frontend reads the flags, the backend maps (Xen sets
    // GTF_writing), then the frontend's plain store wipes the flags.
    const load = text.findIndex((t) => /^d1 load16 flags of d1's ref 8$/.test(t));
    const map = text.findIndex(
      (t, i) => i > load && /^d0 hypercall map_grant_ref\(ref 8 of d1\) = 0, GNTST_okay$/.test(t),
    );
    const store = text.findIndex((t, i) => i > map && /^d1 store16 flags of d1's ref 8$/.test(t));
    assert.ok(load >= 0 && map > load && store > map, `no load/map/store window in:\n${text.join('\n')}`);
    assert.ok(text.some((t) => /^ {2}xen cmpxchg32 flags of d1's ref 8$/.test(t)));

    const again = await explore({ scenario: racy, schedules: 500, seed: 1 });
    assert.equal(again.failure?.schedule, f.schedule, 'the same seed must find it at the same schedule');
    assert.equal(again.failure?.token, f.token);

    const rep = await explore({ scenario: racy, replay: f.token });
    assert.equal(rep.schedules, 1);
    assert.equal(rep.reproduced, true);
    assert.equal(rep.failure?.kind, 'check');
    assert.equal(rep.failure?.message, f.message);
    assert.deepEqual(
      rep.failure?.trace.map((t) => t.text),
      text,
    );
  });

  it('DFS with one preemption finds the racy revoke', async () => {
    const r = await explore({ scenario: racy, schedules: 200, strategy: 'dfs', depth: 1 });
    assert.equal(r.failure?.kind, 'check');
  });

  it('a token for another guest count, or garbage, is refused with a reason', async () => {
    await assert.rejects(explore({ scenario: racy, replay: 'x1.3.10.AAE' }), /3 guests, the scenario has 2/);
    assert.throws(() => decodeToken('nonsense'), TokenError);
    const t = { guests: 2, steps: 9, choices: [0, 0, 1, 1, 1, 0] };
    assert.deepEqual(decodeToken(encodeToken(t)), t);
  });

  for (const version of [1, 2] as const) {
    it(`the real driver (v${version}) survives every DFS schedule with 2 preemptions`, async () => {
      const r = await explore({
        scenario: real,
        params: { version },
        strategy: 'dfs',
        depth: 2,
        schedules: 100_000,
      });
      assert.equal(r.failure, null, r.failure?.message);
      assert.equal(r.complete, true);
      assert.ok(r.schedules > 10, `only ${r.schedules} schedules`);
    });

    it(`the real driver (v${version}) survives ${SCHEDULES} PCT schedules`, async (t) => {
      const r = await explore({ scenario: real, params: { version }, schedules: SCHEDULES, seed: 1 });
      t.diagnostic(
        `${r.schedules} schedules in ${Math.round(r.elapsedMs)} ms, longest ${r.longestSchedule} steps`,
      );
      assert.equal(r.failure, null, r.failure?.message);
      assert.equal(r.schedules, SCHEDULES);
    });
  }
});
