// The grantee-side table of live mappings; a slot's index is the grant handle.
// Handle allocation follows Xen exactly (reference §4.3): per-vCPU FIFO free lists
// linked through the slot's `ref`, each keeping one sentinel entry; a new page of
// 256 slots hands out its first entry and pushes the rest on the head of the
// list; when no page can be added, a handle is stolen from another vCPU.
//
// The maptrack lives in the hypervisor's private pages, as Xen's maptrack
// frames are Xen-heap pages: a header page (the limit, each vCPU's list head
// and tail) and a directory of slot pages, MAPTRACK_PER_PAGE slots of
// MT_WORDS words to a page. This object is one thread's view of them.
import { MAPTRACK_PER_PAGE } from '../abi/limits.ts';
import { PageDirectory } from './page-directory.ts';
import { PAGE_WORDS, PrivatePages } from './private-pages.ts';

/** End-of-list marker in a free slot's `ref` (Xen's MAPTRACK_TAIL). */
const MAPTRACK_TAIL = 0xffffffff;

// ---- layout, in Int32 words (the one definition) ----
/** A slot (struct grant_mapping): ref, flags, domid, vcpu. */
const MT_REF = 0;
const MT_FLAGS = 1;
const MT_DOMID = 2;
const MT_VCPU = 3;
const MT_WORDS = 4;
/** The header page: the limit, the table's size limits and directory, then each vCPU's head and tail (128 vCPUs at most). */
const HDR_LIMIT = 0;
const HDR_MAX_FRAMES = 1;
const HDR_VCPUS = 2;
const HDR_ROOT = 3;
const HDR_HEAD = 8;
const HDR_TAIL = HDR_HEAD + 128;
const MAX_VCPUS = 128;

export class Maptrack {
  readonly maxFrames: number;
  readonly vcpus: number;
  private readonly pool: PrivatePages;
  /** The header's words and where it starts in them (a copy of this view's own once it is gone). */
  private hw: Int32Array;
  private header: number;
  private readonly pages: PageDirectory;
  private readonly random: () => number;

  /**
   * An empty maptrack in `pool` (a private one of its own when none is given:
   * tests of the allocator alone).
   */
  static create(maxFrames: number, vcpus: number, random: () => number, pool?: PrivatePages): Maptrack {
    if (!(Number.isInteger(vcpus) && vcpus >= 1 && vcpus <= MAX_VCPUS))
      throw new RangeError(`a maptrack serves 1 to ${MAX_VCPUS} vCPUs, got ${vcpus}`);
    const p = pool ?? PrivatePages.create(Math.min(4096, maxFrames + 4));
    const header = p.alloc();
    if (header < 0) throw new RangeError("out of the hypervisor's private memory for a maptrack");
    let dir: PageDirectory;
    try {
      dir = new PageDirectory(p);
    } catch (err) {
      p.free(header);
      throw err;
    }
    const w = p.words;
    const h = header * PAGE_WORDS;
    w[h + HDR_MAX_FRAMES] = maxFrames;
    w[h + HDR_VCPUS] = vcpus;
    w[h + HDR_ROOT] = dir.root;
    for (let v = 0; v < vcpus; v++) {
      w[h + HDR_HEAD + v] = -1;
      w[h + HDR_TAIL + v] = -1;
    }
    return new Maptrack(p, header, random);
  }

  /** A view of the maptrack whose header is private page `headerPage` of `pool`. */
  constructor(pool: PrivatePages, headerPage: number, random: () => number) {
    this.pool = pool;
    this.random = random;
    this.header = headerPage * PAGE_WORDS;
    this.hw = pool.words;
    this.maxFrames = this.hw[this.header + HDR_MAX_FRAMES]!;
    this.vcpus = this.hw[this.header + HDR_VCPUS]!;
    this.pages = new PageDirectory(pool, this.hw[this.header + HDR_ROOT]!);
  }

  /** The header's private page (0 once the maptrack is gone). */
  get headerPage(): number {
    return this.header / PAGE_WORDS;
  }

  /** Number of usable handles: a multiple of 256. */
  get limit(): number {
    return this.hw[this.header + HDR_LIMIT]!;
  }

  get nrFrames(): number {
    return this.limit / MAPTRACK_PER_PAGE;
  }

  /** Word index of slot h; h is below the limit. */
  private at(h: number): number {
    // The directory remembers where each slot page is (pages never move while the table lives).
    return this.pages.page(h >>> 8) * PAGE_WORDS + (h & (MAPTRACK_PER_PAGE - 1)) * MT_WORDS;
  }

  private inRange(h: number): boolean {
    return Number.isInteger(h) && h >= 0 && h < this.limit;
  }

  /** Live slot: its grant ref; free slot: the next free handle. 0 beyond the limit. */
  ref(h: number): number {
    return this.inRange(h) ? this.pool.words[this.at(h) + MT_REF]! >>> 0 : 0;
  }

  /** Low 16 bits of the GNTMAP_ flags; 0 means the slot is free (and beyond the limit). */
  flags(h: number): number {
    return this.inRange(h) ? this.pool.words[this.at(h) + MT_FLAGS]! : 0;
  }

  /** The granter of a live slot. */
  domid(h: number): number {
    return this.inRange(h) ? this.pool.words[this.at(h) + MT_DOMID]! : 0;
  }

  /** The vCPU whose free list the slot returns to. */
  vcpu(h: number): number {
    return this.inRange(h) ? this.pool.words[this.at(h) + MT_VCPU]! : 0;
  }

  setRef(h: number, ref: number): void {
    this.pool.words[this.at(h) + MT_REF] = ref | 0;
  }

  setFlags(h: number, flags: number): void {
    this.pool.words[this.at(h) + MT_FLAGS] = flags;
  }

  setDomid(h: number, domid: number): void {
    this.pool.words[this.at(h) + MT_DOMID] = domid;
  }

  private head(v: number): number {
    return this.hw[this.header + HDR_HEAD + v]! >>> 0;
  }

  private tail(v: number): number {
    return this.hw[this.header + HDR_TAIL + v]! >>> 0;
  }

  private setHead(v: number, h: number): void {
    this.hw[this.header + HDR_HEAD + v] = h | 0;
  }

  private setTail(v: number, h: number): void {
    this.hw[this.header + HDR_TAIL + v] = h | 0;
  }

  /** Pops from vCPU v's list, always leaving the sentinel. */
  private pop(v: number): number {
    const head = this.head(v);
    if (head === MAPTRACK_TAIL) return -1;
    const next = this.ref(head);
    if (next === MAPTRACK_TAIL) return -1;
    this.setHead(v, next);
    return head;
  }

  private steal(curr: number): number {
    const n = this.vcpus;
    const first = Math.floor(this.random() * n) % n;
    let i = first;
    do {
      const h = this.pop(i);
      if (h !== -1) {
        this.pool.words[this.at(h) + MT_VCPU] = curr;
        return h;
      }
      i = (i + 1) % n;
    } while (i !== first);
    return -1;
  }

  /** Steals when no page can be added (the limit, or no private memory for one). */
  private stealOnly(curr: number): number {
    // An uninitialised free list first steals an extra entry to be its sentinel.
    if (this.tail(curr) === MAPTRACK_TAIL) {
      const s = this.steal(curr);
      if (s === -1) return -1;
      this.setRef(s, MAPTRACK_TAIL);
      this.setTail(curr, s);
      if (this.head(curr) === MAPTRACK_TAIL) this.setHead(curr, s);
    }
    return this.steal(curr);
  }

  /** Returns a free handle for vCPU `curr`, or -1 when none can be found. */
  get(curr: number): number {
    const h = this.pop(curr);
    if (h !== -1) return h;
    if (this.nrFrames >= this.maxFrames) return this.stealOnly(curr);
    const handle = this.limit;
    if (this.pages.add(handle >>> 8) < 0) return this.stealOnly(curr);
    const w = this.pool.words;
    this.hw[this.header + HDR_LIMIT] = handle + MAPTRACK_PER_PAGE;
    for (let i = 0; i < MAPTRACK_PER_PAGE; i++) {
      const a = this.at(handle + i);
      w[a + MT_REF] = handle + i + 1;
      w[a + MT_VCPU] = curr;
    }
    if (this.tail(curr) === MAPTRACK_TAIL) this.setTail(curr, handle + MAPTRACK_PER_PAGE - 1);
    this.setRef(handle + MAPTRACK_PER_PAGE - 1, this.head(curr));
    this.setHead(curr, handle + 1);
    return handle;
  }

  /** Appends a freed handle to the tail of the list of the vCPU it belongs to. */
  put(handle: number): void {
    this.setRef(handle, MAPTRACK_TAIL);
    const v = this.vcpu(handle);
    const prevTail = this.tail(v);
    this.setTail(v, handle);
    if (prevTail === MAPTRACK_TAIL) this.setHead(v, handle);
    else this.setRef(prevTail, handle);
  }

  /** Number of live slots (flags != 0). */
  liveCount(): number {
    let n = 0;
    for (let h = 0; h < this.limit; h++) if (this.flags(h) !== 0) n++;
    return n;
  }

  /** Length of vCPU v's free list including its sentinel (for tests and invariants). */
  freeListLength(v: number): number {
    let n = 0;
    for (let h = this.head(v); h !== MAPTRACK_TAIL; h = this.ref(h)) {
      if (++n > this.limit) return -1;
    }
    return n;
  }

  /** gnttab_release_mappings' end: the maptrack's pages go back to the pool. */
  destroy(): void {
    if (this.pages.root === 0) return;
    this.pages.free();
    this.pool.free(this.header / PAGE_WORDS);
    // A tombstone header: no slots, every list empty.
    this.hw = new Int32Array(HDR_TAIL + MAX_VCPUS).fill(-1);
    this.hw[HDR_LIMIT] = 0;
    this.header = 0;
  }
}
