// A domain's page list (d->page_list, with tot_pages as its length): the RAM
// frames it owns, linked through the frame table's list planes as Xen links
// struct page_info, so that every hypervisor thread walks one list. Its head,
// tail and length are words of the domain's record. Changes happen under the
// domain's page_alloc_lock in Xen; here under the same rule once threads enter
// the hypervisor on their own.
import type { FrameTable } from './frame-table.ts';

const END = -1;

/** The tag of d's page list (its RAM). */
export function pageListTag(domid: number): number {
  return domid + 1;
}

/** The tag of d's paging pool (Xen's frames reserved for its translation tables). */
export function pagingPoolTag(domid: number): number {
  return -(domid + 1);
}

export class PageList implements Iterable<number> {
  private readonly frames: FrameTable;
  private readonly words: Int32Array;
  private readonly headAt: number;
  private readonly tailAt: number;
  private readonly sizeAt: number;
  /** What the frames' list plane holds for a frame on this list (never 0). */
  private readonly tag: number;

  /**
   * A view of the list whose head, tail and length are words[at], [at + 1]
   * and [at + 2]; `tag` names the list in the frame table (a domain's page
   * list is its domid + 1, see pageListTag).
   */
  constructor(frames: FrameTable, tag: number, words: Int32Array, at: number) {
    this.frames = frames;
    this.words = words;
    this.headAt = at;
    this.tailAt = at + 1;
    this.sizeAt = at + 2;
    this.tag = tag;
  }

  /** Makes the list empty (a new domain's). */
  init(): void {
    this.words[this.headAt] = END;
    this.words[this.tailAt] = END;
    this.words[this.sizeAt] = 0;
  }

  /** tot_pages. */
  get size(): number {
    return this.words[this.sizeAt]!;
  }

  has(mfn: number): boolean {
    return this.frames.isValid(mfn) && this.frames.listOf[mfn] === this.tag;
  }

  /** page_list_add_tail; a frame already on a list stays where it is. */
  add(mfn: number): void {
    const f = this.frames;
    if (f.listOf[mfn] !== 0) return;
    const tail = this.words[this.tailAt]!;
    f.listOf[mfn] = this.tag;
    f.listNext[mfn] = END;
    f.listPrev[mfn] = tail;
    if (tail === END) this.words[this.headAt] = mfn;
    else f.listNext[tail] = mfn;
    this.words[this.tailAt] = mfn;
    this.words[this.sizeAt]!++;
  }

  /** page_list_del; nothing when the frame is not on this list. */
  delete(mfn: number): boolean {
    if (!this.has(mfn)) return false;
    const f = this.frames;
    const next = f.listNext[mfn]!;
    const prev = f.listPrev[mfn]!;
    if (prev === END) this.words[this.headAt] = next;
    else f.listNext[prev] = next;
    if (next === END) this.words[this.tailAt] = prev;
    else f.listPrev[next] = prev;
    f.listOf[mfn] = 0;
    this.words[this.sizeAt]!--;
    return true;
  }

  /** Takes the frame at the tail off the list, or returns -1 when it is empty. */
  pop(): number {
    const tail = this.words[this.tailAt]!;
    if (tail === END) return -1;
    this.delete(tail);
    return tail;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    let n = 0;
    for (let mfn = this.words[this.headAt]!; mfn !== END; mfn = this.frames.listNext[mfn]!) {
      // A corrupted list must not hang its reader.
      if (++n > this.frames.nrFrames) return;
      yield mfn;
    }
  }
}
