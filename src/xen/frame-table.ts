// Xen's frame_table (one struct page_info per machine frame, reference §4.4)
// and the heap's free list, in one SharedArrayBuffer that every hypervisor
// thread views: owner, general reference count, writable type count, and
// where the frame came from. Private to the hypervisor: guests never see it.
//
// Concurrency (xen-locking.md §5): reference counts change only by atomic
// read-modify-write, as Xen's get_page/put_page do with cmpxchg on count_info;
// a reference is taken only while the count is above zero, so a frame on its
// way to the free list is never revived. The free list and nrFree change only
// under the heap lock (heap_lock), a leaf: nothing else is taken under it.
// alloc writes the frame's owner, type count and flags before it publishes
// count = 1, so a thread that gets a reference sees the frame's new owner.
//
// Layout, in Int32 words (the one definition):
//   [0, LOCK_WORDS)   heap_lock
//   HDR_NR_FREE       frames on the free list
//   then eight planes of nrFrames words: owner, count, typeCount, flags, free
//   list, and the links of the domain page list a frame is on (page-list.ts:
//   next, prev, and the list's owner + 1, 0 when on none).
import type { WaitPolicy } from '../machine/wait-policy.ts';
import { LOCAL_WAIT, LOCK_CLASSES, LOCK_WORDS, SpinLock } from './locks.ts';

/** Owner value of a free frame. */
export const OWNER_NONE = -1;
/**
 * What page_get_owner_and_reference returns when it took no reference (Xen's
 * NULL): the count was zero. Distinct from OWNER_NONE, which a frame can have
 * while referenced (steal_page clears the owner of a page it holds).
 */
export const NO_REFERENCE = -2;
/** Owner of the hypervisor's own frames (DOMID_XEN). */
export const OWNER_XEN = 0x7ff2;

/** The frame is a Xen-heap page shared with its owner (grant or status frame). */
export const PGC_xen_heap = 1;
/** The frame holds its owner's allocation reference (PGC_allocated). */
export const PGC_allocated = 2;

const HDR_NR_FREE = LOCK_WORDS;
/** Header words, a multiple of LOCK_WORDS. */
const HDR_WORDS = 2 * LOCK_WORDS;
const PLANES = 8;

/** Bytes of the SharedArrayBuffer a table of `nrFrames` frames needs. */
export function frameTableBytes(nrFrames: number): number {
  return (HDR_WORDS + PLANES * nrFrames) * 4;
}

export class FrameTable {
  readonly nrFrames: number;
  /** The shared words; hand `sab` to FrameTable.attach in another thread. */
  readonly sab: SharedArrayBuffer;
  readonly owner: Int32Array;
  /** General references: the allocation reference plus one per mapping or temporary use. */
  readonly count: Int32Array;
  /** Writable type references (PGT_writable_page count). */
  readonly typeCount: Int32Array;
  /** PGC_ bits. */
  readonly flags: Int32Array;
  /** Domain page lists (page-list.ts): the next and previous frame, -1 at an end. */
  readonly listNext: Int32Array;
  readonly listPrev: Int32Array;
  /** The domid + 1 of the page list the frame is on, 0 when it is on none. */
  readonly listOf: Int32Array;
  private readonly words: Int32Array;
  private readonly freeList: Int32Array;
  private readonly heapLock: SpinLock;

  /**
   * A new table of `nrFrames` frames: the low `reserved` ones are Xen's, the
   * rest free and handed out lowest first. `policy` is how this thread waits
   * for the heap lock (LOCAL_WAIT in single-thread mode).
   */
  static create(nrFrames: number, reserved: number, policy: WaitPolicy = LOCAL_WAIT): FrameTable {
    const t = new FrameTable(new SharedArrayBuffer(frameTableBytes(nrFrames)), policy);
    const w = t.words;
    t.owner.fill(OWNER_NONE);
    for (let mfn = 0; mfn < reserved; mfn++) {
      t.owner[mfn] = OWNER_XEN;
      t.count[mfn] = 1;
    }
    let n = 0;
    for (let mfn = nrFrames - 1; mfn >= reserved; mfn--) t.freeList[n++] = mfn;
    w[HDR_NR_FREE] = n;
    return t;
  }

  /** Another thread's view of the table in `sab`. */
  static attach(sab: SharedArrayBuffer, policy: WaitPolicy = LOCAL_WAIT): FrameTable {
    return new FrameTable(sab, policy);
  }

  private constructor(sab: SharedArrayBuffer, policy: WaitPolicy) {
    const words = new Int32Array(sab);
    const n = (words.length - HDR_WORDS) / PLANES;
    if (!Number.isInteger(n) || n < 1)
      throw new RangeError(
        `a frame table's buffer holds ${HDR_WORDS} + ${PLANES}n words, got ${words.length}`,
      );
    this.sab = sab;
    this.nrFrames = n;
    this.words = words;
    const plane = (i: number) => new Int32Array(sab, (HDR_WORDS + i * n) * 4, n);
    this.owner = plane(0);
    this.count = plane(1);
    this.typeCount = plane(2);
    this.flags = plane(3);
    this.freeList = plane(4);
    this.listNext = plane(5);
    this.listPrev = plane(6);
    this.listOf = plane(7);
    this.heapLock = new SpinLock(words, 0, LOCK_CLASSES.heap, 0, policy);
  }

  get freeFrames(): number {
    return Atomics.load(this.words, HDR_NR_FREE);
  }

  /**
   * Allocates a frame for `owner` with its allocation reference (count 1),
   * `flags` and `typeCount` type references, or returns -1 when none is free.
   */
  alloc(owner: number, flags = 0, typeCount = 0): number {
    let mfn = -1;
    this.heapLock.lock();
    try {
      const n = this.words[HDR_NR_FREE]!;
      if (n > 0) {
        mfn = this.freeList[n - 1]!;
        this.words[HDR_NR_FREE] = n - 1;
      }
    } finally {
      this.heapLock.unlock();
    }
    if (mfn < 0) return -1;
    Atomics.store(this.owner, mfn, owner);
    Atomics.store(this.typeCount, mfn, typeCount);
    Atomics.store(this.flags, mfn, flags);
    Atomics.store(this.count, mfn, 1);
    return mfn;
  }

  /** Returns a frame whose last reference went to the free list. */
  release(mfn: number): void {
    Atomics.store(this.owner, mfn, OWNER_NONE);
    Atomics.store(this.typeCount, mfn, 0);
    Atomics.store(this.flags, mfn, 0);
    Atomics.store(this.count, mfn, 0);
    this.heapLock.lock();
    try {
      const n = this.words[HDR_NR_FREE]!;
      this.freeList[n] = mfn;
      this.words[HDR_NR_FREE] = n + 1;
    } finally {
      this.heapLock.unlock();
    }
  }

  isValid(mfn: number): boolean {
    return Number.isInteger(mfn) && mfn >= 0 && mfn < this.nrFrames;
  }

  /**
   * page_get_owner_and_reference: takes a general reference unless the count
   * is zero (a free frame, or one on its way there), and returns the owner it
   * had then (OWNER_NONE for a page being stolen: the reference is still
   * taken); NO_REFERENCE, with no reference taken, for a free frame.
   */
  getOwnerAndReference(mfn: number): number {
    const c = this.count;
    let x = Atomics.load(c, mfn);
    for (;;) {
      if (x <= 0) return NO_REFERENCE;
      const seen = Atomics.compareExchange(c, mfn, x, x + 1);
      if (seen === x) return Atomics.load(this.owner, mfn);
      x = seen;
    }
  }

  /** Another general reference to a frame the caller already holds one on. */
  addRef(mfn: number): void {
    Atomics.add(this.count, mfn, 1);
  }

  /** Drops a general reference; returns the count left (0: the caller frees the frame). */
  putRef(mfn: number): number {
    return Atomics.sub(this.count, mfn, 1) - 1;
  }

  /** A writable type reference; returns the new type count. */
  getType(mfn: number): number {
    return Atomics.add(this.typeCount, mfn, 1) + 1;
  }

  /** Drops a writable type reference; returns the type count left. */
  putType(mfn: number): number {
    return Atomics.sub(this.typeCount, mfn, 1) - 1;
  }

  /**
   * Drops the frame's reference only if it is the last one (count 1 to 0, in
   * one compare-exchange); false, with nothing changed, when another is held.
   * A frame at 0 takes no new reference (getOwnerAndReference), so the caller
   * either frees it (release) or gives the reference back (restoreLastRef).
   */
  dropLastRef(mfn: number): boolean {
    return Atomics.compareExchange(this.count, mfn, 1, 0) === 1;
  }

  /** Undoes dropLastRef of a frame nobody could reference since. */
  restoreLastRef(mfn: number): void {
    Atomics.store(this.count, mfn, 1);
  }

  /** test_and_clear_bit on the frame's flags: whether `bit` was set. */
  testAndClear(mfn: number, bit: number): boolean {
    return (Atomics.and(this.flags, mfn, ~bit) & bit) !== 0;
  }

  /**
   * steal_page's cmpxchg (XSA-287's rule): a frame holding exactly two
   * references, its allocation reference and the caller's, drops both in one
   * compare-exchange of the count, 2 -> 0. From then on no reference can be
   * taken (getOwnerAndReference refuses a zero count), so the owner can be
   * cleared next (disown) with nobody able to see it change.
   *
   * PGC_allocated lives in the count word in Xen and in a word of its own
   * here: every writer of it for a domain's page holds the owner's
   * page_alloc_lock (steal_page, assign_pages, Hypervisor.dropAllocation),
   * and so must the caller, so that "two references and allocated" is one
   * state, as Xen's (x & (PGC_count_mask | PGC_allocated)) == (2 | PGC_allocated).
   */
  stealCommit(mfn: number): boolean {
    if ((Atomics.load(this.flags, mfn) & (PGC_allocated | PGC_xen_heap)) !== PGC_allocated) return false;
    if (Atomics.compareExchange(this.count, mfn, 2, 0) !== 2) return false;
    Atomics.and(this.flags, mfn, ~PGC_allocated);
    return true;
  }

  /** steal_page under the owner's page_alloc_lock: type 0, owner none (the count is 0 already). */
  disown(mfn: number): void {
    Atomics.store(this.typeCount, mfn, 0);
    Atomics.store(this.owner, mfn, OWNER_NONE);
  }

  /**
   * assign_pages of a frame with no owner and no reference (a stolen one):
   * the owner and PGC_allocated first, then the count becomes 1, last, so a
   * thread that takes a reference sees the new owner (Xen's smp_wmb).
   */
  assign(mfn: number, owner: number): void {
    Atomics.store(this.owner, mfn, owner);
    Atomics.store(this.flags, mfn, PGC_allocated);
    Atomics.store(this.count, mfn, 1);
  }
}
