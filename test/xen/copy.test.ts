// GNTTABOP_copy (5): reference §6.7, §6.7.1, §8, §9; quirks §15.2, §15.6, §15.9,
// §15.14, §15.15, §15.20; open observation §16.1.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  DOMID_SELF,
  type DomainHandle,
  encodeArray,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_page,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_okay,
  GNTST_permission_denied,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  type GnttabOptions,
  GTF_accept_transfer,
  GTF_PWT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
  type StructDef,
  type StructValue,
  XEN_EFAULT,
  XEN_EINVAL,
} from '../../src/index.ts';
import {
  entryAddr,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  one,
  scratch,
  setVersion,
  statusBits,
} from '../helpers/guest.ts';

const PAGE = 4096;
const KINDS = ['pv', 'hvm'] as const;
type Kind = (typeof KINDS)[number];

type CopyFields = typeof gnttab_copy extends StructDef<infer F> ? F : never;
type CopyOp = Partial<StructValue<CopyFields>>;

interface World {
  host: Host;
  /** Granters a and b, caller c. */
  a: DomainHandle;
  b: DomainHandle;
  c: DomainHandle;
}

function world(
  o: { a?: Kind; b?: Kind; c?: Kind; va?: 1 | 2; vb?: 1 | 2; vc?: 1 | 2; gnttab?: GnttabOptions } = {},
): World {
  const host = new Host({ memoryMiB: 16, ...(o.gnttab !== undefined ? { gnttab: o.gnttab } : {}) });
  const a = host.createDomain({ kind: o.a ?? 'pv', memoryKiB: 256 });
  const b = host.createDomain({ kind: o.b ?? 'pv', memoryKiB: 256 });
  const c = host.createDomain({ kind: o.c ?? 'pv', memoryKiB: 256 });
  for (const [d, v] of [
    [a, o.va ?? 1],
    [b, o.vb ?? 1],
    [c, o.vc ?? 1],
  ] as const) {
    if (v === 2) assert.equal(setVersion(d, 2).rc, 0);
    mapGrantTable(d);
  }
  return { host, a, b, c };
}

function pat(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = ((i * 7 + seed * 29) % 251) + 1;
  return out;
}

/** The machine frame behind `addr` in the domain's address space. */
function mfnOf(d: DomainHandle, addr: number): number {
  const base = d.xen.translatePage(addr, false);
  assert.ok(base >= 0, `nothing mapped at 0x${addr.toString(16)}`);
  return base / PAGE;
}

function i16(x: number): number {
  return (x << 16) >> 16;
}

function pinOf(d: DomainHandle, ref: number): number {
  return d.xen.gt.activeEntryIfAny(ref)?.pin ?? 0;
}

function copy(d: DomainHandle, ops: readonly CopyOp[], count = ops.length): { rc: number; st: number[] } {
  const r = gnttabOp(d, GNTTABOP_copy, gnttab_copy, ops, count);
  return { rc: r.rc, st: r.out.map((o) => o.status) };
}

/** Copy with a whole-machine snapshot taken after the op array is in place and after the call. */
function copySnap(
  host: Host,
  d: DomainHandle,
  ops: readonly CopyOp[],
): { rc: number; st: number[]; before: Uint8Array; after: Uint8Array } {
  const addr = scratch(d);
  d.memory.write(
    addr,
    encodeArray(
      gnttab_copy,
      ops.map((o) => ({ ...o, status: 0 })),
    ),
  );
  const before = host.hypervisor.machine.u8.slice();
  const rc = d.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, addr, ops.length);
  const after = host.hypervisor.machine.u8.slice();
  const st: number[] = [];
  for (let i = 0; i < ops.length; i++) st.push(i16(d.memory.readU16(addr + i * gnttab_copy.size + 36)));
  return { rc, st, before, after };
}

/** Every machine byte outside [start, start+len) is unchanged. */
function assertOnlyChanged(before: Uint8Array, after: Uint8Array, start: number, len: number): void {
  assert.equal(Buffer.compare(before.subarray(0, start), after.subarray(0, start)), 0, 'bytes below changed');
  assert.equal(
    Buffer.compare(before.subarray(start + len), after.subarray(start + len)),
    0,
    'bytes above the destination range changed',
  );
}

const fromGref = (rd: number, ref: number, srcOff: number, gmfn: number, dstOff: number, len: number) => ({
  source_u: ref,
  source_domid: rd,
  source_offset: srcOff,
  dest_u: gmfn,
  dest_domid: DOMID_SELF,
  dest_offset: dstOff,
  len,
  flags: GNTCOPY_source_gref,
});

const toGref = (gmfn: number, srcOff: number, rd: number, ref: number, dstOff: number, len: number) => ({
  source_u: gmfn,
  source_domid: DOMID_SELF,
  source_offset: srcOff,
  dest_u: ref,
  dest_domid: rd,
  dest_offset: dstOff,
  len,
  flags: GNTCOPY_dest_gref,
});

const gmfnCopy = (src: number, srcOff: number, dst: number, dstOff: number, len: number) => ({
  source_u: src,
  source_domid: DOMID_SELF,
  source_offset: srcOff,
  dest_u: dst,
  dest_domid: DOMID_SELF,
  dest_offset: dstOff,
  len,
  flags: 0,
});

function refCounts(host: Host, mfns: number[]): number[][] {
  const f = host.hypervisor.frames;
  return mfns.map((m) => [f.count[m]!, f.typeCount[m]!]);
}

/** Nothing pinned, no GTF_reading/GTF_writing, invariants hold. */
function assertQuiet(host: Host, entries: [DomainHandle, number][]): void {
  for (const [d, ref] of entries) {
    assert.equal(pinOf(d, ref), 0, `d${d.domid} ref ${ref} still pinned`);
    assert.equal(statusBits(d, ref), 0, `d${d.domid} ref ${ref} still has status bits`);
  }
  for (const d of host.domains) assert.equal(d.xen.gt.nrV2Ops, 0, `d${d.domid} nr_v2_ops`);
  assert.deepEqual(host.checkInvariants(), []);
}

/** v2 sub-page entry: domid, page_off, length, frame first, flags last. */
function grantSubPage(d: DomainHandle, ref: number, domid: number, frame: number, off: number, len: number) {
  assert.equal(d.xen.gt.version, 2);
  const e = entryAddr(d, ref);
  d.memory.writeU16(e + 2, domid);
  d.memory.writeU16(e + 4, off);
  d.memory.writeU16(e + 6, len);
  d.memory.writeU64(e + 8, frame);
  d.memory.writeU16(e, GTF_permit_access | GTF_sub_page);
}

/** v2 transitive entry: domid may copy through (transDomid, gref). */
function grantTransitive(
  d: DomainHandle,
  ref: number,
  domid: number,
  transDomid: number,
  gref: number,
  extra = 0,
) {
  const e = entryAddr(d, ref);
  d.memory.writeU16(e + 2, domid);
  d.memory.writeU16(e + 4, transDomid);
  d.memory.writeU16(e + 6, 0);
  d.memory.writeU32(e + 8, gref);
  d.memory.writeU32(e + 12, 0);
  d.memory.writeU16(e, GTF_transitive | extra);
}

function mapOne(d: DomainHandle, rd: number, ref: number, flags = GNTMAP_host_map) {
  return one(
    gnttabOp(d, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [{ host_addr: MAP_VA, flags, ref, dom: rd }]),
  );
}

// ---------------------------------------------------------------------------------------------

describe('GNTTABOP_copy moves bytes (§6.7, §9)', () => {
  for (const gk of KINDS)
    for (const v of [1, 2] as const)
      for (const ck of KINDS) {
        it(`${gk} v${v} granter, ${ck} caller: gref->gmfn and gmfn->gref move exactly the bytes asked for and leave nothing pinned (§6.7 step 7)`, () => {
          const { host, a, c } = world({ a: gk, va: v, c: ck });
          const aPage = 0x3000;
          const cPage = 0x7000;
          const data = pat(PAGE, 1);
          a.memory.write(aPage, data);
          grantAccess(a, 10, c.domid, a.frameOf(aPage));
          const aMfn = mfnOf(a, aPage);
          const cMfn = mfnOf(c, cPage);
          const refs0 = refCounts(host, [aMfn, cMfn]);

          const r1 = copySnap(host, c, [fromGref(a.domid, 10, 100, c.frameOf(cPage), 2000, 300)]);
          assert.equal(r1.rc, 0);
          assert.deepEqual(r1.st, [GNTST_okay]);
          assert.deepEqual(c.memory.read(cPage + 2000, 300), data.subarray(100, 400));
          assertOnlyChanged(r1.before, r1.after, cMfn * PAGE + 2000, 300);
          assertQuiet(host, [[a, 10]]);
          assert.deepEqual(refCounts(host, [aMfn, cMfn]), refs0);

          const back = pat(500, 2);
          c.memory.write(cPage, back);
          const r2 = copySnap(host, c, [toGref(c.frameOf(cPage), 0, a.domid, 10, 3500, 500)]);
          assert.equal(r2.rc, 0);
          assert.deepEqual(r2.st, [GNTST_okay]);
          assert.deepEqual(a.memory.read(aPage + 3500, 500), back);
          assert.deepEqual(a.memory.read(aPage, 3500), data.subarray(0, 3500));
          assertOnlyChanged(r2.before, r2.after, aMfn * PAGE + 3500, 500);
          assertQuiet(host, [[a, 10]]);
          assert.deepEqual(refCounts(host, [aMfn, cMfn]), refs0);
        });
      }

  for (const ck of KINDS) {
    it(`${ck} caller copies gref->gref between two other domains (v1 pv and v2 hvm granters)`, () => {
      const { host, a, b, c } = world({ a: 'pv', va: 1, b: 'hvm', vb: 2, c: ck });
      const data = pat(PAGE, 3);
      a.memory.write(0x4000, data);
      const old = pat(PAGE, 4);
      b.memory.write(0x5000, old);
      grantAccess(a, 11, c.domid, a.frameOf(0x4000), GTF_permit_access | GTF_readonly);
      grantAccess(b, 12, c.domid, b.frameOf(0x5000));
      const bMfn = mfnOf(b, 0x5000);
      const r = copySnap(host, c, [
        {
          source_u: 11,
          source_domid: a.domid,
          source_offset: 1000,
          dest_u: 12,
          dest_domid: b.domid,
          dest_offset: 10,
          len: 2048,
          flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
        },
      ]);
      assert.equal(r.rc, 0);
      assert.deepEqual(r.st, [GNTST_okay]);
      const want = old.slice();
      want.set(data.subarray(1000, 3048), 10);
      assert.deepEqual(b.memory.read(0x5000, PAGE), want);
      assert.deepEqual(a.memory.read(0x4000, PAGE), data);
      assertOnlyChanged(r.before, r.after, bMfn * PAGE + 10, 2048);
      assertQuiet(host, [
        [a, 11],
        [b, 12],
      ]);
    });

    it(`${ck} caller copies gmfn->gmfn with both sides DOMID_SELF`, () => {
      const { host, c } = world({ c: ck });
      const data = pat(PAGE, 5);
      c.memory.write(0x6000, data);
      const dMfn = mfnOf(c, 0x8000);
      const refs0 = refCounts(host, [mfnOf(c, 0x6000), dMfn]);
      const r = copySnap(host, c, [gmfnCopy(c.frameOf(0x6000), 0, c.frameOf(0x8000), 0, PAGE)]);
      assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
      assert.deepEqual(c.memory.read(0x8000, PAGE), data);
      assertOnlyChanged(r.before, r.after, dMfn * PAGE, PAGE);
      assert.deepEqual(refCounts(host, [mfnOf(c, 0x6000), dMfn]), refs0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('same domain, same page, overlapping ranges: copied as memmove in both directions (§9)', () => {
    const { host, c } = world({ c: 'hvm' });
    const data = pat(PAGE, 6);
    c.memory.write(0x6000, data);
    const g = c.frameOf(0x6000);
    let r = copy(c, [gmfnCopy(g, 0, g, 16, 64)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    const want = data.slice();
    want.set(data.subarray(0, 64), 16);
    assert.deepEqual(c.memory.read(0x6000, PAGE), want);
    // And backwards over the result.
    r = copy(c, [gmfnCopy(g, 40, g, 8, 100)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    const want2 = want.slice();
    want2.set(want.subarray(40, 140), 8);
    assert.deepEqual(c.memory.read(0x6000, PAGE), want2);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('a self-grant copied onto its own page with overlap, by DOMID_SELF and by the numeric domid (a gref side accepts both, §2.6)', () => {
    const { host, c } = world({ c: 'pv' });
    const data = pat(PAGE, 7);
    c.memory.write(0x6000, data);
    grantAccess(c, 9, c.domid, c.frameOf(0x6000));
    const mfn = mfnOf(c, 0x6000);
    const refs0 = refCounts(host, [mfn]);
    const r = copy(c, [
      fromGref(DOMID_SELF, 9, 0, c.frameOf(0x6000), 32, 128),
      fromGref(c.domid, 9, 1000, c.frameOf(0x6000), 990, 50),
    ]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay, GNTST_okay]);
    const want = data.slice();
    want.set(data.subarray(0, 128), 32);
    want.set(want.slice(1000, 1050), 990);
    assert.deepEqual(c.memory.read(0x6000, PAGE), want);
    assert.deepEqual(refCounts(host, [mfn]), refs0);
    assertQuiet(host, [[c, 9]]);
  });
});

describe('GNTTABOP_copy: zero length (quirk §15.15)', () => {
  it('len 0 succeeds with no checks at all, even with garbage in every field (a4a790f432)', () => {
    const { host, a, c } = world({ va: 2 });
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    let sharedOps = 0;
    host.hypervisor.machine.words.interpose = () => {
      sharedOps++;
    };
    const r = copySnap(host, c, [
      {
        source_u: 2 ** 52 + 12345,
        source_domid: 0x7ff7,
        source_offset: 0xffff,
        dest_u: 0xdead_beef,
        dest_domid: 0x4242,
        dest_offset: 0xffff,
        len: 0,
        flags: 0xfffc,
      },
      // a GMFN side naming a foreign domain, and someone else's page
      { ...gmfnCopy(a.frameOf(0x3000), 4095, c.frameOf(0x7000), 4095, 0), source_domid: a.domid },
      // a bad gref, a good gref
      {
        source_u: 100000,
        source_domid: a.domid,
        dest_u: 10,
        dest_domid: a.domid,
        len: 0,
        flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
      },
    ]);
    host.hypervisor.machine.words.interpose = null;
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_okay, GNTST_okay, GNTST_okay]);
    // The grant was never looked at: no shared-word access, not one byte of machine memory changed.
    assert.equal(sharedOps, 0);
    assert.equal(Buffer.compare(r.before, r.after), 0);
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: domain and permission errors (§6.7 step 2, quirks §15.2, §15.14)', () => {
  it('a GMFN side naming anything but DOMID_SELF is permission_denied, even the caller’s own numeric domid (quirk §15.2)', () => {
    const { host, a, c } = world({ a: 'hvm', c: 'pv' });
    const aData = pat(PAGE, 8);
    a.memory.write(0x3000, aData);
    c.memory.write(0x6000, pat(PAGE, 9));
    const cSrc = c.frameOf(0x6000);
    const cDst = c.frameOf(0x7000);
    const r = copy(c, [
      { ...gmfnCopy(cSrc, 0, cDst, 0, 16), source_domid: c.domid },
      { ...gmfnCopy(cSrc, 0, cDst, 0, 16), dest_domid: c.domid },
      // A's own GFN 3 through A: would read A's page if allowed
      { ...gmfnCopy(a.frameOf(0x3000), 0, cDst, 0, 16), source_domid: a.domid },
      // ... or write it
      { ...gmfnCopy(cSrc, 0, a.frameOf(0x3000), 0, 16), dest_domid: a.domid },
      // permission beats a bad gref on the other side (quirk §15.14)
      {
        ...gmfnCopy(cSrc, 0, 99999, 0, 16),
        source_domid: c.domid,
        dest_domid: a.domid,
        flags: GNTCOPY_dest_gref,
      },
      gmfnCopy(cSrc, 0, cDst, 0, 16),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [
      GNTST_permission_denied,
      GNTST_permission_denied,
      GNTST_permission_denied,
      GNTST_permission_denied,
      GNTST_permission_denied,
      GNTST_okay,
    ]);
    assert.deepEqual(a.memory.read(0x3000, PAGE), aData);
    assert.deepEqual(c.memory.read(0x7000, 16), pat(PAGE, 9).subarray(0, 16));
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('the DOMID_SELF rule holds for every element of a batch, even when the domid pair repeats with other GNTCOPY flags (§16.1)', () => {
    const { host, a, c } = world({ a: 'pv', c: 'pv' });
    const granted = pat(PAGE, 10);
    const secret = pat(PAGE, 11);
    a.memory.write(0x3000, granted);
    a.memory.write(0x4000, secret);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const mine = pat(PAGE, 12);
    c.memory.write(0x6000, mine);
    const cp1 = c.frameOf(0x7000);
    const cp2 = c.frameOf(0x8000);
    const r = copy(c, [
      // 0: (A, gref) -> SELF gmfn: locks the pair (A, SELF)
      fromGref(a.domid, 10, 0, cp1, 0, 64),
      // 1: same pair (A, SELF), now source as GMFN of A: must not read A's unsheltered page
      { ...fromGref(a.domid, a.frameOf(0x4000), 0, cp2, 0, 64), flags: 0 },
      // 2: pair (SELF, A): SELF gmfn -> (A, gref)
      toGref(c.frameOf(0x6000), 0, a.domid, 10, 100, 64),
      // 3: same pair (SELF, A), dest as GMFN of A: must not write A's other page
      { ...toGref(c.frameOf(0x6000), 0, a.domid, a.frameOf(0x4000), 0, 64), flags: 0 },
      // 4: and the grant still works afterwards
      toGref(c.frameOf(0x6000), 64, a.domid, 10, 200, 64),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [
      GNTST_okay,
      GNTST_permission_denied,
      GNTST_okay,
      GNTST_permission_denied,
      GNTST_okay,
    ]);
    assert.deepEqual(c.memory.read(0x7000, 64), granted.subarray(0, 64));
    assert.deepEqual(c.memory.read(0x8000, PAGE), new Uint8Array(PAGE));
    assert.deepEqual(a.memory.read(0x4000, PAGE), secret);
    assert.deepEqual(a.memory.read(0x3000 + 100, 64), mine.subarray(0, 64));
    assert.deepEqual(a.memory.read(0x3000 + 200, 64), mine.subarray(64, 128));
    assertQuiet(host, [[a, 10]]);
  });

  it('a gref side naming an unknown or destroyed domain is bad_domain, checked before the gref and the offsets (quirk §15.14)', () => {
    const { host, a, c } = world();
    const gone = host.createDomain({ kind: 'pv', memoryKiB: 64 });
    host.destroyDomain(gone.domid);
    assert.equal(host.hypervisor.domains.has(gone.domid), false);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(0x1234, 10, 0, me, 0, 8),
      toGref(me, 0, gone.domid, 10, 0, 8),
      // unknown domain, bad gref and an offset beyond the page: the domain error wins
      fromGref(0x7000, 123456, 4090, me, 0, 100),
      fromGref(a.domid, 10, 0, me, 0, 8),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_bad_domain, GNTST_bad_domain, GNTST_bad_domain, GNTST_okay]);
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: gref and frame errors (§6.7.1, H3)', () => {
  for (const v of [1, 2] as const) {
    it(`v${v} granter: refs at or beyond nr_grant_entries are bad_gntref (${v === 1 ? 512 : 256} per frame)`, () => {
      const { host, a, c } = world({ va: v });
      const n = v === 1 ? 512 : 256;
      assert.equal(a.xen.gt.nrGrantEntries(), n);
      grantAccess(a, n - 1, c.domid, a.frameOf(0x3000));
      const me = c.frameOf(0x7000);
      const r = copy(c, [
        fromGref(a.domid, n, 0, me, 0, 8),
        fromGref(a.domid, 0xffff_ffff, 0, me, 0, 8),
        toGref(me, 0, a.domid, n + 7, 0, 8),
        fromGref(a.domid, n - 1, 0, me, 0, 8),
      ]);
      assert.equal(r.rc, 0);
      assert.deepEqual(r.st, [GNTST_bad_gntref, GNTST_bad_gntref, GNTST_bad_gntref, GNTST_okay]);
      assertQuiet(host, [[a, n - 1]]);
    });

    it(`v${v} granter: wrong grantee, readonly dest, invalid and accept_transfer entries are general_error (H1)`, () => {
      const { host, a, b, c } = world({ va: v });
      const data = pat(PAGE, 13);
      a.memory.write(0x3000, data);
      const f = a.frameOf(0x3000);
      grantAccess(a, 10, b.domid, f); // for someone else
      grantAccess(a, 11, c.domid, f, GTF_permit_access | GTF_readonly);
      grantAccess(a, 12, c.domid, f, 0); // invalid
      grantAccess(a, 13, c.domid, f, GTF_accept_transfer);
      const me = c.frameOf(0x7000);
      const r = copy(c, [
        fromGref(a.domid, 10, 0, me, 0, 8),
        toGref(me, 0, a.domid, 10, 0, 8),
        toGref(me, 0, a.domid, 11, 0, 8),
        fromGref(a.domid, 12, 0, me, 0, 8),
        fromGref(a.domid, 13, 0, me, 0, 8),
        // a readonly grant can still be read
        fromGref(a.domid, 11, 8, me, 8, 8),
      ]);
      assert.equal(r.rc, 0);
      assert.deepEqual(r.st, [
        GNTST_general_error,
        GNTST_general_error,
        GNTST_general_error,
        GNTST_general_error,
        GNTST_general_error,
        GNTST_okay,
      ]);
      assert.deepEqual(a.memory.read(0x3000, PAGE), data);
      assert.deepEqual(
        c.memory.read(0x7000, 16),
        Uint8Array.of(...new Uint8Array(8), ...data.subarray(8, 16)),
      );
      assertQuiet(host, [
        [a, 10],
        [a, 11],
        [a, 12],
      ]);
      // the accept_transfer entry is left exactly as the guest wrote it
      assert.equal(a.memory.readU16(entryAddr(a, 13)), GTF_accept_transfer);
    });
  }

  it('a gref is the low 32 bits of the gnttab_copy_ptr union (§3.2)', () => {
    const { host, a, c } = world();
    const data = pat(PAGE, 14);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const r = copy(c, [{ ...fromGref(a.domid, 10, 0, c.frameOf(0x7000), 0, 32), source_u: 2 ** 40 + 10 }]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    assert.deepEqual(c.memory.read(0x7000, 32), data.subarray(0, 32));
    assertQuiet(host, [[a, 10]]);
  });

  it('pv caller: a GMFN that is not its own is bad_page, on either side (H3)', () => {
    const { host, a, c } = world({ a: 'pv', c: 'pv' });
    const aData = pat(PAGE, 15);
    a.memory.write(0x3000, aData);
    const foreign = a.frameOf(0x3000); // an MFN owned by a
    const r = copy(c, [
      gmfnCopy(foreign, 0, c.frameOf(0x7000), 0, 64),
      gmfnCopy(c.frameOf(0x6000), 0, foreign, 0, 64),
      gmfnCopy(host.hypervisor.frames.nrFrames + 5, 0, c.frameOf(0x7000), 0, 64),
      // its own grant-table frame is its own page and may be read
      gmfnCopy(c.xen.gt.shared.get(0), 0, c.frameOf(0x7000), 0, 8),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_bad_page, GNTST_bad_page, GNTST_bad_page, GNTST_okay]);
    assert.deepEqual(a.memory.read(0x3000, PAGE), aData);
    assert.deepEqual(c.memory.read(0x7000 + 8, 56), new Uint8Array(56));
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm caller: an unpopulated GFN or one holding a foreign grant mapping is bad_page (H3)', () => {
    const { host, a, c } = world({ a: 'pv', c: 'hvm' });
    a.memory.write(0x3000, pat(PAGE, 16));
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const m = mapOne(c, a.domid, 10);
    assert.equal(m.status, GNTST_okay);
    const pinned = pinOf(a, 10);
    const r = copy(c, [
      gmfnCopy(0x90000, 0, c.frameOf(0x7000), 0, 64),
      gmfnCopy(c.frameOf(0x6000), 0, 0xfffff, 0, 64),
      gmfnCopy(MAP_VA / PAGE, 0, c.frameOf(0x7000), 0, 64),
      gmfnCopy(c.frameOf(0x6000), 0, MAP_VA / PAGE, 0, 64),
      gmfnCopy(2 ** 40, 0, c.frameOf(0x7000), 0, 64),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_bad_page, GNTST_bad_page, GNTST_bad_page, GNTST_bad_page, GNTST_bad_page]);
    assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
    assert.equal(pinOf(a, 10), pinned);
    assert.deepEqual(host.checkInvariants(), []);
    const u = one(
      gnttabOp(c, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
        { host_addr: MAP_VA, handle: m.handle },
      ]),
    );
    assert.equal(u.status, GNTST_okay);
    assertQuiet(host, [[a, 10]]);
  });

  for (const gk of KINDS) {
    it(`${gk} granter whose entry names a frame it does not own: bad_page, and the status bits are undone (H3, H2)`, () => {
      const { host, a, b, c } = world({ a: gk, vb: 1 });
      // pv: b's MFN; hvm: an unpopulated GFN
      const frame = gk === 'pv' ? b.frameOf(0x3000) : 0x90000;
      grantAccess(a, 10, c.domid, frame);
      const bData = pat(PAGE, 17);
      b.memory.write(0x3000, bData);
      const me = c.frameOf(0x7000);
      const r = copy(c, [fromGref(a.domid, 10, 0, me, 0, 8), toGref(me, 0, a.domid, 10, 0, 8)]);
      assert.equal(r.rc, 0);
      assert.deepEqual(r.st, [GNTST_bad_page, GNTST_bad_page]);
      assert.deepEqual(b.memory.read(0x3000, PAGE), bData);
      assertQuiet(host, [[a, 10]]);
    });
  }

  it('hvm: a paged-out page answers eagain, on the caller’s GMFN and on the granter’s frame; paged in, it works (H3)', () => {
    const { host, a, c } = world({ a: 'hvm', va: 2, c: 'hvm' });
    const data = pat(PAGE, 18);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    c.pageOut(0x7000);
    a.pageOut(0x3000);
    const me = c.frameOf(0x7000);
    let r = copy(c, [
      gmfnCopy(c.frameOf(0x6000), 0, me, 0, 8),
      gmfnCopy(me, 0, c.frameOf(0x6000), 0, 8),
      fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 8),
      toGref(c.frameOf(0x6000), 0, a.domid, 10, 0, 8),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_eagain, GNTST_eagain, GNTST_eagain, GNTST_eagain]);
    assertQuiet(host, [[a, 10]]);
    a.pageIn(0x3000);
    c.pageIn(0x7000);
    r = copy(c, [fromGref(a.domid, 10, 0, me, 0, 64)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    assert.deepEqual(c.memory.read(0x7000, 64), data.subarray(0, 64));
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: bounds (quirk §15.14, §9)', () => {
  it('offset + len beyond 4096 on either side is bad_copy_arg; exactly 4096 is fine', () => {
    const { host, a, c } = world();
    const data = pat(PAGE, 19);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(a.domid, 10, 4000, me, 0, 97),
      fromGref(a.domid, 10, 0, me, 4000, 97),
      toGref(me, 4095, a.domid, 10, 0, 2),
      fromGref(a.domid, 10, 4000, me, 4000, 96),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_okay]);
    assert.deepEqual(c.memory.read(0x7000 + 4000, 96), data.subarray(4000));
    assert.deepEqual(c.memory.read(0x7000, 4000), new Uint8Array(4000));
    assertQuiet(host, [[a, 10]]);
  });

  it('len above 4096 is always bad_copy_arg', () => {
    const { host, c } = world();
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      gmfnCopy(c.frameOf(0x6000), 0, me, 0, 4097),
      gmfnCopy(c.frameOf(0x6000), 0, me, 0, 0xffff),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_bad_copy_arg, GNTST_bad_copy_arg]);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('buffers are claimed before offsets are checked: a bad gref or frame with a bad offset reports the gref/frame error', () => {
    const { host, a, c } = world({ c: 'hvm' });
    grantAccess(a, 10, c.domid, a.frameOf(0x3000), GTF_permit_access | GTF_readonly);
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(a.domid, 9999, 4095, me, 0, 100),
      fromGref(a.domid, 10, 0, me, 4095, 100),
      gmfnCopy(0x90000, 4095, me, 0, 100),
      // readonly dest (general_error in H1) beats a bad offset too
      toGref(me, 4095, a.domid, 10, 0, 100),
      // both buffers claimed: now the page bound is checked
      fromGref(a.domid, 10, 4095, me, 0, 100),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [
      GNTST_bad_gntref,
      GNTST_bad_copy_arg,
      GNTST_bad_page,
      GNTST_general_error,
      GNTST_bad_copy_arg,
    ]);
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: sub-page grants (§8, quirks §15.6, §15.7, §15.20)', () => {
  it('v1: an entry with GTF_sub_page set is copied as a full page but cannot be mapped (quirk §15.6)', () => {
    const { host, a, c } = world({ a: 'pv', va: 1, c: 'pv' });
    const data = pat(PAGE, 20);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000), GTF_permit_access | GTF_sub_page);
    const r = copy(c, [fromGref(a.domid, 10, 0, c.frameOf(0x7000), 0, PAGE)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    assert.deepEqual(c.memory.read(0x7000, PAGE), data);
    assert.equal(a.xen.gt.nrV2Ops, 0);
    assert.equal(mapOne(c, a.domid, 10).status, GNTST_general_error);
    assertQuiet(host, [[a, 10]]);
  });

  it('v2: a copy inside the window works on both sides; outside it is general_error (§8)', () => {
    const { host, a, c } = world({ a: 'hvm', va: 2, c: 'pv' });
    const data = pat(PAGE, 21);
    a.memory.write(0x3000, data);
    grantSubPage(a, 10, c.domid, a.frameOf(0x3000), 100, 200);
    const me = c.frameOf(0x7000);
    const mine = pat(PAGE, 22);
    c.memory.write(0x6000, mine);
    const r = copy(c, [
      fromGref(a.domid, 10, 100, me, 0, 200),
      fromGref(a.domid, 10, 299, me, 300, 1),
      fromGref(a.domid, 10, 99, me, 400, 10),
      fromGref(a.domid, 10, 250, me, 400, 51),
      fromGref(a.domid, 10, 300, me, 400, 1),
      toGref(c.frameOf(0x6000), 0, a.domid, 10, 150, 150),
      toGref(c.frameOf(0x6000), 0, a.domid, 10, 0, 100),
      toGref(c.frameOf(0x6000), 0, a.domid, 10, 290, 11),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [
      GNTST_okay,
      GNTST_okay,
      GNTST_general_error,
      GNTST_general_error,
      GNTST_general_error,
      GNTST_okay,
      GNTST_general_error,
      GNTST_general_error,
    ]);
    assert.deepEqual(c.memory.read(0x7000, 200), data.subarray(100, 300));
    assert.equal(c.memory.readU8(0x7000 + 300), data[299]);
    assert.deepEqual(c.memory.read(0x7000 + 400, 100), new Uint8Array(100));
    const want = data.slice();
    want.set(mine.subarray(0, 150), 150);
    assert.deepEqual(a.memory.read(0x3000, PAGE), want);
    assertQuiet(host, [[a, 10]]);
  });

  it('v2: a window reaching past the page still cannot be copied across 4096: bad_copy_arg before the window check (quirk §15.14)', () => {
    const { host, a, c } = world({ a: 'pv', va: 2 });
    const data = pat(PAGE, 23);
    a.memory.write(0x3000, data);
    grantSubPage(a, 10, c.domid, a.frameOf(0x3000), 4000, 200);
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(a.domid, 10, 4000, me, 0, 96),
      fromGref(a.domid, 10, 4000, me, 0, 97),
      // outside the window and across the page: the page check comes first
      fromGref(a.domid, 10, 3990, me, 0, 200),
      fromGref(a.domid, 10, 3990, me, 0, 20),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_okay, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 96), data.subarray(4000));
    assertQuiet(host, [[a, 10]]);
  });

  it('v2: page_off of 32768 or more is truncated to 15 bits when the entry is pinned (quirk §15.20)', () => {
    const { host, a, c } = world({ va: 2 });
    const data = pat(PAGE, 24);
    a.memory.write(0x3000, data);
    grantSubPage(a, 10, c.domid, a.frameOf(0x3000), 0x8000 + 100, 200);
    grantSubPage(a, 11, c.domid, a.frameOf(0x3000), 0xffff, 10);
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(a.domid, 10, 100, me, 0, 200),
      fromGref(a.domid, 10, 50, me, 200, 10),
      fromGref(a.domid, 10, 300, me, 200, 1),
      // window [32767, 32777): nothing inside a page is in it
      fromGref(a.domid, 11, 4000, me, 200, 10),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_okay, GNTST_general_error, GNTST_general_error, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 200), data.subarray(100, 300));
    assertQuiet(host, [
      [a, 10],
      [a, 11],
    ]);
  });

  it('v2: a sub-page entry cannot be mapped, and copying it leaves nr_v2_ops at 0 (quirk §15.7)', () => {
    const { host, a, c } = world({ a: 'pv', va: 2, c: 'hvm' });
    const data = pat(PAGE, 25);
    a.memory.write(0x3000, data);
    grantSubPage(a, 10, c.domid, a.frameOf(0x3000), 0, PAGE);
    for (const flags of [GNTMAP_host_map, GNTMAP_host_map | GNTMAP_readonly])
      assert.equal(mapOne(c, a.domid, 10, flags).status, GNTST_general_error);
    assert.equal(c.xen.gt.maptrack.liveCount(), 0);
    assertQuiet(host, [[a, 10]]);
    // Copy into c's own self-grant, acquired while the sub-page source is held.
    grantAccess(c, 40, c.domid, c.frameOf(0x7000));
    const cEntry = c.xen.gt.shaAddr(40);
    const during: number[][] = [];
    host.hypervisor.machine.words.interpose = (_op, addr) => {
      if (addr === cEntry) during.push([a.xen.gt.nrV2Ops, pinOf(a, 10)]);
    };
    const r = copy(c, [
      {
        source_u: 10,
        source_domid: a.domid,
        dest_u: 40,
        dest_domid: DOMID_SELF,
        len: PAGE,
        flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
      },
    ]);
    host.hypervisor.machine.words.interpose = null;
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    assert.deepEqual(c.memory.read(0x7000, PAGE), data);
    assert.deepEqual(during[0], [1, 0x100]);
    assertQuiet(host, [
      [a, 10],
      [c, 40],
    ]);
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: transitive grants (§8, §6.7.1 step 3)', () => {
  // a grants g1 to b; b (v2) grants t to c, transitive through (a, g1); c copies via (b, t).
  const G1 = 20;
  const T = 30;

  for (const [ak, av] of [
    ['pv', 1],
    ['hvm', 2],
  ] as const) {
    it(`${ak} v${av} inner granter: c reads and writes a's page through (b, t); both levels pinned only during the hypercall`, () => {
      const { host, a, b, c } = world({ a: ak, va: av, vb: 2, c: 'pv' });
      const data = pat(PAGE, 26);
      a.memory.write(0x3000, data);
      grantAccess(a, G1, b.domid, a.frameOf(0x3000));
      grantTransitive(b, T, c.domid, a.domid, G1);
      // c's self-grant as destination: acquiring it happens while (b, t) is held.
      grantAccess(c, 40, c.domid, c.frameOf(0x7000));
      const cEntry = c.xen.gt.shaAddr(40);
      const seen: number[][] = [];
      host.hypervisor.machine.words.interpose = (_op, addr) => {
        if (addr === cEntry)
          seen.push([pinOf(b, T), pinOf(a, G1), statusBits(b, T), statusBits(a, G1), b.xen.gt.nrV2Ops]);
      };
      const aMfn = mfnOf(a, 0x3000);
      const refs0 = refCounts(host, [aMfn]);
      const r = copy(c, [
        {
          source_u: T,
          source_domid: b.domid,
          source_offset: 500,
          dest_u: 40,
          dest_domid: DOMID_SELF,
          dest_offset: 0,
          len: 1000,
          flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
        },
      ]);
      host.hypervisor.machine.words.interpose = null;
      assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
      assert.deepEqual(c.memory.read(0x7000, 1000), data.subarray(500, 1500));
      assert.ok(seen.length > 0);
      assert.deepEqual(seen[0], [0x100, 0x100, GTF_reading, GTF_reading, 1]);
      assertQuiet(host, [
        [b, T],
        [a, G1],
        [c, 40],
      ]);
      assert.deepEqual(refCounts(host, [aMfn]), refs0);

      // and writes go through to a's page
      const mine = pat(64, 27);
      c.memory.write(0x6000, mine);
      const w = copy(c, [toGref(c.frameOf(0x6000), 0, b.domid, T, 4000, 64)]);
      assert.deepEqual([w.rc, ...w.st], [0, GNTST_okay]);
      assert.deepEqual(a.memory.read(0x3000 + 4000, 64), mine);
      assertQuiet(host, [
        [b, T],
        [a, G1],
      ]);
    });
  }

  it('the window is the inner grant’s (g1 sub-page)', () => {
    const { host, a, b, c } = world({ va: 2, vb: 2 });
    const data = pat(PAGE, 28);
    a.memory.write(0x3000, data);
    grantSubPage(a, G1, b.domid, a.frameOf(0x3000), 512, 256);
    grantTransitive(b, T, c.domid, a.domid, G1);
    const me = c.frameOf(0x7000);
    const r = copy(c, [
      fromGref(b.domid, T, 512, me, 0, 256),
      fromGref(b.domid, T, 511, me, 0, 1),
      fromGref(b.domid, T, 768, me, 0, 1),
      fromGref(b.domid, T, 0, me, 0, PAGE),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_okay, GNTST_general_error, GNTST_general_error, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 256), data.subarray(512, 768));
    assertQuiet(host, [
      [b, T],
      [a, G1],
    ]);
  });

  it('GTF_readonly on either level blocks writes; reads still work', () => {
    const { host, a, b, c } = world({ vb: 2 });
    const data = pat(PAGE, 29);
    a.memory.write(0x3000, data);
    a.memory.write(0x4000, data);
    grantAccess(a, G1, b.domid, a.frameOf(0x3000));
    grantTransitive(b, T, c.domid, a.domid, G1, GTF_readonly);
    grantAccess(a, G1 + 1, b.domid, a.frameOf(0x4000), GTF_permit_access | GTF_readonly);
    grantTransitive(b, T + 1, c.domid, a.domid, G1 + 1);
    c.memory.write(0x6000, pat(PAGE, 30));
    const mine = c.frameOf(0x6000);
    const r = copy(c, [
      toGref(mine, 0, b.domid, T, 0, 64),
      toGref(mine, 0, b.domid, T + 1, 0, 64),
      fromGref(b.domid, T, 0, c.frameOf(0x7000), 0, 64),
      fromGref(b.domid, T + 1, 64, c.frameOf(0x7000), 64, 64),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_general_error, GNTST_general_error, GNTST_okay, GNTST_okay]);
    assert.deepEqual(a.memory.read(0x3000, PAGE), data);
    assert.deepEqual(a.memory.read(0x4000, PAGE), data);
    assert.deepEqual(c.memory.read(0x7000, 128), data.subarray(0, 128));
    assertQuiet(host, [
      [b, T],
      [b, T + 1],
      [a, G1],
      [a, G1 + 1],
    ]);
  });

  it('depth is one level: a transitive entry pointing at a transitive entry fails, though each hop alone works', () => {
    const { host, a, b, c } = world({ va: 2, vb: 2 });
    const d = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    mapGrantTable(d);
    const data = pat(PAGE, 31);
    d.memory.write(0x3000, data);
    grantAccess(d, 13, a.domid, d.frameOf(0x3000));
    grantTransitive(a, G1, b.domid, d.domid, 13); // a -> (d, 13), for b
    grantTransitive(b, T, c.domid, a.domid, G1); // b -> (a, G1), for c
    const r = copy(c, [fromGref(b.domid, T, 0, c.frameOf(0x7000), 0, 64)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
    assertQuiet(host, [
      [b, T],
      [a, G1],
      [d, 13],
    ]);
    // one hop: b copies through (a, G1)
    const ok = copy(b, [fromGref(a.domid, G1, 0, b.frameOf(0x7000), 0, 64)]);
    assert.deepEqual([ok.rc, ...ok.st], [0, GNTST_okay]);
    assert.deepEqual(b.memory.read(0x7000, 64), data.subarray(0, 64));
    assertQuiet(host, [
      [a, G1],
      [d, 13],
    ]);
  });

  it('trans_domid equal to the transitive entry’s own domain, or an unknown domain, is general_error', () => {
    const { host, b, c } = world({ vb: 2 });
    b.memory.write(0x3000, pat(PAGE, 32));
    grantAccess(b, G1, b.domid, b.frameOf(0x3000));
    grantTransitive(b, T, c.domid, b.domid, G1);
    grantTransitive(b, T + 1, c.domid, 0x3333, G1);
    const r = copy(c, [
      fromGref(b.domid, T, 0, c.frameOf(0x7000), 0, 64),
      fromGref(b.domid, T + 1, 0, c.frameOf(0x7000), 0, 64),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_general_error, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
    assertQuiet(host, [
      [b, T],
      [b, T + 1],
      [b, G1],
    ]);
  });

  it('trans_domid equal to the final grantee is allowed: a grant handed back to its owner', () => {
    const { host, a, b } = world({ vb: 2 });
    const data = pat(PAGE, 33);
    a.memory.write(0x3000, data);
    grantAccess(a, G1, b.domid, a.frameOf(0x3000));
    grantTransitive(b, T, a.domid, a.domid, G1);
    const r = copy(a, [fromGref(b.domid, T, 8, a.frameOf(0x5000), 0, 100)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay]);
    assert.deepEqual(a.memory.read(0x5000, 100), data.subarray(8, 108));
    assertQuiet(host, [
      [b, T],
      [a, G1],
    ]);
  });

  it('the inner entry must name the transitive granter (b), not the final grantee (c)', () => {
    const { host, a, b, c } = world({ vb: 2 });
    a.memory.write(0x3000, pat(PAGE, 34));
    grantAccess(a, G1, c.domid, a.frameOf(0x3000));
    grantTransitive(b, T, c.domid, a.domid, G1);
    const r = copy(c, [fromGref(b.domid, T, 0, c.frameOf(0x7000), 0, 64)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_general_error]);
    assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
    assertQuiet(host, [
      [b, T],
      [a, G1],
    ]);
  });

  it('with gnttab transitive off, a transitive copy is general_error (gnttab=no-transitive)', () => {
    const { host, a, b, c } = world({ vb: 2, gnttab: { transitive: false } });
    const data = pat(PAGE, 35);
    a.memory.write(0x3000, data);
    grantAccess(a, G1, b.domid, a.frameOf(0x3000));
    grantTransitive(b, T, c.domid, a.domid, G1);
    const r = copy(c, [
      fromGref(b.domid, T, 0, c.frameOf(0x7000), 0, 64),
      toGref(c.frameOf(0x6000), 0, b.domid, T, 0, 64),
    ]);
    assert.equal(r.rc, 0);
    assert.deepEqual(r.st, [GNTST_general_error, GNTST_general_error]);
    assert.deepEqual(a.memory.read(0x3000, PAGE), data);
    assertQuiet(host, [
      [b, T],
      [a, G1],
    ]);
  });

  it('a transitive entry cannot be mapped, and a v1 table has no transitive type', () => {
    const { host, a, b, c } = world({ vb: 2 });
    a.memory.write(0x3000, pat(PAGE, 36));
    grantAccess(a, G1, b.domid, a.frameOf(0x3000));
    grantTransitive(b, T, c.domid, a.domid, G1);
    assert.equal(mapOne(c, b.domid, T).status, GNTST_general_error);
    assert.equal(mapOne(c, b.domid, T, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_general_error);
    assertQuiet(host, [
      [b, T],
      [a, G1],
    ]);
    // a (v1) writing type 3 gets nothing: copies through it fail too
    const a1 = entryAddr(a, 50);
    a.memory.writeU16(a1 + 2, c.domid);
    a.memory.writeU32(a1 + 4, G1);
    a.memory.writeU16(a1, GTF_transitive);
    const r = copy(c, [fromGref(a.domid, 50, 0, c.frameOf(0x7000), 0, 8)]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_general_error]);
    assertQuiet(host, [[a, 50]]);
  });
});

describe('GNTTABOP_copy: batches (§5, §6.7 step 7)', () => {
  it('consecutive elements naming the same gref keep it claimed; a failed element releases it', () => {
    const { host, a, c } = world({ va: 1 });
    const data = pat(PAGE, 37);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const sha = a.xen.gt.shaAddr(10);
    let pins = 0;
    host.hypervisor.machine.words.interpose = (op, addr) => {
      if (op === 'cmpxchg32' && addr === sha) pins++;
    };
    const r = copy(c, [
      fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 100),
      fromGref(a.domid, 10, 100, c.frameOf(0x7000), 0, 100),
      fromGref(a.domid, 10, 200, c.frameOf(0x8000), 0, 100),
    ]);
    assert.deepEqual([r.rc, ...r.st], [0, GNTST_okay, GNTST_okay, GNTST_okay]);
    assert.equal(pins, 1, 'the entry is pinned once for the three elements');
    pins = 0;
    const r2 = copy(c, [
      fromGref(a.domid, 10, 300, c.frameOf(0x6000), 100, 100),
      fromGref(a.domid, 10, 4000, c.frameOf(0x6000), 200, 100),
      fromGref(a.domid, 10, 400, c.frameOf(0x6000), 300, 100),
    ]);
    host.hypervisor.machine.words.interpose = null;
    assert.deepEqual([r2.rc, ...r2.st], [0, GNTST_okay, GNTST_bad_copy_arg, GNTST_okay]);
    assert.equal(pins, 2, 'a failed element releases both buffers; the next one pins again');
    assert.deepEqual(c.memory.read(0x6000, 100), data.subarray(0, 100));
    assert.deepEqual(c.memory.read(0x7000, 100), data.subarray(100, 200));
    assert.deepEqual(c.memory.read(0x8000, 100), data.subarray(200, 300));
    assert.deepEqual(c.memory.read(0x6000 + 100, 100), data.subarray(300, 400));
    assert.deepEqual(c.memory.read(0x6000 + 200, 100), new Uint8Array(100));
    assert.deepEqual(c.memory.read(0x6000 + 300, 100), data.subarray(400, 500));
    assertQuiet(host, [[a, 10]]);
  });

  for (const kind of KINDS) {
    it(`${kind} callers: buffers end with their hypercall (gnttab_copy_release_buf after the loop of gnttab_copy); the next caller's DOMID_SELF is its own, and an ended grant is read afresh`, () => {
      const { host, a, b, c } = world({ b: kind, c: kind });
      const data = pat(PAGE, 41);
      a.memory.write(0x3000, data);
      grantAccess(a, 10, c.domid, a.frameOf(0x3000));
      grantAccess(a, 11, b.domid, a.frameOf(0x3000));
      const r1 = copy(c, [fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 64)]);
      assert.deepEqual([r1.rc, ...r1.st], [0, GNTST_okay]);
      // b names its own frame at the same address: DOMID_SELF is b now, not the last caller.
      const r2 = copy(b, [fromGref(a.domid, 11, 64, b.frameOf(0x6000), 0, 64)]);
      assert.deepEqual([r2.rc, ...r2.st], [0, GNTST_okay]);
      assert.deepEqual(b.memory.read(0x6000, 64), data.subarray(64, 128));
      assert.deepEqual(
        c.memory.read(0x6000, 128),
        new Uint8Array([...data.subarray(0, 64), ...new Uint8Array(64)]),
      );
      // a ends c's access: the same op in a new hypercall pins afresh, and fails.
      a.memory.writeU16(entryAddr(a, 10), 0);
      const r3 = copy(c, [fromGref(a.domid, 10, 0, c.frameOf(0x7000), 0, 64)]);
      assert.deepEqual([r3.rc, ...r3.st], [0, GNTST_general_error]);
      assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
      assertQuiet(host, [
        [a, 10],
        [a, 11],
      ]);
    });
  }

  it('an unreadable later element ends the batch with -EFAULT; earlier statuses are written and nothing stays pinned (§5 rule 4)', () => {
    const { host, a, c } = world({ c: 'hvm' });
    const data = pat(PAGE, 38);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    // Two elements in the last 80 bytes of RAM; the third would start past the end of RAM.
    const at = c.ramBytes - 2 * gnttab_copy.size;
    const ops = [fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 64), fromGref(a.domid, 9999, 0, 6, 0, 64)];
    ops.forEach((op, i) => {
      c.memory.write(at + i * gnttab_copy.size, new Uint8Array(gnttab_copy.size));
      const base = at + i * gnttab_copy.size;
      c.memory.writeU64(base, op.source_u);
      c.memory.writeU16(base + 8, op.source_domid);
      c.memory.writeU16(base + 10, op.source_offset);
      c.memory.writeU64(base + 16, op.dest_u);
      c.memory.writeU16(base + 24, op.dest_domid);
      c.memory.writeU16(base + 26, op.dest_offset);
      c.memory.writeU16(base + 32, op.len);
      c.memory.writeU16(base + 34, op.flags);
      c.memory.writeU16(base + 36, 0x7777);
    });
    const rc = c.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, at, 3);
    assert.equal(rc, -XEN_EFAULT);
    assert.equal(c.memory.readU16(at + 36), GNTST_okay);
    assert.equal(i16(c.memory.readU16(at + gnttab_copy.size + 36)), GNTST_bad_gntref);
    assert.deepEqual(c.memory.read(0x6000, 64), data.subarray(0, 64));
    assertQuiet(host, [[a, 10]]);
  });

  it('pv: a status that cannot be written back gives -EFAULT after the element was done (§5 rule 4)', () => {
    const { host, a, c } = world({ c: 'pv' });
    const data = pat(PAGE, 39);
    a.memory.write(0x3000, data);
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    // The op array sits in a page c maps a second time, read-only, at 0xa0000000.
    const ro = 0xa000_0000;
    const arr = scratch(c, 3);
    assert.equal(
      c.hypercall(__HYPERVISOR_update_va_mapping, ro, c.frameOf(arr) * PAGE + _PAGE_PRESENT, 0),
      0,
    );
    const base = arr;
    const op = fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 64);
    c.memory.writeU64(base, op.source_u);
    c.memory.writeU16(base + 8, op.source_domid);
    c.memory.writeU64(base + 16, op.dest_u);
    c.memory.writeU16(base + 24, op.dest_domid);
    c.memory.writeU16(base + 32, op.len);
    c.memory.writeU16(base + 34, op.flags);
    c.memory.writeU16(base + 36, 0x5555);
    const rc = c.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, ro, 1);
    assert.equal(rc, -XEN_EFAULT);
    assert.equal(c.memory.readU16(base + 36), 0x5555);
    assert.deepEqual(c.memory.read(0x6000, 64), data.subarray(0, 64));
    assertQuiet(host, [[a, 10]]);
  });

  it('count of 2^31 or more is -EINVAL; count 0 does nothing (§5 rule 1)', () => {
    const { host, a, c } = world();
    grantAccess(a, 10, c.domid, a.frameOf(0x3000));
    const ops = [fromGref(a.domid, 10, 0, c.frameOf(0x6000), 0, 64)];
    for (const count of [0x8000_0000, 0xffff_ffff]) {
      const r = gnttabOp(c, GNTTABOP_copy, gnttab_copy, [{ ...ops[0], status: 0x1111 }], count);
      assert.equal(r.rc, -XEN_EINVAL);
      assert.equal(one(r).status, 0x1111);
    }
    const r0 = gnttabOp(c, GNTTABOP_copy, gnttab_copy, [{ ...ops[0], status: 0x1111 }], 0);
    assert.equal(r0.rc, 0);
    assert.equal(one(r0).status, 0x1111);
    assertQuiet(host, [[a, 10]]);
  });
});

describe('GNTTABOP_copy: v1 pin against a guest that keeps changing its entry (quirk §15.9)', () => {
  for (const flips of [4, 5]) {
    it(`${flips} changes between Xen’s read and its CMPXCHG: ${flips < 5 ? 'the 5th attempt succeeds' : 'general_error after 5 attempts'}`, () => {
      const { host, a, c } = world({ va: 1 });
      const data = pat(PAGE, 40);
      a.memory.write(0x3000, data);
      grantAccess(a, 10, c.domid, a.frameOf(0x3000));
      const sha = a.xen.gt.shaAddr(10);
      const words = host.hypervisor.machine.words;
      let attempts = 0;
      words.interpose = (op, addr) => {
        if (op !== 'cmpxchg32' || addr !== sha) return;
        attempts++;
        // The guest toggles a cache-attribute bit: the entry stays valid but the word changes.
        if (attempts <= flips) Atomics.xor(words.u16, sha >>> 1, GTF_PWT);
      };
      const r = copy(c, [fromGref(a.domid, 10, 0, c.frameOf(0x7000), 0, 64)]);
      words.interpose = null;
      assert.equal(r.rc, 0);
      assert.equal(attempts, 5);
      if (flips < 5) {
        assert.deepEqual(r.st, [GNTST_okay]);
        assert.deepEqual(c.memory.read(0x7000, 64), data.subarray(0, 64));
      } else {
        assert.deepEqual(r.st, [GNTST_general_error]);
        assert.deepEqual(c.memory.read(0x7000, 64), new Uint8Array(64));
      }
      assert.equal(a.memory.readU16(entryAddr(a, 10)) & (GTF_reading | GTF_writing), 0);
      assertQuiet(host, [[a, 10]]);
    });
  }
});
