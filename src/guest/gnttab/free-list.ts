// The free list of grant references (guest-side.md §3.1-§3.3, §2.6, §2.7):
// a singly linked list through one link cell per ref, a bitmap of free refs,
// the last free ref and the "tail pointer" that remembers where the run of
// consecutive free refs ending at the table's last ref begins (for
// alloc_grant_reference_seq), private chains of allocated refs through the
// same link cells, and the free callbacks.
//
// Growing the table is the driver's business (hypercalls); the list asks for
// it through `expand` and is told of new refs through `grow`. All state is
// private to the domain's own thread: nothing here is shared with Xen.
import { GNTTAB_NR_RESERVED_ENTRIES } from '../../abi/limits.ts';
import { EINVAL, ENOSPC } from './errno.ts';

/** Terminates chains of refs (GNTTAB_LIST_END); also INVALID_GRANT_REF. */
export const GNTTAB_LIST_END = 0xffff_ffff;
export const INVALID_GRANT_REF = GNTTAB_LIST_END;

/** A caller-owned chain of allocated refs (Linux's `grant_ref_t *private_head`). */
export interface GrantRefPool {
  head: number;
}

/** struct gnttab_free_callback: fires once when `count` refs are free; re-register to fire again. */
export interface GnttabFreeCallback {
  next: GnttabFreeCallback | null;
  fn: ((arg: unknown) => void) | null;
  arg: unknown;
  count: number;
}

export function newFreeCallback(): GnttabFreeCallback {
  return { next: null, fn: null, arg: undefined, count: 0 };
}

/** The tail pointer names a link cell: the head variable, a ref's cell, or nothing (NULL). */
const HEAD = -1;
type TailPtr = number | null;

export class GrantFreeList {
  private readonly link: Uint32Array;
  private readonly bitmap: Uint8Array;
  private freeHead = GNTTAB_LIST_END;
  private lastFree = GNTTAB_LIST_END;
  private tailPtr: TailPtr = null;
  private count = 0;
  private size = 0;
  private callbacks: GnttabFreeCallback | null = null;
  /** Callbacks whose condition held, to be run once the current list operation is over. */
  private readonly fired: GnttabFreeCallback[] = [];
  private depth = 0;
  private running = false;
  /** Asks the driver for `reqEntries` more refs (gnttab_expand): 0, or -ENOSPC / another -errno. */
  private readonly expand: (reqEntries: number) => number;

  /** `capacity`: the most refs the table can ever have (max frames x 512). */
  constructor(capacity: number, expand: (reqEntries: number) => number) {
    this.link = new Uint32Array(capacity);
    this.bitmap = new Uint8Array(capacity);
    this.expand = expand;
  }

  /** gnttab_free_count. */
  get freeCount(): number {
    return this.count;
  }

  /** gnttab_size: refs the list knows of (free or not). */
  get tableSize(): number {
    return this.size;
  }

  isFree(ref: number): boolean {
    return ref < this.size && this.bitmap[ref] === 1;
  }

  // ---- locking: callbacks run after the outermost operation, as Linux callers' "schedule work" -----

  private enter(): void {
    this.depth++;
  }

  private leave(): void {
    if (--this.depth > 0 || this.running) return;
    this.running = true;
    try {
      for (let cb = this.fired.shift(); cb !== undefined; cb = this.fired.shift()) {
        const fn = cb.fn;
        if (fn !== null) fn(cb.arg);
      }
    } finally {
      this.running = false;
    }
  }

  private locked<T>(f: () => T): T {
    this.enter();
    try {
      return f();
    } finally {
      this.leave();
    }
  }

  // ---- list primitives -----------------------------------------------------------------------

  private cell(p: number): number {
    return p === HEAD ? this.freeHead : this.link[p]!;
  }

  private setCell(p: number, v: number): void {
    if (p === HEAD) this.freeHead = v;
    else this.link[p] = v;
  }

  private checkRef(ref: number, what: string): void {
    if (!Number.isInteger(ref) || ref < 0 || ref >= this.size)
      throw new RangeError(`BUG: ${what} of grant ref ${ref} outside the table (size ${this.size})`);
  }

  /** gnttab_set_free: refs start..start+n-1 appended ascending at the tail. */
  private setFree(start: number, n: number): void {
    let i = start;
    for (; i < start + n - 1; i++) this.link[i] = i + 1;
    this.link[i] = GNTTAB_LIST_END;
    if (this.count === 0) {
      this.freeHead = start;
      this.tailPtr = HEAD;
    } else {
      this.link[this.lastFree] = start;
    }
    this.count += n;
    this.lastFree = i;
    this.bitmap.fill(1, start, start + n);
  }

  /** The first use: refs 8..n-1 free. */
  initFree(n: number): void {
    this.size = n;
    this.setFree(GNTTAB_NR_RESERVED_ENTRIES, n - GNTTAB_NR_RESERVED_ENTRIES);
  }

  /**
   * grow_gnttab_list: the driver mapped frames for `extra` more refs. When no
   * tail run was known, the new refs start one: the tail pointer names the cell
   * that now holds the first of them. (Linux points it at the first new ref's
   * own cell, which skips that ref and, for a request of a whole number of
   * frames, would take refs past the table; we name the right cell.)
   */
  grow(extra: number): void {
    this.locked(() => {
      const start = this.size;
      const hadFree = this.count > 0;
      const oldLast = this.lastFree;
      this.setFree(start, extra);
      if (this.tailPtr === null) this.tailPtr = hadFree ? oldLast : HEAD;
      this.size += extra;
      this.checkCallbacks();
    });
  }

  /** get_free_entries: `count` refs off the head as a chain ending in LIST_END; the first, or -errno. */
  getFreeEntries(count: number): number {
    if (!Number.isInteger(count) || count < 1) return -EINVAL;
    return this.locked(() => {
      if (this.count < count) {
        const rc = this.expand(count - this.count);
        if (rc < 0) return rc;
      }
      let head = this.freeHead;
      const ref = head;
      this.count -= count;
      for (let left = count; left-- > 0; ) {
        this.bitmap[head] = 0;
        if (this.tailPtr === head) this.tailPtr = HEAD;
        if (left > 0) head = this.link[head]!;
      }
      this.freeHead = this.link[head]!;
      this.link[head] = GNTTAB_LIST_END;
      if (this.count === 0) {
        this.lastFree = GNTTAB_LIST_END;
        this.tailPtr = null;
      }
      return ref;
    });
  }

  private seqEntryCount(): number {
    if (this.lastFree === GNTTAB_LIST_END || this.tailPtr === null) return 0;
    const first = this.cell(this.tailPtr);
    if (first === GNTTAB_LIST_END) return 0;
    return this.lastFree - first + 1;
  }

  private nextBit(from: number, value: number): number {
    let i = from;
    while (i < this.size && this.bitmap[i] !== value) i++;
    return Math.min(i, this.size);
  }

  /** get_free_seq: rebuilds the list ascending from the bitmap and carves the first run of `count`. */
  private getFreeSeq(count: number): number {
    let ret = -ENOSPC;
    this.tailPtr = HEAD;
    let last: number = HEAD;
    for (let from = this.nextBit(0, 1); from < this.size; ) {
      const to = this.nextBit(from + 1, 0);
      if (ret < 0 && to - from >= count) {
        ret = from;
        this.bitmap.fill(0, ret, ret + count);
        from += count;
        this.count -= count;
        if (from === to) {
          from = this.nextBit(to + 1, 1);
          continue;
        }
      }
      while (from < to) {
        this.setCell(last, from);
        last = from;
        this.lastFree = from;
        from++;
      }
      if (to < this.size) this.tailPtr = to - 1;
      from = this.nextBit(to + 1, 1);
    }
    this.setCell(last, GNTTAB_LIST_END);
    if (this.lastFree !== this.size - 1) this.tailPtr = null;
    return ret;
  }

  /** get_free_entries_seq: `count` consecutive refs; the first, or -errno. */
  getFreeEntriesSeq(count: number): number {
    if (!Number.isInteger(count) || count < 1) return -EINVAL;
    return this.locked(() => {
      if (this.count < count) {
        const rc = this.expand(count - this.count);
        if (rc < 0) return rc;
      }
      if (this.seqEntryCount() < count) {
        const found = this.getFreeSeq(count);
        if (found >= 0) return found;
        const rc = this.expand(count - this.seqEntryCount());
        if (rc < 0) return rc;
      }
      const tp = this.tailPtr!;
      const ret = this.cell(tp);
      const last = ret + count - 1;
      this.setCell(tp, this.link[last]!);
      // Taking the whole tail run leaves the list ending at the cell named by
      // the tail pointer. Linux keeps gnttab_last_free naming the ref just
      // taken, so the next growth links the new refs from an allocated ref's
      // cell and they never join the list (while counted free); we move
      // last_free to the ref that now ends the list.
      if (last === this.lastFree) this.lastFree = tp === HEAD ? GNTTAB_LIST_END : tp;
      this.count -= count;
      if (this.count === 0) this.tailPtr = null;
      this.bitmap.fill(0, ret, ret + count);
      return ret;
    });
  }

  /** put_free_entry_locked: reserved refs are ignored; a double free is a BUG (Linux corrupts its list). */
  private putLocked(ref: number): void {
    if (ref < GNTTAB_NR_RESERVED_ENTRIES) return;
    this.checkRef(ref, 'free');
    if (this.bitmap[ref] === 1) throw new Error(`BUG: grant ref ${ref} freed twice`);
    this.link[ref] = this.freeHead;
    this.freeHead = ref;
    if (this.count === 0) this.lastFree = ref;
    if (this.tailPtr === HEAD) this.tailPtr = ref;
    this.count++;
    this.bitmap[ref] = 1;
  }

  /** put_free_entry / gnttab_free_grant_reference. */
  putFreeEntry(ref: number): void {
    this.locked(() => {
      this.putLocked(ref);
      this.checkCallbacks();
    });
  }

  /** gnttab_free_grant_references: every ref of a private chain. */
  freeChain(head: number): void {
    this.locked(() => {
      let h = head;
      while (h !== GNTTAB_LIST_END) {
        this.checkRef(h, 'free');
        const next = this.link[h]!;
        this.putLocked(h);
        h = next;
      }
      this.checkCallbacks();
    });
  }

  /** gnttab_free_grant_reference_seq: descending, so the head ends up ascending. */
  freeSeq(first: number, count: number): void {
    this.locked(() => {
      for (let i = count; i > 0; i--) this.putLocked(first + i - 1);
      this.checkCallbacks();
    });
  }

  /** gnttab_claim_grant_reference: pops one ref of a private chain, or -ENOSPC. */
  claim(pool: GrantRefPool): number {
    const g = pool.head;
    if (g === GNTTAB_LIST_END) return -ENOSPC;
    this.checkRef(g, 'claim');
    pool.head = this.link[g]!;
    return g;
  }

  /** gnttab_release_grant_reference: pushes a ref back on a private chain. */
  release(pool: GrantRefPool, ref: number): void {
    this.checkRef(ref, 'release');
    this.link[ref] = pool.head;
    pool.head = ref;
  }

  // ---- callbacks ------------------------------------------------------------------------------

  private checkCallbacks(): void {
    if (this.callbacks === null) return;
    let cb: GnttabFreeCallback | null = this.callbacks;
    this.callbacks = null;
    while (cb !== null) {
      const next: GnttabFreeCallback | null = cb.next;
      if (this.count >= cb.count) {
        cb.next = null;
        this.fired.push(cb);
      } else {
        cb.next = this.callbacks;
        this.callbacks = cb;
      }
      cb = next;
    }
  }

  /** gnttab_request_free_callback: a no-op if `cb` is queued already (fn, arg, count unchanged). */
  requestFreeCallback(cb: GnttabFreeCallback, fn: (arg: unknown) => void, arg: unknown, count: number): void {
    this.locked(() => {
      for (let c = this.callbacks; c !== null; c = c.next) if (c === cb) return;
      cb.fn = fn;
      cb.arg = arg;
      cb.count = count & 0xffff;
      cb.next = this.callbacks;
      this.callbacks = cb;
      this.checkCallbacks();
    });
  }

  /** gnttab_cancel_free_callback. */
  cancelFreeCallback(cb: GnttabFreeCallback): void {
    this.locked(() => {
      let prev: GnttabFreeCallback | null = null;
      for (let c = this.callbacks; c !== null; prev = c, c = c.next) {
        if (c === cb) {
          if (prev === null) this.callbacks = cb.next;
          else prev.next = cb.next;
          cb.next = null;
          return;
        }
      }
    });
  }

  /** True while cb waits on the list. */
  callbackQueued(cb: GnttabFreeCallback): boolean {
    for (let c = this.callbacks; c !== null; c = c.next) if (c === cb) return true;
    return false;
  }
}
