// GNTTABOP_set_version (reference §6.9) and the version-switching rules of §7:
// what is refused and how, what happens to entries (reserved 0-7 converted, the
// rest zeroed), and the status frames' life cycle (XSA-26, XSA-255, XSA-379, XSA-387).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  DOMID_SELF,
  type DomainHandle,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTST_bad_gntref,
  GNTST_general_error,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GTF_accept_transfer,
  GTF_PAT,
  GTF_PCD,
  GTF_PWT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transfer_committed,
  GTF_transfer_completed,
  GTF_transitive,
  GTF_writing,
  GuestFault,
  gnttab_copy,
  gnttab_set_version,
  gnttab_setup_table,
  Host,
  type HostOptions,
  XEN_EAGAIN,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOMEM,
  XEN_ENOSYS,
  XEN_ERANGE,
} from '../../src/index.ts';
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
  statusBits,
  unmapRef,
  uva,
} from '../helpers/guest.ts';
import { COMBOS, forEach, KIND_ONLY } from '../helpers/matrix.ts';

const OWNER_NONE = -1;

function newHost(o: HostOptions = {}): Host {
  return new Host({ memoryMiB: 16, ...o });
}

/** PV: drops the guest's own mappings of its status frames (they keep v2 -> v1 at -EBUSY). */
function unmapStatusFrames(dom: DomainHandle): void {
  if (dom.kind !== 'pv') return;
  for (let i = 0; i < dom.xen.gt.nrStatusFrames; i++) assert.equal(uva(dom, STATUS_VA + i * 4096, 0), 0);
}

/** Switches version as a well-behaved guest does, and maps the table again afterwards. */
function switchTo(dom: DomainHandle, v: 1 | 2): void {
  if (v === 1) unmapStatusFrames(dom);
  assert.deepEqual(setVersion(dom, v), { rc: 0, version: v });
  mapGrantTable(dom);
}

function growTo(dom: DomainHandle, frames: number): void {
  const r = one(
    gnttabOp(dom, GNTTABOP_setup_table, gnttab_setup_table, [
      { dom: DOMID_SELF, nr_frames: frames, frame_list: scratch(dom, 4) },
    ]),
  );
  assert.equal(r.status, GNTST_okay);
}

/** b copies `len` bytes from (a, ref) at `off` into its own page at 0x8000. */
function copyFrom(b: DomainHandle, a: DomainHandle, ref: number, off: number, len: number): number {
  return one(
    gnttabOp(b, GNTTABOP_copy, gnttab_copy, [
      {
        source_u: ref,
        source_domid: a.domid,
        source_offset: off,
        dest_u: b.frameOf(0x8000),
        dest_domid: DOMID_SELF,
        dest_offset: 0,
        len,
        flags: GNTCOPY_source_gref,
      },
    ]),
  ).status;
}

/** The bytes of all of a domain's shared frames, as Xen holds them. */
function sharedBytes(host: Host, dom: DomainHandle): Uint8Array[] {
  return dom.xen.gt.shared.toArray().map((mfn) => host.hypervisor.machine.frame(mfn).slice());
}

function writeV1(dom: DomainHandle, ref: number, flags: number, domid: number, frame: number): void {
  const a = entryAddr(dom, ref);
  dom.memory.writeU16(a + 2, domid);
  dom.memory.writeU32(a + 4, frame);
  dom.memory.writeU16(a, flags);
}

function writeV2(
  dom: DomainHandle,
  ref: number,
  flags: number,
  domid: number,
  word1: number,
  frame: number | bigint,
): void {
  const a = entryAddr(dom, ref);
  dom.memory.writeU16(a + 2, domid);
  dom.memory.writeU32(a + 4, word1);
  dom.memory.writeU64(a + 8, frame);
  dom.memory.writeU16(a, flags);
}

function v1Entry(flags: number, domid: number, frame: number): number[] {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint16(0, flags, true);
  v.setUint16(2, domid, true);
  v.setUint32(4, frame, true);
  return [...b];
}

function v2Entry(flags: number, domid: number, word1: number, frame: number): number[] {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, flags, true);
  v.setUint16(2, domid, true);
  v.setUint32(4, word1, true);
  v.setBigUint64(8, BigInt(frame), true);
  return [...b];
}

function entryBytes(dom: DomainHandle, ref: number): number[] {
  return [...dom.memory.read(entryAddr(dom, ref), dom.xen.gt.version === 1 ? 8 : 16)];
}

// ---------------------------------------------------------------------------------------------

describe('set_version: what is refused (§6.9 steps 1-5)', () => {
  it('a version other than 1 or 2 is -EINVAL; op.version gets the version in effect (§6.9 steps 2, 13)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      if (version === 2) setVersion(d, 2);
      mapGrantTable(d);
      grantAccess(d, 20, 0, 0x1234);
      const before = entryBytes(d, 20);
      for (const bad of [0, 3, 0xffff_ffff, 0x1_0001]) {
        assert.deepEqual(setVersion(d, bad), { rc: -XEN_EINVAL, version: version });
      }
      assert.equal(d.xen.gt.version, version);
      assert.deepEqual(entryBytes(d, 20), before);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v2 without max version 2 is -ENOSYS and the table stays v1 (host max-ver:1 or domain maxGrantVersion 1; quirk §15.11)', () =>
    forEach(KIND_ONLY, (kind) => {
      const hostWide = newHost({ gnttab: { maxVersion: 1 } });
      const perHost = hostWide.createDomain({ kind, memoryKiB: 256 });
      const mixed = newHost();
      const perDomain = mixed.createDomain({ kind, memoryKiB: 256, maxGrantVersion: 1 });
      const other = mixed.createDomain({ kind, memoryKiB: 256 });
      for (const [host, d] of [
        [hostWide, perHost],
        [mixed, perDomain],
      ] as const) {
        mapGrantTable(d);
        grantAccess(d, 20, 0, 0x1234);
        const free = host.hypervisor.frames.freeFrames;
        assert.deepEqual(setVersion(d, 2), { rc: -XEN_ENOSYS, version: 1 });
        assert.equal(d.xen.gt.version, 1);
        assert.equal(d.xen.gt.nrStatusFrames, 0);
        assert.equal(host.hypervisor.frames.freeFrames, free);
        assert.equal(d.memory.readU32(entryAddr(d, 20) + 4), 0x1234);
        // An invalid version is still -EINVAL (checked first); v1 is a no-op.
        assert.deepEqual(setVersion(d, 3), { rc: -XEN_EINVAL, version: 1 });
        assert.deepEqual(setVersion(d, 1), { rc: 0, version: 1 });
        assert.deepEqual(host.checkInvariants(), []);
      }
      // The per-domain limit binds that domain only.
      assert.deepEqual(setVersion(other, 2), { rc: 0, version: 2 });
    }));

  it('the current version is a no-op returning 0, even with refs >= 8 pinned; nothing is zeroed (quirk §15.11)', () =>
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
      const before = sharedBytes(host, a);
      const free = host.hypervisor.frames.freeFrames;
      assert.deepEqual(setVersion(a, version), { rc: 0, version });
      assert.deepEqual(sharedBytes(host, a), before);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.equal(a.xen.gt.activeEntry(20).pin, 1);
      assert.equal(statusBits(a, 20), GTF_reading | GTF_writing);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('-EBUSY while a ref >= 8 is pinned, and nothing changes; after the unmap the switch goes through (§6.9 step 5)', () =>
    forEach(COMBOS, (kind, version) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
      if (version === 2) setVersion(a, 2);
      mapGrantTable(a);
      a.memory.writeU32(0x3000, 0xb5b5);
      grantAccess(a, 8, b.domid, a.frameOf(0x3000)); // the first non-reserved ref
      grantAccess(a, 30, b.domid, a.frameOf(0x4000));
      const m = mapRef(b, a, 8);
      assert.equal(m.status, GNTST_okay);
      const other = version === 1 ? 2 : 1;
      if (other === 1) unmapStatusFrames(a);
      const before = sharedBytes(host, a);
      const status = [...a.xen.gt.status];
      const free = host.hypervisor.frames.freeFrames;
      assert.deepEqual(setVersion(a, other), { rc: -XEN_EBUSY, version });
      assert.equal(a.xen.gt.version, version);
      assert.deepEqual(sharedBytes(host, a), before);
      assert.deepEqual(a.xen.gt.status.toArray(), status);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.equal(b.memory.readU32(MAP_VA), 0xb5b5);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.deepEqual(setVersion(a, other), { rc: 0, version: other });
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v1 -> v2 without memory for the status frames is -ENOMEM and leaves the table alone (§6.9 step 6)', () => {
    const host = new Host({ memoryMiB: 1 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256, maxGrantFrames: 1000 });
    mapGrantTable(d);
    // The grant table takes every frame left in the machine.
    growTo(d, d.xen.gt.nrGrantFrames + host.hypervisor.frames.freeFrames);
    assert.equal(host.hypervisor.frames.freeFrames, 0);
    grantAccess(d, 20, 0, 0x4242);
    const before = sharedBytes(host, d);
    assert.deepEqual(setVersion(d, 2), { rc: -XEN_ENOMEM, version: 1 });
    assert.equal(d.xen.gt.version, 1);
    assert.equal(d.xen.gt.nrStatusFrames, 0);
    assert.deepEqual(sharedBytes(host, d), before);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('acts on the caller only; count is ignored; an unreadable struct is -EFAULT (§6.9, §2.1)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind, memoryKiB: 256 });
      for (const count of [0, 5]) {
        const r = gnttabOp(a, GNTTABOP_set_version, gnttab_set_version, [{ version: 2 }], count);
        assert.deepEqual([r.rc, one(r).version], [0, 2]);
      }
      assert.equal(a.xen.gt.version, 2);
      assert.equal(b.xen.gt.version, 1);
      assert.equal(b.xen.gt.nrStatusFrames, 0);
      assert.equal(
        b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_set_version, 0x9000_0000, 1),
        -XEN_EFAULT,
      );
      assert.equal(b.xen.gt.version, 1);
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

describe('set_version: entries across a switch (§7)', () => {
  it('every entry from ref 8 up is zeroed and the refs per frame change (quirk §15.12)', () =>
    forEach(COMBOS, (kind, from) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      if (from === 2) setVersion(a, 2);
      growTo(a, 2);
      mapGrantTable(a);
      // Fill every non-reserved byte of both frames (a guest may write anything there).
      const reservedBytes = from === 1 ? 64 : 128;
      a.memory.fill(GNTTAB_VA + reservedBytes, 2 * 4096 - reservedBytes, 0xa5);
      const to = from === 1 ? 2 : 1;
      assert.equal(a.xen.gt.nrGrantEntries(), from === 1 ? 1024 : 512);
      switchTo(a, to);
      assert.equal(a.xen.gt.nrGrantEntries(), to === 1 ? 1024 : 512);
      for (const frame of sharedBytes(host, a)) assert.ok(frame.every((x) => x === 0));
      // Ref 600 exists in v1 (2 x 512) but not in v2 (2 x 256).
      const m = mapRef(b, a, 600);
      assert.equal(m.status, to === 1 ? GNTST_general_error : GNTST_bad_gntref);
      assert.equal(mapRef(b, a, 511).status, GNTST_general_error);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v1 -> v2 converts the reserved entries blindly: reading/writing move to status, GTF_transfer_completed too (§7)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      mapGrantTable(d);
      const xfer = GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed;
      const entries: [number, number, number][] = [
        [GTF_permit_access, 1, 0x1234],
        [GTF_permit_access | GTF_readonly, 2, 0xffff_ffff],
        [xfer, 3, 77],
        [0, 9, 5], // invalid, with leftover domid and frame
        [GTF_permit_access | GTF_sub_page, 4, 0x55],
        [GTF_permit_access | GTF_reading | GTF_writing, 5, 0x66], // guest-written Xen bits
        [GTF_permit_access | GTF_PWT | GTF_PCD | GTF_PAT, 6, 0x77],
        [0, 0, 0],
      ];
      entries.forEach(([f, dom, fr], ref) => {
        writeV1(d, ref, f, dom, fr);
      });
      writeV1(d, 8, GTF_permit_access, 1, 0x88);
      switchTo(d, 2);
      entries.forEach(([f, dom, fr], ref) => {
        assert.deepEqual(
          entryBytes(d, ref),
          v2Entry(f & ~(GTF_reading | GTF_writing), dom, 0, fr),
          `ref ${ref}`,
        );
        assert.equal(d.memory.readU16(statusAddr(d, ref)), f & (GTF_reading | GTF_writing), `status ${ref}`);
      });
      // The accept_transfer entry's completed bit (bit 3) now reads as GTF_reading in status.
      assert.equal(d.memory.readU16(statusAddr(d, 2)), GTF_transfer_completed);
      assert.deepEqual(entryBytes(d, 8), Array(16).fill(0));
      for (let ref = 8; ref < 256; ref++) assert.equal(d.memory.readU16(statusAddr(d, ref)), 0);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v2 -> v1 keeps permit_access entries (flags | status, 32-bit frame) and zeroes every other type (§7)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      switchTo(d, 2);
      writeV2(d, 0, GTF_permit_access, 1, 0, 0x1234);
      writeV2(d, 1, GTF_permit_access | GTF_readonly, 2, 0, 0xffff_ffff);
      writeV2(d, 2, GTF_accept_transfer, 3, 0, 77);
      writeV2(d, 3, 0, 9, 0x1111, 5);
      writeV2(d, 5, GTF_permit_access | GTF_sub_page, 5, 0x0200_0100, 0xabc);
      writeV2(d, 6, GTF_permit_access | GTF_PCD, 6, 0, 0x99);
      writeV2(d, 7, GTF_permit_access, 7, 0xdead_beef, 0x700);
      writeV2(d, 9, GTF_permit_access, 1, 0, 0x900);
      // Ref 4 is really pinned: its status bits join the v1 flags.
      grantAccess(d, 4, b.domid, d.frameOf(0x3000));
      const m = mapRef(b, d, 4);
      assert.equal(m.status, GNTST_okay);
      assert.equal(d.memory.readU16(statusAddr(d, 4)), GTF_reading | GTF_writing);
      switchTo(d, 1);
      assert.deepEqual(entryBytes(d, 0), v1Entry(GTF_permit_access, 1, 0x1234));
      assert.deepEqual(entryBytes(d, 1), v1Entry(GTF_permit_access | GTF_readonly, 2, 0xffff_ffff));
      assert.deepEqual(entryBytes(d, 2), Array(8).fill(0));
      assert.deepEqual(entryBytes(d, 3), Array(8).fill(0));
      assert.deepEqual(
        entryBytes(d, 4),
        v1Entry(GTF_permit_access | GTF_reading | GTF_writing, b.domid, d.frameOf(0x3000)),
      );
      // Sub-page keeps bit 8; page_off and length have nowhere to go.
      assert.deepEqual(entryBytes(d, 5), v1Entry(GTF_permit_access | GTF_sub_page, 5, 0xabc));
      assert.deepEqual(entryBytes(d, 6), v1Entry(GTF_permit_access | GTF_PCD, 6, 0x99));
      assert.deepEqual(entryBytes(d, 7), v1Entry(GTF_permit_access, 7, 0x700));
      assert.deepEqual(entryBytes(d, 9), Array(8).fill(0));
      assert.deepEqual(host.checkInvariants(), []);
      // The pin survived; unmapping clears the bits where they now live (the v1 flags).
      assert.equal(d.xen.gt.activeEntry(4).pin, 1);
      assert.equal(unmapRef(b, m.handle), GNTST_okay);
      assert.equal(d.memory.readU16(entryAddr(d, 4)), GTF_permit_access);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a reserved sub-page grant after v2 -> v1 cannot be mapped but copies as a whole page (§7 quirk, quirk §15.6)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      switchTo(a, 2);
      const page = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
      a.memory.write(0x3000, page);
      // page_off 0x100, length 0x200
      writeV2(a, 5, GTF_permit_access | GTF_sub_page, b.domid, 0x0200_0100, a.frameOf(0x3000));
      assert.equal(copyFrom(b, a, 5, 0, 16), GNTST_general_error);
      assert.equal(copyFrom(b, a, 5, 0x100, 0x200), GNTST_okay);
      assert.equal(mapRef(b, a, 5).status, GNTST_general_error);
      switchTo(a, 1);
      assert.equal(mapRef(b, a, 5).status, GNTST_general_error);
      b.memory.fill(0x8000, 4096, 0);
      assert.equal(copyFrom(b, a, 5, 0, 4096), GNTST_okay);
      assert.deepEqual(b.memory.read(0x8000, 4096), page);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('a pinned reserved ref keeps its pin and its status bits through v1 -> v2 -> v1 (§7, xenstored across kexec)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: kind === 'pv' ? 'hvm' : 'pv', memoryKiB: 256 });
      mapGrantTable(a);
      a.memory.writeU32(0x3000, 0x1111);
      grantAccess(a, 1, b.domid, a.frameOf(0x3000)); // GNTTAB_RESERVED_XENSTORE
      grantAccess(a, 2, b.domid, a.frameOf(0x4000));
      const rw = mapRef(b, a, 1);
      const ro = mapRef(b, a, 2, MAP_VA + 4096, GNTMAP_host_map | 4 /* GNTMAP_readonly */);
      assert.deepEqual([rw.status, ro.status], [GNTST_okay, GNTST_okay]);
      switchTo(a, 2);
      assert.equal(a.memory.readU16(statusAddr(a, 1)), GTF_reading | GTF_writing);
      assert.equal(a.memory.readU16(statusAddr(a, 2)), GTF_reading);
      assert.equal(a.memory.readU16(entryAddr(a, 1)), GTF_permit_access);
      assert.equal(a.xen.gt.activeEntry(1).pin, 1);
      assert.equal(a.xen.gt.activeEntry(2).pin, 0x100);
      // The mapping still reaches the same page.
      b.memory.writeU32(MAP_VA + 4, 0x2222);
      assert.equal(a.memory.readU32(0x3004), 0x2222);
      assert.deepEqual(host.checkInvariants(), []);
      switchTo(a, 1);
      assert.equal(a.memory.readU16(entryAddr(a, 1)), GTF_permit_access | GTF_reading | GTF_writing);
      assert.equal(a.memory.readU16(entryAddr(a, 2)), GTF_permit_access | GTF_reading);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(unmapRef(b, rw.handle), GNTST_okay);
      assert.equal(unmapRef(b, ro.handle, MAP_VA + 4096), GNTST_okay);
      assert.equal(statusBits(a, 1), 0);
      assert.equal(statusBits(a, 2), 0);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('v2 -> v1 with a transitive reserved entry is -ERANGE and nothing changes (§6.9 step 7)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      switchTo(d, 2);
      growTo(d, 9);
      mapGrantTable(d);
      writeV2(d, 6, GTF_transitive, 1, 0x0000_0002, 30); // trans_domid 2, gref 30
      grantAccess(d, 40, 1, 0x4040);
      const before = sharedBytes(host, d);
      const status = [...d.xen.gt.status];
      const free = host.hypervisor.frames.freeFrames;
      unmapStatusFrames(d);
      assert.deepEqual(setVersion(d, 1), { rc: -XEN_ERANGE, version: 2 });
      assert.equal(d.xen.gt.version, 2);
      assert.deepEqual(sharedBytes(host, d), before);
      assert.deepEqual(d.xen.gt.status.toArray(), status);
      assert.equal(host.hypervisor.frames.freeFrames, free);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('-ERANGE for a permit_access or sub-page reserved frame >= 2^32; other types and refs >= 8 do not care (§6.9 step 7)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      switchTo(d, 2);
      unmapStatusFrames(d);
      const big = 0x1_0000_0000n;
      writeV2(d, 9, GTF_permit_access, 1, 0, big * 2n); // not reserved: zeroed, never checked
      writeV2(d, 4, 0, 1, 0, big); // invalid type: ignored
      writeV2(d, 3, GTF_permit_access, 1, 0, big);
      assert.deepEqual(setVersion(d, 1), { rc: -XEN_ERANGE, version: 2 });
      writeV2(d, 3, GTF_permit_access | GTF_sub_page, 1, 0x10, big + 5n);
      assert.deepEqual(setVersion(d, 1), { rc: -XEN_ERANGE, version: 2 });
      writeV2(d, 3, GTF_permit_access, 1, 0, big - 1n);
      writeV2(d, 5, GTF_accept_transfer, 1, 0, big);
      assert.deepEqual(setVersion(d, 1), { rc: 0, version: 1 });
      mapGrantTable(d);
      assert.deepEqual(entryBytes(d, 3), v1Entry(GTF_permit_access, 1, 0xffff_ffff));
      assert.deepEqual(entryBytes(d, 4), Array(8).fill(0));
      assert.deepEqual(entryBytes(d, 5), Array(8).fill(0));
      assert.deepEqual(entryBytes(d, 9), Array(8).fill(0));
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('after each switch the table works in the new layout (grant, map, status word, unmap)', () =>
    forEach(COMBOS, (kind, grantee) => {
      const host = newHost();
      const a = host.createDomain({ kind, memoryKiB: 256 });
      const b = host.createDomain({ kind: grantee === 1 ? 'pv' : 'hvm', memoryKiB: 256 });
      mapGrantTable(a);
      for (const v of [2, 1, 2] as const) {
        switchTo(a, v);
        a.memory.writeU32(0x3000, 0x3000 + v);
        grantAccess(a, 20, b.domid, a.frameOf(0x3000));
        const m = mapRef(b, a, 20);
        assert.equal(m.status, GNTST_okay, `v${v}`);
        assert.equal(b.memory.readU32(MAP_VA), 0x3000 + v);
        assert.equal(statusBits(a, 20), GTF_reading | GTF_writing);
        // In v2 the header carries no Xen bits.
        assert.equal(a.memory.readU16(entryAddr(a, 20)) & 0x18, v === 2 ? 0 : 0x18);
        assert.deepEqual(host.checkInvariants(), []);
        assert.equal(unmapRef(b, m.handle), GNTST_okay);
        assert.equal(statusBits(a, 20), 0);
      }
      assert.deepEqual(host.checkInvariants(), []);
    }));
});

// ---------------------------------------------------------------------------------------------

describe('set_version: status frames (§6.9 steps 6, 9; §7)', () => {
  it('ceil(frames/8) zeroed status frames on v1 -> v2, all freed on v2 -> v1, over and over (XSA-26)', () =>
    forEach(KIND_ONLY, (kind) => {
      for (const [frames, expect] of [
        [1, 1],
        [8, 1],
        [9, 2],
        [17, 3],
      ] as const) {
        const host = newHost();
        const d = host.createDomain({ kind, memoryKiB: 256 });
        growTo(d, frames);
        const free = host.hypervisor.frames.freeFrames;
        for (let round = 0; round < 4; round++) {
          assert.deepEqual(setVersion(d, 2), { rc: 0, version: 2 });
          assert.equal(d.xen.gt.nrStatusFrames, expect, `${frames} frames`);
          assert.equal(host.hypervisor.frames.freeFrames, free - expect);
          const status = [...d.xen.gt.status];
          for (const mfn of status) {
            assert.equal(host.hypervisor.frames.owner[mfn], d.domid);
            assert.ok(host.hypervisor.machine.frame(mfn).every((x) => x === 0));
          }
          // Dirty the status words as Xen would for pins, to see them zeroed next time.
          host.hypervisor.machine.words.store16(d.xen.gt.statusAddr(0), 0x18);
          assert.deepEqual(setVersion(d, 1), { rc: 0, version: 1 });
          assert.equal(d.xen.gt.nrStatusFrames, 0);
          assert.equal(host.hypervisor.frames.freeFrames, free);
          for (const mfn of status) assert.equal(host.hypervisor.frames.owner[mfn], OWNER_NONE);
          assert.deepEqual(host.checkInvariants(), []);
        }
      }
    }));

  it('growing in v2 adds status frames, and v2 -> v1 frees them all (§7, §11)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const free = host.hypervisor.frames.freeFrames;
      assert.deepEqual(setVersion(d, 2), { rc: 0, version: 2 });
      growTo(d, 17);
      assert.equal(d.xen.gt.nrStatusFrames, 3);
      assert.equal(host.hypervisor.frames.freeFrames, free - 16 - 3);
      assert.deepEqual(host.checkInvariants(), []);
      assert.deepEqual(setVersion(d, 1), { rc: 0, version: 1 });
      assert.equal(host.hypervisor.frames.freeFrames, free - 16);
      assert.equal(d.xen.gt.nrGrantFrames, 17);
      assert.deepEqual(host.checkInvariants(), []);
    }));

  it('pv: v2 -> v1 while the guest still maps a status frame is -EBUSY and nothing changes (XSA-255, XSA-387)', () => {
    const host = newHost();
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    switchTo(a, 2);
    growTo(a, 9);
    mapGrantTable(a);
    // Only the second status frame stays mapped.
    assert.equal(uva(a, STATUS_VA, 0), 0);
    grantAccess(a, 3, b.domid, a.frameOf(0x3000));
    grantAccess(a, 40, b.domid, a.frameOf(0x4000));
    const before = sharedBytes(host, a);
    const status = [...a.xen.gt.status];
    const free = host.hypervisor.frames.freeFrames;
    assert.deepEqual(setVersion(a, 1), { rc: -XEN_EBUSY, version: 2 });
    assert.equal(a.xen.gt.version, 2);
    assert.deepEqual(a.xen.gt.status.toArray(), status);
    assert.deepEqual(sharedBytes(host, a), before);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    for (const mfn of status) assert.equal(host.hypervisor.frames.owner[mfn], a.domid);
    // gnttab_unpopulate_status_frames drops each allocation reference, then
    // looks at the count: the first frame's, dropped before the second was
    // found mapped, is back; the second keeps a's PTE reference.
    assert.deepEqual(
      status.map((mfn) => host.hypervisor.frames.count[mfn]),
      [1, 2],
    );
    assert.equal(a.memory.readU16(STATUS_VA + 4096), 0);
    assert.deepEqual(host.checkInvariants(), []);
    // v2 still works.
    const m = mapRef(b, a, 40);
    assert.equal(m.status, GNTST_okay);
    assert.equal(host.hypervisor.machine.words.load16(a.xen.gt.statusAddr(40)), GTF_reading | GTF_writing);
    assert.equal(unmapRef(b, m.handle), GNTST_okay);
    // Once the mapping is gone, the switch goes through and the frames are freed.
    assert.equal(uva(a, STATUS_VA + 4096, 0), 0);
    assert.deepEqual(setVersion(a, 1), { rc: 0, version: 1 });
    assert.equal(host.hypervisor.frames.freeFrames, free + 2);
    for (const mfn of status) assert.equal(host.hypervisor.frames.owner[mfn], OWNER_NONE);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: v2 -> v1 removes the status frames from the P2M, wherever they were last placed (§6.9 step 9, XSA-379)', () => {
    const host = newHost();
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const free = host.hypervisor.frames.freeFrames;
    switchTo(d, 2);
    growTo(d, 9);
    mapGrantTable(d);
    assert.equal(d.memory.readU16(STATUS_VA + 4096), 0);
    // Move status frame 0 to a second GFN: the first one empties.
    assert.equal(addToPhysmap(d, 0x8000_0000, 0xd0010), 0);
    assert.throws(() => d.memory.readU16(STATUS_VA), GuestFault);
    assert.equal(d.memory.readU16(0xd001_0000), 0);
    assert.deepEqual(host.checkInvariants(), []);
    assert.deepEqual(setVersion(d, 1), { rc: 0, version: 1 });
    for (const va of [STATUS_VA, STATUS_VA + 4096, 0xd001_0000])
      assert.throws(() => d.memory.readU16(va), GuestFault);
    assert.equal(d.xen.p2m!.get(0xd0010), undefined);
    assert.equal(d.xen.gt.nrStatusFrames, 0);
    // The grant frames stay where they are.
    assert.equal(d.memory.readU32(GNTTAB_VA + 8 * 4096), 0);
    assert.equal(host.hypervisor.frames.freeFrames, free - 8);
    assert.deepEqual(host.checkInvariants(), []);
    // Placing a status frame in v1 now fails: the bit makes idx invalid.
    assert.equal(addToPhysmap(d, 0x8000_0000, 0xd0000), -XEN_EINVAL);
  });

  it('v2 -> v1 is -EAGAIN while a transitive copy is in flight, checked before the reserved entries (XSA-501)', () =>
    forEach(KIND_ONLY, (kind) => {
      const host = newHost();
      const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const b = host.createDomain({ kind, memoryKiB: 256 });
      const c = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      mapGrantTable(a);
      a.memory.writeU32(0x3000, 0x7a7a);
      grantAccess(a, 10, b.domid, a.frameOf(0x3000));
      switchTo(b, 2);
      // B's reserved ref 2: transitive, for C, through (A, 10).
      writeV2(b, 2, GTF_transitive, c.domid, a.domid, 10);
      unmapStatusFrames(b);
      let during: { rc: number; version: number } | null = null;
      let nrV2Ops = -1;
      const w = host.hypervisor.machine.words;
      const inner = a.xen.gt.shaAddr(10);
      // B's other vCPU switches while Xen has dropped B's lock to acquire (A, 10).
      w.interpose = (_op, addr) => {
        if (during === null && addr === inner) {
          nrV2Ops = b.xen.gt.nrV2Ops;
          during = setVersion(b, 1);
        }
      };
      let st: number;
      try {
        st = copyFrom(c, b, 2, 0, 4);
      } finally {
        w.interpose = null;
      }
      assert.equal(st, GNTST_okay);
      assert.equal(c.memory.readU32(0x8000), 0x7a7a);
      assert.equal(nrV2Ops, 1);
      assert.deepEqual(during, { rc: -XEN_EAGAIN, version: 2 });
      assert.equal(b.xen.gt.nrV2Ops, 0);
      assert.equal(b.xen.gt.version, 2);
      // With nothing in flight the reserved transitive entry is what blocks the switch.
      assert.deepEqual(setVersion(b, 1), { rc: -XEN_ERANGE, version: 2 });
      writeV2(b, 2, 0, 0, 0, 0);
      assert.deepEqual(setVersion(b, 1), { rc: 0, version: 1 });
      assert.deepEqual(host.checkInvariants(), []);
    }));
});
