// GNTTABOP_setup_table (reference §6.4): grow the table to nr_frames and return
// the frame numbers of its shared frames (PV: MFNs; HVM: the GFNs they are placed at).
import { gnttab_setup_table } from '../../abi/gnttab-ops.ts';
import { XEN_EFAULT, XEN_EINVAL } from '../../abi/hypercall.ts';
import { statusFramesFor } from '../../abi/limits.ts';
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

export function setupTable(hv: Hypervisor, ld: Domain, uop: number, count: number): number {
  if (count !== 1) return -XEN_EINVAL;
  const op = copyStructFromGuest(hv, ld, uop, gnttab_setup_table);
  if (op === null) return -XEN_EFAULT;
  if (!guestHandleOkay(ld, op.frame_list, op.nr_frames, 8)) return -XEN_EFAULT;
  const d = hv.domainByAnyId(op.dom, ld);
  let status: number = GNTST_okay;
  if (d === undefined) status = GNTST_bad_domain;
  else if (!hv.xsmTarget(ld, d)) status = GNTST_permission_denied;
  else {
    const gt = d.gt;
    // gnttab_setup_table holds the table's write lock throughout (growth included).
    gt.lock.writeLock();
    try {
      status = setupLocked(hv, ld, d, op.frame_list, op.nr_frames);
    } finally {
      gt.lock.writeUnlock();
    }
  }
  return copyFieldToGuest(hv, ld, uop, gnttab_setup_table, 'status', status) ? 0 : -XEN_EFAULT;
}

function setupLocked(hv: Hypervisor, ld: Domain, d: Domain, frameList: number, nrFrames: number): number {
  const gt = d.gt;
  let status: number = GNTST_okay;
  if (nrFrames > gt.maxGrantFrames) status = GNTST_general_error;
  else if (
    (nrFrames > gt.nrGrantFrames || (gt.version === 2 && statusFramesFor(nrFrames) > gt.nrStatusFrames)) &&
    !hv.growTable(d, nrFrames)
  ) {
    status = GNTST_general_error;
  } else {
    for (let i = 0; i < nrFrames; i++) {
      if (
        !copyU64ToGuest(hv, ld, frameList + i * 8, frameNumberFor(d, gt.shared.get(i), gt.sharedGfn.load(i)))
      ) {
        status = GNTST_bad_virt_addr;
        break;
      }
    }
  }
  return status;
}
