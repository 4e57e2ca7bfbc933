// GNTTABOP_map_grant_ref (reference §6.1): pin a granter's entry and map its
// frame for the caller, host (CPU) and/or device, read-only or writable.
import {
  GNTMAP_application_map,
  GNTMAP_contains_pte,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
} from '../../abi/flags.ts';
import type { gnttab_map_grant_ref } from '../../abi/gnttab-ops.ts';
import { grant_entry_v1, grant_entry_v2_full_page } from '../../abi/grant-entry.ts';
import {
  GNTPIN_devr_inc,
  GNTPIN_devw_inc,
  GNTPIN_devw_mask,
  GNTPIN_hstr_inc,
  GNTPIN_hstw_inc,
  GNTPIN_hstw_mask,
  XEN_PAGE_SIZE,
} from '../../abi/limits.ts';
import {
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
} from '../../abi/status.ts';
import type { StructValue } from '../../abi/struct.ts';
import type { ActiveEntry } from '../active-entry.ts';
import type { Domain } from '../domain.ts';
import { getPagedMfn, reduceStatusForPin, setStatus } from '../helpers.ts';
import { createGrantHostMapping, pageOf, replaceGrantHostMapping } from '../host-mapping.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { readU64 } from '../shared-entry.ts';

/**
 * One gnttab_map_grant_ref as read from the guest; mapGrantRef writes its
 * status, and on success its handle and dev_bus_addr, back into it.
 */
export type MapOp = StructValue<keyof typeof gnttab_map_grant_ref.fields>;

const V1_FRAME = grant_entry_v1.fields.frame.offset;
const V2_FRAME = grant_entry_v2_full_page.fields.frame.offset;

/** x86: a writable host mapping takes a type reference when the granter is PV or maps itself. */
export function hostMappingTakesType(readonly: boolean, ld: Domain, rd: Domain): boolean {
  return !readonly && (ld === rd || !rd.translated);
}

/** A failed map: only the status changes (handle and dev_bus_addr stay the caller's). */
function fail(op: MapOp, status: number): number {
  op.status = status;
  return status;
}

/** What pinForMap found: the frame to map, and whether it took the page's reference (H3). */
const pin = { mfn: 0, pageRefTaken: false };

/**
 * Steps 3-10 of map_grant_ref, under rd's read lock and the entry's lock:
 * checks the ref, pins the entry (fetching the frame when it was unpinned)
 * and leaves the answer in `pin`. Returns the status; both locks are free
 * again when it returns, whatever happens.
 */
function pinForMap(
  hv: Hypervisor,
  ld: Domain,
  rd: Domain,
  ref: number,
  readonly: boolean,
  pinIncr: number,
): number {
  const rgt = rd.gt;
  // Lock order: rd's table, then the entry (one grant-table lock at a time).
  rgt.lock.readLock();
  try {
    if (ref >= rgt.nrGrantEntries()) return GNTST_bad_gntref;
    const act = rgt.activeEntry(ref);
    const actLock = act.lock;
    actLock.lock();
    try {
      // Bit 7 of any counter being incremented already set: the counter would pass 128.
      if (act.pin !== 0 && (act.domid !== ld.domid || (act.pin & (pinIncr << 7)) !== 0 || act.isSubPage))
        return GNTST_general_error;
      pin.pageRefTaken = false;
      if (act.pin === 0 || (!readonly && (act.pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)) === 0)) {
        const sha = rgt.shaAddr(ref);
        const rc = setStatus(hv, rd, ref, act, true, readonly, ld.domid, sha);
        if (rc !== GNTST_okay) return rc;
        if (act.pin === 0) {
          const gfn =
            rgt.version === 1 ? hv.machine.words.load32(sha + V1_FRAME) : readU64(hv, sha + V2_FRAME);
          const pf = getPagedMfn(hv, rd, gfn);
          if (pf < 0) {
            reduceStatusForPin(hv, rd, ref, act, readonly);
            return pf;
          }
          pin.pageRefTaken = true;
          act.domid = ld.domid;
          act.mfn = pf;
          act.start = 0;
          act.length = XEN_PAGE_SIZE;
          act.isSubPage = false;
          act.srcDomid = rd.domid;
          act.transGref = ref;
        }
      }
      act.pin = (act.pin + pinIncr) >>> 0;
      pin.mfn = act.mfn;
      return GNTST_okay;
    } finally {
      actLock.unlock();
    }
  } finally {
    rgt.lock.readUnlock();
  }
}

/** Maps op (allocating nothing); returns the status it wrote into op. */
export function mapGrantRef(hv: Hypervisor, ld: Domain, op: MapOp): number {
  const flags = op.flags >>> 0;
  const readonly = (flags & GNTMAP_readonly) !== 0;
  let pinIncr = 0;
  if ((flags & GNTMAP_device_map) !== 0) pinIncr += readonly ? GNTPIN_devr_inc : GNTPIN_devw_inc;
  if ((flags & GNTMAP_host_map) !== 0) pinIncr += readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
  // Quirk §15.1: neither host_map nor device_map is bad_gntref, not general_error.
  if (pinIncr === 0) return fail(op, GNTST_bad_gntref);
  if (ld.translated && (flags & (GNTMAP_device_map | GNTMAP_application_map | GNTMAP_contains_pte)) !== 0) {
    return fail(op, GNTST_general_error);
  }
  // By exact id: DOMID_SELF is not accepted (quirk §15.2).
  const rd = hv.domainById(op.dom);
  if (rd === undefined) return fail(op, GNTST_bad_domain);
  // XSM grant_mapref: the default policy allows every map.
  const lgt = ld.gt;
  const handle = lgt.maptrack.get(ld.currentVcpu);
  if (handle < 0) return fail(op, GNTST_no_space);

  const rgt = rd.gt;
  const ref = op.ref >>> 0;
  const pinned = pinForMap(hv, ld, rd, ref, readonly, pinIncr);
  if (pinned !== GNTST_okay) {
    lgt.maptrack.put(handle);
    return fail(op, pinned);
  }
  const act: ActiveEntry = rgt.activeEntry(ref);
  const mfn = pin.mfn;
  const pageRefTaken = pin.pageRefTaken;
  // Xen releases the active entry and rd's read lock here (pinForMap did): the
  // mapping is made without them, and the undo path below takes them again (XSA-501).
  hv.grantLockDropped?.('map_grant_ref', rd, ref);

  // References and the mapping itself (step 11). Every mapping holds a general
  // reference of its own: taken here unless H3 just took it.
  let refcnt = 0;
  let typecnt = 0;
  let hostMapCreated = false;
  let rc = GNTST_okay;
  if (pageRefTaken || hv.getPage(mfn, rd)) {
    refcnt = 1;
    if ((flags & GNTMAP_device_map) !== 0 && !readonly) {
      hv.getPageTypeWritable(mfn);
      typecnt++;
    }
    if ((flags & GNTMAP_host_map) !== 0) {
      if ((flags & GNTMAP_device_map) !== 0) {
        if (hv.getPage(mfn, rd)) refcnt++;
        else rc = GNTST_general_error;
      }
      if (rc === GNTST_okay && hostMappingTakesType(readonly, ld, rd)) {
        hv.getPageTypeWritable(mfn);
        typecnt++;
      }
      if (rc === GNTST_okay) {
        // A RAM page is mapped with no cache attributes: map_grant_ref hands the
        // entry's GTF_PAT|GTF_PWT|GTF_PCD only to an MMIO (dom_io) frame, and
        // this machine has no I/O memory.
        rc = createGrantHostMapping(hv, ld, pageOf(op.host_addr), mfn, flags, 0);
        hostMapCreated = rc === GNTST_okay;
      }
    }
  } else {
    // The page is no longer rd's ("could not pin").
    rc = GNTST_general_error;
  }

  if (rc !== GNTST_okay) {
    if (hostMapCreated) replaceGrantHostMapping(hv, ld, pageOf(op.host_addr), mfn, 0, flags);
    while (typecnt-- > 0) hv.putPageType(mfn);
    while (refcnt-- > 0) hv.putPage(mfn);
    rgt.lock.readLock();
    const actLock = act.lock;
    actLock.lock();
    try {
      act.pin = (act.pin - pinIncr) >>> 0;
      reduceStatusForPin(hv, rd, ref, act, readonly);
    } finally {
      actLock.unlock();
      rgt.lock.readUnlock();
    }
    lgt.maptrack.put(handle);
    return fail(op, rc);
  }

  // Publish the maptrack slot: domid and ref first, flags last.
  const mt = lgt.maptrack;
  mt.setDomid(handle, op.dom);
  mt.setRef(handle, ref);
  mt.setFlags(handle, flags & 0xffff);
  op.status = GNTST_okay;
  op.handle = handle;
  op.dev_bus_addr = mfn * XEN_PAGE_SIZE;
  return GNTST_okay;
}
