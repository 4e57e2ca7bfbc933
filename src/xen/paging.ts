// The hypervisor's side of address translation (DESIGN.md "Address spaces"):
// the PV page table of virtual pages (x86 PTEs) and the HVM P2M of guest frames
// ((mfn, p2m type)). Both live in machine memory as two-level tables
// (src/machine/mmu.ts) in frames owned by Xen, so guest code in any thread can
// walk them as its MMU; only the hypervisor writes them.
import { XEN_PAGE_SHIFT, XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { MachineMemory } from '../machine/machine-memory.ts';
import {
  ADDRESS_SPACE_PAGES,
  MMU_ENTRIES,
  P2M_GRANT_MAP_RO,
  P2M_GRANT_MAP_RW,
  P2M_MAP_FOREIGN,
  P2M_RAM_PAGED,
  P2M_RAM_RW,
  P2M_TYPE_MASK,
  P2M_VALID,
  PTE_PRESENT,
  readTableEntry,
  translate,
  walk,
  writeTableEntry,
} from '../machine/mmu.ts';

export {
  ADDRESS_SPACE_PAGES,
  P2M_GRANT_MAP_RO,
  P2M_GRANT_MAP_RW,
  P2M_MAP_FOREIGN,
  P2M_RAM_PAGED,
  P2M_RAM_RW,
  P2M_TYPE_MASK,
};

export type P2mType = 0 | 1 | 2 | 3 | 4;

/** The MFN of a P2M entry word from P2m.entry. */
export function p2mEntryMfn(e: number): number {
  return e >>> XEN_PAGE_SHIFT;
}

/** The type of a P2M entry word from P2m.entry. */
export function p2mEntryType(e: number): P2mType {
  return ((e >>> 1) & P2M_TYPE_MASK) as P2mType;
}

export function isGrantP2m(t: number): boolean {
  return t === P2M_GRANT_MAP_RW || t === P2M_GRANT_MAP_RO;
}

/** p2m_is_foreign: a frame of another domain (XENMEM_acquire_resource), holding a page reference. */
export function isForeignP2m(t: number): boolean {
  return t === P2M_MAP_FOREIGN;
}

/** p2m_is_grant || p2m_is_foreign: entries Xen refuses to overwrite or free as RAM. */
export function isGrantOrForeignP2m(t: number): boolean {
  return isGrantP2m(t) || isForeignP2m(t);
}

/**
 * Xen's _PAGE_GNTTAB is PTE bit 62, set on grant PTEs by debug builds only. A
 * leaf entry here holds 32 bits, so the mark is kept in bit 8 instead: x86's
 * _PAGE_GLOBAL, which no PTE of this model carries (L1_DISALLOW_MASK refuses
 * it from guests; adjust_guest_l1e, which would set it, is not modelled).
 */
export const PTE_GNTTAB_MARK = 0x100;

/** PTE as a number: frame * 4096 + the low 12 flag bits. */
export function pteFrame(pte: number): number {
  return Math.floor(pte / XEN_PAGE_SIZE);
}
export function pteFlags(pte: number): number {
  return pte % XEN_PAGE_SIZE;
}
export function makePte(mfn: number, flags: number): number {
  return mfn * XEN_PAGE_SIZE + (flags & 0xfff);
}

/** Allocates (and zeroes) a frame for the hypervisor's own use, or -1. */
export type TableFrameAllocator = () => number;

/**
 * A two-level translation table in machine memory. The root's entries say
 * which leaves exist, so every thread that walks it sees the same table.
 */
class TwoLevelTable {
  readonly root: number;
  private readonly machine: MachineMemory;
  private readonly alloc: TableFrameAllocator;

  /** A new table (its root from `alloc`), or a view of the one at `root`. */
  constructor(machine: MachineMemory, alloc: TableFrameAllocator, root?: number) {
    this.machine = machine;
    this.alloc = alloc;
    if (root === undefined) {
      root = alloc();
      if (root < 0) throw new RangeError('out of machine memory for a page table');
    }
    this.root = root;
  }

  /** The leaf frame for root slot i, or -1. */
  private leaf(i: number): number {
    const e = readTableEntry(this.machine, this.root, i);
    return (e & PTE_PRESENT) === 0 ? -1 : e >>> XEN_PAGE_SHIFT;
  }

  /** The leaves in use, [root index, frame], lowest index first. */
  private leaves(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < MMU_ENTRIES; i++) {
      const leaf = this.leaf(i);
      if (leaf >= 0) out.push([i, leaf]);
    }
    return out;
  }

  /** Every frame the table occupies (root and leaves). */
  frames(): number[] {
    return [this.root, ...this.leaves().map(([, leaf]) => leaf)];
  }

  raw(pfn: number): number {
    return walk(this.machine, this.root, pfn);
  }

  /** Makes sure the leaf for `pfn` exists; false when no frame could be had. */
  ensure(pfn: number): boolean {
    const i = pfn >>> 10;
    if (this.leaf(i) >= 0) return true;
    const leaf = this.alloc();
    if (leaf < 0) return false;
    writeTableEntry(this.machine, this.root, i, leaf * XEN_PAGE_SIZE + PTE_PRESENT);
    return true;
  }

  /** Writes the entry for `pfn`; a non-zero entry needs its leaf (ensure) first. */
  write(pfn: number, entry: number): void {
    const leaf = this.leaf(pfn >>> 10);
    if (leaf < 0) {
      if (entry === 0) return;
      throw new Error(`page table: no leaf for page ${pfn} (ensure() was not called)`);
    }
    writeTableEntry(this.machine, leaf, pfn & 1023, entry);
  }

  *entries(): IterableIterator<[number, number]> {
    for (const [i, leaf] of this.leaves()) {
      for (let j = 0; j < MMU_ENTRIES; j++) {
        const e = readTableEntry(this.machine, leaf, j);
        if (e !== 0) yield [i * MMU_ENTRIES + j, e];
      }
    }
  }
}

export class P2m {
  private readonly t: TwoLevelTable;
  private readonly machine: MachineMemory;

  /** A new table, or (given `root`) a view of the one there. */
  constructor(machine: MachineMemory, alloc: TableFrameAllocator, root?: number) {
    this.machine = machine;
    this.t = new TwoLevelTable(machine, alloc, root);
  }

  get root(): number {
    return this.t.root;
  }
  frames(): number[] {
    return this.t.frames();
  }
  get(gfn: number): { mfn: number; type: P2mType } | undefined {
    const e = this.entry(gfn);
    return e === 0 ? undefined : { mfn: p2mEntryMfn(e), type: p2mEntryType(e) };
  }
  /** get() for hot paths, allocating nothing: the entry's word, 0 when there is none (p2mEntryMfn, p2mEntryType read it). */
  entry(gfn: number): number {
    if (!(gfn >= 0 && gfn < ADDRESS_SPACE_PAGES)) return 0;
    const e = this.t.raw(gfn);
    return (e & P2M_VALID) === 0 ? 0 : e;
  }
  /** Makes room for an entry at gfn; false when out of machine memory. */
  ensure(gfn: number): boolean {
    return this.t.ensure(gfn);
  }
  set(gfn: number, mfn: number, type: P2mType): void {
    this.t.write(gfn, mfn * XEN_PAGE_SIZE + (type << 1) + P2M_VALID);
  }
  delete(gfn: number): void {
    this.t.write(gfn, 0);
  }
  translate(gfn: number, write: boolean): number {
    return translate(this.machine, 'hvm', this.t.root, gfn * XEN_PAGE_SIZE, write);
  }
  /** [gfn, mfn * 8 + type] for every entry (P2M_TYPE_MASK + 1 = 8). */
  *entries(): IterableIterator<[number, number]> {
    for (const [gfn, e] of this.t.entries())
      yield [gfn, (e >>> XEN_PAGE_SHIFT) * 8 + ((e >>> 1) & P2M_TYPE_MASK)];
  }
  clear(): void {
    for (const [gfn] of [...this.t.entries()]) this.t.write(gfn, 0);
  }
}

export class PvPageTable {
  private readonly t: TwoLevelTable;
  private readonly machine: MachineMemory;

  /** A new table, or (given `root`) a view of the one there. */
  constructor(machine: MachineMemory, alloc: TableFrameAllocator, root?: number) {
    this.machine = machine;
    this.t = new TwoLevelTable(machine, alloc, root);
  }

  get root(): number {
    return this.t.root;
  }
  frames(): number[] {
    return this.t.frames();
  }
  /** The PTE of virtual page vpn (frame * 4096 + flags), 0 when none. */
  get(vpn: number): number {
    if (!(vpn >= 0 && vpn < ADDRESS_SPACE_PAGES)) return 0;
    return this.t.raw(vpn) >>> 0;
  }
  /** Makes room for a PTE at vpn; false when out of machine memory. */
  ensure(vpn: number): boolean {
    return this.t.ensure(vpn);
  }
  set(vpn: number, pte: number): void {
    this.t.write(vpn, pte);
  }
  translate(vpn: number, write: boolean): number {
    return translate(this.machine, 'pv', this.t.root, vpn * XEN_PAGE_SIZE, write);
  }
  *entries(): IterableIterator<[number, number]> {
    for (const [vpn, e] of this.t.entries()) yield [vpn, e >>> 0];
  }
  clear(): void {
    for (const [vpn] of [...this.t.entries()]) this.t.write(vpn, 0);
  }
}
