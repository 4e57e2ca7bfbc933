// Per-frame bookkeeping, Xen's frame_table of struct page_info (reference §4.4):
// owner, general reference count, writable type count, and where the frame came
// from. Private to the hypervisor: guests never see it.

/** Owner value of a free frame. */
export const OWNER_NONE = -1;
/** Owner of the hypervisor's own frames (DOMID_XEN). */
export const OWNER_XEN = 0x7ff2;

/** The frame is a Xen-heap page shared with its owner (grant or status frame). */
export const PGC_xen_heap = 1;
/** The frame holds its owner's allocation reference (PGC_allocated). */
export const PGC_allocated = 2;

export class FrameTable {
  readonly nrFrames: number;
  readonly owner: Int32Array;
  /** General references: the allocation reference plus one per mapping or temporary use. */
  readonly count: Int32Array;
  /** Writable type references (PGT_writable_page count). */
  readonly typeCount: Int32Array;
  readonly flags: Uint8Array;
  private readonly freeList: Int32Array;
  private nrFree: number;

  constructor(nrFrames: number, reserved: number) {
    this.nrFrames = nrFrames;
    this.owner = new Int32Array(nrFrames).fill(OWNER_NONE);
    this.count = new Int32Array(nrFrames);
    this.typeCount = new Int32Array(nrFrames);
    this.flags = new Uint8Array(nrFrames);
    this.freeList = new Int32Array(nrFrames);
    this.nrFree = 0;
    // Low frames are the hypervisor's; hand out the rest lowest-first.
    for (let mfn = 0; mfn < reserved; mfn++) {
      this.owner[mfn] = OWNER_XEN;
      this.count[mfn] = 1;
    }
    for (let mfn = nrFrames - 1; mfn >= reserved; mfn--) this.freeList[this.nrFree++] = mfn;
  }

  get freeFrames(): number {
    return this.nrFree;
  }

  /** Allocates a frame for `owner` with its allocation reference, or returns -1. */
  alloc(owner: number, flags = 0): number {
    if (this.nrFree === 0) return -1;
    const mfn = this.freeList[--this.nrFree]!;
    this.owner[mfn] = owner;
    this.count[mfn] = 1;
    this.typeCount[mfn] = 0;
    this.flags[mfn] = flags;
    return mfn;
  }

  /** Returns a frame whose last reference went to the free list. */
  release(mfn: number): void {
    this.owner[mfn] = OWNER_NONE;
    this.count[mfn] = 0;
    this.typeCount[mfn] = 0;
    this.flags[mfn] = 0;
    this.freeList[this.nrFree++] = mfn;
  }

  isValid(mfn: number): boolean {
    return Number.isInteger(mfn) && mfn >= 0 && mfn < this.nrFrames;
  }
}
