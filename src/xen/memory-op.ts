// memory_op XENMEM_add_to_physmap with XENMAPSPACE_grant_table (reference §11):
// a translated domain places one of its grant (or, with XENMAPIDX_grant_table_status,
// status) frames at a GFN. A frame is visible at no more than one GFN (XSA-379).
// XENMAPSPACE_shared_info (idx 0) places the shared-info page the same way
// (xenmem_add_to_physmap_one).

import {
  XEN_EACCES,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_ENXIO,
  XEN_EPERM,
  XEN_ESRCH,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
} from '../abi/hypercall.ts';
import { GRANT_PER_FRAME_V2, GRANT_STATUS_PER_FRAME } from '../abi/limits.ts';
import { xen_add_to_physmap } from '../abi/memory-op.ts';
import type { Domain } from './domain.ts';
import { NO_GFN } from './grant-table.ts';
import { copyStructFromGuest } from './guest-io.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES, isGrantP2m, P2M_RAM_RW } from './paging.ts';

/** MEMOP_CMD_MASK: the low 6 bits of a memory_op command; the rest is a start extent. */
const MEMOP_CMD_MASK = 0x3f;
/** XENMAPSPACE_gmfn_foreign: only through add_to_physmap_batch. */
const XENMAPSPACE_gmfn_foreign = 4;

export function memoryOp(hv: Hypervisor, ld: Domain, cmd: number, arg: number): number {
  if ((cmd & MEMOP_CMD_MASK) !== XENMEM_add_to_physmap) return -XEN_ENOSYS;
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
    return placeXenHeapFrame(hv, d, d.sharedInfoMfn, sharedInfoSlot(d), xatp.gpfn);
  }
  if (xatp.space !== XENMAPSPACE_grant_table) return -XEN_ENOSYS;
  return addGrantFrameToPhysmap(hv, d, xatp.idx, xatp.gpfn);
}

/** Where a Xen-heap frame shared with a domain is placed in its P2M. */
export interface GfnSlot {
  get(): number;
  set(gfn: number): void;
}

function arraySlot(gfns: number[], i: number): GfnSlot {
  return {
    get: () => gfns[i]!,
    set: (gfn) => {
      gfns[i] = gfn;
    },
  };
}

function sharedInfoSlot(d: Domain): GfnSlot {
  return {
    get: () => d.sharedInfoGfn,
    set: (gfn) => {
      d.sharedInfoGfn = gfn;
    },
  };
}

/** gnttab_map_frame plus the P2M update of xenmem_add_to_physmap_one. */
function addGrantFrameToPhysmap(hv: Hypervisor, d: Domain, rawIdx: number, gpfn: number): number {
  const gt = d.gt;
  let mfn: number;
  let slot: GfnSlot;
  if (
    rawIdx >= XENMAPIDX_grant_table_status &&
    rawIdx < 2 * XENMAPIDX_grant_table_status &&
    gt.version === 2
  ) {
    const idx = rawIdx - XENMAPIDX_grant_table_status;
    if (idx >= gt.nrStatusFrames) {
      // Grow so that status frame idx exists: 8 grant frames per status frame. As in
      // gnttab_get_status_frame_mfn, a size above the maximum grows nothing (-EINVAL).
      const frames = Math.ceil(((idx + 1) * GRANT_STATUS_PER_FRAME) / GRANT_PER_FRAME_V2);
      if (frames > gt.maxGrantFrames || !hv.growTable(d, frames) || idx >= gt.nrStatusFrames)
        return -XEN_EINVAL;
    }
    mfn = gt.status[idx]!;
    slot = arraySlot(gt.statusGfn, idx);
  } else {
    // In v1 the status bit just makes idx too large.
    const idx = rawIdx;
    if (idx >= gt.nrGrantFrames && (idx >= gt.maxGrantFrames || !hv.growTable(d, idx + 1)))
      return -XEN_EINVAL;
    mfn = gt.shared[idx]!;
    slot = arraySlot(gt.sharedGfn, idx);
  }
  return placeXenHeapFrame(hv, d, mfn, slot, gpfn);
}

/** The P2M update of xenmem_add_to_physmap_one for a Xen-heap frame of d. */
function placeXenHeapFrame(hv: Hypervisor, d: Domain, mfn: number, slot: GfnSlot, gpfn: number): number {
  if (!(Number.isSafeInteger(gpfn) && gpfn < ADDRESS_SPACE_PAGES)) return -XEN_EINVAL;
  const p2m = d.p2m!;
  if (!p2m.ensure(gpfn)) return -XEN_ENOMEM;
  const prev = p2m.get(gpfn);
  if (prev !== undefined && prev.mfn !== mfn) {
    if (isGrantP2m(prev.type)) return -XEN_ENXIO; // guest_remove_page cannot take a foreign page
    const other = findXenHeapSlot(d, prev.mfn);
    if (other !== null) {
      // A Xen-heap frame there is simply unhooked.
      other.set(NO_GFN);
      p2m.delete(gpfn);
    } else {
      // Normal memory there is freed (its allocation reference dropped).
      p2m.delete(gpfn);
      hv.dropAllocation(prev.mfn);
    }
  }
  // Unmap from the old location, then map at the new one.
  const old = slot.get();
  if (old !== NO_GFN && old !== gpfn) p2m.delete(old);
  p2m.set(gpfn, mfn, P2M_RAM_RW);
  slot.set(gpfn);
  return 0;
}

/** The slot of one of d's Xen-heap frames (grant, status, shared info), if mfn is one. */
export function findXenHeapSlot(d: Domain, mfn: number): GfnSlot | null {
  const gt = d.gt;
  let i = gt.shared.indexOf(mfn);
  if (i >= 0) return arraySlot(gt.sharedGfn, i);
  i = gt.status.indexOf(mfn);
  if (i >= 0) return arraySlot(gt.statusGfn, i);
  if (mfn === d.sharedInfoMfn) return sharedInfoSlot(d);
  return null;
}
