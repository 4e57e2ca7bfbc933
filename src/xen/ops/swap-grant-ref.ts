// GNTTABOP_swap_grant_ref (reference §6.12): swap two entries of the caller's
// own table, bounds-checked (XSA-18), refused while either is pinned.
import { GRANT_ENTRY_V1_SIZE, GRANT_ENTRY_V2_SIZE } from '../../abi/limits.ts';
import { GNTST_bad_gntref, GNTST_eagain, GNTST_okay } from '../../abi/status.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';

export function swapGrantRef(hv: Hypervisor, d: Domain, refA: number, refB: number): number {
  const gt = d.gt;
  // swap_grant_ref: the table's write lock, then both entries' locks (two act
  // locks at once only under the write lock).
  gt.lock.writeLock();
  try {
    const n = gt.nrGrantEntries();
    if (refA >= n) return GNTST_bad_gntref;
    if (refB >= n) return GNTST_bad_gntref;
    if (refA === refB) return GNTST_okay;
    const a = gt.activeEntry(refA).lock;
    const b = gt.activeEntry(refB).lock;
    a.lock();
    try {
      b.lock();
      try {
        return swapLocked(hv, d, refA, refB);
      } finally {
        b.unlock();
      }
    } finally {
      a.unlock();
    }
  } finally {
    gt.lock.writeUnlock();
  }
}

function swapLocked(hv: Hypervisor, d: Domain, refA: number, refB: number): number {
  const gt = d.gt;
  if (gt.activeEntry(refA).pin !== 0) return GNTST_eagain;
  if (gt.activeEntry(refB).pin !== 0) return GNTST_eagain;
  const u8 = hv.machine.u8;
  const size = gt.version === 1 ? GRANT_ENTRY_V1_SIZE : GRANT_ENTRY_V2_SIZE;
  const a = gt.shaAddr(refA);
  const b = gt.shaAddr(refB);
  const tmp = u8.slice(a, a + size);
  u8.copyWithin(a, b, b + size);
  u8.set(tmp, b);
  if (gt.version === 2) {
    const w = hv.machine.words;
    const sa = gt.statusAddr(refA);
    const sb = gt.statusAddr(refB);
    const t = w.load16(sa);
    w.store16(sa, w.load16(sb));
    w.store16(sb, t);
  }
  return GNTST_okay;
}
