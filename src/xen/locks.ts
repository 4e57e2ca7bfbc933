// Xen's locks over Int32 words in shared memory, the classes they protect, and
// the order Xen takes them in (reference/xen-locking.md §0.5, §2).
//
// Primitives:
// - SpinLock (spinlock_t; recursive as rspinlock_t for page_alloc_lock): a
//   futex mutex. 0 free, 1 held, 2 held with a sleeper; the unlock notifies
//   only in state 2, so nobody pays for a wake nobody waits for. Not FIFO like
//   Xen's ticket lock: fairness is not needed for correctness (§8.2).
// - RwLock (rwlock_t and the grant table's percpu_rwlock_t, §8.2): one state
//   word of readers, waiting writers and a writer bit. Writer-preferring as
//   Xen's queued rwlock: a waiting writer blocks new readers, so re-taking a
//   read lock you hold can deadlock behind a queued writer. A thread holding
//   the write lock may also take the read lock (Xen's one exception).
// Both spin only while the WaitPolicy sees spare cores, then sleep in
// Atomics.wait. Sleepers announce themselves, and releasers notify only then.
//
// Every lock code path runs under try/finally in its callers:
//   l.lock(); try { ... } finally { l.unlock(); }
// so an exception (a bug) never leaves a lock held.
//
// Lock order, outermost first (xen-locking.md §2.1). A lock may be taken only
// while every lock held has a lower rank, with these same-class rules (§2.2):
//   hypercall         not Xen's: one hypercall inside Xen at a time, while the
//                     ops move to the locks below one subsystem at a time
//                     (xen-globals.ts); outermost.
//   domctl            global toolstack lock (create, destroy, pause)
//   -- grant family --
//   grant_table       per-domain rwlock. Never two at once, never recursive:
//                     double_gt_lock went with XSA-380's fix, and XSA-411 was a
//                     transitive copy holding two (acquire_grant_for_copy).
//   active_entry      act->lock, only under its own table's lock; two at once
//                     only under that table's write lock (swap_grant_ref).
//   maptrack          gt->maptrack_lock (get_maptrack_handle); no act lock
//                     inside it.
//   page_lock         the PV page-table page lock (replace_grant_host_mapping)
//   -- event family (never nested with the grant family) --
//   event_lock        d->event_lock rwlock; two at once ordered by domain key,
//                     as evtchn_bind_interdomain / evtchn_close take them.
//   virq_lock         v->virq_lock
//   evtchn            the per-channel rwlock; two at once ordered by key
//                     (double_evtchn_lock).
//   fifo_queue        FIFO queue locks; two at once ordered by key.
//   -- memory (below both families) --
//   p2m               p2m->lock of a translated domain (an mm_rwlock): written
//                     for every change of its P2M (gfn_lock, p2m_set_entry),
//                     read for a lookup that takes a page reference
//                     (p2m_get_page_from_gfn). Taken under the grant-table lock
//                     (gnttab_map_frame keeps the write lock across the P2M
//                     insertion in xenmem_add_to_physmap_one, XSA-486; set_version
//                     removes status frames under it) and under an active entry
//                     (get_paged_frame); before page_alloc (mm-locks.h: the P2M
//                     lock is ordered before page_alloc). One domain's at a time.
//   page_alloc        d->page_alloc_lock, recursive on the same domain; never
//                     two domains' at once, never held while taking a grant
//                     lock (XSA-73).
//   heap              the global heap_lock (alloc_heap_pages).
//   maptrack_freelist v->maptrack_freelist_lock: innermost, one at a time
//                     (XSA-228).
//   domlist           domlist_update_lock, a leaf.
//   trace             xentrace's buffer lock, a leaf.
//
// Debug mode (setLockDebug, or GNTTAB_LOCK_DEBUG=1 in the environment) keeps a
// per-thread stack of held locks, checks every acquisition against the rules
// above before it waits, and throws LockOrderError on an inversion, a second
// grant-table lock, a recursion or an unlock of a lock not held. It also
// records which (held, taken) class pairs it saw.
import { WaitPolicy } from '../machine/wait-policy.ts';

// ---- lock-word layout (the one definition) ----

/** Int32 words per lock, spin or rw; a lock's first word index is a multiple of this. */
export const LOCK_WORDS = 4;
export const LOCK_BYTES = LOCK_WORDS * 4;
/** Spinlock words: state (0 free, 1 held, 2 held + sleepers), owner thread + 1, recursion depth. */
export const SPIN_STATE = 0;
export const SPIN_OWNER = 1;
export const SPIN_DEPTH = 2;
/** Rwlock words: state, wake sequence, sleepers, writing owner thread + 1. */
export const RW_STATE = 0;
export const RW_SEQ = 1;
export const RW_SLEEPERS = 2;
export const RW_OWNER = 3;
/** Rwlock state bits: readers in the low 16, waiting writers in 16..29, the writer bit 30. */
export const RW_READER = 1;
export const RW_READERS_MASK = 0xffff;
export const RW_WAITER = 1 << 16;
export const RW_WAITERS_MASK = 0x3fff << 16;
export const RW_WRITER = 1 << 30;

// ---- lock classes and their order ----

export type LockFamily = 'toolstack' | 'grant' | 'event' | 'memory';

export interface LockClass {
  readonly name: string;
  /** Outermost first; a lock is taken only while every held lock ranks lower (or same-class rules allow). */
  readonly rank: number;
  readonly family: LockFamily;
  /** Same-class rule: 'none' (one at a time), 'ordered' (at most two, ascending key), 'recursive' (same key). */
  readonly twice: 'none' | 'ordered' | 'recursive' | 'swap';
}

function cls(name: string, rank: number, family: LockFamily, twice: LockClass['twice'] = 'none'): LockClass {
  return { name, rank, family, twice };
}

export const LOCK_CLASSES = {
  hypercall: cls('hypercall_lock', -1, 'toolstack'),
  domctl: cls('domctl_lock', 0, 'toolstack'),
  grantTable: cls('grant_table', 10, 'grant'),
  activeEntry: cls('active_entry', 11, 'grant', 'swap'),
  maptrack: cls('maptrack_lock', 12, 'grant'),
  pageLock: cls('page_lock', 13, 'grant'),
  eventLock: cls('event_lock', 20, 'event', 'ordered'),
  virqLock: cls('virq_lock', 21, 'event'),
  evtchn: cls('evtchn_lock', 22, 'event', 'ordered'),
  fifoQueue: cls('fifo_queue_lock', 23, 'event', 'ordered'),
  p2m: cls('p2m_lock', 25, 'memory'),
  pageAlloc: cls('page_alloc_lock', 30, 'memory', 'recursive'),
  heap: cls('heap_lock', 31, 'memory'),
  maptrackFreelist: cls('maptrack_freelist_lock', 32, 'memory'),
  domlist: cls('domlist_update_lock', 33, 'memory'),
  trace: cls('trace_lock', 34, 'memory'),
} as const satisfies Record<string, LockClass>;

export class LockOrderError extends Error {
  override name = 'LockOrderError';
}

// ---- per-thread state (a module instance is one thread's) ----

const envDebug = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  ?.GNTTAB_LOCK_DEBUG;
let debug = envDebug !== undefined && envDebug !== '' && envDebug !== '0';
/** This thread's id + 1, as stored in owner words. */
let self = 1;

/** Held locks of this thread, innermost last (debug mode only). */
let held: Lock[] = [];
let heldWrite: boolean[] = [];
/** (held class, taken class) pairs seen, as `outer>inner` names (debug mode only). */
const seen = new Set<string>();

export function setLockDebug(on: boolean): void {
  debug = on;
  held.length = 0;
  heldWrite.length = 0;
}

export function lockDebugEnabled(): boolean {
  return debug;
}

/**
 * Debug mode: a hypercall made inside another in this thread (a fixed
 * interleaving's second CPU) starts with no lock held, as that CPU would;
 * returns what to give otherCpuEnd afterwards. Its owner words still name
 * this thread, so it must not need a lock the interrupted one holds.
 */
export function otherCpuBegin(): [Lock[], boolean[]] {
  const saved: [Lock[], boolean[]] = [held, heldWrite];
  held = [];
  heldWrite = [];
  return saved;
}

export function otherCpuEnd(saved: [Lock[], boolean[]]): void {
  [held, heldWrite] = saved;
}

/** Names this thread in owner words (domain threads pass a distinct small integer). */
export function setLockThread(id: number): void {
  self = id + 1;
}

/** The locks this thread holds, outermost first (debug mode; empty otherwise). */
export function heldLocks(): string[] {
  return held.map((l) => `${l.cls.name}(${l.key})`);
}

/** The (outer, inner) class pairs this thread has nested, in debug mode. */
export function lockOrderSeen(): string[] {
  return [...seen].sort();
}

/** Debug mode: throws if this thread holds any lock (at a hypercall's exit, say). */
export function assertNoLocksHeld(where: string): void {
  if (debug && held.length > 0) throw new LockOrderError(`${where}: still holding ${heldLocks().join(', ')}`);
}

abstract class Lock {
  readonly words: Int32Array;
  /** Index of the lock's first word in `words`. */
  readonly at: number;
  readonly cls: LockClass;
  /** Which instance: the domain's key, the channel's key, the entry's table key. */
  readonly key: number;
  readonly policy: WaitPolicy;

  constructor(words: Int32Array, at: number, lockClass: LockClass, key: number, policy: WaitPolicy) {
    if (at % LOCK_WORDS !== 0 || at < 0 || at + LOCK_WORDS > words.length)
      throw new RangeError(`lock words at ${at} are not a ${LOCK_WORDS}-word slot of the array`);
    this.words = words;
    this.at = at;
    this.cls = lockClass;
    this.key = key;
    this.policy = policy;
  }

  /** Debug mode: refuses an acquisition that breaks the order, before waiting for it. */
  protected check(): void {
    const c = this.cls;
    let sameClass = 0;
    let tableWriteHeld = false;
    let tableHeld = false;
    for (let i = 0; i < held.length; i++) {
      const h = held[i]!;
      const hc = h.cls;
      if (hc === LOCK_CLASSES.grantTable && h.key === this.key && c === LOCK_CLASSES.activeEntry) {
        tableHeld = true;
        tableWriteHeld = heldWrite[i]!;
      }
      if ((hc.family === 'grant' && c.family === 'event') || (hc.family === 'event' && c.family === 'grant'))
        throw new LockOrderError(
          `${c.name}(${this.key}) taken under ${hc.name}(${h.key}): families never nest`,
        );
      if (hc === c) {
        sameClass++;
        if (c === LOCK_CLASSES.grantTable)
          throw new LockOrderError(
            `second grant-table lock: ${c.name}(${this.key}) under ${hc.name}(${h.key}) (XSA-380, XSA-411)`,
          );
        const same = this.sameLock(h);
        if (c.twice === 'recursive' && same) continue;
        if (same) throw new LockOrderError(`recursion on ${c.name}(${this.key})`);
        if (c.twice === 'ordered' && sameClass > 1)
          throw new LockOrderError(`${c.name}(${this.key}): at most two ${c.name}s are held at once`);
        if (c.twice === 'ordered' && h.key < this.key) continue;
        if (c.twice === 'swap' && h.key === this.key && sameClass === 1) continue;
        throw new LockOrderError(`${c.name}(${this.key}) taken while holding ${hc.name}(${h.key})`);
      }
      if (hc.rank > c.rank)
        throw new LockOrderError(
          `lock order inversion: ${c.name}(${this.key}) taken while holding ${hc.name}(${h.key})`,
        );
    }
    if (c === LOCK_CLASSES.activeEntry) {
      if (!tableHeld)
        throw new LockOrderError(`active entry of table ${this.key} locked without that table's lock`);
      if (sameClass > 0 && !tableWriteHeld)
        throw new LockOrderError(
          `two active entries of table ${this.key} without its write lock (swap_grant_ref)`,
        );
    }
    for (const h of held) seen.add(`${h.cls.name}>${c.name}`);
  }

  /** Whether `other` names the same lock words (possibly through another handle). */
  sameLock(other: Lock): boolean {
    return (
      other.words.buffer === this.words.buffer &&
      other.words.byteOffset + other.at * 4 === this.words.byteOffset + this.at * 4
    );
  }

  protected pushHeld(write: boolean): void {
    held.push(this);
    heldWrite.push(write);
  }

  protected popHeld(): void {
    const i = held.lastIndexOf(this);
    if (i < 0)
      throw new LockOrderError(`unlock of ${this.cls.name}(${this.key}), which this thread does not hold`);
    held.splice(i, 1);
    heldWrite.splice(i, 1);
  }
}

export class SpinLock extends Lock {
  /** Clears the lock words (a fresh lock). */
  static init(words: Int32Array, at: number): void {
    words.fill(0, at, at + LOCK_WORDS);
  }

  lock(): void {
    const w = this.words;
    const s = this.at + SPIN_STATE;
    if (this.cls.twice === 'recursive' && Atomics.load(w, this.at + SPIN_OWNER) === self) {
      if (debug) {
        this.check();
        this.pushHeld(true);
      }
      w[this.at + SPIN_DEPTH]!++;
      return;
    }
    if (debug) this.check();
    if (Atomics.compareExchange(w, s, 0, 1) !== 0) this.slowLock();
    Atomics.store(w, this.at + SPIN_OWNER, self);
    w[this.at + SPIN_DEPTH] = 1;
    if (debug) this.pushHeld(true);
  }

  private slowLock(): void {
    const w = this.words;
    const s = this.at + SPIN_STATE;
    for (let n = this.policy.spinBudget(); n > 0; n--) {
      if (Atomics.load(w, s) === 0 && Atomics.compareExchange(w, s, 0, 1) === 0) return;
    }
    // Drepper's mutex: mark contended; whoever finds 0 in the exchange owns it.
    let c = Atomics.exchange(w, s, 2);
    while (c !== 0) {
      this.policy.sleep(w, s, 2);
      c = Atomics.exchange(w, s, 2);
    }
  }

  trylock(): boolean {
    const w = this.words;
    if (this.cls.twice === 'recursive' && Atomics.load(w, this.at + SPIN_OWNER) === self) {
      this.lock();
      return true;
    }
    if (debug) this.check();
    if (Atomics.compareExchange(w, this.at + SPIN_STATE, 0, 1) !== 0) return false;
    Atomics.store(w, this.at + SPIN_OWNER, self);
    w[this.at + SPIN_DEPTH] = 1;
    if (debug) this.pushHeld(true);
    return true;
  }

  unlock(): void {
    const w = this.words;
    if (debug) this.popHeld();
    if (Atomics.load(w, this.at + SPIN_OWNER) !== self)
      throw new LockOrderError(`${this.cls.name}(${this.key}) unlocked by a thread that does not own it`);
    if (--w[this.at + SPIN_DEPTH]! > 0) return;
    Atomics.store(w, this.at + SPIN_OWNER, 0);
    const s = this.at + SPIN_STATE;
    if (Atomics.sub(w, s, 1) !== 1) {
      Atomics.store(w, s, 0);
      Atomics.notify(w, s, 1);
    }
  }

  /** True while some thread holds it (a snapshot, for invariants and tests). */
  isLocked(): boolean {
    return Atomics.load(this.words, this.at + SPIN_STATE) !== 0;
  }

  /** True while the calling thread holds it. */
  heldBySelf(): boolean {
    return Atomics.load(this.words, this.at + SPIN_OWNER) === self;
  }
}

/**
 * A fair spinlock, as Xen's own (ticket locks): waiters are served in the
 * order they came. Words: the next ticket, the ticket being served, the
 * sleepers, the owner thread + 1. The hypercall lock is one: a guest that
 * makes hypercalls back to back would otherwise starve every other thread
 * of Xen (an unfair mutex lets the thread that just unlocked take it again
 * before a woken waiter runs).
 */
export class TicketLock extends Lock {
  private static readonly NEXT = 0;
  private static readonly SERVING = 1;
  private static readonly SLEEPERS = 2;
  private static readonly OWNER = 3;

  lock(): void {
    if (debug) this.check();
    const w = this.words;
    const serving = this.at + TicketLock.SERVING;
    const ticket = Atomics.add(w, this.at + TicketLock.NEXT, 1);
    let now = Atomics.load(w, serving);
    if (now !== ticket) {
      for (let n = this.policy.spinBudget(); n > 0 && now !== ticket; n--) now = Atomics.load(w, serving);
      while (now !== ticket) {
        Atomics.add(w, this.at + TicketLock.SLEEPERS, 1);
        // Re-read after announcing: an unlock between the two either is seen here or notifies us.
        now = Atomics.load(w, serving);
        if (now !== ticket) this.policy.sleep(w, serving, now);
        Atomics.sub(w, this.at + TicketLock.SLEEPERS, 1);
        now = Atomics.load(w, serving);
      }
    }
    Atomics.store(w, this.at + TicketLock.OWNER, self);
    if (debug) this.pushHeld(true);
  }

  unlock(): void {
    if (debug) this.popHeld();
    const w = this.words;
    if (Atomics.load(w, this.at + TicketLock.OWNER) !== self)
      throw new LockOrderError(`${this.cls.name}(${this.key}) unlocked by a thread that does not own it`);
    Atomics.store(w, this.at + TicketLock.OWNER, 0);
    Atomics.add(w, this.at + TicketLock.SERVING, 1);
    // Every sleeper wakes and re-checks: only the next ticket's goes on.
    if (Atomics.load(w, this.at + TicketLock.SLEEPERS) !== 0) Atomics.notify(w, this.at + TicketLock.SERVING);
  }

  /** Tickets taken and not yet done: the holder and its waiters (0: the lock is free). A snapshot. */
  queued(): number {
    return (
      (Atomics.load(this.words, this.at + TicketLock.NEXT) -
        Atomics.load(this.words, this.at + TicketLock.SERVING)) |
      0
    );
  }
}

export class RwLock extends Lock {
  static init(words: Int32Array, at: number): void {
    words.fill(0, at, at + LOCK_WORDS);
  }

  readLock(): void {
    if (debug) this.check();
    const w = this.words;
    const st = this.at + RW_STATE;
    const s = Atomics.load(w, st);
    if ((s & (RW_WRITER | RW_WAITERS_MASK)) === 0 && Atomics.compareExchange(w, st, s, s + RW_READER) === s) {
      // fast path
    } else if ((s & RW_WRITER) !== 0 && Atomics.load(w, this.at + RW_OWNER) === self) {
      // The write holder may read-lock too (Xen's rwlock exception).
      Atomics.add(w, st, RW_READER);
    } else {
      this.slowRead();
    }
    if (debug) this.pushHeld(false);
  }

  private canRead(s: number): boolean {
    return (s & (RW_WRITER | RW_WAITERS_MASK)) === 0;
  }

  private slowRead(): void {
    const w = this.words;
    const st = this.at + RW_STATE;
    let spin = this.policy.spinBudget();
    for (;;) {
      const s = Atomics.load(w, st);
      if (this.canRead(s)) {
        if (Atomics.compareExchange(w, st, s, s + RW_READER) === s) return;
        continue;
      }
      if (spin > 0) {
        spin--;
        continue;
      }
      this.sleepUnless(false);
    }
  }

  tryReadLock(): boolean {
    if (debug) this.check();
    const w = this.words;
    const st = this.at + RW_STATE;
    for (;;) {
      const s = Atomics.load(w, st);
      if (!this.canRead(s)) return false;
      if (Atomics.compareExchange(w, st, s, s + RW_READER) === s) break;
    }
    if (debug) this.pushHeld(false);
    return true;
  }

  readUnlock(): void {
    if (debug) this.popHeld();
    const old = Atomics.sub(this.words, this.at + RW_STATE, RW_READER);
    if ((old & RW_READERS_MASK) === 0) {
      Atomics.add(this.words, this.at + RW_STATE, RW_READER);
      throw new LockOrderError(`read unlock of ${this.cls.name}(${this.key}) with no reader`);
    }
    if ((old & RW_READERS_MASK) === 1) this.wake();
  }

  writeLock(): void {
    if (debug) this.check();
    const w = this.words;
    const st = this.at + RW_STATE;
    if (Atomics.compareExchange(w, st, 0, RW_WRITER) !== 0) {
      // Queue as a waiting writer: from here new readers stay out.
      Atomics.add(w, st, RW_WAITER);
      let spin = this.policy.spinBudget();
      for (;;) {
        const s = Atomics.load(w, st);
        if ((s & (RW_WRITER | RW_READERS_MASK)) === 0) {
          if (Atomics.compareExchange(w, st, s, s - RW_WAITER + RW_WRITER) === s) break;
          continue;
        }
        if (spin > 0) {
          spin--;
          continue;
        }
        this.sleepUnless(true);
      }
    }
    Atomics.store(w, this.at + RW_OWNER, self);
    if (debug) this.pushHeld(true);
  }

  tryWriteLock(): boolean {
    if (debug) this.check();
    if (Atomics.compareExchange(this.words, this.at + RW_STATE, 0, RW_WRITER) !== 0) return false;
    Atomics.store(this.words, this.at + RW_OWNER, self);
    if (debug) this.pushHeld(true);
    return true;
  }

  writeUnlock(): void {
    if (debug) this.popHeld();
    const w = this.words;
    if (Atomics.load(w, this.at + RW_OWNER) !== self)
      throw new LockOrderError(
        `${this.cls.name}(${this.key}) write-unlocked by a thread that does not own it`,
      );
    Atomics.store(w, this.at + RW_OWNER, 0);
    Atomics.sub(w, this.at + RW_STATE, RW_WRITER);
    this.wake();
  }

  /** Announce a sleeper, re-check, sleep until the wake sequence moves. */
  private sleepUnless(writer: boolean): void {
    const w = this.words;
    Atomics.add(w, this.at + RW_SLEEPERS, 1);
    const seq = Atomics.load(w, this.at + RW_SEQ);
    const s = Atomics.load(w, this.at + RW_STATE);
    const blocked = writer ? (s & (RW_WRITER | RW_READERS_MASK)) !== 0 : !this.canRead(s);
    if (blocked) this.policy.sleep(w, this.at + RW_SEQ, seq);
    Atomics.sub(w, this.at + RW_SLEEPERS, 1);
  }

  private wake(): void {
    const w = this.words;
    if (Atomics.load(w, this.at + RW_SLEEPERS) === 0) return;
    Atomics.add(w, this.at + RW_SEQ, 1);
    Atomics.notify(w, this.at + RW_SEQ);
  }

  /** Snapshot of the readers count and writer bit, for invariants and tests. */
  state(): { readers: number; writer: boolean; waitingWriters: number } {
    const s = Atomics.load(this.words, this.at + RW_STATE);
    return {
      readers: s & RW_READERS_MASK,
      writer: (s & RW_WRITER) !== 0,
      waitingWriters: (s & RW_WAITERS_MASK) >>> 16,
    };
  }
}

export type { Lock };

/** A policy for locks that never contend (single-thread mode). */
export const LOCAL_WAIT: WaitPolicy = WaitPolicy.local();
