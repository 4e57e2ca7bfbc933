// update_va_mapping (PV): write one PTE of the caller's page table. A domain may
// map only frames it owns: its RAM and the grant and status frames Xen shares
// with it. A zero PTE unmaps. Grant PTEs are made by GNTTABOP_map_grant_ref only.
import {
  _PAGE_GNTTAB,
  _PAGE_PRESENT,
  _PAGE_RW,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES, makePte, pteFlags, pteFrame } from './paging.ts';

export function updateVaMapping(hv: Hypervisor, d: Domain, va: number, pte: number): number {
  if (d.pt === null) return -XEN_ENOSYS;
  const vpn = Math.floor(va / XEN_PAGE_SIZE);
  if (!(Number.isSafeInteger(va) && vpn < ADDRESS_SPACE_PAGES)) return -XEN_EINVAL;
  let npte = 0;
  if ((pte & _PAGE_PRESENT) !== 0) {
    if (!d.pt.ensure(vpn)) return -XEN_ENOMEM;
    const flags = pteFlags(pte);
    const mfn = pteFrame(pte);
    // The grant bit is Xen's to set (L1_DISALLOW_MASK).
    if ((flags & _PAGE_GNTTAB) !== 0) return -XEN_EINVAL;
    if (!hv.getPage(mfn, d)) return -XEN_EINVAL;
    if ((flags & _PAGE_RW) !== 0) hv.getPageTypeWritable(mfn);
    npte = makePte(mfn, flags);
  }
  const old = d.pt.get(vpn);
  d.pt.set(vpn, npte);
  hv.putPteReferences(d, old);
  return 0;
}
