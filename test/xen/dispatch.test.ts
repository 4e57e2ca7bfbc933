// The hypercall dispatcher (reference §5), which ops each kind of guest may use
// (DESIGN.md, Xen's hvm_grant_table_op), the raw register interface, and the
// domain lifecycle (§12): grantee and granter destruction, zombies, no leaks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_SELF,
  DomainDestroyedError,
  type DomainHandle,
  encodeArray,
  GNTCOPY_source_gref,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_page,
  GNTST_okay,
  GNTTABOP_cache_flush,
  GNTTABOP_copy,
  GNTTABOP_dump_table,
  GNTTABOP_get_status_frames,
  GNTTABOP_get_version,
  GNTTABOP_map_grant_ref,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_transfer,
  GNTTABOP_unmap_and_replace,
  GNTTABOP_unmap_grant_ref,
  GTF_reading,
  GTF_writing,
  GuestFault,
  gnttab_copy,
  gnttab_get_status_frames,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_swap_grant_ref,
  Host,
  readStructArray,
  type StructDef,
  type StructValue,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
  XEN_ESRCH,
} from '../../src/index.ts';
import {
  addToPhysmap,
  entryAddr,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  mapRef,
  one,
  STATUS_VA,
  scratch,
  setVersion,
  statusBits,
  unmapRef,
} from '../helpers/guest.ts';
import { COMBOS, forEach, KIND_ONLY, KINDS, PAIRS, VERSIONS } from '../helpers/matrix.ts';

const OWNER_NONE = -1;
const GNTTAB_HVM_OPS = new Set([
  GNTTABOP_query_size,
  GNTTABOP_setup_table,
  GNTTABOP_set_version,
  GNTTABOP_get_version,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GNTTABOP_swap_grant_ref,
]);
/** Every command number up to cache_flush, plus a few unknown ones. */
const ALL_CMDS = [...Array.from({ length: 13 }, (_, i) => i), 13, 99, 0xfff];

function newHost(): Host {
  return new Host({ memoryMiB: 16 });
}

function gnttab(
  dom: DomainHandle,
  cmd: number | bigint,
  uop: number | bigint,
  count: number | bigint,
): number {
  return dom.hypercall(__HYPERVISOR_grant_table_op, cmd, uop, count);
}

/** Writes structs at `addr` in the guest's memory and returns a reader for them. */
function place<F extends string>(
  dom: DomainHandle,
  addr: number,
  def: StructDef<F>,
  ops: Partial<StructValue<F>>[],
) {
  dom.memory.write(addr, encodeArray(def, ops));
  return () => readStructArray(dom.memory, addr, def, ops.length);
}

function copyFrom(b: DomainHandle, a: DomainHandle, ref: number, len: number): number {
  return one(
    gnttabOp(b, GNTTABOP_copy, gnttab_copy, [
      {
        source_u: ref,
        source_domid: a.domid,
        source_offset: 0,
        dest_u: b.frameOf(0x8000),
        dest_domid: DOMID_SELF,
        dest_offset: 0,
        len,
        flags: GNTCOPY_source_gref,
      },
    ]),
  ).status;
}

/** Makes the last page below 4 GiB usable by the guest (PV: a RAM page; HVM: a grant frame). */
function mapTopPage(dom: DomainHandle): number {
  const top = 0xffff_f000;
  if (dom.kind === 'pv') {
    const rc = dom.hypercall(
      __HYPERVISOR_update_va_mapping,
      top,
      dom.frameOf(0x9000) * 4096 + (_PAGE_PRESENT | _PAGE_RW),
      0,
    );
    assert.equal(rc, 0);
  } else {
    assert.equal(addToPhysmap(dom, 1, top / 4096), 0);
  }
  return top;
}

// ---------------------------------------------------------------------------------------------

describe('dispatcher rules (§5)', () => {
  it('count >= 2^31 is -EINVAL for every command; HVM filters the command first (§5 rule 1)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      for (const cmd of ALL_CMDS) {
        for (const count of [0x8000_0000, 0xffff_ffff]) {
          const expect = kind === 'hvm' && !GNTTAB_HVM_OPS.has(cmd) ? -XEN_ENOSYS : -XEN_EINVAL;
          assert.equal(gnttab(d, cmd, scratch(d), count), expect, `cmd ${cmd} count ${count}`);
        }
      }
      // Just below: not an -EINVAL, but an array that does not fit (-EFAULT).
      assert.equal(gnttab(d, GNTTABOP_swap_grant_ref, scratch(d), 0x7fff_ffff), -XEN_EFAULT);
      assert.equal(gnttab(d, GNTTABOP_map_grant_ref, scratch(d), 0x7fff_ffff), -XEN_EFAULT);
      assert.equal(d.xen.gt.version, 1);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('cmd bits above 11 are -EINVAL on PV (cache_flush excepted) but -ENOSYS on HVM, with no effect (§5 rule 2)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const addr = scratch(d, 3);
      for (let op = 0; op <= 12; op++) {
        for (const high of [1 << 12, 0x8000_0000, 0xffff_f000]) {
          const cmd = (high | op) >>> 0;
          let expect = -XEN_EINVAL;
          if (kind === 'hvm' || op === GNTTABOP_cache_flush) expect = -XEN_ENOSYS;
          assert.equal(gnttab(d, cmd, addr, 1), expect, `cmd 0x${cmd.toString(16)}`);
        }
      }
      // A set_version with continuation bits does nothing, not even the write-back.
      const read = place(d, addr, gnttab_set_version, [{ version: 2 }]);
      assert.notEqual(gnttab(d, GNTTABOP_set_version | (1 << 12), addr, 1), 0);
      assert.equal(d.xen.gt.version, 1);
      assert.equal(read()[0]!.version, 2);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('unknown commands, dump_table (3) and cache_flush (12, Arm only) are -ENOSYS (§5 rule 7, §6.5, §6.13)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      for (const cmd of [GNTTABOP_dump_table, GNTTABOP_cache_flush, 13, 100, 0xfff]) {
        for (const count of [0, 1])
          assert.equal(gnttab(d, cmd, scratch(d), count), -XEN_ENOSYS, `cmd ${cmd}`);
      }
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('HVM gets -ENOSYS for transfer, unmap_and_replace, get_status_frames, dump_table and cache_flush; PV may use them', () => {
    const host = newHost();
    const pv = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const hvm = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    for (const d of [pv, hvm]) {
      setVersion(d, 2);
      const gsf = gnttabOp(d, GNTTABOP_get_status_frames, gnttab_get_status_frames, [
        { dom: DOMID_SELF, nr_frames: 1, frame_list: scratch(d, 4), status: 0x7777 },
      ]);
      const isHvm = d.kind === 'hvm';
      assert.equal(gsf.rc, isHvm ? -XEN_ENOSYS : 0);
      assert.equal(one(gsf).status, isHvm ? 0x7777 : GNTST_okay);
      assert.equal(gnttab(d, GNTTABOP_transfer, scratch(d), 0), isHvm ? -XEN_ENOSYS : 0);
      assert.equal(gnttab(d, GNTTABOP_unmap_and_replace, scratch(d), 0), isHvm ? -XEN_ENOSYS : 0);
      for (const cmd of [GNTTABOP_dump_table, GNTTABOP_cache_flush])
        assert.equal(gnttab(d, cmd, scratch(d), 1), -XEN_ENOSYS);
      // The eight HVM ops all get through the filter.
      for (const cmd of [
        GNTTABOP_map_grant_ref,
        GNTTABOP_unmap_grant_ref,
        GNTTABOP_copy,
        GNTTABOP_swap_grant_ref,
      ])
        assert.equal(gnttab(d, cmd, scratch(d), 0), 0, `cmd ${cmd}`);
      const q = gnttabOp(d, GNTTABOP_query_size, gnttab_query_size, [{ dom: DOMID_SELF }]);
      assert.deepEqual([q.rc, one(q).status, one(q).nr_frames], [0, GNTST_okay, 1]);
    }
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('an unknown hypercall number is -ENOSYS', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      for (const nr of [0, 1, 13, 19, 21, 40, 63, 1000, -1, 2 ** 40]) {
        assert.equal(d.hypercall(nr, GNTTABOP_setup_table, scratch(d), 1), -XEN_ENOSYS, `nr ${nr}`);
      }
      assert.equal(d.xen.gt.nrGrantFrames, 1);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  // guest_handle_okay is always true for a translated caller (paging_mode_external):
  // an HVM batch runs its leading readable elements and faults at the first other.
  it('an array whose end lies beyond 4 GiB: PV -EFAULT before any element runs; HVM runs the elements below 4 GiB, then -EFAULT (guest_handle_okay, §5 rule 3)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const d = host.createDomain({ kind, memoryKiB: 256 });
      mapGrantTable(a);
      grantAccess(a, 10, d.domid, a.frameOf(0x3000));
      const top = mapTopPage(d);
      // One map element that ends exactly at 4 GiB is fine...
      const mapAt = 0x1_0000_0000 - 32;
      const op = { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid, status: 0x7777 };
      let read = place(d, mapAt, gnttab_map_grant_ref, [op]);
      assert.equal(gnttab(d, GNTTABOP_map_grant_ref, mapAt, 1), 0);
      const first = read()[0]!;
      assert.equal(first.status, GNTST_okay);
      assert.equal(unmapRef(d, first.handle), GNTST_okay);
      // ...but two would run past it: PV processes nothing, HVM the first element.
      const hvm = d.kind === 'hvm';
      read = place(d, mapAt, gnttab_map_grant_ref, [op]);
      assert.equal(gnttab(d, GNTTABOP_map_grant_ref, mapAt, 2), -XEN_EFAULT);
      const m = read()[0]!;
      assert.equal(m.status, hvm ? GNTST_okay : 0x7777);
      assert.equal(a.xen.gt.activeEntry(10).pin, hvm ? 1 : 0);
      assert.equal(statusBits(a, 10), hvm ? GTF_reading | GTF_writing : 0);
      if (hvm) assert.equal(unmapRef(d, m.handle), GNTST_okay);
      // The same for swap (12-byte elements) and copy (40-byte elements).
      if (d.kind === 'pv') mapGrantTable(d);
      else mapGrantTable(d, 1);
      grantAccess(d, 20, 1, 0x2020);
      const swapAt = 0x1_0000_0000 - 12;
      const readSwap = place(d, swapAt, gnttab_swap_grant_ref, [{ ref_a: 20, ref_b: 21, status: 0x7777 }]);
      assert.equal(gnttab(d, GNTTABOP_swap_grant_ref, swapAt, 2), -XEN_EFAULT);
      assert.equal(readSwap()[0]!.status, hvm ? GNTST_okay : 0x7777);
      assert.equal(d.memory.readU32(entryAddr(d, hvm ? 21 : 20) + 4), 0x2020);
      const copyAt = 0x1_0000_0000 - 40;
      d.memory.writeU32(0x8000, 0);
      a.memory.writeU32(0x3000, 0xc0c0);
      place(d, copyAt, gnttab_copy, [
        {
          source_u: 10,
          source_domid: a.domid,
          dest_u: d.frameOf(0x8000),
          dest_domid: DOMID_SELF,
          len: 4,
          flags: GNTCOPY_source_gref,
          status: 0x7777,
        },
      ]);
      assert.equal(gnttab(d, GNTTABOP_copy, copyAt, 3), -XEN_EFAULT);
      assert.equal(d.memory.readU32(0x8000), hvm ? 0xc0c0 : 0);
      assert.equal(gnttab(d, GNTTABOP_copy, copyAt, 1), 0);
      assert.equal(d.memory.readU32(0x8000), 0xc0c0);
      // (HVM: the top page is grant frame 1, whose last entries the structs overwrote.)
      d.memory.fill(top, 4096, 0);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a fault on a later element ends the batch with -EFAULT; earlier elements stay done (§5 rule 4)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const d = host.createDomain({ kind, memoryKiB: 256 });
      mapGrantTable(a);
      mapGrantTable(d);
      grantAccess(a, 10, d.domid, a.frameOf(0x3000));
      // Element 0 is the last thing in RAM; element 1 would be in unmapped space.
      const mapAt = d.ramBytes - 32;
      const read = place(d, mapAt, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid, status: 0x7777 },
      ]);
      assert.equal(gnttab(d, GNTTABOP_map_grant_ref, mapAt, 2), -XEN_EFAULT);
      const m = read()[0]!;
      assert.equal(m.status, GNTST_okay);
      assert.equal(a.xen.gt.activeEntry(10).pin, 1);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(unmapRef(d, m.handle), GNTST_okay);
      grantAccess(d, 20, 1, 0x2020);
      const swapAt = d.ramBytes - 12;
      const readSwap = place(d, swapAt, gnttab_swap_grant_ref, [{ ref_a: 20, ref_b: 21, status: 0x7777 }]);
      assert.equal(gnttab(d, GNTTABOP_swap_grant_ref, swapAt, 5), -XEN_EFAULT);
      assert.equal(readSwap()[0]!.status, GNTST_okay);
      assert.equal(d.memory.readU32(entryAddr(d, 21) + 4), 0x2020);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a successful hypercall returns 0; element errors go only into their status (§5 rule 8)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      mapGrantTable(a);
      grantAccess(a, 10, b.domid, a.frameOf(0x3000));
      grantAccess(a, 11, b.domid, a.frameOf(0x4000));
      const r = gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid },
        { host_addr: MAP_VA + 0x1000, flags: GNTMAP_host_map, ref: 5000, dom: a.domid },
        { host_addr: MAP_VA + 0x2000, flags: GNTMAP_host_map, ref: 11, dom: 0x1234 },
        { host_addr: MAP_VA + 0x3000, flags: GNTMAP_host_map, ref: 11, dom: a.domid },
      ]);
      assert.equal(r.rc, 0);
      assert.deepEqual(
        r.out.map((o) => o.status),
        [GNTST_okay, GNTST_bad_gntref, GNTST_bad_domain, GNTST_okay],
      );
      assert.equal(unmapRef(b, r.out[0]!.handle), GNTST_okay);
      assert.equal(unmapRef(b, r.out[3]!.handle, MAP_VA + 0x3000), GNTST_okay);
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

describe('raw register arguments', () => {
  it('bigint arguments behave exactly like numbers; cmd and count keep only their low 32 bits', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const addr = scratch(d, 3);
      const q = (cmd: number | bigint, uop: number | bigint, count: number | bigint) => {
        const read = place(d, addr, gnttab_query_size, [{ dom: DOMID_SELF, status: 0x7777 }]);
        return [gnttab(d, cmd, uop, count), read()[0]!.status, read()[0]!.max_nr_frames];
      };
      const ok = [0, GNTST_okay, 64];
      assert.deepEqual(q(GNTTABOP_query_size, addr, 1), ok);
      assert.deepEqual(q(BigInt(GNTTABOP_query_size), BigInt(addr), 1n), ok);
      // unsigned int cmd and count: the upper half of the register is not looked at.
      assert.deepEqual(q(0x1_0000_0006n, BigInt(addr), 0x5_0000_0001n), ok);
      assert.deepEqual(q(0x1_0000_0006, addr, 0x5_0000_0001), ok);
      // The pointer is a full 64-bit value: one above 4 GiB faults.
      assert.deepEqual(q(6n, BigInt(addr) + 0x1_0000_0000n, 1n), [-XEN_EFAULT, 0x7777, 0]);
      assert.deepEqual(q(6, addr + 0x1_0000_0000, 1), [-XEN_EFAULT, 0x7777, 0]);
      // A map through bigint arguments.
      mapGrantTable(a);
      grantAccess(a, 10, d.domid, a.frameOf(0x3000));
      const read = place(d, addr, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map | GNTMAP_readonly, ref: 10, dom: a.domid },
      ]);
      assert.equal(gnttab(d, BigInt(GNTTABOP_map_grant_ref), BigInt(addr), 1n), 0);
      assert.equal(read()[0]!.status, GNTST_okay);
      assert.equal(a.xen.gt.activeEntry(10).pin, 0x100);
      assert.equal(unmapRef(d, read()[0]!.handle), GNTST_okay);
      // update_va_mapping and memory_op take bigints too.
      if (kind === 'pv') {
        const pte = BigInt(d.frameOf(0x5000) * 4096 + (_PAGE_PRESENT | _PAGE_RW));
        assert.equal(d.hypercall(__HYPERVISOR_update_va_mapping, 0xa000_0000n, pte, 0n), 0);
        d.memory.writeU32(0xa000_0000, 77);
        assert.equal(d.memory.readU32(0x5000), 77);
      } else {
        assert.equal(addToPhysmap(d, 0, 0xc0000), 0);
        assert.equal(d.hypercall(__HYPERVISOR_memory_op, 7n, BigInt(scratch(d, 1))), 0);
      }
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('negative numbers wrap to the C unsigned types as their bigint twins do (count -1 is -EINVAL)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const addr = scratch(d);
      for (const cmd of [GNTTABOP_map_grant_ref, GNTTABOP_swap_grant_ref, GNTTABOP_query_size]) {
        assert.equal(gnttab(d, cmd, addr, -1), -XEN_EINVAL, `cmd ${cmd}`);
        assert.equal(gnttab(d, cmd, addr, -1n), -XEN_EINVAL, `cmd ${cmd}`);
        // -2^31 as a count is 0x80000000.
        assert.equal(gnttab(d, cmd, addr, -0x8000_0000), -XEN_EINVAL);
      }
      // cmd -1 is 0xffffffff: continuation bits set (PV -EINVAL), not a known op (HVM -ENOSYS).
      const expect = kind === 'pv' ? -XEN_EINVAL : -XEN_ENOSYS;
      assert.equal(gnttab(d, -1, addr, 1), expect);
      assert.equal(gnttab(d, -1n, addr, 1), expect);
      // cmd -4090 is 0xfffff006: query_size with high bits.
      assert.equal(gnttab(d, -4090, addr, 1), gnttab(d, -4090n, addr, 1));
      assert.equal(gnttab(d, -4090, addr, 1), expect);
      // A negative pointer is a huge address: -EFAULT.
      assert.equal(gnttab(d, GNTTABOP_query_size, -4096, 1), -XEN_EFAULT);
      assert.equal(gnttab(d, GNTTABOP_query_size, -4096n, 1), -XEN_EFAULT);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('odd integers (huge, negative, -0, bigints beyond 64 bits, missing ones) never throw', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const junk: unknown[] = [
        -0,
        2 ** 53,
        2 ** 64,
        2 ** 70,
        -(2 ** 63),
        Number.MAX_VALUE,
        -(2n ** 64n),
        2n ** 64n + 6n,
        undefined,
      ];
      const raw = d.hypercall.bind(d) as (nr: number, ...args: unknown[]) => number;
      for (const nr of [
        __HYPERVISOR_grant_table_op,
        __HYPERVISOR_memory_op,
        __HYPERVISOR_update_va_mapping,
      ]) {
        for (const x of junk) {
          const calls = [
            [x, scratch(d), 1],
            [GNTTABOP_query_size, x, 1],
            [GNTTABOP_get_version, scratch(d), x],
            [x, x, x],
            [],
          ];
          for (const args of calls) {
            const rc = raw(nr, ...args);
            assert.ok(Number.isInteger(rc) && rc <= 0, `nr ${nr} args ${String(args)} -> ${rc}`);
          }
        }
      }
      assert.equal(d.alive, true);
      assert.deepEqual(host.hypervisor.internalErrors, []);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('values no register holds (NaN, infinities, fractions, strings) are a TypeError at the host API; Xen never sees them', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const raw = d.hypercall.bind(d) as (nr: unknown, ...args: unknown[]) => number;
      const before = host.hypervisor.frames.freeFrames;
      for (const x of [
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
        1.5,
        -1.5,
        '6',
        null,
        {},
      ]) {
        for (const args of [
          [x, scratch(d), 1],
          [GNTTABOP_query_size, x, 1],
          [GNTTABOP_get_version, scratch(d), x],
        ]) {
          assert.throws(() => raw(__HYPERVISOR_grant_table_op, ...args), {
            name: 'TypeError',
            message: /^hypercall argument [123] must be an integer \(a number or a bigint\), got /,
          });
        }
        assert.throws(() => raw(x, GNTTABOP_query_size, scratch(d), 1), {
          name: 'TypeError',
          message: /^the hypercall number must be an integer/,
        });
      }
      assert.equal(d.alive, true);
      assert.equal(host.hypervisor.frames.freeFrames, before);
      assert.deepEqual(host.hypervisor.internalErrors, []);
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

/** A's page at `addr`: its frame's general and writable-type reference counts. */
function pageRefs(host: Host, a: DomainHandle, addr: number): [number, number] {
  const mfn = a.kind === 'pv' ? a.frameOf(addr) : a.xen.p2m!.get(addr / 4096)!.mfn;
  return [host.hypervisor.frames.count[mfn]!, host.hypervisor.frames.typeCount[mfn]!];
}

describe('domain lifecycle (§12)', () => {
  it('destroying a grantee releases its mappings: pins and status bits clear, page references return', () =>
    forEach(COMBOS, (kind, version) => {
      for (const grantee of KINDS) {
        const host = newHost();
        const a = host.createDomain({ kind, memoryKiB: 256 });
        const b = host.createDomain({ kind: grantee, memoryKiB: 256 });
        if (version === 2) setVersion(a, 2);
        mapGrantTable(a);
        const pages = [0x3000, 0x4000, 0x5000];
        const before = pages.map((p) => pageRefs(host, a, p));
        pages.forEach((p, i) => {
          grantAccess(a, 10 + i, b.domid, a.frameOf(p));
        });
        assert.equal(mapRef(b, a, 10).status, GNTST_okay);
        assert.equal(mapRef(b, a, 11, MAP_VA + 0x1000, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_okay);
        assert.equal(mapRef(b, a, 10, MAP_VA + 0x2000).status, GNTST_okay);
        if (grantee === 'pv') {
          const flags = GNTMAP_host_map | GNTMAP_device_map;
          assert.equal(mapRef(b, a, 12, MAP_VA + 0x3000, flags).status, GNTST_okay);
          assert.equal(a.xen.gt.activeEntry(12).pin, 0x10001);
        }
        assert.equal(a.xen.gt.activeEntry(10).pin, 2);
        assert.equal(statusBits(a, 10), 0x18);
        assert.equal(statusBits(a, 11), 0x08);
        assert.deepEqual(host.checkInvariants(), []);
        host.destroyDomain(b.domid);
        for (const ref of [10, 11, 12]) {
          assert.equal(a.xen.gt.activeEntry(ref).pin, 0, `ref ${ref}`);
          assert.equal(statusBits(a, ref), 0, `ref ${ref}`);
        }
        assert.deepEqual(
          pages.map((p) => pageRefs(host, a, p)),
          before,
        );
        assert.equal(host.hypervisor.domains.has(b.domid), false);
        assert.throws(
          () => b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_get_version, 0, 1),
          DomainDestroyedError,
        );
        // The entries are the granter's to reuse.
        assert.deepEqual(host.checkInvariants(), []);
      }
    }));

  it('destroying a granter that others still map leaves a zombie: the page stays readable, the unmap works, then it is freed', () =>
    forEach(PAIRS, (kind, grantee) => {
      for (const version of VERSIONS) {
        const host = newHost();
        const a = host.createDomain({ kind, memoryKiB: 256 });
        const b = host.createDomain({ kind: grantee, memoryKiB: 256 });
        if (version === 2) setVersion(a, 2);
        mapGrantTable(a);
        a.memory.write(0x3000, new TextEncoder().encode('still here'));
        grantAccess(a, 10, b.domid, a.frameOf(0x3000));
        const page = kind === 'pv' ? a.frameOf(0x3000) : a.xen.p2m!.get(3)!.mfn;
        const m = mapRef(b, a, 10);
        assert.equal(m.status, GNTST_okay);
        const tableFrames = [...a.xen.gt.shared, ...a.xen.gt.status];
        host.destroyDomain(a.domid);
        assert.equal(a.alive, false);
        assert.equal(host.hypervisor.domains.has(a.domid), true);
        assert.equal(host.hypervisor.frames.owner[page], a.domid);
        assert.equal(new TextDecoder().decode(b.memory.read(MAP_VA, 10)), 'still here');
        b.memory.writeU32(MAP_VA + 64, 0x5151);
        assert.equal(host.hypervisor.machine.u8[page * 4096 + 64], 0x51);
        assert.deepEqual(host.checkInvariants(), []);
        assert.equal(unmapRef(b, m.handle), GNTST_okay);
        assert.equal(b.alive, true);
        assert.equal(host.hypervisor.domains.has(a.domid), false);
        assert.equal(host.hypervisor.frames.owner[page], OWNER_NONE);
        for (const mfn of tableFrames) assert.equal(host.hypervisor.frames.owner[mfn], OWNER_NONE);
        assert.throws(() => b.memory.readU8(MAP_VA), GuestFault);
        assert.deepEqual(host.checkInvariants(), []);
      }
    }));

  it('a copy against a dying granter fails: bad_domain on the pinned fast path, bad_page for a freed page (§12, XSA-236)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const c = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
      if (version === 2) setVersion(a, 2);
      mapGrantTable(a);
      a.memory.writeU32(0x3000, 0x3333);
      a.memory.writeU32(0x4000, 0x4444);
      grantAccess(a, 10, b.domid, a.frameOf(0x3000));
      grantAccess(a, 11, c.domid, a.frameOf(0x4000));
      const m = mapRef(b, a, 10);
      assert.equal(m.status, GNTST_okay);
      assert.equal(copyFrom(b, a, 10, 4), GNTST_okay);
      assert.equal(b.memory.readU32(0x8000), 0x3333);
      host.destroyDomain(a.domid);
      b.memory.writeU32(0x8000, 0);
      c.memory.writeU32(0x8000, 0);
      assert.equal(copyFrom(b, a, 10, 4), GNTST_bad_domain);
      assert.equal(b.memory.readU32(0x8000), 0);
      assert.equal(copyFrom(c, a, 11, 4), GNTST_bad_page);
      assert.equal(c.memory.readU32(0x8000), 0);
      const w = host.hypervisor.machine.words;
      assert.equal(a.xen.gt.activeEntry(11).pin, 0);
      assert.equal(w.load16(a.xen.gt.statusAddr(11)) & 0x18, 0);
      assert.equal(a.xen.gt.activeEntry(10).pin, 1);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.equal(host.hypervisor.domains.has(a.domid), false);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('once every domain is destroyed, in any order, every machine frame is free again (nothing leaked)', () => {
    const orders = [
      [0, 1, 2, 3],
      [3, 2, 1, 0],
      [1, 3, 0, 2],
      [2, 0, 3, 1],
    ];
    for (const order of orders) {
      const host = newHost();
      const initial = host.hypervisor.frames.freeFrames;
      const d0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const b = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
      const c = host.createDomain({ kind: 'pv', memoryKiB: 256, vcpus: 2 });
      const doms = [d0, a, b, c];
      // A: v2, grown, grant and status frames mapped in its own page table.
      setVersion(a, 2);
      mapGrantTable(a, 9);
      // B: v2, a grant frame placed over RAM, status frames placed.
      setVersion(b, 2);
      mapGrantTable(b);
      assert.equal(addToPhysmap(b, 1, 7), 0);
      // C: v1, grown by dom0.
      mapGrantTable(c, 3);
      // Cross mappings, all left in place.
      grantAccess(a, 20, b.domid, a.frameOf(0x3000));
      grantAccess(b, 21, c.domid, b.frameOf(0x3000));
      grantAccess(c, 22, a.domid, c.frameOf(0x3000));
      grantAccess(c, 23, d0.domid, c.frameOf(0x4000));
      grantAccess(a, 24, d0.domid, a.frameOf(0x5000), 1 | 4);
      assert.equal(mapRef(b, a, 20).status, GNTST_okay);
      assert.equal(mapRef(c, b, 21).status, GNTST_okay);
      assert.equal(mapRef(a, c, 22, MAP_VA, GNTMAP_host_map | GNTMAP_device_map).status, GNTST_okay);
      assert.equal(mapRef(d0, c, 23).status, GNTST_okay);
      assert.equal(mapRef(d0, a, 24, MAP_VA + 0x1000, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_okay);
      assert.equal(copyFrom(d0, a, 24, 64), GNTST_okay);
      // A's ref 20 is mapped writable by B: its v2 status word says so.
      assert.equal(a.memory.readU16(STATUS_VA + 40), 0x18);
      assert.deepEqual(host.checkInvariants(), []);
      for (const i of order) {
        host.destroyDomain(doms[i]!.domid);
        assert.deepEqual(host.checkInvariants(), [], `after destroying d${doms[i]!.domid} (order ${order})`);
      }
      assert.equal(host.hypervisor.domains.size, 0, `order ${order}`);
      assert.equal(host.hypervisor.frames.freeFrames, initial, `order ${order}`);
    }
  });

  it('a fully destroyed domain is gone from every lookup (get_version -ESRCH, map bad_domain)', () => {
    const host = newHost();
    const d0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const u = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const id = u.domid;
    host.destroyDomain(id);
    assert.equal(host.hypervisor.domains.has(id), false);
    assert.equal(host.domain(id), undefined);
    const gv = gnttabOp(d0, GNTTABOP_get_version, gnttab_get_version, [{ dom: id, version: 9 }]);
    assert.deepEqual([gv.rc, one(gv).version], [-XEN_ESRCH, 9]);
    assert.equal(mapRef(d0, u, 10).status, GNTST_bad_domain);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
