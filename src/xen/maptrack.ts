// The grantee-side table of live mappings; a slot's index is the grant handle.
// Handle allocation follows Xen exactly (reference §4.3): per-vCPU FIFO free lists
// linked through the slot's `ref`, each keeping one sentinel entry; a new page of
// 256 slots hands out its first entry and pushes the rest on the head of the
// list; when no page can be added, a handle is stolen from another vCPU.
import { MAPTRACK_PER_PAGE } from '../abi/limits.ts';

/** End-of-list marker in a free slot's `ref` (Xen's MAPTRACK_TAIL). */
const MAPTRACK_TAIL = 0xffffffff;

export class Maptrack {
  /** Number of usable handles: a multiple of 256. */
  limit = 0;
  readonly maxFrames: number;
  /** Live slot: grant ref. Free slot: link to the next free handle. */
  readonly ref: number[] = [];
  /** Low 16 bits of the GNTMAP_ flags; 0 means the slot is free. */
  readonly flags: number[] = [];
  readonly domid: number[] = [];
  /** The vCPU whose free list the slot returns to. */
  readonly vcpu: number[] = [];
  private readonly head: number[];
  private readonly tail: number[];
  private readonly random: () => number;

  constructor(maxFrames: number, vcpus: number, random: () => number) {
    this.maxFrames = maxFrames;
    this.head = new Array<number>(vcpus).fill(MAPTRACK_TAIL);
    this.tail = new Array<number>(vcpus).fill(MAPTRACK_TAIL);
    this.random = random;
  }

  get nrFrames(): number {
    return this.limit / MAPTRACK_PER_PAGE;
  }

  get vcpus(): number {
    return this.head.length;
  }

  /** Pops from vCPU v's list, always leaving the sentinel. */
  private pop(v: number): number {
    const head = this.head[v]!;
    if (head === MAPTRACK_TAIL) return -1;
    const next = this.ref[head]!;
    if (next === MAPTRACK_TAIL) return -1;
    this.head[v] = next;
    return head;
  }

  private steal(curr: number): number {
    const n = this.vcpus;
    const first = Math.floor(this.random() * n) % n;
    let i = first;
    do {
      const h = this.pop(i);
      if (h !== -1) {
        this.vcpu[h] = curr;
        return h;
      }
      i = (i + 1) % n;
    } while (i !== first);
    return -1;
  }

  /** Returns a free handle for vCPU `curr`, or -1 when none can be found. */
  get(curr: number): number {
    const h = this.pop(curr);
    if (h !== -1) return h;
    if (this.nrFrames >= this.maxFrames) {
      // An uninitialised free list first steals an extra entry to be its sentinel.
      if (this.tail[curr] === MAPTRACK_TAIL) {
        const s = this.steal(curr);
        if (s === -1) return -1;
        this.ref[s] = MAPTRACK_TAIL;
        this.tail[curr] = s;
        if (this.head[curr] === MAPTRACK_TAIL) this.head[curr] = s;
      }
      return this.steal(curr);
    }
    const handle = this.limit;
    for (let i = 0; i < MAPTRACK_PER_PAGE; i++) {
      this.ref.push(handle + i + 1);
      this.flags.push(0);
      this.domid.push(0);
      this.vcpu.push(curr);
    }
    if (this.tail[curr] === MAPTRACK_TAIL) this.tail[curr] = handle + MAPTRACK_PER_PAGE - 1;
    this.limit += MAPTRACK_PER_PAGE;
    this.ref[handle + MAPTRACK_PER_PAGE - 1] = this.head[curr]!;
    this.head[curr] = handle + 1;
    return handle;
  }

  /** Appends a freed handle to the tail of the list of the vCPU it belongs to. */
  put(handle: number): void {
    this.ref[handle] = MAPTRACK_TAIL;
    const v = this.vcpu[handle]!;
    const prevTail = this.tail[v]!;
    this.tail[v] = handle;
    if (prevTail === MAPTRACK_TAIL) this.head[v] = handle;
    else this.ref[prevTail] = handle;
  }

  /** Number of live slots (flags != 0). */
  liveCount(): number {
    let n = 0;
    for (let h = 0; h < this.limit; h++) if (this.flags[h] !== 0) n++;
    return n;
  }

  /** Length of vCPU v's free list including its sentinel (for tests and invariants). */
  freeListLength(v: number): number {
    let n = 0;
    for (let h = this.head[v]!; h !== MAPTRACK_TAIL; h = this.ref[h]!) {
      if (++n > this.limit) return -1;
    }
    return n;
  }
}
