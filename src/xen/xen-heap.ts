// The Xen-heap frames a domain is given (its grant frames, its v2 status
// frames, its shared-info page) and where each is placed in a translated
// domain's P2M: the slot XENMEM_add_to_physmap fills and a foreign or grant
// mapping over the same gfn empties.
import type { Domain } from './domain.ts';
import type { FrameList } from './frame-list.ts';

/**
 * Where a Xen-heap frame shared with a domain is placed in its P2M: changed
 * under the domain's P2M lock with the entry itself, read with Atomics.
 */
export interface GfnSlot {
  get(): number;
  set(gfn: number): void;
}

/** Entry i of a grant table's GFN list. */
export function arraySlot(gfns: FrameList, i: number): GfnSlot {
  return {
    get: () => gfns.load(i),
    set: (gfn) => gfns.store(i, gfn),
  };
}

export function sharedInfoSlot(d: Domain): GfnSlot {
  return {
    get: () => d.sharedInfoGfn,
    set: (gfn) => {
      d.sharedInfoGfn = gfn;
    },
  };
}

/** The slot of one of d's Xen-heap frames (grant, status, shared info), if mfn is one. */
export function findXenHeapSlot(d: Domain, mfn: number): GfnSlot | null {
  const gt = d.gt;
  let i = gt.shared.indexOf(mfn);
  if (i >= 0) return arraySlot(gt.sharedGfn, i);
  i = gt.status.indexOf(mfn);
  if (i >= 0) return arraySlot(gt.statusGfn, i);
  if (mfn === d.sharedInfoMfn) return sharedInfoSlot(d);
  return null;
}
