// The hypercall lock (src/xen/xen-globals.ts) on real worker threads: shared
// holders are inside Xen together, an exclusive taker waits for them to
// drain, and takers pass the gate in the order they came (fair, as Xen's
// ticket locks), so a stream of shared hypercalls cannot starve the toolstack.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrivatePages } from '../../src/xen/private-pages.ts';
import { XenGlobals } from '../../src/xen/xen-globals.ts';
import { ctlEntered, ctlRelease, type HypercallLockWorkerData } from '../fixtures/hypercall-lock-words.ts';
import { runFixture } from '../helpers/worker.ts';

const entry = new URL('../fixtures/hypercall-lock-worker.ts', import.meta.url).href;

function setup() {
  const pool = PrivatePages.create(8);
  const globals = XenGlobals.create(pool);
  const lock = new XenGlobals(pool, globals, pool.policy).hypercallLock;
  const control = new SharedArrayBuffer(64 * 4);
  const ctl = new Int32Array(control);
  const start = (id: number, role: HypercallLockWorkerData['role']) =>
    runFixture<{ id: number }>({
      entry,
      pool: pool.sab,
      globals,
      control,
      id,
      role,
    } as HypercallLockWorkerData);
  return { lock, ctl, start };
}

/** Waits until `cond` holds; fails after 20 s (a thread that never gets in is the failure). */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 20_000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(cond(), `never: ${what}`);
}

describe('the hypercall lock, on worker threads', () => {
  it('two shared holders are inside at once', async () => {
    const { lock, ctl, start } = setup();
    const a = start(0, 'shared-hold');
    await until('the first shared holder is in', () => Atomics.load(ctl, ctlEntered(0)) !== 0);
    const b = start(1, 'shared');
    await until(
      'a second shared holder gets in beside the first',
      () => Atomics.load(ctl, ctlEntered(1)) !== 0,
    );
    assert.equal(Atomics.load(ctl, ctlRelease(0)), 0, 'the first still holds it');
    await b;
    Atomics.store(ctl, ctlRelease(0), 1);
    Atomics.notify(ctl, ctlRelease(0));
    await a;
    assert.equal(lock.sharedHolders, 0);
    assert.equal(lock.queued, 0);
  });

  it('an exclusive taker waits for the shared holder to drain, and a later shared taker waits behind it', async () => {
    const { lock, ctl, start } = setup();
    const a = start(0, 'shared-hold');
    await until('the shared holder is in', () => Atomics.load(ctl, ctlEntered(0)) !== 0);
    const w = start(1, 'exclusive');
    await until('the exclusive taker waits for the drain', () => lock.draining);
    const c = start(2, 'shared');
    await until('the later shared taker queues at the gate', () => lock.queued === 2);
    assert.equal(
      Atomics.load(ctl, ctlEntered(1)),
      0,
      'the exclusive taker is not in while a shared holder is',
    );
    assert.equal(
      Atomics.load(ctl, ctlEntered(2)),
      0,
      'the later shared taker does not pass the exclusive one',
    );
    Atomics.store(ctl, ctlRelease(0), 1);
    Atomics.notify(ctl, ctlRelease(0));
    await Promise.all([a, w, c]);
    // Entry order: the shared holder (1), then the exclusive taker (2), then the later shared one (3).
    assert.deepEqual(
      [ctlEntered(0), ctlEntered(1), ctlEntered(2)].map((i) => Atomics.load(ctl, i)),
      [1, 2, 3],
    );
    assert.equal(lock.sharedHolders, 0);
    assert.equal(lock.queued, 0);
  });
});
