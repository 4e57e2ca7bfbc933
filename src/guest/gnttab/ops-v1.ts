// gnttab_v1_ops: 8-byte entries, GTF_reading/GTF_writing in the entry's own
// flags word (guest-side.md §3.4, xen-grant-tables.md §14).
import { GTF_reading, GTF_transfer_committed, GTF_transfer_completed, GTF_writing } from '../../abi/flags.ts';
import { GRANT_ENTRY_V1_SIZE, GRANT_PER_FRAME_V1 } from '../../abi/limits.ts';
import type { GuestContext } from '../context.ts';
import { GNTTAB_SHARED_VA } from '../layout.ts';
import { archMapShared, archUnmap, entryAddr } from './arch.ts';
import type { GnttabOps } from './ops.ts';

const FLAGS = 0;
const DOMID = 2;
const FRAME = 4;

export class GnttabV1Ops implements GnttabOps {
  readonly version = 1;
  readonly grefsPerGrantFrame = GRANT_PER_FRAME_V1;
  readonly updateSubpageEntry = null;
  readonly updateTransEntry = null;
  private readonly ctx: GuestContext;

  constructor(ctx: GuestContext) {
    this.ctx = ctx;
  }

  nrStatusFrames(): number {
    return 0;
  }

  mapFrames(frames: readonly number[]): number {
    const rc = archMapShared(this.ctx, frames);
    if (rc !== 0) this.ctx.log(`BUG: mapping the grant frames failed: ${rc}`);
    return rc;
  }

  unmapFrames(nrGrantFrames: number): void {
    archUnmap(this.ctx, GNTTAB_SHARED_VA, nrGrantFrames);
  }

  /** domid, then frame (u32), then flags with an atomic store: the store that makes the entry valid. */
  updateEntry(ref: number, domid: number, frame: number, flags: number): void {
    const e = entryAddr(ref, GRANT_ENTRY_V1_SIZE);
    const mem = this.ctx.mem;
    mem.writeU16(e + DOMID, domid);
    mem.writeU32(e + FRAME, frame);
    mem.store16(e + FLAGS, flags);
  }

  /**
   * Loop: fail while GTF_reading/GTF_writing is set, else CMPXCHG the flags to
   * 0; a lost race retries with the value found. No bound: Xen's side is
   * bounded, and it only ever sets the in-use bits, which end the loop.
   */
  endForeignAccessRef(ref: number): boolean {
    const pflags = entryAddr(ref, GRANT_ENTRY_V1_SIZE) + FLAGS;
    const mem = this.ctx.mem;
    let flags = mem.load16(pflags);
    for (;;) {
      if ((flags & (GTF_reading | GTF_writing)) !== 0) return false;
      const found = mem.cmpxchg16(pflags, flags, 0);
      if (found === flags) return true;
      flags = found;
    }
  }

  endForeignTransferRef(ref: number): number {
    return endTransfer(this.ctx, entryAddr(ref, GRANT_ENTRY_V1_SIZE), () =>
      this.ctx.mem.readU32(entryAddr(ref, GRANT_ENTRY_V1_SIZE) + FRAME),
    );
  }

  readFrame(ref: number): number {
    return this.ctx.mem.readU32(entryAddr(ref, GRANT_ENTRY_V1_SIZE) + FRAME);
  }

  query(ref: number): number {
    return this.ctx.mem.load16(entryAddr(ref, GRANT_ENTRY_V1_SIZE) + FLAGS) & (GTF_reading | GTF_writing);
  }
}

/**
 * gnttab_end_foreign_transfer_ref (both layouts, on the flags word at `pflags`):
 * while the transfer is not committed, try to CMPXCHG the flags to 0 (no
 * transfer: return 0); once committed, spin until completed, then (read
 * barrier) read the frame, which must be non-zero.
 */
export function endTransfer(ctx: GuestContext, pflags: number, readFrame: () => number): number {
  const mem = ctx.mem;
  let flags: number;
  for (;;) {
    flags = mem.load16(pflags);
    if ((flags & GTF_transfer_committed) !== 0) break;
    if (mem.cmpxchg16(pflags, flags, 0) === flags) return 0;
  }
  while ((flags & GTF_transfer_completed) === 0) flags = mem.load16(pflags);
  mem.fence();
  const frame = readFrame();
  if (frame === 0)
    throw new Error(`BUG: transfer into entry at 0x${pflags.toString(16)} completed with frame 0`);
  return frame;
}
