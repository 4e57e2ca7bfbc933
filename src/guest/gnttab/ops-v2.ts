// gnttab_v2_ops: 16-byte entries, GTF_reading/GTF_writing in the separate
// status frames (guest-side.md §3.4, §2.8, xen-grant-tables.md §13.2, §14).
import {
  GTF_permit_access,
  GTF_reading,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
} from '../../abi/flags.ts';
import { GRANT_ENTRY_V2_SIZE, GRANT_PER_FRAME_V2, statusFramesFor } from '../../abi/limits.ts';
import type { GuestContext } from '../context.ts';
import { getStatusFrames } from '../hypercall.ts';
import { GNTTAB_SHARED_VA, GNTTAB_STATUS_VA } from '../layout.ts';
import { archMapShared, archMapStatus, archUnmap, entryAddr, statusAddr } from './arch.ts';
import { ENOSYS } from './errno.ts';
import type { GnttabOps } from './ops.ts';
import { endTransfer } from './ops-v1.ts';

// hdr
const FLAGS = 0;
const DOMID = 2;
// full_page / sub_page
const PAGE_OFF = 4;
const LENGTH = 6;
const FRAME = 8;
// transitive
const TRANS_DOMID = 4;
const TRANS_GREF = 8;

export class GnttabV2Ops implements GnttabOps {
  readonly version = 2;
  readonly grefsPerGrantFrame = GRANT_PER_FRAME_V2;
  private readonly ctx: GuestContext;

  constructor(ctx: GuestContext) {
    this.ctx = ctx;
  }

  nrStatusFrames(nrGrantFrames: number): number {
    return statusFramesFor(nrGrantFrames);
  }

  /** get_status_frames for all status frames, map them, then map the shared frames. */
  mapFrames(frames: readonly number[]): number {
    const n = this.nrStatusFrames(frames.length);
    const gs = getStatusFrames(this.ctx, n);
    if (gs.rc === -ENOSYS) return -ENOSYS;
    if (gs.rc !== 0 || gs.status !== 0) {
      this.ctx.log(`BUG: get_status_frames(${n}): rc ${gs.rc} status ${gs.status}`);
      return gs.rc !== 0 ? gs.rc : gs.status;
    }
    let rc = archMapStatus(this.ctx, gs.frames);
    if (rc === 0) rc = archMapShared(this.ctx, frames);
    if (rc !== 0) this.ctx.log(`BUG: mapping the grant frames failed: ${rc}`);
    return rc;
  }

  unmapFrames(nrGrantFrames: number): void {
    archUnmap(this.ctx, GNTTAB_SHARED_VA, nrGrantFrames);
    archUnmap(this.ctx, GNTTAB_STATUS_VA, this.nrStatusFrames(nrGrantFrames));
  }

  /**
   * hdr.domid, then full_page.frame (u64), then hdr.flags with an atomic store.
   * Linux ORs GTF_permit_access in here, which would turn a transfer entry
   * into GTF_transitive (guest-side.md §2.5 quirk, dead code): we write the
   * flags as given, and callers name the type.
   */
  updateEntry(ref: number, domid: number, frame: number, flags: number): void {
    const e = entryAddr(ref, GRANT_ENTRY_V2_SIZE);
    const mem = this.ctx.mem;
    mem.writeU16(e + DOMID, domid);
    mem.writeU64(e + FRAME, frame);
    mem.store16(e + FLAGS, flags);
  }

  /**
   * hdr.flags = 0 first (no new pin can start), a full barrier, then the status
   * word: GTF_reading/GTF_writing mean the grant is still in use (the entry
   * stays cleared). The Dekker handshake with Xen's H1 (§13.2).
   */
  endForeignAccessRef(ref: number): boolean {
    const mem = this.ctx.mem;
    mem.store16(entryAddr(ref, GRANT_ENTRY_V2_SIZE) + FLAGS, 0);
    mem.fence();
    return (mem.load16(statusAddr(ref)) & (GTF_reading | GTF_writing)) === 0;
  }

  endForeignTransferRef(ref: number): number {
    const e = entryAddr(ref, GRANT_ENTRY_V2_SIZE);
    return endTransfer(this.ctx, e + FLAGS, () => Number(this.ctx.mem.readU64(e + FRAME)));
  }

  readFrame(ref: number): number {
    return Number(this.ctx.mem.readU64(entryAddr(ref, GRANT_ENTRY_V2_SIZE) + FRAME));
  }

  query(ref: number): number {
    return this.ctx.mem.load16(statusAddr(ref)) & (GTF_reading | GTF_writing);
  }

  /** sub_page.frame, page_off, length, hdr.domid, then hdr.flags = permit_access | sub_page | flags. */
  readonly updateSubpageEntry = (
    ref: number,
    domid: number,
    frame: number,
    flags: number,
    pageOff: number,
    length: number,
  ): void => {
    const e = entryAddr(ref, GRANT_ENTRY_V2_SIZE);
    const mem = this.ctx.mem;
    mem.writeU64(e + FRAME, frame);
    mem.writeU16(e + PAGE_OFF, pageOff);
    mem.writeU16(e + LENGTH, length);
    mem.writeU16(e + DOMID, domid);
    mem.store16(e + FLAGS, GTF_permit_access | GTF_sub_page | flags);
  };

  /** transitive.trans_domid, gref, hdr.domid, then hdr.flags = permit_access | transitive | flags. */
  readonly updateTransEntry = (
    ref: number,
    domid: number,
    flags: number,
    transDomid: number,
    transGref: number,
  ): void => {
    const e = entryAddr(ref, GRANT_ENTRY_V2_SIZE);
    const mem = this.ctx.mem;
    mem.writeU16(e + TRANS_DOMID, transDomid);
    mem.writeU32(e + TRANS_GREF, transGref);
    mem.writeU16(e + DOMID, domid);
    mem.store16(e + FLAGS, GTF_permit_access | GTF_transitive | flags);
  };
}
