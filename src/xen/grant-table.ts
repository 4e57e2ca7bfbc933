// One domain's grant table (reference §4.1): shared frames (v1 or v2 layout),
// status frames while v2, active entries, the maptrack, and the counters
// set_version needs. Frames are Xen-heap pages in machine memory, owned by
// the domain and shared with it read-write.
import {
  GRANT_ENTRY_V1_SIZE,
  GRANT_ENTRY_V2_SIZE,
  GRANT_PER_FRAME_V1,
  GRANT_PER_FRAME_V2,
  GRANT_STATUS_PER_FRAME,
  statusFramesFor,
  XEN_PAGE_SIZE,
} from '../abi/limits.ts';
import { ACT_PER_PAGE, ACT_WORDS, ActiveEntry, initActivePage } from './active-entry.ts';
import { Maptrack } from './maptrack.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

/** No GFN: the frame is not placed in the (HVM) domain's physical map. */
export const NO_GFN = -1;

export class GrantTable {
  version: 1 | 2 = 1;
  readonly maxVersion: 1 | 2;
  readonly maxGrantFrames: number;
  /** MFNs of the shared frames; the length is nr_grant_frames. */
  readonly shared: number[] = [];
  /** MFNs of the status frames (v2 only). */
  readonly status: number[] = [];
  /** Translated domains: the GFN each shared / status frame is placed at, or NO_GFN. */
  readonly sharedGfn: number[] = [];
  readonly statusGfn: number[] = [];
  readonly maptrack: Maptrack;
  /**
   * Active entries with a page: one per possible v1 entry of the frames the
   * table has had, a multiple of ACT_PER_PAGE.
   */
  nrActive = 0;
  /** The hypervisor's private pages, where the active entries are. */
  private readonly pool: PrivatePages;
  /**
   * Root of the active entries' two-level directory: a private page whose
   * slots hold directory pages, whose slots hold the pages of entries
   * ACT_PER_PAGE at a time (0: none yet; page 0 is the pool's header).
   */
  private activeRoot: number;
  /** This thread's views of the entries, made on first use. */
  private views: (ActiveEntry | undefined)[] = [];
  /** Sub-page and transitive copy pins, plus transitive acquisitions in flight (XSA-501). */
  nrV2Ops = 0;

  constructor(
    maxVersion: 1 | 2,
    maxGrantFrames: number,
    maxMaptrackFrames: number,
    vcpus: number,
    random: () => number,
    pool: PrivatePages,
  ) {
    this.maxVersion = maxVersion;
    this.maxGrantFrames = maxGrantFrames;
    this.maptrack = new Maptrack(maxMaptrackFrames, vcpus, random);
    this.pool = pool;
    const root = pool.alloc();
    if (root < 0) throw new RangeError("out of the hypervisor's private memory for a grant table");
    this.activeRoot = root;
  }

  get nrGrantFrames(): number {
    return this.shared.length;
  }

  get nrStatusFrames(): number {
    return this.status.length;
  }

  nrGrantEntries(): number {
    return this.shared.length * (this.version === 1 ? GRANT_PER_FRAME_V1 : GRANT_PER_FRAME_V2);
  }

  /** Machine byte address of entry `ref` (its flags/header word). The caller bounds-checks ref. */
  shaAddr(ref: number): number {
    if (this.version === 1) {
      return (
        this.shared[Math.floor(ref / GRANT_PER_FRAME_V1)]! * XEN_PAGE_SIZE +
        (ref % GRANT_PER_FRAME_V1) * GRANT_ENTRY_V1_SIZE
      );
    }
    return (
      this.shared[Math.floor(ref / GRANT_PER_FRAME_V2)]! * XEN_PAGE_SIZE +
      (ref % GRANT_PER_FRAME_V2) * GRANT_ENTRY_V2_SIZE
    );
  }

  /** Machine byte address of the word holding GTF_reading/GTF_writing for `ref`. */
  statusAddr(ref: number): number {
    if (this.version === 1) return this.shaAddr(ref);
    return (
      this.status[Math.floor(ref / GRANT_STATUS_PER_FRAME)]! * XEN_PAGE_SIZE +
      (ref % GRANT_STATUS_PER_FRAME) * 2
    );
  }

  /** Status frames the current number of grant frames needs in v2. */
  statusFramesNeeded(): number {
    return statusFramesFor(this.shared.length);
  }

  /** The active entry of `ref`, which the caller has checked is below nrActive. */
  activeEntry(ref: number): ActiveEntry {
    const v = this.views[ref];
    if (v !== undefined) return v;
    const w = this.pool.words;
    const k = Math.floor(ref / ACT_PER_PAGE);
    const dir = w[this.activeRoot * PAGE_WORDS + Math.floor(k / PAGE_WORDS)] ?? 0;
    const page = dir === 0 ? 0 : w[dir * PAGE_WORDS + (k % PAGE_WORDS)]!;
    if (!(ref >= 0 && ref < this.nrActive) || page === 0)
      throw new RangeError(`grant ref ${ref} has no active entry (the table has ${this.nrActive})`);
    const act = new ActiveEntry(w, page * PAGE_WORDS + (ref % ACT_PER_PAGE) * ACT_WORDS);
    this.views[ref] = act;
    return act;
  }

  /** The active entry of `ref`, or undefined when the table has none for it (introspection). */
  activeEntryIfAny(ref: number): ActiveEntry | undefined {
    return Number.isInteger(ref) && ref >= 0 && ref < this.nrActive ? this.activeEntry(ref) : undefined;
  }

  /** Every active entry the table has, ref 0 first. */
  *activeEntries(): IterableIterator<ActiveEntry> {
    for (let ref = 0; ref < this.nrActive; ref++) yield this.activeEntry(ref);
  }

  /**
   * Gives the first `entries` refs their active entries (gnttab_grow_table's
   * xzalloc of active pages): false when the private pages ran out, or the
   * directory is full; the pages had so far stay the table's.
   */
  ensureActive(entries: number): boolean {
    const w = this.pool.words;
    while (this.nrActive < entries) {
      const k = this.nrActive / ACT_PER_PAGE;
      if (k >= PAGE_WORDS * PAGE_WORDS) return false;
      const slot = this.activeRoot * PAGE_WORDS + Math.floor(k / PAGE_WORDS);
      let dir = w[slot]!;
      if (dir === 0) {
        dir = this.pool.alloc();
        if (dir < 0) return false;
        w[slot] = dir;
      }
      const page = this.pool.alloc();
      if (page < 0) return false;
      initActivePage(w, page);
      w[dir * PAGE_WORDS + (k % PAGE_WORDS)] = page;
      this.nrActive += ACT_PER_PAGE;
    }
    return true;
  }

  /** grant_table_destroy: the active entries' pages and their directory go back to the pool. */
  freeActive(): void {
    if (this.activeRoot === 0) return;
    const w = this.pool.words;
    const root = this.activeRoot * PAGE_WORDS;
    for (let i = 0; i < PAGE_WORDS; i++) {
      const dir = w[root + i]!;
      if (dir === 0) continue;
      for (let j = 0; j < PAGE_WORDS; j++) {
        const page = w[dir * PAGE_WORDS + j]!;
        if (page !== 0) this.pool.free(page);
      }
      this.pool.free(dir);
    }
    this.pool.free(this.activeRoot);
    this.activeRoot = 0;
    this.nrActive = 0;
    this.views = [];
  }
}
