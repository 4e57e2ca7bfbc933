// Worker-thread roles of XSA-73 (lock-order inversion in transfer): A (PV)
// transfers pages into B's accept_transfer entries while B copies from its
// own grant, so both hypercalls take B's page-allocation and grant-table
// locks. The window (both inside Xen at once) needs two hypercalls in Xen at
// the same time; the attempts are bounded by A's pool of pages.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GTF_transfer_completed } from '../../abi/flags.ts';
import { gnttab_copy, gnttab_transfer } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_copy, GNTTABOP_transfer } from '../../abi/hypercall.ts';
import { GNTST_okay } from '../../abi/status.ts';
import type { GuestContext } from '../../guest/context.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { grantTableOp, updateVaMapping } from '../../guest/hypercall.ts';
import { GNTTAB_SHARED_VA } from '../../guest/layout.ts';
import { H, overlapped, passive, type Role, stopped, tally, waitReady } from './race-harness.ts';

/** Pages A can give away (and accept_transfer entries B arms): the bound on attempts. */
export const TRANSFER_POOL = 240;
const PAYLOAD = 0x73;

function initTable(ctx: GuestContext): Gnttab {
  const gt = new Gnttab(ctx, { version: 1 });
  if (gt.init() !== 0) throw new Error(`d${ctx.start.domid}: gnttab init failed`);
  return gt;
}

/**
 * A: takes pages out of its own page table (so each holds only its
 * allocation reference, as steal_page wants) and transfers them one by one
 * into B's entries. Every transfer must succeed.
 */
async function sender(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx);
  await waitReady(ctx, w, 1);
  const first = Atomics.load(w, H.ref);
  const count = Atomics.load(w, H.ref2);
  let n = 0;
  while (!stopped(w) && n < count) {
    const page = gt.pages.alloc();
    const mfn = gt.pages.gfnOf(page);
    if (updateVaMapping(ctx, page, 0) !== 0) throw new Error('update_va_mapping failed');
    let status = 0;
    const hit = overlapped(w, () => {
      const r = grantTableOp(ctx, GNTTABOP_transfer, gnttab_transfer, [
        { mfn, domid: a.domids.B!, ref: first + n },
      ]);
      status = r.rc !== 0 ? r.rc : r.out[0]!.status;
    });
    if (status === GNTST_okay) Atomics.add(w, H.done, 1);
    else Atomics.add(w, H.violations, 1);
    n++;
    // The pool bounds the attempts: the race stops with the last page.
    if (n === count) Atomics.store(w, H.stop, 1);
    tally(w, a, hit);
    if ((n & 63) === 0) await ctx.clock.sleep(0);
  }
  return n;
}

/**
 * B: arms TRANSFER_POOL accept_transfer entries for A and grants one page to
 * itself; then copies from that grant until the race stops. Each copy must
 * return B's own bytes; at the end, exactly the transfers A saw succeed have
 * GTF_transfer_completed in B's entries.
 */
async function receiver(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx);
  const src = gt.pages.alloc();
  ctx.mem.fill(src, 4096, PAYLOAD);
  const dest = gt.pages.alloc();
  const self = gt.grantForeignAccess(ctx.start.domid, gt.pages.gfnOf(src), true);
  const first = gt.allocGrantReferenceSeq(TRANSFER_POOL);
  if (self < 0 || first < 0) throw new Error('out of grant refs');
  for (let i = 0; i < TRANSFER_POOL; i++) gt.grantForeignTransferRef(first + i, a.domids.A!, 0);
  Atomics.store(w, H.ref2, TRANSFER_POOL);
  Atomics.store(w, H.ref, first);
  Atomics.add(w, H.ready, 1);
  const op = {
    source_u: self,
    source_domid: ctx.start.domid,
    dest_u: gt.pages.gfnOf(dest),
    dest_domid: DOMID_SELF,
    len: 64,
    flags: GNTCOPY_source_gref,
  };
  const n = await passive(ctx, w, () => {
    ctx.mem.fill(dest, 64, 0);
    const r = grantTableOp(ctx, GNTTABOP_copy, gnttab_copy, [op]);
    const ok = r.rc === 0 && r.out[0]!.status === GNTST_okay;
    if (!ok || ctx.mem.read(dest, 64).some((x) => x !== PAYLOAD)) Atomics.add(w, H.violations, 1);
  });
  let completed = 0;
  for (let i = 0; i < TRANSFER_POOL; i++)
    if ((ctx.mem.load16(GNTTAB_SHARED_VA + (first + i) * 8) & GTF_transfer_completed) !== 0) completed++;
  if (completed !== Atomics.load(w, H.done)) Atomics.add(w, H.violations, 1);
  return n;
}

export const transferRoles: Record<string, Role> = {
  'xsa-73-sender': sender,
  'xsa-73-receiver': receiver,
};
