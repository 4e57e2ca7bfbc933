// GNTTABOP_set_version (reference §6.9, §7): switch the caller's own table
// between layouts v1 and v2. Entries from ref 8 up are zeroed, reserved entries
// 0-7 are converted, status frames are allocated (v1 -> v2) or released (v2 -> v1).
import {
  GTF_permit_access,
  GTF_reading,
  GTF_transitive,
  GTF_type_mask,
  GTF_writing,
} from '../../abi/flags.ts';
import { gnttab_set_version } from '../../abi/gnttab-ops.ts';
import { grant_entry_v1, grant_entry_v2_full_page } from '../../abi/grant-entry.ts';
import {
  XEN_EAGAIN,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_ERANGE,
} from '../../abi/hypercall.ts';
import { GNTTAB_NR_RESERVED_ENTRIES } from '../../abi/limits.ts';
import type { Domain } from '../domain.ts';
import { NO_GFN } from '../grant-table.ts';
import { copyStructFromGuest, copyStructToGuest } from '../guest-io.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { readU64 } from '../shared-entry.ts';

const V1 = grant_entry_v1.fields;
const V2 = grant_entry_v2_full_page.fields;

interface ReservedEntry {
  flags: number;
  domid: number;
  frame: number;
}

export function setVersion(hv: Hypervisor, ld: Domain, uop: number): number {
  const op = copyStructFromGuest(hv, ld, uop, gnttab_set_version);
  if (op === null) return -XEN_EFAULT;
  // gnttab_set_version: the whole change under the table's write lock, which
  // excludes every map, unmap and copy holding its read lock.
  ld.gt.lock.writeLock();
  let res: number;
  try {
    res = changeVersion(hv, ld, op.version);
  } finally {
    ld.gt.lock.writeUnlock();
  }
  // In every case the version now in effect is written back.
  op.version = ld.gt.version;
  return copyStructToGuest(hv, ld, uop, gnttab_set_version, op) ? res : -XEN_EFAULT;
}

function changeVersion(hv: Hypervisor, d: Domain, version: number): number {
  const gt = d.gt;
  if (version !== 1 && version !== 2) return -XEN_EINVAL;
  if (version === 2 && gt.maxVersion === 1) return -XEN_ENOSYS;
  if (version === gt.version) return 0;
  // Reserved refs 0-7 may stay pinned (xenstored and xenconsoled keep them mapped across kexec).
  const n = gt.nrGrantEntries();
  for (let ref = GNTTAB_NR_RESERVED_ENTRIES; ref < n; ref++) {
    if (gt.activeEntry(ref).pin !== 0) return -XEN_EBUSY;
  }
  const w = hv.machine.words;
  const reserved: ReservedEntry[] = [];
  if (gt.version === 1) {
    if (!hv.populateStatusFrames(d)) return -XEN_ENOMEM;
    for (let ref = 0; ref < GNTTAB_NR_RESERVED_ENTRIES; ref++) {
      const a = gt.shaAddr(ref);
      reserved.push({
        flags: w.load16(a + V1.flags.offset),
        domid: w.load16(a + V1.domid.offset),
        frame: w.load32(a + V1.frame.offset),
      });
    }
  } else {
    if (gt.nrV2Ops !== 0) return -XEN_EAGAIN;
    for (let ref = 0; ref < GNTTAB_NR_RESERVED_ENTRIES; ref++) {
      const a = gt.shaAddr(ref);
      const type = w.load16(a) & GTF_type_mask;
      if (
        type === GTF_transitive ||
        (type === GTF_permit_access && readU64(hv, a + V2.frame.offset) >= 0x1_0000_0000)
      ) {
        return -XEN_ERANGE;
      }
    }
    for (let ref = 0; ref < GNTTAB_NR_RESERVED_ENTRIES; ref++) {
      const a = gt.shaAddr(ref);
      const flags = w.load16(a);
      if ((flags & GTF_type_mask) === GTF_permit_access) {
        reserved.push({
          flags: flags | w.load16(gt.statusAddr(ref)),
          domid: w.load16(a + V2.domid.offset),
          frame: readU64(hv, a + V2.frame.offset),
        });
      } else {
        // Invalid entries, and (with a log line in Xen) accept_transfer ones, become 0.
        reserved.push({ flags: 0, domid: 0, frame: 0 });
      }
    }
    const rc = unpopulateStatusFrames(hv, d);
    if (rc !== 0) return rc;
  }
  for (const mfn of gt.shared) hv.machine.zeroFrame(mfn);
  // Write the reserved entries back in the new layout, then switch.
  gt.version = version;
  for (let ref = 0; ref < GNTTAB_NR_RESERVED_ENTRIES; ref++) {
    const e = reserved[ref]!;
    const a = gt.shaAddr(ref);
    if (version === 1) {
      w.store32(a + V1.frame.offset, e.frame);
      // flags and domid in one store (the header word), last.
      w.store32(a + V1.flags.offset, (e.flags | (e.domid << 16)) >>> 0);
    } else {
      // Blind to the type: an accept_transfer entry's GTF_transfer_completed (the
      // GTF_reading bit) moves into the status word too (reference §7).
      w.store16(gt.statusAddr(ref), e.flags & (GTF_reading | GTF_writing));
      w.store32(a + V2.frame.offset, e.frame);
      w.store32(a + V2.frame.offset + 4, 0);
      w.store32(a + V2.flags.offset, ((e.flags & ~(GTF_reading | GTF_writing)) | (e.domid << 16)) >>> 0);
    }
  }
  return 0;
}

/**
 * v2 -> v1: releases the status frames. A translated domain's frames leave its
 * P2M first. A frame still referenced beyond its allocation (a PV guest still
 * maps it) makes the switch fail with -EBUSY and nothing changes (XSA-255/387).
 */
function unpopulateStatusFrames(hv: Hypervisor, d: Domain): number {
  const gt = d.gt;
  if (d.p2m !== null) {
    // guest_physmap_remove_page: the P2M lock inside the table's write lock
    // (the order xenmem_add_to_physmap_one takes them in, XSA-486).
    const p2m = d.p2m;
    d.p2mLock.writeLock();
    try {
      for (let i = 0; i < gt.status.length; i++) {
        const gfn = gt.statusGfn.load(i);
        if (gfn !== NO_GFN) p2m.delete(gfn);
        gt.statusGfn.store(i, NO_GFN);
      }
    } finally {
      d.p2mLock.writeUnlock();
    }
  }
  // put_page_alloc_ref, then the count check: the allocation reference goes
  // only where it is the last one, in one compare-exchange, so a reference
  // another thread takes meanwhile (dom0's update_va_mapping_otherdomain of an
  // MFN it got by XENMEM_acquire_resource, which runs beside this) either
  // came first, and the switch is refused with every frame as it was, or
  // finds the count at 0 and fails (-EBUSY there). A check of the count
  // before a separate put would let such a mapping keep a freed status frame.
  const frames = gt.status.toArray();
  for (let i = 0; i < frames.length; i++) {
    if (hv.frames.dropLastRef(frames[i]!)) continue;
    for (let j = 0; j < i; j++) hv.frames.restoreLastRef(frames[j]!);
    if (d.translated) hv.crashDomain(d, 'status frame still in use on v2 -> v1');
    return -XEN_EBUSY;
  }
  for (const mfn of frames) hv.releaseXenHeapFrameAtZero(mfn);
  gt.status.clear();
  gt.statusGfn.clear();
  return 0;
}
