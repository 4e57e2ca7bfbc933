// The guest's grant-table driver: Linux's drivers/xen/grant-table.c, public API
// of guest-side.md §2 over the internals of §3. One object per domain, built
// from its GuestContext; no state anywhere else.
import {
  GTF_accept_transfer,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
} from '../../abi/flags.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { GuestContext } from '../context.ts';
import { querySize, setupTable } from '../hypercall.ts';
import { PageAllocator } from '../pages.ts';
import { autoXlatMap } from './arch.ts';
import { DeferredList } from './deferred.ts';
import { EINVAL, ENODEV, ENOSPC, ENOSYS, EPERM } from './errno.ts';
import { GNTTAB_LIST_END, type GnttabFreeCallback, GrantFreeList, type GrantRefPool } from './free-list.ts';
import type { GnttabOps } from './ops.ts';
import { type GnttabVersionOption, requestVersion } from './version.ts';

/** The legacy maximum when query_size fails. */
export const LEGACY_MAX_NR_GRANT_FRAMES = 4;
/** Entries per frame in the larger layout: the free list is sized for it. */
const MAX_GREFS_PER_FRAME = XEN_PAGE_SIZE / 8;

/** Options of the guest's grant-table driver (Gnttab). */
export interface GnttabOptions {
  /** The guest's page allocator (one per domain); a new one when omitted. */
  pages?: PageAllocator;
  /** grant_table.version: 1 or 2 forces the layout; 'auto' (default) picks v1 unless v2 is needed. */
  version?: GnttabVersionOption;
  /** free_per_iteration of the deferred list (default 10; 0 = no limit). */
  freePerIteration?: number;
}

/**
 * The guest's grant-table driver, as Linux's drivers/xen/grant-table.c: it
 * sets up the table (setup_table or add_to_physmap, v1 or v2 through
 * gnttab_ops), keeps the free list of refs, grants and ends foreign access,
 * defers the end of a grant still mapped, grows the table and survives
 * suspend/resume. Call init() once; refs are numbers, failures negative errnos.
 *
 * ```ts
 * const gt = new Gnttab(ctx, { version: 2 });
 * gt.init();
 * const ref = gt.grantForeignAccess(backend, gt.pages.gfnOf(page), false);
 * ```
 */
export class Gnttab {
  readonly ctx: GuestContext;
  readonly pages: PageAllocator;
  private readonly versionOption: GnttabVersionOption;
  private ops: GnttabOps | null = null;
  private list: GrantFreeList | null = null;
  private nrFrames = 0;
  private bootMaxFrames = 0;
  private suspended = false;
  readonly deferred: DeferredList;

  constructor(ctx: GuestContext, options: GnttabOptions = {}) {
    this.ctx = ctx;
    this.pages = options.pages ?? new PageAllocator(ctx);
    this.versionOption = options.version ?? 'auto';
    this.deferred = new DeferredList(ctx, {
      endAccess: (ref) => this.iface.endForeignAccessRef(ref),
      putFreeEntry: (ref) => this.freeList.putFreeEntry(ref),
      putPage: (page) => {
        this.pages.put(page);
      },
    });
    if (options.freePerIteration !== undefined) this.deferred.freePerIteration = options.freePerIteration;
  }

  private get iface(): GnttabOps {
    if (this.ops === null) throw new Error('grant table used before gnttab_init');
    return this.ops;
  }

  private get freeList(): GrantFreeList {
    if (this.list === null) throw new Error('grant table used before gnttab_init');
    return this.list;
  }

  /** The layout in use (0 before init). */
  get version(): 0 | 1 | 2 {
    return this.ops?.version ?? 0;
  }

  /** Entries per grant frame in the layout in use. */
  get grefsPerGrantFrame(): number {
    return this.iface.grefsPerGrantFrame;
  }

  /** nr_grant_frames: frames set up with Xen. */
  get nrGrantFrames(): number {
    return this.nrFrames;
  }

  /** gnttab_size: refs the driver manages (0..size-1; 0-7 reserved). */
  get size(): number {
    return this.list?.tableSize ?? 0;
  }

  /** gnttab_free_count. */
  get freeCount(): number {
    return this.list?.freeCount ?? 0;
  }

  /** True while ref sits on the free list. */
  isFree(ref: number): boolean {
    return this.list?.isFree(ref) ?? false;
  }

  get isSuspended(): boolean {
    return this.suspended;
  }

  // ---- lifecycle (§2.2) -----------------------------------------------------------------------

  /**
   * gnttab_max_grant_frames: query_size each time (4 when it fails), never more
   * than what the first call saw.
   */
  maxGrantFrames(): number {
    const q = querySize(this.ctx);
    const xenMax = q.rc < 0 || q.status !== 0 ? LEGACY_MAX_NR_GRANT_FRAMES : q.maxNrFrames;
    if (this.bootMaxFrames === 0) this.bootMaxFrames = xenMax;
    return Math.min(xenMax, this.bootMaxFrames);
  }

  /** gnttab_init: version, one frame, refs 8..size-1 free. 0, -EINVAL (twice) or -ENODEV. */
  init(): number {
    if (this.ops !== null) return -EINVAL;
    this.ops = requestVersion(this.ctx, this.versionOption);
    const max = this.maxGrantFrames();
    this.nrFrames = 1;
    const list = new GrantFreeList(Math.max(max, 1) * MAX_GREFS_PER_FRAME, (req) => this.expand(req));
    if (this.setup() < 0) {
      this.ops = null;
      this.nrFrames = 0;
      return -ENODEV;
    }
    this.list = list;
    list.initFree(this.nrFrames * this.iface.grefsPerGrantFrame);
    this.ctx.log('Grant table initialized');
    return 0;
  }

  /** gnttab_setup: map frames 0..nr-1; -ENOSYS if the table no longer fits the maximum. */
  private setup(): number {
    const max = this.maxGrantFrames();
    if (max < this.nrFrames) return -ENOSYS;
    return this.map(0, this.nrFrames - 1);
  }

  /**
   * gnttab_map(start, end). PV: setup_table for the total, then the version's
   * map_frames remaps every frame. HVM: add_to_physmap end..start, and in v2
   * the status frames the new grant frames need.
   */
  private map(start: number, end: number): number {
    const ops = this.iface;
    if (this.ctx.start.kind === 'hvm') {
      const statusStart = ops.nrStatusFrames(start);
      const statusEnd = ops.nrStatusFrames(end + 1) - 1;
      return autoXlatMap(this.ctx, start, end, statusStart, statusEnd);
    }
    const st = setupTable(this.ctx, end + 1);
    if (st.rc === -ENOSYS) return -ENOSYS;
    if (st.rc !== 0 || st.status !== 0) {
      // Linux BUGs here; we report it and fail the operation.
      this.ctx.log(`BUG: setup_table(${end + 1}): rc ${st.rc} status ${st.status}`);
      return st.rc !== 0 ? st.rc : -EINVAL;
    }
    return ops.mapFrames(st.frames);
  }

  /** gnttab_expand: enough whole frames for reqEntries more refs, or -ENOSPC past the maximum. */
  private expand(reqEntries: number): number {
    const per = this.iface.grefsPerGrantFrame;
    const cur = this.nrFrames;
    const extra = Math.ceil(reqEntries / per);
    const max = this.maxGrantFrames();
    if (cur + extra > max) {
      this.ctx.log(
        `xen/grant-table: max_grant_frames reached cur=${cur} extra=${extra} limit=${max} ` +
          `gnttab_free_count=${this.freeCount} req_entries=${reqEntries}`,
      );
      return -ENOSPC;
    }
    const rc = this.map(cur, cur + extra - 1);
    if (rc !== 0) return rc;
    this.nrFrames = cur + extra;
    this.freeList.grow(extra * per);
    return 0;
  }

  /** gnttab_suspend: PV unmaps the frames (HVM keeps them where Xen placed them). Always 0. */
  suspend(): number {
    if (this.ctx.start.kind === 'pv') this.iface.unmapFrames(this.nrFrames);
    this.suspended = true;
    return 0;
  }

  /**
   * gnttab_resume: negotiate the version again (it may change), then set the
   * frames up again. Grants and the free list are kept as they are; nothing is
   * re-granted. If the layout changed to smaller entries, enough frames are
   * mapped to cover every ref the free list knows of.
   */
  resume(): number {
    const before = this.iface.grefsPerGrantFrame;
    this.ops = requestVersion(this.ctx, this.versionOption);
    const per = this.ops.grefsPerGrantFrame;
    if (per < before) this.nrFrames = Math.max(this.nrFrames, Math.ceil(this.size / per));
    const rc = this.setup();
    if (rc === 0) this.suspended = false;
    return rc;
  }

  // ---- granting access (§2.3) -----------------------------------------------------------------

  /** gnttab_grant_foreign_access_ref: fills an entry the caller owns; no checks. */
  grantForeignAccessRef(ref: number, domid: number, frame: number, readonly: boolean): void {
    this.iface.updateEntry(ref, domid, frame, GTF_permit_access | (readonly ? GTF_readonly : 0));
  }

  /** gnttab_grant_foreign_access: a new ref (>= 8) granting `frame` to domid, or -ENOSPC. */
  grantForeignAccess(domid: number, frame: number, readonly: boolean): number {
    const ref = this.freeList.getFreeEntries(1);
    if (ref < 0) return -ENOSPC;
    this.grantForeignAccessRef(ref, domid, frame, readonly);
    return ref;
  }

  /** gnttab_page_grant_foreign_access_ref_one: grants the RAM page at `page`. */
  grantPageRef(ref: number, domid: number, page: number, readonly: boolean): void {
    this.grantForeignAccessRef(ref, domid, this.pages.gfnOf(page), readonly);
  }

  // ---- ending access (§2.4) -------------------------------------------------------------------

  /** gnttab_end_foreign_access_ref: revokes; false (and a warning) while the peer has it mapped. */
  endForeignAccessRef(ref: number): boolean {
    if (this.iface.endForeignAccessRef(ref)) return true;
    this.ctx.log(`WARNING: g.e. 0x${ref.toString(16)} still in use!`);
    return false;
  }

  /** gnttab_try_end_foreign_access (XSA-396): revoke and, only if that worked, free the ref. */
  tryEndForeignAccess(ref: number): boolean {
    const ok = this.iface.endForeignAccessRef(ref);
    if (ok) this.freeList.putFreeEntry(ref);
    return ok;
  }

  /**
   * gnttab_end_foreign_access: ends access and frees the ref now, dropping the
   * caller's reference on `page`; or, while the peer still maps it, defers both
   * to the timer. With no page, the driver takes its own reference on the
   * granted page (found from the entry's frame) so it cannot be reused while
   * the peer can still reach it (XSA-396). Callers treat the page as gone.
   */
  endForeignAccess(ref: number, page: number | null): void {
    if (this.tryEndForeignAccess(ref)) {
      if (page !== null) this.pages.put(page);
      return;
    }
    let held = page;
    if (held === null) {
      const found = this.pages.addrOfGfn(this.iface.readFrame(ref));
      if (found >= 0 && this.pages.count(found) > 0) {
        this.pages.get(found);
        held = found;
      } else {
        this.ctx.log(`g.e. 0x${ref.toString(16)}: granted frame is no page of ours; nothing held`);
      }
    }
    this.deferred.add(ref, held);
  }

  /** Entries on the deferred list. */
  get deferredCount(): number {
    return this.deferred.deferredCount;
  }

  // ---- transfers (§2.5) -----------------------------------------------------------------------

  /** gnttab_grant_foreign_transfer_ref: an accept_transfer entry; the page will arrive at `pfn`. */
  grantForeignTransferRef(ref: number, domid: number, pfn: number): void {
    this.iface.updateEntry(ref, domid, pfn, GTF_accept_transfer);
  }

  /** gnttab_grant_foreign_transfer: a new ref, or -ENOSPC. */
  grantForeignTransfer(domid: number, pfn: number): number {
    const ref = this.freeList.getFreeEntries(1);
    if (ref < 0) return -ENOSPC;
    this.grantForeignTransferRef(ref, domid, pfn);
    return ref;
  }

  /** gnttab_end_foreign_transfer_ref: 0 if nothing was transferred (entry reclaimed), else the frame. */
  endForeignTransferRef(ref: number): number {
    return this.iface.endForeignTransferRef(ref);
  }

  /** gnttab_end_foreign_transfer: the same, and the ref is always freed. */
  endForeignTransfer(ref: number): number {
    const frame = this.endForeignTransferRef(ref);
    this.freeList.putFreeEntry(ref);
    return frame;
  }

  // ---- references (§2.6, §2.7) ----------------------------------------------------------------

  /** gnttab_alloc_grant_references: `count` (u16) refs chained into pool.head; 0 or -ENOSPC. */
  allocGrantReferences(count: number, pool: GrantRefPool): number {
    const h = this.freeList.getFreeEntries(count & 0xffff);
    if (h < 0) return -ENOSPC;
    pool.head = h;
    return 0;
  }

  /** gnttab_claim_grant_reference: one ref off the pool, or -ENOSPC when it is empty. */
  claimGrantReference(pool: GrantRefPool): number {
    return this.freeList.claim(pool);
  }

  /** gnttab_release_grant_reference: back onto the pool (not the free list). */
  releaseGrantReference(pool: GrantRefPool, ref: number): void {
    this.freeList.release(pool, ref);
  }

  /** gnttab_empty_grant_references. */
  emptyGrantReferences(pool: GrantRefPool): boolean {
    return pool.head === GNTTAB_LIST_END;
  }

  /** gnttab_free_grant_references: every ref of the chain back to the free list. */
  freeGrantReferences(head: number): void {
    this.freeList.freeChain(head);
  }

  /** gnttab_free_grant_reference. Refs 0-7 are ignored. */
  freeGrantReference(ref: number): void {
    this.freeList.putFreeEntry(ref);
  }

  /** gnttab_alloc_grant_reference_seq: the first of `count` consecutive refs, or -ENOSPC. */
  allocGrantReferenceSeq(count: number): number {
    const h = count === 1 ? this.freeList.getFreeEntries(1) : this.freeList.getFreeEntriesSeq(count);
    return h < 0 ? -ENOSPC : h;
  }

  /** gnttab_free_grant_reference_seq. */
  freeGrantReferenceSeq(first: number, count: number): void {
    this.freeList.freeSeq(first, count);
  }

  /** gnttab_request_free_callback: fn(arg) once `count` refs are free (at once if they are). */
  requestFreeCallback(cb: GnttabFreeCallback, fn: (arg: unknown) => void, arg: unknown, count: number): void {
    this.freeList.requestFreeCallback(cb, fn, arg, count);
  }

  /** gnttab_cancel_free_callback. */
  cancelFreeCallback(cb: GnttabFreeCallback): void {
    this.freeList.cancelFreeCallback(cb);
  }

  // ---- sub-page and transitive grants (§2.8, Linux 3.3-4.14) ----------------------------------

  /** gnttab_grant_foreign_access_subpage_ref: 0, -EPERM for flags it may not carry, -ENOSYS on v1. */
  grantForeignAccessSubpageRef(
    ref: number,
    domid: number,
    frame: number,
    flags: number,
    pageOff: number,
    length: number,
  ): number {
    if ((flags & (GTF_accept_transfer | GTF_reading | GTF_writing | GTF_transitive)) !== 0) return -EPERM;
    const update = this.iface.updateSubpageEntry;
    if (update === null) return -ENOSYS;
    update(ref, domid, frame, flags, pageOff, length);
    return 0;
  }

  /** gnttab_grant_foreign_access_subpage: a new ref, or a negative errno (the ref is freed again). */
  grantForeignAccessSubpage(
    domid: number,
    frame: number,
    flags: number,
    pageOff: number,
    length: number,
  ): number {
    const ref = this.freeList.getFreeEntries(1);
    if (ref < 0) return -ENOSPC;
    const rc = this.grantForeignAccessSubpageRef(ref, domid, frame, flags, pageOff, length);
    if (rc < 0) {
      this.freeList.putFreeEntry(ref);
      return rc;
    }
    return ref;
  }

  /** gnttab_subpage_grants_available. */
  subpageGrantsAvailable(): boolean {
    return this.iface.updateSubpageEntry !== null;
  }

  /** gnttab_grant_foreign_access_trans_ref: 0, -EPERM for flags it may not carry, -ENOSYS on v1. */
  grantForeignAccessTransRef(
    ref: number,
    domid: number,
    flags: number,
    transDomid: number,
    transGref: number,
  ): number {
    if ((flags & (GTF_accept_transfer | GTF_reading | GTF_writing | GTF_sub_page)) !== 0) return -EPERM;
    const update = this.iface.updateTransEntry;
    if (update === null) return -ENOSYS;
    update(ref, domid, flags, transDomid, transGref);
    return 0;
  }

  /** gnttab_grant_foreign_access_trans: a new ref, or a negative errno (the ref is freed again). */
  grantForeignAccessTrans(domid: number, flags: number, transDomid: number, transGref: number): number {
    const ref = this.freeList.getFreeEntries(1);
    if (ref < 0) return -ENOSPC;
    const rc = this.grantForeignAccessTransRef(ref, domid, flags, transDomid, transGref);
    if (rc < 0) {
      this.freeList.putFreeEntry(ref);
      return rc;
    }
    return ref;
  }

  /** gnttab_trans_grants_available. */
  transGrantsAvailable(): boolean {
    return this.iface.updateTransEntry !== null;
  }

  /** The frame in a full-page entry (gnttab_interface->read_frame). */
  readFrame(ref: number): number {
    return this.iface.readFrame(ref);
  }
}
