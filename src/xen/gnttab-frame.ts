// gnttab_get_shared_frame_mfn and gnttab_get_status_frame_mfn: the MFN of a
// domain's grant (or, in v2, status) frame idx, growing the table on demand so
// that idx exists. Shared by XENMEM_add_to_physmap (gnttab_map_frame) and
// XENMEM_acquire_resource (gnttab_acquire_resource).
import { XEN_EINVAL } from '../abi/hypercall.ts';
import { GRANT_PER_FRAME_V2, GRANT_STATUS_PER_FRAME } from '../abi/limits.ts';
import type { Domain } from './domain.ts';
import { NO_GFN } from './grant-table.ts';
import type { Hypervisor } from './hypervisor.ts';

/** The MFN of shared frame idx, or -EINVAL when the table cannot grow that far. */
export function getSharedFrameMfn(hv: Hypervisor, d: Domain, idx: number): number {
  const gt = d.gt;
  if (idx >= gt.nrGrantFrames) {
    // A size above the maximum grows nothing; a failed growth leaves idx absent.
    const nrGrant = idx + 1;
    if (nrGrant <= gt.maxGrantFrames) hv.growTable(d, nrGrant);
    if (idx >= gt.nrGrantFrames) return -XEN_EINVAL;
  }
  return gt.shared.get(idx);
}

/** The MFN of status frame idx (the table is v2), or -EINVAL when it cannot grow that far. */
export function getStatusFrameMfn(hv: Hypervisor, d: Domain, idx: number): number {
  const gt = d.gt;
  if (idx >= gt.nrStatusFrames) {
    // status_to_grant_frames: 8 grant frames per status frame.
    const nrGrant = Math.ceil(((idx + 1) * GRANT_STATUS_PER_FRAME) / GRANT_PER_FRAME_V2);
    if (nrGrant <= gt.maxGrantFrames) hv.growTable(d, nrGrant);
    if (idx >= gt.nrStatusFrames) return -XEN_EINVAL;
  }
  return gt.status.get(idx);
}

/** The frame number a domain sees for one of its grant-table frames (gnttab_shared_gfn). */
export function frameNumberFor(d: Domain, mfn: number, gfn: number): number {
  if (!d.translated) return mfn;
  // -1 stands for Xen's INVALID_GFN (all ones): a frame not placed in the physical map.
  return gfn === NO_GFN ? -1 : gfn;
}
