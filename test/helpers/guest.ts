// Test-side guest plumbing: structs placed in a domain's own memory and passed to
// the raw hypercall interface, as a guest kernel would.

import type { DomainHandle } from '../../src/index.ts';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_SELF,
  encodeArray,
  GNTMAP_host_map,
  GNTTABOP_get_status_frames,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_unmap_grant_ref,
  GRANT_PER_FRAME_V1,
  GRANT_PER_FRAME_V2,
  GTF_permit_access,
  gnttab_get_status_frames,
  gnttab_map_grant_ref,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_unmap_grant_ref,
  readStructArray,
  type StructDef,
  type StructValue,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
  XENMEM_add_to_physmap,
  xen_add_to_physmap,
} from '../../src/index.ts';

/** Where tests put argument structs: the last 16 pages of the domain's RAM. */
export function scratch(dom: DomainHandle, page = 0): number {
  return dom.ramBytes - (16 - page) * 4096;
}

/** Where a guest places its grant frames: the unpopulated space above 3 GiB. */
export const GNTTAB_VA = 0xc000_0000;
export const STATUS_VA = 0xd000_0000;
/** Where backends map foreign grants. */
export const MAP_VA = 0xe000_0000;

export interface OpResult<F extends string> {
  rc: number;
  out: StructValue<F>[];
}

/** Writes `ops` into the domain's scratch area, calls grant_table_op, reads them back. */
export function gnttabOp<F extends string>(
  dom: DomainHandle,
  cmd: number,
  def: StructDef<F>,
  ops: readonly Partial<StructValue<F>>[],
  count = ops.length,
): OpResult<F> {
  const addr = scratch(dom);
  dom.memory.write(addr, encodeArray(def, ops));
  const rc = dom.hypercall(__HYPERVISOR_grant_table_op, cmd, addr, count);
  return { rc, out: dom.alive ? readStructArray(dom.memory, addr, def, ops.length) : [] };
}

export function one<F extends string>(r: OpResult<F>): StructValue<F> {
  const v = r.out[0];
  if (v === undefined) throw new Error('no result');
  return v;
}

/**
 * Maps the domain's grant frames (and, in v2, status frames) into its address
 * space as a guest kernel does: PV through setup_table/get_status_frames and
 * update_va_mapping, HVM through add_to_physmap.
 */
export function mapGrantTable(dom: DomainHandle, frames = dom.xen.gt.nrGrantFrames): void {
  if (dom.kind === 'pv') {
    const list = scratch(dom, 2);
    const st = gnttabOp(dom, GNTTABOP_setup_table, gnttab_setup_table, [
      { dom: DOMID_SELF, nr_frames: frames, frame_list: list },
    ]);
    if (st.rc !== 0 || one(st).status !== 0)
      throw new Error(`setup_table: rc ${st.rc} status ${one(st).status}`);
    for (let i = 0; i < frames; i++) {
      const mfn = Number(dom.memory.readU64(list + i * 8));
      const rc = dom.hypercall(
        __HYPERVISOR_update_va_mapping,
        GNTTAB_VA + i * 4096,
        mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW),
        0,
      );
      if (rc !== 0) throw new Error(`update_va_mapping: ${rc}`);
    }
    if (dom.xen.gt.version === 2) {
      const n = Math.ceil(frames / 8);
      const gs = gnttabOp(dom, GNTTABOP_get_status_frames, gnttab_get_status_frames, [
        { dom: DOMID_SELF, nr_frames: n, frame_list: list },
      ]);
      if (gs.rc !== 0 || one(gs).status !== 0)
        throw new Error(`get_status_frames: ${gs.rc} ${one(gs).status}`);
      for (let i = 0; i < n; i++) {
        const mfn = Number(dom.memory.readU64(list + i * 8));
        const rc = dom.hypercall(
          __HYPERVISOR_update_va_mapping,
          STATUS_VA + i * 4096,
          mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW),
          0,
        );
        if (rc !== 0) throw new Error(`update_va_mapping status: ${rc}`);
      }
    }
    return;
  }
  // HVM: highest index first, so the table grows once (as Linux does).
  for (let i = frames - 1; i >= 0; i--) addToPhysmap(dom, i, GNTTAB_VA / 4096 + i);
  if (dom.xen.gt.version === 2) {
    const n = Math.ceil(frames / 8);
    for (let i = n - 1; i >= 0; i--)
      addToPhysmap(dom, XENMAPIDX_grant_table_status + i, STATUS_VA / 4096 + i);
  }
}

export function addToPhysmap(dom: DomainHandle, idx: number, gpfn: number, domid = DOMID_SELF): number {
  const addr = scratch(dom, 1);
  dom.memory.write(
    addr,
    encodeArray(xen_add_to_physmap, [{ domid, space: XENMAPSPACE_grant_table, idx, gpfn }]),
  );
  const rc = dom.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, addr);
  if (rc !== 0 && rc !== undefined) return rc;
  return rc;
}

export function setVersion(dom: DomainHandle, version: number): { rc: number; version: number } {
  const r = gnttabOp(dom, GNTTABOP_set_version, gnttab_set_version, [{ version }]);
  return { rc: r.rc, version: one(r).version };
}

/** Address of entry `ref` in the guest's mapping of its own table. */
export function entryAddr(dom: DomainHandle, ref: number): number {
  const v = dom.xen.gt.version;
  const per = v === 1 ? GRANT_PER_FRAME_V1 : GRANT_PER_FRAME_V2;
  return GNTTAB_VA + Math.floor(ref / per) * 4096 + (ref % per) * (v === 1 ? 8 : 16);
}

export function statusAddr(dom: DomainHandle, ref: number): number {
  if (dom.xen.gt.version === 1) return entryAddr(dom, ref);
  return STATUS_VA + Math.floor(ref / 2048) * 4096 + (ref % 2048) * 2;
}

/** Grants `domid` access to `frame` through entry `ref` (domid and frame first, flags last). */
export function grantAccess(
  dom: DomainHandle,
  ref: number,
  domid: number,
  frame: number,
  flags = GTF_permit_access,
): void {
  const a = entryAddr(dom, ref);
  dom.memory.writeU16(a + 2, domid);
  if (dom.xen.gt.version === 1) dom.memory.writeU32(a + 4, frame);
  else dom.memory.writeU64(a + 8, frame);
  dom.memory.writeU16(a, flags);
}

export function entryFlags(dom: DomainHandle, ref: number): number {
  return dom.memory.readU16(entryAddr(dom, ref));
}

/** GTF_reading/GTF_writing as the granter sees them (v1 flags, v2 status word). */
export function statusBits(dom: DomainHandle, ref: number): number {
  return dom.memory.readU16(statusAddr(dom, ref)) & 0x18;
}

/** update_va_mapping (PV): the PTE for `va`; 0 unmaps. */
export function uva(dom: DomainHandle, va: number, pte: number | bigint): number {
  return dom.hypercall(__HYPERVISOR_update_va_mapping, va, pte, 0);
}

/** b maps a's grant `ref` at `va` (host map unless told otherwise); the struct as Xen left it. */
export function mapRef(b: DomainHandle, a: DomainHandle, ref: number, va = MAP_VA, flags = GNTMAP_host_map) {
  return one(
    gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [{ host_addr: va, flags, ref, dom: a.domid }]),
  );
}

/** b unmaps `handle` at `va` (and the device mapping when devBusAddr is given); the status. */
export function unmapRef(b: DomainHandle, handle: number, va = MAP_VA, devBusAddr = 0): number {
  return one(
    gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
      { host_addr: va, dev_bus_addr: devBusAddr, handle },
    ]),
  ).status;
}
