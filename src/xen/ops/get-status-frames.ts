// GNTTABOP_get_status_frames (reference §6.10): the frame numbers of the v2
// status frames. Never grows the table; checks against status frames (XSA-382).
import { gnttab_get_status_frames } from '../../abi/gnttab-ops.ts';
import { XEN_EFAULT, XEN_EINVAL } from '../../abi/hypercall.ts';
import {
  GNTST_bad_domain,
  GNTST_bad_virt_addr,
  GNTST_general_error,
  GNTST_okay,
  GNTST_permission_denied,
} from '../../abi/status.ts';
import type { Domain } from '../domain.ts';
import { frameNumberFor } from '../gnttab-frame.ts';
import { copyFieldToGuest, copyStructFromGuest, copyU64ToGuest, guestHandleOkay } from '../guest-io.ts';
import type { Hypervisor } from '../hypervisor.ts';

export function getStatusFrames(hv: Hypervisor, ld: Domain, uop: number, count: number): number {
  if (count !== 1) return -XEN_EINVAL;
  const op = copyStructFromGuest(hv, ld, uop, gnttab_get_status_frames);
  if (op === null) return -XEN_EFAULT;
  if (!guestHandleOkay(ld, op.frame_list, op.nr_frames, 8)) return -XEN_EFAULT;
  const d = hv.domainByAnyId(op.dom, ld);
  let status: number = GNTST_okay;
  if (d === undefined) status = GNTST_bad_domain;
  else if (!hv.xsmTarget(ld, d)) status = GNTST_permission_denied;
  else {
    // gnttab_get_status_frames: under the table's read lock (XSA-382's bound included).
    d.gt.lock.readLock();
    try {
      status = statusFramesLocked(hv, ld, d, op.frame_list, op.nr_frames);
    } finally {
      d.gt.lock.readUnlock();
    }
  }
  return copyFieldToGuest(hv, ld, uop, gnttab_get_status_frames, 'status', status) ? 0 : -XEN_EFAULT;
}

function statusFramesLocked(
  hv: Hypervisor,
  ld: Domain,
  d: Domain,
  frameList: number,
  nrFrames: number,
): number {
  let status: number = GNTST_okay;
  if (nrFrames > d.gt.nrStatusFrames) status = GNTST_general_error;
  else {
    for (let i = 0; i < nrFrames; i++) {
      if (
        !copyU64ToGuest(
          hv,
          ld,
          frameList + i * 8,
          frameNumberFor(d, d.gt.status.get(i), d.gt.statusGfn.load(i)),
        )
      ) {
        // gnttab_get_status_frames stops at the first entry it cannot write.
        status = GNTST_bad_virt_addr;
        break;
      }
    }
  }
  return status;
}
