// Address translation as the hardware does it: a two-level table in machine
// memory per domain (a root frame of 1024 entries, each naming a leaf frame of
// 1024 entries), covering a 4 GiB address space of 4 KiB pages. The hypervisor
// writes the entries; any thread holding the machine memory can walk them, so
// guest code in a worker translates its own addresses without asking Xen, the
// way a CPU walks page tables (PV) or the EPT (HVM). Guests cannot write the
// tables: they are Xen's frames and lie outside every guest's address space.
//
// Leaf entry, 32 bits: frame << 12 | low flags.
//   PV  (x86 PTE): the low 12 bits as x86 (bit 0 present, bit 1 writable), except
//                  bit 8, which marks a grant PTE in a Xen debug build (src/xen/paging.ts).
//   HVM (P2M):     bit 0 valid, bits 1-3 the p2m type.
import { XEN_PAGE_SHIFT, XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { MachineMemory } from './machine-memory.ts';

export const MMU_ENTRIES = 1024;
/** Pages in a domain's address space: 4 GiB. */
export const ADDRESS_SPACE_PAGES = MMU_ENTRIES * MMU_ENTRIES;

export const PTE_PRESENT = 0x1;
export const PTE_RW = 0x2;

export const P2M_VALID = 0x1;
export const P2M_RAM_RW = 0;
export const P2M_GRANT_MAP_RW = 1;
export const P2M_GRANT_MAP_RO = 2;
export const P2M_RAM_PAGED = 3;
/** p2m_map_foreign: another domain's frame, mapped read-write by XENMEM_acquire_resource. */
export const P2M_MAP_FOREIGN = 4;
/** The p2m type field of a leaf entry, after the valid bit. */
export const P2M_TYPE_MASK = 7;

export type MmuKind = 'pv' | 'hvm';

/** Reads the leaf entry for page `pfn` (0 when nothing is there). Any thread. */
export function walk(machine: MachineMemory, root: number, pfn: number): number {
  const u32 = machine.u32;
  const l2 = Atomics.load(u32, root * 1024 + (pfn >>> 10));
  if ((l2 & PTE_PRESENT) === 0) return 0;
  return Atomics.load(u32, (l2 >>> XEN_PAGE_SHIFT) * 1024 + (pfn & 1023));
}

/** Writes a table entry (the hypervisor only). */
export function writeTableEntry(machine: MachineMemory, frame: number, index: number, entry: number): void {
  Atomics.store(machine.u32, frame * 1024 + index, entry >>> 0);
}

/** Reads a table entry. */
export function readTableEntry(machine: MachineMemory, frame: number, index: number): number {
  return Atomics.load(machine.u32, frame * 1024 + index);
}

/**
 * Machine byte address of the page holding `addr`, or -1 when the access
 * faults: nothing mapped, a write through a read-only mapping, a paged-out page.
 */
export function translate(
  machine: MachineMemory,
  kind: MmuKind,
  root: number,
  addr: number,
  write: boolean,
): number {
  const pfn = Math.floor(addr / XEN_PAGE_SIZE);
  if (!(pfn >= 0 && pfn < ADDRESS_SPACE_PAGES)) return -1;
  const e = walk(machine, root, pfn);
  if ((e & 1) === 0) return -1;
  if (kind === 'pv') {
    if (write && (e & PTE_RW) === 0) return -1;
  } else {
    const type = (e >>> 1) & P2M_TYPE_MASK;
    if (type === P2M_RAM_PAGED || (write && type === P2M_GRANT_MAP_RO)) return -1;
  }
  return (e >>> XEN_PAGE_SHIFT) * XEN_PAGE_SIZE;
}
