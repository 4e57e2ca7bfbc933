// A domain's view of memory as its CPU sees it: addresses in its own address
// space (PV: virtual; HVM: guest-physical), translated page by page. A fault
// throws GuestFault, as the guest would take a page fault.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { ByteAccess } from '../abi/struct.ts';
import type { Domain } from '../xen/domain.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';

export class GuestFault extends Error {
  readonly domid: number;
  readonly addr: number;
  readonly write: boolean;
  constructor(domid: number, addr: number, write: boolean) {
    super(
      `d${domid}: page fault on ${write ? 'write to' : 'read from'} 0x${addr.toString(16)} ` +
        `(nothing mapped there${write ? ', or mapped read-only' : ''})`,
    );
    this.name = 'GuestFault';
    this.domid = domid;
    this.addr = addr;
    this.write = write;
  }
}

export class GuestMemory implements ByteAccess {
  private readonly hv: Hypervisor;
  private readonly d: Domain;

  constructor(hv: Hypervisor, d: Domain) {
    this.hv = hv;
    this.d = d;
  }

  private page(addr: number, write: boolean): number {
    if (!Number.isSafeInteger(addr) || addr < 0) throw new GuestFault(this.d.domid, addr, write);
    const base = this.d.isDying ? -1 : this.d.translatePage(addr, write);
    if (base < 0) throw new GuestFault(this.d.domid, addr, write);
    return base;
  }

  read(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    const u8 = this.hv.machine.u8;
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(len - done, XEN_PAGE_SIZE - off);
      const base = this.page(a, false) + off;
      out.set(u8.subarray(base, base + n), done);
      done += n;
    }
    return out;
  }

  write(addr: number, bytes: Uint8Array): void {
    const u8 = this.hv.machine.u8;
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
    this.write(addr, new Uint8Array(len).fill(value));
  }

  private view(addr: number, len: number): DataView {
    const b = this.read(addr, len);
    return new DataView(b.buffer);
  }

  readU8(addr: number): number {
    return this.view(addr, 1).getUint8(0);
  }
  readU16(addr: number): number {
    return this.view(addr, 2).getUint16(0, true);
  }
  readU32(addr: number): number {
    return this.view(addr, 4).getUint32(0, true);
  }
  readU64(addr: number): bigint {
    return this.view(addr, 8).getBigUint64(0, true);
  }
  writeU8(addr: number, v: number): void {
    this.write(addr, Uint8Array.of(v & 0xff));
  }
  writeU16(addr: number, v: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v & 0xffff, true);
    this.write(addr, b);
  }
  writeU32(addr: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(addr, b);
  }
  writeU64(addr: number, v: number | bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
    this.write(addr, b);
  }
}
