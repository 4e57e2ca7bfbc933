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
import { PageDirectory } from './page-directory.ts';
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
  /** The active entries' pages, in the hypervisor's private pages. */
  private readonly activePages: PageDirectory;
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
    this.maptrack = new Maptrack(maxMaptrackFrames, vcpus, random, pool);
    this.activePages = new PageDirectory(pool);
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
    const page = ref >= 0 && ref < this.nrActive ? this.activePages.page(Math.floor(ref / ACT_PER_PAGE)) : 0;
    if (page === 0)
      throw new RangeError(`grant ref ${ref} has no active entry (the table has ${this.nrActive})`);
    const act = new ActiveEntry(
      this.activePages.pool.words,
      page * PAGE_WORDS + (ref % ACT_PER_PAGE) * ACT_WORDS,
    );
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
    while (this.nrActive < entries) {
      const page = this.activePages.add(this.nrActive / ACT_PER_PAGE);
      if (page < 0) return false;
      initActivePage(this.activePages.pool.words, page);
      this.nrActive += ACT_PER_PAGE;
    }
    return true;
  }

  /** grant_table_destroy: the active entries and the maptrack give their pages back. */
  destroy(): void {
    this.activePages.free();
    this.maptrack.destroy();
    this.nrActive = 0;
    this.views = [];
  }
}
