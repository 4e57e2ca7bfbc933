// GNTTABOP_transfer (reference §6.6, §10): legacy page flipping from a PV
// sender into an accept_transfer entry of the receiver. The sender's page is
// lost on every failure after it was stolen (everything but bad_page).
import { GTF_accept_transfer, GTF_transfer_committed, GTF_transfer_completed } from '../../abi/flags.ts';
import { grant_entry_v1, grant_entry_v2_full_page } from '../../abi/grant-entry.ts';
import { GNTTAB_CMPXCHG_ATTEMPTS } from '../../abi/limits.ts';
import { GNTST_bad_domain, GNTST_bad_page, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { Domain } from '../domain.ts';
import { PGC_allocated, PGC_xen_heap } from '../frame-table.ts';
import { NO_GFN } from '../grant-table.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { ADDRESS_SPACE_PAGES, isGrantOrForeignP2m, isGrantP2m, P2M_RAM_RW } from '../paging.ts';
import { readU64 } from '../shared-entry.ts';
import { findXenHeapSlot } from '../xen-heap.ts';

const V1 = grant_entry_v1.fields;
const V2 = grant_entry_v2_full_page.fields;

/**
 * steal_page: the page must be d's, not a Xen-heap page, and hold exactly its
 * allocation reference plus the caller's temporary one. Afterwards it has no
 * owner and one reference (the temporary one).
 */
function stealPage(hv: Hypervisor, d: Domain, mfn: number): boolean {
  const f = hv.frames;
  if (f.owner[mfn] !== d.domid || (f.flags[mfn]! & PGC_xen_heap) !== 0) return false;
  if ((f.flags[mfn]! & PGC_allocated) === 0 || f.typeCount[mfn] !== 0) return false;
  if (!f.stealCommit(mfn)) return false;
  d.owned.delete(mfn);
  return true;
}

/** gnttab_prepare_for_transfer: commit the receiver's entry with a bounded CMPXCHG. */
function prepareForTransfer(hv: Hypervisor, e: Domain, d: Domain, ref: number): boolean {
  const gt = e.gt;
  if (ref >= gt.nrGrantEntries()) return false;
  const w = hv.machine.words;
  const sha = gt.shaAddr(ref);
  let scombo = w.load32(sha);
  for (let attempt = 1; ; attempt++) {
    // Exactly GTF_accept_transfer, no other bit, naming the sender.
    if ((scombo & 0xffff) !== GTF_accept_transfer || scombo >>> 16 !== d.domid) return false;
    const prev = w.cmpxchg32(sha, scombo, (scombo | GTF_transfer_committed) >>> 0);
    if (prev === scombo) return true;
    if (attempt === GNTTAB_CMPXCHG_ATTEMPTS) return false;
    scombo = prev;
  }
}

export function transfer(hv: Hypervisor, d: Domain, gfn: number, domid: number, ref: number): number {
  // PV sender: the GFN is the MFN; get_page_from_gfn takes a temporary reference.
  if (!hv.getPage(gfn, d)) return GNTST_bad_page;
  const mfn = gfn;
  if (!stealPage(hv, d, mfn)) {
    hv.putPage(mfn);
    return GNTST_bad_page;
  }
  // From here on the page is lost on failure: freed with its last reference.
  const e = hv.domainById(domid);
  if (e === undefined) {
    hv.putPage(mfn);
    return GNTST_bad_domain;
  }
  // XSM grant_transfer: allowed by the default policy. Machine frames here are
  // all below 2^32, so a v1 PV receiver never needs the copy to a low page.
  if (e.isDying || e.totPages >= e.maxPages) {
    hv.putPage(mfn);
    return GNTST_general_error;
  }
  const version = e.gt.version;
  if (!prepareForTransfer(hv, e, d, ref)) {
    hv.putPage(mfn);
    return GNTST_general_error;
  }
  // assign_pages: the temporary reference becomes e's allocation reference.
  hv.frames.assign(mfn, e.domid);
  e.owned.add(mfn);
  const gt = e.gt;
  if (gt.version !== version) return GNTST_general_error; // XSA-501
  const w = hv.machine.words;
  const sha = gt.shaAddr(ref);
  const dest = version === 1 ? w.load32(sha + V1.frame.offset) : readU64(hv, sha + V2.frame.offset);
  let added = true;
  if (e.p2m !== null) {
    // guest_physmap_add_page: fails outside the physical map; over a grant
    // mapping p2m_add_page refuses and crashes the receiver ("really shouldn't
    // be unmapping grant/foreign maps this way").
    if (!(Number.isSafeInteger(dest) && dest < ADDRESS_SPACE_PAGES)) added = false;
    else if (isGrantOrForeignP2m(e.p2m.get(dest)?.type ?? P2M_RAM_RW)) {
      const what = isGrantP2m(e.p2m.get(dest)!.type) ? 'grant' : 'foreign';
      hv.crashDomain(e, `transfer into the ${what} mapping at GFN 0x${dest.toString(16)}`);
      added = false;
    } else if (!e.p2m.ensure(dest)) added = false;
    else {
      // p2m_add_page overwrites the entry: one of e's own Xen-heap frames placed
      // there (grant, status, shared info) is no longer at that GFN, and must not
      // be recorded there (a frame is visible at no more than one GFN, §11).
      const prev = e.p2m.get(dest);
      const slot = prev === undefined ? null : findXenHeapSlot(e, prev.mfn);
      if (slot !== null && slot.get() === dest) slot.set(NO_GFN);
      e.p2m.set(dest, mfn, P2M_RAM_RW);
    }
  } else if (version === 1) {
    w.store32(sha + V1.frame.offset, mfn);
  } else {
    w.store32(sha + V2.frame.offset, mfn);
    w.store32(sha + V2.frame.offset + 4, 0);
  }
  // The frame is written before GTF_transfer_completed is set.
  w.or16(sha, GTF_transfer_completed);
  return added ? GNTST_okay : GNTST_general_error;
}
