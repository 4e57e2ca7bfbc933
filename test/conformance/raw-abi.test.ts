// Conformance: drives the package root the way outside code does, with structs
// laid out by hand from xen/include/public/grant_table.h (x86_64) — literal
// offsets and numbers, none of this project's struct definitions or constants.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DomainHandle, Host } from 'gnttab';

const HYPERVISOR_memory_op = 12;
const HYPERVISOR_update_va_mapping = 14;
const HYPERVISOR_grant_table_op = 20;
const DOMID_SELF = 0x7ff0;

/** A little C-struct writer over a domain's memory. */
function put(dom: DomainHandle, addr: number, fields: [number, 1 | 2 | 4 | 8, number][], size: number): void {
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  for (const [off, len, val] of fields) {
    if (len === 2) v.setUint16(off, val, true);
    else if (len === 4) v.setUint32(off, val, true);
    else if (len === 8) v.setBigUint64(off, BigInt(val), true);
    else v.setUint8(off, val);
  }
  dom.memory.write(addr, b);
}

function i16(dom: DomainHandle, addr: number): number {
  const u = dom.memory.readU16(addr);
  return u >= 0x8000 ? u - 0x10000 : u;
}

/** PV: struct gnttab_setup_table { u16 dom; u32 nr_frames @4; i16 status @8; u64 frame_list @16 } */
function mapTablePv(dom: DomainHandle, va: number): void {
  const arg = dom.ramBytes - 4096;
  put(
    dom,
    arg,
    [
      [0, 2, DOMID_SELF],
      [4, 4, 1],
      [16, 8, arg + 512],
    ],
    24,
  );
  assert.equal(dom.hypercall(HYPERVISOR_grant_table_op, 2, arg, 1), 0);
  assert.equal(i16(dom, arg + 8), 0);
  const mfn = Number(dom.memory.readU64(arg + 512));
  assert.equal(dom.hypercall(HYPERVISOR_update_va_mapping, va, mfn * 4096 + 3, 0), 0);
}

/** HVM: struct xen_add_to_physmap { u16 domid; u16 size; u32 space @4; u64 idx @8; u64 gpfn @16 } */
function mapTableHvm(dom: DomainHandle, va: number, idx = 0): void {
  const arg = dom.ramBytes - 4096;
  put(
    dom,
    arg,
    [
      [0, 2, DOMID_SELF],
      [4, 4, 1],
      [8, 8, idx],
      [16, 8, va / 4096],
    ],
    24,
  );
  assert.equal(dom.hypercall(HYPERVISOR_memory_op, 7, arg), 0);
}

/** struct gnttab_map_grant_ref { u64 host_addr; u32 flags @8; u32 ref @12; u16 dom @16; i16 status @18; u32 handle @20; u64 dev_bus_addr @24 } */
function map(dom: DomainHandle, ref: number, granter: number, hostAddr: number, flags: number) {
  const arg = dom.ramBytes - 8192;
  put(
    dom,
    arg,
    [
      [0, 8, hostAddr],
      [8, 4, flags],
      [12, 4, ref],
      [16, 2, granter],
      [20, 4, 0xdead],
      [24, 8, 0],
    ],
    32,
  );
  const rc = dom.hypercall(HYPERVISOR_grant_table_op, 0, arg, 1);
  return {
    rc,
    status: i16(dom, arg + 18),
    handle: dom.memory.readU32(arg + 20),
    devBusAddr: dom.memory.readU64(arg + 24),
  };
}

/** struct gnttab_unmap_grant_ref { u64 host_addr; u64 dev_bus_addr @8; u32 handle @16; i16 status @20 } */
function unmap(dom: DomainHandle, hostAddr: number, handle: number) {
  const arg = dom.ramBytes - 8192;
  put(
    dom,
    arg,
    [
      [0, 8, hostAddr],
      [16, 4, handle],
    ],
    24,
  );
  const rc = dom.hypercall(HYPERVISOR_grant_table_op, 1, arg, 1);
  return { rc, status: i16(dom, arg + 20) };
}

describe('conformance: the raw hypercall ABI through the package root', () => {
  it('v1: grant_entry_v1 {u16 flags; u16 domid; u32 frame}, map, read, unmap (PV granter, HVM grantee)', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    mapTablePv(a, 0xc000_0000);
    a.memory.write(0x4000, new TextEncoder().encode('conformance'));
    const e = 0xc000_0000 + 12 * 8;
    put(
      a,
      e + 2,
      [
        [0, 2, b.domid],
        [2, 4, a.frameOf(0x4000)],
      ],
      6,
    );
    a.memory.writeU16(e, 1); // GTF_permit_access, last
    const m = map(b, 12, a.domid, 0xe000_0000, 2 /* GNTMAP_host_map */);
    assert.deepEqual([m.rc, m.status, m.handle], [0, 0, 0]);
    assert.equal(m.devBusAddr, BigInt(a.frameOf(0x4000) * 4096));
    assert.equal(new TextDecoder().decode(b.memory.read(0xe000_0000, 11)), 'conformance');
    assert.equal(a.memory.readU16(e), 1 | 0x08 | 0x10); // GTF_reading | GTF_writing set by Xen
    const u = unmap(b, 0xe000_0000, m.handle);
    assert.deepEqual([u.rc, u.status], [0, 0]);
    assert.equal(a.memory.readU16(e), 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('v2: set_version {u32 version}, grant_entry_v2 full_page {hdr; u32 pad0; u64 frame @8}, status word in the status frame', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const arg = a.ramBytes - 4096;
    put(a, arg, [[0, 4, 2]], 4);
    assert.equal(a.hypercall(HYPERVISOR_grant_table_op, 8, arg, 1), 0);
    assert.equal(a.memory.readU32(arg), 2);
    mapTableHvm(a, 0xc000_0000);
    mapTableHvm(a, 0xd000_0000, 0x8000_0000); // XENMAPIDX_grant_table_status
    const e = 0xc000_0000 + 9 * 16;
    put(
      a,
      e + 2,
      [
        [0, 2, b.domid],
        [6, 8, a.frameOf(0x7000)],
      ],
      14,
    );
    a.memory.writeU16(e, 1 | 4); // permit_access | readonly
    const m = map(b, 9, a.domid, 0xe000_0000, 2 | 4); // host_map | readonly
    assert.deepEqual([m.rc, m.status], [0, 0]);
    assert.equal(a.memory.readU16(0xd000_0000 + 9 * 2), 0x08); // GTF_reading in grant_status_t
    assert.equal(a.memory.readU16(e), 1 | 4); // header flags untouched in v2
    const w = map(b, 9, a.domid, 0xe000_1000, 2); // writable map of a readonly grant
    assert.equal(w.status, -1); // GNTST_general_error
    assert.equal(w.handle, 0xdead); // output fields keep what the caller passed on failure
    assert.deepEqual(unmap(b, 0xe000_0000, m.handle), { rc: 0, status: 0 });
    assert.equal(a.memory.readU16(0xd000_0000 + 9 * 2), 0);
    // struct gnttab_get_version { u16 dom; u16 pad; u32 version @4 }
    put(a, arg, [[0, 2, DOMID_SELF]], 8);
    assert.equal(a.hypercall(HYPERVISOR_grant_table_op, 10, arg, 1), 0);
    assert.equal(a.memory.readU32(arg + 4), 2);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('copy: struct gnttab_copy {source {u64 u; u16 domid @8; u16 offset @10}; dest @16; u16 len @32; u16 flags @34; i16 status @36}', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    mapTablePv(a, 0xc000_0000);
    a.memory.write(0x2000 + 100, new TextEncoder().encode('copied bytes'));
    put(
      a,
      0xc000_0000 + 8 * 8 + 2,
      [
        [0, 2, b.domid],
        [2, 4, a.frameOf(0x2000)],
      ],
      6,
    );
    a.memory.writeU16(0xc000_0000 + 8 * 8, 1 | 4);
    const arg = b.ramBytes - 4096;
    put(
      b,
      arg,
      [
        [0, 8, 8],
        [8, 2, a.domid],
        [10, 2, 100],
        [16, 8, b.frameOf(0x3000)],
        [24, 2, DOMID_SELF],
        [26, 2, 7],
        [32, 2, 12],
        [34, 2, 1 /* GNTCOPY_source_gref */],
      ],
      40,
    );
    assert.equal(b.hypercall(HYPERVISOR_grant_table_op, 5, arg, 1), 0);
    assert.equal(i16(b, arg + 36), 0);
    assert.equal(new TextDecoder().decode(b.memory.read(0x3000 + 7, 12)), 'copied bytes');
    assert.equal(a.memory.readU16(0xc000_0000 + 8 * 8), 1 | 4); // nothing left pinned
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('query_size {u16 dom; u32 nr_frames @4; u32 max_nr_frames @8; i16 status @12} and the errno of a bad count', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxGrantFrames: 10 });
    const arg = a.ramBytes - 4096;
    put(a, arg, [[0, 2, DOMID_SELF]], 16);
    assert.equal(a.hypercall(HYPERVISOR_grant_table_op, 6, arg, 1), 0);
    assert.deepEqual([a.memory.readU32(arg + 4), a.memory.readU32(arg + 8), i16(a, arg + 12)], [1, 10, 0]);
    assert.equal(a.hypercall(HYPERVISOR_grant_table_op, 6, arg, 2), -22); // -EINVAL
    assert.equal(a.hypercall(HYPERVISOR_grant_table_op, 4, arg, 1), -38); // transfer on HVM: -ENOSYS
    assert.equal(a.hypercall(99), -38);
  });
});
