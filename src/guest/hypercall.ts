// Guest-side hypercall stubs: a guest kernel places argument structs in its own
// memory (the hypercall argument area of layout.ts, the last pages of RAM) and
// makes the raw hypercall. Each stub writes, calls and reads back without
// yielding, so async guest code in the same thread never sees another call's
// arguments there.

import { DOMID_SELF } from '../abi/domid.ts';
import {
  gnttab_get_status_frames,
  gnttab_get_version,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_setup_table,
} from '../abi/gnttab-ops.ts';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  GNTTABOP_get_status_frames,
  GNTTABOP_get_version,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  XENMEM_add_to_physmap,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { xen_add_to_physmap } from '../abi/memory-op.ts';
import {
  decodeStruct,
  encodeArray,
  encodeStruct,
  readStruct,
  readStructArray,
  type StructDef,
  type StructValue,
  writeStruct,
} from '../abi/struct.ts';
import type { GuestContext } from './context.ts';
import { HYPERCALL_ARG_PAGES, hypercallArgArea } from './layout.ts';

/** Bytes of the hypercall argument area. */
export const ARG_AREA_BYTES = HYPERCALL_ARG_PAGES * XEN_PAGE_SIZE;

/** Start of the hypercall argument area of this guest. */
export function argArea(ctx: GuestContext): number {
  return hypercallArgArea(ctx.start.ramBytes);
}

export interface GnttabCall<F extends string> {
  /** 0, or the first non-zero hypercall return. */
  rc: number;
  /** Every op as it stands after the call (ops of chunks not issued are returned as given). */
  out: StructValue<F>[];
}

/**
 * grant_table_op(cmd, ops, count) with the ops placed in the argument area.
 * Batches larger than the area are issued in chunks, in order, stopping at the
 * first chunk whose hypercall fails.
 */
export function grantTableOp<F extends string>(
  ctx: GuestContext,
  cmd: number,
  def: StructDef<F>,
  ops: readonly Partial<StructValue<F>>[],
): GnttabCall<F> {
  const base = argArea(ctx);
  const per = Math.max(1, Math.floor(ARG_AREA_BYTES / def.size));
  const out: StructValue<F>[] = [];
  let rc = 0;
  for (let i = 0; i < ops.length; i += per) {
    const chunk = ops.slice(i, i + per);
    if (rc !== 0) {
      for (const op of chunk) out.push(decodeStruct(def, encodeStruct(def, op)));
      continue;
    }
    ctx.mem.write(base, encodeArray(def, chunk));
    rc = ctx.hypercall(__HYPERVISOR_grant_table_op, cmd, base, chunk.length);
    out.push(...readStructArray(ctx.mem, base, def, chunk.length));
  }
  return { rc, out };
}

/** memory_op(XENMEM_add_to_physmap): place one of a domain's frames at `gpfn` (translated guests). */
export function addToPhysmap(
  ctx: GuestContext,
  domid: number,
  space: number,
  idx: number,
  gpfn: number,
): number {
  const base = argArea(ctx);
  writeStruct(ctx.mem, base, xen_add_to_physmap, { domid, space, idx, gpfn });
  return ctx.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, base);
}

/** update_va_mapping (PV): write the PTE for `va`; a zero PTE unmaps. */
export function updateVaMapping(ctx: GuestContext, va: number, pte: number, flags = 0): number {
  return ctx.hypercall(__HYPERVISOR_update_va_mapping, va, pte, flags);
}

export interface FrameListResult {
  rc: number;
  status: number;
  /** The frame numbers Xen wrote (empty unless rc and status are both 0). */
  frames: number[];
}

/** Offset of the frame list behind the op struct in the argument area. */
const FRAME_LIST_OFFSET = 64;
const MAX_FRAME_LIST = (ARG_AREA_BYTES - FRAME_LIST_OFFSET) / 8;

function frameList(ctx: GuestContext, at: number, n: number): number[] {
  const frames: number[] = [];
  for (let i = 0; i < n; i++) frames.push(Number(ctx.mem.readU64(at + i * 8)));
  return frames;
}

/** GNTTABOP_setup_table(dom, nr_frames): the frame numbers of the first nr_frames shared frames. */
export function setupTable(ctx: GuestContext, nrFrames: number, dom = DOMID_SELF): FrameListResult {
  if (nrFrames > MAX_FRAME_LIST) throw new RangeError(`setup_table: ${nrFrames} frames do not fit`);
  const base = argArea(ctx);
  const list = base + FRAME_LIST_OFFSET;
  writeStruct(ctx.mem, base, gnttab_setup_table, { dom, nr_frames: nrFrames, frame_list: list });
  const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, base, 1);
  const status = readStruct(ctx.mem, base, gnttab_setup_table).status;
  return { rc, status, frames: rc === 0 && status === 0 ? frameList(ctx, list, nrFrames) : [] };
}

/** GNTTABOP_get_status_frames(dom, nr_frames): the frame numbers of the v2 status frames. */
export function getStatusFrames(ctx: GuestContext, nrFrames: number, dom = DOMID_SELF): FrameListResult {
  if (nrFrames > MAX_FRAME_LIST) throw new RangeError(`get_status_frames: ${nrFrames} frames do not fit`);
  const base = argArea(ctx);
  const list = base + FRAME_LIST_OFFSET;
  writeStruct(ctx.mem, base, gnttab_get_status_frames, { dom, nr_frames: nrFrames, frame_list: list });
  const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_get_status_frames, base, 1);
  const status = readStruct(ctx.mem, base, gnttab_get_status_frames).status;
  return { rc, status, frames: rc === 0 && status === 0 ? frameList(ctx, list, nrFrames) : [] };
}

export interface QuerySizeResult {
  rc: number;
  status: number;
  nrFrames: number;
  maxNrFrames: number;
}

/** GNTTABOP_query_size(dom). */
export function querySize(ctx: GuestContext, dom = DOMID_SELF): QuerySizeResult {
  const base = argArea(ctx);
  writeStruct(ctx.mem, base, gnttab_query_size, { dom });
  const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, base, 1);
  const q = readStruct(ctx.mem, base, gnttab_query_size);
  return { rc, status: q.status, nrFrames: q.nr_frames, maxNrFrames: q.max_nr_frames };
}

/** GNTTABOP_set_version: returns the hypercall's result and the version Xen wrote back. */
export function setVersion(ctx: GuestContext, version: number): { rc: number; version: number } {
  const base = argArea(ctx);
  writeStruct(ctx.mem, base, gnttab_set_version, { version });
  const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_set_version, base, 1);
  return { rc, version: readStruct(ctx.mem, base, gnttab_set_version).version };
}

/** GNTTABOP_get_version(dom). */
export function getVersion(ctx: GuestContext, dom = DOMID_SELF): { rc: number; version: number } {
  const base = argArea(ctx);
  writeStruct(ctx.mem, base, gnttab_get_version, { dom });
  const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_get_version, base, 1);
  return { rc, version: readStruct(ctx.mem, base, gnttab_get_version).version };
}
