// GNTTABOP_transfer (4): reference §6.6, §10; quirks §15.2, §15.9, §15.16.
// Only PV domains give pages; the receiver may be PV or HVM.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_SELF,
  type DomainHandle,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_domain,
  GNTST_bad_page,
  GNTST_general_error,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_transfer,
  type GnttabOptions,
  GTF_accept_transfer,
  GTF_PWT,
  GTF_permit_access,
  GTF_transfer_committed,
  GTF_transfer_completed,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_transfer,
  Host,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
} from '../../src/index.ts';
import {
  entryAddr,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  one,
  setVersion,
} from '../helpers/guest.ts';

const PAGE = 4096;
const OWNER_NONE = -1;
/** Where a PV receiver maps the page it was given. */
const RECV_VA = 0xa000_0000;
/** Where an HVM receiver asks for the page: unpopulated space above RAM. */
const RECV_GFN = 0x90000;

function pat(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = ((i * 11 + seed * 37) % 251) + 1;
  return out;
}

interface World {
  host: Host;
  s: DomainHandle;
  r: DomainHandle;
}

/** Sender s (PV) and receiver r, with headroom for one more page unless `full`. */
function world(
  o: { r?: 'pv' | 'hvm'; rv?: 1 | 2; full?: boolean; s?: 'pv' | 'hvm'; gnttab?: GnttabOptions } = {},
): World {
  const host = new Host({ memoryMiB: 16, ...(o.gnttab !== undefined ? { gnttab: o.gnttab } : {}) });
  const s = host.createDomain({ kind: o.s ?? 'pv', memoryKiB: 256 });
  const r = host.createDomain({
    kind: o.r ?? 'pv',
    memoryKiB: 256,
    ...(o.full === true ? {} : { maxMemoryKiB: 512 }),
  });
  if (o.rv === 2) assert.equal(setVersion(r, 2).rc, 0);
  mapGrantTable(r);
  return { host, s, r };
}

/** The sender's page with `data`, unmapped from its page table so only its allocation holds it. */
function giveablePage(s: DomainHandle, addr: number, data: Uint8Array): number {
  s.memory.write(addr, data);
  const mfn = s.frameOf(addr);
  assert.equal(s.hypercall(__HYPERVISOR_update_va_mapping, addr, 0, 0), 0);
  return mfn;
}

function acceptTransfer(r: DomainHandle, ref: number, from: number, frame = 0, flags = GTF_accept_transfer) {
  grantAccess(r, ref, from, frame, flags);
}

function entryFrame(r: DomainHandle, ref: number): number {
  const e = entryAddr(r, ref);
  return r.xen.gt.version === 1 ? r.memory.readU32(e + 4) : Number(r.memory.readU64(e + 8));
}

function xfer(s: DomainHandle, ops: { mfn: number; domid: number; ref: number; status?: number }[]) {
  const res = gnttabOp(s, GNTTABOP_transfer, gnttab_transfer, ops);
  return { rc: res.rc, st: res.out.map((o) => o.status) };
}

function frameBytes(host: Host, mfn: number): Uint8Array {
  return host.hypervisor.machine.u8.slice(mfn * PAGE, (mfn + 1) * PAGE);
}

/** The page went back to Xen: no owner, no references, zeroed. */
function assertFreed(host: Host, mfn: number): void {
  const f = host.hypervisor.frames;
  assert.equal(f.owner[mfn], OWNER_NONE, `frame ${mfn} still owned by d${f.owner[mfn]}`);
  assert.equal(f.count[mfn], 0);
  assert.deepEqual(frameBytes(host, mfn), new Uint8Array(PAGE));
}

describe('GNTTABOP_transfer: a PV page flipped into the receiver (§6.6, §10)', () => {
  for (const rk of ['pv', 'hvm'] as const)
    for (const rv of [1, 2] as const) {
      it(`into a ${rk} v${rv} receiver: committed, completed, ${rk === 'pv' ? 'frame = new MFN' : 'page at the GFN it asked for'}, ownership moves`, () => {
        const { host, s, r } = world({ r: rk, rv });
        const data = pat(PAGE, 1);
        const mfn = giveablePage(s, 0x5000, data);
        acceptTransfer(r, 12, s.domid, rk === 'hvm' ? RECV_GFN : 0);
        const free0 = host.hypervisor.frames.freeFrames;
        const sTot = s.xen.totPages;
        const rTot = r.xen.totPages;

        const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
        assert.equal(res.rc, 0);
        assert.deepEqual(res.st, [GNTST_okay]);

        const flags = r.memory.readU16(entryAddr(r, 12));
        assert.equal(flags, GTF_accept_transfer | GTF_transfer_committed | GTF_transfer_completed);
        assert.equal(r.memory.readU16(entryAddr(r, 12) + 2), s.domid);
        const f = host.hypervisor.frames;
        assert.equal(f.owner[mfn], r.domid);
        // arrives clean: only the allocation reference, no type (XSA-214, XSA-287)
        assert.equal(f.count[mfn], 1);
        assert.equal(f.typeCount[mfn], 0);
        assert.equal(s.xen.totPages, sTot - 1);
        assert.equal(r.xen.totPages, rTot + 1);
        assert.equal(host.hypervisor.frames.freeFrames, free0);
        if (rk === 'pv') {
          assert.equal(entryFrame(r, 12), mfn);
          assert.equal(
            r.hypercall(__HYPERVISOR_update_va_mapping, RECV_VA, mfn * PAGE + _PAGE_PRESENT + _PAGE_RW, 0),
            0,
          );
          assert.deepEqual(r.memory.read(RECV_VA, PAGE), data);
        } else {
          // a translated receiver's entry keeps the GFN it wrote
          assert.equal(entryFrame(r, 12), RECV_GFN);
          assert.equal(r.xen.p2m!.get(RECV_GFN)?.mfn, mfn);
          assert.deepEqual(r.memory.read(RECV_GFN * PAGE, PAGE), data);
          r.memory.write(RECV_GFN * PAGE + 7, Uint8Array.of(0xaa));
          assert.equal(frameBytes(host, mfn)[7], 0xaa);
        }
        // the sender has lost it: cannot map it again
        assert.throws(() => s.memory.read(0x5000, 1));
        assert.notEqual(
          s.hypercall(__HYPERVISOR_update_va_mapping, 0x5000, mfn * PAGE + _PAGE_PRESENT + _PAGE_RW, 0),
          0,
        );
        assert.deepEqual(host.checkInvariants(), []);
      });
    }

  it('a batch transfers several pages; each element has its own status', () => {
    const { host, s, r } = world({ r: 'pv', rv: 1 });
    const m1 = giveablePage(s, 0x5000, pat(PAGE, 2));
    const m2 = giveablePage(s, 0x6000, pat(PAGE, 3));
    const m3 = giveablePage(s, 0x7000, pat(PAGE, 4));
    acceptTransfer(r, 10, s.domid);
    acceptTransfer(r, 11, s.domid);
    const free0 = host.hypervisor.frames.freeFrames;
    const res = xfer(s, [
      { mfn: m1, domid: r.domid, ref: 10 },
      { mfn: m2, domid: 0x3456, ref: 11 },
      { mfn: m3, domid: r.domid, ref: 11 },
    ]);
    assert.equal(res.rc, 0);
    assert.deepEqual(res.st, [GNTST_okay, GNTST_bad_domain, GNTST_okay]);
    assert.equal(entryFrame(r, 10), m1);
    assert.equal(entryFrame(r, 11), m3);
    assertFreed(host, m2);
    assert.equal(host.hypervisor.frames.freeFrames, free0 + 1);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('GNTTABOP_transfer: bad_page keeps the page (quirk §15.16)', () => {
  for (const writable of [true, false]) {
    it(`a page still mapped ${writable ? 'writable' : 'read-only'} in the sender’s page table has extra references: bad_page, and nothing moves`, () => {
      const { host, s, r } = world();
      const data = pat(PAGE, 5);
      s.memory.write(0x5000, data);
      const mfn = s.frameOf(0x5000);
      if (!writable) {
        // mapped once, read-only: one reference beyond the allocation, no type
        assert.equal(s.hypercall(__HYPERVISOR_update_va_mapping, 0x5000, mfn * PAGE + _PAGE_PRESENT, 0), 0);
        assert.equal(host.hypervisor.frames.typeCount[mfn], 0);
      }
      acceptTransfer(r, 12, s.domid);
      const f = host.hypervisor.frames;
      const before = [f.count[mfn], f.typeCount[mfn], host.hypervisor.frames.freeFrames];
      const sTot = s.xen.totPages;
      const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
      assert.deepEqual([res.rc, ...res.st], [0, GNTST_bad_page]);
      assert.equal(f.owner[mfn], s.domid);
      assert.deepEqual([f.count[mfn], f.typeCount[mfn], host.hypervisor.frames.freeFrames], before);
      assert.equal(s.xen.totPages, sTot);
      assert.deepEqual(s.memory.read(0x5000, PAGE), data);
      assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('a page the sender does not own (the receiver’s, a Xen-heap grant frame, no such frame): bad_page, nothing moves', () => {
    const { host, s, r } = world();
    mapGrantTable(s);
    const rData = pat(PAGE, 6);
    r.memory.write(0x3000, rData);
    const rMfn = r.frameOf(0x3000);
    // r's page unmapped too, so only ownership stops it
    const rMfn2 = giveablePage(r, 0x4000, pat(PAGE, 7));
    const grantFrame = s.xen.gt.shared.get(0);
    acceptTransfer(r, 12, s.domid);
    const free0 = host.hypervisor.frames.freeFrames;
    const res = xfer(s, [
      { mfn: rMfn, domid: r.domid, ref: 12 },
      { mfn: rMfn2, domid: r.domid, ref: 12 },
      { mfn: grantFrame, domid: r.domid, ref: 12 },
      { mfn: host.hypervisor.frames.nrFrames + 3, domid: r.domid, ref: 12 },
      { mfn: 2 ** 40, domid: r.domid, ref: 12 },
    ]);
    assert.equal(res.rc, 0);
    assert.deepEqual(res.st, [
      GNTST_bad_page,
      GNTST_bad_page,
      GNTST_bad_page,
      GNTST_bad_page,
      GNTST_bad_page,
    ]);
    const f = host.hypervisor.frames;
    assert.equal(f.owner[rMfn], r.domid);
    assert.equal(f.owner[rMfn2], r.domid);
    assert.equal(f.owner[grantFrame], s.domid);
    assert.deepEqual(r.memory.read(0x3000, PAGE), rData);
    assert.equal(host.hypervisor.frames.freeFrames, free0);
    assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
    assert.deepEqual(host.checkInvariants(), []);
  });
  it('a page another domain maps through a grant has extra references: bad_page; the mapping and the page survive', () => {
    const { host, s, r } = world({ r: 'hvm' });
    mapGrantTable(s);
    const data = pat(PAGE, 26);
    const mfn = giveablePage(s, 0x5000, data);
    grantAccess(s, 8, r.domid, mfn);
    const m = one(
      gnttabOp(r, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        // read-only: the mapping holds a general reference and no type, so the count alone refuses
        { host_addr: MAP_VA, flags: GNTMAP_host_map | GNTMAP_readonly, ref: 8, dom: s.domid },
      ]),
    );
    assert.equal(m.status, GNTST_okay);
    assert.equal(host.hypervisor.frames.typeCount[mfn], 0);
    acceptTransfer(r, 12, s.domid, RECV_GFN);
    const free0 = host.hypervisor.frames.freeFrames;
    const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
    assert.deepEqual([res.rc, ...res.st], [0, GNTST_bad_page]);
    assert.equal(host.hypervisor.frames.owner[mfn], s.domid);
    assert.equal(host.hypervisor.frames.freeFrames, free0);
    assert.deepEqual(r.memory.read(MAP_VA, PAGE), data);
    assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('GNTTABOP_transfer: other failures lose the page (quirk §15.16)', () => {
  it('an unknown receiver, and DOMID_SELF (looked up by exact id, quirk §15.2): bad_domain, the page is freed', () => {
    const { host, s } = world();
    const m1 = giveablePage(s, 0x5000, pat(PAGE, 8));
    const m2 = giveablePage(s, 0x6000, pat(PAGE, 9));
    const free0 = host.hypervisor.frames.freeFrames;
    const sTot = s.xen.totPages;
    const res = xfer(s, [
      { mfn: m1, domid: 0x4321, ref: 12 },
      { mfn: m2, domid: DOMID_SELF, ref: 12 },
    ]);
    assert.equal(res.rc, 0);
    assert.deepEqual(res.st, [GNTST_bad_domain, GNTST_bad_domain]);
    assertFreed(host, m1);
    assertFreed(host, m2);
    assert.equal(s.xen.totPages, sTot - 2);
    assert.equal(host.hypervisor.frames.freeFrames, free0 + 2);
    assert.deepEqual(host.checkInvariants(), []);
  });

  for (const rv of [1, 2] as const) {
    it(`v${rv} receiver entry not exactly GTF_accept_transfer for the sender: general_error, page freed, entry untouched (§6.6 step 8)`, () => {
      const { host, s, r } = world({ rv });
      const other = host.createDomain({ kind: 'pv', memoryKiB: 64 });
      const cases: [number, number][] = [
        [GTF_accept_transfer | GTF_PWT, s.domid],
        [GTF_permit_access, s.domid],
        [0, s.domid],
        [GTF_accept_transfer | GTF_transfer_committed, s.domid],
        [GTF_accept_transfer, other.domid],
      ];
      cases.forEach(([flags, domid], i) => {
        acceptTransfer(r, 20 + i, domid, 0, flags);
      });
      const mfns = cases.map((_, i) => giveablePage(s, 0x5000 + i * PAGE, pat(PAGE, 10 + i)));
      const outOfRange = giveablePage(s, 0x5000 + cases.length * PAGE, pat(PAGE, 20));
      const free0 = host.hypervisor.frames.freeFrames;
      const sTot = s.xen.totPages;
      const rTot = r.xen.totPages;
      const res = xfer(s, [
        ...mfns.map((mfn, i) => ({ mfn, domid: r.domid, ref: 20 + i })),
        { mfn: outOfRange, domid: r.domid, ref: r.xen.gt.nrGrantEntries() },
      ]);
      assert.equal(res.rc, 0);
      assert.deepEqual(
        res.st,
        [...cases, 0].map(() => GNTST_general_error),
      );
      for (const mfn of [...mfns, outOfRange]) assertFreed(host, mfn);
      assert.equal(host.hypervisor.frames.freeFrames, free0 + cases.length + 1);
      assert.equal(s.xen.totPages, sTot - cases.length - 1);
      assert.equal(r.xen.totPages, rTot);
      cases.forEach(([flags, domid], i) => {
        assert.equal(r.memory.readU16(entryAddr(r, 20 + i)), flags);
        assert.equal(r.memory.readU16(entryAddr(r, 20 + i) + 2), domid);
      });
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('a receiver with no headroom (tot_pages == max_pages): general_error, page freed, entry not committed', () => {
    const { host, s, r } = world({ full: true });
    assert.equal(r.xen.totPages, r.xen.maxPages);
    const mfn = giveablePage(s, 0x5000, pat(PAGE, 21));
    acceptTransfer(r, 12, s.domid);
    const free0 = host.hypervisor.frames.freeFrames;
    const rTot = r.xen.totPages;
    const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
    assert.deepEqual([res.rc, ...res.st], [0, GNTST_general_error]);
    assertFreed(host, mfn);
    assert.equal(host.hypervisor.frames.freeFrames, free0 + 1);
    assert.equal(r.xen.totPages, rTot);
    assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm receiver asking for a GFN that holds a grant mapping: general_error, and Xen crashes the receiver (p2m_add_page)', () => {
    const { host, s, r } = world({ r: 'hvm' });
    // r maps a grant of s at MAP_VA, then asks for the transferred page there
    mapGrantTable(s);
    grantAccess(s, 8, r.domid, s.frameOf(0x3000));
    const m = one(
      gnttabOp(r, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 8, dom: s.domid },
      ]),
    );
    assert.equal(m.status, GNTST_okay);
    assert.notEqual(s.xen.gt.activeEntry(8).pin, 0);
    const mfn = giveablePage(s, 0x5000, pat(PAGE, 22));
    acceptTransfer(r, 12, s.domid, MAP_VA / PAGE);
    // The receiver's grant frame holding the entry (freed with the receiver).
    const sha = r.xen.gt.shaAddr(12);
    const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
    assert.deepEqual([res.rc, ...res.st], [0, GNTST_general_error]);
    // the sender survives; the receiver was crashed and destroyed, its mapping released
    assert.equal(s.alive, true);
    assert.equal(r.alive, false);
    assert.match(r.xen.crashed ?? '', /grant mapping/);
    assert.equal(host.domain(r.domid), undefined);
    assert.equal(s.xen.gt.activeEntry(8).pin, 0);
    assert.equal(s.memory.readU16(entryAddr(s, 8)) & 0x18, 0);
    // the page had been assigned to the receiver, so it went with it
    assertFreed(host, mfn);
    assert.equal(host.hypervisor.frames.owner[Math.floor(sha / PAGE)], OWNER_NONE);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('GNTTABOP_transfer: availability (DESIGN rules, §6.6)', () => {
  it('gnttab transfer off: -EOPNOTSUPP, nothing read or written', () => {
    const { host, s, r } = world({ gnttab: { transfer: false } });
    const mfn = giveablePage(s, 0x5000, pat(PAGE, 23));
    acceptTransfer(r, 12, s.domid);
    const free0 = host.hypervisor.frames.freeFrames;
    const res = xfer(s, [{ mfn, domid: r.domid, ref: 12, status: 0x1234 }]);
    assert.equal(res.rc, -XEN_EOPNOTSUPP);
    assert.equal(res.rc, -95);
    assert.deepEqual(res.st, [0x1234]);
    assert.equal(host.hypervisor.frames.owner[mfn], s.domid);
    assert.equal(host.hypervisor.frames.freeFrames, free0);
    assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('an hvm sender gets -ENOSYS for cmd 4 (hvm_grant_table_op)', () => {
    const { host, s, r } = world({ s: 'hvm' });
    const data = pat(PAGE, 24);
    s.memory.write(0x5000, data);
    acceptTransfer(r, 12, s.domid);
    const addr = 0x2000;
    const res = xfer(s, [{ mfn: s.frameOf(0x5000), domid: r.domid, ref: 12, status: 0x1234 }]);
    assert.equal(res.rc, -XEN_ENOSYS);
    assert.deepEqual(res.st, [0x1234]);
    assert.equal(s.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_transfer, addr, 0), -XEN_ENOSYS);
    assert.deepEqual(s.memory.read(0x5000, PAGE), data);
    assert.equal(r.memory.readU16(entryAddr(r, 12)), GTF_accept_transfer);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('GNTTABOP_transfer: prepare_for_transfer against a racing receiver (quirk §15.9)', () => {
  // The CMPXCHG validates (flags, domid) as one word, and only one value of that word is
  // acceptable: exactly GTF_accept_transfer naming the sender. So a CMPXCHG lost to the guest
  // always leaves a value the next round rejects: Xen gives up at once, well inside its bound of 5.
  for (const [what, change] of [
    [
      'revokes the entry (CMPXCHG flags to 0, as Linux reclaims an unused slot)',
      (v: number) => v & 0xffff0000,
    ],
    ['sets another flag bit', (v: number) => v | GTF_PWT],
    ['renames the sender', (v: number) => (v & 0xffff) | (0x0077 << 16)],
  ] as const) {
    it(`the receiver ${what} between Xen’s read and its CMPXCHG: general_error, the page is freed`, () => {
      const { host, s, r } = world({ rv: 1 });
      const mfn = giveablePage(s, 0x5000, pat(PAGE, 25));
      acceptTransfer(r, 12, s.domid);
      const sha = r.xen.gt.shaAddr(12);
      const words = host.hypervisor.machine.words;
      let attempts = 0;
      let guestValue = -1;
      words.interpose = (op, addr) => {
        if (op !== 'cmpxchg32' || addr !== sha) return;
        attempts++;
        if (attempts === 1) {
          guestValue = change(Atomics.load(words.u32, sha >>> 2)) >>> 0;
          Atomics.store(words.u32, sha >>> 2, guestValue);
        }
      };
      const free0 = host.hypervisor.frames.freeFrames;
      const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
      words.interpose = null;
      assert.deepEqual([res.rc, ...res.st], [0, GNTST_general_error]);
      assert.equal(attempts, 1);
      assert.ok(attempts <= 5);
      // the guest's value stands: Xen did not commit
      assert.equal(r.memory.readU32(entryAddr(r, 12)), guestValue);
      assert.equal(
        r.memory.readU16(entryAddr(r, 12)) & GTF_transfer_committed,
        guestValue & GTF_transfer_committed,
      );
      assertFreed(host, mfn);
      assert.equal(host.hypervisor.frames.freeFrames, free0 + 1);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }
});

describe('GNTTABOP_transfer: a stolen page looked up by another CPU (get_page, steal_page)', () => {
  // steal_page (Xen HEAD) drops both references in one cmpxchg, 2 -> 0, and
  // then clears the owner: a get_page racing it finds the count at 0 and
  // takes no reference (page_get_owner_and_reference refuses 0), so the copy
  // fails and the page keeps no reference too many.
  it('a copy from the sender between steal_page and the commit fails, and leaves the count as it was', () => {
    const host = new Host({ memoryMiB: 16 });
    const s = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const r = host.createDomain({ kind: 'pv', memoryKiB: 256, maxMemoryKiB: 512 });
    const c = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    mapGrantTable(r);
    mapGrantTable(s);
    const mfn = giveablePage(s, 0x5000, pat(PAGE, 41));
    // s also grants the page to c: c copies from it by reference.
    grantAccess(s, 20, c.domid, mfn, GTF_permit_access);
    acceptTransfer(r, 12, s.domid);
    const sha = r.xen.gt.shaAddr(12);
    const words = host.hypervisor.machine.words;
    const f = host.hypervisor.frames;
    let seen: { owner: number; count: number } | null = null;
    let st = 0x7fff;
    words.interpose = (op, addr) => {
      if (op !== 'cmpxchg32' || addr !== sha || seen !== null) return;
      // gnttab_prepare_for_transfer: the page is stolen (no owner, no reference).
      seen = { owner: f.owner[mfn]!, count: f.count[mfn]! };
      words.interpose = null;
      const res = gnttabOp(c, GNTTABOP_copy, gnttab_copy, [
        {
          source_u: 20,
          source_domid: s.domid,
          source_offset: 0,
          dest_u: c.frameOf(0x6000),
          dest_domid: DOMID_SELF,
          dest_offset: 0,
          len: 64,
          flags: GNTCOPY_source_gref,
        },
      ]);
      assert.equal(res.rc, 0);
      st = res.out[0]!.status;
    };
    const dest0 = c.memory.read(0x6000, 64);
    const res = xfer(s, [{ mfn, domid: r.domid, ref: 12 }]);
    words.interpose = null;
    assert.deepEqual(seen, { owner: OWNER_NONE, count: 0 });
    assert.notEqual(st, GNTST_okay);
    assert.deepEqual([res.rc, ...res.st], [0, GNTST_okay]);
    // r owns the page with its allocation reference alone: the copy's went back.
    assert.deepEqual([f.owner[mfn], f.count[mfn]], [r.domid, 1]);
    assert.deepEqual(c.memory.read(0x6000, 64), dest0, 'nothing was copied');
    assert.deepEqual(host.checkInvariants(), []);
  });
});
