// The hypervisor's global words, one private page every hypervisor thread
// shares (the one definition of its layout):
// - the hypercall lock, which is not Xen's: the ops that take Xen's own locks
//   (map, unmap, ...: dispatch.ts runsShared) run under it shared, any number
//   at once; every other op, and the toolstack's work (domain creation and
//   destruction, the debug keys, xenstored), runs under it exclusive, alone in
//   Xen, until issue 8 has moved it to Xen's locks too. It is fair: a gate
//   (a ticket lock) that every taker passes in turn, and a count of the
//   shared holders an exclusive one waits to drain;
// - notices for Xen-attached ports: a guest's send to a port whose consumer
//   lives in another thread (xenstored's, in the toolstack thread) marks the
//   port's slot here, and that thread runs the consumer (notice() wakes it).

import type { WaitPolicy } from '../machine/wait-policy.ts';
import { LOCK_CLASSES, LOCK_WORDS, SpinLock, TicketLock } from './locks.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

// ---- the page, in Int32 words ----
const G_GATE = 0;
/** Shared holders of the hypercall lock. */
const G_READERS = LOCK_WORDS;
/** 1 while an exclusive holder waits for the shared ones to drain. */
const G_DRAINING = LOCK_WORDS + 1;
/** Moves whenever a notice is posted (the owner of consumers waits on it). */
const G_NOTICE_SEQ = LOCK_WORDS + 2;
const G_TRACE_LOCK = 2 * LOCK_WORDS;
/** Records of dead domains waiting to be freed by the toolstack's thread (0: an empty slot). */
const G_GRAVES = 3 * LOCK_WORDS;
const NR_GRAVES = 128;
/** Notice slots from here: one per consumer index, [port + 1 (0: none pending), domid]. */
const G_SLOTS = G_GRAVES + NR_GRAVES;
const SLOT_WORDS = 2;
/** Consumer indices another thread can notify (each a binding of a Xen-attached port). */
export const MAX_NOTICE_SLOTS = Math.floor((PAGE_WORDS - G_SLOTS) / SLOT_WORDS);

export class XenGlobals {
  /** Private pages it takes. */
  static readonly PAGES = 1;
  readonly page: number;
  private readonly words: Int32Array;
  private readonly base: number;
  /** The hypercall lock (see the file's comment). */
  readonly hypercallLock: HypercallLock;
  /** xentrace's buffer lock: one writer of the trace ring at a time. */
  readonly traceLock: SpinLock;

  /** A new globals page in `pool`; returns its number. */
  static create(pool: PrivatePages): number {
    const page = pool.alloc();
    if (page < 0) throw new RangeError("out of the hypervisor's private memory for its globals");
    return page;
  }

  constructor(pool: PrivatePages, page: number, policy: WaitPolicy) {
    this.page = page;
    this.words = pool.words;
    this.base = page * PAGE_WORDS;
    this.hypercallLock = new HypercallLock(
      new TicketLock(this.words, this.base + G_GATE, LOCK_CLASSES.hypercall, 0, policy),
      this.words,
      this.base,
      policy,
    );
    this.traceLock = new SpinLock(this.words, this.base + G_TRACE_LOCK, LOCK_CLASSES.trace, 0, policy);
  }

  /** The word a consumer's owner waits on: it moves with every notice. */
  get noticeSeqIndex(): number {
    return this.base + G_NOTICE_SEQ;
  }

  /**
   * Marks consumer `index` pending for (domid, port) and moves the sequence;
   * false when the index has no slot (more bindings than MAX_NOTICE_SLOTS).
   */
  post(index: number, domid: number, port: number): boolean {
    if (!(index >= 0 && index < MAX_NOTICE_SLOTS)) return false;
    const w = this.words;
    const at = this.base + G_SLOTS + index * SLOT_WORDS;
    w[at + 1] = domid;
    // The domid is published by the port's store, which marks the slot pending.
    Atomics.store(w, at, port + 1);
    Atomics.add(w, this.base + G_NOTICE_SEQ, 1);
    Atomics.notify(w, this.base + G_NOTICE_SEQ);
    return true;
  }

  /** Leaves a dead domain's record for the toolstack's thread to free; false when every grave is taken. */
  bury(record: number): boolean {
    const w = this.words;
    for (let i = 0; i < NR_GRAVES; i++)
      if (Atomics.compareExchange(w, this.base + G_GRAVES + i, 0, record) === 0) return true;
    return false;
  }

  /** A buried record, taken out of its grave, or 0 when there is none. */
  unbury(): number {
    const w = this.words;
    for (let i = 0; i < NR_GRAVES; i++) {
      if (Atomics.load(w, this.base + G_GRAVES + i) === 0) continue;
      const r = Atomics.exchange(w, this.base + G_GRAVES + i, 0);
      if (r !== 0) return r;
    }
    return 0;
  }

  /** Takes the notice of consumer `index` if one is pending: its [domid, port], or null. */
  take(index: number): readonly [number, number] | null {
    if (!(index >= 0 && index < MAX_NOTICE_SLOTS)) return null;
    const w = this.words;
    const at = this.base + G_SLOTS + index * SLOT_WORDS;
    if (Atomics.load(w, at) === 0) return null;
    const p = Atomics.exchange(w, at, 0);
    return p === 0 ? null : [w[at + 1]!, p - 1];
  }
}

/** The hypercall lock: shared or exclusive, fair (see the file's comment). */
export class HypercallLock {
  private readonly gate: TicketLock;
  private readonly words: Int32Array;
  private readonly readers: number;
  private readonly drainingAt: number;
  private readonly policy: WaitPolicy;

  constructor(gate: TicketLock, words: Int32Array, base: number, policy: WaitPolicy) {
    this.gate = gate;
    this.words = words;
    this.readers = base + G_READERS;
    this.drainingAt = base + G_DRAINING;
    this.policy = policy;
  }

  /**
   * Enters shared: waits only for an exclusive holder, or one that came
   * first. Fast path: count in, then look at the gate; an exclusive taker
   * takes the gate before it reads the count, so with sequentially
   * consistent atomics either it sees this count or this sees its ticket.
   * A taken gate means: count out again and queue at the gate.
   */
  shared(): void {
    const w = this.words;
    Atomics.add(w, this.readers, 1);
    if (this.gate.queued() === 0) return;
    this.sharedEnd();
    this.gate.lock();
    Atomics.add(w, this.readers, 1);
    this.gate.unlock();
  }

  sharedEnd(): void {
    // The last one out wakes an exclusive holder draining the count.
    if (Atomics.sub(this.words, this.readers, 1) === 1 && Atomics.load(this.words, this.drainingAt) !== 0)
      Atomics.notify(this.words, this.readers);
  }

  /** Enters exclusive: through the gate (kept held), then until no shared holder is left. */
  exclusive(): void {
    this.gate.lock();
    const w = this.words;
    let n = Atomics.load(w, this.readers);
    for (let spin = this.policy.spinBudget(); n !== 0 && spin > 0; spin--) n = Atomics.load(w, this.readers);
    if (n !== 0) {
      Atomics.store(w, this.drainingAt, 1);
      for (n = Atomics.load(w, this.readers); n !== 0; n = Atomics.load(w, this.readers))
        this.policy.sleep(w, this.readers, n);
      Atomics.store(w, this.drainingAt, 0);
    }
  }

  exclusiveEnd(): void {
    this.gate.unlock();
  }

  /** Shared holders now (a snapshot, for tests). */
  get sharedHolders(): number {
    return Atomics.load(this.words, this.readers);
  }

  /** Whether an exclusive taker waits for shared holders to drain (a snapshot, for tests). */
  get draining(): boolean {
    return Atomics.load(this.words, this.drainingAt) !== 0;
  }

  /** Takers at the gate: an exclusive holder or the one passing, and those queued behind (a snapshot). */
  get queued(): number {
    return this.gate.queued();
  }
}
