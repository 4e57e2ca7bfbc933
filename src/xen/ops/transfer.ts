// GNTTABOP_transfer (reference §6.6, §10; xen-locking.md §3.3): legacy page
// flipping from a PV sender into an accept_transfer entry of the receiver.
// The sender's page is lost on every failure after it was stolen (everything
// but bad_page).
//
// It runs beside other hypercalls (dispatch.ts runsShared) under Xen's locks,
// in gnttab_transfer's order, never two of them at once:
//   1. steal_page: the page's count goes 2 -> 0 in one compare-exchange, then
//      under the sender's page_alloc_lock it loses its owner and leaves the
//      sender's list (tot_pages - 1);
//   2. the receiver's page_alloc_lock: is_dying and the headroom checked, a
//      tot_pages slot reserved; dropped before any grant lock (XSA-73);
//   3. the receiver's grant read lock: gnttab_prepare_for_transfer's
//      cmpxchg of the entry; dropped;
//   4. assign_pages under the receiver's page_alloc_lock (is_dying again);
//   5. the receiver's grant read lock and the entry's act lock: the version
//      read again (XSA-501), the frame stored (an HVM receiver's P2M under its
//      p2m lock), then GTF_transfer_completed.
import { GTF_accept_transfer, GTF_transfer_committed, GTF_transfer_completed } from '../../abi/flags.ts';
import { grant_entry_v1, grant_entry_v2_full_page } from '../../abi/grant-entry.ts';
import { GNTTAB_CMPXCHG_ATTEMPTS } from '../../abi/limits.ts';
import { GNTST_bad_domain, GNTST_bad_page, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { Domain } from '../domain.ts';
import { NO_REFERENCE, PGC_xen_heap } from '../frame-table.ts';
import { NO_GFN } from '../grant-table.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { ADDRESS_SPACE_PAGES, isGrantOrForeignP2m, isGrantP2m, P2M_RAM_RW } from '../paging.ts';
import { readU64 } from '../shared-entry.ts';
import { findXenHeapSlot } from '../xen-heap.ts';

const V1 = grant_entry_v1.fields;
const V2 = grant_entry_v2_full_page.fields;

/**
 * steal_page (x86 mm.c): takes a reference, requires d as the owner and no
 * special page, then needs exactly two references (its own and the
 * allocation one) and drops both in one compare-exchange (XSA-287). Any
 * other holder (a grant mapping, a copy, a PTE) makes it fail, and the page
 * stays d's with every count as it was. Afterwards the page has no owner,
 * count 0 and is off d's list: nothing can take a reference to it.
 */
function stealPage(hv: Hypervisor, d: Domain, mfn: number): boolean {
  const f = hv.frames;
  if (!f.isValid(mfn)) return false;
  const owner = f.getOwnerAndReference(mfn);
  // No reference taken (a free or stolen page); one taken on a page with no
  // owner or another owner goes back (get_page).
  if (owner === NO_REFERENCE) return false;
  if (owner !== d.domid || (Atomics.load(f.flags, mfn) & PGC_xen_heap) !== 0) {
    hv.putPage(mfn);
    return false;
  }
  // PGC_allocated, a word of its own here, changes only under the owner's
  // page_alloc_lock: the count's compare-exchange and the flag's clear are
  // one step for every other writer of the flag (FrameTable.stealCommit).
  // Xen takes the lock after the cmpxchg; taking it before changes nothing
  // for the lock order (nothing is taken under it).
  d.pageAllocLock.lock();
  try {
    if (f.typeCount[mfn] === 0 && f.stealCommit(mfn)) {
      f.disown(mfn);
      d.owned.delete(mfn);
      return true;
    }
  } finally {
    d.pageAllocLock.unlock();
  }
  hv.putPage(mfn);
  return false;
}

/**
 * gnttab_prepare_for_transfer: under e's read lock, commit the entry with a
 * bounded cmpxchg; returns the table version seen under the lock, 0 on
 * failure.
 */
function prepareForTransfer(hv: Hypervisor, e: Domain, d: Domain, ref: number): number {
  const gt = e.gt;
  gt.lock.readLock();
  try {
    if (ref >= gt.nrGrantEntries()) return 0;
    const w = hv.machine.words;
    const sha = gt.shaAddr(ref);
    let scombo = w.load32(sha);
    for (let attempt = 1; ; attempt++) {
      // Exactly GTF_accept_transfer, no other bit, naming the sender.
      if ((scombo & 0xffff) !== GTF_accept_transfer || scombo >>> 16 !== d.domid) return 0;
      const prev = w.cmpxchg32(sha, scombo, (scombo | GTF_transfer_committed) >>> 0);
      if (prev === scombo) return gt.version;
      if (attempt === GNTTAB_CMPXCHG_ATTEMPTS) return 0;
      scombo = prev;
    }
  } finally {
    gt.lock.readUnlock();
  }
}

/**
 * assign_pages(e, page, MEMF_no_refcount) of a stolen page: refused once e
 * is dying; its tot_pages slot was reserved already, so the reservation
 * becomes the listed page.
 */
function assignPage(hv: Hypervisor, e: Domain, mfn: number): boolean {
  e.pageAllocLock.lock();
  try {
    if (e.isDying) return false;
    hv.frames.assign(mfn, e.domid);
    e.owned.add(mfn);
    e.totReserved--;
    return true;
  } finally {
    e.pageAllocLock.unlock();
  }
}

/** The reserved slot goes back (domain_adjust_tot_pages(e, -1)). */
function unreserve(hv: Hypervisor, e: Domain): void {
  e.pageAllocLock.lock();
  try {
    e.totReserved--;
  } finally {
    e.pageAllocLock.unlock();
  }
  // tot_pages reaching 0 drops the domain reference the first page took.
  if (e.isDying) hv.domainMayGo(e);
}

export function transfer(hv: Hypervisor, d: Domain, gfn: number, domid: number, ref: number): number {
  // PV sender: the GFN is the MFN (get_gfn_unshare takes no page reference).
  const mfn = gfn;
  if (!stealPage(hv, d, mfn)) return GNTST_bad_page;
  // guest_physmap_remove_page of a PV sender: nothing to remove; no TLB here.
  // From here on the page is lost on failure (free_domheap_page).
  const e = hv.domainById(domid);
  if (e === undefined) {
    hv.freeStolenPage(mfn);
    return GNTST_bad_domain;
  }
  // XSM grant_transfer: allowed by the default policy. Machine frames here are
  // all below 2^32, so a v1 PV receiver never needs the copy to a low page.
  e.pageAllocLock.lock();
  let reserved = false;
  try {
    if (!e.isDying && e.totPages < e.maxPages) {
      e.totReserved++;
      reserved = true;
    }
  } finally {
    e.pageAllocLock.unlock();
  }
  if (!reserved) {
    hv.freeStolenPage(mfn);
    return GNTST_general_error;
  }
  // The receiver's page_alloc_lock is not held here: prepare takes e's grant
  // lock, and a grant-lock holder may take page_alloc_lock (XSA-73).
  const version = prepareForTransfer(hv, e, d, ref);
  if (version === 0 || !assignPage(hv, e, mfn)) {
    // GTF_transfer_committed stays in the entry, as in Xen.
    unreserve(hv, e);
    hv.freeStolenPage(mfn);
    return GNTST_general_error;
  }
  // No grant lock is held from prepare to here: another CPU may switch e's
  // version in between (XSA-501), which the final update checks for.
  hv.grantLockDropped?.('gnttab_transfer', e, ref);
  const gt = e.gt;
  gt.lock.readLock();
  try {
    // The act lock only serialises (there is no pin); ref was bounds-checked
    // by prepare, and a table never shrinks.
    const act = gt.activeEntry(ref).lock;
    act.lock();
    try {
      return completeTransfer(hv, e, ref, mfn, version);
    } finally {
      act.unlock();
    }
  } finally {
    gt.lock.readUnlock();
  }
}

/** The final entry update, under e's read lock and the entry's act lock. */
function completeTransfer(hv: Hypervisor, e: Domain, ref: number, mfn: number, version: number): number {
  const gt = e.gt;
  // A set_version between prepare and here (XSA-501): -EILSEQ, general_error;
  // the page stays e's.
  if (gt.version !== version) return GNTST_general_error;
  const w = hv.machine.words;
  const sha = gt.shaAddr(ref);
  let added = true;
  if (e.p2m !== null) {
    const dest = version === 1 ? w.load32(sha + V1.frame.offset) : readU64(hv, sha + V2.frame.offset);
    e.p2mLock.writeLock();
    try {
      added = physmapAddPage(hv, e, dest, mfn);
    } finally {
      e.p2mLock.writeUnlock();
    }
  } else if (version === 1) {
    w.store32(sha + V1.frame.offset, mfn);
  } else {
    w.store32(sha + V2.frame.offset, mfn);
    w.store32(sha + V2.frame.offset + 4, 0);
  }
  // The frame is written before GTF_transfer_completed is set (smp_wmb; Xen's
  // |= is a plain one, an atomic OR here since the guest writes the word too).
  w.or16(sha, GTF_transfer_completed);
  return added ? GNTST_okay : GNTST_general_error;
}

/**
 * guest_physmap_add_page into a translated receiver, under its p2m lock:
 * fails outside the physical map; over a grant mapping p2m_add_page refuses
 * and crashes the receiver ("really shouldn't be unmapping grant/foreign
 * maps this way").
 */
function physmapAddPage(hv: Hypervisor, e: Domain, dest: number, mfn: number): boolean {
  const p2m = e.p2m!;
  if (!(Number.isSafeInteger(dest) && dest < ADDRESS_SPACE_PAGES)) return false;
  // A receiver killed meanwhile has its P2M torn down under this lock: nothing
  // goes into it any more (the page is on its list, and relinquished with it).
  if (e.isDying) return false;
  const old = p2m.get(dest);
  if (old !== undefined && isGrantOrForeignP2m(old.type)) {
    const what = isGrantP2m(old.type) ? 'grant' : 'foreign';
    hv.crashDomain(e, `transfer into the ${what} mapping at GFN 0x${dest.toString(16)}`);
    return false;
  }
  if (!p2m.ensure(dest)) return false;
  // p2m_add_page overwrites the entry: one of e's own Xen-heap frames placed
  // there (grant, status, shared info) is no longer at that GFN, and must not
  // be recorded there (a frame is visible at no more than one GFN, §11).
  const prev = p2m.get(dest);
  const slot = prev === undefined ? null : findXenHeapSlot(e, prev.mfn);
  if (slot !== null && slot.get() === dest) slot.set(NO_GFN);
  p2m.set(dest, mfn, P2M_RAM_RW);
  return true;
}
