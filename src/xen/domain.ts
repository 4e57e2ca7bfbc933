// A domain as the hypervisor sees it: kind, address space, pages, grant table.
import { DOMID_IO } from '../abi/domid.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { MachineMemory } from '../machine/machine-memory.ts';
import { EventChannelTable, type PortResolver } from './evtchn/port-table.ts';
import type { FrameTable } from './frame-table.ts';
import { GrantTable } from './grant-table.ts';
import { LOCK_CLASSES, LOCK_WORDS, RwLock, SpinLock } from './locks.ts';
import { PageList, pageListTag, pagingPoolTag } from './page-list.ts';
import { ADDRESS_SPACE_PAGES, P2m, PvPageTable } from './paging.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

// ---- the domain's record, a private page (the one definition of its words) ----
/** d->page_alloc_lock: the first LOCK_WORDS words. */
export const D_PAGE_ALLOC_LOCK = 0;
/** The page list's head, tail and length (tot_pages). */
const D_PAGE_LIST = LOCK_WORDS;
/** d->is_dying. */
const D_DYING = LOCK_WORDS + 3;
const D_SHARED_INFO_MFN = LOCK_WORDS + 4;
const D_SHARED_INFO_GFN = LOCK_WORDS + 5;
/** Exceptions injected so far (each a vector and a reason's index in INJECT_REASONS). */
const D_NR_INJECTED = LOCK_WORDS + 6;
/** Why Xen crashed it: a length (-1: not crashed) and as many UTF-16 code units. */
const D_CRASH_LEN = 64;
const D_CRASH_TEXT = 65;
const D_CRASH_MAX = 400;
const D_INJECTED = 512;
const D_INJECTED_MAX = 256;
/** The paging pool's list: head, tail, length. */
const D_POOL_LIST = LOCK_WORDS + 7;
/** The event-channel table's numbers (EVTCHN_TABLE_WORDS of them). */
const D_EVTCHN = LOCK_WORDS + 10;
/** What never changes once the domain exists (a view reads them once). */
const D_DOMID = LOCK_WORDS + 14;
const D_KIND = LOCK_WORDS + 15;
const D_VCPUS = LOCK_WORDS + 16;
const D_RAM_PAGES = LOCK_WORDS + 17;
/** max_pages, an unsigned int in Xen: bigger reservations are capped to it. */
const D_MAX_PAGES = LOCK_WORDS + 18;
/** The grant table's header page. */
const D_GT = LOCK_WORDS + 19;
/** The root frame of its page table or P2M. */
const D_MMU_ROOT = LOCK_WORDS + 20;
/**
 * Pages counted in tot_pages that are on no list yet: the slot a transfer
 * reserves under the receiver's page_alloc_lock before it drops it
 * (gnttab_transfer, XSA-73), until assign_pages lists the page or the
 * transfer gives the slot back.
 */
const D_TOT_RESERVED = LOCK_WORDS + 21;
/** d->event_lock (an rwlock): the lock slot after D_MMU_ROOT. */
const D_EVENT_LOCK = LOCK_WORDS * 7;
/** p2m->lock (an rwlock) of a translated domain: the slot after the event lock. */
const D_P2M_LOCK = LOCK_WORDS * 8;
const KIND_PV = 1;
const KIND_HVM = 2;

/** The reasons Xen injects an exception into a guest here. */
export const INJECT_REASONS = ['attempt to implicitly unmap a grant PTE'] as const;
export type InjectReason = (typeof INJECT_REASONS)[number];

export type DomainKind = 'pv' | 'hvm';

/** What page-ownership checks need of a domain; also met by DOM_IO, which is no Domain here. */
export interface PageOwner {
  readonly domid: number;
  readonly translated: boolean;
}

/** dom_io, the owner of I/O memory: it owns no frame of this model (no MMIO). */
export const DOM_IO: PageOwner = { domid: DOMID_IO, translated: false };

export class Domain {
  readonly domid: number;
  readonly kind: DomainKind;
  readonly vcpus: number;
  /** Pages of RAM the domain was created with (frames 0..ramPages-1 of its address space). */
  readonly ramPages: number;
  /** Reservation limit (max_pages). */
  readonly maxPages: number;
  private readonly pageList: PageList;
  private readonly frames: FrameTable;
  /** The domain's record among the hypervisor's private pages. */
  readonly recordPage: number;
  private readonly words: Int32Array;
  private readonly rec: number;
  /**
   * What this thread's view keeps once the record is freed (the domain is
   * gone): why it crashed and what was injected, for the host API.
   */
  private retired: {
    crashed: string | null;
    injected: { vector: number; reason: string }[];
    /** An empty page list of this view's own, in place of the freed record's. */
    owned: PageList;
  } | null = null;
  readonly gt: GrantTable;
  /** PV: its page table. */
  readonly pt: PvPageTable | null;
  /** HVM: its P2M. */
  readonly p2m: P2m | null;
  /** Frames reserved for its translation table and not used yet (Xen's own, on a list of d's). */
  readonly pagingPool: PageList;
  /**
   * d->page_alloc_lock (recursive): held while its page list changes beside
   * other threads (a foreign unmap dropping the last reference to its page).
   */
  readonly pageAllocLock: SpinLock;
  /**
   * d->event_lock (rwlock): written for every port state change, allocation
   * and binding (evtchn_alloc_unbound, evtchn_bind_*, evtchn_close); two
   * domains' at once ordered by their key, the record's page (Xen compares
   * struct domain pointers: evtchn_bind_interdomain, evtchn_close).
   */
  readonly eventLock: RwLock;
  /**
   * p2m->lock (HVM): written for every change of the P2M and of where its
   * Xen-heap frames are placed (their GFN slots, which x86 reads back from
   * the M2P); read around a lookup that takes a reference on the page found
   * (p2m_get_page_from_gfn). Guest MMU walks read the entries lock-free:
   * every entry is one word, written with Atomics.
   */
  readonly p2mLock: RwLock;
  /** The vCPU that issues hypercalls (maptrack free lists are per vCPU). */
  currentVcpu = 0;
  /** Event channels (2-level ABI). */
  readonly evtchn: EventChannelTable;

  /**
   * A new domain's record (domain_create): its limits, its page list, a
   * paging pool of `poolFrames` frames from `allocXenFrame`, its translation
   * table's root, its event channels, and `gt`; returns this thread's view.
   */
  static create(
    o: {
      domid: number;
      kind: DomainKind;
      vcpus: number;
      ramPages: number;
      maxPages: number;
      poolFrames: number;
      maxEvtchnPort: number;
    },
    gt: GrantTable,
    machine: MachineMemory,
    frames: FrameTable,
    pool: PrivatePages,
    allocXenFrame: () => number,
    resolve: PortResolver,
  ): Domain {
    const record = pool.alloc();
    if (record < 0) throw new RangeError("out of the hypervisor's private memory for a domain");
    const w = pool.words;
    const rec = record * PAGE_WORDS;
    w[rec + D_DOMID] = o.domid;
    w[rec + D_KIND] = o.kind === 'pv' ? KIND_PV : KIND_HVM;
    w[rec + D_VCPUS] = o.vcpus;
    w[rec + D_RAM_PAGES] = o.ramPages;
    w[rec + D_MAX_PAGES] = Math.min(o.maxPages, 0xffff_ffff) | 0;
    w[rec + D_GT] = gt.headerPage;
    w[rec + D_SHARED_INFO_MFN] = -1;
    w[rec + D_SHARED_INFO_GFN] = -1;
    w[rec + D_CRASH_LEN] = -1;
    // domain_create's failure path: the record goes back (and its event channels, made first).
    let evtchn: EventChannelTable;
    try {
      evtchn = EventChannelTable.create(o.maxEvtchnPort, o.vcpus, pool, rec + D_EVTCHN, resolve);
    } catch (err) {
      pool.free(record);
      throw err;
    }
    new PageList(frames, pageListTag(o.domid), w, rec + D_PAGE_LIST).init();
    // The translation table's frames come from a pool reserved now, as Xen's
    // HAP/shadow paging pool: mapping things later never takes machine memory.
    const pagingPool = new PageList(frames, pagingPoolTag(o.domid), w, rec + D_POOL_LIST);
    pagingPool.init();
    for (let i = 0; i < o.poolFrames; i++) {
      const mfn = allocXenFrame();
      if (mfn >= 0) pagingPool.add(mfn);
    }
    const root = pagingPool.pop();
    if (root < 0) {
      // No frame at all came: nothing else to give back.
      evtchn.destroy();
      pool.free(record);
      throw new RangeError('out of machine memory for a page table');
    }
    w[rec + D_MMU_ROOT] = root;
    return new Domain(pool, frames, machine, record, resolve, gt);
  }

  /**
   * This thread's view of the domain whose record is private page `record`;
   * `gt` is a view of its grant table already made (else one is made, its
   * maptrack stealing with `random`).
   */
  constructor(
    pool: PrivatePages,
    frames: FrameTable,
    machine: MachineMemory,
    record: number,
    resolve: PortResolver,
    gt: GrantTable | (() => number),
  ) {
    this.recordPage = record;
    this.words = pool.words;
    this.rec = record * PAGE_WORDS;
    this.frames = frames;
    const w = this.words;
    this.domid = w[this.rec + D_DOMID]!;
    this.kind = w[this.rec + D_KIND] === KIND_PV ? 'pv' : 'hvm';
    this.vcpus = w[this.rec + D_VCPUS]!;
    this.ramPages = w[this.rec + D_RAM_PAGES]!;
    this.maxPages = w[this.rec + D_MAX_PAGES]! >>> 0;
    this.gt = typeof gt === 'function' ? new GrantTable(pool, w[this.rec + D_GT]!, gt) : gt;
    this.pageList = new PageList(frames, pageListTag(this.domid), w, this.rec + D_PAGE_LIST);
    this.pagingPool = new PageList(frames, pagingPoolTag(this.domid), w, this.rec + D_POOL_LIST);
    const allocTableFrame = () => this.pagingPool.pop();
    const root = w[this.rec + D_MMU_ROOT]!;
    this.pt = this.kind === 'pv' ? new PvPageTable(machine, allocTableFrame, root) : null;
    this.p2m = this.kind === 'hvm' ? new P2m(machine, allocTableFrame, root) : null;
    this.evtchn = new EventChannelTable(pool, this.rec + D_EVTCHN, this.vcpus, resolve);
    this.pageAllocLock = new SpinLock(
      w,
      this.rec + D_PAGE_ALLOC_LOCK,
      LOCK_CLASSES.pageAlloc,
      this.domid,
      pool.policy,
    );
    this.eventLock = new RwLock(w, this.rec + D_EVENT_LOCK, LOCK_CLASSES.eventLock, record, pool.policy);
    this.p2mLock = new RwLock(w, this.rec + D_P2M_LOCK, LOCK_CLASSES.p2m, this.domid, pool.policy);
  }

  /** RAM pages the domain owns now (d->page_list; its size is tot_pages); empty once it is gone. */
  get owned(): PageList {
    return this.retired === null ? this.pageList : this.retired.owned;
  }

  /** d->is_dying: set by destruction; new hypercalls are refused. */
  get isDying(): boolean {
    return this.retired !== null || this.words[this.rec + D_DYING] !== 0;
  }
  set isDying(v: boolean) {
    // Read unlocked on fast paths, re-checked under page_alloc_lock or the event_lock.
    Atomics.store(this.words, this.rec + D_DYING, v ? 1 : 0);
  }

  /** The shared-info page: a Xen-heap frame the domain owns and may map read-write (-1: none). */
  get sharedInfoMfn(): number {
    return this.retired !== null ? -1 : this.words[this.rec + D_SHARED_INFO_MFN]!;
  }
  set sharedInfoMfn(mfn: number) {
    this.words[this.rec + D_SHARED_INFO_MFN] = mfn;
  }

  /** HVM: where the guest placed its shared-info page (XENMAPSPACE_shared_info), or -1. */
  get sharedInfoGfn(): number {
    // Written under the P2M lock, read without it (as x86 reads the M2P).
    return this.retired !== null ? -1 : Atomics.load(this.words, this.rec + D_SHARED_INFO_GFN);
  }
  set sharedInfoGfn(gfn: number) {
    Atomics.store(this.words, this.rec + D_SHARED_INFO_GFN, gfn);
  }

  /** Why Xen crashed the domain (domain_crash), or null; the host destroys it after the hypercall. */
  get crashed(): string | null {
    if (this.retired !== null) return this.retired.crashed;
    const w = this.words;
    const n = w[this.rec + D_CRASH_LEN]!;
    if (n < 0) return null;
    let text = '';
    for (let i = 0; i < n; i++) text += String.fromCharCode(w[this.rec + D_CRASH_TEXT + i]!);
    return text;
  }
  set crashed(reason: string | null) {
    const w = this.words;
    if (reason === null) {
      w[this.rec + D_CRASH_LEN] = -1;
      return;
    }
    const n = Math.min(reason.length, D_CRASH_MAX);
    for (let i = 0; i < n; i++) w[this.rec + D_CRASH_TEXT + i] = reason.charCodeAt(i);
    w[this.rec + D_CRASH_LEN] = n;
  }

  /** Exceptions Xen injected, oldest first (a debug build: #GP on an implicit grant unmap, quirk §15.19). */
  get injected(): { vector: number; reason: string }[] {
    if (this.retired !== null) return this.retired.injected.map((f) => ({ ...f }));
    const w = this.words;
    const out: { vector: number; reason: string }[] = [];
    const n = Math.min(Atomics.load(w, this.rec + D_NR_INJECTED), D_INJECTED_MAX);
    for (let i = 0; i < n; i++) {
      const at = this.rec + D_INJECTED + 2 * i;
      // A slot is published by its vector word (vector + 1, stored last): one
      // still being written ends the list, so a reader never sees half a fault.
      const v = Atomics.load(w, at);
      if (v === 0) break;
      out.push({ vector: v - 1, reason: INJECT_REASONS[Atomics.load(w, at + 1)] ?? 'unknown' });
    }
    return out;
  }

  /**
   * Records an exception Xen injects (the first D_INJECTED_MAX are kept, as a
   * bounded log). Written by a shared hypercall (update_va_mapping, a grant
   * map over a grant PTE) while another thread may read the log: the slot is
   * claimed by an atomic add, its reason stored, then its vector, last.
   */
  inject(vector: number, reason: InjectReason): void {
    const w = this.words;
    const i = Atomics.add(w, this.rec + D_NR_INJECTED, 1);
    if (i < D_INJECTED_MAX) {
      const at = this.rec + D_INJECTED + 2 * i;
      Atomics.store(w, at + 1, INJECT_REASONS.indexOf(reason));
      Atomics.store(w, at, vector + 1);
    }
  }

  /**
   * The domain is gone and its record goes back to `pool`: this view keeps
   * what the host API still answers about it.
   */
  retire(pool: PrivatePages): void {
    if (this.retired !== null) return;
    const owned = new PageList(this.frames, pageListTag(this.domid), new Int32Array(3), 0);
    owned.init();
    const kept = { crashed: this.crashed, injected: this.injected, owned };
    this.words.fill(0, this.rec, this.rec + PAGE_WORDS);
    pool.free(this.recordPage);
    this.retired = kept;
  }

  /** HVM, PVH and every Arm guest are "translated" (paging_mode_translate / external). */
  get translated(): boolean {
    return this.kind === 'hvm';
  }

  /** Root frame of its translation table in machine memory (page table or P2M). */
  get mmuRoot(): number {
    return this.pt !== null ? this.pt.root : this.p2m!.root;
  }

  /** The frames of its translation table (Xen's own). */
  tableFrames(): number[] {
    return this.pt !== null ? this.pt.frames() : this.p2m!.frames();
  }

  /** tot_pages: the pages on its list, and the slots transfers in flight reserved (changed under page_alloc_lock). */
  get totPages(): number {
    return this.owned.size + this.totReserved;
  }

  /** tot_pages slots reserved by transfers in flight, their pages not on the list yet. */
  get totReserved(): number {
    return this.retired !== null ? 0 : this.words[this.rec + D_TOT_RESERVED]!;
  }
  set totReserved(n: number) {
    this.words[this.rec + D_TOT_RESERVED] = n;
  }

  /**
   * Machine byte address of the page holding `addr` in this domain's address
   * space, or -1 when the access faults (unmapped, or a write through a
   * read-only mapping).
   */
  translatePage(addr: number, write: boolean): number {
    const pfn = Math.floor(addr / XEN_PAGE_SIZE);
    if (!(pfn >= 0 && pfn < ADDRESS_SPACE_PAGES)) return -1;
    return this.pt !== null ? this.pt.translate(pfn, write) : this.p2m!.translate(pfn, write);
  }
}
