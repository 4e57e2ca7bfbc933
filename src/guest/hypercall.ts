// Guest-side hypercall stubs: place argument structs in the guest's own memory
// and make the raw hypercall, as a guest kernel does.
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  XENMEM_add_to_physmap,
} from '../abi/hypercall.ts';
import { xen_add_to_physmap } from '../abi/memory-op.ts';
import { encodeArray, readStructArray, type StructDef, type StructValue } from '../abi/struct.ts';
import type { DomainHandle } from '../host/host.ts';

export interface GnttabCall<F extends string> {
  rc: number;
  out: StructValue<F>[];
}

/** Writes `ops` at `argAddr` in the guest, issues grant_table_op(cmd, argAddr, count), reads them back. */
export function grantTableOp<F extends string>(
  dom: DomainHandle,
  argAddr: number,
  cmd: number,
  def: StructDef<F>,
  ops: readonly Partial<StructValue<F>>[],
): GnttabCall<F> {
  dom.memory.write(argAddr, encodeArray(def, ops));
  const rc = dom.hypercall(__HYPERVISOR_grant_table_op, cmd, argAddr, ops.length);
  return { rc, out: dom.alive ? readStructArray(dom.memory, argAddr, def, ops.length) : [] };
}

export function addToPhysmap(
  dom: DomainHandle,
  argAddr: number,
  domid: number,
  space: number,
  idx: number,
  gpfn: number,
): number {
  dom.memory.write(argAddr, encodeArray(xen_add_to_physmap, [{ domid, space, idx, gpfn }]));
  return dom.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, argAddr);
}

export function updateVaMapping(dom: DomainHandle, va: number, pte: number, flags = 0): number {
  return dom.hypercall(__HYPERVISOR_update_va_mapping, va, pte, flags);
}
