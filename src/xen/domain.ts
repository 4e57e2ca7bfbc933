// A domain as the hypervisor sees it: kind, address space, pages, grant table.
import { DOMID_IO } from '../abi/domid.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { MachineMemory } from '../machine/machine-memory.ts';
import { DEFAULT_MAX_EVTCHN_PORT, EventChannelTable } from './event-channel.ts';
import type { FrameTable } from './frame-table.ts';
import type { GrantTable } from './grant-table.ts';
import { LOCK_WORDS } from './locks.ts';
import { PageList } from './page-list.ts';
import { ADDRESS_SPACE_PAGES, P2m, PvPageTable, type TableFrameAllocator } from './paging.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

// ---- the domain's record, a private page (the one definition of its words) ----
/** d->page_alloc_lock: the first LOCK_WORDS words. */
export const D_PAGE_ALLOC_LOCK = 0;
/** The page list's head, tail and length (tot_pages). */
const D_PAGE_LIST = LOCK_WORDS;

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
  /** RAM pages the domain owns now (d->page_list; its size is tot_pages). */
  readonly owned: PageList;
  /** The domain's record among the hypervisor's private pages. */
  readonly recordPage: number;
  readonly gt: GrantTable;
  /** PV: its page table. */
  readonly pt: PvPageTable | null;
  /** HVM: its P2M. */
  readonly p2m: P2m | null;
  /** Frames reserved for its translation table and not used yet. */
  pagingPool: number[] = [];
  /** The vCPU that issues hypercalls (maptrack free lists are per vCPU). */
  currentVcpu = 0;
  isDying = false;
  /** Set when Xen crashed the domain (domain_crash); the host destroys it after the hypercall. */
  crashed: string | null = null;
  /** Exceptions Xen injected (a debug build: #GP on an implicit grant unmap, quirk §15.19). */
  readonly injected: { vector: number; reason: string }[] = [];
  /** The shared-info page: a Xen-heap frame the domain owns and may map read-write (-1: none). */
  sharedInfoMfn = -1;
  /** HVM: where the guest placed its shared-info page (XENMAPSPACE_shared_info), or -1. */
  sharedInfoGfn = -1;
  /** Event channels (2-level ABI); replaced at creation when max_evtchn_port is given. */
  evtchn: EventChannelTable;

  constructor(
    domid: number,
    kind: DomainKind,
    vcpus: number,
    ramPages: number,
    maxPages: number,
    gt: GrantTable,
    machine: MachineMemory,
    allocTableFrame: TableFrameAllocator,
    frames: FrameTable,
    pool: PrivatePages,
  ) {
    const record = pool.alloc();
    if (record < 0) throw new RangeError("out of the hypervisor's private memory for a domain");
    this.recordPage = record;
    this.owned = new PageList(frames, domid, pool.words, record * PAGE_WORDS + D_PAGE_LIST);
    this.owned.init();
    this.domid = domid;
    this.kind = kind;
    this.vcpus = vcpus;
    this.ramPages = ramPages;
    this.maxPages = maxPages;
    this.gt = gt;
    this.pt = kind === 'pv' ? new PvPageTable(machine, allocTableFrame) : null;
    this.p2m = kind === 'hvm' ? new P2m(machine, allocTableFrame) : null;
    this.evtchn = new EventChannelTable(DEFAULT_MAX_EVTCHN_PORT, vcpus);
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

  get totPages(): number {
    return this.owned.size;
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
