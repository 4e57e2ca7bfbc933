// The helpers several ops share, as in Xen's grant_table.c (reference §6.0):
// H1 set_status (validate and mark an entry at pin time), H2
// reduce_status_for_pin (clear GTF_reading/GTF_writing after a pin drops), H3
// get_paged_frame (look a frame up in the granter's physical map and take a
// page reference).
import {
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_type_mask,
  GTF_writing,
} from '../abi/flags.ts';
import { GNTPIN_devw_mask, GNTPIN_hstw_mask, GNTTAB_CMPXCHG_ATTEMPTS } from '../abi/limits.ts';
import { GNTST_bad_page, GNTST_eagain, GNTST_general_error, GNTST_okay } from '../abi/status.ts';
import type { ActiveEntry } from './active-entry.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';
import { isGrantOrForeignP2m, P2M_RAM_PAGED, p2mEntryMfn, p2mEntryType } from './paging.ts';

/**
 * H1 (_set_status). Called when the entry is not pinned, or when a writable use
 * is asked for and no writable pin exists. v1 validates and marks with one
 * 32-bit CMPXCHG over (flags, domid), at most 5 attempts against a guest that
 * keeps changing the entry; v2 sets status bits, fences, and re-reads the header.
 */
export function setStatus(
  hv: Hypervisor,
  rd: Domain,
  ref: number,
  act: ActiveEntry,
  mapflag: boolean,
  readonly: boolean,
  ldomid: number,
  /** The entry's header, as the caller found it (Xen's shah). */
  sha: number = rd.gt.shaAddr(ref),
): number {
  const gt = rd.gt;
  const w = hv.machine.words;
  let mask = GTF_type_mask;
  if (mapflag) mask |= GTF_sub_page;

  if (gt.version === 1) {
    let scombo = w.load32(sha);
    for (let attempt = 1; ; attempt++) {
      const flags = scombo & 0xffff;
      const domid = scombo >>> 16;
      if (act.pin === 0 && ((flags & mask) !== GTF_permit_access || domid !== ldomid))
        return GNTST_general_error;
      let nflags = flags | GTF_reading;
      if (!readonly) {
        nflags |= GTF_writing;
        if ((flags & GTF_readonly) !== 0) return GNTST_general_error;
      }
      const prev = w.cmpxchg32(sha, scombo, (nflags | (domid << 16)) >>> 0);
      if (prev === scombo) return GNTST_okay;
      // "Shared grant entry is unstable": a guest flipping bits cannot livelock Xen.
      if (attempt === GNTTAB_CMPXCHG_ATTEMPTS) return GNTST_general_error;
      scombo = prev;
    }
  }

  const st = gt.statusAddr(ref);
  const typeOk = (flags: number) =>
    (flags & mask) === GTF_permit_access || (!mapflag && (flags & mask) === GTF_transitive);
  let hdr = w.load32(sha);
  let flags = hdr & 0xffff;
  if (act.pin === 0 && (!typeOk(flags) || hdr >>> 16 !== ldomid)) return GNTST_general_error;
  if (readonly) {
    w.or16(st, GTF_reading);
  } else {
    if ((flags & GTF_readonly) !== 0) return GNTST_general_error;
    w.or16(st, GTF_reading | GTF_writing);
  }
  // The guest revokes by clearing hdr.flags, fencing, then reading status; Xen
  // sets status, fences, then re-reads hdr. One of the two sees the other.
  w.fence();
  hdr = w.load32(sha);
  flags = hdr & 0xffff;
  if (act.pin === 0) {
    if (!typeOk(flags) || hdr >>> 16 !== ldomid || (!readonly && (flags & GTF_readonly) !== 0)) {
      w.and16(st, ~(GTF_writing | GTF_reading));
      return GNTST_general_error;
    }
  } else if ((flags & GTF_readonly) !== 0) {
    w.and16(st, ~GTF_writing);
    return GNTST_general_error;
  }
  return GNTST_okay;
}

/**
 * H2 (reduce_status_for_pin): after a pin dropped or a pin attempt failed, clear
 * GTF_reading once nothing is pinned and GTF_writing once no writable pin is left.
 */
export function reduceStatusForPin(
  hv: Hypervisor,
  rd: Domain,
  ref: number,
  act: ActiveEntry,
  readonly: boolean,
): void {
  let clear = act.pin === 0 ? GTF_reading : 0;
  if (!readonly && (act.pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)) === 0) clear |= GTF_writing;
  if (clear === 0) return;
  const gt = rd.gt;
  // A stale status location (the table changed version and the ref is gone) is skipped.
  if (ref >= gt.nrGrantEntries()) return;
  hv.machine.words.and16(gt.statusAddr(ref), ~clear);
}

export type PagedFrame = { status: typeof GNTST_okay; mfn: number } | { status: number; mfn: -1 };

/**
 * H3 (get_paged_frame): the frame at `gfn` in rd's physical map, with a general
 * reference taken. PV: the GFN is the MFN and rd must own it. HVM: through the
 * P2M; paged out answers eagain, a foreign grant mapping or nothing answers bad_page.
 */
export function getPagedFrame(hv: Hypervisor, rd: Domain, gfn: number): PagedFrame {
  const r = getPagedMfn(hv, rd, gfn);
  return r >= 0 ? { status: GNTST_okay, mfn: r } : { status: r, mfn: -1 };
}

/**
 * getPagedFrame for hot paths, allocating nothing: the MFN (>= 0) with its
 * reference taken, or the (negative) GNTST status.
 */
export function getPagedMfn(hv: Hypervisor, rd: Domain, gfn: number): number {
  if (rd.isDying) return GNTST_bad_page;
  let mfn: number;
  if (rd.p2m !== null) {
    if (!Number.isSafeInteger(gfn)) return GNTST_bad_page;
    // p2m_get_page_from_gfn: the lookup and the reference under rd's P2M
    // read lock, so the page found is not freed or moved in between (an
    // add_to_physmap over that GFN frees the RAM there).
    rd.p2mLock.readLock();
    try {
      // Killed beside this: its P2M is (being) torn down under the write lock.
      if (rd.isDying) return GNTST_bad_page;
      const e = rd.p2m.entry(gfn);
      if (e === 0 || isGrantOrForeignP2m(p2mEntryType(e))) return GNTST_bad_page;
      if (p2mEntryType(e) === P2M_RAM_PAGED) return GNTST_eagain;
      mfn = p2mEntryMfn(e);
      if (!hv.getPage(mfn, rd)) return GNTST_bad_page;
    } finally {
      rd.p2mLock.readUnlock();
    }
    return mfn;
  }
  mfn = gfn;
  if (!hv.getPage(mfn, rd)) return GNTST_bad_page;
  return mfn;
}
