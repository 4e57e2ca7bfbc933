// Worker-thread roles of XSA-501 (a version change racing operations that
// drop and retake the grant lock). Each window lies between two hypercalls:
// A's set_version and B's copy or map inside Xen at the same time.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GNTMAP_host_map, GTF_permit_access, GTF_sub_page } from '../../abi/flags.ts';
import { gnttab_copy, gnttab_map_grant_ref } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_copy, GNTTABOP_map_grant_ref, XEN_EAGAIN, XEN_EBUSY } from '../../abi/hypercall.ts';
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { GuestContext } from '../../guest/context.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { grantTableOp, setVersion } from '../../guest/hypercall.ts';
import { GNTTAB_SHARED_VA } from '../../guest/layout.ts';
import { H, overlapped, passive, type Role, stopped, tally, waitReady } from './race-harness.ts';

const PAYLOAD = 0x3c;
/** A's sub-page window of its page, and the ref it grants it as (test 1). */
const SUB_OFF = 256;
const SUB_LEN = 512;
const SUB_REF = 20;
/** Copies per batch: the sub-page pin is held across each element of the batch. */
const COPIES = 32;
/** A host_addr no PV address space has: B's map fails after the pin (test 3). */
const BAD_HOST_ADDR = 0x1_0000_0000;

function initTable(ctx: GuestContext, version: 1 | 2): Gnttab {
  const gt = new Gnttab(ctx, { version });
  if (gt.init() !== 0) throw new Error(`d${ctx.start.domid}: gnttab init failed`);
  return gt;
}

/** A v2 sub-page entry written as Linux does: everything, then the flags. */
function writeSubPage(ctx: GuestContext, ref: number, domid: number, frame: number): void {
  const e = GNTTAB_SHARED_VA + ref * 16;
  ctx.mem.writeU16(e + 2, domid);
  ctx.mem.writeU16(e + 4, SUB_OFF);
  ctx.mem.writeU16(e + 6, SUB_LEN);
  ctx.mem.writeU64(e + 8, frame);
  ctx.mem.store16(e, GTF_permit_access | GTF_sub_page);
}

/**
 * Test 1, A (v2): grants a sub-page of its page to B as ref 20, then switches
 * to v1 and back for ever. A switch refused with -EAGAIN or -EBUSY is a hit:
 * B's copy held the sub-page pin inside Xen while set_version ran. After a
 * switch that went through, ref 20 is gone (v1 zeroes refs from 8 up) and A
 * grants it again once back in v2.
 */
async function switcher(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 2);
  const page = gt.pages.alloc();
  ctx.mem.fill(page, 4096, PAYLOAD);
  const frame = gt.pages.gfnOf(page);
  writeSubPage(ctx, SUB_REF, a.domids.B!, frame);
  Atomics.store(w, H.ref, SUB_REF);
  Atomics.add(w, H.ready, 1);
  await waitReady(ctx, w, 2);
  let n = 0;
  while (!stopped(w)) {
    const rc = setVersion(ctx, 1).rc;
    let hit = false;
    if (rc === 0) {
      if (setVersion(ctx, 2).rc !== 0) Atomics.add(w, H.violations, 1);
      writeSubPage(ctx, SUB_REF, a.domids.B!, frame);
    } else if (rc === -XEN_EAGAIN || rc === -XEN_EBUSY) hit = true;
    else Atomics.add(w, H.violations, 1);
    tally(w, a, hit);
    if ((++n & 255) === 0) await ctx.clock.sleep(0);
  }
  return n;
}

/** Test 1, B: batches of copies from A's sub-page ref 20; each is A's bytes or general_error. */
async function subpageCopier(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  const destFrame = gt.pages.gfnOf(dest);
  await waitReady(ctx, w, 1);
  Atomics.add(w, H.ready, 1);
  const ops = Array.from({ length: COPIES }, (_, i) => ({
    source_u: SUB_REF,
    source_domid: a.domids.A!,
    source_offset: SUB_OFF + i * 16,
    dest_u: destFrame,
    dest_domid: DOMID_SELF,
    dest_offset: i * 16,
    len: 16,
    flags: GNTCOPY_source_gref,
  }));
  let okay = 0;
  const n = await passive(ctx, w, () => {
    ctx.mem.fill(dest, COPIES * 16, 0);
    const r = grantTableOp(ctx, GNTTABOP_copy, gnttab_copy, ops);
    if (r.rc !== 0) Atomics.add(w, H.violations, 1);
    r.out.forEach((o, i) => {
      const got = ctx.mem.read(dest + i * 16, 16);
      const ok =
        o.status === GNTST_okay
          ? got.every((x) => x === PAYLOAD)
          : o.status === GNTST_general_error && got.every((x) => x === 0);
      if (!ok) Atomics.add(w, H.violations, 1);
      if (o.status === GNTST_okay) okay++;
    });
  });
  // A harness whose copies never went through would check nothing.
  if (okay === 0) Atomics.add(w, H.violations, 1);
  return n;
}

/**
 * Test 3, A (v1): grants its reserved ref 3 to B, then switches v1 <-> v2 for
 * ever (a pinned reserved ref does not stop it). Every switch must succeed; a
 * hit is a switch while B's map was inside Xen.
 */
async function reservedSwitcher(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const page = gt.pages.alloc();
  gt.grantForeignAccessRef(3, a.domids.B!, gt.pages.gfnOf(page), false);
  Atomics.add(w, H.ready, 1);
  await waitReady(ctx, w, 2);
  let n = 0;
  while (!stopped(w)) {
    let rc = 0;
    const to = (n & 1) === 0 ? 2 : 1;
    const hit = overlapped(w, () => {
      rc = setVersion(ctx, to).rc;
    });
    if (rc !== 0) Atomics.add(w, H.violations, 1);
    tally(w, a, hit);
    if ((++n & 255) === 0) await ctx.clock.sleep(0);
  }
  // Leave A in v1, as it started.
  if ((n & 1) === 1 && setVersion(ctx, 1).rc !== 0) Atomics.add(w, H.violations, 1);
  return n;
}

/** Test 3, B: maps A's ref 3 at a bad host_addr for ever; each map fails late with general_error. */
async function lateMapper(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  await waitReady(ctx, w, 1);
  Atomics.add(w, H.ready, 1);
  return passive(ctx, w, () => {
    const m = grantTableOp(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: BAD_HOST_ADDR, flags: GNTMAP_host_map, ref: 3, dom: a.domids.A! },
    ]).out[0]!;
    if (m.status !== GNTST_general_error) Atomics.add(w, H.violations, 1);
  });
}

export const versionRoles: Record<string, Role> = {
  'xsa-501-switcher': switcher,
  'xsa-501-copier': subpageCopier,
  'xsa-501-reserved-switcher': reservedSwitcher,
  'xsa-501-late-mapper': lateMapper,
};
