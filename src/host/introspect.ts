// Read-only introspection, as Xen's debug keys and xenctx show it: a frame's
// page_info, a domain's translation of an address, its PTE or P2M entry, why
// Xen crashed it. Both hosts answer through these functions (the WorkerHost
// in the thread that holds the hypervisor), so the answers do not depend on
// where the hypervisor keeps its state.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { readTableEntry } from '../machine/mmu.ts';
import type { Domain } from '../xen/domain.ts';
import { OWNER_NONE, OWNER_XEN, PGC_allocated, PGC_xen_heap } from '../xen/frame-table.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';
import {
  ADDRESS_SPACE_PAGES,
  P2M_GRANT_MAP_RO,
  P2M_GRANT_MAP_RW,
  P2M_RAM_PAGED,
  P2M_RAM_RW,
  PTE_GNTTAB_MARK,
} from '../xen/paging.ts';

/** A machine frame's struct page_info, as Xen's debug keys print it. */
export interface PageInfo {
  /** The owning domain's id, `null` when the frame is free, `'xen'` for Xen's own frames. */
  owner: number | 'xen' | null;
  /** General reference count (count_info & PGC_count_mask). */
  count: number;
  /** Writable type count (type_info & PGT_count_mask, PGT_writable_page). */
  typeCount: number;
  /** Xen's names of the frame's PGC_ flags: 'allocated', 'xen_heap'. */
  flags: string[];
}

/** p2m_type_t names, as Xen spells them. */
export type P2mTypeName = 'p2m_ram_rw' | 'p2m_grant_map_rw' | 'p2m_grant_map_ro' | 'p2m_ram_paged';

/** One HVM P2M entry: the machine frame behind a guest frame and its p2m type. */
export interface P2mEntry {
  mfn: number;
  type: P2mTypeName;
}

/** An exception Xen injected into a domain (vector 13 is #GP). */
export interface InjectedFault {
  vector: number;
  reason: string;
}

/** What a domain probe asks; answered by probeDomain. */
export type DomainProbe =
  | { what: 'machineFrameOf'; addr: number }
  | { what: 'pte'; addr: number }
  | { what: 'l1EntryAddress'; addr: number }
  | { what: 'p2mEntry'; gfn: number }
  | { what: 'crashReason' }
  | { what: 'injectedFaults' };

const P2M_NAMES: Record<number, P2mTypeName> = {
  [P2M_RAM_RW]: 'p2m_ram_rw',
  [P2M_GRANT_MAP_RW]: 'p2m_grant_map_rw',
  [P2M_GRANT_MAP_RO]: 'p2m_grant_map_ro',
  [P2M_RAM_PAGED]: 'p2m_ram_paged',
};

/** _PAGE_GNTTAB: bit 62 of a 64-bit x86 PTE, where Xen's debug builds mark grant PTEs. */
const PAGE_GNTTAB = 1n << 62n;

/** page_info of machine frame `mfn`; RangeError when there is no such frame. */
export function pageInfo(hv: Hypervisor, mfn: number): PageInfo {
  const f = hv.frames;
  if (!f.isValid(mfn)) throw new RangeError(`no machine frame ${mfn} (the machine has ${f.nrFrames})`);
  const o = f.owner[mfn]!;
  const bits = f.flags[mfn]!;
  const flags: string[] = [];
  if (bits & PGC_allocated) flags.push('allocated');
  if (bits & PGC_xen_heap) flags.push('xen_heap');
  return {
    owner: o === OWNER_NONE ? null : o === OWNER_XEN ? 'xen' : o,
    count: f.count[mfn]!,
    typeCount: f.typeCount[mfn]!,
    flags,
  };
}

function pageOf(addr: number): number {
  if (!(Number.isSafeInteger(addr) && addr >= 0 && addr < ADDRESS_SPACE_PAGES * XEN_PAGE_SIZE))
    throw new RangeError(`0x${addr.toString(16)} is outside a domain's 4 GiB address space`);
  return Math.floor(addr / XEN_PAGE_SIZE);
}

function needPv(d: Domain, what: string): NonNullable<Domain['pt']> {
  if (d.pt === null) throw new TypeError(`${what} applies to pv domains (d${d.domid} is hvm)`);
  return d.pt;
}

/**
 * Answers a probe of a live domain. Address arguments outside the 4 GiB
 * address space are a RangeError; a PV question of an HVM domain, or the
 * reverse, a TypeError.
 */
export function probeDomain(hv: Hypervisor, d: Domain, q: DomainProbe): unknown {
  switch (q.what) {
    case 'crashReason':
      return d.crashed;
    case 'injectedFaults':
      return d.injected.map((f) => ({ vector: f.vector, reason: f.reason }));
    case 'machineFrameOf': {
      pageOf(q.addr);
      const base = d.translatePage(q.addr, false);
      return base < 0 ? null : base / XEN_PAGE_SIZE;
    }
    case 'pte': {
      const e = needPv(d, 'pte').get(pageOf(q.addr));
      // The model keeps the grant-PTE mark in bit 8 of its 32-bit entry; Xen has it in bit 62.
      return e & PTE_GNTTAB_MARK ? BigInt(e - PTE_GNTTAB_MARK) | PAGE_GNTTAB : BigInt(e);
    }
    case 'l1EntryAddress': {
      const pt = needPv(d, 'l1EntryAddress');
      const vpn = pageOf(q.addr);
      const l2 = readTableEntry(hv.machine, pt.root, vpn >>> 10);
      if ((l2 & 1) === 0) return null;
      return Math.floor(l2 / XEN_PAGE_SIZE) * XEN_PAGE_SIZE + (vpn & 1023) * 4;
    }
    case 'p2mEntry': {
      if (d.p2m === null) throw new TypeError(`p2mEntry applies to hvm domains (d${d.domid} is pv)`);
      if (!(Number.isSafeInteger(q.gfn) && q.gfn >= 0 && q.gfn < ADDRESS_SPACE_PAGES))
        throw new RangeError(`gfn ${q.gfn} is outside a domain's address space`);
      const e = d.p2m.get(q.gfn);
      return e === undefined ? null : { mfn: e.mfn, type: P2M_NAMES[e.type]! };
    }
  }
}
