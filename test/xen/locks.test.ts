// Xen's locks (src/xen/locks.ts) on real worker threads: mutual exclusion under
// contention, reader/writer exclusion and writer preference (xen/rwlock.h
// _can_read_lock), and the debug checker's lock order (xen-locking.md §2).
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { WaitPolicy } from '../../src/machine/wait-policy.ts';
import {
  assertNoLocksHeld,
  heldLocks,
  LOCK_CLASSES,
  LOCK_WORDS,
  LockOrderError,
  lockDebugEnabled,
  lockOrderSeen,
  RwLock,
  SpinLock,
  setLockDebug,
} from '../../src/xen/locks.ts';
import { C, LOCK_TEST_WORDS, LOCKS, type LockRole, type LockWorkerData } from '../fixtures/lock-words.ts';

const bootstrap = new URL('../../src/host/worker-bootstrap.mjs', import.meta.url);
const entry = new URL('../fixtures/lock-worker.ts', import.meta.url).href;

function spawn(
  sab: SharedArrayBuffer,
  role: LockRole,
  id: number,
  iters: number,
  cores: number,
  group: number,
  debug = true,
) {
  const data: LockWorkerData = { entry, sab, role, id, iters, group, debug, cores };
  const w = new Worker(bootstrap, { workerData: data });
  return new Promise<Record<string, unknown>>((resolve, reject) => {
    let result: Record<string, unknown> | null = null;
    w.on('message', (m: Record<string, unknown>) => {
      result = m;
    });
    w.on('error', reject);
    w.on('exit', (code) => {
      if (result !== null && code === 0) resolve(result);
      else reject(new Error(`lock worker ${role}#${id} exited ${code} without a result`));
    });
  });
}

function fresh(): { sab: SharedArrayBuffer; words: Int32Array } {
  const sab = new SharedArrayBuffer(LOCK_TEST_WORDS * 4);
  return { sab, words: new Int32Array(sab) };
}

describe('locks on worker threads', { timeout: 120_000 }, () => {
  // cores 64: the bounded spin runs before sleeping; cores 1: every wait sleeps.
  for (const cores of [64, 1]) {
    it(`a spinlock excludes: 4 workers x 3000 plain increments (cores=${cores})`, async () => {
      const { sab, words } = fresh();
      await Promise.all([0, 1, 2, 3].map((id) => spawn(sab, 'mutex', id, 3000, cores, 4)));
      assert.equal(words[C.violations], 0);
      assert.equal(words[C.counter], 12_000);
      assert.equal(words[LOCKS.spin], 0, 'lock free at the end');
      assert.equal(words[C.running], 0, 'every worker joined and left the wait policy');
    });

    it(`an rwlock excludes writers from readers and each other (cores=${cores})`, async () => {
      const { sab, words } = fresh();
      const jobs = [
        spawn(sab, 'reader', 0, 3000, cores, 4),
        spawn(sab, 'reader', 1, 3000, cores, 4),
        spawn(sab, 'writer', 2, 1500, cores, 4),
        spawn(sab, 'writer', 3, 1500, cores, 4),
      ];
      await Promise.all(jobs);
      assert.equal(words[C.violations], 0);
      assert.equal(words[C.counter], 3000);
      assert.equal(words[C.mirror], 3000);
      assert.equal(words[LOCKS.rw], 0, 'no reader, writer or waiter left');
    });
  }

  it('a waiting writer blocks new readers (writer-preferring, as _can_read_lock)', async () => {
    const { sab, words } = fresh();
    setLockDebug(false);
    const policy = new WaitPolicy(words, C.running, 1);
    const rw = new RwLock(words, LOCKS.rw, LOCK_CLASSES.grantTable, 1, policy);
    rw.readLock();
    const writer = spawn(sab, 'queued-writer', 1, 1, 1, 1);
    // Wait until the writer has queued.
    while (rw.state().waitingWriters === 0) Atomics.wait(words, C.scratch, 0, 2);
    assert.equal(rw.tryReadLock(), false, 'a new reader stays out while a writer waits');
    assert.equal(words[C.counter], 0, 'the writer is still outside');
    rw.readUnlock();
    await writer;
    assert.equal(words[C.counter], 1);
    assert.deepEqual(rw.state(), { readers: 0, writer: false, waitingWriters: 0 });
    assert.equal(rw.tryReadLock(), true);
    rw.readUnlock();
  });

  it('the checker catches a real inversion between two workers instead of deadlocking', async () => {
    const { sab, words } = fresh();
    const [a, b] = await Promise.all([
      spawn(sab, 'event-then-channel', 1, 1, 1, 2),
      spawn(sab, 'channel-then-event', 2, 1, 1, 2),
    ]);
    assert.equal(a.done, true);
    assert.equal(b.done, true);
    assert.match(String(b.error), /inversion: event_lock\(1\) taken while holding evtchn_lock\(7\)/);
    assert.equal(words[LOCKS.eventA], 0);
    assert.equal(words[LOCKS.chan], 0);
  });
});

describe('lock order checker (debug mode, one thread)', () => {
  const words = new Int32Array(new SharedArrayBuffer(64 * LOCK_WORDS * 4));
  let slot = 0;
  const policy = WaitPolicy.local();
  const spin = (c: (typeof LOCK_CLASSES)[keyof typeof LOCK_CLASSES], key: number) =>
    new SpinLock(words, LOCK_WORDS * slot++, c, key, policy);
  const rwl = (c: (typeof LOCK_CLASSES)[keyof typeof LOCK_CLASSES], key: number) =>
    new RwLock(words, LOCK_WORDS * slot++, c, key, policy);

  function expectOrderError(fn: () => void, re: RegExp): void {
    assert.throws(fn, (e: unknown) => e instanceof LockOrderError && re.test(e.message));
  }

  it('allows Xen order: grant table, active entry, page_alloc, heap', () => {
    setLockDebug(true);
    assert.equal(lockDebugEnabled(), true);
    const gt = rwl(LOCK_CLASSES.grantTable, 1);
    const act = spin(LOCK_CLASSES.activeEntry, 1);
    const pa = spin(LOCK_CLASSES.pageAlloc, 1);
    const heap = spin(LOCK_CLASSES.heap, 0);
    gt.readLock();
    act.lock();
    pa.lock();
    pa.lock(); // page_alloc_lock is recursive (rspinlock_t)
    heap.lock();
    assert.deepEqual(heldLocks(), [
      'grant_table(1)',
      'active_entry(1)',
      'page_alloc_lock(1)',
      'page_alloc_lock(1)',
      'heap_lock(0)',
    ]);
    heap.unlock();
    pa.unlock();
    assert.equal(pa.isLocked(), true, 'still held once');
    pa.unlock();
    assert.equal(pa.isLocked(), false);
    act.unlock();
    gt.readUnlock();
    assertNoLocksHeld('test');
    assert.ok(lockOrderSeen().includes('grant_table>active_entry'));
  });

  it('refuses a second grant-table lock (XSA-380, XSA-411), even for reading', () => {
    setLockDebug(true);
    const rd = rwl(LOCK_CLASSES.grantTable, 1);
    const td = rwl(LOCK_CLASSES.grantTable, 2);
    rd.readLock();
    try {
      expectOrderError(() => td.readLock(), /second grant-table lock/);
      expectOrderError(() => rd.readLock(), /second grant-table lock/);
    } finally {
      rd.readUnlock();
    }
    assert.deepEqual(td.state(), { readers: 0, writer: false, waitingWriters: 0 });
    assert.deepEqual(heldLocks(), []);
  });

  it('refuses a grant lock under page_alloc_lock (XSA-73) and an act lock without its table', () => {
    setLockDebug(true);
    const gt = rwl(LOCK_CLASSES.grantTable, 3);
    const pa = spin(LOCK_CLASSES.pageAlloc, 3);
    const act = spin(LOCK_CLASSES.activeEntry, 3);
    const otherAct = spin(LOCK_CLASSES.activeEntry, 4);
    pa.lock();
    try {
      expectOrderError(
        () => gt.readLock(),
        /inversion: grant_table\(3\) taken while holding page_alloc_lock\(3\)/,
      );
    } finally {
      pa.unlock();
    }
    expectOrderError(() => act.lock(), /without that table's lock/);
    gt.readLock();
    try {
      expectOrderError(() => otherAct.lock(), /without that table's lock/);
    } finally {
      gt.readUnlock();
    }
    assert.deepEqual(heldLocks(), []);
  });

  it('two active entries only under the write lock (swap_grant_ref)', () => {
    setLockDebug(true);
    const gt = rwl(LOCK_CLASSES.grantTable, 5);
    const a = spin(LOCK_CLASSES.activeEntry, 5);
    const b = spin(LOCK_CLASSES.activeEntry, 5);
    gt.readLock();
    a.lock();
    expectOrderError(() => b.lock(), /without its write lock/);
    expectOrderError(() => a.lock(), /recursion on active_entry/);
    a.unlock();
    gt.readUnlock();
    gt.writeLock();
    a.lock();
    b.lock();
    b.unlock();
    a.unlock();
    gt.writeUnlock();
    assert.deepEqual(heldLocks(), []);
  });

  it('two event locks only in ascending key order, never three; families never nest', () => {
    setLockDebug(true);
    const e1 = rwl(LOCK_CLASSES.eventLock, 1);
    const e2 = rwl(LOCK_CLASSES.eventLock, 2);
    const e3 = rwl(LOCK_CLASSES.eventLock, 3);
    const gt = rwl(LOCK_CLASSES.grantTable, 1);
    e1.writeLock();
    e2.writeLock();
    expectOrderError(() => e3.writeLock(), /event_lock\(3\): at most two event_locks/);
    expectOrderError(() => gt.readLock(), /families never nest/);
    e2.writeUnlock();
    e1.writeUnlock();
    e2.writeLock();
    expectOrderError(() => e1.writeLock(), /event_lock\(1\) taken while holding event_lock\(2\)/);
    e2.writeUnlock();
    assert.deepEqual(heldLocks(), []);
  });

  it('refuses to unlock what this thread does not hold, and reports held locks at exit', () => {
    setLockDebug(true);
    const l = spin(LOCK_CLASSES.heap, 0);
    expectOrderError(() => l.unlock(), /does not hold/);
    l.lock();
    expectOrderError(
      () => assertNoLocksHeld('hypercall exit'),
      /hypercall exit: still holding heap_lock\(0\)/,
    );
    l.unlock();
    assertNoLocksHeld('hypercall exit');
  });

  it('try/finally leaves no lock held when the section throws', () => {
    setLockDebug(true);
    const gt = rwl(LOCK_CLASSES.grantTable, 9);
    const act = spin(LOCK_CLASSES.activeEntry, 9);
    assert.throws(() => {
      gt.readLock();
      try {
        act.lock();
        try {
          throw new RangeError('a bug inside the section');
        } finally {
          act.unlock();
        }
      } finally {
        gt.readUnlock();
      }
    }, RangeError);
    assert.deepEqual(heldLocks(), []);
    assert.equal(act.isLocked(), false);
    assert.deepEqual(gt.state(), { readers: 0, writer: false, waitingWriters: 0 });
  });

  it('counts spare cores: spins only while running threads <= cores', () => {
    const w = new Int32Array(new SharedArrayBuffer(8));
    const p = new WaitPolicy(w, 1, availableParallelism(), 100);
    p.join();
    assert.equal(p.spinBudget(), 100);
    for (let i = 0; i < availableParallelism(); i++) p.join();
    assert.equal(p.spinBudget(), 0, 'more running threads than cores: sleep at once');
    assert.equal(WaitPolicy.local().spinBudget(), 0);
  });

  it('spinUntil: spins on the condition only with spare cores, and never in single-thread mode', () => {
    const w = new Int32Array(new SharedArrayBuffer(8));
    // A bound far beyond what five tries take, so the count below does not depend on the clock.
    const p = new WaitPolicy(w, 1, availableParallelism(), 100, 10_000_000);
    p.join();
    let calls = 0;
    assert.equal(
      p.spinUntil(() => ++calls === 5),
      true,
    );
    assert.equal(calls, 5, 'spun until the fifth look found it');
    calls = 0;
    assert.equal(
      p.spinUntil(() => ++calls > 0),
      true,
    );
    assert.equal(calls, 1, 'ready at once: no spin');
    for (let i = 0; i < availableParallelism(); i++) p.join();
    calls = 0;
    assert.equal(
      p.spinUntil(() => ++calls === 5),
      false,
    );
    assert.equal(calls, 1, 'more running threads than cores: one look, then sleep');
    calls = 0;
    assert.equal(
      WaitPolicy.local().spinUntil(() => ++calls === 5),
      false,
    );
    assert.equal(calls, 1, 'single-thread mode never spins');
  });
});
