// XENMEM_acquire_resource (xen/common/memory.c acquire_resource) for
// XENMEM_resource_grant_table (grant_table.c gnttab_resource_max_frames,
// gnttab_acquire_resource): the control domain obtains another domain's grant
// or status frames, as toolstacks do to seed GNTTAB_RESERVED_CONSOLE and
// GNTTAB_RESERVED_XENSTORE. A PV caller gets their MFNs in frame_list and maps
// them with update_va_mapping_otherdomain; a translated caller names GFNs in
// frame_list and gets the frames placed there as foreign mappings.
// The other resource types (ioreq servers, vmtrace buffers) answer as a build
// without CONFIG_IOREQ_SERVER / CONFIG_VMTRACE: a size of 0, so -EINVAL.
import {
  MEMOP_EXTENT_SHIFT,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_EIO,
  XEN_EPERM,
  XEN_ESRCH,
  XENMEM_resource_grant_table,
  XENMEM_resource_grant_table_id_shared,
  XENMEM_resource_grant_table_id_status,
} from '../abi/hypercall.ts';
import { statusFramesFor } from '../abi/limits.ts';
import { xen_mem_acquire_resource } from '../abi/memory-op.ts';
import type { Domain } from './domain.ts';
import { setForeignP2mEntry } from './foreign-mapping.ts';
import { getSharedFrameMfn, getStatusFrameMfn } from './gnttab-frame.ts';
import { copyFieldToGuest, copyStructFromGuest } from './guest-io.ts';
import type { Hypervisor } from './hypervisor.ts';

const TWO32 = 0x1_0000_0000;
/** Frames per batch (acquire_resource's mfn_list on the stack). */
export const ACQUIRE_RESOURCE_BATCH = 32;

/**
 * resource_max_frames: the size of a resource, 0 when there is none (the
 * caller turns 0 into -EINVAL). The status frames count whatever the current
 * layout: the size is fixed at domain creation.
 */
export function resourceMaxFrames(d: Domain, type: number, id: number): number {
  if (type !== XENMEM_resource_grant_table) return 0;
  switch (id) {
    case XENMEM_resource_grant_table_id_shared:
      return d.gt.maxGrantFrames;
    case XENMEM_resource_grant_table_id_status:
      return statusFramesFor(d.gt.maxGrantFrames);
    default:
      return 0;
  }
}

/**
 * gnttab_acquire_resource: the MFNs of frames [frame, frame + nr) of the
 * shared or (v2 only) status frames, growing the table so the last one
 * exists. Returns nr, or -EINVAL (bad id, v1 status, beyond the maximum).
 * The lookup, the growth and the read-out are under the table's write lock;
 * no reference is taken (the caller's mapping takes one, and must cope with
 * a frame freed meanwhile: set_foreign_p2m_entry's -EBUSY).
 */
export function gnttabAcquireResource(
  hv: Hypervisor,
  d: Domain,
  id: number,
  frame: number,
  nr: number,
  mfns: number[],
): number {
  if (nr === 0) return -XEN_EINVAL;
  const lock = d.gt.lock;
  lock.writeLock();
  try {
    return acquireLocked(hv, d, id, frame, nr, mfns);
  } finally {
    lock.writeUnlock();
  }
}

function acquireLocked(
  hv: Hypervisor,
  d: Domain,
  id: number,
  frame: number,
  nr: number,
  mfns: number[],
): number {
  const finalFrame = frame + nr - 1;
  let frames: readonly number[];
  let rc: number;
  if (id === XENMEM_resource_grant_table_id_shared) {
    rc = getSharedFrameMfn(hv, d, finalFrame);
    frames = d.gt.shared.toArray();
  } else if (id === XENMEM_resource_grant_table_id_status && d.gt.version === 2) {
    rc = getStatusFrameMfn(hv, d, finalFrame);
    frames = d.gt.status.toArray();
  } else {
    return -XEN_EINVAL;
  }
  if (rc < 0) return rc;
  for (let i = 0; i < nr; i++) mfns.push(frames[frame + i]!);
  return nr;
}

export function acquireResource(hv: Hypervisor, currd: Domain, arg: number, startExtent: number): number {
  // arch_acquire_resource_check (x86): a PV caller, or a translated one
  // without altp2m or nested HVM, which this model has not: always passes.
  const xmar = copyStructFromGuest(hv, currd, arg, xen_mem_acquire_resource);
  if (xmar === null) return -XEN_EFAULT;
  if (xmar.pad !== 0) return -XEN_EINVAL;
  // frame is 64 bits, nr_frames 32: reject a frame, or a range end, beyond 32 bits.
  if (xmar.frame >= TWO32 || xmar.frame + xmar.nr_frames >= TWO32) return -XEN_EINVAL;
  // rcu_lock_remote_domain_by_id: an exact id (DOMID_SELF finds nothing), never the caller.
  const d = hv.domainById(xmar.domid);
  if (d === undefined) return -XEN_ESRCH;
  if (d === currd) return -XEN_EPERM;
  // xsm_domain_resource_map(XSM_DM_PRIV): a device model for d (none here) or the control domain.
  if (currd.domid !== 0) return -XEN_EPERM;
  const maxFrames = resourceMaxFrames(d, xmar.type, xmar.id);
  if (maxFrames === 0) return -XEN_EINVAL;
  if (xmar.frame_list === 0) {
    // The size query.
    if (xmar.nr_frames !== 0 || startExtent !== 0) return -XEN_EINVAL;
    return copyFieldToGuest(hv, currd, arg, xen_mem_acquire_resource, 'nr_frames', maxFrames)
      ? 0
      : -XEN_EFAULT;
  }
  // The start extent of a continuation lives in cmd's upper bits, so nr_frames is bounded.
  if (startExtent >= xmar.nr_frames || xmar.nr_frames > 0xffffffff >>> MEMOP_EXTENT_SHIFT) return -XEN_EINVAL;
  let left = xmar.nr_frames - startExtent;
  let frame = xmar.frame + startExtent;
  let list = xmar.frame_list + startExtent * 8;
  // Batches of 32. Xen may stop between batches with a continuation; this
  // model never preempts a hypercall, so the batches run to the end.
  while (left > 0) {
    const batch = Math.min(ACQUIRE_RESOURCE_BATCH, left);
    const mfns: number[] = [];
    const done = gnttabAcquireResource(hv, d, xmar.id, frame, batch, mfns);
    if (done < 0) return done;
    if (!currd.translated) {
      if (!hv.copyToGuest(currd, list, u64Array(mfns))) return -XEN_EFAULT;
    } else {
      const bytes = hv.copyFromGuest(currd, list, done * 8);
      if (bytes === null) return -XEN_EFAULT;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < done; i++) {
        const gfn = view.getUint32(i * 8, true) + view.getUint32(i * 8 + 4, true) * TWO32;
        // set_foreign_p2m_entry: p2m_set_entry under the caller's P2M lock,
        // taken after d's table lock is dropped (never the two at once here).
        currd.p2mLock.writeLock();
        let rc: number;
        try {
          rc = setForeignP2mEntry(hv, currd, d, gfn, mfns[i]!);
        } finally {
          currd.p2mLock.writeUnlock();
        }
        // Only the first failure of a batch says why; later ones are -EIO.
        if (rc !== 0) return i === 0 ? rc : -XEN_EIO;
      }
    }
    left -= done;
    frame += done;
    list += done * 8;
  }
  return 0;
}

function u64Array(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    view.setUint32(i * 8, v % TWO32, true);
    view.setUint32(i * 8 + 4, Math.floor(v / TWO32), true);
  });
  return out;
}
