// Backend helpers: mapping and copying other domains' grants (guest-side.md
// §2.9, §2.10). Batches go to Xen in one hypercall; an element answered
// GNTST_eagain (its page is paged out) is retried alone with sleeps of 1, 2,
// ..., 255 ms and becomes GNTST_bad_page if it never succeeds. Every element's
// status is looked at on its own: a batch is never all-or-nothing (XSA-361,
// XSA-362), so undoing a failed batch unmaps exactly the elements that mapped.

import { GNTMAP_host_map, GNTMAP_readonly } from '../../abi/flags.ts';
import { gnttab_copy, gnttab_map_grant_ref, gnttab_unmap_grant_ref } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_copy, GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref } from '../../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import {
  GNTST_bad_page,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_no_device_space,
  GNTST_okay,
} from '../../abi/status.ts';
import type { StructDef, StructValue } from '../../abi/struct.ts';
import type { GuestContext } from '../context.ts';
import { grantTableOp } from '../hypercall.ts';
import type { PageAllocator } from '../pages.ts';
import { ENOENT, ENOMEM } from './errno.ts';

export type MapOp = StructValue<keyof typeof gnttab_map_grant_ref.fields>;
export type UnmapOp = StructValue<keyof typeof gnttab_unmap_grant_ref.fields>;
export type CopyOp = StructValue<keyof typeof gnttab_copy.fields>;

/** The status gnttab_set_map_op leaves: positive, "not done yet". */
export const GNTST_NOT_DONE = 1;
/** INVALID_GRANT_HANDLE. */
export const INVALID_GRANT_HANDLE = 0xffff_ffff;
/** The eagain retry gives up when its delay reaches this (ms): 255 retries, about 32 s asleep. */
export const MAX_DELAY = 256;

/**
 * gnttab_set_map_op. host_addr is `addr` itself: PV and GNTMAP_contains_pte
 * take it as is, and an HVM guest's addresses are already guest-physical.
 */
export function gnttabSetMapOp(addr: number, flags: number, ref: number, domid: number): MapOp {
  return { host_addr: addr, flags, ref, dom: domid, status: GNTST_NOT_DONE, handle: 0, dev_bus_addr: 0 };
}

/** gnttab_set_unmap_op. */
export function gnttabSetUnmapOp(addr: number, _flags: number, handle: number): UnmapOp {
  return { host_addr: addr, dev_bus_addr: 0, handle, status: GNTST_NOT_DONE };
}

/**
 * gnttab_retry_eagain_gop: re-issue one op while it answers eagain, sleeping
 * 1, 2, ... ms in between; when the delay reaches MAX_DELAY, give up with
 * GNTST_bad_page. (Linux BUGs if the hypercall itself fails; we set
 * general_error and say so.)
 */
async function retryEagain<F extends string>(
  ctx: GuestContext,
  cmd: number,
  def: StructDef<F>,
  op: StructValue<F | 'status'>,
  func: string,
): Promise<void> {
  let delay = 1;
  do {
    const r = grantTableOp(ctx, cmd, def, [op as StructValue<F>]);
    if (r.rc !== 0) {
      ctx.log(`BUG: ${func}: hypercall failed: ${r.rc}`);
      op.status = GNTST_general_error;
      return;
    }
    Object.assign(op, r.out[0]);
    if (op.status === GNTST_eagain) await ctx.clock.sleep(delay++);
  } while (op.status === GNTST_eagain && delay < MAX_DELAY);
  if (delay >= MAX_DELAY) {
    ctx.log(`${func}: eagain grant`);
    op.status = GNTST_bad_page;
  }
}

/** Issues a batch and copies the results back into `ops`; the hypercall's return. */
function issue<F extends string>(
  ctx: GuestContext,
  cmd: number,
  def: StructDef<F>,
  ops: StructValue<F>[],
): number {
  const r = grantTableOp(ctx, cmd, def, ops);
  r.out.forEach((o, i) => {
    Object.assign(ops[i]!, o);
  });
  return r.rc;
}

/**
 * gnttab_batch_map: one hypercall, then each eagain element retried alone.
 * Afterwards no status is eagain. Returns the batch hypercall's result (Linux
 * BUGs when it is not 0; the statuses of elements not reached are unchanged).
 */
export async function gnttabBatchMap(ctx: GuestContext, ops: MapOp[]): Promise<number> {
  const rc = issue(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, ops);
  if (rc !== 0) {
    ctx.log(`BUG: gnttab_batch_map: ${rc}`);
    return rc;
  }
  for (const op of ops)
    if (op.status === GNTST_eagain)
      await retryEagain(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, op, 'gnttab_batch_map');
  return 0;
}

/** gnttab_batch_copy: the same rule for GNTTABOP_copy. */
export async function gnttabBatchCopy(ctx: GuestContext, ops: CopyOp[]): Promise<number> {
  const rc = issue(ctx, GNTTABOP_copy, gnttab_copy, ops);
  if (rc !== 0) {
    ctx.log(`BUG: gnttab_batch_copy: ${rc}`);
    return rc;
  }
  for (const op of ops)
    if (op.status === GNTST_eagain)
      await retryEagain(ctx, GNTTABOP_copy, gnttab_copy, op, 'gnttab_batch_copy');
  return 0;
}

/**
 * gnttab_map_refs: maps a batch; per element, okay marks the page foreign
 * (domid, ref), no_device_space warns that the maptrack limit was reached,
 * eagain is retried and looked at again. Per-element failures stay in the
 * statuses for the caller. Returns the hypercall's result.
 */
export async function gnttabMapRefs(
  ctx: GuestContext,
  mapOps: MapOp[],
  pages: PageAllocator | null = null,
): Promise<number> {
  const rc = issue(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, mapOps);
  if (rc !== 0) return rc;
  for (let i = 0; i < mapOps.length; i++) {
    const op = mapOps[i]!;
    switch (op.status) {
      case GNTST_okay:
        pages?.setForeign(op.host_addr, op.dom, op.ref);
        break;
      case GNTST_no_device_space:
        ctx.log("maptrack limit reached, can't map all guest pages");
        break;
      case GNTST_eagain:
        await retryEagain(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, op, 'gnttab_map_refs');
        i--; // look at this element again
        break;
      default:
        break;
    }
  }
  return 0;
}

/** gnttab_unmap_refs: unmaps a batch and clears the foreign marks. Returns the hypercall's result. */
export function gnttabUnmapRefs(
  ctx: GuestContext,
  unmapOps: UnmapOp[],
  pages: PageAllocator | null = null,
): number {
  const rc = issue(ctx, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, unmapOps);
  if (rc !== 0) return rc;
  for (const op of unmapOps) pages?.clearForeign(op.host_addr);
  return 0;
}

// ---- mapping a peer's pages into the foreign-map area -------------------------------------------

/** A peer's grants mapped by mapForeignRefs: where, from whom, and the handles to unmap them with. */
export interface ForeignMapping {
  /** First page of the mapping (unpopulated space above RAM); page i at addr + i * 4096. */
  readonly addr: number;
  readonly domid: number;
  readonly refs: readonly number[];
  readonly handles: readonly number[];
  readonly readonly: boolean;
}

export interface MapForeignResult {
  /** 0; -ENOMEM (no address space); -ENOENT when some element failed; or the hypercall's error. */
  rc: number;
  mapping: ForeignMapping | null;
  /** Each element's status from Xen. */
  status: number[];
  /** True when undoing a failed batch could not unmap everything: the address range is kept. */
  leaked: boolean;
}

/**
 * Maps `refs` of `domid` at consecutive pages of unpopulated space, as
 * xenbus_map_ring_valloc and gntdev do. If any element fails, exactly the
 * elements that mapped are unmapped again (XSA-361) and the range is
 * returned, unless an unmap failed too.
 */
export async function mapForeignRefs(
  ctx: GuestContext,
  pages: PageAllocator,
  domid: number,
  refs: readonly number[],
  readonly = false,
): Promise<MapForeignResult> {
  const n = refs.length;
  const addr = pages.allocUnpopulated(n);
  if (addr < 0) return { rc: -ENOMEM, mapping: null, status: [], leaked: false };
  const flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0);
  const ops = refs.map((ref, i) => gnttabSetMapOp(addr + i * XEN_PAGE_SIZE, flags, ref, domid));
  const rc = await gnttabMapRefs(ctx, ops, pages);
  const status = ops.map((o) => o.status);
  if (rc === 0 && status.every((s) => s === GNTST_okay)) {
    const handles = ops.map((o) => o.handle);
    return { rc: 0, mapping: { addr, domid, refs: [...refs], handles, readonly }, status, leaked: false };
  }
  const undo = ops
    .filter((o) => o.status === GNTST_okay)
    .map((o) => gnttabSetUnmapOp(o.host_addr, flags, o.handle));
  let leaked = false;
  if (undo.length > 0) {
    const urc = gnttabUnmapRefs(ctx, undo, pages);
    leaked = urc !== 0 || undo.some((u) => u.status !== GNTST_okay);
  }
  if (leaked) ctx.log(`leaking ${n} pages of foreign-map space at 0x${addr.toString(16)}`);
  else pages.freeUnpopulated(addr, n);
  return { rc: rc !== 0 ? rc : -ENOENT, mapping: null, status, leaked };
}

export interface UnmapForeignResult {
  /** 0, the hypercall's error, or -ENOENT when some element failed (the range is then kept). */
  rc: number;
  status: number[];
}

/** Unmaps a mapping made by mapForeignRefs; the address range is reused only if every unmap worked. */
export function unmapForeignRefs(
  ctx: GuestContext,
  pages: PageAllocator,
  m: ForeignMapping,
): UnmapForeignResult {
  const flags = GNTMAP_host_map | (m.readonly ? GNTMAP_readonly : 0);
  const ops = m.handles.map((h, i) => gnttabSetUnmapOp(m.addr + i * XEN_PAGE_SIZE, flags, h));
  const rc = gnttabUnmapRefs(ctx, ops, pages);
  const status = ops.map((o) => o.status);
  if (rc !== 0) return { rc, status };
  if (status.some((s) => s !== GNTST_okay)) return { rc: -ENOENT, status };
  pages.freeUnpopulated(m.addr, m.handles.length);
  return { rc: 0, status };
}
