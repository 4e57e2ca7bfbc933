// Creating and tearing down a grant's host mapping, per kind of grantee
// (reference §6.1.1, §6.2 step 9, §6.3).
//   PV:  a PTE in the grantee's page table at the linear address host_addr.
//   HVM: a grant-map P2M entry at GFN host_addr >> 12.
// The page references of a mapping are taken and dropped by map/unmap, not here.

import {
  _GNTMAP_guest_avail0,
  GNTMAP_application_map,
  GNTMAP_contains_pte,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GTF_PAT,
  GTF_PCD,
  GTF_PWT,
} from '../abi/flags.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_AVAIL,
  _PAGE_DIRTY,
  _PAGE_PAT,
  _PAGE_PCD,
  _PAGE_PRESENT,
  _PAGE_PWT,
  _PAGE_RW,
  _PAGE_USER,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { GNTST_general_error, GNTST_okay } from '../abi/status.ts';
import type { Domain } from './domain.ts';
import { NO_GFN } from './grant-table.ts';
import type { Hypervisor } from './hypervisor.ts';
import {
  ADDRESS_SPACE_PAGES,
  isGrantOrForeignP2m,
  isGrantP2m,
  makePte,
  P2M_GRANT_MAP_RO,
  P2M_GRANT_MAP_RW,
  PTE_GNTTAB_MARK,
  p2mEntryMfn,
  p2mEntryType,
  pteFlags,
  pteFrame,
} from './paging.ts';
import { findXenHeapSlot } from './xen-heap.ts';

/**
 * The page of a host_addr, or -1 when it names none (not an exact integer, or
 * beyond the address space). Callers pass the page on, not the address: an
 * address above 2^31 would be a number box on every call.
 */
export function pageOf(addr: number): number {
  const pfn = Math.floor(addr / XEN_PAGE_SIZE);
  return Number.isSafeInteger(addr) && pfn < ADDRESS_SPACE_PAGES ? pfn : -1;
}

/**
 * grant_to_pte_flags: the PTE flags of a grant mapping. The low three
 * GNTMAP_guest_avail bits (map flags bit 16 up) go into the PTE's available
 * bits 9-11 (MASK_INSR into _PAGE_AVAIL); _PAGE_NX is PTE bit 63, beyond the
 * 32-bit entries of this model. A debug build marks the PTE (_PAGE_GNTTAB).
 */
function grantPteFlags(flags: number, cacheFlags: number, debugBuild: boolean): number {
  let f = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY;
  if (debugBuild) f |= PTE_GNTTAB_MARK;
  if ((flags & GNTMAP_application_map) !== 0) f |= _PAGE_USER;
  if ((flags & GNTMAP_readonly) === 0) f |= _PAGE_RW;
  f |= ((flags >>> _GNTMAP_guest_avail0) << 9) & _PAGE_AVAIL;
  // cacheattr_to_pte_flags(cache_flags >> 5)
  if ((cacheFlags & GTF_PWT) !== 0) f |= _PAGE_PWT;
  if ((cacheFlags & GTF_PCD) !== 0) f |= _PAGE_PCD;
  if ((cacheFlags & GTF_PAT) !== 0) f |= _PAGE_PAT;
  return f;
}

/** Maps mfn at `page` (pageOf host_addr) of ld. */
export function createGrantHostMapping(
  hv: Hypervisor,
  ld: Domain,
  page: number,
  mfn: number,
  flags: number,
  cacheFlags: number,
): number {
  if (ld.pt !== null) {
    // contains_pte names the machine address of an L1 PTE in a page of type
    // L1 page table; page tables are private to the hypervisor in this model,
    // so no guest page has that type and Xen's check fails.
    if ((flags & GNTMAP_contains_pte) !== 0) return GNTST_general_error;
    const vpn = page;
    if (vpn < 0) return GNTST_general_error;
    if (!ld.pt.ensure(vpn)) return GNTST_general_error;
    const old = ld.pt.get(vpn);
    ld.pt.set(vpn, makePte(mfn, grantPteFlags(flags, cacheFlags, hv.opts.debugBuild)));
    hv.putPteReferences(ld, old);
    return GNTST_okay;
  }
  if ((flags & ~GNTMAP_readonly) >>> 0 !== GNTMAP_host_map || cacheFlags !== 0) return GNTST_general_error;
  const gfn = page;
  if (gfn < 0) return GNTST_general_error;
  // create_grant_p2m_mapping: p2m_add_page under ld's P2M lock (another
  // domain's thread may change ld's P2M too: add_to_physmap for ld).
  ld.p2mLock.writeLock();
  try {
    return createGrantP2mMapping(hv, ld, gfn, mfn, flags);
  } finally {
    ld.p2mLock.writeUnlock();
  }
}

function createGrantP2mMapping(hv: Hypervisor, ld: Domain, gfn: number, mfn: number, flags: number): number {
  const p2m = ld.p2m!;
  const old = p2m.entry(gfn);
  // Xen refuses to replace a grant or foreign entry this way, and crashes the
  // domain for trying (p2m_add_page: "not permitted", domain_crash).
  if (old !== 0 && isGrantOrForeignP2m(p2mEntryType(old))) {
    const what = isGrantP2m(p2mEntryType(old)) ? 'grant' : 'foreign';
    hv.crashDomain(ld, `grant map over the ${what} mapping at GFN 0x${gfn.toString(16)}`);
    return GNTST_general_error;
  }
  // RAM there is unhooked from the physical map (it stays allocated to the
  // domain); one of its own grant, status or shared-info frames is then at no GFN (x86 reads
  // a frame's GFN back from the M2P, which p2m_add_page invalidates).
  if (old !== 0) findXenHeapSlot(ld, p2mEntryMfn(old))?.set(NO_GFN);
  if (!p2m.ensure(gfn)) return GNTST_general_error;
  p2m.set(gfn, mfn, (flags & GNTMAP_readonly) !== 0 ? P2M_GRANT_MAP_RO : P2M_GRANT_MAP_RW);
  return GNTST_okay;
}

/**
 * Tears down (or, with newAddr, replaces) the host mapping at `page` (pageOf
 * host_addr). The mapping must
 * still be the grant's: PV compares the frame and the PRESENT and RW bits
 * only (replace_grant_pv_mapping, XSA-234), so a PTE the guest changed in
 * other bits, as update_va_mapping's fast path allows, still unmaps; HVM
 * requires a grant P2M entry for the same frame.
 */
export function replaceGrantHostMapping(
  hv: Hypervisor,
  ld: Domain,
  page: number,
  mfn: number,
  newAddr: number,
  flags: number,
): number {
  if (ld.pt !== null) {
    if ((flags & GNTMAP_contains_pte) !== 0) return GNTST_general_error;
    const vpn = page;
    if (vpn < 0) return GNTST_general_error;
    let replacement = 0;
    // Both PTEs are in the caller's own page table, which only its thread
    // writes (see update-va-mapping.ts): Xen's page_lock of each L1 page
    // (steal_linear_address, then the grant PTE's) has no other writer to
    // exclude here. The stolen PTE's references move with it; on failure they
    // are dropped (put_page_from_l1e), under the grant's entry lock, as in Xen.
    if (newAddr !== 0) {
      const nvpn = pageOf(newAddr);
      if (nvpn < 0) return GNTST_general_error;
      // Steal the PTE that maps newAddr: zap it, and install it in place of the grant PTE.
      replacement = ld.pt.get(nvpn);
      ld.pt.set(nvpn, 0);
    }
    const cur = ld.pt.get(vpn);
    const expect = (flags & GNTMAP_readonly) !== 0 ? _PAGE_PRESENT : _PAGE_PRESENT | _PAGE_RW;
    if (pteFrame(cur) !== mfn || (pteFlags(cur) & (_PAGE_PRESENT | _PAGE_RW)) !== expect) {
      hv.putPteReferences(ld, replacement);
      return GNTST_general_error;
    }
    ld.pt.set(vpn, replacement);
    return GNTST_okay;
  }
  if (newAddr !== 0) return GNTST_general_error;
  const gfn = page;
  if (gfn < 0) return GNTST_general_error;
  // replace_grant_p2m_mapping: the check and the removal under ld's P2M lock.
  ld.p2mLock.writeLock();
  try {
    const e = ld.p2m!.entry(gfn);
    if (e === 0 || !isGrantP2m(p2mEntryType(e)) || p2mEntryMfn(e) !== mfn) return GNTST_general_error;
    ld.p2m!.delete(gfn);
    return GNTST_okay;
  } finally {
    ld.p2mLock.writeUnlock();
  }
}
