// A domain's view of memory as its CPU sees it: addresses in its own address
// space (PV: virtual; HVM: guest-physical), translated page by page through
// its table in machine memory (mmu.ts). Usable from any thread that holds the
// machine memory. A fault throws GuestFault, as the guest would take a page
// fault. Words shared with other parties (grant flags, status words, ring
// indices, event words) are accessed through the atomic operations, which go
// through the one SharedWords module.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { ByteAccess } from '../abi/struct.ts';
import type { MachineMemory } from './machine-memory.ts';
import { type MmuKind, translate } from './mmu.ts';

/** A guest access to an address it may not touch (unmapped, or a write through a read-only mapping). */
export class GuestFault extends Error {
  readonly domid: number;
  readonly addr: number;
  readonly write: boolean;
  constructor(domid: number, addr: number, write: boolean, why?: string) {
    super(
      `d${domid}: page fault on ${write ? 'write to' : 'read from'} 0x${addr.toString(16)} ` +
        `(${why ?? `nothing mapped there${write ? ', or mapped read-only' : ''}`})`,
    );
    this.name = 'GuestFault';
    this.domid = domid;
    this.addr = addr;
    this.write = write;
  }
}

/** How a bad argument reads in an error message. */
function describe(x: unknown): string {
  if (typeof x === 'string') return `the string ${JSON.stringify(x.length > 20 ? `${x.slice(0, 20)}…` : x)}`;
  if (typeof x === 'number' || typeof x === 'bigint' || typeof x === 'boolean')
    return `${typeof x} ${String(x)}`;
  return x === null ? 'null' : typeof x;
}

export interface GuestMemoryTarget {
  domid: number;
  kind: MmuKind;
  /** Root frame of the domain's translation table. */
  root: number;
  /** False once the domain is gone: every access faults. */
  alive?: () => boolean;
}

/**
 * A domain's address space as its CPU sees it (PV: virtual through its page
 * table; HVM: guest-physical through the P2M), over the machine memory: byte
 * reads and writes, and the atomics every shared word goes through.
 */
export class GuestMemory implements ByteAccess {
  readonly machine: MachineMemory;
  readonly domid: number;
  private readonly kind: MmuKind;
  private readonly root: number;
  private readonly alive: () => boolean;

  constructor(machine: MachineMemory, target: GuestMemoryTarget) {
    this.machine = machine;
    this.domid = target.domid;
    this.kind = target.kind;
    this.root = target.root;
    this.alive = target.alive ?? (() => true);
  }

  /**
   * An address is an integer number; anything else (a string, null, a
   * boolean, a bigint, a fraction) is the caller's bug, a TypeError, before
   * any arithmetic could coerce it (null + 0 is address 0).
   */
  private checkAddr(addr: unknown): asserts addr is number {
    if (typeof addr !== 'number' || !Number.isInteger(addr)) {
      throw new TypeError(`d${this.domid}: a guest address must be an integer number, got ${describe(addr)}`);
    }
  }

  /** A byte count is a non-negative integer number. */
  private checkLength(len: unknown): asserts len is number {
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0) {
      throw new TypeError(`d${this.domid}: a length must be a non-negative integer, got ${describe(len)}`);
    }
  }

  /** Machine byte address of the page holding addr (faults throw). */
  private page(addr: number, write: boolean): number {
    this.checkAddr(addr);
    // An integer the guest cannot address (negative, or beyond 2^53) faults as it would.
    if (addr < 0 || addr > Number.MAX_SAFE_INTEGER) throw new GuestFault(this.domid, addr, write);
    if (!this.alive()) throw new GuestFault(this.domid, addr, write, 'the domain has been destroyed');
    const base = translate(this.machine, this.kind, this.root, addr, write);
    if (base < 0) throw new GuestFault(this.domid, addr, write);
    return base;
  }

  /** Machine address of an aligned word at addr (faults throw). */
  private word(addr: number, size: 2 | 4, write: boolean): number {
    this.checkAddr(addr);
    if (addr % size !== 0)
      throw new RangeError(`d${this.domid}: unaligned ${size * 8}-bit atomic at 0x${addr.toString(16)}`);
    return this.page(addr, write) + (addr % XEN_PAGE_SIZE);
  }

  /**
   * The frame number this domain writes into a grant entry for the page at
   * addr: PV, the MFN its page table maps there (a PV guest reads its own page
   * tables); HVM, the GFN (the page number itself). Faults when nothing is mapped.
   */
  frameOf(addr: number): number {
    const base = this.page(addr, false);
    return this.kind === 'pv' ? base / XEN_PAGE_SIZE : Math.floor(addr / XEN_PAGE_SIZE);
  }

  /** True when addr can be accessed (read, or written) without a fault. */
  mapped(addr: number, write = false): boolean {
    this.checkAddr(addr);
    return (
      Number.isSafeInteger(addr) &&
      addr >= 0 &&
      this.alive() &&
      translate(this.machine, this.kind, this.root, addr, write) >= 0
    );
  }

  /**
   * PV only: the machine frame the domain's page table maps at addr, or -1 when
   * nothing is mapped there. A PV kernel reads its own page tables (Linux's
   * arbitrary_virt_to_mfn) to learn the MFN it writes into a grant entry. A
   * translated (HVM) guest never sees machine frames: its frames are GFNs.
   */
  virtToMfn(addr: number): number {
    if (this.kind !== 'pv') throw new TypeError(`d${this.domid}: a translated guest has no MFNs`);
    if (!this.mapped(addr)) return -1;
    return translate(this.machine, this.kind, this.root, addr, false) / XEN_PAGE_SIZE;
  }

  read(addr: number, len: number): Uint8Array {
    this.checkAddr(addr);
    this.checkLength(len);
    const out = new Uint8Array(len);
    this.readInto(addr, out);
    return out;
  }

  readInto(addr: number, out: Uint8Array): void {
    this.checkAddr(addr);
    if (!(out instanceof Uint8Array))
      throw new TypeError(`d${this.domid}: readInto fills a Uint8Array, got ${describe(out)}`);
    const u8 = this.machine.u8;
    const len = out.length;
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(len - done, XEN_PAGE_SIZE - off);
      const base = this.page(a, false) + off;
      out.set(u8.subarray(base, base + n), done);
      done += n;
    }
  }

  write(addr: number, bytes: Uint8Array): void {
    this.checkAddr(addr);
    if (!(bytes instanceof Uint8Array))
      throw new TypeError(`d${this.domid}: write takes a Uint8Array, got ${describe(bytes)}`);
    const u8 = this.machine.u8;
    let done = 0;
    while (done < bytes.length) {
      const a = addr + done;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(bytes.length - done, XEN_PAGE_SIZE - off);
      u8.set(bytes.subarray(done, done + n), this.page(a, true) + off);
      done += n;
    }
  }

  fill(addr: number, len: number, value = 0): void {
    this.checkAddr(addr);
    this.checkLength(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(len - done, XEN_PAGE_SIZE - off);
      const base = this.page(a, true) + off;
      this.machine.u8.fill(value, base, base + n);
      done += n;
    }
  }

  /** Copies len bytes from src to dst inside this address space (memmove semantics per page run). */
  copy(dst: number, src: number, len: number): void {
    this.checkAddr(dst);
    this.write(dst, this.read(src, len));
  }

  readU8(addr: number): number {
    this.checkAddr(addr);
    return this.machine.u8[this.page(addr, false) + (addr % XEN_PAGE_SIZE)]!;
  }
  readU16(addr: number): number {
    this.checkAddr(addr);
    return addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 2
      ? this.machine.view.getUint16(this.page(addr, false) + (addr % XEN_PAGE_SIZE), true)
      : this.dv(addr, 2).getUint16(0, true);
  }
  readU32(addr: number): number {
    this.checkAddr(addr);
    return addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 4
      ? this.machine.view.getUint32(this.page(addr, false) + (addr % XEN_PAGE_SIZE), true)
      : this.dv(addr, 4).getUint32(0, true);
  }
  readU64(addr: number): bigint {
    this.checkAddr(addr);
    return addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 8
      ? this.machine.view.getBigUint64(this.page(addr, false) + (addr % XEN_PAGE_SIZE), true)
      : this.dv(addr, 8).getBigUint64(0, true);
  }
  private dv(addr: number, len: number): DataView {
    return new DataView(this.read(addr, len).buffer);
  }
  writeU8(addr: number, v: number): void {
    this.checkAddr(addr);
    this.machine.u8[this.page(addr, true) + (addr % XEN_PAGE_SIZE)] = v & 0xff;
  }
  writeU16(addr: number, v: number): void {
    this.checkAddr(addr);
    if (addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 2)
      this.machine.view.setUint16(this.page(addr, true) + (addr % XEN_PAGE_SIZE), v & 0xffff, true);
    else
      this.write(
        addr,
        this.le(2, (d) => d.setUint16(0, v & 0xffff, true)),
      );
  }
  writeU32(addr: number, v: number): void {
    this.checkAddr(addr);
    if (addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 4)
      this.machine.view.setUint32(this.page(addr, true) + (addr % XEN_PAGE_SIZE), v >>> 0, true);
    else
      this.write(
        addr,
        this.le(4, (d) => d.setUint32(0, v >>> 0, true)),
      );
  }
  writeU64(addr: number, v: number | bigint): void {
    this.checkAddr(addr);
    const x = BigInt.asUintN(64, BigInt(v));
    if (addr % XEN_PAGE_SIZE <= XEN_PAGE_SIZE - 8)
      this.machine.view.setBigUint64(this.page(addr, true) + (addr % XEN_PAGE_SIZE), x, true);
    else
      this.write(
        addr,
        this.le(8, (d) => d.setBigUint64(0, x, true)),
      );
  }
  /** Little-endian bytes for a value that straddles a page boundary. */
  private le(n: number, put: (d: DataView) => void): Uint8Array {
    const b = new Uint8Array(n);
    put(new DataView(b.buffer));
    return b;
  }

  // ---- shared words: atomic, ordered, through the one SharedWords module ------------------------

  load16(addr: number): number {
    return this.machine.words.load16(this.word(addr, 2, false));
  }
  store16(addr: number, v: number): void {
    this.machine.words.store16(this.word(addr, 2, true), v);
  }
  cmpxchg16(addr: number, expected: number, replacement: number): number {
    return this.machine.words.cmpxchg16(this.word(addr, 2, true), expected, replacement);
  }
  or16(addr: number, bits: number): number {
    return this.machine.words.or16(this.word(addr, 2, true), bits);
  }
  and16(addr: number, bits: number): number {
    return this.machine.words.and16(this.word(addr, 2, true), bits);
  }
  load32(addr: number): number {
    return this.machine.words.load32(this.word(addr, 4, false));
  }
  store32(addr: number, v: number): void {
    this.machine.words.store32(this.word(addr, 4, true), v);
  }
  cmpxchg32(addr: number, expected: number, replacement: number): number {
    return this.machine.words.cmpxchg32(this.word(addr, 4, true), expected, replacement);
  }
  /** Machine address of the Int32 word at addr, for waiting on it (faults throw). */
  wordAddr(addr: number): number {
    return this.word(addr, 4, false);
  }
  /** Full barrier (smp_mb). */
  fence(): void {
    this.machine.words.fence();
  }
}
