// acquire_grant_for_copy / release_grant_for_copy (reference §6.7.1): pin an
// entry for the duration of a copy, with host counters, following a transitive
// grant one level deep with both levels pinned.
import { GTF_sub_page, GTF_transitive, GTF_type_mask } from '../../abi/flags.ts';
import {
  grant_entry_v1,
  grant_entry_v2_full_page,
  grant_entry_v2_sub_page,
  grant_entry_v2_transitive,
} from '../../abi/grant-entry.ts';
import {
  GNTPIN_devw_mask,
  GNTPIN_hstr_inc,
  GNTPIN_hstw_inc,
  GNTPIN_hstw_mask,
  XEN_PAGE_SIZE,
} from '../../abi/limits.ts';
import { GNTST_bad_domain, GNTST_bad_gntref, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { ActiveEntry } from '../active-entry.ts';
import type { Domain } from '../domain.ts';
import { getPagedMfn, reduceStatusForPin, setStatus } from '../helpers.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { readU64 } from '../shared-entry.ts';

const V1 = grant_entry_v1.fields;
const V2_FULL = grant_entry_v2_full_page.fields;
const V2_SUB = grant_entry_v2_sub_page.fields;
const V2_TRANS = grant_entry_v2_transitive.fields;

/** Internal: the grant changed while a lock was dropped; restart the hypercall at this element. */
export const ERESTART = 1;

export interface CopyGrant {
  status: number;
  mfn: number;
  /** Window within the page. */
  start: number;
  length: number;
}

/** Records a failure in `out` and returns its status. */
function failed(out: CopyGrant, status: number): number {
  out.status = status;
  out.mfn = -1;
  out.start = 0;
  out.length = 0;
  return status;
}

/** Undoes a status change made for a pin that did not happen (fixup_status_for_copy_pin). */
function fixupStatus(hv: Hypervisor, rd: Domain, ref: number, readonly: boolean): void {
  reduceStatusForPin(hv, rd, ref, rd.gt.activeEntry(ref), readonly);
}

/**
 * Pins `gref` of rd for a copy by ldom. The outcome goes into `out` (the copy
 * path reuses one per buffer, so an element allocates nothing); returns its status.
 */
export function acquireGrantForCopy(
  hv: Hypervisor,
  rd: Domain,
  gref: number,
  ldom: number,
  readonly: boolean,
  allowTransitive: boolean,
  out: CopyGrant,
): number {
  const rgt = rd.gt;
  // Lock order: rd's table, then the entry; both are dropped around a
  // transitive grant's inner one (never two grant-table locks, XSA-411).
  rgt.lock.readLock();
  try {
    if (gref >= rgt.nrGrantEntries()) return failed(out, GNTST_bad_gntref);
    const act = rgt.activeEntry(gref);
    const actLock = act.lock;
    actLock.lock();
    try {
      return acquireLocked(hv, rd, gref, ldom, readonly, allowTransitive, out, act);
    } finally {
      actLock.unlock();
    }
  } finally {
    rgt.lock.readUnlock();
  }
}

/** Runs `fn` with rd's read lock and act's lock dropped, and takes them again after (in order). */
function unlocked<T>(rd: Domain, act: ActiveEntry, fn: () => T): T {
  act.lock.unlock();
  rd.gt.lock.readUnlock();
  try {
    return fn();
  } finally {
    rd.gt.lock.readLock();
    act.lock.lock();
  }
}

function acquireLocked(
  hv: Hypervisor,
  rd: Domain,
  gref: number,
  ldom: number,
  readonly: boolean,
  allowTransitive: boolean,
  out: CopyGrant,
  act: ActiveEntry,
): number {
  const rgt = rd.gt;
  // Already pinned: by the same grantee only, and with the host counter it
  // increments below 128 (reference §6.7.1 step 2, following Xen's HEAD).
  const pinIncr = readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
  if (act.pin !== 0 && (act.domid !== ldom || (act.pin & (pinIncr << 7)) !== 0))
    return failed(out, GNTST_general_error);
  const w = hv.machine.words;
  const sha = rgt.shaAddr(gref);
  const oldPin = act.pin;
  const needStatus = oldPin === 0 || (!readonly && (oldPin & (GNTPIN_devw_mask | GNTPIN_hstw_mask)) === 0);
  let mfn: number;

  if (rgt.version === 2 && (w.load16(sha + V2_TRANS.flags.offset) & GTF_type_mask) === GTF_transitive) {
    if (needStatus) {
      const rc = setStatus(hv, rd, gref, act, false, readonly, ldom, sha);
      if (rc !== GNTST_okay) return failed(out, rc);
    }
    if (!allowTransitive) {
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, GNTST_general_error);
    }
    // Read once: the guest may change the entry under our feet.
    const transDomid = w.load16(sha + V2_TRANS.trans_domid.offset);
    const transGref = w.load32(sha + V2_TRANS.gref.offset);
    if (transDomid === rd.domid) {
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, GNTST_general_error);
    }
    const td = hv.domainById(transDomid);
    if (td === undefined) {
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, GNTST_general_error);
    }
    rgt.addV2Ops(1);
    // rd's locks are dropped here; the inner grant must name rd and cannot itself be transitive.
    // The inner answer goes into `out` (nothing allocated), and is taken out of it at once.
    const inner = unlocked(rd, act, () =>
      acquireGrantForCopy(hv, td, transGref, rd.domid, readonly, false, out),
    );
    if (inner !== GNTST_okay) {
      rgt.addV2Ops(-1);
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, out.status);
    }
    const innerMfn = out.mfn;
    const innerStart = out.start;
    const innerLength = out.length;
    const changed =
      rgt.version !== 2 ||
      act.pin !== oldPin ||
      (oldPin !== 0 &&
        (act.domid !== ldom ||
          act.mfn !== innerMfn ||
          act.start !== innerStart ||
          act.length !== innerLength ||
          act.srcDomid !== td.domid ||
          act.transGref !== transGref ||
          !act.isSubPage));
    if (changed) {
      // Released after rd's locks are dropped (XSA-411).
      unlocked(rd, act, () => releaseGrantForCopy(hv, td, transGref, readonly));
      rgt.addV2Ops(-1);
      fixupStatus(hv, rd, gref, readonly);
      hv.putPage(innerMfn);
      return failed(out, ERESTART);
    }
    if (oldPin === 0) {
      act.domid = ldom;
      act.start = innerStart;
      act.length = innerLength;
      act.srcDomid = td.domid;
      act.transGref = transGref;
      act.mfn = innerMfn;
      // Always sub-page: that blocks mapping a transitive grant. The nr_v2_ops
      // count stays until the pin drops to 0.
      act.isSubPage = true;
    } else {
      rgt.addV2Ops(-1);
    }
    mfn = innerMfn;
  } else if (needStatus) {
    const rc = setStatus(hv, rd, gref, act, false, readonly, ldom, sha);
    if (rc !== GNTST_okay) return failed(out, rc);
    let gfn: number;
    let isSubPage = false;
    let start = 0;
    let length = XEN_PAGE_SIZE;
    if (rgt.version === 1) {
      gfn = w.load32(sha + V1.frame.offset);
    } else {
      gfn = readU64(hv, sha + V2_FULL.frame.offset);
      if ((w.load16(sha + V2_FULL.flags.offset) & GTF_sub_page) !== 0) {
        isSubPage = true;
        // The active entry keeps start in 15 bits (quirk §15.20).
        start = w.load16(sha + V2_SUB.page_off.offset) & 0x7fff;
        length = w.load16(sha + V2_SUB.length.offset);
      }
    }
    const pf = getPagedMfn(hv, rd, gfn);
    if (pf < 0) {
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, pf);
    }
    mfn = pf;
    if (oldPin === 0) {
      act.domid = ldom;
      act.isSubPage = isSubPage;
      act.start = start;
      act.length = length;
      act.srcDomid = rd.domid;
      act.transGref = gref;
      act.mfn = mfn;
      if (isSubPage) rgt.addV2Ops(1);
    } else if (
      // A writable upgrade must find the entry as it was pinned (XSA-500).
      mfn !== act.mfn ||
      act.srcDomid !== rd.domid ||
      act.transGref !== gref ||
      (act.isSubPage && (!isSubPage || act.start !== start || act.length !== length))
    ) {
      hv.putPage(mfn);
      fixupStatus(hv, rd, gref, readonly);
      return failed(out, GNTST_general_error);
    }
  } else {
    // Fast path: pinned with enough access already; the shared entry is not read.
    // The page must still be rd's and rd alive (XSA-236).
    mfn = act.mfn;
    if (rd.isDying || !hv.getPage(mfn, rd)) return failed(out, GNTST_bad_domain);
  }
  act.pin = (act.pin + pinIncr) >>> 0;
  out.status = GNTST_okay;
  out.mfn = mfn;
  out.start = act.start;
  out.length = act.length;
  return GNTST_okay;
}

export function releaseGrantForCopy(hv: Hypervisor, rd: Domain, gref: number, readonly: boolean): void {
  const rgt = rd.gt;
  let td: Domain | undefined;
  let transGref: number;
  rgt.lock.readLock();
  try {
    const act = rgt.activeEntry(gref);
    const actLock = act.lock;
    actLock.lock();
    try {
      const v1 = rgt.version === 1;
      td = v1 ? rd : hv.domainById(act.srcDomid);
      transGref = v1 ? gref : act.transGref;
      act.pin = (act.pin - (readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc)) >>> 0;
      reduceStatusForPin(hv, rd, gref, act, readonly);
      if (act.pin === 0 && act.isSubPage) rgt.addV2Ops(-1);
    } finally {
      actLock.unlock();
    }
  } finally {
    rgt.lock.readUnlock();
  }
  // The inner grant of a transitive one, after rd's locks are dropped (XSA-411).
  if (td !== undefined && td !== rd) releaseGrantForCopy(hv, td, transGref, readonly);
}
