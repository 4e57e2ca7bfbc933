// The guest kernel's page allocator: its RAM (less the hypercall argument area)
// handed out a page at a time with a reference count per page (get_page /
// put_page: a page is free again only when its count drops to 0), the frame
// numbers it writes into grant entries (xen_page_to_gfn), and the allocator of
// unpopulated address ranges above RAM for foreign mappings
// (xen_alloc_unpopulated_pages), with the foreign (domid, gref) record Linux
// keeps in such pages.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { GuestContext } from './context.ts';
import { ENOMEM } from './gnttab/errno.ts';
import { FOREIGN_MAP_END, FOREIGN_MAP_VA, hypercallArgArea } from './layout.ts';

export interface ForeignPage {
  domid: number;
  gref: number;
}

/**
 * One per domain: every driver of the domain (grant table, gntalloc, event
 * channels, rings) must share it, or two of them would hand out the same page.
 */
export class PageAllocator {
  private readonly ctx: GuestContext;
  /** Pages of RAM the allocator manages: 0..nrPages-1 (the argument area above is not one of them). */
  readonly nrPages: number;
  private readonly refcount: Int32Array;
  private nrFree: number;
  /** No page below this index is free. */
  private lowestFree = 0;
  /** PV: machine frame -> address, built on first use (Linux's M2P lookup). */
  private m2p: Map<number, number> | null = null;
  /** Free unpopulated ranges [start, end) in pages, sorted, coalesced. */
  private readonly holes: [number, number][];
  private readonly foreignPages = new Map<number, ForeignPage>();

  constructor(ctx: GuestContext) {
    this.ctx = ctx;
    this.nrPages = Math.floor(hypercallArgArea(ctx.start.ramBytes) / XEN_PAGE_SIZE);
    if (this.nrPages <= 0) throw new RangeError(`d${ctx.start.domid}: no RAM outside the argument area`);
    this.refcount = new Int32Array(this.nrPages);
    this.nrFree = this.nrPages;
    this.holes = [[FOREIGN_MAP_VA / XEN_PAGE_SIZE, FOREIGN_MAP_END / XEN_PAGE_SIZE]];
  }

  /** Pages currently free. */
  get freePages(): number {
    return this.nrFree;
  }

  /** alloc_page: the address of a page with count 1 (zero-filled unless asked not to), or -ENOMEM. */
  alloc(zero = true): number {
    if (this.nrFree === 0) return -ENOMEM;
    let i = this.lowestFree;
    while (this.refcount[i] !== 0) i++;
    this.refcount[i] = 1;
    this.nrFree--;
    this.lowestFree = i + 1;
    const addr = i * XEN_PAGE_SIZE;
    if (zero) this.ctx.mem.fill(addr, XEN_PAGE_SIZE, 0);
    return addr;
  }

  /** n single pages, all or nothing: their addresses, or -ENOMEM. */
  allocPages(n: number, zero = true): number[] | number {
    if (n > this.nrFree) return -ENOMEM;
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.alloc(zero));
    return out;
  }

  private index(addr: number): number {
    const i = addr / XEN_PAGE_SIZE;
    if (!Number.isInteger(i) || i < 0 || i >= this.nrPages)
      throw new RangeError(`d${this.ctx.start.domid}: 0x${addr.toString(16)} is not a RAM page`);
    return i;
  }

  /** True when addr is the start of a page this allocator manages. */
  isRamPage(addr: number): boolean {
    const i = addr / XEN_PAGE_SIZE;
    return Number.isInteger(i) && i >= 0 && i < this.nrPages;
  }

  /** The reference count of the page at addr (0: free). */
  count(addr: number): number {
    return this.refcount[this.index(addr)]!;
  }

  /** get_page: one more reference on an allocated page. */
  get(addr: number): void {
    const i = this.index(addr);
    if (this.refcount[i] === 0) throw new Error(`BUG: get_page on free page 0x${addr.toString(16)}`);
    this.refcount[i]!++;
  }

  /** put_page: drops a reference; the page is freed with the last one. Returns true when it was. */
  put(addr: number): boolean {
    const i = this.index(addr);
    if (this.refcount[i] === 0) throw new Error(`BUG: put_page on free page 0x${addr.toString(16)}`);
    if (--this.refcount[i]! > 0) return false;
    this.nrFree++;
    if (i < this.lowestFree) this.lowestFree = i;
    return true;
  }

  /** __free_page: drops the allocation's reference (the page stays in use while others hold it). */
  free(addr: number): boolean {
    return this.put(addr);
  }

  /** The frame number Xen knows the page at addr by (xen_page_to_gfn): PV its MFN, HVM its GFN. */
  gfnOf(addr: number): number {
    const page = Math.floor(addr / XEN_PAGE_SIZE);
    if (this.ctx.start.kind === 'hvm') return page;
    const mfn = this.ctx.mem.virtToMfn(page * XEN_PAGE_SIZE);
    if (mfn < 0) throw new RangeError(`d${this.ctx.start.domid}: nothing mapped at 0x${addr.toString(16)}`);
    return mfn;
  }

  /** The RAM page Xen's frame number `gfn` stands for (gfn_to_pfn), or -1 if none. */
  addrOfGfn(gfn: number): number {
    if (this.ctx.start.kind === 'hvm') {
      return Number.isSafeInteger(gfn) && gfn >= 0 && gfn < this.nrPages ? gfn * XEN_PAGE_SIZE : -1;
    }
    if (this.m2p === null) {
      this.m2p = new Map();
      for (let i = 0; i < this.nrPages; i++) {
        const mfn = this.ctx.mem.virtToMfn(i * XEN_PAGE_SIZE);
        if (mfn >= 0) this.m2p.set(mfn, i * XEN_PAGE_SIZE);
      }
    }
    const a = this.m2p.get(gfn);
    // A page can have been remapped since (a transfer, say): check it still is.
    if (a !== undefined && this.ctx.mem.virtToMfn(a) === gfn) return a;
    return -1;
  }

  // ---- unpopulated ranges (foreign mappings) ------------------------------------------------

  /** n contiguous pages of unpopulated address space (first fit); the base address, or -ENOMEM. */
  allocUnpopulated(n: number): number {
    if (!Number.isInteger(n) || n <= 0) return -ENOMEM;
    for (let k = 0; k < this.holes.length; k++) {
      const h = this.holes[k]!;
      if (h[1] - h[0] >= n) {
        const base = h[0];
        h[0] += n;
        if (h[0] === h[1]) this.holes.splice(k, 1);
        return base * XEN_PAGE_SIZE;
      }
    }
    return -ENOMEM;
  }

  /** Returns a range from allocUnpopulated. */
  freeUnpopulated(addr: number, n: number): void {
    const s = addr / XEN_PAGE_SIZE;
    const e = s + n;
    if (!Number.isInteger(s) || s < FOREIGN_MAP_VA / XEN_PAGE_SIZE || e > FOREIGN_MAP_END / XEN_PAGE_SIZE)
      throw new RangeError(`0x${addr.toString(16)} is not an unpopulated range`);
    let k = 0;
    while (k < this.holes.length && this.holes[k]![0] < s) k++;
    const prev = this.holes[k - 1];
    const next = this.holes[k];
    if ((prev !== undefined && prev[1] > s) || (next !== undefined && next[0] < e))
      throw new Error(`BUG: unpopulated range 0x${addr.toString(16)} freed twice`);
    if (prev !== undefined && prev[1] === s) {
      prev[1] = e;
      if (next !== undefined && next[0] === e) {
        prev[1] = next[1];
        this.holes.splice(k, 1);
      }
    } else if (next !== undefined && next[0] === e) next[0] = s;
    else this.holes.splice(k, 0, [s, e]);
  }

  /** Pages of unpopulated space still free. */
  get unpopulatedFree(): number {
    let n = 0;
    for (const [s, e] of this.holes) n += e - s;
    return n;
  }

  /** SetPageForeign: the page at addr now maps (domid, gref). */
  setForeign(addr: number, domid: number, gref: number): void {
    this.foreignPages.set(Math.floor(addr / XEN_PAGE_SIZE), { domid, gref });
  }

  clearForeign(addr: number): void {
    this.foreignPages.delete(Math.floor(addr / XEN_PAGE_SIZE));
  }

  /** What the page at addr maps, if it holds a foreign mapping. */
  foreign(addr: number): ForeignPage | undefined {
    return this.foreignPages.get(Math.floor(addr / XEN_PAGE_SIZE));
  }
}
