// GNTTABOP_get_version (reference §6.11). A bad domain is the hypercall's -ESRCH (quirk §15.17).
import { gnttab_get_version } from '../../abi/gnttab-ops.ts';
import { XEN_EFAULT, XEN_EPERM, XEN_ESRCH } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';
import { copyFieldToGuest, copyStructFromGuest } from '../guest-io.ts';
import type { Hypervisor } from '../hypervisor.ts';

export function getVersion(hv: Hypervisor, ld: Domain, uop: number): number {
  const op = copyStructFromGuest(hv, ld, uop, gnttab_get_version);
  if (op === null) return -XEN_EFAULT;
  const d = hv.domainByAnyId(op.dom, ld);
  if (d === undefined) return -XEN_ESRCH;
  if (!hv.xsmTarget(ld, d)) return -XEN_EPERM;
  return copyFieldToGuest(hv, ld, uop, gnttab_get_version, 'version', d.gt.version) ? 0 : -XEN_EFAULT;
}
