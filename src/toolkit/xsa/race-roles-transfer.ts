// Worker-thread roles of the transfer races. XSA-73 (lock-order inversion in transfer): A (PV)
// transfers pages into B's accept_transfer entries while B copies from its
// own grant, so both hypercalls take B's page-allocation and grant-table
// locks. The window (both inside Xen at once) needs two hypercalls in Xen at
// the same time; the attempts are bounded by A's pool of pages. XSA-287
// (steal_page and the page-state rules): A transfers a page C maps through
// A's grant, again and again.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GTF_transfer_completed } from '../../abi/flags.ts';
import { gnttab_copy, gnttab_transfer } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_copy, GNTTABOP_transfer } from '../../abi/hypercall.ts';
import { GNTST_bad_page, GNTST_okay, isGntst } from '../../abi/status.ts';
import type { GuestContext } from '../../guest/context.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { grantTableOp, updateVaMapping } from '../../guest/hypercall.ts';
import { FOREIGN_MAP_VA, GNTTAB_SHARED_VA } from '../../guest/layout.ts';
import {
  H,
  mapOnce,
  overlapped,
  passive,
  type Role,
  stopped,
  tally,
  unmapOnce,
  waitReady,
} from './race-harness.ts';

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

// ---- XSA-287: a transfer racing another reference on the same page ---------------------------

/** XSA-287, B: arms TRANSFER_POOL accept_transfer entries for A, publishes them and is done. */
async function acceptor(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx);
  const first = gt.allocGrantReferenceSeq(TRANSFER_POOL);
  if (first < 0) throw new Error('out of grant refs');
  for (let i = 0; i < TRANSFER_POOL; i++) gt.grantForeignTransferRef(first + i, a.domids.A!, 0);
  Atomics.store(w, H.ref2, TRANSFER_POOL);
  Atomics.store(w, H.ref3, first);
  Atomics.add(w, H.ready, 1);
  return first;
}

/**
 * XSA-287, C: maps A's published grant, writes to the page, unmaps, for
 * ever. H.mapped is 1 (and H.done counts the mapping) from the map's return
 * to the unmap's call: the reference C's mapping holds is live all that time.
 */
async function referencer(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  await waitReady(ctx, w, 2);
  return passive(ctx, w, () => {
    const ref = Atomics.load(w, H.ref);
    const m = mapOnce(ctx, a.domids.A!, ref);
    if (m.status === GNTST_okay) {
      Atomics.add(w, H.done, 1);
      Atomics.store(w, H.mapped, 1);
      ctx.mem.writeU32(FOREIGN_MAP_VA, 0x287);
      Atomics.store(w, H.mapped, 0);
      if (unmapOnce(ctx, m.handle) !== GNTST_okay) Atomics.add(w, H.violations, 1);
    } else if (!isGntst(m.status)) Atomics.add(w, H.violations, 1);
  });
}

/**
 * XSA-287, A: grants a page to C and transfers it to B, again and again. A
 * transfer is bad_page while C's mapping holds a reference (the page stays
 * A's, and A tries again), or okay, and then A grants its next page. Never
 * both: a transfer that succeeded while one mapping of C's was live from
 * before the call to after it is a violation.
 */
async function giver(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx);
  await waitReady(ctx, w, 1);
  const first = Atomics.load(w, H.ref3);
  const pool = Atomics.load(w, H.ref2);
  const next = () => {
    const page = gt.pages.alloc();
    const mfn = gt.pages.gfnOf(page);
    if (updateVaMapping(ctx, page, 0) !== 0) throw new Error('update_va_mapping failed');
    return mfn;
  };
  let mfn = next();
  const ref = gt.grantForeignAccess(a.domids.C!, mfn, false);
  Atomics.store(w, H.ref, ref);
  Atomics.add(w, H.ready, 1);
  // Start once C has mapped the grant (a bounded wait): else A could give its
  // whole pool before C's thread ran, and the race would check nothing.
  for (let k = 0; Atomics.load(w, H.done) === 0 && k < 1_000_000; k++)
    if ((k & 255) === 0) await ctx.clock.sleep(0);
  let given = 0;
  let n = 0;
  // Once the window is hit often enough the race stops, but not before one
  // transfer went through: a race of nothing but refusals would check half.
  while ((!stopped(w) || given === 0) && given < pool) {
    let status = 0;
    const live0 = Atomics.load(w, H.mapped) === 1 ? Atomics.load(w, H.done) : -1;
    const hit = overlapped(w, () => {
      const r = grantTableOp(ctx, GNTTABOP_transfer, gnttab_transfer, [
        { mfn, domid: a.domids.B!, ref: first + given },
      ]);
      status = r.rc !== 0 ? r.rc : r.out[0]!.status;
    });
    const live1 = Atomics.load(w, H.mapped) === 1 ? Atomics.load(w, H.done) : -1;
    if (status === GNTST_okay) {
      if (live0 >= 0 && live0 === live1) Atomics.add(w, H.violations, 1);
      given++;
      if (given < pool) {
        mfn = next();
        gt.grantForeignAccessRef(ref, a.domids.C!, mfn, false);
      }
    } else if (status !== GNTST_bad_page) Atomics.add(w, H.violations, 1);
    if (given === pool) Atomics.store(w, H.stop, 1);
    tally(w, a, hit);
    if ((++n & 63) === 0) await ctx.clock.sleep(0);
  }
  // A harness where no transfer went through, or C never mapped, would check nothing.
  if (given === 0 || Atomics.load(w, H.done) === 0) Atomics.add(w, H.violations, 1);
  return given;
}

export const stealRoles: Record<string, Role> = {
  'xsa-287-acceptor': acceptor,
  'xsa-287-referencer': referencer,
  'xsa-287-giver': giver,
};
