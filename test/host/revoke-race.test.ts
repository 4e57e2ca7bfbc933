// On real worker threads: a backend maps and unmaps a grant in a tight loop
// while the frontend tries to end access (reference xen-grant-tables.md §13
// races 1, 2, 4; guest-side.md §3.4, §3.6; XSA-396). A grant is never reported
// ended while mapped, a deferred end completes once the backend unmaps, and the
// invariants hold at the end.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WorkerHost } from '../../src/host/worker-host.ts';
import { HARNESS_WORDS, W } from '../fixtures/race-harness.ts';

const ROUNDS = Number(process.env.GNTTAB_RACE_ROUNDS ?? 2000);

describe('revocation racing a mapping backend, in worker threads', () => {
  let host: WorkerHost;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 32 });
  });
  after(async () => {
    await host.shutdown();
  });

  for (const version of [1, 2] as const) {
    it(`v${version}: ${ROUNDS} rounds, never ended while mapped; deferred end completes after unmap`, async (t) => {
      const back = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const front = await host.createDomain({ kind: version === 1 ? 'hvm' : 'pv', memoryKiB: 1024 });
      const sab = new SharedArrayBuffer(HARNESS_WORDS * 4);
      const w = new Int32Array(sab);
      w[W.ref] = -1;
      w[W.frontendDomid] = front.domid;
      const backend = host.spawn(back, new URL('../fixtures/race-backend.ts', import.meta.url), { sab });
      const r = (await host.spawn(front, new URL('../fixtures/race-frontend.ts', import.meta.url), {
        sab,
        version,
        rounds: ROUNDS,
        backend: back.domid,
      })) as { rounds: number; deferredDone: boolean; pageFreed: boolean };
      await backend;
      t.diagnostic(
        `maps ${Atomics.load(w, W.maps)}, map failures ${Atomics.load(w, W.mapFailures)}, refused revokes ${Atomics.load(w, W.busy)}, ends ${Atomics.load(w, W.ends)}`,
      );
      assert.equal(
        Atomics.load(w, W.violations),
        0,
        'a grant was reported ended while the backend held a mapping',
      );
      assert.equal(Atomics.load(w, W.ends), ROUNDS + 0);
      assert.ok(Atomics.load(w, W.maps) > 0, 'the backend never managed to map: the race was not exercised');
      assert.ok(Atomics.load(w, W.busy) > 0, 'no revoke was ever refused: the race was not exercised');
      assert.equal(r.deferredDone, true, 'the deferred end did not complete after the backend unmapped');
      assert.equal(r.pageFreed, true, 'the page was not released after the deferred end');
      assert.deepEqual(await host.checkInvariants(), []);
      await host.destroyDomain(front.domid);
      await host.destroyDomain(back.domid);
      assert.deepEqual(await host.checkInvariants(), []);
    });
  }
});
