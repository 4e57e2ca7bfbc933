// memory_op (xen/common/memory.c do_memory_op). XENMEM_add_to_physmap with
// XENMAPSPACE_grant_table (reference §11): a translated domain places one of its
// grant (or, with XENMAPIDX_grant_table_status, status) frames at a GFN. A frame
// is visible at no more than one GFN (XSA-379). XENMAPSPACE_shared_info (idx 0)
// places the shared-info page the same way (xenmem_add_to_physmap_one).
// XENMEM_remove_from_physmap takes an entry out of a translated domain's P2M;
// XENMEM_acquire_resource is in acquire-resource.ts.

import {
  MEMOP_CMD_MASK,
  MEMOP_EXTENT_SHIFT,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_ENXIO,
  XEN_EPERM,
  XEN_ESRCH,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEM_acquire_resource,
  XENMEM_add_to_physmap,
  XENMEM_remove_from_physmap,
} from '../abi/hypercall.ts';
import { xen_add_to_physmap, xen_remove_from_physmap } from '../abi/memory-op.ts';
import { acquireResource } from './acquire-resource.ts';
import type { Domain } from './domain.ts';
import { removeForeignEntry } from './foreign-mapping.ts';
import { PGC_xen_heap } from './frame-table.ts';
import { getSharedFrameMfn, getStatusFrameMfn } from './gnttab-frame.ts';
import { NO_GFN } from './grant-table.ts';
import { copyStructFromGuest } from './guest-io.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES, isForeignP2m, isGrantP2m, P2M_RAM_PAGED, P2M_RAM_RW } from './paging.ts';
import { arraySlot, findXenHeapSlot, type GfnSlot, sharedInfoSlot } from './xen-heap.ts';

/** XENMAPSPACE_gmfn_foreign: only through add_to_physmap_batch. */
const XENMAPSPACE_gmfn_foreign = 4;

export function memoryOp(hv: Hypervisor, ld: Domain, cmd: number, arg: number): number {
  const startExtent = Math.floor(cmd / 2 ** MEMOP_EXTENT_SHIFT);
  switch (cmd & MEMOP_CMD_MASK) {
    case XENMEM_add_to_physmap:
      return addToPhysmap(hv, ld, arg);
    case XENMEM_remove_from_physmap:
      if (startExtent !== 0) return -XEN_EINVAL;
      return removeFromPhysmap(hv, ld, arg);
    case XENMEM_acquire_resource:
      return acquireResource(hv, ld, arg, startExtent);
    default:
      return -XEN_ENOSYS;
  }
}

function addToPhysmap(hv: Hypervisor, ld: Domain, arg: number): number {
  const xatp = copyStructFromGuest(hv, ld, arg, xen_add_to_physmap);
  if (xatp === null) return -XEN_EFAULT;
  if (xatp.space === XENMAPSPACE_gmfn_foreign) return -XEN_ENOSYS;
  const d = hv.domainByAnyId(xatp.domid, ld);
  if (d === undefined) return -XEN_ESRCH;
  if (!hv.xsmTarget(ld, d)) return -XEN_EPERM;
  if (!d.translated) return -XEN_EACCES;
  // The grant-table and shared-info spaces are modelled; guest-frame moves are not.
  if (xatp.space === XENMAPSPACE_shared_info) {
    // Only idx 0 names a frame; anything else leaves INVALID_MFN: -EINVAL.
    if (xatp.idx !== 0 || d.sharedInfoMfn < 0) return -XEN_EINVAL;
    d.p2mLock.writeLock();
    try {
      return placeXenHeapFrame(hv, d, d.sharedInfoMfn, sharedInfoSlot(d), xatp.gpfn);
    } finally {
      d.p2mLock.writeUnlock();
    }
  }
  if (xatp.space !== XENMAPSPACE_grant_table) return -XEN_ENOSYS;
  return addGrantFrameToPhysmap(hv, d, xatp.idx, xatp.gpfn);
}

/**
 * XENMEM_remove_from_physmap: the entry at gpfn leaves a translated domain's
 * P2M (guest_physmap_remove_page). RAM stays allocated to the domain, a
 * Xen-heap frame of its own is at no GFN, a foreign mapping drops its
 * reference; a grant mapping just goes (its pin and handle stay until an
 * unmap, which now fails, or the grantee's death).
 */
function removeFromPhysmap(hv: Hypervisor, ld: Domain, arg: number): number {
  const xrfp = copyStructFromGuest(hv, ld, arg, xen_remove_from_physmap);
  if (xrfp === null) return -XEN_EFAULT;
  const d = hv.domainByAnyId(xrfp.domid, ld);
  if (d === undefined) return -XEN_ESRCH;
  if (!d.translated) return -XEN_EACCES;
  if (!hv.xsmTarget(ld, d)) return -XEN_EPERM;
  // The lookup and the removal under d's P2M lock (get_page_from_gfn, then
  // guest_physmap_remove_page's gfn_lock): the entry found is the one removed.
  d.p2mLock.writeLock();
  try {
    return removeLocked(hv, d, xrfp.gpfn);
  } finally {
    d.p2mLock.writeUnlock();
  }
}

function removeLocked(hv: Hypervisor, d: Domain, gfn: number): number {
  // d may be being killed beside this (dom0 names it): once its P2M is torn
  // down (under this lock, after is_dying is set) there is nothing to remove.
  if (d.isDying) return -XEN_ENOENT;
  const p2m = d.p2m!;
  // get_page_from_gfn(P2M_ALLOC): nothing there, or a page being paged in, is -ENOENT.
  const e = Number.isSafeInteger(gfn) ? p2m.get(gfn) : undefined;
  if (e === undefined || e.type === P2M_RAM_PAGED) return -XEN_ENOENT;
  if (isForeignP2m(e.type)) {
    removeForeignEntry(hv, d, gfn);
    return 0;
  }
  if (!isGrantP2m(e.type)) {
    const slot = findXenHeapSlot(d, e.mfn);
    if (slot !== null && slot.get() === gfn) slot.set(NO_GFN);
  }
  p2m.delete(gfn);
  return 0;
}

/**
 * gnttab_map_frame_begin / _end around the P2M update of
 * xenmem_add_to_physmap_one: the table's write lock from the frame lookup
 * (growing the table if need be) until the frame is in the P2M, and a page
 * reference held across the insertion (XSA-384), so that set_version, which
 * frees status frames under the same write lock, runs wholly before or after
 * (XSA-486). d's P2M lock is taken inside the table's lock.
 */
function addGrantFrameToPhysmap(hv: Hypervisor, d: Domain, rawIdx: number, gpfn: number): number {
  const gt = d.gt;
  gt.lock.writeLock();
  try {
    const { mfn, slot } = grantFrameOf(hv, d, rawIdx);
    if (mfn < 0) return mfn;
    // gnttab_map_frame_begin: get_page, or -EBUSY.
    if (!hv.getPage(mfn, d)) return -XEN_EBUSY;
    try {
      d.p2mLock.writeLock();
      try {
        return placeXenHeapFrame(hv, d, mfn, slot, gpfn);
      } finally {
        d.p2mLock.writeUnlock();
      }
    } finally {
      // gnttab_map_frame_end: put_page (the frame stays d's: the put never frees it).
      hv.putPage(mfn);
    }
  } finally {
    gt.lock.writeUnlock();
  }
}

/**
 * gnttab_map_frame's lookup (the caller holds the table's write lock): the
 * frame's MFN (-EINVAL when it cannot exist) and the slot of its GFN.
 */
function grantFrameOf(hv: Hypervisor, d: Domain, rawIdx: number): { mfn: number; slot: GfnSlot } {
  const gt = d.gt;
  if (
    rawIdx >= XENMAPIDX_grant_table_status &&
    rawIdx < 2 * XENMAPIDX_grant_table_status &&
    gt.version === 2
  ) {
    const idx = rawIdx - XENMAPIDX_grant_table_status;
    return { mfn: getStatusFrameMfn(hv, d, idx), slot: arraySlot(gt.statusGfn, idx) };
  }
  // In v1 the status bit just makes idx too large.
  return { mfn: getSharedFrameMfn(hv, d, rawIdx), slot: arraySlot(gt.sharedGfn, rawIdx) };
}

/** The P2M update of xenmem_add_to_physmap_one for a Xen-heap frame of d; d's P2M lock is held. */
function placeXenHeapFrame(hv: Hypervisor, d: Domain, mfn: number, slot: GfnSlot, gpfn: number): number {
  if (!(Number.isSafeInteger(gpfn) && gpfn < ADDRESS_SPACE_PAGES)) return -XEN_EINVAL;
  // A dying d's P2M is torn down under this lock after is_dying is set: a
  // placement checked here either comes before the teardown (which undoes it)
  // or is refused, as rcu_lock_domain_by_any_id's caller finds d going.
  if (d.isDying) return -XEN_ESRCH;
  const p2m = d.p2m!;
  if (!p2m.ensure(gpfn)) return -XEN_ENOMEM;
  const prev = p2m.get(gpfn);
  if (prev !== undefined && prev.mfn !== mfn) {
    const xenHeap = (hv.frames.flags[prev.mfn]! & PGC_xen_heap) !== 0;
    if (isForeignP2m(prev.type) && xenHeap) {
      // Another domain's Xen-heap frame (acquire_resource) is a special page:
      // unhooked, its reference dropped.
      removeForeignEntry(hv, d, gpfn);
    } else if (isGrantP2m(prev.type) || isForeignP2m(prev.type)) {
      return -XEN_ENXIO; // guest_remove_page cannot take a page d does not own
    } else {
      const other = findXenHeapSlot(d, prev.mfn);
      p2m.delete(gpfn);
      // A Xen-heap frame of d's is simply unhooked; normal memory is freed
      // (its allocation reference dropped).
      if (other !== null) other.set(NO_GFN);
      else hv.dropAllocation(prev.mfn);
    }
  }
  // Unmap from the old location, then map at the new one.
  const old = slot.get();
  if (old !== NO_GFN && old !== gpfn) p2m.delete(old);
  p2m.set(gpfn, mfn, P2M_RAM_RW);
  slot.set(gpfn);
  return 0;
}
