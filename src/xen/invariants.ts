// The cross-cutting invariants of security-advisories.md, checked over a whole
// hypervisor between hypercalls. Returns a list of violations (empty: all hold).
import {
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GTF_accept_transfer,
  GTF_reading,
  GTF_type_mask,
  GTF_writing,
} from '../abi/flags.ts';
import { _PAGE_PRESENT, _PAGE_RW } from '../abi/hypercall.ts';
import {
  GNTPIN_devr_inc,
  GNTPIN_devw_inc,
  GNTPIN_devw_mask,
  GNTPIN_hstr_inc,
  GNTPIN_hstw_inc,
  GNTPIN_hstw_mask,
} from '../abi/limits.ts';
import { checkEventChannels } from './event-channel.ts';
import { OWNER_NONE, OWNER_XEN, PGC_allocated, PGC_xen_heap } from './frame-table.ts';
import type { Hypervisor } from './hypervisor.ts';
import { isForeignP2m, isGrantP2m, pteFlags, pteFrame } from './paging.ts';

/** Options of the invariant check (Host.checkInvariants): which cross-cutting rules to skip. */
export interface InvariantOptions {
  /**
   * Check that GTF_reading/GTF_writing match the pins (invariant 1). Only
   * meaningful while guests leave Xen's bits alone: a v1 guest can write its own
   * flags word, so tests that scribble on grant frames turn this off.
   */
  statusBits?: boolean;
}

export function checkInvariants(hv: Hypervisor, o: InvariantOptions = {}): string[] {
  const out: string[] = [];
  const f = hv.frames;
  const w = hv.machine.words;
  for (const e of hv.internalErrors)
    out.push(`hypervisor internal error: ${e instanceof Error ? e.stack : String(e)}`);

  // Expected references per frame, rebuilt from every holder.
  const refs = new Int32Array(f.nrFrames);
  const types = new Int32Array(f.nrFrames);
  // Expected pins per (granter, ref), from maptrack slots.
  const pins = new Map<string, { pin: number; grantee: number }>();

  for (let mfn = 0; mfn < f.nrFrames; mfn++) {
    const owner = f.owner[mfn]!;
    if (owner === OWNER_NONE) {
      if (f.count[mfn] !== 0) out.push(`free frame ${mfn} has count ${f.count[mfn]}`);
      if (f.listOf[mfn] !== 0) out.push(`free frame ${mfn} is still on a list (tag ${f.listOf[mfn]})`);
      continue;
    }
    if (f.count[mfn]! <= 0) out.push(`allocated frame ${mfn} (owner ${owner}) has count ${f.count[mfn]}`);
    if (owner === OWNER_XEN) {
      refs[mfn] = f.count[mfn]!;
      continue;
    }
    const d = hv.domains.get(owner);
    if (d === undefined) {
      out.push(`frame ${mfn} owned by a domain ${owner} that no longer exists`);
      continue;
    }
    if ((f.flags[mfn]! & PGC_xen_heap) !== 0) {
      refs[mfn]! += 1;
      types[mfn]! += 1;
      if (!d.gt.shared.includes(mfn) && !d.gt.status.includes(mfn) && mfn !== d.sharedInfoMfn)
        out.push(`xen-heap frame ${mfn} of d${owner} is neither in its grant table nor its shared-info page`);
    } else {
      if ((f.flags[mfn]! & PGC_allocated) !== 0) refs[mfn]! += 1;
      if (!d.owned.has(mfn)) out.push(`frame ${mfn} owned by d${owner} missing from its page list`);
    }
  }

  for (const d of hv.domains.values()) {
    let listed = 0;
    for (const mfn of d.owned) {
      listed++;
      if (f.owner[mfn] !== d.domid) out.push(`d${d.domid} lists frame ${mfn} it does not own`);
    }
    if (listed !== d.owned.size)
      out.push(`d${d.domid}'s page list holds ${listed} frames, tot_pages says ${d.owned.size}`);
    if (d.totReserved < 0) out.push(`d${d.domid} has ${d.totReserved} reserved tot_pages slots`);
    if (d.isDying && d.totPages === 0 && !hv.xenHeapFramesInUse(d))
      out.push(`dying d${d.domid} has no pages left but was not finalised`);
    // Address space entries never point at freed frames (invariant 4).
    if (d.pt !== null) {
      for (const [vpn, pte] of d.pt.entries()) {
        if ((pte & _PAGE_PRESENT) === 0) continue;
        const mfn = pteFrame(pte);
        if (!f.isValid(mfn) || f.owner[mfn] === OWNER_NONE) {
          out.push(`d${d.domid} PTE of page ${vpn} maps freed frame ${mfn}`);
          continue;
        }
        refs[mfn]! += 1;
        const rw = (pteFlags(pte) & _PAGE_RW) !== 0;
        // put_page_from_l1e's rule: no type reference for another translated domain's frame.
        const rd = hv.domains.get(f.owner[mfn]!);
        if (rw && (rd === d || (rd !== undefined && !rd.translated))) types[mfn]! += 1;
      }
    } else {
      const placed = new Map<number, number>();
      for (const [gfn, e] of d.p2m!.entries()) {
        const mfn = Math.floor(e / 8);
        const type = e % 8;
        if (!f.isValid(mfn) || f.owner[mfn] === OWNER_NONE) {
          out.push(`d${d.domid} P2M gfn ${gfn} maps freed frame ${mfn}`);
          continue;
        }
        if (isForeignP2m(type)) {
          // A foreign mapping holds a general reference (p2m_entry_modify), no type.
          refs[mfn]! += 1;
          if (f.owner[mfn] === d.domid)
            out.push(`d${d.domid} P2M gfn ${gfn}: a foreign mapping of its own frame`);
        } else if (!isGrantP2m(type)) placed.set(mfn, (placed.get(mfn) ?? 0) + 1);
      }
      // Each grant/status frame at no more than one GFN (invariant 5), and where the table says.
      for (const [list, gfns, what] of [
        [d.gt.shared, d.gt.sharedGfn, 'shared'],
        [d.gt.status, d.gt.statusGfn, 'status'],
      ] as const) {
        list.toArray().forEach((mfn, i) => {
          const n = placed.get(mfn) ?? 0;
          const recorded = gfns.get(i);
          if (n > 1) out.push(`d${d.domid} ${what} frame ${i} is mapped at ${n} GFNs`);
          if ((recorded === -1) !== (n === 0))
            out.push(`d${d.domid} ${what} frame ${i}: recorded GFN ${recorded}, mapped ${n} times`);
          else if (recorded !== -1 && d.p2m!.get(recorded)?.mfn !== mfn)
            out.push(`d${d.domid} ${what} frame ${i} not at its GFN`);
        });
      }
      // The shared-info page likewise (XENMAPSPACE_shared_info).
      if (d.sharedInfoMfn >= 0) {
        const n = placed.get(d.sharedInfoMfn) ?? 0;
        const recorded = d.sharedInfoGfn;
        if (n > 1) out.push(`d${d.domid} shared-info page is mapped at ${n} GFNs`);
        if ((recorded === -1) !== (n === 0))
          out.push(`d${d.domid} shared-info page: recorded GFN ${recorded}, mapped ${n} times`);
        else if (recorded !== -1 && d.p2m!.get(recorded)?.mfn !== d.sharedInfoMfn)
          out.push(`d${d.domid} shared-info page not at its GFN`);
      }
    }
    // Maptrack slots and the references of their mappings (invariant 2).
    const mt = d.gt.maptrack;
    for (let h = 0; h < mt.limit; h++) {
      const fl = mt.flags(h);
      if (fl === 0) continue;
      if ((fl & (GNTMAP_host_map | GNTMAP_device_map)) === 0)
        out.push(`d${d.domid} handle ${h} is live with no mapping`);
      const rd = hv.domains.get(mt.domid(h));
      if (rd === undefined) continue; // the granter is gone: an unmap of this handle crashes d (quirk §15.5)
      const ref = mt.ref(h);
      const ro = (fl & GNTMAP_readonly) !== 0;
      let inc = 0;
      if ((fl & GNTMAP_device_map) !== 0) inc += ro ? GNTPIN_devr_inc : GNTPIN_devw_inc;
      if ((fl & GNTMAP_host_map) !== 0) inc += ro ? GNTPIN_hstr_inc : GNTPIN_hstw_inc;
      const key = `${rd.domid}:${ref}`;
      const p = pins.get(key) ?? { pin: 0, grantee: d.domid };
      if (p.grantee !== d.domid)
        out.push(`d${rd.domid} ref ${ref} mapped by both d${p.grantee} and d${d.domid}`);
      p.pin += inc;
      pins.set(key, p);
      const act = rd.gt.activeEntryIfAny(ref);
      if (act === undefined) {
        out.push(`d${d.domid} handle ${h} names d${rd.domid} ref ${ref} beyond its table`);
        continue;
      }
      const mfn = act.mfn;
      if ((fl & GNTMAP_device_map) !== 0) {
        refs[mfn]! += 1;
        if (!ro) types[mfn]! += 1;
      }
      if ((fl & GNTMAP_host_map) !== 0 && d.translated) {
        refs[mfn]! += 1;
        if (!ro && (rd === d || !rd.translated)) types[mfn]! += 1;
      }
    }
  }

  // Pins match maptrack (copy pins only exist inside a hypercall), status bits match pins.
  for (const rd of hv.domains.values()) {
    const gt = rd.gt;
    const n = gt.nrGrantEntries();
    let subPagePins = 0;
    for (let ref = 0; ref < gt.nrActive; ref++) {
      const act = gt.activeEntry(ref);
      const expect = pins.get(`${rd.domid}:${ref}`);
      if (act.pin !== (expect?.pin ?? 0)) {
        out.push(
          `d${rd.domid} ref ${ref}: pin ${act.pin.toString(16)} but maptrack accounts for ${(expect?.pin ?? 0).toString(16)}`,
        );
      }
      if (act.pin !== 0 && expect !== undefined && act.domid !== expect.grantee) {
        out.push(`d${rd.domid} ref ${ref}: pinned for d${act.domid} but mapped by d${expect.grantee}`);
      }
      if (act.pin !== 0 && act.isSubPage) subPagePins++;
      if (o.statusBits === false || ref >= n || rd.isDying) continue;
      const sha = gt.shaAddr(ref);
      const type = w.load16(sha) & GTF_type_mask;
      const st = w.load16(gt.statusAddr(ref));
      if (act.pin === 0 && type === GTF_accept_transfer) continue; // bit 3 is GTF_transfer_completed there
      if (act.pin === 0 && ref < 8 && gt.version === 2) continue; // a converted accept_transfer entry (reference §7)
      if ((act.pin !== 0) !== ((st & GTF_reading) !== 0))
        out.push(
          `d${rd.domid} ref ${ref}: pin ${act.pin.toString(16)} but GTF_reading ${(st & GTF_reading) !== 0}`,
        );
      const writers = (act.pin & (GNTPIN_hstw_mask | GNTPIN_devw_mask)) !== 0;
      if (writers !== ((st & GTF_writing) !== 0))
        out.push(
          `d${rd.domid} ref ${ref}: writable pins ${writers} but GTF_writing ${(st & GTF_writing) !== 0}`,
        );
    }
    if (gt.nrV2Ops !== subPagePins)
      out.push(`d${rd.domid}: nr_v2_ops ${gt.nrV2Ops} but ${subPagePins} sub-page pins`);
    if (gt.version === 1 && gt.status.length !== 0)
      out.push(`d${rd.domid}: v1 with ${gt.status.length} status frames`);
    if (gt.version === 2 && gt.status.length !== gt.statusFramesNeeded())
      out.push(`d${rd.domid}: v2 with ${gt.status.length} status frames, needs ${gt.statusFramesNeeded()}`);
  }

  // Every live domain has its shared-info page; event channels are consistent.
  for (const d of hv.domains.values())
    if (d.sharedInfoMfn < 0 || f.owner[d.sharedInfoMfn] !== d.domid)
      out.push(`d${d.domid} has no shared-info page of its own (${d.sharedInfoMfn})`);
  out.push(...checkEventChannels(hv));

  // Page references and writable types are exactly what their holders account for (invariant 3).
  for (let mfn = 0; mfn < f.nrFrames; mfn++) {
    if (f.owner[mfn] === OWNER_NONE || f.owner[mfn] === OWNER_XEN) continue;
    if (f.count[mfn] !== refs[mfn])
      out.push(`frame ${mfn} (d${f.owner[mfn]}): count ${f.count[mfn]}, holders ${refs[mfn]}`);
    if (f.typeCount[mfn] !== types[mfn])
      out.push(
        `frame ${mfn} (d${f.owner[mfn]}): writable type count ${f.typeCount[mfn]}, holders ${types[mfn]}`,
      );
  }
  return out;
}
