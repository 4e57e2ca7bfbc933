// Foreign mappings in a translated domain's P2M (p2m_map_foreign): another
// domain's frame placed at a GFN by XENMEM_acquire_resource. The entry holds a
// general reference on the frame, taken when it is written and dropped when it
// goes (p2m_entry_modify): removed (XENMEM_remove_from_physmap), replaced
// (add_to_physmap over it), or torn down with the domain (relinquish_p2m_mapping).
import { XEN_EBUSY, XEN_EINVAL, XEN_ENOENT, XEN_ENOMEM } from '../abi/hypercall.ts';
import type { Domain } from './domain.ts';
import { NO_REFERENCE } from './frame-table.ts';
import { NO_GFN } from './grant-table.ts';
import type { Hypervisor } from './hypervisor.ts';
import { ADDRESS_SPACE_PAGES, isForeignP2m, isGrantOrForeignP2m, P2M_MAP_FOREIGN } from './paging.ts';
import { findXenHeapSlot } from './xen-heap.ts';

/**
 * set_foreign_p2m_entry (set_typed_p2m_entry with p2m_map_foreign): places
 * fd's frame mfn at gfn in d's P2M. Over a grant or foreign entry Xen crashes
 * d (-ENOENT); RAM there is unhooked and stays allocated to d, one of d's own
 * Xen-heap frames is then at no GFN. The caller holds d's P2M lock.
 */
export function setForeignP2mEntry(hv: Hypervisor, d: Domain, fd: Domain, gfn: number, mfn: number): number {
  const p2m = d.p2m!;
  // p2m_set_entry refuses a GFN beyond the physical address width.
  if (!(Number.isSafeInteger(gfn) && gfn >= 0 && gfn < ADDRESS_SPACE_PAGES)) return -XEN_EINVAL;
  const old = p2m.get(gfn);
  if (old !== undefined && isGrantOrForeignP2m(old.type)) {
    hv.crashDomain(d, `foreign map over the grant or foreign mapping at GFN 0x${gfn.toString(16)}`);
    return -XEN_ENOENT;
  }
  if (!p2m.ensure(gfn)) return -XEN_ENOMEM;
  // p2m_entry_modify: page_get_owner_and_reference, or -EBUSY for a free page.
  const f = hv.frames;
  if (!f.isValid(mfn)) return -XEN_EBUSY;
  const owner = f.getOwnerAndReference(mfn);
  if (owner !== fd.domid) {
    if (owner !== NO_REFERENCE) hv.putPage(mfn);
    return -XEN_EBUSY;
  }
  if (old !== undefined) findXenHeapSlot(d, old.mfn)?.set(NO_GFN);
  p2m.set(gfn, mfn, P2M_MAP_FOREIGN);
  return 0;
}

/** Clears a foreign entry of d's P2M and drops the reference it held (d's P2M lock held, or d dying). */
export function removeForeignEntry(hv: Hypervisor, d: Domain, gfn: number): void {
  const e = d.p2m!.get(gfn);
  if (e === undefined || !isForeignP2m(e.type)) return;
  d.p2m!.delete(gfn);
  hv.putPage(e.mfn);
}

/**
 * relinquish_p2m_mapping and the P2M's teardown for a dying translated domain:
 * every entry goes and its Xen-heap frames are at no GFN, under d's P2M lock
 * (the toolstack kills d beside other threads' hypercalls, and dom0's
 * add_to_physmap or remove_from_physmap of d may be in flight: each re-checks
 * is_dying under the lock, so none changes the P2M after this). The foreign
 * entries' references are dropped once the lock is released: a last one may
 * finalise another dying domain.
 */
export function relinquishP2mMapping(hv: Hypervisor, d: Domain): void {
  const p2m = d.p2m;
  if (p2m === null) return;
  const foreign: number[] = [];
  d.p2mLock.writeLock();
  try {
    for (const [, e] of p2m.entries()) if (isForeignP2m(e % 8)) foreign.push(Math.floor(e / 8));
    p2m.clear();
    d.gt.sharedGfn.fill(NO_GFN);
    d.gt.statusGfn.fill(NO_GFN);
    d.sharedInfoGfn = NO_GFN;
  } finally {
    d.p2mLock.writeUnlock();
  }
  for (const mfn of foreign) hv.putPage(mfn);
}
