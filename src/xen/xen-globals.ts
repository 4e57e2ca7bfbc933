// The hypervisor's global words, one private page every hypervisor thread
// shares (the one definition of its layout):
// - the hypercall lock: while the ops do not take Xen's own finer locks yet
//   (issue 8 moves them one subsystem at a time), one hypercall is inside Xen
//   at a time, whichever thread makes it, and the toolstack's work (domain
//   creation and destruction, the debug keys, xenstored) takes it too;
// - notices for Xen-attached ports: a guest's send to a port whose consumer
//   lives in another thread (xenstored's, in the toolstack thread) marks the
//   port's slot here, and that thread runs the consumer (notice() wakes it).

import type { WaitPolicy } from '../machine/wait-policy.ts';
import { LOCK_CLASSES, LOCK_WORDS, TicketLock } from './locks.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

// ---- the page, in Int32 words ----
const G_HYPERCALL_LOCK = 0;
/** Moves whenever a notice is posted (the owner of consumers waits on it). */
const G_NOTICE_SEQ = LOCK_WORDS;
/** Notice slots from here: one per consumer index, [port + 1 (0: none pending), domid]. */
const G_SLOTS = 8;
const SLOT_WORDS = 2;
/** Consumer indices another thread can notify (each a binding of a Xen-attached port). */
export const MAX_NOTICE_SLOTS = Math.floor((PAGE_WORDS - G_SLOTS) / SLOT_WORDS);

export class XenGlobals {
  /** Private pages it takes. */
  static readonly PAGES = 1;
  readonly page: number;
  private readonly words: Int32Array;
  private readonly base: number;
  /** One hypercall inside Xen at a time (see the file's comment). */
  readonly hypercallLock: TicketLock;

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
    this.hypercallLock = new TicketLock(
      this.words,
      this.base + G_HYPERCALL_LOCK,
      LOCK_CLASSES.hypercall,
      0,
      policy,
    );
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
