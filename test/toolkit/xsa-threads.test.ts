// The worker-thread half of the advisory races (gnttab xsa): each runs on
// real threads until its window has been hit the stated number of times; no
// attempt may break the advisory's expectation and the invariants must hold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runXsa, XSA_CATALOGUE } from '../../src/index.ts';

const HITS = Number(process.env.GNTTAB_XSA_HITS ?? 10);

describe('gnttab xsa: races on worker threads', { timeout: 600_000 }, () => {
  for (const e of XSA_CATALOGUE) {
    if (e.race !== true) continue;
    it(`XSA-${e.id}: ${e.title}`, async () => {
      const r = await runXsa(e.id, { hits: HITS });
      assert.deepEqual(
        r.checks.filter((c) => !c.ok),
        [],
        'failed checks',
      );
      assert.equal(r.outcome, 'safe');
      for (const race of r.races.filter((x) => x.mode === 'threads')) {
        assert.ok(race.hits >= HITS, `hit ${race.hits} times, wanted ${HITS}`);
        assert.equal(race.violations, 0);
      }
    });
  }
});
