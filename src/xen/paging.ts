// Address translation for the two kinds of domain (DESIGN.md "Address spaces").
// PV: a page table of virtual pages holding x86 PTEs (frame << 12 | flags).
// HVM: a P2M of guest frames holding (mfn, p2m type).
// Both cover 4 GiB: RAM at the bottom, the rest unpopulated.
import { _PAGE_PRESENT, _PAGE_RW } from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';

/** Pages in a domain's address space: 4 GiB. */
export const ADDRESS_SPACE_PAGES = 1 << 20;

export const P2M_RAM_RW = 0;
/** A foreign grant mapped writable (p2m_grant_map_rw). */
export const P2M_GRANT_MAP_RW = 1;
/** A foreign grant mapped read-only (p2m_grant_map_ro). */
export const P2M_GRANT_MAP_RO = 2;
/** Paged out: grant ops on it answer GNTST_eagain (p2m_ram_paged). */
export const P2M_RAM_PAGED = 3;

export type P2mType = 0 | 1 | 2 | 3;

export function isGrantP2m(t: number): boolean {
  return t === P2M_GRANT_MAP_RW || t === P2M_GRANT_MAP_RO;
}

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

export class P2m {
  /** gfn -> mfn * 4 + type */
  private readonly map = new Map<number, number>();

  get(gfn: number): { mfn: number; type: P2mType } | undefined {
    const e = this.map.get(gfn);
    if (e === undefined) return undefined;
    return { mfn: Math.floor(e / 4), type: (e % 4) as P2mType };
  }
  set(gfn: number, mfn: number, type: P2mType): void {
    this.map.set(gfn, mfn * 4 + type);
  }
  delete(gfn: number): void {
    this.map.delete(gfn);
  }
  /** Machine byte address of the page at `gfn`, or -1 when the access faults. */
  translate(gfn: number, write: boolean): number {
    const e = this.map.get(gfn);
    if (e === undefined) return -1;
    const t = e % 4;
    if (t === P2M_RAM_PAGED) return -1;
    if (write && t === P2M_GRANT_MAP_RO) return -1;
    return Math.floor(e / 4) * XEN_PAGE_SIZE;
  }
  entries(): IterableIterator<[number, number]> {
    return this.map.entries();
  }
  clear(): void {
    this.map.clear();
  }
}

export class PvPageTable {
  private readonly map = new Map<number, number>();

  get(vpn: number): number {
    return this.map.get(vpn) ?? 0;
  }
  set(vpn: number, pte: number): void {
    if (pte === 0) this.map.delete(vpn);
    else this.map.set(vpn, pte);
  }
  translate(vpn: number, write: boolean): number {
    const pte = this.map.get(vpn);
    if (pte === undefined || (pte & _PAGE_PRESENT) === 0) return -1;
    if (write && (pte & _PAGE_RW) === 0) return -1;
    return pteFrame(pte) * XEN_PAGE_SIZE;
  }
  entries(): IterableIterator<[number, number]> {
    return this.map.entries();
  }
  clear(): void {
    this.map.clear();
  }
}
