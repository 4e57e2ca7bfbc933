// gnttab_release_mappings (reference §12): when a grantee dies, every live
// maptrack slot is unpinned at its granter, highest handle first.
import { GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly } from '../abi/flags.ts';
import { GNTPIN_devr_inc, GNTPIN_devw_inc, GNTPIN_hstr_inc, GNTPIN_hstw_inc } from '../abi/limits.ts';
import type { ActiveEntry } from './active-entry.ts';
import type { Domain } from './domain.ts';
import { reduceStatusForPin } from './helpers.ts';
import type { Hypervisor } from './hypervisor.ts';

export function releaseMappings(hv: Hypervisor, d: Domain): void {
  // d is paused (its thread is out of Xen for good), so only this thread
  // touches its maptrack; each granter's entry is changed under the
  // granter's read lock and the entry's lock, in that order, as unmap does:
  // other threads may be mapping, copying or unmapping the same grants.
  const mt = d.gt.maptrack;
  for (let handle = mt.limit - 1; handle >= 0; handle--) {
    const flags = mt.flags(handle);
    if ((flags & (GNTMAP_device_map | GNTMAP_host_map)) === 0) continue;
    const rd = hv.domainById(mt.domid(handle));
    const ref = mt.ref(handle);
    mt.setFlags(handle, 0);
    if (rd === undefined) continue;
    const rgt = rd.gt;
    rgt.lock.readLock();
    try {
      // No re-check of ref against the bound in Xen: this slot's pin kept
      // set_version from shrinking the table under it.
      if (ref >= rgt.nrGrantEntries()) continue;
      const act = rgt.activeEntry(ref);
      act.lock.lock();
      try {
        releaseOne(hv, d, rd, ref, act, flags);
      } finally {
        act.lock.unlock();
      }
    } finally {
      rgt.lock.readUnlock();
    }
  }
}

/** One slot's pins and references, under rd's read lock and the entry's lock. */
function releaseOne(
  hv: Hypervisor,
  d: Domain,
  rd: Domain,
  ref: number,
  act: ActiveEntry,
  flags: number,
): void {
  const readonly = (flags & GNTMAP_readonly) !== 0;
  const mfn = act.mfn;
  let puts = 0;
  let typePuts = 0;
  if ((flags & GNTMAP_device_map) !== 0) {
    act.pin = (act.pin - (readonly ? GNTPIN_devr_inc : GNTPIN_devw_inc)) >>> 0;
    puts++;
    if (!readonly) typePuts++;
  }
  if ((flags & GNTMAP_host_map) !== 0) {
    act.pin = (act.pin - (readonly ? GNTPIN_hstr_inc : GNTPIN_hstw_inc)) >>> 0;
    // A PV grantee's host references stay with its grant PTEs, dropped when
    // its page tables are torn down; a translated grantee's go now.
    if (d.translated) {
      puts++;
      if (!readonly && (d === rd || !rd.translated)) typePuts++;
    }
  }
  reduceStatusForPin(hv, rd, ref, act, readonly);
  while (typePuts-- > 0) hv.putPageType(mfn);
  while (puts-- > 0) hv.putPage(mfn);
}
