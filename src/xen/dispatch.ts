// The hypercall entry (reference §5): Xen's do_grant_table_op with the HVM
// filter of hvm_grant_table_op, memory_op and update_va_mapping. Batched ops
// process elements in order; a fault reading an element or writing its status
// back ends the batch with -EFAULT, leaving the earlier elements done.

import {
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_swap_grant_ref,
  gnttab_transfer,
  gnttab_unmap_and_replace,
  gnttab_unmap_grant_ref,
} from '../abi/gnttab-ops.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  __HYPERVISOR_update_va_mapping_otherdomain,
  GNTTABOP_CMD_MASK,
  GNTTABOP_cache_flush,
  GNTTABOP_copy,
  GNTTABOP_get_status_frames,
  GNTTABOP_get_version,
  GNTTABOP_map_grant_ref,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_transfer,
  GNTTABOP_unmap_and_replace,
  GNTTABOP_unmap_grant_ref,
  MEMOP_CMD_MASK,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
  XENMEM_acquire_resource,
  XENMEM_add_to_physmap,
  XENMEM_remove_from_physmap,
} from '../abi/hypercall.ts';
import type { StructValue } from '../abi/struct.ts';
import type { Domain } from './domain.ts';
import { eventChannelOp } from './event-channel.ts';
import {
  copyFieldToGuest,
  copyStructFromGuest,
  copyStructFromGuestInto,
  copyStructToGuest,
  guestHandleOkay,
  putFieldToGuest,
} from './guest-io.ts';
import type { Hypervisor } from './hypervisor.ts';
import { GNTTAB_UNMAP_BATCH_SIZE } from './limits-internal.ts';
import { memoryOp } from './memory-op.ts';
import { grantCopy } from './ops/copy.ts';
import { getStatusFrames } from './ops/get-status-frames.ts';
import { getVersion } from './ops/get-version.ts';
import { type MapOp, mapGrantRef } from './ops/map-grant-ref.ts';
import { querySize } from './ops/query-size.ts';
import { setVersion } from './ops/set-version.ts';
import { setupTable } from './ops/setup-table.ts';
import { swapGrantRef } from './ops/swap-grant-ref.ts';
import { transfer } from './ops/transfer.ts';
import {
  newUnmapCommon,
  setUnmapCommon,
  type UnmapCommon,
  unmapCommon,
  unmapComplete,
} from './ops/unmap-grant-ref.ts';
import { type Register, reg, u32 } from './registers.ts';
import { updateVaMapping, updateVaMappingOtherdomain } from './update-va-mapping.ts';

/** The ops an HVM guest may use (hvm_grant_table_op); the raw cmd is matched, high bits included. */
const HVM_GRANT_OPS = new Set([
  GNTTABOP_query_size,
  GNTTABOP_setup_table,
  GNTTABOP_set_version,
  GNTTABOP_get_version,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GNTTABOP_swap_grant_ref,
]);

/**
 * Whether the hypercall runs under the hypercall lock shared, beside others
 * (xen-globals.ts): the ops that take Xen's own locks for what they touch,
 * or touch only words every writer changes atomically. An op joins this list
 * once it does; the rest run alone in Xen.
 * - map, unmap and unmap_and_replace: rd's read lock and the entry's lock
 *   (map_grant_ref, unmap_common, unmap_common_complete), page references by
 *   atomics, the caller's own page table or P2M and maptrack, and the owner's
 *   page_alloc_lock for a page whose last reference goes; unmap_and_replace
 *   (PV only) also steals the PTE at new_addr, in the caller's own page table
 *   too, under the same entry lock (replace_grant_pv_mapping);
 * - copy: each grant's read lock and entry lock in acquire_grant_for_copy and
 *   release_grant_for_copy, dropped around a transitive grant's inner one
 *   (XSA-411), nr_v2_ops changed atomically;
 * - setup_table (growth included), set_version and swap_grant_ref: the
 *   table's write lock (swap: both entries' locks under it); get_status_frames
 *   and query_size: its read lock; get_version: one word;
 * - transfer (ops/transfer.ts, gnttab_transfer): steal_page's count
 *   compare-exchange and the sender's page_alloc_lock, then the receiver's
 *   page_alloc_lock (the headroom reserved), its read lock for
 *   gnttab_prepare_for_transfer, its page_alloc_lock again for assign_pages,
 *   and its read lock with the entry's lock for the final update (an HVM
 *   receiver's P2M under its p2m lock); never two of them at once;
 * - every event-channel op (evtchn/): state changes under d->event_lock
 *   written (two domains' ordered by key) and the channels' locks
 *   (double_evtchn_lock); send, unmask, status and set_priority under the
 *   channel's read lock; the pending, mask and selector bits are atomics;
 * - update_va_mapping and update_va_mapping_otherdomain (PV): one PTE of the
 *   caller's own page table (see update-va-mapping.ts for why no page_lock),
 *   the new frame's reference and writable type reference taken and the old
 *   one's dropped by atomics (get_page_from_l1e, put_page_from_l1e), the
 *   owner's page_alloc_lock for a page whose last reference goes;
 * - memory_op XENMEM_add_to_physmap (grant table and shared-info spaces): the
 *   target's P2M lock (p2m_lock) for the P2M and the frames' GFNs; for a grant
 *   frame inside the table's write lock, held from the frame lookup (and
 *   growth) until the P2M insertion, with a page reference across it
 *   (gnttab_map_frame, XSA-384/486); XENMEM_remove_from_physmap: the lookup
 *   and the removal (guest_physmap_remove_page) under the target's P2M lock,
 *   a foreign entry's reference dropped; XENMEM_acquire_resource: the
 *   owner's table under its write lock for the lookup and growth
 *   (gnttab_acquire_resource), then a translated caller's own P2M lock for
 *   each foreign entry (set_foreign_p2m_entry, its page reference taken by
 *   atomics, -EBUSY for a frame freed meanwhile). Every writer of a
 *   translated domain's P2M takes that lock (map and unmap of a grant into
 *   it, set_version's removal of status frames); get_paged_frame reads
 *   under it.
 */
export function runsShared(nr: Register, args: readonly Register[]): boolean {
  const cmd = args[0];
  if (nr === __HYPERVISOR_grant_table_op)
    return (
      cmd === GNTTABOP_map_grant_ref ||
      cmd === GNTTABOP_unmap_grant_ref ||
      cmd === GNTTABOP_unmap_and_replace ||
      cmd === GNTTABOP_copy ||
      cmd === GNTTABOP_setup_table ||
      cmd === GNTTABOP_set_version ||
      cmd === GNTTABOP_get_status_frames ||
      cmd === GNTTABOP_swap_grant_ref ||
      cmd === GNTTABOP_transfer ||
      cmd === GNTTABOP_query_size ||
      cmd === GNTTABOP_get_version
    );
  if (nr === __HYPERVISOR_event_channel_op) return true;
  if (nr === __HYPERVISOR_memory_op) {
    const sub = u32(cmd) & MEMOP_CMD_MASK;
    return (
      sub === XENMEM_add_to_physmap || sub === XENMEM_remove_from_physmap || sub === XENMEM_acquire_resource
    );
  }
  return nr === __HYPERVISOR_update_va_mapping || nr === __HYPERVISOR_update_va_mapping_otherdomain;
}

export function dispatchHypercall(
  hv: Hypervisor,
  d: Domain,
  nr: Register,
  args: readonly Register[],
): number {
  switch (nr) {
    case __HYPERVISOR_grant_table_op:
      return grantTableOp(hv, d, u32(args[0]), reg(args[1]), u32(args[2]));
    case __HYPERVISOR_memory_op:
      return memoryOp(hv, d, u32(args[0]), reg(args[1]));
    case __HYPERVISOR_update_va_mapping:
      return updateVaMapping(hv, d, reg(args[0]), args[1]);
    case __HYPERVISOR_update_va_mapping_otherdomain:
      // (va, val64, flags, domid_t domid): the domid is the register's low 16 bits.
      return updateVaMappingOtherdomain(hv, d, reg(args[0]), args[1], u32(args[3]) & 0xffff);
    case __HYPERVISOR_event_channel_op:
      // do_event_channel_op(int cmd, arg): PV and HVM alike.
      return eventChannelOp(hv, d, u32(args[0]), reg(args[1]));
    default:
      return -XEN_ENOSYS;
  }
}

function grantTableOp(hv: Hypervisor, d: Domain, cmd: number, uop: number, count: number): number {
  if (d.translated && !HVM_GRANT_OPS.has(cmd)) return -XEN_ENOSYS;
  if (count >= 0x8000_0000) return -XEN_EINVAL;
  const op = cmd & GNTTABOP_CMD_MASK;
  if (op !== GNTTABOP_cache_flush && cmd !== op) return -XEN_EINVAL;
  switch (op) {
    case GNTTABOP_map_grant_ref:
      if (!guestHandleOkay(d, uop, count, gnttab_map_grant_ref.size)) return -XEN_EFAULT;
      return mapBatch(hv, d, uop, count);
    case GNTTABOP_unmap_grant_ref:
      if (!guestHandleOkay(d, uop, count, gnttab_unmap_grant_ref.size)) return -XEN_EFAULT;
      return unmapBatch(hv, d, uop, count, false);
    case GNTTABOP_unmap_and_replace:
      if (!guestHandleOkay(d, uop, count, gnttab_unmap_and_replace.size)) return -XEN_EFAULT;
      return unmapBatch(hv, d, uop, count, true);
    case GNTTABOP_setup_table:
      return setupTable(hv, d, uop, count);
    case GNTTABOP_transfer:
      if (!guestHandleOkay(d, uop, count, gnttab_transfer.size)) return -XEN_EFAULT;
      if (!hv.opts.transfer) return -XEN_EOPNOTSUPP;
      return transferBatch(hv, d, uop, count);
    case GNTTABOP_copy:
      if (!guestHandleOkay(d, uop, count, gnttab_copy.size)) return -XEN_EFAULT;
      return grantCopy(hv, d, uop, count);
    case GNTTABOP_query_size:
      return querySize(hv, d, uop, count);
    case GNTTABOP_set_version:
      return setVersion(hv, d, uop);
    case GNTTABOP_get_status_frames:
      return getStatusFrames(hv, d, uop, count);
    case GNTTABOP_get_version:
      return getVersion(hv, d, uop);
    case GNTTABOP_swap_grant_ref:
      if (!guestHandleOkay(d, uop, count, gnttab_swap_grant_ref.size)) return -XEN_EFAULT;
      return swapBatch(hv, d, uop, count);
    default:
      // dump_table (gone since 2006), cache_flush (Arm builds only) and unknown commands.
      return -XEN_ENOSYS;
  }
}

// Each batch op below works in records of this thread's (module state is per
// thread), so that an element allocates nothing. A record is lent to one batch
// at a time: a batch that starts while another runs (a test hook re-entering
// the hypervisor mid-op) makes its own.

const ZEROES = new DataView(new ArrayBuffer(32));
let mapSpare: MapOp | null = null;

function mapBatch(hv: Hypervisor, d: Domain, uop: number, count: number): number {
  const def = gnttab_map_grant_ref;
  const op = mapSpare ?? def.decode(ZEROES, 0);
  mapSpare = null;
  try {
    for (let i = 0; i < count; i++) {
      const addr = uop + i * def.size;
      if (!copyStructFromGuestInto(hv, d, addr, def, op)) return -XEN_EFAULT;
      mapGrantRef(hv, d, op);
      // The whole struct goes back; on failure handle and dev_bus_addr are the caller's own.
      if (!copyStructToGuest(hv, d, addr, def, op)) return -XEN_EFAULT;
    }
    return 0;
  } finally {
    mapSpare = op;
  }
}

class UnmapScratch {
  readonly unmap: StructValue<keyof typeof gnttab_unmap_grant_ref.fields> = gnttab_unmap_grant_ref.decode(
    ZEROES,
    0,
  );
  readonly replace: StructValue<keyof typeof gnttab_unmap_and_replace.fields> =
    gnttab_unmap_and_replace.decode(ZEROES, 0);
  /** One record per element of a sub-batch, for phase 2 after the flush. */
  readonly common: UnmapCommon[] = Array.from({ length: GNTTAB_UNMAP_BATCH_SIZE }, newUnmapCommon);
}
let unmapSpare: UnmapScratch | null = null;

function unmapBatch(hv: Hypervisor, d: Domain, uop: number, count: number, replace: boolean): number {
  const size = gnttab_unmap_grant_ref.size; // = gnttab_unmap_and_replace.size
  const status = replace ? gnttab_unmap_and_replace.at.status : gnttab_unmap_grant_ref.at.status;
  const s = unmapSpare ?? new UnmapScratch();
  unmapSpare = null;
  let used = 0;
  try {
    let i = 0;
    while (i < count) {
      const c = Math.min(count - i, GNTTAB_UNMAP_BATCH_SIZE);
      let done = 0;
      let fault = false;
      for (let j = 0; j < c; j++) {
        const addr = uop + (i + j) * size;
        const common = s.common[j]!;
        if (replace) {
          const op = s.replace;
          if (!copyStructFromGuestInto(hv, d, addr, gnttab_unmap_and_replace, op)) {
            fault = true;
            break;
          }
          // unmap_and_replace never touches device mappings.
          setUnmapCommon(common, op.host_addr, 0, op.new_addr, op.handle);
        } else {
          const op = s.unmap;
          if (!copyStructFromGuestInto(hv, d, addr, gnttab_unmap_grant_ref, op)) {
            fault = true;
            break;
          }
          setUnmapCommon(common, op.host_addr, op.dev_bus_addr, 0, op.handle);
        }
        unmapCommon(hv, d, common);
        done++;
        if (!putFieldToGuest(hv, d, addr, status, common.status)) {
          fault = true;
          break;
        }
      }
      used = Math.max(used, done);
      // TLB flush of the caller happens here: nothing to flush in this model.
      for (let j = 0; j < done; j++) unmapComplete(hv, d, s.common[j]!);
      if (fault) return -XEN_EFAULT;
      i += c;
    }
    return 0;
  } finally {
    // No domain stays referenced from the scratch between hypercalls.
    for (let j = 0; j < used; j++) s.common[j]!.rd = null;
    unmapSpare = s;
  }
}

let transferSpare: StructValue<keyof typeof gnttab_transfer.fields> | null = null;

function transferBatch(hv: Hypervisor, d: Domain, uop: number, count: number): number {
  const def = gnttab_transfer;
  const op = transferSpare ?? def.decode(ZEROES, 0);
  transferSpare = null;
  try {
    for (let i = 0; i < count; i++) {
      const addr = uop + i * def.size;
      if (!copyStructFromGuestInto(hv, d, addr, def, op)) return -XEN_EFAULT;
      const status = transfer(hv, d, op.mfn, op.domid, op.ref);
      if (!putFieldToGuest(hv, d, addr, def.at.status, status)) return -XEN_EFAULT;
    }
    return 0;
  } finally {
    transferSpare = op;
  }
}

function swapBatch(hv: Hypervisor, d: Domain, uop: number, count: number): number {
  const def = gnttab_swap_grant_ref;
  for (let i = 0; i < count; i++) {
    const addr = uop + i * def.size;
    const op = copyStructFromGuest(hv, d, addr, def);
    if (op === null) return -XEN_EFAULT;
    const status = swapGrantRef(hv, d, op.ref_a, op.ref_b);
    if (!copyFieldToGuest(hv, d, addr, def, 'status', status)) return -XEN_EFAULT;
  }
  return 0;
}
