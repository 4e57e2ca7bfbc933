// A grant table's lists of frames (gt->shared_raw / gt->status and, for a
// translated domain, where each is placed in its physical map), in the
// hypervisor's private pages so that every hypervisor thread sees one list.
// A table's four lists share one directory of pages: index i of every list is
// one record (FRAME_LIST_WORDS words), so a frame and its GFN sit together.
// Each list's length is a word of the table's header. A FrameList is one
// thread's view of one list; lengths change only under the grant table's
// write lock (growth, set_version), as Xen's nr_grant_frames does.
import type { PageDirectory } from './page-directory.ts';
import { PAGE_WORDS } from './private-pages.ts';

/** Words of one index's record: shared MFN, shared GFN, status MFN, status GFN. */
export const FRAME_LIST_WORDS = 4;
const PER_PAGE = PAGE_WORDS / FRAME_LIST_WORDS;

/** Which list of the record. */
export const LIST_SHARED = 0;
export const LIST_SHARED_GFN = 1;
export const LIST_STATUS = 2;
export const LIST_STATUS_GFN = 3;

export class FrameList {
  private readonly pages: PageDirectory;
  private readonly column: number;
  /** The header word holding this list's length (a word of its own once retired). */
  private lengthWords: Int32Array;
  private lengthAt: number;
  private readonly capacity: number;
  private readonly words: Int32Array;

  constructor(pages: PageDirectory, column: number, lengthAt: number, capacity: number) {
    this.pages = pages;
    this.column = column;
    this.lengthAt = lengthAt;
    this.capacity = capacity;
    this.words = pages.pool.words;
    this.lengthWords = this.words;
  }

  get length(): number {
    return this.lengthWords[this.lengthAt]!;
  }

  /** The table is gone (its pages freed): this view is an empty list from now on. */
  retire(): void {
    this.lengthWords = new Int32Array(1);
    this.lengthAt = 0;
  }

  private at(i: number): number {
    const page = this.pages.page(Math.floor(i / PER_PAGE));
    return page * PAGE_WORDS + (i % PER_PAGE) * FRAME_LIST_WORDS + this.column;
  }

  /** Entry i, which the caller has checked is below length. */
  get(i: number): number {
    return this.words[this.at(i)]!;
  }

  /** Entry i, or undefined beyond the list (as an array's). */
  maybe(i: number): number | undefined {
    return Number.isInteger(i) && i >= 0 && i < this.length ? this.get(i) : undefined;
  }

  set(i: number, v: number): void {
    this.words[this.at(i)] = v;
  }

  /**
   * Entry i with Atomics, for a GFN column: written under the domain's P2M
   * lock, read by holders of the grant-table lock alone (setup_table,
   * get_status_frames), as x86 Xen reads a frame's GFN from the M2P.
   */
  load(i: number): number {
    return Atomics.load(this.words, this.at(i));
  }

  store(i: number, v: number): void {
    Atomics.store(this.words, this.at(i), v);
  }

  /** Appends v; false when the list is at its capacity or no private page could be had. */
  push(v: number): boolean {
    const n = this.length;
    if (n >= this.capacity) return false;
    const k = Math.floor(n / PER_PAGE);
    if (this.pages.page(k) === 0 && this.pages.add(k) < 0) return false;
    this.words[this.at(n)] = v;
    this.lengthWords[this.lengthAt] = n + 1;
    return true;
  }

  /** Whether a push of `n` more could find pages (checked before an all-or-nothing growth). */
  reserve(n: number): boolean {
    const want = this.length + n;
    if (want > this.capacity) return false;
    for (let k = 0; k * PER_PAGE < want; k++)
      if (this.pages.page(k) === 0 && this.pages.add(k) < 0) return false;
    return true;
  }

  /** Drops the last entry and returns it. */
  pop(): number | undefined {
    const n = this.length;
    if (n === 0) return undefined;
    const v = this.get(n - 1);
    this.lengthWords[this.lengthAt] = n - 1;
    return v;
  }

  /** Empties the list (its pages stay, for a table that may grow again). */
  clear(): void {
    this.lengthWords[this.lengthAt] = 0;
  }

  fill(v: number): void {
    for (let i = 0; i < this.length; i++) this.set(i, v);
  }

  indexOf(v: number): number {
    for (let i = 0; i < this.length; i++) if (this.get(i) === v) return i;
    return -1;
  }

  includes(v: number): boolean {
    return this.indexOf(v) >= 0;
  }

  toArray(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.get(i));
    return out;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }
}
