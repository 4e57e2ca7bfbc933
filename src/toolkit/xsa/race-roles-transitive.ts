// Worker-thread roles of the transitive-grant races (XSA-226, 318, 411): A
// (v2) grants pages to B; B (v2) has a transitive entry t for C onto (A, g1)
// and rewrites it from its own thread; C (and others) copy through it. Each
// side sets up its own table, as guests do, and publishes its refs in the
// harness words.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GTF_transitive } from '../../abi/flags.ts';
import { gnttab_copy } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_copy } from '../../abi/hypercall.ts';
import { GNTST_okay, isGntst } from '../../abi/status.ts';
import type { GuestContext } from '../../guest/context.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { grantTableOp } from '../../guest/hypercall.ts';
import { GNTTAB_SHARED_VA } from '../../guest/layout.ts';
import { H, overlapped, passive, type Role, stopped, tally, waitReady } from './race-harness.ts';

/** The bytes of A's two granted pages: which one a copy read tells which target t had. */
export const PAGE_A = 0x5a;
export const PAGE_B = 0x6b;
/** Copies per batch (the advisory's 100), 16 bytes each at their own offset of C's page. */
export const BATCH = 100;
const LEN = 16;
/** Status preset in every element: Xen must overwrite it. */
const SENTINEL = 0x7777;

function initTable(ctx: GuestContext, version: 1 | 2): Gnttab {
  const gt = new Gnttab(ctx, { version });
  if (gt.init() !== 0) throw new Error(`d${ctx.start.domid}: gnttab init failed`);
  return gt;
}

/** A: two pages of known bytes granted to B as g1 and g2; publishes them and is done. */
async function granter(ctx: GuestContext, a: { domids: Record<string, number> }, w: Int32Array) {
  const gt = initTable(ctx, 2);
  const refs: number[] = [];
  for (const byte of [PAGE_A, PAGE_B]) {
    const page = gt.pages.alloc();
    ctx.mem.fill(page, 4096, byte);
    refs.push(gt.grantForeignAccess(a.domids.B!, gt.pages.gfnOf(page), false));
  }
  Atomics.store(w, H.ref2, refs[1]!);
  Atomics.store(w, H.ref, refs[0]!);
  Atomics.add(w, H.ready, 1);
  return refs;
}

/** B: t for C onto (A, g1); then, until the race stops, rewrites t's target ref and type. */
async function intermediate(ctx: GuestContext, a: { domids: Record<string, number> }, w: Int32Array) {
  const gt = initTable(ctx, 2);
  await waitReady(ctx, w, 1);
  const g1 = Atomics.load(w, H.ref);
  const g2 = Atomics.load(w, H.ref2);
  const t = gt.grantForeignAccessTrans(a.domids.C!, 0, a.domids.A!, g1);
  if (t < 0) throw new Error(`grant_foreign_access_trans: ${t}`);
  Atomics.store(w, H.ref3, t);
  Atomics.add(w, H.ready, 1);
  // grant_entry_v2.transitive: flags at +0, gref at +8.
  const entry = GNTTAB_SHARED_VA + t * 16;
  let n = 0;
  while (!stopped(w)) {
    const k = n & 3;
    if (k === 0) ctx.mem.store32(entry + 8, g2);
    else if (k === 1) ctx.mem.store32(entry + 8, g1);
    else if (k === 2) ctx.mem.and16(entry, ~GTF_transitive & 0xffff);
    else ctx.mem.or16(entry, GTF_transitive);
    Atomics.add(w, H.actions, 1);
    if ((++n & 4095) === 0) await ctx.clock.sleep(0);
  }
  // Leave t as first set.
  ctx.mem.store32(entry + 8, g1);
  ctx.mem.or16(entry, GTF_transitive);
  return n;
}

/**
 * C: batches of BATCH copies from (B, t). Every element must come back with a
 * GNTST status (never the sentinel), an okay one with 16 bytes of one of A's
 * pages, a failed one with nothing written. A hit is a batch whose elements
 * saw t in more than one state: B's rewrite landed while Xen was inside it.
 */
async function copier(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  const destFrame = gt.pages.gfnOf(dest);
  await waitReady(ctx, w, 2);
  const t = Atomics.load(w, H.ref3);
  const ops = Array.from({ length: BATCH }, (_, i) => ({
    source_u: t,
    source_domid: a.domids.B!,
    source_offset: 0,
    dest_u: destFrame,
    dest_domid: DOMID_SELF,
    dest_offset: i * LEN,
    len: LEN,
    flags: GNTCOPY_source_gref,
    status: SENTINEL,
  }));
  let n = 0;
  while (!stopped(w)) {
    ctx.mem.fill(dest, 4096, 0);
    const r = grantTableOp(ctx, GNTTABOP_copy, gnttab_copy, ops);
    const seen = new Set<string>();
    let bad = r.rc !== 0;
    r.out.forEach((o, i) => {
      const got = ctx.mem.read(dest + i * LEN, LEN);
      if (!isGntst(o.status)) bad = true;
      else if (o.status === GNTST_okay) {
        const b = got[0]!;
        if ((b !== PAGE_A && b !== PAGE_B) || got.some((x) => x !== b)) bad = true;
        seen.add(b === PAGE_A ? 'g1' : 'g2');
      } else {
        if (got.some((x) => x !== 0)) bad = true;
        seen.add(`status ${o.status}`);
      }
    });
    if (bad) Atomics.add(w, H.violations, 1);
    tally(w, a, seen.size > 1);
    if ((++n & 63) === 0) await ctx.clock.sleep(0);
  }
  return n;
}

export const transitiveRoles: Record<string, Role> = {
  'xsa-226-granter': granter,
  'xsa-226-intermediate': intermediate,
  'xsa-226-copier': copier,
  'xsa-318-granter': granter,
};

// ---- XSA-318: a copy retried at its first element --------------------------------------------

/** Copies per batch of XSA-318 (the advisory's 3), statuses preset to the sentinel. */
const BATCH_318 = 3;

/**
 * One batch from (granter, ref) into `dest`: true when every element came
 * back with a GNTST status (never the sentinel), an okay one with `byte`
 * throughout its 16 bytes and a failed one with nothing written.
 */
function copySound(
  ctx: GuestContext,
  ops: readonly Record<string, number>[],
  dest: number,
  byte: number,
): { sound: boolean; okay: number } {
  ctx.mem.fill(dest, ops.length * LEN, 0);
  const r = grantTableOp(ctx, GNTTABOP_copy, gnttab_copy, ops);
  let sound = r.rc === 0;
  let okay = 0;
  r.out.forEach((o, i) => {
    const got = ctx.mem.read(dest + i * LEN, LEN);
    if (!isGntst(o.status)) sound = false;
    else if (o.status === GNTST_okay) {
      okay++;
      if (got.some((x) => x !== byte)) sound = false;
    } else if (got.some((x) => x !== 0)) sound = false;
  });
  return { sound, okay };
}

function copyOps(src: number, srcDomid: number, destFrame: number, n: number, status = 0) {
  return Array.from({ length: n }, (_, i) => ({
    source_u: src,
    source_domid: srcDomid,
    source_offset: 0,
    dest_u: destFrame,
    dest_domid: DOMID_SELF,
    dest_offset: i * LEN,
    len: LEN,
    flags: GNTCOPY_source_gref,
    status,
  }));
}

/**
 * XSA-318, B: t onto (A, g1), its grantee switched between C and C2 for ever,
 * so C2's copies pin t now and then: Xen retries C's element when t's pin
 * changed while B's lock was dropped, which needs C2's copy inside Xen then.
 */
async function grantee318(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 2);
  await waitReady(ctx, w, 1);
  const t = gt.grantForeignAccessTrans(a.domids.C!, 0, a.domids.A!, Atomics.load(w, H.ref));
  if (t < 0) throw new Error(`grant_foreign_access_trans: ${t}`);
  Atomics.store(w, H.ref3, t);
  Atomics.add(w, H.ready, 1);
  const entry = GNTTAB_SHARED_VA + t * 16;
  let n = 0;
  while (!stopped(w)) {
    ctx.mem.store16(entry + 2, (n & 1) === 0 ? a.domids.C2! : a.domids.C!);
    if ((++n & 255) === 0) await ctx.clock.sleep(0);
  }
  ctx.mem.store16(entry + 2, a.domids.C!);
  return n;
}

/** XSA-318, C2: copies from (B, t) for ever; A's bytes, or general_error while t names C. */
async function second318(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  await waitReady(ctx, w, 2);
  const ops = copyOps(Atomics.load(w, H.ref3), a.domids.B!, gt.pages.gfnOf(dest), 1);
  Atomics.add(w, H.ready, 1);
  return passive(ctx, w, () => {
    if (!copySound(ctx, ops, dest, PAGE_A).sound) Atomics.add(w, H.violations, 1);
  });
}

/**
 * XSA-318, C: batches of 3 copies through (B, t), statuses preset to the
 * sentinel: at return every status is written and a GNTST value, rc 0. A hit
 * is a batch while C2's copy was inside Xen.
 */
async function batch318(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  await waitReady(ctx, w, 3);
  const ops = copyOps(Atomics.load(w, H.ref3), a.domids.B!, gt.pages.gfnOf(dest), BATCH_318, SENTINEL);
  let n = 0;
  let okay = 0;
  // Past the stop until one copy went through (as d411).
  while (!stopped(w) || (okay === 0 && n < a.maxAttempts)) {
    let sound = false;
    const hit = overlapped(w, () => {
      const r = copySound(ctx, ops, dest, PAGE_A);
      sound = r.sound;
      okay += r.okay;
    });
    if (!sound) Atomics.add(w, H.violations, 1);
    tally(w, a, hit);
    if ((++n & 63) === 0) await ctx.clock.sleep(0);
  }
  // A harness whose copies never went through would check nothing.
  if (okay === 0) Atomics.add(w, H.violations, 1);
  return n;
}

// ---- XSA-411: two transitive copies, each through the other's intermediate --------------------

/**
 * XSA-411, A (v2): g1 (ref 10's page, PAGE_A) to B; once B's ref for A is
 * published, a transitive entry for D onto it; then rewrites that entry's
 * target now and then (to an empty ref and back) to push Xen onto its error
 * paths.
 */
async function a411(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 2);
  const page = gt.pages.alloc();
  ctx.mem.fill(page, 4096, PAGE_A);
  Atomics.store(w, H.ref, gt.grantForeignAccess(a.domids.B!, gt.pages.gfnOf(page), false));
  Atomics.add(w, H.ready, 1);
  while (Atomics.load(w, H.ref2) <= 0 && !stopped(w)) await ctx.clock.sleep(1);
  const target = Atomics.load(w, H.ref2);
  const t = gt.grantForeignAccessTrans(a.domids.D!, 0, a.domids.B!, target);
  if (t < 0) throw new Error(`grant_foreign_access_trans: ${t}`);
  Atomics.store(w, H.ref3, t);
  Atomics.add(w, H.ready, 1);
  return rewriteTarget(ctx, w, GNTTAB_SHARED_VA + t * 16, target);
}

/** XSA-411, B (v2): its page (PAGE_B) to A; t for C onto (A, g1); then rewrites t's target likewise. */
async function b411(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 2);
  const page = gt.pages.alloc();
  ctx.mem.fill(page, 4096, PAGE_B);
  await waitReady(ctx, w, 1);
  const g1 = Atomics.load(w, H.ref);
  const t = gt.grantForeignAccessTrans(a.domids.C!, 0, a.domids.A!, g1);
  if (t < 0) throw new Error(`grant_foreign_access_trans: ${t}`);
  Atomics.store(w, H.ref4, t);
  Atomics.store(w, H.ref2, gt.grantForeignAccess(a.domids.A!, gt.pages.gfnOf(page), false));
  Atomics.add(w, H.ready, 1);
  return rewriteTarget(ctx, w, GNTTAB_SHARED_VA + t * 16, g1);
}

/** Points a transitive entry at an empty ref and back, every 64th step, until the race stops. */
async function rewriteTarget(ctx: GuestContext, w: Int32Array, entry: number, target: number) {
  let n = 0;
  while (!stopped(w)) {
    ctx.mem.store32(entry + 8, (n & 64) === 0 ? target : target ^ 0x40);
    if ((++n & 63) === 0) await ctx.clock.sleep(0);
  }
  ctx.mem.store32(entry + 8, target);
  return n;
}

/** XSA-411, C: copies through (B, t) for ever: PAGE_A, or a GNTST error with nothing written. */
async function c411(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  await waitReady(ctx, w, 3);
  const ops = copyOps(Atomics.load(w, H.ref4), a.domids.B!, gt.pages.gfnOf(dest), 1);
  Atomics.add(w, H.ready, 1);
  return passive(ctx, w, () => {
    if (!copySound(ctx, ops, dest, PAGE_A).sound) Atomics.add(w, H.violations, 1);
  });
}

/** XSA-411, D: copies through (A, 21); a hit is a copy while C's was inside Xen. */
async function d411(ctx: GuestContext, a: Parameters<Role>[1], w: Int32Array) {
  const gt = initTable(ctx, 1);
  const dest = gt.pages.alloc();
  await waitReady(ctx, w, 4);
  const ops = copyOps(Atomics.load(w, H.ref3), a.domids.A!, gt.pages.gfnOf(dest), 1);
  let n = 0;
  let okay = 0;
  // Past the stop until one copy went through (within the attempt bound):
  // the hits can all be refused copies, and a run that saw none go through
  // checked nothing of what a copy delivers.
  while (!stopped(w) || (okay === 0 && n < a.maxAttempts)) {
    let sound = false;
    const hit = overlapped(w, () => {
      const r = copySound(ctx, ops, dest, PAGE_B);
      sound = r.sound;
      okay += r.okay;
    });
    if (!sound) Atomics.add(w, H.violations, 1);
    tally(w, a, hit);
    if ((++n & 63) === 0) await ctx.clock.sleep(0);
  }
  // A harness whose copies never went through would check nothing.
  if (okay === 0) Atomics.add(w, H.violations, 1);
  return n;
}

export const transitiveRaceRoles: Record<string, Role> = {
  'xsa-318-grantee': grantee318,
  'xsa-318-second': second318,
  'xsa-318-batch': batch318,
  'xsa-411-a': a411,
  'xsa-411-b': b411,
  'xsa-411-c': c411,
  'xsa-411-d': d411,
};
