// GNTTABOP_query_size (reference §6.8): current and maximum number of shared frames.
import { gnttab_query_size } from '../../abi/gnttab-ops.ts';
import { XEN_EFAULT, XEN_EINVAL } from '../../abi/hypercall.ts';
import { GNTST_bad_domain, GNTST_okay, GNTST_permission_denied } from '../../abi/status.ts';
import type { Domain } from '../domain.ts';
import { copyStructFromGuest, copyStructToGuest } from '../guest-io.ts';
import type { Hypervisor } from '../hypervisor.ts';

export function querySize(hv: Hypervisor, ld: Domain, uop: number, count: number): number {
  if (count !== 1) return -XEN_EINVAL;
  const op = copyStructFromGuest(hv, ld, uop, gnttab_query_size);
  if (op === null) return -XEN_EFAULT;
  const d = hv.domainByAnyId(op.dom, ld);
  if (d === undefined) op.status = GNTST_bad_domain;
  else if (!hv.xsmTarget(ld, d)) op.status = GNTST_permission_denied;
  else {
    d.gt.lock.readLock();
    op.nr_frames = d.gt.nrGrantFrames;
    op.max_nr_frames = d.gt.maxGrantFrames;
    d.gt.lock.readUnlock();
    op.status = GNTST_okay;
  }
  // The whole struct goes back; on error the frame fields hold what the caller passed.
  return copyStructToGuest(hv, ld, uop, gnttab_query_size, op) ? 0 : -XEN_EFAULT;
}
