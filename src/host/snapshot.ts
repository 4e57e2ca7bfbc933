// A read-only snapshot of every grant table on a host, in the spirit of Xen's
// grant-table debug key ('g', gnttab_usage_print): per domain its version and
// frames, each entry in use (shared fields and the active entry), and the
// grantee side (live maptrack handles).
import {
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GTF_accept_transfer,
  GTF_PAT,
  GTF_PCD,
  GTF_PWT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transfer_committed,
  GTF_transfer_completed,
  GTF_transitive,
  GTF_type_mask,
  GTF_writing,
} from '../abi/flags.ts';
import type { Domain } from '../xen/domain.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';

export interface EntrySnapshot {
  ref: number;
  /** Shared entry, as the guest wrote it. */
  flags: number;
  flagNames: string[];
  domid: number;
  /** Frame (permit_access / accept_transfer); for transitive, the inner gref. */
  frame: number;
  transDomid?: number;
  subPage?: { offset: number; length: number };
  /** GTF_reading / GTF_writing (v1: in flags; v2: the status word). */
  status: number;
  /** The active entry, when pinned. */
  active?: {
    pin: number;
    pins: { hostWrite: number; hostRead: number; devWrite: number; devRead: number };
    grantee: number;
    mfn: number;
  };
}

export interface MappingSnapshot {
  handle: number;
  granter: number;
  ref: number;
  flags: string[];
}

/** One domain's grant table as the hypervisor holds it: version, entries in use, mappings. */
export interface TableSnapshot {
  domid: number;
  /** 'unknown' when read from Xen's own dump (`gnttab decode --xen-dmesg`), which does not print it. */
  kind: 'pv' | 'hvm' | 'unknown';
  dying: boolean;
  version: 1 | 2;
  frames: number;
  maxFrames: number;
  statusFrames: number;
  maptrackFrames: number;
  maxMaptrackFrames: number;
  entries: EntrySnapshot[];
  mappings: MappingSnapshot[];
}

export function flagNames(flags: number): string[] {
  const type = flags & GTF_type_mask;
  const out = [['invalid', 'permit_access', 'accept_transfer', 'transitive'][type]!];
  if (type === GTF_accept_transfer) {
    if (flags & GTF_transfer_committed) out.push('transfer_committed');
    if (flags & GTF_transfer_completed) out.push('transfer_completed');
  } else {
    if (flags & GTF_readonly) out.push('readonly');
    if (flags & GTF_reading) out.push('reading');
  }
  if (flags & GTF_writing) out.push('writing');
  if (flags & GTF_PWT) out.push('PWT');
  if (flags & GTF_PCD) out.push('PCD');
  if (flags & GTF_PAT) out.push('PAT');
  if (flags & GTF_sub_page) out.push('sub_page');
  return out;
}

function tableOf(hv: Hypervisor, d: Domain, all: boolean): TableSnapshot {
  const gt = d.gt;
  const w = hv.machine.words;
  const entries: EntrySnapshot[] = [];
  const n = d.isDying && gt.shared.length === 0 ? 0 : gt.nrGrantEntries();
  for (let ref = 0; ref < n; ref++) {
    const a = gt.shaAddr(ref);
    const flags = w.load16(a);
    const act = gt.activeEntryIfAny(ref);
    const pinned = act !== undefined && act.pin !== 0;
    if (!all && (flags & GTF_type_mask) === 0 && !pinned) continue;
    const e: EntrySnapshot = {
      ref,
      flags,
      flagNames: flagNames(flags),
      domid: w.load16(a + 2),
      frame: gt.version === 1 ? w.load32(a + 4) : w.load32(a + 8) + w.load32(a + 12) * 0x1_0000_0000,
      status: w.load16(gt.statusAddr(ref)) & (GTF_reading | GTF_writing),
    };
    if (gt.version === 2 && (flags & GTF_type_mask) === GTF_transitive) {
      e.transDomid = w.load16(a + 4);
      e.frame = w.load32(a + 8);
    }
    if (gt.version === 2 && (flags & GTF_type_mask) === GTF_permit_access && (flags & GTF_sub_page) !== 0) {
      e.subPage = { offset: w.load16(a + 4), length: w.load16(a + 6) };
    }
    if (pinned) {
      e.active = {
        pin: act.pin,
        pins: {
          hostWrite: act.pin & 0xff,
          hostRead: (act.pin >>> 8) & 0xff,
          devWrite: (act.pin >>> 16) & 0xff,
          devRead: act.pin >>> 24,
        },
        grantee: act.domid,
        mfn: act.mfn,
      };
    }
    entries.push(e);
  }
  const mt = gt.maptrack;
  const mappings: MappingSnapshot[] = [];
  for (let h = 0; h < mt.limit; h++) {
    const f = mt.flags(h);
    if (f === 0) continue;
    const names: string[] = [];
    if (f & GNTMAP_host_map) names.push('host_map');
    if (f & GNTMAP_device_map) names.push('device_map');
    if (f & GNTMAP_readonly) names.push('readonly');
    mappings.push({ handle: h, granter: mt.domid(h), ref: mt.ref(h), flags: names });
  }
  return {
    domid: d.domid,
    kind: d.kind,
    dying: d.isDying,
    version: gt.version,
    frames: gt.nrGrantFrames,
    maxFrames: gt.maxGrantFrames,
    statusFrames: gt.nrStatusFrames,
    maptrackFrames: mt.nrFrames,
    maxMaptrackFrames: mt.maxFrames,
    entries,
    mappings,
  };
}

/** Every domain's grant table; `all` includes unused entries. */
export function snapshotTables(hv: Hypervisor, all = false): TableSnapshot[] {
  return [...hv.domains.values()].map((d) => tableOf(hv, d, all));
}
