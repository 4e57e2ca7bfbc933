// Xen's FLEX rings (`DEFINE_XEN_FLEX_RING[_AND_INTF]` in
// `xen/include/public/io/ring.h`, used by pvcalls, 9pfs and others): two
// one-way byte rings in a data area of 2^order pages, with their indices on a
// separate data-interface page that also lists the grant refs of the data
// area. Reference: guest-side.md §7.4 (and §8 item 1: u32 arithmetic).
//
// The helpers follow the header's static inline functions: mask, get_ring_ptr,
// queued, read_packet, write_packet. The byte ring is a GuestMemory address
// range (`buf`, `ringSize` bytes) in the address space of whoever calls them.
// FlexRing adds the index handling around them as pvcalls does (indices read
// with atomics and a barrier before the data is touched; the data written or
// read before the index moves, with a barrier in between).
import { XEN_PAGE_SHIFT } from '../abi/limits.ts';
import type { GuestMemory } from '../machine/guest-memory.ts';
import type { RingIdx } from './ring.ts';

/** XEN_PAGE_SHIFT as ring.h defines it: 12, whatever the OS page size. */
export const FLEX_XEN_PAGE_SHIFT = XEN_PAGE_SHIFT;

// ---- data-interface page (`struct <name>_data_intf`) --------------------------------------------

export const FLEX_INTF_IN_CONS = 0;
export const FLEX_INTF_IN_PROD = 4;
/** pad1[56] */
export const FLEX_INTF_PAD1 = 8;
export const FLEX_INTF_OUT_CONS = 64;
export const FLEX_INTF_OUT_PROD = 68;
/** pad2[56] */
export const FLEX_INTF_PAD2 = 72;
export const FLEX_INTF_RING_ORDER = 128;
/** grant_ref_t ref[] (u32 each), one per page of the data area. */
export const FLEX_INTF_REF = 132;
/** sizeof(struct <name>_data_intf) without its flexible ref[] array. */
export const FLEX_INTF_SIZE = 132;

/** Highest order whose ring size still fits a RING_IDX (2^(20 + 11) = 2^31). */
export const FLEX_MAX_ORDER = 20;

/** XEN_FLEX_RING_SIZE(order): bytes of each of the two rings, 2^(order + 12 − 1). */
export function xenFlexRingSize(order: number): number {
  if (!Number.isSafeInteger(order) || order < 0 || order > FLEX_MAX_ORDER)
    throw new RangeError(`flex ring order must be 0..${FLEX_MAX_ORDER}, not ${order}`);
  return 2 ** (order + FLEX_XEN_PAGE_SHIFT - 1);
}

/** `<name>_mask`: idx & (ring_size − 1). */
export function flexMask(idx: RingIdx, ringSize: number): RingIdx {
  return ((idx >>> 0) & ((ringSize - 1) >>> 0)) >>> 0;
}

/** `<name>_get_ring_ptr`: address of index `idx` in the ring starting at `buf`. */
export function flexRingPtr(buf: number, idx: RingIdx, ringSize: number): number {
  return buf + flexMask(idx, ringSize);
}

/**
 * `<name>_queued`: bytes in the ring between cons and prod: 0 when the indices
 * are equal, `ringSize` when only their masked values are (full), otherwise the
 * masked distance. Never more than ringSize, whatever the indices.
 */
export function flexQueued(prod: RingIdx, cons: RingIdx, ringSize: number): number {
  if (prod >>> 0 === cons >>> 0) return 0;
  const p = flexMask(prod, ringSize);
  const c = flexMask(cons, ringSize);
  if (p === c) return ringSize;
  return p > c ? p - c : ringSize - (c - p);
}

/**
 * `<name>_read_packet`: copies out.length bytes from the ring at `buf` starting
 * at maskedCons into `out`, in one piece or split at the end of the ring, and
 * returns the new masked consumer index. The caller must not read more than
 * flexQueued() says is there. Where the C function would then copy past the
 * end of the ring (maskedCons < maskedProd with more bytes asked for than
 * there are up to the end), this throws instead.
 */
export function flexReadPacket(
  mem: GuestMemory,
  buf: number,
  out: Uint8Array,
  maskedProd: RingIdx,
  maskedCons: RingIdx,
  ringSize: number,
): RingIdx {
  const size = out.length;
  checkPacket(size, maskedCons, ringSize);
  const room = ringSize - maskedCons;
  if (maskedCons < maskedProd || size <= room) {
    if (size > room) throw new RangeError(`read of ${size} bytes at ${maskedCons} runs past the ring`);
    mem.readInto(buf + maskedCons, out);
  } else {
    mem.readInto(buf + maskedCons, out.subarray(0, room));
    mem.readInto(buf, out.subarray(room));
  }
  return flexMask(maskedCons + size, ringSize);
}

/**
 * `<name>_write_packet`: copies `data` into the ring at `buf` starting at
 * maskedProd, in one piece or split at the end of the ring, and returns the new
 * masked producer index. The caller must not write more than the free space
 * (ringSize − flexQueued()). Where the C function would copy past the end of
 * the ring (maskedProd < maskedCons with more bytes than there is room up to
 * the end), this throws instead.
 */
export function flexWritePacket(
  mem: GuestMemory,
  buf: number,
  data: Uint8Array,
  maskedProd: RingIdx,
  maskedCons: RingIdx,
  ringSize: number,
): RingIdx {
  const size = data.length;
  checkPacket(size, maskedProd, ringSize);
  const room = ringSize - maskedProd;
  if (maskedProd < maskedCons || size <= room) {
    if (size > room) throw new RangeError(`write of ${size} bytes at ${maskedProd} runs past the ring`);
    mem.write(buf + maskedProd, data);
  } else {
    mem.write(buf + maskedProd, data.subarray(0, room));
    mem.write(buf, data.subarray(room));
  }
  return flexMask(maskedProd + size, ringSize);
}

function checkPacket(size: number, masked: number, ringSize: number): void {
  if (!Number.isSafeInteger(ringSize) || ringSize < 1 || (ringSize & (ringSize - 1)) !== 0)
    throw new RangeError(`ring size must be a power of two, not ${ringSize}`);
  if (size > ringSize) throw new RangeError(`a packet of ${size} bytes exceeds the ${ringSize}-byte ring`);
  if (!Number.isSafeInteger(masked) || masked < 0 || masked >= ringSize)
    throw new RangeError(`masked index ${masked} is outside the ring`);
}

// ---- the data interface and the two rings -------------------------------------------------------

/** Which of the two byte rings: `in` (backend → frontend) or `out` (frontend → backend). */
export type FlexDirection = 'in' | 'out';

/**
 * The data-interface page (`struct <name>_data_intf`) as one end sees it: the
 * four indices as shared words, ring_order and the grant refs of the data area.
 */
export class FlexDataIntf {
  readonly mem: GuestMemory;
  readonly base: number;

  constructor(mem: GuestMemory, base: number) {
    if (!Number.isSafeInteger(base) || base < 0 || base % 4 !== 0)
      throw new RangeError(`data interface base must be a 4-aligned address, not ${base}`);
    this.mem = mem;
    this.base = base;
  }

  /** Most refs the page can hold (ref[] runs to the end of a 4 KiB page). */
  static readonly MAX_REFS = (4096 - FLEX_INTF_REF) / 4;

  cons(dir: FlexDirection): RingIdx {
    return this.mem.load32(this.base + (dir === 'in' ? FLEX_INTF_IN_CONS : FLEX_INTF_OUT_CONS));
  }
  setCons(dir: FlexDirection, v: RingIdx): void {
    this.mem.store32(this.base + (dir === 'in' ? FLEX_INTF_IN_CONS : FLEX_INTF_OUT_CONS), v >>> 0);
  }
  prod(dir: FlexDirection): RingIdx {
    return this.mem.load32(this.base + (dir === 'in' ? FLEX_INTF_IN_PROD : FLEX_INTF_OUT_PROD));
  }
  setProd(dir: FlexDirection, v: RingIdx): void {
    this.mem.store32(this.base + (dir === 'in' ? FLEX_INTF_IN_PROD : FLEX_INTF_OUT_PROD), v >>> 0);
  }

  /** ring_order: the data area is 2^ring_order pages (written by the frontend; untrusted by the backend). */
  get ringOrder(): number {
    return this.mem.readU32(this.base + FLEX_INTF_RING_ORDER);
  }
  set ringOrder(v: number) {
    this.mem.writeU32(this.base + FLEX_INTF_RING_ORDER, v >>> 0);
  }

  ref(i: number): number {
    return this.mem.readU32(this.base + FLEX_INTF_REF + 4 * checkRefIndex(i));
  }
  setRef(i: number, ref: number): void {
    this.mem.writeU32(this.base + FLEX_INTF_REF + 4 * checkRefIndex(i), ref >>> 0);
  }

  /** Zeroes the header (indices, pads, ring_order), as a freshly allocated zeroed page. */
  clear(): void {
    this.mem.fill(this.base, FLEX_INTF_SIZE, 0);
  }
}

function checkRefIndex(i: number): number {
  if (!Number.isSafeInteger(i) || i < 0 || i >= FlexDataIntf.MAX_REFS)
    throw new RangeError(`ref index must be 0..${FlexDataIntf.MAX_REFS - 1}, not ${i}`);
  return i;
}

/**
 * One end of a FLEX ring pair (`struct <name>_data`: in and out, each half of
 * the data area, `in` first as pvcalls lays it out), with the byte-stream
 * loops pvcalls builds on the helpers. The frontend produces on `out` and
 * consumes `in`; the backend the other way round. Neither end trusts the
 * other's index beyond what flexQueued allows (at most the ring size).
 */
export class FlexRing {
  readonly intf: FlexDataIntf;
  readonly mem: GuestMemory;
  /** Start of the data area (2^order pages) in this end's address space. */
  readonly data: number;
  readonly order: number;
  /** XEN_FLEX_RING_SIZE(order): bytes of each ring. */
  readonly ringSize: number;
  readonly side: 'front' | 'back';

  constructor(mem: GuestMemory, intfBase: number, data: number, order: number, side: 'front' | 'back') {
    this.intf = new FlexDataIntf(mem, intfBase);
    this.mem = mem;
    this.data = data;
    this.order = order;
    this.ringSize = xenFlexRingSize(order);
    this.side = side;
  }

  /** Start of a ring in this end's address space: `in` is the first half, `out` the second. */
  ringAddr(dir: FlexDirection): number {
    return dir === 'in' ? this.data : this.data + this.ringSize;
  }

  /** The ring this end writes: `out` for the frontend, `in` for the backend. */
  get sendDir(): FlexDirection {
    return this.side === 'front' ? 'out' : 'in';
  }
  /** The ring this end reads. */
  get recvDir(): FlexDirection {
    return this.side === 'front' ? 'in' : 'out';
  }

  /** Bytes waiting to be read by this end. */
  readable(): number {
    const d = this.recvDir;
    return flexQueued(this.intf.prod(d), this.intf.cons(d), this.ringSize);
  }

  /** Bytes this end may write now. */
  writable(): number {
    const d = this.sendDir;
    return this.ringSize - flexQueued(this.intf.prod(d), this.intf.cons(d), this.ringSize);
  }

  /**
   * Writes as much of `bytes` as fits; returns the number written. Reads both
   * indices, full barrier, writes the data (write_packet), write barrier, then
   * advances prod.
   */
  write(bytes: Uint8Array): number {
    const d = this.sendDir;
    const cons = this.intf.cons(d);
    const prod = this.intf.prod(d);
    this.mem.fence();
    const free = this.ringSize - flexQueued(prod, cons, this.ringSize);
    const len = Math.min(bytes.length, free);
    if (len === 0) return 0;
    flexWritePacket(
      this.mem,
      this.ringAddr(d),
      bytes.subarray(0, len),
      flexMask(prod, this.ringSize),
      flexMask(cons, this.ringSize),
      this.ringSize,
    );
    this.mem.fence();
    this.intf.setProd(d, prod + len);
    return len;
  }

  /**
   * Reads up to `max` bytes that are there; returns them (possibly none).
   * Reads both indices, barrier, copies the data (read_packet), full barrier,
   * then advances cons.
   */
  read(max: number): Uint8Array {
    const d = this.recvDir;
    const cons = this.intf.cons(d);
    const prod = this.intf.prod(d);
    this.mem.fence();
    const len = Math.min(Math.max(0, Math.floor(max)), flexQueued(prod, cons, this.ringSize));
    const out = new Uint8Array(len);
    if (len === 0) return out;
    flexReadPacket(
      this.mem,
      this.ringAddr(d),
      out,
      flexMask(prod, this.ringSize),
      flexMask(cons, this.ringSize),
      this.ringSize,
    );
    this.mem.fence();
    this.intf.setCons(d, cons + len);
    return out;
  }
}
