// XENMEM_acquire_resource with XENMEM_resource_grant_table (xen/common/memory.c
// acquire_resource, xen/common/grant_table.c gnttab_resource_max_frames and
// gnttab_acquire_resource), the PV caller's update_va_mapping_otherdomain
// (xen/arch/x86/pv/mm.c do_update_va_mapping_otherdomain, get_pg_owner), the
// translated caller's foreign P2M entries (xen/arch/x86/mm/p2m.c
// set_foreign_p2m_entry, p2m_entry_modify, relinquish_p2m_mapping) and
// XENMEM_remove_from_physmap, and the lifetime rule of XSA-255's fix
// (gnttab_unpopulate_status_frames).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping_otherdomain,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_IO,
  DOMID_SELF,
  DOMID_XEN,
  type DomainHandle,
  encodeStruct,
  GNTMAP_host_map,
  GNTTAB_RESERVED_XENSTORE,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GTF_permit_access,
  gnttab_map_grant_ref,
  gnttab_set_version,
  Host,
  MEMOP_EXTENT_SHIFT,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_EIO,
  XEN_ENOENT,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  XENMEM_acquire_resource,
  XENMEM_remove_from_physmap,
  XENMEM_resource_grant_table,
  XENMEM_resource_grant_table_id_shared,
  XENMEM_resource_grant_table_id_status,
  XENMEM_resource_ioreq_server,
  XENMEM_resource_vmtrace_buf,
  xen_mem_acquire_resource,
  xen_remove_from_physmap,
} from '../../src/index.ts';
import { runsShared } from '../../src/xen/dispatch.ts';
import { heldLocks } from '../../src/xen/locks.ts';
import {
  addToPhysmap,
  gnttabOp,
  MAP_VA,
  mapGrantTable,
  mapRef,
  scratch,
  setVersion,
  uva,
} from '../helpers/guest.ts';

const SHARED = XENMEM_resource_grant_table_id_shared;
const STATUS = XENMEM_resource_grant_table_id_status;
const SENTINEL = 0x5a5a_5a5a_5a5a_5a5an;
/** Where dom0 maps acquired frames: above RAM, below 4 GiB. */
const ACQ_VA = 0xa000_0000;
const ACQ_GFN = ACQ_VA / 4096;

interface Args {
  domid: number;
  type?: number;
  id?: number;
  nr_frames?: number;
  pad?: number;
  frame?: number;
  frame_list?: number;
}

/** The struct at scratch page 3, the frame list at scratch page 4. */
function argAddr(dom: DomainHandle): number {
  return scratch(dom, 3);
}
function listAddr(dom: DomainHandle): number {
  return scratch(dom, 4);
}

/** memory_op(XENMEM_acquire_resource): rc and the nr_frames Xen left in the struct. */
function acquire(dom: DomainHandle, a: Args, startExtent = 0) {
  const addr = argAddr(dom);
  dom.memory.write(
    addr,
    encodeStruct(xen_mem_acquire_resource, { type: XENMEM_resource_grant_table, id: SHARED, ...a }),
  );
  const rc = dom.hypercall(
    __HYPERVISOR_memory_op,
    XENMEM_acquire_resource + startExtent * 2 ** MEMOP_EXTENT_SHIFT,
    addr,
  );
  return { rc, nrFrames: dom.alive ? dom.memory.readU32(addr + 8) : -1 };
}

function fillList(dom: DomainHandle, n: number, value: bigint = SENTINEL): void {
  for (let i = 0; i < n; i++) dom.memory.writeU64(listAddr(dom) + i * 8, value);
}

function readList(dom: DomainHandle, n: number): bigint[] {
  return Array.from({ length: n }, (_, i) => dom.memory.readU64(listAddr(dom) + i * 8));
}

function big(mfns: readonly number[]): bigint[] {
  return mfns.map((m) => BigInt(m));
}

function sentinels(n: number): bigint[] {
  return Array.from({ length: n }, () => SENTINEL);
}

/** update_va_mapping_otherdomain(va, pte, flags 0, domid). */
function uvaOther(dom: DomainHandle, va: number, pte: number, domid: number): number {
  return dom.hypercall(__HYPERVISOR_update_va_mapping_otherdomain, va, pte, 0, domid);
}

function removeFromPhysmap(dom: DomainHandle, domid: number, gpfn: number, startExtent = 0): number {
  const addr = argAddr(dom);
  dom.memory.write(addr, encodeStruct(xen_remove_from_physmap, { domid, gpfn }));
  return dom.hypercall(
    __HYPERVISOR_memory_op,
    XENMEM_remove_from_physmap + startExtent * 2 ** MEMOP_EXTENT_SHIFT,
    addr,
  );
}

function clean(host: Host): void {
  assert.deepEqual(host.checkInvariants(), []);
}

/** A host with dom0 of `kind0` and a domU of `kindU`. */
function setup(kind0: 'pv' | 'hvm', kindU: 'pv' | 'hvm', maxGrantFrames = 16) {
  const host = new Host({ memoryMiB: 32 });
  const dom0 = host.createDomain({ kind: kind0 });
  const domU = host.createDomain({ kind: kindU, maxGrantFrames });
  return { host, dom0, domU };
}

/**
 * Acquires frames [frame, frame + n) of domU's resource `id` into dom0's
 * address space at ACQ_VA: PV through the returned MFNs and
 * update_va_mapping_otherdomain, HVM as foreign P2M entries at ACQ_GFN on.
 */
function acquireAndMap(dom0: DomainHandle, domU: DomainHandle, id: number, n: number, frame = 0): number[] {
  const list = listAddr(dom0);
  if (dom0.kind === 'hvm') for (let i = 0; i < n; i++) dom0.memory.writeU64(list + i * 8, ACQ_GFN + i);
  const { rc } = acquire(dom0, { domid: domU.domid, id, nr_frames: n, frame, frame_list: list });
  assert.equal(rc, 0);
  if (dom0.kind === 'hvm') {
    return Array.from({ length: n }, (_, i) => dom0.xen.p2m!.get(ACQ_GFN + i)!.mfn);
  }
  const mfns = readList(dom0, n).map(Number);
  mfns.forEach((mfn, i) => {
    assert.equal(uvaOther(dom0, ACQ_VA + i * 4096, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW), domU.domid), 0);
  });
  return mfns;
}

// ---------------------------------------------------------------------------------------------

describe('public/memory.h: xen_mem_acquire_resource and the numbers', () => {
  it('is 32 bytes: domid@0 type@2 id@4 nr_frames@8 pad@12 frame@16 frame_list@24', () => {
    assert.equal(xen_mem_acquire_resource.size, 32);
    const b = encodeStruct(xen_mem_acquire_resource, {
      domid: 0x0102,
      type: 0x0304,
      id: 0x05060708,
      nr_frames: 0x090a0b0c,
      pad: 0x0d0e0f10,
      frame: 0x1112131415,
      frame_list: 0x2122232425,
    });
    const v = new DataView(b.buffer);
    assert.equal(v.getUint16(0, true), 0x0102);
    assert.equal(v.getUint16(2, true), 0x0304);
    assert.equal(v.getUint32(4, true), 0x05060708);
    assert.equal(v.getUint32(8, true), 0x090a0b0c);
    assert.equal(v.getUint32(12, true), 0x0d0e0f10);
    assert.equal(v.getBigUint64(16, true), 0x1112131415n);
    assert.equal(v.getBigUint64(24, true), 0x2122232425n);
    assert.equal(xen_remove_from_physmap.size, 16);
    assert.equal(xen_remove_from_physmap.fields.gpfn.offset, 8);
  });

  it('XENMEM_acquire_resource 28, remove_from_physmap 15, grant table type 1 ids 0/1, hypercall 22', () => {
    assert.equal(XENMEM_acquire_resource, 28);
    assert.equal(XENMEM_remove_from_physmap, 15);
    assert.equal(XENMEM_resource_ioreq_server, 0);
    assert.equal(XENMEM_resource_grant_table, 1);
    assert.equal(XENMEM_resource_vmtrace_buf, 2);
    assert.equal(SHARED, 0);
    assert.equal(STATUS, 1);
    assert.equal(__HYPERVISOR_update_va_mapping_otherdomain, 22);
  });
});

describe('acquire_resource: the checks, in order', () => {
  it('an unreadable argument is -EFAULT (copy_from_guest)', () => {
    const { dom0, domU } = setup('pv', 'pv');
    assert.equal(dom0.hypercall(__HYPERVISOR_memory_op, XENMEM_acquire_resource, 0x9000_0000), -XEN_EFAULT);
    assert.equal(domU.xen.gt.nrGrantFrames, 1);
  });

  it('pad != 0 is -EINVAL before the domain is looked up (acquire_resource)', () => {
    const { dom0 } = setup('pv', 'pv');
    assert.equal(acquire(dom0, { domid: 0x7000, pad: 1 }).rc, -XEN_EINVAL);
  });

  it('a frame beyond 32 bits, or frame + nr_frames beyond, is -EINVAL before the domain lookup', () => {
    const { dom0 } = setup('pv', 'pv');
    assert.equal(
      acquire(dom0, { domid: 0x7000, frame: 2 ** 32, frame_list: listAddr(dom0) }).rc,
      -XEN_EINVAL,
    );
    assert.equal(
      acquire(dom0, { domid: 0x7000, frame: 2 ** 32 - 1, nr_frames: 1, frame_list: listAddr(dom0) }).rc,
      -XEN_EINVAL,
    );
    assert.equal(acquire(dom0, { domid: 0x7000, frame: 2 ** 32 - 2, nr_frames: 1 }).rc, -XEN_ESRCH);
  });

  it('rcu_lock_remote_domain_by_id: unknown or DOMID_SELF is -ESRCH, the caller itself -EPERM', () => {
    const { dom0, domU } = setup('pv', 'pv');
    assert.equal(acquire(dom0, { domid: 0x7000 }).rc, -XEN_ESRCH);
    assert.equal(acquire(dom0, { domid: DOMID_SELF }).rc, -XEN_ESRCH);
    assert.equal(acquire(dom0, { domid: 0 }).rc, -XEN_EPERM);
    assert.equal(acquire(domU, { domid: domU.domid }).rc, -XEN_EPERM);
  });

  it('xsm_domain_resource_map (XSM_DM_PRIV): only the control domain, before the type is looked at', () => {
    const host = new Host({ memoryMiB: 32 });
    host.createDomain({ kind: 'pv' });
    const a = host.createDomain({ kind: 'pv' });
    const b = host.createDomain({ kind: 'hvm' });
    assert.equal(acquire(a, { domid: b.domid, type: 7 }).rc, -XEN_EPERM);
    assert.equal(acquire(b, { domid: a.domid }).rc, -XEN_EPERM);
    assert.equal(acquire(b, { domid: 0 }).rc, -XEN_EPERM);
    clean(host);
  });

  it('resource_max_frames 0 is -EINVAL: ioreq server and vmtrace (built without), other types and ids', () => {
    const { dom0, domU } = setup('pv', 'hvm');
    for (const [type, id] of [
      [XENMEM_resource_ioreq_server, 0],
      [XENMEM_resource_vmtrace_buf, 0],
      [3, 0],
      [0xffff, 0],
      [XENMEM_resource_grant_table, 2],
      [XENMEM_resource_grant_table, 0xffffffff],
    ] as const) {
      // Even the size query (null frame_list, nr_frames 0) is refused.
      assert.equal(acquire(dom0, { domid: domU.domid, type, id }).rc, -XEN_EINVAL, `type ${type} id ${id}`);
    }
  });

  it('null frame_list with nr_frames 0 writes resource_max_frames into nr_frames (gnttab_resource_max_frames)', () => {
    const { dom0, domU } = setup('pv', 'pv', 20);
    assert.deepEqual(acquire(dom0, { domid: domU.domid, id: SHARED, nr_frames: 0 }), { rc: 0, nrFrames: 20 });
    // The status size is the maximum's status frames, whatever the current layout (v1 here).
    assert.deepEqual(acquire(dom0, { domid: domU.domid, id: STATUS }), { rc: 0, nrFrames: 3 });
    const other = new Host({ memoryMiB: 32 });
    const d0 = other.createDomain({ kind: 'hvm' });
    const d1 = other.createDomain({ kind: 'hvm' });
    assert.deepEqual(acquire(d0, { domid: d1.domid }), { rc: 0, nrFrames: 64 });
    assert.deepEqual(acquire(d0, { domid: d1.domid, id: STATUS }), { rc: 0, nrFrames: 8 });
    // Nothing grew.
    assert.equal(domU.xen.gt.nrGrantFrames, 1);
  });

  it('null frame_list with nr_frames != 0, or with a start extent, is -EINVAL and writes nothing', () => {
    const { dom0, domU } = setup('pv', 'pv');
    assert.deepEqual(acquire(dom0, { domid: domU.domid, nr_frames: 3 }), { rc: -XEN_EINVAL, nrFrames: 3 });
    assert.deepEqual(acquire(dom0, { domid: domU.domid }, 1), { rc: -XEN_EINVAL, nrFrames: 0 });
  });

  it('a start extent at or past nr_frames, or nr_frames above UINT_MAX >> MEMOP_EXTENT_SHIFT, is -EINVAL', () => {
    const { dom0, domU } = setup('pv', 'pv');
    const list = listAddr(dom0);
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 0, frame_list: list }).rc, -XEN_EINVAL);
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 2, frame_list: list }, 2).rc, -XEN_EINVAL);
    assert.equal(
      acquire(dom0, { domid: domU.domid, nr_frames: (0xffffffff >>> 6) + 1, frame_list: list }).rc,
      -XEN_EINVAL,
    );
    assert.equal(domU.xen.gt.nrGrantFrames, 1);
  });

  it('gnttab_acquire_resource: status frames of a v1 table, or frames beyond the maximum, are -EINVAL', () => {
    const { host, dom0, domU } = setup('pv', 'pv', 4);
    fillList(dom0, 8);
    const list = listAddr(dom0);
    assert.equal(
      acquire(dom0, { domid: domU.domid, id: STATUS, nr_frames: 1, frame_list: list }).rc,
      -XEN_EINVAL,
    );
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 5, frame_list: list }).rc, -XEN_EINVAL);
    assert.equal(
      acquire(dom0, { domid: domU.domid, nr_frames: 1, frame: 4, frame_list: list }).rc,
      -XEN_EINVAL,
    );
    // Nothing grew and nothing was written.
    assert.equal(domU.xen.gt.nrGrantFrames, 1);
    assert.deepEqual(readList(dom0, 8), sentinels(8));
    clean(host);
  });
});

describe('acquire_resource: a PV caller gets MFNs (copy_to_guest of mfn_list)', () => {
  for (const kindU of ['pv', 'hvm'] as const) {
    it(`shared frames of a ${kindU} domU, growing its table to the last one (gnttab_get_shared_frame_mfn)`, () => {
      const { host, dom0, domU } = setup('pv', kindU);
      fillList(dom0, 6);
      const r = acquire(dom0, { domid: domU.domid, nr_frames: 3, frame: 2, frame_list: listAddr(dom0) });
      assert.equal(r.rc, 0);
      assert.equal(domU.xen.gt.nrGrantFrames, 5);
      assert.deepEqual(readList(dom0, 4), [...big(domU.xen.gt.shared.toArray().slice(2, 5)), SENTINEL]);
      clean(host);
    });

    it(`status frames of a v2 ${kindU} domU (gnttab_get_status_frame_mfn grows the table)`, () => {
      const { host, dom0, domU } = setup('pv', kindU);
      assert.equal(setVersion(domU, 2).rc, 0);
      const r = acquire(dom0, { domid: domU.domid, id: STATUS, nr_frames: 2, frame_list: listAddr(dom0) });
      assert.equal(r.rc, 0);
      // Status frame 1 needs grant frames 8..15.
      assert.equal(domU.xen.gt.nrGrantFrames, 16);
      assert.deepEqual(readList(dom0, 2), big(domU.xen.gt.status.toArray().slice(0, 2)));
      clean(host);
    });
  }

  it('more than 32 frames go in batches of 32, all of them (acquire_resource)', () => {
    const { host, dom0, domU } = setup('pv', 'pv', 64);
    const r = acquire(dom0, { domid: domU.domid, nr_frames: 40, frame_list: listAddr(dom0) });
    assert.equal(r.rc, 0);
    assert.equal(domU.xen.gt.nrGrantFrames, 40);
    assert.deepEqual(readList(dom0, 40), big(domU.xen.gt.shared.toArray().slice(0, 40)));
    clean(host);
  });

  it('a start extent in cmd resumes a continuation: frames and list entries from there on', () => {
    const { host, dom0, domU } = setup('pv', 'pv');
    fillList(dom0, 8);
    const r = acquire(dom0, { domid: domU.domid, nr_frames: 8, frame: 1, frame_list: listAddr(dom0) }, 5);
    assert.equal(r.rc, 0);
    assert.equal(domU.xen.gt.nrGrantFrames, 9);
    const got = readList(dom0, 8);
    assert.deepEqual(got, [...sentinels(5), ...big(domU.xen.gt.shared.toArray().slice(6, 9))]);
    clean(host);
  });

  it('an unwritable frame_list is -EFAULT (the table has grown: Xen does not undo it)', () => {
    const { host, dom0, domU } = setup('pv', 'pv');
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 2, frame_list: 0x9000_0000 }).rc, -XEN_EFAULT);
    assert.equal(domU.xen.gt.nrGrantFrames, 2);
    clean(host);
  });
});

describe('update_va_mapping_otherdomain (do_update_va_mapping_otherdomain, get_pg_owner)', () => {
  it("dom0 maps a domU's acquired grant frame: it reads and writes the domU's entries", () => {
    const { host, dom0, domU } = setup('pv', 'pv');
    mapGrantTable(domU);
    const [mfn] = acquireAndMap(dom0, domU, SHARED, 1);
    assert.equal(mfn, domU.xen.gt.shared.get(0));
    // Entry 5's frame word, written by the domU, read by dom0, and the other way round.
    domU.memory.writeU32(0xc000_0000 + 8 * 5 + 4, 0x1234_5678);
    assert.equal(dom0.memory.readU32(ACQ_VA + 8 * 5 + 4), 0x1234_5678);
    dom0.memory.writeU32(ACQ_VA + 8 * 6 + 4, 0x9abc);
    assert.equal(domU.memory.readU32(0xc000_0000 + 8 * 6 + 4), 0x9abc);
    // The PTE holds a general and (the owner is PV) a writable type reference.
    assert.equal(host.hypervisor.frames.count[mfn!], 3);
    clean(host);
    assert.equal(uvaOther(dom0, ACQ_VA, 0, domU.domid), 0);
    assert.equal(host.hypervisor.frames.count[mfn!], 2);
    clean(host);
  });

  it("get_pg_owner: the caller's own id, DOMID_XEN and an unknown domain are -ESRCH", () => {
    const { dom0 } = setup('pv', 'pv');
    const pte = dom0.frameOf(0) * 4096 + _PAGE_PRESENT;
    assert.equal(uvaOther(dom0, ACQ_VA, pte, 0), -XEN_ESRCH);
    assert.equal(uvaOther(dom0, ACQ_VA, pte, DOMID_XEN), -XEN_ESRCH);
    assert.equal(uvaOther(dom0, ACQ_VA, pte, 0x7000), -XEN_ESRCH);
    // DOMID_SELF is update_va_mapping itself.
    assert.equal(uvaOther(dom0, ACQ_VA, pte, DOMID_SELF), 0);
  });

  it('xsm_update_va_mapping: a domU naming another domain is -EPERM, before the PTE is looked at', () => {
    const host = new Host({ memoryMiB: 32 });
    host.createDomain({ kind: 'pv' });
    const a = host.createDomain({ kind: 'pv' });
    const b = host.createDomain({ kind: 'pv' });
    assert.equal(uvaOther(a, ACQ_VA, b.xen.gt.shared.get(0) * 4096 + _PAGE_PRESENT, b.domid), -XEN_EPERM);
    assert.equal(uvaOther(a, 2 ** 40, 0, b.domid), -XEN_EPERM);
    assert.equal(uvaOther(a, ACQ_VA, 0, DOMID_IO), -XEN_EPERM);
    clean(host);
  });

  it('mod_l1_entry with that page owner: a frame it does not own is -EBUSY, as plain update_va_mapping', () => {
    const { host, dom0, domU } = setup('pv', 'pv');
    const other = host.createDomain({ kind: 'pv' });
    const mfn = domU.xen.gt.shared.get(0);
    assert.equal(uva(dom0, ACQ_VA, mfn * 4096 + _PAGE_PRESENT), -XEN_EBUSY);
    assert.equal(uvaOther(dom0, ACQ_VA, mfn * 4096 + _PAGE_PRESENT, other.domid), -XEN_EBUSY);
    // dom_io owns no RAM: -EBUSY too.
    assert.equal(uvaOther(dom0, ACQ_VA, mfn * 4096 + _PAGE_PRESENT, DOMID_IO), -XEN_EBUSY);
    assert.equal(uvaOther(dom0, ACQ_VA, mfn * 4096 + _PAGE_PRESENT, domU.domid), 0);
    clean(host);
  });

  it('is PV only: an HVM caller gets -ENOSYS', () => {
    const { dom0, domU } = setup('hvm', 'pv');
    assert.equal(
      uvaOther(dom0, ACQ_VA, domU.xen.gt.shared.get(0) * 4096 + _PAGE_PRESENT, domU.domid),
      -XEN_ENOSYS,
    );
  });
});

describe('acquire_resource: a translated caller gets foreign P2M entries (set_foreign_p2m_entry)', () => {
  for (const kindU of ['pv', 'hvm'] as const) {
    it(`an HVM dom0 sees a ${kindU} domU's grant frames at the GFNs it named; each entry holds a reference`, () => {
      const { host, dom0, domU } = setup('hvm', kindU);
      const mfns = acquireAndMap(dom0, domU, SHARED, 2);
      assert.deepEqual(mfns, domU.xen.gt.shared.toArray().slice(0, 2));
      const f = host.hypervisor.frames;
      // The allocation, plus the foreign entry (p2m_entry_modify: a general reference, no type).
      assert.equal(f.count[mfns[1]!], 2);
      assert.equal(f.typeCount[mfns[1]!], 1);
      clean(host);
      mapGrantTable(domU, 2);
      domU.memory.writeU32(0xc000_0000 + 4096 + 12, 0xfeed);
      assert.equal(dom0.memory.readU32(ACQ_VA + 4096 + 12), 0xfeed);
      dom0.memory.writeU32(ACQ_VA + 20, 0xbeef);
      assert.equal(domU.memory.readU32(0xc000_0000 + 20), 0xbeef);
      clean(host);
    });
  }

  it("runs side by side: the owner's table written for the lookup and growth, then the caller's P2M lock per entry", () => {
    assert.equal(runsShared(__HYPERVISOR_memory_op, [XENMEM_acquire_resource]), true);
    const { host, dom0, domU } = setup('hvm', 'hvm');
    const mfns = acquireAndMap(dom0, domU, SHARED, 3, 2);
    // gnttab_acquire_resource grew the table to the last frame named.
    assert.equal(domU.xen.gt.nrGrantFrames, 5);
    assert.deepEqual(mfns, domU.xen.gt.shared.toArray().slice(2, 5));
    const free = { readers: 0, writer: false, waitingWriters: 0 };
    assert.deepEqual(
      [domU.xen.gt.lock.state(), dom0.xen.p2mLock.state(), domU.xen.p2mLock.state()],
      [free, free, free],
    );
    assert.deepEqual(heldLocks(), []);
    clean(host);
  });

  it('status frames of a v2 domU, placed the same way', () => {
    const { host, dom0, domU } = setup('hvm', 'hvm');
    assert.equal(setVersion(domU, 2).rc, 0);
    const mfns = acquireAndMap(dom0, domU, STATUS, 1);
    assert.deepEqual(mfns, domU.xen.gt.status.toArray().slice(0, 1));
    clean(host);
  });

  it('an unreadable GFN list is -EFAULT and nothing is placed', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 1, frame_list: 0x9000_0000 }).rc, -XEN_EFAULT);
    assert.equal(dom0.xen.p2m!.get(0x9000_0000 / 4096), undefined);
    clean(host);
  });

  it('a failure after the first entry of a batch is -EIO; the first entry stays', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    const list = listAddr(dom0);
    dom0.memory.writeU64(list, ACQ_GFN);
    dom0.memory.writeU64(list + 8, 2n ** 40n); // beyond the physical address space
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 2, frame_list: list }).rc, -XEN_EIO);
    assert.equal(dom0.xen.p2m!.get(ACQ_GFN)?.mfn, domU.xen.gt.shared.get(0));
    // The first entry's own failure says why.
    dom0.memory.writeU64(list, 2n ** 40n);
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 1, frame_list: list }).rc, -XEN_EINVAL);
    clean(host);
  });

  it('over a foreign or grant entry Xen crashes the caller (set_typed_p2m_entry: -ENOENT)', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    acquireAndMap(dom0, domU, SHARED, 1);
    assert.equal(
      acquire(dom0, { domid: domU.domid, nr_frames: 1, frame_list: listAddr(dom0) }).rc,
      -XEN_ENOENT,
    );
    assert.equal(dom0.alive, false);
    // The crash released the foreign entry's reference.
    assert.equal(host.hypervisor.frames.count[domU.xen.gt.shared.get(0)], 1);
    clean(host);
  });

  it("over the caller's RAM the page is unhooked and stays allocated to it", () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    const ram = dom0.xen.p2m!.get(5)!.mfn;
    const before = dom0.xen.totPages;
    dom0.memory.writeU64(listAddr(dom0), 5);
    assert.equal(acquire(dom0, { domid: domU.domid, nr_frames: 1, frame_list: listAddr(dom0) }).rc, 0);
    assert.equal(dom0.xen.p2m!.get(5)?.mfn, domU.xen.gt.shared.get(0));
    assert.equal(dom0.xen.totPages, before);
    assert.equal(host.hypervisor.frames.owner[ram], dom0.domid);
    clean(host);
  });

  it('XENMEM_remove_from_physmap drops the foreign reference; checks and -ENOENT', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    const [mfn] = acquireAndMap(dom0, domU, SHARED, 1);
    const f = host.hypervisor.frames;
    assert.equal(f.count[mfn!], 2);
    assert.equal(removeFromPhysmap(dom0, DOMID_SELF, ACQ_GFN, 1), -XEN_EINVAL);
    assert.equal(removeFromPhysmap(dom0, 0x7000, ACQ_GFN), -XEN_ESRCH);
    assert.equal(removeFromPhysmap(dom0, domU.domid, 0), -XEN_EACCES); // a PV domain has no P2M
    assert.equal(removeFromPhysmap(dom0, DOMID_SELF, ACQ_GFN), 0);
    assert.equal(f.count[mfn!], 1);
    assert.equal(dom0.xen.p2m!.get(ACQ_GFN), undefined);
    assert.equal(removeFromPhysmap(dom0, DOMID_SELF, ACQ_GFN), -XEN_ENOENT);
    clean(host);
  });

  it('add_to_physmap over a foreign entry of a Xen-heap page unhooks it and drops its reference', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    const [mfn] = acquireAndMap(dom0, domU, SHARED, 1);
    assert.equal(addToPhysmap(dom0, 0, ACQ_GFN), 0);
    assert.equal(dom0.xen.p2m!.get(ACQ_GFN)?.mfn, dom0.xen.gt.shared.get(0));
    assert.equal(host.hypervisor.frames.count[mfn!], 1);
    clean(host);
  });

  it('a grant map over a foreign entry crashes the grantee (p2m_add_page)', () => {
    const { host, dom0, domU } = setup('hvm', 'pv');
    acquireAndMap(dom0, domU, SHARED, 1);
    mapGrantTable(domU);
    const page = scratch(domU, 8);
    const a = 0xc000_0000 + 8 * 10;
    domU.memory.writeU16(a + 2, 0);
    domU.memory.writeU32(a + 4, domU.frameOf(page));
    domU.memory.writeU16(a, GTF_permit_access);
    const r = gnttabOp(dom0, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: ACQ_VA, flags: GNTMAP_host_map, ref: 10, dom: domU.domid },
    ]);
    assert.equal(r.rc, 0);
    assert.equal(dom0.alive, false);
    clean(host);
  });
});

describe('seeding the reserved entries, as a toolstack does', () => {
  for (const [kindU, version] of [
    ['pv', 1],
    ['pv', 2],
    ['hvm', 1],
    ['hvm', 2],
  ] as const) {
    for (const kind0 of ['pv', 'hvm'] as const) {
      it(`${kind0} dom0 writes GNTTAB_RESERVED_XENSTORE of a v${version} ${kindU} domU; its backend maps it`, () => {
        const { host, dom0, domU } = setup(kind0, kindU);
        assert.equal(setVersion(domU, version).rc, 0);
        // The guest's xenstore ring page, with something in it.
        const ring = scratch(domU, 9);
        domU.memory.write(ring, new TextEncoder().encode('xenstore ring'));
        const frame = domU.frameOf(ring);
        acquireAndMap(dom0, domU, SHARED, 1);
        const e = ACQ_VA + GNTTAB_RESERVED_XENSTORE * (version === 1 ? 8 : 16);
        dom0.memory.writeU16(e + 2, 0); // xenstored runs in dom0
        if (version === 1) dom0.memory.writeU32(e + 4, frame);
        else dom0.memory.writeU64(e + 8, frame);
        dom0.memory.writeU16(e, GTF_permit_access);
        // xenstored maps the guest's ref 1 (map_grant_ref) and reads the ring.
        const m = mapRef(dom0, domU, GNTTAB_RESERVED_XENSTORE, MAP_VA);
        assert.equal(m.status, 0);
        assert.equal(new TextDecoder().decode(dom0.memory.read(MAP_VA, 13)), 'xenstore ring');
        clean(host);
      });
    }
  }
});

describe('lifetime (gnttab_unpopulate_status_frames, XSA-255; destroy of either side)', () => {
  for (const kind0 of ['pv', 'hvm'] as const) {
    it(`set_version(1) while a ${kind0} dom0 maps an acquired status frame: -EBUSY, a PV owner carries on`, () => {
      const { host, dom0, domU } = setup(kind0, 'pv');
      assert.equal(setVersion(domU, 2).rc, 0);
      acquireAndMap(dom0, domU, STATUS, 1);
      assert.deepEqual(setVersion(domU, 1), { rc: -XEN_EBUSY, version: 2 });
      assert.equal(domU.alive, true);
      clean(host);
      // Once dom0 lets go, the switch goes through.
      if (kind0 === 'pv') assert.equal(uvaOther(dom0, ACQ_VA, 0, domU.domid), 0);
      else assert.equal(removeFromPhysmap(dom0, DOMID_SELF, ACQ_GFN), 0);
      assert.deepEqual(setVersion(domU, 1), { rc: 0, version: 1 });
      clean(host);
    });

    it(`set_version(1) while a ${kind0} dom0 maps an acquired status frame crashes a translated owner`, () => {
      const { host, dom0, domU } = setup(kind0, 'hvm');
      assert.equal(setVersion(domU, 2).rc, 0);
      const [mfn] = acquireAndMap(dom0, domU, STATUS, 1);
      assert.equal(gnttabOp(domU, GNTTABOP_set_version, gnttab_set_version, [{ version: 1 }]).rc, -XEN_EBUSY);
      assert.equal(domU.alive, false);
      // The owner is a zombie while dom0 still maps its frame; then it goes.
      assert.equal(host.hypervisor.domains.has(domU.domid), true);
      clean(host);
      if (kind0 === 'pv') assert.equal(uvaOther(dom0, ACQ_VA, 0, domU.domid), 0);
      else assert.equal(removeFromPhysmap(dom0, DOMID_SELF, ACQ_GFN), 0);
      assert.equal(host.hypervisor.domains.has(domU.domid), false);
      assert.equal(host.hypervisor.frames.owner[mfn!], -1);
      clean(host);
    });

    it(`destroying a ${kind0} dom0 that maps acquired frames releases their references`, () => {
      const { host, dom0, domU } = setup(kind0, 'hvm');
      const mfns = acquireAndMap(dom0, domU, SHARED, 3);
      host.destroyDomain(dom0.domid);
      for (const mfn of mfns) assert.equal(host.hypervisor.frames.count[mfn], 1);
      clean(host);
    });

    it(`destroying the domU first leaves it a zombie until the ${kind0} dom0 lets go`, () => {
      const { host, dom0, domU } = setup(kind0, 'pv');
      const mfns = acquireAndMap(dom0, domU, SHARED, 2);
      host.destroyDomain(domU.domid);
      assert.equal(host.hypervisor.domains.has(domU.domid), true);
      clean(host);
      // dom0 still reads the frame (nobody reuses it).
      dom0.memory.readU32(ACQ_VA + 4096);
      host.destroyDomain(dom0.domid);
      assert.equal(host.hypervisor.domains.has(domU.domid), false);
      for (const mfn of mfns) assert.equal(host.hypervisor.frames.owner[mfn], -1);
      clean(host);
    });
  }
});
