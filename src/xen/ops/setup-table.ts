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
    if (op.nr_frames > gt.maxGrantFrames) status = GNTST_general_error;
    else if (
      (op.nr_frames > gt.nrGrantFrames ||
        (gt.version === 2 && statusFramesFor(op.nr_frames) > gt.nrStatusFrames)) &&
      !hv.growTable(d, op.nr_frames)
    ) {
      status = GNTST_general_error;
    } else {
      for (let i = 0; i < op.nr_frames; i++) {
        if (
          !copyU64ToGuest(
            hv,
            ld,
            op.frame_list + i * 8,
            frameNumberFor(d, gt.shared.get(i), gt.sharedGfn.get(i)),
          )
        ) {
          status = GNTST_bad_virt_addr;
          break;
        }
      }
    }
  }
  return copyFieldToGuest(hv, ld, uop, gnttab_setup_table, 'status', status) ? 0 : -XEN_EFAULT;
}
