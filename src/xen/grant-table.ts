// One domain's grant table (reference §4.1): shared frames (v1 or v2 layout),
// status frames while v2, active entries, the maptrack, and the counters
// set_version needs. Frames are Xen-heap pages in machine memory, owned by
// the domain and shared with it read-write. The table's own state is in the
// hypervisor's private pages: a header page (the lock, the version, the list
// lengths and counters, where the rest is), the frame lists, the active
// entries and the maptrack. This object is one thread's view of them.
import {
  GRANT_ENTRY_V1_SIZE,
  GRANT_ENTRY_V2_SIZE,
  GRANT_PER_FRAME_V1,
  GRANT_PER_FRAME_V2,
  GRANT_STATUS_PER_FRAME,
  statusFramesFor,
  XEN_PAGE_SIZE,
} from '../abi/limits.ts';
import type { WaitPolicy } from '../machine/wait-policy.ts';
import { ACT_PER_PAGE, ACT_WORDS, ActiveEntry, initActivePage } from './active-entry.ts';
import { FrameList, LIST_SHARED, LIST_SHARED_GFN, LIST_STATUS, LIST_STATUS_GFN } from './frame-list.ts';
import { LOCK_CLASSES, LOCK_WORDS, RwLock } from './locks.ts';
import { Maptrack } from './maptrack.ts';
import { PageDirectory } from './page-directory.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

/** No GFN: the frame is not placed in the (HVM) domain's physical map. */
export const NO_GFN = -1;

// ---- the table's header page, in Int32 words (the one definition) ----
/** The grant table's rwlock (gt->lock): the first LOCK_WORDS words. */
export const GT_LOCK = 0;
const GT_VERSION = LOCK_WORDS;
const GT_NR_SHARED = LOCK_WORDS + 1;
const GT_NR_SHARED_GFN = LOCK_WORDS + 2;
const GT_NR_STATUS = LOCK_WORDS + 3;
const GT_NR_STATUS_GFN = LOCK_WORDS + 4;
const GT_NR_V2_OPS = LOCK_WORDS + 5;
const GT_NR_ACTIVE = LOCK_WORDS + 6;
const GT_MAX_VERSION = LOCK_WORDS + 7;
const GT_MAX_GRANT_FRAMES = LOCK_WORDS + 8;
const GT_ACTIVE_ROOT = LOCK_WORDS + 9;
const GT_FRAMES_ROOT = LOCK_WORDS + 10;
/** The maptrack's header page. */
const GT_MAPTRACK = LOCK_WORDS + 11;

export class GrantTable {
  readonly maxVersion: 1 | 2;
  readonly maxGrantFrames: number;
  /** MFNs of the shared frames; the length is nr_grant_frames. */
  readonly shared: FrameList;
  /** MFNs of the status frames (v2 only). */
  readonly status: FrameList;
  /** Translated domains: the GFN each shared / status frame is placed at, or NO_GFN. */
  readonly sharedGfn: FrameList;
  readonly statusGfn: FrameList;
  readonly maptrack: Maptrack;
  /** The header's page among the hypervisor's private pages. */
  readonly headerPage: number;
  /** The header's words (a copy of this view's own once the table is gone). */
  private words: Int32Array;
  private hdr: number;
  /** The active entries' pages. */
  private readonly activePages: PageDirectory;
  /** The frame lists' pages. */
  private readonly framePages: PageDirectory;
  /** This thread's views of the entries, made on first use. */
  private views: (ActiveEntry | undefined)[] = [];

  /** A new, empty table (grant_table_init) in `pool`. */
  static create(
    maxVersion: 1 | 2,
    maxGrantFrames: number,
    maxMaptrackFrames: number,
    vcpus: number,
    random: () => number,
    pool: PrivatePages,
  ): GrantTable {
    const header = pool.alloc();
    if (header < 0) throw new RangeError("out of the hypervisor's private memory for a grant table");
    const w = pool.words;
    const hdr = header * PAGE_WORDS;
    w[hdr + GT_VERSION] = 1;
    w[hdr + GT_MAX_VERSION] = maxVersion;
    w[hdr + GT_MAX_GRANT_FRAMES] = maxGrantFrames;
    // grant_table_init's failure path: what was allocated goes back.
    let maptrack: Maptrack | null = null;
    let active: PageDirectory | null = null;
    try {
      maptrack = Maptrack.create(maxMaptrackFrames, vcpus, random, pool);
      w[hdr + GT_MAPTRACK] = maptrack.headerPage;
      active = new PageDirectory(pool);
      w[hdr + GT_ACTIVE_ROOT] = active.root;
      w[hdr + GT_FRAMES_ROOT] = new PageDirectory(pool).root;
    } catch (err) {
      active?.free();
      maptrack?.destroy();
      w.fill(0, hdr, hdr + PAGE_WORDS);
      pool.free(header);
      throw err;
    }
    return new GrantTable(pool, header, random);
  }

  /** A view of the table whose header is private page `headerPage` of `pool`. */
  /**
   * gt->lock, the table's rwlock (percpu_rwlock_t): readers map, unmap, copy
   * and query; writers grow, set the version and swap. Its key, the header
   * page, is its active entries' too (the lock checker pairs them by key).
   */
  readonly lock: RwLock;
  private readonly policy: WaitPolicy;

  constructor(pool: PrivatePages, headerPage: number, random: () => number) {
    this.headerPage = headerPage;
    this.words = pool.words;
    this.hdr = headerPage * PAGE_WORDS;
    const w = this.words;
    this.maxVersion = w[this.hdr + GT_MAX_VERSION] as 1 | 2;
    this.maxGrantFrames = w[this.hdr + GT_MAX_GRANT_FRAMES]!;
    this.maptrack = new Maptrack(pool, w[this.hdr + GT_MAPTRACK]!, random);
    this.lock = new RwLock(w, this.hdr + GT_LOCK, LOCK_CLASSES.grantTable, headerPage, pool.policy);
    this.policy = pool.policy;
    this.activePages = new PageDirectory(pool, w[this.hdr + GT_ACTIVE_ROOT]!);
    this.framePages = new PageDirectory(pool, w[this.hdr + GT_FRAMES_ROOT]!);
    const list = (column: number, length: number, capacity: number) =>
      new FrameList(this.framePages, column, this.hdr + length, capacity);
    const maxStatus = statusFramesFor(this.maxGrantFrames);
    this.shared = list(LIST_SHARED, GT_NR_SHARED, this.maxGrantFrames);
    this.sharedGfn = list(LIST_SHARED_GFN, GT_NR_SHARED_GFN, this.maxGrantFrames);
    this.status = list(LIST_STATUS, GT_NR_STATUS, maxStatus);
    this.statusGfn = list(LIST_STATUS_GFN, GT_NR_STATUS_GFN, maxStatus);
  }

  /** The layout in use (gt->gt_version). */
  get version(): 1 | 2 {
    return this.words[this.hdr + GT_VERSION] as 1 | 2;
  }
  set version(v: 1 | 2) {
    this.words[this.hdr + GT_VERSION] = v;
  }

  /** Sub-page and transitive copy pins, plus transitive acquisitions in flight (XSA-501). */
  get nrV2Ops(): number {
    return Atomics.load(this.words, this.hdr + GT_NR_V2_OPS);
  }

  /** Counts v2 operations in or out: an atomic add, as copies of several threads change it under the read lock. */
  addV2Ops(n: 1 | -1): void {
    Atomics.add(this.words, this.hdr + GT_NR_V2_OPS, n);
  }

  /**
   * Active entries with a page: one per possible v1 entry of the frames the
   * table has had, a multiple of ACT_PER_PAGE.
   */
  get nrActive(): number {
    return this.words[this.hdr + GT_NR_ACTIVE]!;
  }
  private set nrActive(n: number) {
    this.words[this.hdr + GT_NR_ACTIVE] = n;
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
        this.shared.get(Math.floor(ref / GRANT_PER_FRAME_V1)) * XEN_PAGE_SIZE +
        (ref % GRANT_PER_FRAME_V1) * GRANT_ENTRY_V1_SIZE
      );
    }
    return (
      this.shared.get(Math.floor(ref / GRANT_PER_FRAME_V2)) * XEN_PAGE_SIZE +
      (ref % GRANT_PER_FRAME_V2) * GRANT_ENTRY_V2_SIZE
    );
  }

  /** Machine byte address of the word holding GTF_reading/GTF_writing for `ref`. */
  statusAddr(ref: number): number {
    if (this.version === 1) return this.shaAddr(ref);
    return (
      this.status.get(Math.floor(ref / GRANT_STATUS_PER_FRAME)) * XEN_PAGE_SIZE +
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
      this.headerPage,
      this.policy,
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
    if (this.framePages.root === 0) return;
    this.activePages.free();
    this.framePages.free();
    this.maptrack.destroy();
    for (const list of [this.shared, this.sharedGfn, this.status, this.statusGfn]) list.retire();
    // A tombstone header for this view: the version it had, nothing else.
    const tomb = new Int32Array(GT_MAPTRACK + 1);
    tomb[GT_VERSION] = this.version;
    tomb[GT_MAX_VERSION] = this.maxVersion;
    tomb[GT_MAX_GRANT_FRAMES] = this.maxGrantFrames;
    this.views = [];
    this.words.fill(0, this.hdr, this.hdr + PAGE_WORDS);
    this.activePages.pool.free(this.headerPage);
    this.words = tomb;
    this.hdr = 0;
  }
}
