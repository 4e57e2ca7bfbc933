// The hypervisor's private pages: memory of Xen's own, in a SharedArrayBuffer
// that every hypervisor thread views and no guest can reach, from which the
// fixed-layout records of Xen's bookkeeping are carved a page at a time (what
// alloc_xenheap_pages and xzalloc give gnttab_grow_table for active entries).
// It is apart from machine memory so that guests' frame numbers and
// free-frame counts are what Xen's would be. Running out is Xen's -ENOMEM.
//
// The buffer is allocated at its full size, zeroed: the system gives it
// memory only as pages are first touched, so a host pays for the bookkeeping
// it uses. (A growable SharedArrayBuffer would need length-tracking views,
// which Node 20's V8 reads some 20 times slower than fixed ones.)
//
// Layout, in Int32 words: page 0 is the header: the pool lock, the count of
// freed pages, the head of their list (linked through each one's first word,
// END ends it), the next never-used page, and the most pages the pool may
// have. Pages are handed out zeroed. The lock is a leaf (class heap's rank):
// nothing is taken under it.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { WaitPolicy } from '../machine/wait-policy.ts';
import { LOCAL_WAIT, LOCK_CLASSES, LOCK_WORDS, SpinLock } from './locks.ts';

/** Int32 words of a page. */
export const PAGE_WORDS = XEN_PAGE_SIZE / 4;

const HDR_NR_FREED = LOCK_WORDS;
const HDR_HEAD = LOCK_WORDS + 1;
const HDR_NEXT = LOCK_WORDS + 2;
const HDR_MAX = LOCK_WORDS + 3;
const END = -1;
/** The largest pool: 1 GiB. */
const MAX_PAGES = 0x4_0000;

/**
 * The pool's size for a machine of `nrFrames` frames: half as many pages, 16
 * MiB at least (a grant frame's active entries take 8 pages, a maptrack frame
 * one, a domain about 20), 256 MiB at most.
 */
export function defaultPrivatePages(nrFrames: number): number {
  return Math.min(0x1_0000, Math.max(4096, Math.ceil(nrFrames / 2)));
}

export class PrivatePages {
  /** The most pages a pool may have (HypervisorOptions.privatePages). */
  static readonly MAX_PAGES = MAX_PAGES;
  readonly sab: SharedArrayBuffer;
  /** Every page's words: page p starts at p * PAGE_WORDS. */
  readonly words: Int32Array;
  private readonly lock: SpinLock;
  /** How this thread waits for the locks in these pages (the views made over them use it too). */
  readonly policy: WaitPolicy;

  /** A pool of `maxPages` pages (page 0 is its header). */
  static create(maxPages: number, policy: WaitPolicy = LOCAL_WAIT): PrivatePages {
    if (!Number.isInteger(maxPages) || maxPages < 2 || maxPages > MAX_PAGES)
      throw new RangeError(`a pool has 2 to ${MAX_PAGES} pages, got ${maxPages}`);
    const sab = new SharedArrayBuffer(maxPages * XEN_PAGE_SIZE);
    const p = new PrivatePages(sab, policy);
    p.words[HDR_HEAD] = END;
    p.words[HDR_NEXT] = 1;
    p.words[HDR_MAX] = maxPages;
    return p;
  }

  /** Another thread's view of the pool in `sab`. */
  static attach(sab: SharedArrayBuffer, policy: WaitPolicy = LOCAL_WAIT): PrivatePages {
    return new PrivatePages(sab, policy);
  }

  private constructor(sab: SharedArrayBuffer, policy: WaitPolicy) {
    if (sab.byteLength % XEN_PAGE_SIZE !== 0 || sab.byteLength < XEN_PAGE_SIZE)
      throw new RangeError(`a pool's buffer holds whole pages; got ${sab.byteLength} bytes`);
    this.sab = sab;
    this.words = new Int32Array(sab);
    this.lock = new SpinLock(this.words, 0, LOCK_CLASSES.heap, 1, policy);
    this.policy = policy;
  }

  /** The most pages the pool may have, its header included. */
  get maxPages(): number {
    return Atomics.load(this.words, HDR_MAX);
  }

  /** Pages that can still be handed out. */
  get freePages(): number {
    const w = this.words;
    return Atomics.load(w, HDR_NR_FREED) + Atomics.load(w, HDR_MAX) - Atomics.load(w, HDR_NEXT);
  }

  /** Pages in use (handed out and not freed). */
  get usedPages(): number {
    return this.maxPages - 1 - this.freePages;
  }

  /** A zeroed page, or -1 when the pool is used up. */
  alloc(): number {
    const w = this.words;
    let page = END;
    let fresh = false;
    this.lock.lock();
    try {
      page = w[HDR_HEAD]!;
      if (page !== END) {
        w[HDR_HEAD] = w[page * PAGE_WORDS]!;
        w[HDR_NR_FREED]!--;
      } else if (w[HDR_NEXT]! < w[HDR_MAX]!) {
        page = w[HDR_NEXT]!;
        w[HDR_NEXT] = page + 1;
        fresh = true;
      }
    } finally {
      this.lock.unlock();
    }
    // A page never used is zero already; a freed one keeps what it held.
    if (page !== END && !fresh) w.fill(0, page * PAGE_WORDS, (page + 1) * PAGE_WORDS);
    return page;
  }

  /** Gives a page back (the caller no longer uses it, nor does any other thread). */
  free(page: number): void {
    const w = this.words;
    if (!(Number.isInteger(page) && page >= 1 && page < Atomics.load(w, HDR_NEXT)))
      throw new RangeError(`no private page ${page} in use`);
    this.lock.lock();
    try {
      w[page * PAGE_WORDS] = w[HDR_HEAD]!;
      w[HDR_HEAD] = page;
      w[HDR_NR_FREED]!++;
    } finally {
      this.lock.unlock();
    }
  }
}
