// update_va_mapping (PV): write one PTE of the caller's page table, as Xen's
// mod_l1_entry does (xen/arch/x86/mm.c). update_va_mapping_otherdomain does the
// same with another domain as the page owner (a foreign frame the caller may map,
// as dom0 maps frames it got from XENMEM_acquire_resource). The PTE is x86's 64-bit form: frame in
// bits 12-51, flags in bits 0-11 and 52-63. A zero PTE unmaps. Grant PTEs are
// made by GNTTABOP_map_grant_ref only; an ordinary update may still change or
// zap one, which in a release build is no different from any other PTE.
//
// Concurrency: both run side by side with other domains' hypercalls
// (dispatch.ts runsShared). Xen writes the PTE under page_lock of the L1 page
// (__do_update_va_mapping), because any vCPU of the domain, or a privileged
// domain's mmu_update naming it as the page-table owner, may write that page
// at the same time. Here nothing else can: a PV domain's page table is written
// only by its own hypercalls (this file, and its own grant maps and unmaps in
// host-mapping.ts), made by its one thread (WorkerHost.spawn runs one guest per
// domain, a domain has one hypercall thread), and by the toolstack's create,
// before the domain is published, and destroy, once the domain's thread is
// out of Xen and refused entry (domain_pause before domain_kill): both run
// beside other domains' hypercalls, never beside the domain's own. The granter of a grant PTE never writes the grantee's PTEs, and
// its own table's locks do not cover them. So the read of the old PTE, the
// write of the new one and the paging-pool frame a new leaf takes need no
// lock, and no page_lock is taken. What other threads do touch are the
// frames' counts: the new frame's reference (page_get_owner_and_reference, a
// compare-exchange that never revives a frame at 0) and writable type
// reference, and the old frame's, dropped after the write (put_page_from_l1e):
// the last one frees the page under its owner's page_alloc_lock, and may let
// a dying owner be finalised, which a shared hypercall leaves to the
// toolstack (Hypervisor.maybeFinalise). Zapping a grant PTE this way drops
// the grant's references and leaves its pin and maptrack slot, as Xen does
// (quirk §15.19); the grant side is only ever changed by this same thread's
// unmap, which then finds the PTE gone (replace_grant_pv_mapping's check).

import { DOMID_IO, DOMID_SELF, DOMID_XEN } from '../abi/domid.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_AVAIL,
  _PAGE_AVAIL_HIGH,
  _PAGE_DIRTY,
  _PAGE_GLOBAL,
  _PAGE_GNTTAB,
  _PAGE_NX_BIT,
  _PAGE_PRESENT,
  _PAGE_RW,
  _PAGE_USER,
  PAGE_CACHE_ATTRS,
  XEN_EBUSY,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { DOM_IO, type Domain, type PageOwner } from './domain.ts';
import { NO_REFERENCE } from './frame-table.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES, makePte, pteFlags, pteFrame } from './paging.ts';
import type { Register } from './registers.ts';

/**
 * L1_DISALLOW_MASK for a domain without I/O memory or ports (no domain of this
 * model has any): BASE_DISALLOW_MASK's PAT, PCD, PWT and GLOBAL (bits 24-31 do
 * not exist in the 24-bit form); a debug build adds _PAGE_GNTTAB.
 */
const L1_DISALLOW_MASK = PAGE_CACHE_ATTRS | _PAGE_GLOBAL;

/** PTE flags a guest may change without re-validating the PTE (mm.c). */
const FASTPATH_FLAG_WHITELIST =
  _PAGE_NX_BIT | _PAGE_AVAIL_HIGH | _PAGE_AVAIL | _PAGE_GLOBAL | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_USER;

/** INVALID_MFN as an L1 entry's frame field holds it (PADDR_MASK >> PAGE_SHIFT). */
const INVALID_L1_MFN = 2 ** 40 - 1;

/** An L1 entry split as Xen splits it: l1e_get_pfn and the 24-bit l1e_get_flags. */
export interface L1e {
  mfn: number;
  flags: number;
}

/** The register value of a PTE argument, exactly (a BigInt, or a number taken as an integer). */
export function l1eFromRegister(x: unknown): L1e {
  let v = 0n;
  if (typeof x === 'bigint') v = BigInt.asUintN(64, x);
  else if (typeof x === 'number' && Number.isFinite(x)) v = BigInt.asUintN(64, BigInt(Math.trunc(x)));
  return {
    mfn: Number((v >> 12n) & 0xff_ffff_ffffn),
    flags: Number(v & 0xfffn) | (Number(v >> 52n) << 12),
  };
}

export function updateVaMapping(hv: Hypervisor, d: Domain, va: number, pte: Register | undefined): number {
  if (d.pt === null) return -XEN_ENOSYS;
  return modL1Entry(hv, d, va, l1eFromRegister(pte), d);
}

/**
 * do_update_va_mapping_otherdomain: get_pg_owner(domid), then
 * __do_update_va_mapping's xsm_update_va_mapping (the caller itself or the
 * control domain) and mod_l1_entry with that page owner.
 */
export function updateVaMappingOtherdomain(
  hv: Hypervisor,
  d: Domain,
  va: number,
  pte: Register | undefined,
  domid: number,
): number {
  if (d.pt === null) return -XEN_ENOSYS;
  const pgOwner = getPgOwner(hv, d, domid);
  if (pgOwner === null) return -XEN_ESRCH;
  if (!hv.xsmTarget(d, pgOwner)) return -XEN_EPERM;
  return modL1Entry(hv, d, va, l1eFromRegister(pte), pgOwner);
}

/**
 * get_pg_owner: DOMID_SELF is the caller; its own id, DOMID_XEN and an
 * unknown domain are refused; DOMID_IO is dom_io.
 */
function getPgOwner(hv: Hypervisor, curr: Domain, domid: number): PageOwner | null {
  if (domid === DOMID_SELF) return curr;
  if (domid === curr.domid) return null; // "Cannot specify itself as foreign domain"
  if (domid === DOMID_IO) return DOM_IO;
  if (domid === DOMID_XEN) return null;
  return hv.domainById(domid) ?? null;
}

/** mod_l1_entry for the PTE mapping `va` in d's page table; pgOwner owns the frames it may map. */
export function modL1Entry(hv: Hypervisor, d: Domain, va: number, nl1e: L1e, pgOwner: PageOwner): number {
  const pt = d.pt!;
  const vpn = Math.floor(va / XEN_PAGE_SIZE);
  // map_guest_l1e: an address outside the address space has no L1 entry.
  if (!(Number.isSafeInteger(va) && va >= 0 && vpn < ADDRESS_SPACE_PAGES)) return -XEN_EINVAL;
  const ol1e = pt.get(vpn);
  if ((nl1e.flags & _PAGE_PRESENT) === 0) {
    // A non-present entry maps nothing; only its present bit matters here.
    pt.set(vpn, 0);
    hv.putPteReferences(d, ol1e);
    return 0;
  }
  const disallow = L1_DISALLOW_MASK | (hv.opts.debugBuild ? _PAGE_GNTTAB : 0);
  if ((nl1e.flags & disallow) !== 0) return -XEN_EINVAL;
  if (!pt.ensure(vpn)) return -XEN_ENOMEM;
  // Bits 52-63 (NX, the high available bits) are all whitelisted; the 32-bit
  // entries of this model keep only bits 0-11.
  const npte = makePte(nl1e.mfn, nl1e.flags & 0xfff);
  // Fast path for sufficiently similar mappings: same frame, differences only
  // in whitelisted bits. The PTE is written with no reference taken or dropped,
  // whoever owns the frame (a grant PTE keeps the grant's references).
  if (
    (ol1e & _PAGE_PRESENT) !== 0 &&
    pteFrame(ol1e) === nl1e.mfn &&
    ((pteFlags(ol1e) ^ nl1e.flags) & ~FASTPATH_FLAG_WHITELIST & 0xfff) === 0
  ) {
    pt.set(vpn, npte);
    return 0;
  }
  const rc = getPageFromL1e(hv, nl1e, d, pgOwner);
  if (rc !== 0) return rc;
  pt.set(vpn, npte);
  hv.putPteReferences(d, ol1e);
  return 0;
}

/**
 * get_page_from_l1e: the references a new PTE of l1eOwner needs, for a frame
 * pgOwner owns. A frame outside RAM would be I/O memory, which no domain here
 * may map (-EPERM; INVALID_MFN itself -EINVAL); a free frame, or one owned by
 * anyone else, "could not pin" (-EBUSY).
 */
function getPageFromL1e(hv: Hypervisor, nl1e: L1e, l1eOwner: Domain, pgOwner: PageOwner): number {
  const f = hv.frames;
  const mfn = nl1e.mfn;
  if (!f.isValid(mfn)) return mfn === INVALID_L1_MFN ? -XEN_EINVAL : -XEN_EPERM;
  // page_get_owner_and_reference: no reference on a free page.
  const ownerId = f.getOwnerAndReference(mfn);
  if (ownerId === NO_REFERENCE) return -XEN_EBUSY;
  let owner: PageOwner = pgOwner;
  if (ownerId !== pgOwner.domid) {
    // A privileged pg_owner may hand on the right to map its target's pages.
    const real = hv.domains.get(ownerId);
    if (real === undefined || pgOwner === l1eOwner || !hv.xsmTarget(pgOwner, real)) {
      hv.putPage(mfn);
      return -XEN_EBUSY;
    }
    owner = real;
  }
  // Foreign frames of a translated domain take no writable type reference.
  if ((nl1e.flags & _PAGE_RW) !== 0 && (l1eOwner === owner || !owner.translated)) hv.getPageTypeWritable(mfn);
  // (Cache attributes on a Xen-heap page would be -EACCES; L1_DISALLOW_MASK refused them already.)
  return 0;
}
