// GNTTABOP_unmap_grant_ref and GNTTABOP_unmap_and_replace (reference §6.2, §6.3).
// Phase 1 (unmapCommon) tears down mappings and frees the handle; after the
// TLB flush, phase 2 (unmapComplete) drops page references and pins and clears
// the status bits, so the granter never sees an entry free while a stale
// translation could still reach it.

import { GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly } from '../../abi/flags.ts';
import {
  GNTPIN_devr_inc,
  GNTPIN_devw_inc,
  GNTPIN_hstr_inc,
  GNTPIN_hstw_inc,
  XEN_PAGE_SIZE,
} from '../../abi/limits.ts';
import { GNTST_bad_dev_addr, GNTST_bad_handle, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { ActiveEntry } from '../active-entry.ts';
import type { Domain } from '../domain.ts';
import { reduceStatusForPin } from '../helpers.ts';
import { pageOf, replaceGrantHostMapping } from '../host-mapping.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { hostMappingTakesType } from './map-grant-ref.ts';

export interface UnmapCommon {
  hostAddr: number;
  devBusAddr: number;
  newAddr: number;
  handle: number;
  status: number;
  /** Filled by phase 1 for phase 2. */
  rd: Domain | null;
  ref: number;
  mfn: number;
  done: number;
}

/** A record for unmapCommon to fill: a batch keeps a set of them and reuses them (see setUnmapCommon). */
export function newUnmapCommon(): UnmapCommon {
  return {
    hostAddr: 0,
    devBusAddr: 0,
    newAddr: 0,
    handle: 0,
    status: GNTST_okay,
    rd: null,
    ref: 0,
    mfn: 0,
    done: 0,
  };
}

/** Readies `op` for one element, as a fresh record (nothing of the last element stays). */
export function setUnmapCommon(
  op: UnmapCommon,
  hostAddr: number,
  devBusAddr: number,
  newAddr: number,
  handle: number,
): UnmapCommon {
  op.hostAddr = hostAddr;
  op.devBusAddr = devBusAddr;
  op.newAddr = newAddr;
  op.handle = handle;
  op.status = GNTST_okay;
  op.rd = null;
  op.ref = 0;
  op.mfn = 0;
  op.done = 0;
  return op;
}

/** Phase 1. */
export function unmapCommon(hv: Hypervisor, ld: Domain, op: UnmapCommon): void {
  const mt = ld.gt.maptrack;
  const handle = op.handle >>> 0;
  if (handle >= mt.limit) {
    op.status = GNTST_bad_handle;
    return;
  }
  const flags = mt.flags(handle);
  if (flags === 0) {
    op.status = GNTST_bad_handle;
    return;
  }
  const rd = hv.domainById(mt.domid(handle));
  if (rd === undefined) {
    // Quirk §15.5: the granter is gone (the mapping was implicitly unmapped): Xen crashes the caller.
    hv.crashDomain(ld, `unmap of handle ${handle}: granting domain ${mt.domid(handle)} no longer exists`);
    op.status = GNTST_general_error;
    return;
  }
  // XSM grant_unmapref: the default policy allows it.
  const ref = mt.ref(handle);
  const rgt = rd.gt;
  // Lock order: rd's table, then the entry; both go before phase 2.
  rgt.lock.readLock();
  try {
    if (ref >= rgt.nrGrantEntries()) {
      op.status = GNTST_bad_handle;
      return;
    }
    const act = rgt.activeEntry(ref);
    const actLock = act.lock;
    actLock.lock();
    try {
      unmapLocked(hv, ld, op, handle, flags, rd, ref, act);
    } finally {
      actLock.unlock();
    }
  } finally {
    rgt.lock.readUnlock();
  }
}

/** Phase 1 under rd's read lock and the entry's lock: the mapping goes, then the handle. */
function unmapLocked(
  hv: Hypervisor,
  ld: Domain,
  op: UnmapCommon,
  handle: number,
  flags: number,
  rd: Domain,
  ref: number,
  act: ActiveEntry,
): void {
  const mt = ld.gt.maptrack;
  op.rd = rd;
  op.ref = ref;
  op.mfn = act.mfn;
  if (op.devBusAddr !== 0 && (flags & GNTMAP_device_map) !== 0 && op.devBusAddr !== act.mfn * XEN_PAGE_SIZE) {
    op.status = GNTST_bad_dev_addr;
    return;
  }
  if (op.hostAddr !== 0 && (flags & GNTMAP_host_map) !== 0) {
    // A mapping holds a reference that keeps its frame rd's. A frame that is no
    // longer rd's means this handle's PTE went in an implicit unmap (quirk §15.19)
    // and the page was given away since: a PTE that maps it now belongs to some
    // other mapping, whose references are not this grant's to drop (XSA-234).
    const rc =
      Atomics.load(hv.frames.owner, op.mfn) !== rd.domid
        ? GNTST_general_error
        : replaceGrantHostMapping(hv, ld, pageOf(op.hostAddr), op.mfn, op.newAddr, flags);
    if (rc !== GNTST_okay) {
      op.status = rc;
      return;
    }
    mt.setFlags(handle, mt.flags(handle) & ~GNTMAP_host_map);
    op.done |= GNTMAP_host_map | (flags & GNTMAP_readonly);
  }
  if (op.devBusAddr !== 0 && (flags & GNTMAP_device_map) !== 0) {
    mt.setFlags(handle, mt.flags(handle) & ~GNTMAP_device_map);
    op.done |= GNTMAP_device_map | (flags & GNTMAP_readonly);
  }
  // The handle is freed in phase 1, so a racing unmap of it sees bad_handle (XSA-218).
  if ((mt.flags(handle) & (GNTMAP_device_map | GNTMAP_host_map)) === 0) {
    mt.setFlags(handle, 0);
    mt.put(handle);
  }
  op.status = GNTST_okay;
}

/** Phase 2, after the caller's TLB flush. */
export function unmapComplete(hv: Hypervisor, ld: Domain, op: UnmapCommon): void {
  const rd = op.rd;
  if (op.done === 0 || rd === null) return;
  const rgt = rd.gt;
  rgt.lock.readLock();
  try {
    const act = rgt.activeEntry(op.ref);
    const actLock = act.lock;
    actLock.lock();
    try {
      completeLocked(hv, ld, op, rd, act);
    } finally {
      actLock.unlock();
    }
  } finally {
    rgt.lock.readUnlock();
  }
}

/**
 * Phase 2 under rd's read lock and the entry's lock (unmap_common_complete):
 * the pins and the status, then the references, all or nothing.
 */
function completeLocked(hv: Hypervisor, ld: Domain, op: UnmapCommon, rd: Domain, act: ActiveEntry): void {
  const readonly = (op.done & GNTMAP_readonly) !== 0;
  const mfn = op.mfn;
  const device = (op.done & GNTMAP_device_map) !== 0;
  const host = (op.done & GNTMAP_host_map) !== 0;
  if (device) act.pin = (act.pin - (readonly ? GNTPIN_devr_inc : GNTPIN_devw_inc)) >>> 0;
  if (host) act.pin = (act.pin - (readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc)) >>> 0;
  reduceStatusForPin(hv, rd, op.ref, act, readonly);
  // Unpinned first, then the page references go: the last one may free the
  // page, and with it a dying granter.
  if (device) {
    if (!readonly) hv.putPageType(mfn);
    hv.putPage(mfn);
  }
  if (host) {
    if (hostMappingTakesType(readonly, ld, rd)) hv.putPageType(mfn);
    hv.putPage(mfn);
  }
}
