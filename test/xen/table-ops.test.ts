// Table-level grant ops: setup_table (§6.4), query_size (§6.8), get_status_frames
// (§6.10), get_version (§6.11), swap_grant_ref (§6.12), XENMEM_add_to_physmap and
// table growth (§11), update_va_mapping (DESIGN.md, PV address spaces).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  _PAGE_ACCESSED,
  _PAGE_AVAIL,
  _PAGE_DIRTY,
  _PAGE_GLOBAL,
  _PAGE_PAT,
  _PAGE_PCD,
  _PAGE_PRESENT,
  _PAGE_PWT,
  _PAGE_RW,
  _PAGE_USER,
  DOMID_IO,
  DOMID_SELF,
  type DomainHandle,
  encodeStruct,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_virt_addr,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_okay,
  GNTST_permission_denied,
  GNTTABOP_get_status_frames,
  GNTTABOP_get_version,
  GNTTABOP_query_size,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GTF_accept_transfer,
  GTF_permit_access,
  GTF_readonly,
  GTF_sub_page,
  GuestFault,
  gnttab_get_status_frames,
  gnttab_get_version,
  gnttab_query_size,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  Host,
  type HostOptions,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSYS,
  XEN_EPERM,
  XEN_ESRCH,
  XENMAPIDX_grant_table_status,
  XENMEM_add_to_physmap,
  XENMEM_remove_from_physmap,
  xen_remove_from_physmap,
} from '../../src/index.ts';
import { runsShared } from '../../src/xen/dispatch.ts';
import { lockDebugEnabled, lockOrderSeen } from '../../src/xen/locks.ts';
import {
  addToPhysmap,
  entryAddr,
  GNTTAB_VA,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  mapRef,
  one,
  STATUS_VA,
  scratch,
  setVersion,
  statusAddr,
  unmapRef,
  uva,
} from '../helpers/guest.ts';
import { COMBOS, forEach, KIND_ONLY, VERSIONS } from '../helpers/matrix.ts';

const ALL_ONES = 0xffff_ffff_ffff_ffffn;
const SENTINEL = 0x5a5a_5a5a_5a5a_5a5an;
/** Unpopulated guest address space (above RAM, below 4 GiB). */
const UNMAPPED = 0x9000_0000;

function newHost(o: HostOptions = {}): Host {
  return new Host({ memoryMiB: 16, ...o });
}

/** The frame-list area the tests use: scratch page 4 onwards. */
function listAddr(dom: DomainHandle): number {
  return scratch(dom, 4);
}

function fillSentinel(dom: DomainHandle, addr: number, n: number): void {
  for (let i = 0; i < n; i++) dom.memory.writeU64(addr + i * 8, SENTINEL);
}

function readList(dom: DomainHandle, addr: number, n: number): bigint[] {
  return Array.from({ length: n }, (_, i) => dom.memory.readU64(addr + i * 8));
}

function setupTable(dom: DomainHandle, domid: number, nr: number, list = listAddr(dom), count = 1) {
  const r = gnttabOp(
    dom,
    GNTTABOP_setup_table,
    gnttab_setup_table,
    [{ dom: domid, nr_frames: nr, frame_list: list, status: 0x7777 }],
    count,
  );
  return { rc: r.rc, status: one(r).status };
}

function querySize(dom: DomainHandle, domid: number, count = 1) {
  const r = gnttabOp(
    dom,
    GNTTABOP_query_size,
    gnttab_query_size,
    [{ dom: domid, nr_frames: 0xaaaa, max_nr_frames: 0xbbbb, status: 0x7777 }],
    count,
  );
  return { rc: r.rc, ...one(r) };
}

function getStatusFrames(dom: DomainHandle, domid: number, nr: number, list = listAddr(dom), count = 1) {
  const r = gnttabOp(
    dom,
    GNTTABOP_get_status_frames,
    gnttab_get_status_frames,
    [{ dom: domid, nr_frames: nr, frame_list: list, status: 0x7777 }],
    count,
  );
  return { rc: r.rc, status: one(r).status };
}

function getVersion(dom: DomainHandle, domid: number, count = 1) {
  const r = gnttabOp(dom, GNTTABOP_get_version, gnttab_get_version, [{ dom: domid, version: 0xdead }], count);
  return { rc: r.rc, version: one(r).version };
}

function swap(dom: DomainHandle, pairs: readonly (readonly [number, number])[]) {
  const r = gnttabOp(
    dom,
    GNTTABOP_swap_grant_ref,
    gnttab_swap_grant_ref,
    pairs.map(([a, b]) => ({ ref_a: a, ref_b: b, status: 0x7777 })),
  );
  return { rc: r.rc, statuses: r.out.map((o) => o.status) };
}

/** The frame number a domain sees for its shared frame i (PV: MFN; HVM: GFN or all ones). */
function expectedSharedFrame(dom: DomainHandle, i: number): bigint {
  const gt = dom.xen.gt;
  if (dom.kind === 'pv') return BigInt(gt.shared.get(i));
  const gfn = gt.sharedGfn.get(i);
  return gfn < 0 ? ALL_ONES : BigInt(gfn);
}

// ---------------------------------------------------------------------------------------------

describe('setup_table (§6.4)', () => {
  it('count != 1 is -EINVAL and writes nothing (§6.4 step 1)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      fillSentinel(d, listAddr(d), 4);
      for (const count of [0, 2, 1000]) {
        const r = setupTable(d, DOMID_SELF, 4, listAddr(d), count);
        assert.equal(r.rc, -XEN_EINVAL);
        assert.equal(r.status, 0x7777);
      }
      assert.equal(d.xen.gt.nrGrantFrames, 1);
      assert.deepEqual(readList(d, listAddr(d), 4), [SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('grows, never shrinks, never changes the version, reports every frame (§6.4, 1237659523)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) assert.deepEqual(setVersion(d, 2), { rc: 0, version: 2 });
      fillSentinel(d, listAddr(d), 10);
      let r = setupTable(d, DOMID_SELF, 4);
      assert.deepEqual(r, { rc: 0, status: GNTST_okay });
      assert.equal(d.xen.gt.nrGrantFrames, 4);
      assert.equal(d.xen.gt.version, version);
      assert.deepEqual(
        readList(d, listAddr(d), 5),
        [0, 1, 2, 3].map((i) => expectedSharedFrame(d, i)).concat([SENTINEL]),
      );
      // Never shrinks: asking for 2 reports 2 frames but keeps all 4.
      fillSentinel(d, listAddr(d), 10);
      r = setupTable(d, DOMID_SELF, 2);
      assert.deepEqual(r, { rc: 0, status: GNTST_okay });
      assert.equal(d.xen.gt.nrGrantFrames, 4);
      assert.deepEqual(readList(d, listAddr(d), 3), [
        expectedSharedFrame(d, 0),
        expectedSharedFrame(d, 1),
        SENTINEL,
      ]);
      // Growing in v2 adds status frames: ceil(9/8) = 2 (§11).
      r = setupTable(d, DOMID_SELF, 9);
      assert.deepEqual(r, { rc: 0, status: GNTST_okay });
      assert.equal(d.xen.gt.nrGrantFrames, 9);
      assert.equal(d.xen.gt.nrStatusFrames, version === 2 ? 2 : 0);
      assert.equal(d.xen.gt.version, version);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('nr_frames 0 is valid; only the status is written (§6.4)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      fillSentinel(d, listAddr(d), 2);
      const free = host.hypervisor.frames.freeFrames;
      assert.deepEqual(setupTable(d, DOMID_SELF, 0), { rc: 0, status: GNTST_okay });
      assert.deepEqual(readList(d, listAddr(d), 2), [SENTINEL, SENTINEL]);
      assert.equal(d.xen.gt.nrGrantFrames, 1);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('more than maxGrantFrames is general_error and the table is unchanged (§6.4 step 5)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256, maxGrantFrames: 6 });
      fillSentinel(d, listAddr(d), 8);
      const free = host.hypervisor.frames.freeFrames;
      assert.deepEqual(setupTable(d, DOMID_SELF, 7), { rc: 0, status: GNTST_general_error });
      assert.equal(d.xen.gt.nrGrantFrames, 1);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.deepEqual(readList(d, listAddr(d), 1), [SENTINEL]);
      // Exactly the maximum is fine.
      assert.deepEqual(setupTable(d, DOMID_SELF, 6), { rc: 0, status: GNTST_okay });
      assert.equal(d.xen.gt.nrGrantFrames, 6);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('DOMID_SELF and the caller\'s own numeric id name the same table (§2.6 "by any id")', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      host.createDomain({ kind: 'pv', memoryKiB: 256 }); // dom0
      const d = host.createDomain({ kind, memoryKiB: 256 });
      assert.deepEqual(setupTable(d, DOMID_SELF, 2), { rc: 0, status: GNTST_okay });
      const bySelf = readList(d, listAddr(d), 2);
      fillSentinel(d, listAddr(d), 3);
      assert.deepEqual(setupTable(d, d.domid, 3), { rc: 0, status: GNTST_okay });
      const byId = readList(d, listAddr(d), 3);
      assert.deepEqual(byId.slice(0, 2), bySelf);
      assert.equal(d.xen.gt.nrGrantFrames, 3);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it("another domain's table: permission_denied from a domU, allowed from dom0 (quirk §15.21)", () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const u1 = host.createDomain({ kind, memoryKiB: 256 });
      const u2 = host.createDomain({ kind, memoryKiB: 256 });
      fillSentinel(u1, listAddr(u1), 2);
      assert.deepEqual(setupTable(u1, u2.domid, 2), { rc: 0, status: GNTST_permission_denied });
      assert.deepEqual(setupTable(u1, dom0.domid, 2), { rc: 0, status: GNTST_permission_denied });
      assert.equal(u2.xen.gt.nrGrantFrames, 1);
      assert.equal(dom0.xen.gt.nrGrantFrames, 1);
      assert.deepEqual(readList(u1, listAddr(u1), 1), [SENTINEL]);
      // The control domain may set up a domU's table, and gets that domU's frame numbers.
      assert.deepEqual(setupTable(dom0, u2.domid, 3), { rc: 0, status: GNTST_okay });
      assert.equal(u2.xen.gt.nrGrantFrames, 3);
      assert.equal(dom0.xen.gt.nrGrantFrames, 1);
      assert.deepEqual(
        readList(dom0, listAddr(dom0), 3),
        [0, 1, 2].map((i) => expectedSharedFrame(u2, i)),
      );
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('an unknown domain is bad_domain with no other effect (§6.4 step 3, 5e436e7a45)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      fillSentinel(d, listAddr(d), 2);
      const free = host.hypervisor.frames.freeFrames;
      for (const domid of [0x1234, 7, DOMID_IO]) {
        assert.deepEqual(setupTable(d, domid, 2), { rc: 0, status: GNTST_bad_domain });
      }
      assert.deepEqual(readList(d, listAddr(d), 2), [SENTINEL, SENTINEL]);
      assert.equal(d.xen.gt.nrGrantFrames, 1);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a frame_list in unmapped memory gives status bad_virt_addr; the table still grew (§6.4 step 7)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      assert.deepEqual(setupTable(d, DOMID_SELF, 2, UNMAPPED), { rc: 0, status: GNTST_bad_virt_addr });
      assert.equal(d.xen.gt.nrGrantFrames, 2);
      // A list that runs off the end of RAM: the first entry is written, then the fault.
      const last = d.ramBytes - 8;
      d.memory.writeU64(last, SENTINEL);
      assert.deepEqual(setupTable(d, DOMID_SELF, 3, last), { rc: 0, status: GNTST_bad_virt_addr });
      assert.equal(d.memory.readU64(last), expectedSharedFrame(d, 0));
      assert.equal(d.xen.gt.nrGrantFrames, 3);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('an unreadable struct is -EFAULT; a frame_list beyond the address space is -EFAULT for PV, for HVM (guest_handle_okay always true) the table grows and the list write fails: bad_virt_addr (§6.4 step 2)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      assert.equal(d.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, UNMAPPED, 1), -XEN_EFAULT);
      const r = setupTable(d, DOMID_SELF, 2, 0xffff_fff8);
      if (kind === 'pv') {
        assert.deepEqual(r, { rc: -XEN_EFAULT, status: 0x7777 });
        assert.equal(d.xen.gt.nrGrantFrames, 1);
      } else {
        assert.deepEqual(r, { rc: 0, status: GNTST_bad_virt_addr });
        assert.equal(d.xen.gt.nrGrantFrames, 2);
      }
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('pv: the returned MFNs are the frames Xen reads grant entries from', () => {
    const host = newHost();
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    mapGrantTable(a, 2);
    const list = readList(a, scratch(a, 2), 2);
    assert.deepEqual(list, [BigInt(a.xen.gt.shared.get(0)), BigInt(a.xen.gt.shared.get(1))]);
    // Ref 600 lies in frame 1 (512 v1 entries per frame).
    a.memory.write(0x4000, new TextEncoder().encode('frame one'));
    grantAccess(a, 600, b.domid, a.frameOf(0x4000));
    assert.equal(host.hypervisor.machine.words.load16(a.xen.gt.shaAddr(600)), GTF_permit_access);
    const m = mapRef(b, a, 600);
    assert.equal(m.status, GNTST_okay);
    assert.equal(new TextDecoder().decode(b.memory.read(MAP_VA, 9)), 'frame one');
    assert.equal(unmapRef(b, m.handle), GNTST_okay);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: each frame reads as all-ones INVALID_GFN until placed, then as its GFN (§6.4 step 7)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    fillSentinel(d, listAddr(d), 3);
    assert.deepEqual(setupTable(d, DOMID_SELF, 3), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(d, listAddr(d), 3), [ALL_ONES, ALL_ONES, ALL_ONES]);
    assert.equal(addToPhysmap(d, 1, 0xc0001), 0);
    assert.deepEqual(setupTable(d, DOMID_SELF, 3), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(d, listAddr(d), 3), [ALL_ONES, 0xc0001n, ALL_ONES]);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('query_size (§6.8)', () => {
  it('reports shared frames and the maximum (default 64; quirk §15.13)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) setVersion(d, 2);
      let q = querySize(d, DOMID_SELF);
      assert.equal(q.rc, 0);
      assert.equal(q.status, GNTST_okay);
      assert.equal(q.nr_frames, 1);
      assert.equal(q.max_nr_frames, 64);
      setupTable(d, DOMID_SELF, 9);
      q = querySize(d, d.domid);
      // Shared frames only, even with 2 status frames in v2.
      assert.equal(q.nr_frames, 9);
      assert.equal(q.max_nr_frames, 64);
      assert.equal(d.xen.gt.nrStatusFrames, version === 2 ? 2 : 0);
      const small = host.createDomain({ kind, memoryKiB: 256, maxGrantFrames: 5 });
      q = querySize(small, DOMID_SELF);
      assert.deepEqual([q.status, q.nr_frames, q.max_nr_frames], [GNTST_okay, 1, 5]);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('bad_domain and permission_denied leave nr_frames/max_nr_frames as passed (§6.8)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const u1 = host.createDomain({ kind, memoryKiB: 256 });
      const u2 = host.createDomain({ kind, memoryKiB: 256, maxGrantFrames: 7 });
      let q = querySize(u1, 0x4321);
      assert.deepEqual([q.rc, q.status, q.nr_frames, q.max_nr_frames], [0, GNTST_bad_domain, 0xaaaa, 0xbbbb]);
      for (const target of [u2.domid, dom0.domid]) {
        q = querySize(u1, target);
        assert.deepEqual(
          [q.rc, q.status, q.nr_frames, q.max_nr_frames],
          [0, GNTST_permission_denied, 0xaaaa, 0xbbbb],
        );
      }
      // dom0 may query a domU (XSM dummy policy, quirk §15.21).
      q = querySize(dom0, u2.domid);
      assert.deepEqual([q.status, q.nr_frames, q.max_nr_frames], [GNTST_okay, 1, 7]);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('count != 1 is -EINVAL (§6.8)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      for (const count of [0, 2]) {
        const q = querySize(d, DOMID_SELF, count);
        assert.deepEqual([q.rc, q.status, q.nr_frames], [-XEN_EINVAL, 0x7777, 0xaaaa]);
      }
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

describe('get_status_frames (§6.10)', () => {
  it('hvm: not available to HVM guests (-ENOSYS, hvm_grant_table_op)', () =>
    forEach(
      VERSIONS.map((v) => [v] as const),
      (version) => {
        const host = newHost();
        const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
        if (version === 2) setVersion(d, 2);
        fillSentinel(d, listAddr(d), 1);
        const r = getStatusFrames(d, DOMID_SELF, version === 2 ? 1 : 0);
        assert.deepEqual(r, { rc: -XEN_ENOSYS, status: 0x7777 });
        assert.deepEqual(readList(d, listAddr(d), 1), [SENTINEL]);
        assert.deepEqual(host.checkInvariants(), []);
      },
    ));

  it('pv v1: zero frames is okay; any non-zero request is general_error (no status frames in v1)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setupTable(d, DOMID_SELF, 8);
    fillSentinel(d, listAddr(d), 2);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 0), { rc: 0, status: GNTST_okay });
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 1), { rc: 0, status: GNTST_general_error });
    assert.deepEqual(readList(d, listAddr(d), 2), [SENTINEL, SENTINEL]);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv v2: bounded by status frames, not grant frames (XSA-382)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    setupTable(d, DOMID_SELF, 8);
    assert.equal(d.xen.gt.nrStatusFrames, 1);
    for (const nr of [2, 8]) {
      fillSentinel(d, listAddr(d), 9);
      assert.deepEqual(getStatusFrames(d, DOMID_SELF, nr), { rc: 0, status: GNTST_general_error });
      assert.deepEqual(readList(d, listAddr(d), 9), Array(9).fill(SENTINEL));
    }
    fillSentinel(d, listAddr(d), 2);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 1), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(d, listAddr(d), 2), [BigInt(d.xen.gt.status.get(0)), SENTINEL]);
    // 9 grant frames need ceil(9/8) = 2 status frames.
    setupTable(d, DOMID_SELF, 9);
    fillSentinel(d, listAddr(d), 3);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 2), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(d, listAddr(d), 3), [
      BigInt(d.xen.gt.status.get(0)),
      BigInt(d.xen.gt.status.get(1)),
      SENTINEL,
    ]);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 3), { rc: 0, status: GNTST_general_error });
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv v2: never grows the table', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    const free = host.hypervisor.frames.freeFrames;
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 2), { rc: 0, status: GNTST_general_error });
    assert.equal(d.xen.gt.nrGrantFrames, 1);
    assert.equal(d.xen.gt.nrStatusFrames, 1);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv v2: bad_domain, permission_denied from a domU, allowed from dom0 (quirk §15.21)', () => {
    const host = newHost();
    const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const u1 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const u2 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(u2, 2);
    fillSentinel(u1, listAddr(u1), 1);
    assert.deepEqual(getStatusFrames(u1, 0x3333, 1), { rc: 0, status: GNTST_bad_domain });
    assert.deepEqual(getStatusFrames(u1, u2.domid, 1), { rc: 0, status: GNTST_permission_denied });
    assert.deepEqual(readList(u1, listAddr(u1), 1), [SENTINEL]);
    assert.deepEqual(getStatusFrames(dom0, u2.domid, 1), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(dom0, listAddr(dom0), 1), [BigInt(u2.xen.gt.status.get(0))]);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv v2: the list stops at the first unwritable entry; later writable entries stay as they were (gnttab_get_status_frames: break)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    setupTable(d, DOMID_SELF, 9);
    assert.equal(d.xen.gt.nrStatusFrames, 2);
    // Entry 0 ends a read-only page; entry 1 starts the writable page after it.
    const ro = 0x9000_0000;
    const rw = ro + 4096;
    const roMfn = d.frameOf(scratch(d, 6));
    const rwMfn = d.frameOf(scratch(d, 7));
    assert.equal(uva(d, rw, rwMfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), 0);
    assert.equal(uva(d, ro, roMfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), 0);
    fillSentinel(d, rw - 8, 2);
    assert.equal(uva(d, ro, roMfn * 4096 + _PAGE_PRESENT), 0);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 2, rw - 8), { rc: 0, status: GNTST_bad_virt_addr });
    assert.deepEqual(readList(d, rw - 8, 2), [SENTINEL, SENTINEL]);
    // Both entries writable: both written.
    assert.equal(uva(d, ro, roMfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), 0);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 2, rw - 8), { rc: 0, status: GNTST_okay });
    assert.deepEqual(readList(d, rw - 8, 2), [
      BigInt(d.xen.gt.status.get(0)),
      BigInt(d.xen.gt.status.get(1)),
    ]);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv v2: unmapped frame_list is bad_virt_addr; count != 1 is -EINVAL; unreadable struct -EFAULT', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 1, UNMAPPED), { rc: 0, status: GNTST_bad_virt_addr });
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 1, listAddr(d), 2), { rc: -XEN_EINVAL, status: 0x7777 });
    assert.deepEqual(getStatusFrames(d, DOMID_SELF, 1, listAddr(d), 0), { rc: -XEN_EINVAL, status: 0x7777 });
    assert.equal(
      d.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_get_status_frames, UNMAPPED, 1),
      -XEN_EFAULT,
    );
    assert.deepEqual(host.checkInvariants(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('get_version (§6.11)', () => {
  it('reports the current version; count is ignored', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      for (const count of [0, 1, 7, 0x7fff_ffff]) {
        assert.deepEqual(getVersion(d, DOMID_SELF, count), { rc: 0, version: 1 });
      }
      setVersion(d, 2);
      assert.deepEqual(getVersion(d, DOMID_SELF, 0), { rc: 0, version: 2 });
      assert.deepEqual(getVersion(d, d.domid, 3), { rc: 0, version: 2 });
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it("a bad domain is the hypercall's -ESRCH, not a status (quirk §15.17); another domU is -EPERM", () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const u1 = host.createDomain({ kind, memoryKiB: 256 });
      const u2 = host.createDomain({ kind, memoryKiB: 256 });
      setVersion(u2, 2);
      assert.deepEqual(getVersion(u1, 0x2222), { rc: -XEN_ESRCH, version: 0xdead });
      assert.deepEqual(getVersion(u1, DOMID_IO), { rc: -XEN_ESRCH, version: 0xdead });
      assert.deepEqual(getVersion(u1, u2.domid), { rc: -XEN_EPERM, version: 0xdead });
      assert.deepEqual(getVersion(u1, dom0.domid), { rc: -XEN_EPERM, version: 0xdead });
      assert.deepEqual(getVersion(dom0, u2.domid), { rc: 0, version: 2 });
      assert.deepEqual(getVersion(dom0, u1.domid), { rc: 0, version: 1 });
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

function entryBytes(dom: DomainHandle, ref: number): number[] {
  return [...dom.memory.read(entryAddr(dom, ref), dom.xen.gt.version === 1 ? 8 : 16)];
}

describe('swap_grant_ref (§6.12)', () => {
  it('a fresh table swaps two empty entries (XSA-134)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) setVersion(d, 2);
      assert.deepEqual(swap(d, [[8, 9]]), { rc: 0, statuses: [GNTST_okay] });
      mapGrantTable(d);
      assert.deepEqual(entryBytes(d, 8), entryBytes(d, 9));
      assert.ok(entryBytes(d, 8).every((b) => b === 0));
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('ref_a then ref_b bounds-checked: bad_gntref, nothing changes (XSA-18)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) setVersion(d, 2);
      mapGrantTable(d);
      const perFrame = version === 1 ? 512 : 256;
      grantAccess(d, 9, 0, 0x1111);
      grantAccess(d, perFrame - 1, 0, 0x2222);
      const before9 = entryBytes(d, 9);
      const beforeLast = entryBytes(d, perFrame - 1);
      const r = swap(d, [
        [5000, 9],
        [9, 0xffff_ffff],
        [perFrame, 9],
        [9, perFrame],
        [0xffff_ffff, 0xffff_ffff],
      ]);
      assert.deepEqual(r, { rc: 0, statuses: Array(5).fill(GNTST_bad_gntref) });
      assert.deepEqual(entryBytes(d, 9), before9);
      assert.deepEqual(entryBytes(d, perFrame - 1), beforeLast);
      // The last ref of the frame is in range.
      assert.deepEqual(swap(d, [[9, perFrame - 1]]), { rc: 0, statuses: [GNTST_okay] });
      assert.deepEqual(entryBytes(d, 9), beforeLast);
      assert.deepEqual(entryBytes(d, perFrame - 1), before9);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('ref_a == ref_b is okay and a no-op', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) setVersion(d, 2);
      mapGrantTable(d);
      grantAccess(d, 12, 3, 0x4444, GTF_permit_access | GTF_readonly);
      const before = entryBytes(d, 12);
      assert.deepEqual(swap(d, [[12, 12]]), { rc: 0, statuses: [GNTST_okay] });
      assert.deepEqual(entryBytes(d, 12), before);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a pinned ref_a or ref_b gives eagain and leaves both entries alone', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      if (version === 2) setVersion(a, 2);
      mapGrantTable(a);
      grantAccess(a, 20, b.domid, a.frameOf(0x3000));
      grantAccess(a, 21, b.domid, a.frameOf(0x4000));
      const m = mapRef(b, a, 20);
      assert.equal(m.status, GNTST_okay);
      const e20 = entryBytes(a, 20);
      const e21 = entryBytes(a, 21);
      const st20 = a.memory.readU16(statusAddr(a, 20));
      assert.deepEqual(swap(a, [[20, 21]]), { rc: 0, statuses: [GNTST_eagain] });
      assert.deepEqual(swap(a, [[21, 20]]), { rc: 0, statuses: [GNTST_eagain] });
      assert.deepEqual(entryBytes(a, 20), e20);
      assert.deepEqual(entryBytes(a, 21), e21);
      assert.equal(a.memory.readU16(statusAddr(a, 20)), st20);
      assert.equal(a.xen.gt.activeEntry(20).pin, 1);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.deepEqual(swap(a, [[21, 20]]), { rc: 0, statuses: [GNTST_okay] });
      assert.deepEqual(entryBytes(a, 20), e21);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v1: swaps exactly the 8-byte entries', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      mapGrantTable(d);
      const a = entryAddr(d, 30);
      const b = entryAddr(d, 31);
      d.memory.write(a, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      d.memory.write(b, Uint8Array.of(9, 10, 11, 12, 13, 14, 15, 16));
      d.memory.write(entryAddr(d, 32), Uint8Array.of(0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee));
      assert.deepEqual(swap(d, [[30, 31]]), { rc: 0, statuses: [GNTST_okay] });
      assert.deepEqual(entryBytes(d, 30), [9, 10, 11, 12, 13, 14, 15, 16]);
      assert.deepEqual(entryBytes(d, 31), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.deepEqual(entryBytes(d, 32), Array(8).fill(0xee));
      assert.deepEqual(entryBytes(d, 29), Array(8).fill(0));
      assert.deepEqual(host.checkInvariants({ statusBits: false }), []);
    }));

  it('v2: swaps the 16-byte entries and their status words', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      setVersion(d, 2);
      mapGrantTable(d);
      const bytesA = Array.from({ length: 16 }, (_, i) => i + 1);
      const bytesB = Array.from({ length: 16 }, (_, i) => 0x80 + i);
      d.memory.write(entryAddr(d, 30), Uint8Array.from(bytesA));
      d.memory.write(entryAddr(d, 31), Uint8Array.from(bytesB));
      // The status frames are shared read-write with the guest; make the two words differ.
      d.memory.writeU16(statusAddr(d, 30), 0x0008);
      d.memory.writeU16(statusAddr(d, 31), 0x0018);
      d.memory.writeU16(statusAddr(d, 32), 0x0010);
      assert.deepEqual(swap(d, [[30, 31]]), { rc: 0, statuses: [GNTST_okay] });
      assert.deepEqual(entryBytes(d, 30), bytesB);
      assert.deepEqual(entryBytes(d, 31), bytesA);
      assert.equal(d.memory.readU16(statusAddr(d, 30)), 0x0018);
      assert.equal(d.memory.readU16(statusAddr(d, 31)), 0x0008);
      assert.equal(d.memory.readU16(statusAddr(d, 32)), 0x0010);
      assert.deepEqual(entryBytes(d, 32), Array(16).fill(0));
      for (const ref of [30, 31, 32]) d.memory.writeU16(statusAddr(d, ref), 0);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a batch writes every element its own status', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    mapGrantTable(d);
    grantAccess(d, 10, 1, 0xabc);
    const r = swap(d, [
      [10, 11],
      [600, 1],
      [11, 11],
      [11, 12],
    ]);
    assert.deepEqual(r, { rc: 0, statuses: [GNTST_okay, GNTST_bad_gntref, GNTST_okay, GNTST_okay] });
    assert.equal(d.memory.readU32(entryAddr(d, 12) + 4), 0xabc);
    assert.equal(d.memory.readU32(entryAddr(d, 10) + 4), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('XENMEM_add_to_physmap, XENMAPSPACE_grant_table (§11)', () => {
  it('pv: -EACCES (only translated domains place frames)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    assert.equal(addToPhysmap(d, 0, 0xc0000), -XEN_EACCES);
    assert.equal(addToPhysmap(d, 3, 0xc0003, d.domid), -XEN_EACCES);
    assert.equal(d.xen.gt.nrGrantFrames, 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: idx past the end grows the table to idx+1; idx >= max is -EINVAL', () =>
    forEach(
      VERSIONS.map((v) => [v] as const),
      (version) => {
        const host = newHost();
        const d = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxGrantFrames: 8 });
        if (version === 2) setVersion(d, 2);
        assert.equal(addToPhysmap(d, 5, 0xc0005), 0);
        assert.equal(d.xen.gt.nrGrantFrames, 6);
        assert.equal(d.xen.gt.nrStatusFrames, version === 2 ? 1 : 0);
        // The frame is visible at the GFN: Xen's table bytes appear there.
        const mfn = d.xen.gt.shared.get(5);
        host.hypervisor.machine.u8[mfn * 4096 + 100] = 0x42;
        assert.equal(d.memory.readU8(0xc000_5000 + 100), 0x42);
        const free = host.hypervisor.frames.freeFrames;
        assert.equal(addToPhysmap(d, 8, 0xc0008), -XEN_EINVAL);
        assert.equal(addToPhysmap(d, 0xffff_ffff, 0xc0009), -XEN_EINVAL);
        assert.equal(d.xen.gt.nrGrantFrames, 6);
        assert.equal(host.hypervisor.frames.freeFrames, free);
        assert.equal(addToPhysmap(d, 7, 0xc0007), 0);
        assert.equal(d.xen.gt.nrGrantFrames, 8);
        assert.deepEqual(host.checkInvariants(), []);
      },
    ));

  it('hvm: a frame is visible at only one GFN; placing it again moves it (XSA-379)', () =>
    forEach(
      VERSIONS.map((v) => [v] as const),
      (version) => {
        const host = newHost();
        const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
        if (version === 2) setVersion(d, 2);
        assert.equal(addToPhysmap(d, 0, 0xc0000), 0);
        d.memory.writeU32(0xc000_0000 + 8 * 40 + 4, 0xfeedbeef);
        assert.equal(addToPhysmap(d, 0, 0xc0010), 0);
        assert.throws(() => d.memory.readU32(0xc000_0000), GuestFault);
        assert.equal(d.memory.readU32(0xc001_0000 + 8 * 40 + 4), 0xfeedbeef);
        assert.equal(d.xen.gt.sharedGfn.get(0), 0xc0010);
        setupTable(d, DOMID_SELF, 1);
        assert.deepEqual(readList(d, listAddr(d), 1), [0xc0010n]);
        if (version === 2) {
          const st = XENMAPIDX_grant_table_status;
          assert.equal(addToPhysmap(d, st, 0xd0000), 0);
          assert.equal(addToPhysmap(d, st, 0xd0004), 0);
          assert.throws(() => d.memory.readU16(0xd000_0000), GuestFault);
          assert.equal(d.memory.readU16(0xd000_4000), 0);
          assert.equal(d.xen.gt.statusGfn.get(0), 0xd0004);
        }
        assert.deepEqual(host.checkInvariants(), []);
      },
    ));

  it('hvm: placing a grant frame over RAM frees that RAM page (totPages goes down)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    d.memory.writeU32(0x5000, 0x12345678);
    const ramMfn = d.xen.p2m!.get(5)!.mfn;
    const tot = d.xen.totPages;
    const free = host.hypervisor.frames.freeFrames;
    assert.equal(addToPhysmap(d, 0, 5), 0);
    assert.equal(d.xen.totPages, tot - 1);
    assert.equal(host.hypervisor.frames.freeFrames, free + 1);
    assert.equal(d.xen.owned.has(ramMfn), false);
    assert.equal(d.xen.p2m!.get(5)!.mfn, d.xen.gt.shared.get(0));
    // gfn 5 now shows the (empty) grant frame, not the old RAM.
    assert.equal(d.memory.readU32(0x5000), 0);
    // Moving the grant frame away leaves gfn 5 empty.
    assert.equal(addToPhysmap(d, 0, 0xc0000), 0);
    assert.throws(() => d.memory.readU32(0x5000), GuestFault);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm v1: the status bit makes idx too large: -EINVAL, nothing grows (§11)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const free = host.hypervisor.frames.freeFrames;
    assert.equal(addToPhysmap(d, XENMAPIDX_grant_table_status, 0xd0000), -XEN_EINVAL);
    assert.equal(addToPhysmap(d, XENMAPIDX_grant_table_status + 1, 0xd0000), -XEN_EINVAL);
    assert.equal(d.xen.gt.nrGrantFrames, 1);
    assert.equal(d.xen.gt.nrStatusFrames, 0);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    assert.throws(() => d.memory.readU16(0xd000_0000), GuestFault);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm v2: a status index past the end grows to 8*(idx+1) grant frames, or fails above max (§11)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxGrantFrames: 16 });
    setVersion(d, 2);
    assert.equal(addToPhysmap(d, XENMAPIDX_grant_table_status + 1, 0xd0001), 0);
    assert.equal(d.xen.gt.nrGrantFrames, 16);
    assert.equal(d.xen.gt.nrStatusFrames, 2);
    assert.equal(d.xen.gt.statusGfn.get(1), 0xd0001);
    assert.deepEqual(host.checkInvariants(), []);

    // With max 10, status frame 1 would need 16 grant frames: Xen does not grow at all.
    const e = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxGrantFrames: 10 });
    setVersion(e, 2);
    const free = host.hypervisor.frames.freeFrames;
    assert.equal(addToPhysmap(e, XENMAPIDX_grant_table_status + 1, 0xd0001), -XEN_EINVAL);
    assert.equal(e.xen.gt.nrGrantFrames, 1);
    assert.equal(e.xen.gt.nrStatusFrames, 1);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    // Once the table is 10 frames (2 status frames), the same index is valid.
    setupTable(e, DOMID_SELF, 10);
    assert.equal(e.xen.gt.nrStatusFrames, 2);
    assert.equal(addToPhysmap(e, XENMAPIDX_grant_table_status + 1, 0xd0001), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: unknown domid is -ESRCH; another domU is -EPERM; dom0 may place a domU frame', () => {
    const host = newHost();
    const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const u1 = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const u2 = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    assert.equal(addToPhysmap(u1, 0, 0xc0000, 0x5555), -XEN_ESRCH);
    assert.equal(addToPhysmap(u1, 0, 0xc0000, u2.domid), -XEN_EPERM);
    assert.equal(u2.xen.gt.sharedGfn.get(0), -1);
    assert.equal(addToPhysmap(dom0, 2, 0xc0002, u2.domid), 0);
    assert.equal(u2.xen.gt.nrGrantFrames, 3);
    assert.equal(u2.xen.gt.sharedGfn.get(2), 0xc0002);
    assert.equal(u2.memory.readU32(0xc000_2000), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('XENMEM_remove_from_physmap runs side by side: the entry looked up under the P2M lock is the one removed (guest_physmap_remove_page)', () => {
    assert.equal(runsShared(__HYPERVISOR_memory_op, [XENMEM_remove_from_physmap]), true);
    const host = newHost();
    const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const remove = (caller: DomainHandle, domid: number, gpfn: number) => {
      const addr = scratch(caller, 2);
      caller.memory.write(addr, encodeStruct(xen_remove_from_physmap, { domid, gpfn }));
      return caller.hypercall(__HYPERVISOR_memory_op, XENMEM_remove_from_physmap, addr);
    };
    assert.equal(addToPhysmap(d, 0, 0xc0000), 0);
    // dom0 takes d's grant frame out of d's P2M: it is at no GFN, and setup_table says so.
    assert.equal(remove(dom0, d.domid, 0xc0000), 0);
    assert.equal(d.xen.p2m!.get(0xc0000), undefined);
    assert.equal(d.xen.gt.sharedGfn.get(0), -1);
    setupTable(d, DOMID_SELF, 1);
    assert.deepEqual(readList(d, listAddr(d), 1), [0xffff_ffff_ffff_ffffn]);
    assert.equal(remove(dom0, d.domid, 0xc0000), -XEN_ENOENT);
    // RAM leaves the P2M but stays d's (no page is freed).
    const ram = d.xen.p2m!.get(5)!.mfn;
    const tot = d.xen.totPages;
    const free = host.hypervisor.frames.freeFrames;
    assert.equal(remove(d, DOMID_SELF, 5), 0);
    assert.deepEqual([d.xen.totPages, host.hypervisor.frames.freeFrames], [tot, free]);
    assert.equal(host.hypervisor.frames.owner[ram], d.domid);
    assert.throws(() => d.memory.readU32(0x5000), GuestFault);
    // Placed again, the frame is at the new GFN only.
    assert.equal(addToPhysmap(dom0, 0, 0xc0004, d.domid), 0);
    assert.equal(d.xen.gt.sharedGfn.get(0), 0xc0004);
    assert.deepEqual(d.xen.p2mLock.state(), { readers: 0, writer: false, waitingWriters: 0 });
    assert.deepEqual(host.checkInvariants(), []);
  });

  it("runs side by side, under the table's write lock and then the target's P2M lock (gnttab_map_frame_begin, XSA-486)", () => {
    assert.equal(runsShared(__HYPERVISOR_memory_op, [XENMEM_add_to_physmap]), true);
    assert.equal(lockDebugEnabled(), true, 'test/run.mjs runs with GNTTAB_LOCK_DEBUG=1');
    const host = newHost();
    const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    setVersion(d, 2);
    const st = d.xen.gt.status.get(0);
    assert.equal(addToPhysmap(dom0, XENMAPIDX_grant_table_status, 0xd0000, d.domid), 0);
    assert.ok(lockOrderSeen().includes('grant_table>p2m_lock'));
    assert.equal(d.xen.p2m!.get(0xd0000)?.mfn, st);
    // The reference gnttab_map_frame took went back: the allocation's alone is left.
    assert.equal(host.hypervisor.frames.count[st], 1);
    assert.deepEqual(
      [d.xen.gt.lock.state(), d.xen.p2mLock.state()].map((x) => [x.readers, x.writer]),
      [
        [0, false],
        [0, false],
      ],
    );
    assert.deepEqual(host.checkInvariants(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('update_va_mapping (hypercall 14)', () => {
  it('hvm: -ENOSYS', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const mfn = d.xen.p2m!.get(3)!.mfn;
    assert.equal(uva(d, 0x9000_0000, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), -XEN_ENOSYS);
    assert.throws(() => d.memory.readU8(0x9000_0000), GuestFault);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv: a frame the domain does not own could not be pinned (-EBUSY), a frame outside RAM is I/O memory it may not map (-EPERM), INVALID_MFN -EINVAL (get_page_from_l1e)', () => {
    const host = newHost();
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const bMfn = b.frameOf(0x2000);
    const refs = host.hypervisor.frames.count[bMfn];
    const free = host.hypervisor.frames.freeFrames;
    const va = 0x9000_0000;
    const cases: [number, number][] = [
      [bMfn, -XEN_EBUSY], // another domain's RAM
      [b.xen.gt.shared.get(0), -XEN_EBUSY], // another domain's grant frame
      [0, -XEN_EBUSY], // Xen's own frame
      [host.hypervisor.frames.nrFrames - 1, -XEN_EBUSY], // a free frame
      [1 << 30, -XEN_EPERM], // beyond machine memory: MMIO space
      [2 ** 40 - 1, -XEN_EINVAL], // INVALID_MFN
    ];
    for (const [mfn, rc] of cases) {
      assert.equal(uva(a, va, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), rc, `mfn ${mfn}`);
      assert.throws(() => a.memory.readU8(va), GuestFault);
    }
    assert.equal(host.hypervisor.frames.count[bMfn], refs);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv: cache attributes and GLOBAL are refused (-EINVAL, L1_DISALLOW_MASK for a domain without I/O memory); NX and the high available bits are taken (mod_l1_entry)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const mfn = d.frameOf(0x6000);
    d.memory.writeU32(0x6000, 0x5eed);
    const refs = host.hypervisor.frames.count[mfn]!;
    const va = 0x9000_0000;
    for (const bit of [_PAGE_PWT, _PAGE_PCD, _PAGE_PAT, _PAGE_GLOBAL]) {
      assert.equal(uva(d, va, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW | bit)), -XEN_EINVAL, `bit ${bit}`);
      assert.throws(() => d.memory.readU8(va), GuestFault);
    }
    assert.equal(host.hypervisor.frames.count[mfn], refs);
    // PTE bit 63 (NX) and bits 52-62, given exactly as a BigInt register value.
    const pte = BigInt(mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)) | (1n << 63n) | (0x7ffn << 52n);
    assert.equal(uva(d, va, pte), 0);
    assert.equal(d.memory.readU32(va), 0x5eed);
    assert.equal(host.hypervisor.frames.count[mfn], refs + 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv: re-writing a PTE of the same frame with only whitelisted bits changed takes no reference (mod_l1_entry fast path)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const mfn = d.frameOf(0x6000);
    const va = 0x9000_0000;
    assert.equal(uva(d, va, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), 0);
    const refs = host.hypervisor.frames.count[mfn]!;
    const types = host.hypervisor.frames.typeCount[mfn]!;
    for (const extra of [_PAGE_ACCESSED | _PAGE_DIRTY, _PAGE_USER, _PAGE_AVAIL, 0]) {
      assert.equal(uva(d, va, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW | extra)), 0);
      assert.equal(host.hypervisor.frames.count[mfn], refs);
      assert.equal(host.hypervisor.frames.typeCount[mfn], types);
    }
    // RW is not whitelisted: dropping it is a new mapping (the type reference goes).
    assert.equal(uva(d, va, mfn * 4096 + _PAGE_PRESENT), 0);
    assert.equal(host.hypervisor.frames.count[mfn], refs);
    assert.equal(host.hypervisor.frames.typeCount[mfn], types - 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pv: a read-only PTE reads but faults on write; a zero PTE unmaps and drops its reference', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const mfn = d.frameOf(0x6000);
    d.memory.writeU32(0x6000, 0xc0ffee);
    const refs = host.hypervisor.frames.count[mfn]!;
    const types = host.hypervisor.frames.typeCount[mfn]!;
    const va = 0x9000_0000;
    assert.equal(uva(d, va, mfn * 4096 + _PAGE_PRESENT), 0);
    assert.equal(host.hypervisor.frames.count[mfn], refs + 1);
    assert.equal(host.hypervisor.frames.typeCount[mfn], types);
    assert.equal(d.memory.readU32(va), 0xc0ffee);
    assert.throws(
      () => d.memory.writeU32(va, 1),
      (e: unknown) => e instanceof GuestFault && e.write && e.addr === va,
    );
    assert.equal(d.memory.readU32(0x6000), 0xc0ffee);
    // Upgrade to writable: the write lands in the same frame.
    assert.equal(uva(d, va, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW)), 0);
    assert.equal(host.hypervisor.frames.typeCount[mfn], types + 1);
    d.memory.writeU32(va + 4, 0xabcd);
    assert.equal(d.memory.readU32(0x6004), 0xabcd);
    assert.deepEqual(host.checkInvariants(), []);
    assert.equal(uva(d, va, 0), 0);
    assert.throws(() => d.memory.readU32(va), GuestFault);
    assert.equal(host.hypervisor.frames.count[mfn], refs);
    assert.equal(host.hypervisor.frames.typeCount[mfn], types);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it("pv: the domain's own grant and status frames may be mapped (that is how PV guests reach them)", () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    mapGrantTable(d);
    const w = host.hypervisor.machine.words;
    d.memory.writeU16(GNTTAB_VA + 16 * 9, GTF_accept_transfer);
    assert.equal(w.load16(d.xen.gt.shaAddr(9)), GTF_accept_transfer);
    w.store16(d.xen.gt.statusAddr(9), 0x8);
    assert.equal(d.memory.readU16(STATUS_VA + 18), 0x8);
    w.store16(d.xen.gt.statusAddr(9), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('table growth (§11)', () => {
  it('new frames are zeroed, their refs usable, v2 adds status frames', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      if (version === 2) setVersion(a, 2);
      const perFrame = version === 1 ? 512 : 256;
      const before = host.hypervisor.frames.freeFrames;
      if (kind === 'pv') setupTable(a, DOMID_SELF, 9);
      else assert.equal(addToPhysmap(a, 8, 0xc0008), 0);
      assert.equal(a.xen.gt.nrGrantFrames, 9);
      assert.equal(a.xen.gt.nrStatusFrames, version === 2 ? 2 : 0);
      assert.equal(host.hypervisor.frames.freeFrames, before - 8 - (version === 2 ? 1 : 0));
      for (const mfn of a.xen.gt.shared) assert.ok(host.hypervisor.machine.frame(mfn).every((x) => x === 0));
      mapGrantTable(a, 9);
      const ref = 8 * perFrame + 3; // in the last frame
      a.memory.writeU32(0x7000, 0x600d);
      grantAccess(a, ref, b.domid, a.frameOf(0x7000));
      const m = mapRef(b, a, ref);
      assert.equal(m.status, GNTST_okay);
      assert.equal(b.memory.readU32(MAP_VA), 0x600d);
      assert.equal(mapRef(b, a, 9 * perFrame, MAP_VA + 4096).status, GNTST_bad_gntref);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('growth is all or nothing: without enough machine memory the table is unchanged (XSA-26 lesson)', () => {
    const host = new Host({ memoryMiB: 1 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 800 });
    const free = host.hypervisor.frames.freeFrames;
    assert.ok(free < 40, `expected a nearly full machine, ${free} frames free`);
    assert.deepEqual(setupTable(d, DOMID_SELF, 64), { rc: 0, status: GNTST_general_error });
    assert.equal(d.xen.gt.nrGrantFrames, 1);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    assert.deepEqual(setupTable(d, DOMID_SELF, free + 1), { rc: 0, status: GNTST_okay });
    assert.equal(d.xen.gt.nrGrantFrames, free + 1);
    assert.equal(host.hypervisor.frames.freeFrames, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('v2 sub-page flag survives growth: growth never rewrites existing entries', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    setVersion(d, 2);
    mapGrantTable(d);
    grantAccess(d, 40, 0, 0x1234, GTF_permit_access | GTF_sub_page);
    const before = entryBytes(d, 40);
    setupTable(d, DOMID_SELF, 20);
    assert.equal(d.xen.gt.nrStatusFrames, 3);
    assert.deepEqual(entryBytes(d, 40), before);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
