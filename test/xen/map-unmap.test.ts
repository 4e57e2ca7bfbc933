// GNTTABOP_map_grant_ref (0), GNTTABOP_unmap_grant_ref (1) and
// GNTTABOP_unmap_and_replace (7): reference §6.1, §6.2, §6.3, §4.3 (maptrack
// handles), §15 (quirks), in layouts v1 and v2, for PV and HVM domains.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  _GNTMAP_guest_avail0,
  _PAGE_AVAIL,
  _PAGE_PAT,
  _PAGE_PCD,
  _PAGE_PRESENT,
  _PAGE_PWT,
  _PAGE_RW,
  _PAGE_USER,
  DOMID_SELF,
  type DomainHandle,
  encodeArray,
  GNTCOPY_source_gref,
  GNTMAP_application_map,
  GNTMAP_contains_pte,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_dev_addr,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_bad_page,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_and_replace,
  GNTTABOP_unmap_grant_ref,
  GTF_accept_transfer,
  GTF_PAT,
  GTF_PCD,
  GTF_PWT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  GuestFault,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_and_replace,
  gnttab_unmap_grant_ref,
  Host,
  readStructArray,
  XEN_EBUSY,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
} from '../../src/index.ts';
import { PTE_GNTTAB_MARK } from '../../src/xen/paging.ts';
import {
  entryAddr,
  entryFlags,
  GNTTAB_VA,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  one,
  setVersion,
  statusBits,
} from '../helpers/guest.ts';

// ---- local helpers --------------------------------------------------------------------------------

type Kind = 'pv' | 'hvm';
type Version = 1 | 2;

interface Env {
  host: Host;
  /** The granter: its table is switched to `version` and mapped. */
  a: DomainHandle;
  /** The grantee. */
  b: DomainHandle;
}

interface SetupOptions {
  version?: Version;
  granter?: Kind;
  grantee?: Kind;
  granteeMaptrackFrames?: number;
  /** A Xen debug build (gnttab.debugBuild): grant PTEs marked, #GP on an implicit unmap. */
  debug?: boolean;
}

function setup(o: SetupOptions = {}): Env {
  const host = new Host({ memoryMiB: 16, gnttab: { debugBuild: o.debug ?? false } });
  const a = host.createDomain({ kind: o.granter ?? 'pv', memoryKiB: 256 });
  const b = host.createDomain({
    kind: o.grantee ?? 'pv',
    memoryKiB: 256,
    ...(o.granteeMaptrackFrames === undefined ? {} : { maxMaptrackFrames: o.granteeMaptrackFrames }),
  });
  if ((o.version ?? 1) === 2) assert.deepEqual(setVersion(a, 2), { rc: 0, version: 2 });
  mapGrantTable(a);
  return { host, a, b };
}

/** The granted page and a second page of the granter's RAM. */
const PAGE = 0x3000;
const PAGE2 = 0x4000;
const PAGE_SIZE = 4096;

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** a grants `to` access to its page at `addr` through `ref` (domid and frame first, flags last). */
function grant(
  a: DomainHandle,
  ref: number,
  to: DomainHandle | number,
  addr = PAGE,
  flags = GTF_permit_access,
) {
  grantAccess(a, ref, typeof to === 'number' ? to : to.domid, a.frameOf(addr), flags);
}

type MapIn = Partial<Record<keyof typeof gnttab_map_grant_ref.fields, number>>;
type MapOut = Record<keyof typeof gnttab_map_grant_ref.fields, number>;

/** One map_grant_ref; the hypercall itself must return 0. */
function mapRaw(b: DomainHandle, op: MapIn) {
  const r = gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [op]);
  assert.equal(r.rc, 0);
  return one(r);
}

function map(
  b: DomainHandle,
  a: DomainHandle | number,
  ref: number,
  flags = GNTMAP_host_map,
  hostAddr = MAP_VA,
) {
  return mapRaw(b, { host_addr: hostAddr, flags, ref, dom: typeof a === 'number' ? a : a.domid });
}

/** One unmap_grant_ref; returns its status. */
function unmap(b: DomainHandle, handle: number, hostAddr = MAP_VA, devBusAddr = 0): number {
  const r = gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
    { host_addr: hostAddr, dev_bus_addr: devBusAddr, handle },
  ]);
  assert.equal(r.rc, 0);
  return one(r).status;
}

/** One unmap_and_replace; returns the hypercall result and the status. */
function unmapReplace(b: DomainHandle, handle: number, hostAddr: number, newAddr: number) {
  const r = gnttabOp(b, GNTTABOP_unmap_and_replace, gnttab_unmap_and_replace, [
    { host_addr: hostAddr, new_addr: newAddr, handle },
  ]);
  return { rc: r.rc, status: r.out[0]?.status };
}

/** The machine frame behind `addr` in `d`'s address space. */
function mfnOf(d: DomainHandle, addr: number): number {
  const base = d.xen.translatePage(addr, false);
  assert.ok(base >= 0, `nothing mapped at 0x${addr.toString(16)}`);
  return base / PAGE_SIZE;
}

/** [status, handle] of a map result. */
function pick(m: { status: number; handle: number }): [number, number] {
  return [m.status, m.handle];
}

function pin(a: DomainHandle, ref: number): number {
  return a.xen.gt.activeEntry(ref).pin;
}

function pageCount(host: Host, mfn: number): number {
  return host.hypervisor.frames.count[mfn]!;
}

function typeCount(host: Host, mfn: number): number {
  return host.hypervisor.frames.typeCount[mfn]!;
}

function live(d: DomainHandle, handle: number): boolean {
  return d.xen.gt.maptrack.flags(handle) !== 0;
}

function noViolations(host: Host): void {
  assert.deepEqual(host.checkInvariants(), []);
}

/** Runs `f` with `interpose` installed on the shared-word module, removing it afterwards. */
function withInterposer(host: Host, interpose: (op: string, addr: number) => void, f: () => void): void {
  const words = host.hypervisor.machine.words;
  words.interpose = interpose;
  try {
    f();
  } finally {
    words.interpose = null;
  }
}

const VERSIONS: readonly Version[] = [1, 2];
const KINDS: readonly Kind[] = ['pv', 'hvm'];

// ---- success paths ----------------------------------------------------------------------------------

describe('map_grant_ref: success paths (§6.1)', () => {
  for (const v of VERSIONS) {
    for (const gk of KINDS) {
      for (const bk of KINDS) {
        it(`v${v}, ${gk} granter, ${bk} grantee: writable host map shares the granter's bytes, dev_bus_addr = mfn << 12 (quirk §15.3), GTF_reading|GTF_writing until unmap`, () => {
          const { host, a, b } = setup({ version: v, granter: gk, grantee: bk });
          a.memory.write(PAGE, enc('granted bytes'));
          grant(a, 10, b);
          const mfn = mfnOf(a, PAGE);
          const before = pageCount(host, mfn);

          const m = map(b, a, 10);
          assert.equal(m.status, GNTST_okay);
          assert.equal(m.handle, 0);
          assert.equal(m.dev_bus_addr, mfn * PAGE_SIZE);
          assert.equal(pin(a, 10), 0x1);
          assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
          // v1 keeps the bits in the entry's flags; v2 in the status word, leaving hdr.flags alone.
          assert.equal(
            entryFlags(a, 10),
            v === 1 ? GTF_permit_access | GTF_reading | GTF_writing : GTF_permit_access,
          );
          assert.equal(pageCount(host, mfn), before + 1);
          assert.equal(dec(b.memory.read(MAP_VA, 13)), 'granted bytes');
          b.memory.write(MAP_VA + 2000, Uint8Array.of(9, 8, 7));
          assert.deepEqual([...a.memory.read(PAGE + 2000, 3)], [9, 8, 7]);
          noViolations(host);

          assert.equal(unmap(b, m.handle), GNTST_okay);
          assert.equal(pin(a, 10), 0);
          assert.equal(statusBits(a, 10), 0);
          assert.equal(entryFlags(a, 10), GTF_permit_access);
          assert.equal(pageCount(host, mfn), before);
          assert.throws(() => b.memory.read(MAP_VA, 1), GuestFault);
          noViolations(host);
        });
      }
    }
  }

  for (const [v, gk, bk] of [
    [1, 'hvm', 'pv'],
    [2, 'pv', 'hvm'],
  ] as const) {
    it(`v${v}, ${gk} granter, ${bk} grantee: read-only host map pins hstr (0x100), sets only GTF_reading, and refuses writes`, () => {
      const { host, a, b } = setup({ version: v, granter: gk, grantee: bk });
      a.memory.write(PAGE, enc('read me'));
      grant(a, 10, b);
      const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly);
      assert.equal(m.status, GNTST_okay);
      assert.equal(m.dev_bus_addr, mfnOf(a, PAGE) * PAGE_SIZE);
      assert.equal(pin(a, 10), 0x100);
      assert.equal(statusBits(a, 10), GTF_reading);
      assert.equal(dec(b.memory.read(MAP_VA, 7)), 'read me');
      assert.throws(() => b.memory.write(MAP_VA, Uint8Array.of(1)), GuestFault);
      noViolations(host);
      assert.equal(unmap(b, m.handle), GNTST_okay);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      noViolations(host);
    });
  }

  for (const v of VERSIONS) {
    it(`v${v}: PV device maps pin devw (0x10000) / devr (0x1000000), hold a page reference, dev_bus_addr = mfn << 12`, () => {
      const { host, a, b } = setup({ version: v });
      grant(a, 10, b, PAGE);
      grant(a, 11, b, PAGE2);
      const mfnW = mfnOf(a, PAGE);
      const mfnR = mfnOf(a, PAGE2);
      const [cW, tW, cR] = [pageCount(host, mfnW), typeCount(host, mfnW), pageCount(host, mfnR)];

      const w = map(b, a, 10, GNTMAP_device_map, 0);
      const r = map(b, a, 11, GNTMAP_device_map | GNTMAP_readonly, 0);
      assert.equal(w.status, GNTST_okay);
      assert.equal(r.status, GNTST_okay);
      assert.equal(w.dev_bus_addr, mfnW * PAGE_SIZE);
      assert.equal(r.dev_bus_addr, mfnR * PAGE_SIZE);
      assert.equal(pin(a, 10), 0x10000);
      assert.equal(pin(a, 11), 0x1000000);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      assert.equal(statusBits(a, 11), GTF_reading);
      // A writable device mapping holds a general and a writable type reference (§6.1 step 11).
      assert.equal(pageCount(host, mfnW), cW + 1);
      assert.equal(typeCount(host, mfnW), tW + 1);
      assert.equal(pageCount(host, mfnR), cR + 1);
      noViolations(host);

      assert.equal(unmap(b, w.handle, 0, w.dev_bus_addr), GNTST_okay);
      assert.equal(unmap(b, r.handle, 0, r.dev_bus_addr), GNTST_okay);
      assert.equal(pin(a, 10) + pin(a, 11), 0);
      assert.equal(statusBits(a, 10) | statusBits(a, 11), 0);
      assert.deepEqual([pageCount(host, mfnW), typeCount(host, mfnW), pageCount(host, mfnR)], [cW, tW, cR]);
      noViolations(host);
    });
  }

  for (const v of VERSIONS) {
    it(`v${v}: host+device in one handle, host half unmapped first, then the device half (§6.2 consequences)`, () => {
      const { host, a, b } = setup({ version: v });
      a.memory.write(PAGE, enc('both'));
      grant(a, 10, b);
      const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_device_map);
      assert.equal(m.status, GNTST_okay);
      assert.equal(pin(a, 10), 0x10001);
      assert.equal(dec(b.memory.read(MAP_VA, 4)), 'both');

      assert.equal(unmap(b, m.handle, MAP_VA, 0), GNTST_okay);
      assert.equal(b.xen.gt.maptrack.flags(m.handle), GNTMAP_device_map);
      assert.equal(pin(a, 10), 0x10000);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      assert.throws(() => b.memory.read(MAP_VA, 1), GuestFault);
      noViolations(host);

      assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr), GNTST_okay);
      assert.equal(live(b, m.handle), false);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      assert.equal(unmap(b, m.handle, MAP_VA, m.dev_bus_addr), GNTST_bad_handle);
      noViolations(host);
    });

    it(`v${v}: host+device in one handle, device half unmapped first; the host mapping keeps working`, () => {
      const { host, a, b } = setup({ version: v });
      a.memory.write(PAGE, enc('still here'));
      grant(a, 10, b);
      const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_device_map | GNTMAP_readonly);
      assert.equal(pin(a, 10), 0x1000100);
      assert.equal(statusBits(a, 10), GTF_reading);

      assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr), GNTST_okay);
      assert.equal(b.xen.gt.maptrack.flags(m.handle), GNTMAP_host_map | GNTMAP_readonly);
      assert.equal(pin(a, 10), 0x100);
      assert.equal(dec(b.memory.read(MAP_VA, 10)), 'still here');
      noViolations(host);

      assert.equal(unmap(b, m.handle, MAP_VA, 0), GNTST_okay);
      assert.equal(live(b, m.handle), false);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      noViolations(host);
    });
  }

  it('a host_addr given for a device-only mapping is silently ignored; the handle stays (§6.2 consequences)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10, GNTMAP_device_map, 0);
    assert.equal(unmap(b, m.handle, MAP_VA, 0), GNTST_okay);
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 0x10000);
    assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr), GNTST_okay);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });

  for (const [v, bk] of [
    [1, 'pv'],
    [2, 'hvm'],
  ] as const) {
    it(`v${v}, ${bk} grantee: three mappings of one ref share the page; status bits clear only with the last unmap`, () => {
      const { host, a, b } = setup({ version: v, grantee: bk });
      grant(a, 10, b);
      const hs = [0, 1, 2].map((i) => map(b, a, 10, GNTMAP_host_map, MAP_VA + i * PAGE_SIZE));
      assert.deepEqual(
        hs.map((m) => [m.status, m.handle]),
        [
          [0, 0],
          [0, 1],
          [0, 2],
        ],
      );
      assert.equal(pin(a, 10), 0x3);
      b.memory.write(MAP_VA + 2 * PAGE_SIZE + 5, enc('xyz'));
      assert.equal(dec(b.memory.read(MAP_VA + 5, 3)), 'xyz');
      assert.equal(dec(a.memory.read(PAGE + 5, 3)), 'xyz');

      assert.equal(unmap(b, 1, MAP_VA + PAGE_SIZE), GNTST_okay);
      assert.equal(unmap(b, 0, MAP_VA), GNTST_okay);
      assert.equal(pin(a, 10), 0x1);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      noViolations(host);
      assert.equal(unmap(b, 2, MAP_VA + 2 * PAGE_SIZE), GNTST_okay);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      noViolations(host);
    });
  }

  for (const v of VERSIONS) {
    it(`v${v}: GTF_writing clears when the last writable pin goes, GTF_reading when the last pin goes (H2, §6.0)`, () => {
      const { host, a, b } = setup({ version: v });
      grant(a, 10, b);
      const ro = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
      const rw = map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE);
      assert.equal(pin(a, 10), 0x101);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      assert.equal(unmap(b, rw.handle, MAP_VA + PAGE_SIZE), GNTST_okay);
      assert.equal(pin(a, 10), 0x100);
      assert.equal(statusBits(a, 10), GTF_reading);
      noViolations(host);
      assert.equal(unmap(b, ro.handle, MAP_VA), GNTST_okay);
      assert.equal(statusBits(a, 10), 0);
      noViolations(host);
    });

    it(`v${v}: a writable map upgrades a read-only pin (H1 runs again, §6.1 step 8)`, () => {
      const { host, a, b } = setup({ version: v });
      grant(a, 10, b);
      map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
      assert.equal(statusBits(a, 10), GTF_reading);
      const rw = map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE);
      assert.equal(rw.status, GNTST_okay);
      assert.equal(pin(a, 10), 0x101);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      b.memory.write(MAP_VA + PAGE_SIZE, enc('up'));
      assert.equal(dec(b.memory.read(MAP_VA, 2)), 'up');
      noViolations(host);
    });

    it(`v${v}: the upgrade re-reads GTF_readonly: an entry made read-only after the first pin refuses it (§6.0 H1)`, () => {
      const { host, a, b } = setup({ version: v });
      grant(a, 10, b);
      map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
      const e = entryAddr(a, 10);
      a.memory.writeU16(e, a.memory.readU16(e) | GTF_readonly);
      const rw = map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE);
      assert.equal(rw.status, GNTST_general_error);
      assert.equal(pin(a, 10), 0x100);
      assert.equal(statusBits(a, 10), GTF_reading);
      assert.equal(b.xen.gt.maptrack.liveCount(), 1);
      noViolations(host);
    });
  }

  it('a domain maps its own grant by its numeric domid; the writable self-map takes a type reference (§4.4)', () => {
    const { host, a } = setup();
    a.memory.write(PAGE, enc('mine'));
    grant(a, 10, a);
    const mfn = mfnOf(a, PAGE);
    const t0 = typeCount(host, mfn);
    const m = map(a, a, 10);
    assert.equal(m.status, GNTST_okay);
    assert.equal(typeCount(host, mfn), t0 + 1);
    assert.equal(dec(a.memory.read(MAP_VA, 4)), 'mine');
    noViolations(host);
    assert.equal(unmap(a, m.handle), GNTST_okay);
    assert.equal(typeCount(host, mfn), t0);
    noViolations(host);
  });
});

// ---- error codes of map, in Xen's order ----------------------------------------------------------------

describe('map_grant_ref: errors (§6.1 steps 1-11)', () => {
  it('neither host_map nor device_map is bad_gntref, before any other check and without a handle (quirk §15.1)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    assert.equal(map(b, a, 10, 0).status, GNTST_bad_gntref);
    assert.equal(map(b, a, 10, GNTMAP_readonly).status, GNTST_bad_gntref);
    // Even an HVM caller naming an unknown domain with a bad ref gets bad_gntref first.
    assert.equal(map(b, 77, 99999, GNTMAP_readonly | GNTMAP_contains_pte).status, GNTST_bad_gntref);
    assert.equal(b.xen.gt.maptrack.limit, 0);
    noViolations(host);
  });

  it('an HVM caller asking for device_map, application_map or contains_pte gets general_error, even naming an unknown domain (§6.1 step 2)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    grant(a, 10, b);
    for (const flags of [
      GNTMAP_device_map,
      GNTMAP_device_map | GNTMAP_host_map,
      GNTMAP_host_map | GNTMAP_application_map,
      GNTMAP_host_map | GNTMAP_contains_pte | GNTMAP_readonly,
    ]) {
      assert.equal(map(b, a, 10, flags).status, GNTST_general_error);
      assert.equal(map(b, 77, 10, flags).status, GNTST_general_error);
    }
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(b.xen.gt.maptrack.limit, 0);
    noViolations(host);
  });

  it('an unknown domid and DOMID_SELF are bad_domain; map looks domains up by exact id (quirk §15.2)', () => {
    const { host, a, b } = setup();
    grant(a, 10, a);
    assert.equal(map(b, 77, 10).status, GNTST_bad_domain);
    assert.equal(map(b, 0x7ff4, 10).status, GNTST_bad_domain);
    // a's own grant, named DOMID_SELF, is not found either.
    assert.equal(map(a, DOMID_SELF, 10).status, GNTST_bad_domain);
    assert.equal(pin(a, 10), 0);
    assert.equal(b.xen.gt.maptrack.limit, 0);
    assert.equal(a.xen.gt.maptrack.limit, 0);
    noViolations(host);
  });

  it('maxMaptrackFrames 0: no_space, checked after the domain and before the ref (quirk §15.18)', () => {
    const { host, a, b } = setup({ granteeMaptrackFrames: 0 });
    grant(a, 10, b);
    assert.equal(map(b, a, 10).status, GNTST_no_space);
    assert.equal(map(b, a, 99999).status, GNTST_no_space);
    assert.equal(map(b, 77, 10).status, GNTST_bad_domain);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    noViolations(host);
  });

  it('an exhausted maptrack is no_space: one page gives 255 handles, 255 stays the sentinel (quirk §15.18, §4.3)', () => {
    const { host, a, b } = setup({ granteeMaptrackFrames: 1 });
    for (const ref of [10, 11, 12]) grant(a, ref, b);
    for (let i = 0; i < 255; i++) {
      const m = map(b, a, 10 + (i % 3), GNTMAP_host_map, MAP_VA + i * PAGE_SIZE);
      assert.deepEqual([m.status, m.handle], [GNTST_okay, i]);
    }
    assert.equal(map(b, a, 10, GNTMAP_host_map, MAP_VA + 255 * PAGE_SIZE).status, GNTST_no_space);
    assert.equal(pin(a, 10), 85);
    // A freed handle goes behind the sentinel: the next map gets 255, the one after finds none.
    assert.equal(unmap(b, 7, MAP_VA + 7 * PAGE_SIZE), GNTST_okay);
    const m = map(b, a, 11, GNTMAP_host_map, MAP_VA + 300 * PAGE_SIZE);
    assert.deepEqual([m.status, m.handle], [GNTST_okay, 255]);
    assert.equal(map(b, a, 11, GNTMAP_host_map, MAP_VA + 301 * PAGE_SIZE).status, GNTST_no_space);
    assert.equal(b.xen.gt.maptrack.limit, 256);
    noViolations(host);
  });

  for (const v of VERSIONS) {
    it(`v${v}: a ref beyond the table is bad_gntref (${v === 1 ? 512 : 256} entries per frame), and its handle is freed`, () => {
      const { host, a, b } = setup({ version: v });
      const last = v === 1 ? 511 : 255;
      grant(a, last, b);
      assert.equal(map(b, a, last + 1).status, GNTST_bad_gntref);
      assert.equal(map(b, a, 0xffffffff).status, GNTST_bad_gntref);
      assert.equal(b.xen.gt.maptrack.liveCount(), 0);
      const m = map(b, a, last);
      assert.equal(m.status, GNTST_okay);
      assert.equal(pin(a, last), 1);
      noViolations(host);
    });

    it(`v${v}: a ref pinned by another grantee is general_error, even after the entry names the newcomer (§6.1 step 7)`, () => {
      const { host, a, b } = setup({ version: v });
      const c = host.createDomain({ kind: 'pv', memoryKiB: 256 });
      grant(a, 10, b);
      const mb = map(b, a, 10);
      a.memory.writeU16(entryAddr(a, 10) + 2, c.domid);
      assert.equal(map(c, a, 10).status, GNTST_general_error);
      assert.equal(map(c, a, 10, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_general_error);
      assert.equal(pin(a, 10), 0x1);
      assert.equal(a.xen.gt.activeEntry(10).domid, b.domid);
      assert.equal(c.xen.gt.maptrack.liveCount(), 0);
      noViolations(host);
      assert.equal(unmap(b, mb.handle), GNTST_okay);
      noViolations(host);
    });
  }

  type EntryCase = readonly [string, Version, (a: DomainHandle, b: DomainHandle) => void, number];
  const entryCases: EntryCase[] = [];
  for (const v of VERSIONS) {
    entryCases.push(
      ['an entry naming another domain', v, (a) => grant(a, 10, 0x1234), GNTMAP_host_map],
      [
        'GTF_readonly with a writable map',
        v,
        (a, b) => grant(a, 10, b, PAGE, GTF_permit_access | GTF_readonly),
        GNTMAP_host_map,
      ],
      ['an invalid entry', v, (a, b) => grant(a, 10, b, PAGE, 0), GNTMAP_host_map | GNTMAP_readonly],
      ['an accept_transfer entry', v, (a, b) => grant(a, 10, b, PAGE, GTF_accept_transfer), GNTMAP_host_map],
    );
  }
  entryCases.push(
    [
      'GTF_sub_page set (quirk §15.6)',
      1,
      (a, b) => grant(a, 10, b, PAGE, GTF_permit_access | GTF_sub_page),
      GNTMAP_host_map | GNTMAP_readonly,
    ],
    [
      'a sub-page entry, even covering the whole page (quirk §15.7)',
      2,
      (a, b) => {
        grant(a, 10, b, PAGE, 0);
        a.memory.writeU16(entryAddr(a, 10) + 4, 0); // page_off
        a.memory.writeU16(entryAddr(a, 10) + 6, PAGE_SIZE); // length
        a.memory.writeU16(entryAddr(a, 10), GTF_permit_access | GTF_sub_page);
      },
      GNTMAP_host_map | GNTMAP_readonly,
    ],
    [
      'a transitive entry (§8, quirk §15.7)',
      2,
      (a, b) => {
        const e = entryAddr(a, 10);
        a.memory.writeU16(e + 2, b.domid);
        a.memory.writeU16(e + 4, b.domid); // trans_domid
        a.memory.writeU32(e + 8, 11); // gref
        a.memory.writeU16(e, GTF_transitive);
      },
      GNTMAP_host_map | GNTMAP_readonly,
    ],
  );
  for (const [what, v, prepare, flags] of entryCases) {
    it(`v${v}: ${what} is general_error; status bits stay clear, the handle is freed (§6.0 H1)`, () => {
      const { host, a, b } = setup({ version: v });
      prepare(a, b);
      const flagsBefore = entryFlags(a, 10);
      assert.equal(map(b, a, 10, flags).status, GNTST_general_error);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      assert.equal(entryFlags(a, 10), flagsBefore);
      assert.equal(b.xen.gt.maptrack.liveCount(), 0);
      noViolations(host);
    });
  }

  it('v1: a GTF_sub_page entry cannot be mapped but can be copied as a whole page (quirk §15.6)', () => {
    const { host, a, b } = setup();
    a.memory.write(PAGE + 4000, enc('tail of page'));
    grant(a, 10, b, PAGE, GTF_permit_access | GTF_sub_page);
    assert.equal(map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_general_error);
    const c = one(
      gnttabOp(b, GNTTABOP_copy, gnttab_copy, [
        {
          source_u: 10,
          source_domid: a.domid,
          source_offset: 4000,
          dest_u: b.frameOf(0x5000),
          dest_domid: DOMID_SELF,
          dest_offset: 0,
          len: 12,
          flags: GNTCOPY_source_gref,
        },
      ]),
    );
    assert.equal(c.status, GNTST_okay);
    assert.equal(dec(b.memory.read(0x5000, 12)), 'tail of page');
    noViolations(host);
  });

  for (const v of VERSIONS) {
    it(`v${v}: each pin counter stops at 128: 128 maps succeed, the 129th is general_error (quirk §15.10)`, () => {
      const { host, a, b } = setup({ version: v });
      grant(a, 10, b);
      const mfn = mfnOf(a, PAGE);
      const c0 = pageCount(host, mfn);
      for (let i = 0; i < 128; i++)
        assert.equal(map(b, a, 10, GNTMAP_host_map, MAP_VA + i * PAGE_SIZE).status, GNTST_okay);
      assert.equal(pin(a, 10), 0x80);
      const over = map(b, a, 10, GNTMAP_host_map, MAP_VA + 128 * PAGE_SIZE);
      assert.equal(over.status, GNTST_general_error);
      assert.equal(pin(a, 10), 0x80);
      assert.equal(pageCount(host, mfn), c0 + 128);
      assert.equal(b.xen.gt.maptrack.liveCount(), 128);
      assert.throws(() => b.memory.read(MAP_VA + 128 * PAGE_SIZE, 1), GuestFault);
      noViolations(host);
      // Only the counters being incremented are checked (§2.7): hstr is still free.
      assert.equal(
        map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA + 200 * PAGE_SIZE).status,
        GNTST_okay,
      );
      assert.equal(pin(a, 10), 0x180);
      noViolations(host);
    });
  }

  it('PV granter: a frame it does not own is bad_page, and the status bits are rolled back (§6.0 H3)', () => {
    const { host, a, b } = setup();
    grantAccess(a, 10, b.domid, mfnOf(b, PAGE));
    grantAccess(a, 11, b.domid, 0xfffff);
    assert.equal(map(b, a, 10).status, GNTST_bad_page);
    assert.equal(map(b, a, 11, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_bad_page);
    assert.equal(statusBits(a, 10) | statusBits(a, 11), 0);
    assert.equal(pin(a, 10) + pin(a, 11), 0);
    assert.equal(b.xen.gt.maptrack.liveCount(), 0);
    assert.throws(() => b.memory.read(MAP_VA, 1), GuestFault);
    noViolations(host);
  });

  it('v2, HVM granter: an unpopulated GFN is bad_page (§6.0 H3)', () => {
    const { host, a, b } = setup({ version: 2, granter: 'hvm' });
    grantAccess(a, 10, b.domid, 0x90000);
    assert.equal(map(b, a, 10).status, GNTST_bad_page);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });

  it('HVM granter: a GFN holding a grant it mapped from someone else is bad_page (§6.0 H3, foreign P2M entry)', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const c = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    mapGrantTable(a);
    mapGrantTable(c);
    grant(c, 10, a);
    assert.equal(map(a, c, 10).status, GNTST_okay);
    grantAccess(a, 10, b.domid, MAP_VA / PAGE_SIZE);
    assert.equal(map(b, a, 10).status, GNTST_bad_page);
    assert.equal(statusBits(a, 10), 0);
    noViolations(host);
  });

  it('HVM granter: a paged-out page answers eagain; after page-in the same map succeeds (§6.0 H3)', () => {
    const { host, a, b } = setup({ granter: 'hvm' });
    a.memory.write(PAGE, enc('paged'));
    grant(a, 10, b);
    a.pageOut(PAGE);
    assert.equal(map(b, a, 10).status, GNTST_eagain);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(pin(a, 10), 0);
    assert.equal(b.xen.gt.maptrack.liveCount(), 0);
    noViolations(host);
    a.pageIn(PAGE);
    const m = map(b, a, 10);
    assert.equal(m.status, GNTST_okay);
    assert.equal(dec(b.memory.read(MAP_VA, 5)), 'paged');
    noViolations(host);
  });

  it('PV: a host mapping that cannot be made undoes the device half too: pins, references, type, handle (§6.1 step 15)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const mfn = mfnOf(a, PAGE);
    const [c0, t0] = [pageCount(host, mfn), typeCount(host, mfn)];
    // A linear address beyond the address space has no L1 entry.
    const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_device_map, 2 ** 40);
    assert.equal(m.status, GNTST_general_error);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    assert.deepEqual([pageCount(host, mfn), typeCount(host, mfn)], [c0, t0]);
    assert.equal(b.xen.gt.maptrack.liveCount(), 0);
    noViolations(host);
  });

  // map_grant_ref passes the entry's cache attributes to create_grant_host_mapping
  // only on its MMIO path; for a RAM page it passes 0 (xen/common/grant_table.c).
  it('HVM: a RAM grant with GTF_PCD|GTF_PWT|GTF_PAT maps: map_grant_ref passes cache_flags 0 for RAM (create_grant_p2m_mapping)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    a.memory.write(PAGE, enc('cached'));
    grant(a, 10, b, PAGE, GTF_permit_access | GTF_PCD | GTF_PWT | GTF_PAT);
    const m = map(b, a, 10);
    assert.equal(m.status, GNTST_okay);
    assert.equal(dec(b.memory.read(MAP_VA, 6)), 'cached');
    assert.equal(pin(a, 10), 1);
    assert.equal(unmap(b, m.handle), GNTST_okay);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });

  it('PV: the grant PTE of a RAM grant with GTF_PCD|GTF_PWT|GTF_PAT has no cache bits (map_grant_ref, grant_to_pte_flags)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b, PAGE, GTF_permit_access | GTF_PCD | GTF_PWT | GTF_PAT);
    const m = map(b, a, 10);
    assert.equal(m.status, GNTST_okay);
    const pte = b.xen.pt!.get(MAP_VA / PAGE_SIZE);
    assert.equal(Math.floor(pte / PAGE_SIZE), mfnOf(a, PAGE));
    assert.equal(pte & (_PAGE_PCD | _PAGE_PWT | _PAGE_PAT), 0);
    assert.equal(pte & (_PAGE_PRESENT | _PAGE_RW), _PAGE_PRESENT | _PAGE_RW);
    assert.equal(unmap(b, m.handle), GNTST_okay);
    assert.equal(b.xen.pt!.get(MAP_VA / PAGE_SIZE), 0);
    noViolations(host);
  });

  it('PV: GNTMAP_guest_avail bits go into the PTE available bits 9-11; unmap still matches (grant_to_pte_flags MASK_INSR into _PAGE_AVAIL)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    grant(a, 11, b, PAGE2);
    const m = map(b, a, 10, GNTMAP_host_map | (5 << _GNTMAP_guest_avail0));
    assert.equal(m.status, GNTST_okay);
    assert.equal(b.xen.pt!.get(MAP_VA / PAGE_SIZE) & _PAGE_AVAIL, 5 << 9);
    // Only three bits fit: bit 3 of the guest's value and up is dropped.
    const m2 = map(
      b,
      a,
      11,
      GNTMAP_host_map | GNTMAP_readonly | (0xfffa << _GNTMAP_guest_avail0),
      MAP_VA + PAGE_SIZE,
    );
    assert.equal(m2.status, GNTST_okay);
    const pte2 = b.xen.pt!.get(MAP_VA / PAGE_SIZE + 1);
    assert.equal(pte2 & _PAGE_AVAIL, 2 << 9);
    assert.equal(pte2 & (_PAGE_PRESENT | _PAGE_RW), _PAGE_PRESENT);
    assert.equal(unmap(b, m.handle), GNTST_okay);
    assert.equal(unmap(b, m2.handle, MAP_VA + PAGE_SIZE), GNTST_okay);
    assert.deepEqual([pin(a, 10), pin(a, 11)], [0, 0]);
    noViolations(host);
  });

  it('HVM: a map with GNTMAP_guest_avail bits is general_error (create_grant_p2m_mapping: flags must be host_map[|readonly])', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    grant(a, 10, b);
    assert.equal(map(b, a, 10, GNTMAP_host_map | (1 << _GNTMAP_guest_avail0)).status, GNTST_general_error);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    noViolations(host);
  });

  it('HVM: mapping over a GFN that already holds a grant fails and crashes the caller (§6.1.1; x86 p2m_add_page)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    grant(a, 10, b, PAGE);
    grant(a, 11, b, PAGE2);
    const first = map(b, a, 10);
    assert.equal(first.status, GNTST_okay);
    const r = gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 11, dom: a.domid },
    ]);
    assert.equal(r.rc, 0);
    assert.equal(b.alive, false);
    assert.match(b.xen.crashed ?? '', /grant mapping/);
    // The failed map was undone, and the crash released the first one.
    assert.deepEqual([pin(a, 10), pin(a, 11)], [0, 0]);
    assert.deepEqual([statusBits(a, 10), statusBits(a, 11)], [0, 0]);
    noViolations(host);
  });

  it('HVM: mapping over the GFN of its own grant frame unhooks that frame, which is then at no GFN (x86 M2P)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    mapGrantTable(b);
    a.memory.write(PAGE, enc('over the table'));
    grant(a, 10, b);
    const m = map(b, a, 10, GNTMAP_host_map, GNTTAB_VA);
    assert.equal(m.status, GNTST_okay);
    assert.equal(dec(b.memory.read(GNTTAB_VA, 14)), 'over the table');
    assert.equal(b.xen.gt.sharedGfn.get(0), -1);
    noViolations(host);
    assert.equal(unmap(b, m.handle, GNTTAB_VA), GNTST_okay);
    assert.throws(() => b.memory.read(GNTTAB_VA, 1), GuestFault);
    noViolations(host);
  });

  it('errors come in Xen order: flags, HVM flags, domain, maptrack, ref, entry, frame (§6.1)', () => {
    {
      const { host, a, b } = setup({ granter: 'hvm', grantee: 'hvm', granteeMaptrackFrames: 0 });
      assert.equal(map(b, 77, 99999, 0).status, GNTST_bad_gntref);
      assert.equal(map(b, 77, 99999, GNTMAP_host_map | GNTMAP_device_map).status, GNTST_general_error);
      assert.equal(map(b, 77, 99999).status, GNTST_bad_domain);
      assert.equal(map(b, a, 99999).status, GNTST_no_space);
      noViolations(host);
    }
    {
      const { host, a, b } = setup({ granter: 'hvm' });
      assert.equal(map(b, a, 99999).status, GNTST_bad_gntref);
      // Entry checks (H1) come before the frame lookup (H3): a wrong domid on a paged-out page.
      grant(a, 10, 0x1234);
      a.pageOut(PAGE);
      assert.equal(map(b, a, 10).status, GNTST_general_error);
      noViolations(host);
    }
  });

  it('on failure the struct keeps the handle and dev_bus_addr the caller passed in; on success both are written (§3.2)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const poison = { handle: 0xdeadbeef, dev_bus_addr: 0x12345000 };
    const fails: [MapIn, number][] = [
      [{ flags: 0, ref: 10, dom: a.domid }, GNTST_bad_gntref],
      [{ flags: GNTMAP_host_map, ref: 10, dom: 77 }, GNTST_bad_domain],
      [{ flags: GNTMAP_host_map, ref: 9999, dom: a.domid }, GNTST_bad_gntref],
      [{ flags: GNTMAP_host_map, ref: 11, dom: a.domid }, GNTST_general_error],
    ];
    for (const [op, status] of fails) {
      const r = mapRaw(b, { host_addr: MAP_VA, ...op, ...poison });
      assert.deepEqual([r.status, r.handle, r.dev_bus_addr], [status, poison.handle, poison.dev_bus_addr]);
    }
    const ok = mapRaw(b, { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid, ...poison });
    assert.equal(ok.status, GNTST_okay);
    assert.equal(ok.handle, 2); // handles 0 and 1 went to the tail of the free list after the failures
    assert.equal(ok.dev_bus_addr, mfnOf(a, PAGE) * PAGE_SIZE);
    noViolations(host);
  });

  it('in one batch each element is its own: a failure after a success keeps the handle and dev_bus_addr it passed (gnttab_map_grant_ref copies each op in and out)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    grant(a, 12, b, PAGE2);
    const r = gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid },
      {
        host_addr: MAP_VA + PAGE_SIZE,
        flags: GNTMAP_host_map,
        ref: 11,
        dom: a.domid,
        handle: 77,
        dev_bus_addr: 0x5000,
      },
      {
        host_addr: MAP_VA + 2 * PAGE_SIZE,
        flags: GNTMAP_host_map,
        ref: 12,
        dom: a.domid,
        handle: 78,
        dev_bus_addr: 0x6000,
      },
    ]);
    assert.equal(r.rc, 0);
    const [m0, m1, m2] = r.out as [MapOut, MapOut, MapOut];
    assert.deepEqual([m0.status, m0.dev_bus_addr], [GNTST_okay, mfnOf(a, PAGE) * PAGE_SIZE]);
    assert.deepEqual([m1.status, m1.handle, m1.dev_bus_addr], [GNTST_general_error, 77, 0x5000]);
    assert.equal(m2.status, GNTST_okay);
    assert.notEqual(m2.handle, m0.handle);
    assert.equal(m2.dev_bus_addr, mfnOf(a, PAGE2) * PAGE_SIZE);
    assert.equal(mfnOf(b, MAP_VA + 2 * PAGE_SIZE), mfnOf(a, PAGE2));
    assert.equal(b.xen.translatePage(MAP_VA + PAGE_SIZE, false), -1, 'the failed element mapped nothing');
    assert.equal(unmap(b, m0.handle), GNTST_okay);
    assert.equal(unmap(b, m2.handle, MAP_VA + 2 * PAGE_SIZE), GNTST_okay);
    assert.deepEqual([pin(a, 10), pin(a, 12)], [0, 0]);
    noViolations(host);
  });

  it('a map that starts while another is in the window where map_grant_ref has dropped the lock (XSA-501) gets its own op: both land as asked', () => {
    const { host, a, b } = setup();
    const e = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    grant(a, 10, b);
    grant(a, 11, e, PAGE2);
    const hv = host.hypervisor;
    let inner: MapOut | null = null;
    hv.grantLockDropped = (_op, _rd, ref) => {
      if (ref !== 10 || inner !== null) return;
      // Another vCPU's map of another grant, to another address, at this moment.
      inner = map(e, a, 11, GNTMAP_host_map | GNTMAP_readonly, MAP_VA + 5 * PAGE_SIZE);
    };
    let outer: MapOut;
    try {
      outer = map(b, a, 10);
    } finally {
      hv.grantLockDropped = null;
    }
    assert.ok(inner !== null, 'the hook ran');
    const nested: MapOut = inner;
    assert.equal(outer.status, GNTST_okay);
    assert.equal(outer.dev_bus_addr, mfnOf(a, PAGE) * PAGE_SIZE);
    assert.equal(mfnOf(b, MAP_VA), mfnOf(a, PAGE));
    assert.equal(
      b.xen.translatePage(MAP_VA + 5 * PAGE_SIZE, false),
      -1,
      "the inner map's address is not b's",
    );
    assert.equal(nested.status, GNTST_okay);
    assert.equal(nested.dev_bus_addr, mfnOf(a, PAGE2) * PAGE_SIZE);
    assert.equal(mfnOf(e, MAP_VA + 5 * PAGE_SIZE), mfnOf(a, PAGE2));
    assert.equal(e.xen.translatePage(MAP_VA, false), -1, "the outer map's address is not e's");
    assert.equal(b.xen.gt.maptrack.ref(outer.handle), 10);
    assert.equal(e.xen.gt.maptrack.ref(nested.handle), 11);
    assert.equal(unmap(b, outer.handle), GNTST_okay);
    assert.equal(unmap(e, nested.handle, MAP_VA + 5 * PAGE_SIZE), GNTST_okay);
    assert.deepEqual([pin(a, 10), pin(a, 11)], [0, 0]);
    noViolations(host);
  });

  it('a batch whose later element lies in unmapped memory returns -EFAULT, earlier maps stay done (§5.4)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const size = gnttab_map_grant_ref.size;
    const addr = b.ramBytes - 2 * size; // elements 0 and 1 in RAM, element 2 above it
    b.memory.write(
      addr,
      encodeArray(gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid },
        { host_addr: MAP_VA + PAGE_SIZE, flags: GNTMAP_host_map, ref: 10, dom: a.domid },
      ]),
    );
    assert.equal(b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, addr, 3), -XEN_EFAULT);
    const out = readStructArray(b.memory, addr, gnttab_map_grant_ref, 2);
    assert.deepEqual(
      out.map((o) => [o.status, o.handle]),
      [
        [0, 0],
        [0, 1],
      ],
    );
    assert.equal(pin(a, 10), 2);
    noViolations(host);
  });
});

// ---- quirk §15.9: the bounded v1 CMPXCHG ------------------------------------------------------------

describe('v1 pin CMPXCHG (quirk §15.9, §13 race 1)', () => {
  /** Toggles `bits` in the 16-bit word at `addr` on the first `times` CMPXCHGs of the entry; counts them. */
  function flipper(host: Host, sha: number, wordAddr: number, bits: number, times: number) {
    const words = host.hypervisor.machine.words;
    const state = { attempts: 0 };
    const interpose = (op: string, addr: number) => {
      if (op !== 'cmpxchg32' || addr !== sha) return;
      state.attempts++;
      if (state.attempts <= times) Atomics.xor(words.u16, wordAddr >>> 1, bits);
    };
    return { state, interpose };
  }

  it('an unrelated flag bit changing before every CMPXCHG: Xen gives up after exactly 5 attempts with general_error', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const sha = a.xen.gt.shaAddr(10);
    const f = flipper(host, sha, sha, 0x200, Infinity);
    withInterposer(host, f.interpose, () => {
      assert.equal(map(b, a, 10).status, GNTST_general_error);
    });
    assert.equal(f.state.attempts, 5);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(b.xen.gt.maptrack.liveCount(), 0);
    noViolations(host);
    // The bit is unrelated: once the guest stops flipping, the map works.
    assert.equal(entryFlags(a, 10), GTF_permit_access | 0x200);
    assert.equal(map(b, a, 10).status, GNTST_okay);
    noViolations(host);
  });

  it('four failed CMPXCHGs and then a quiet entry: the fifth attempt succeeds', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const sha = a.xen.gt.shaAddr(10);
    const f = flipper(host, sha, sha, 0x200, 4);
    withInterposer(host, f.interpose, () => {
      assert.equal(map(b, a, 10).status, GNTST_okay);
    });
    assert.equal(f.state.attempts, 5);
    assert.equal(pin(a, 10), 1);
    assert.equal(entryFlags(a, 10), GTF_permit_access | GTF_reading | GTF_writing);
    noViolations(host);
  });

  it("the entry's domid changing before the CMPXCHG: the retry re-validates and fails after one attempt", () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const sha = a.xen.gt.shaAddr(10);
    const f = flipper(host, sha, sha + 2, 0x100, 1);
    withInterposer(host, f.interpose, () => {
      assert.equal(map(b, a, 10).status, GNTST_general_error);
    });
    assert.equal(f.state.attempts, 1);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    noViolations(host);
  });

  it('domid bits flipping during a writable upgrade (not re-validated once pinned): 5 attempts, general_error', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
    const sha = a.xen.gt.shaAddr(10);
    const f = flipper(host, sha, sha + 2, 0x100, Infinity);
    withInterposer(host, f.interpose, () => {
      assert.equal(map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE).status, GNTST_general_error);
    });
    assert.equal(f.state.attempts, 5);
    assert.equal(pin(a, 10), 0x100);
    assert.equal(statusBits(a, 10), GTF_reading);
    assert.equal(b.xen.gt.maptrack.liveCount(), 1);
    noViolations(host);
  });

  it('v2 pins without CMPXCHG; a revocation racing the status write makes Xen roll both bits back (§6.0 H1 v2)', () => {
    const { host, a, b } = setup({ version: 2 });
    grant(a, 10, b);
    const sha = a.xen.gt.shaAddr(10);
    const st = a.xen.gt.statusAddr(10);
    const words = host.hypervisor.machine.words;
    let cmpxchgs = 0;
    let revoked = false;
    withInterposer(
      host,
      (op, addr) => {
        if (op === 'cmpxchg32' && addr === sha) cmpxchgs++;
        // The granter clears hdr.flags just as Xen publishes GTF_reading|GTF_writing.
        if (op === 'or16' && addr === st && !revoked) {
          revoked = true;
          Atomics.store(words.u16, sha >>> 1, 0);
        }
      },
      () => {
        assert.equal(map(b, a, 10).status, GNTST_general_error);
      },
    );
    assert.equal(revoked, true);
    assert.equal(cmpxchgs, 0);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });
});

// ---- quirk §15.8: a pinned entry is not read again ---------------------------------------------------------

describe('pinned entries are not read again (quirk §15.8, §4.2)', () => {
  for (const v of VERSIONS) {
    it(`v${v}: after the entry's domid and frame change, a further read-only map still maps the original frame`, () => {
      const { host, a, b } = setup({ version: v });
      a.memory.write(PAGE, enc('original'));
      a.memory.write(PAGE2, enc('replaced'));
      grant(a, 10, b);
      const first = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
      const e = entryAddr(a, 10);
      a.memory.writeU16(e + 2, 0x1234);
      if (v === 1) a.memory.writeU32(e + 4, a.frameOf(PAGE2));
      else a.memory.writeU64(e + 8, a.frameOf(PAGE2));

      const second = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA + PAGE_SIZE);
      assert.equal(second.status, GNTST_okay);
      assert.equal(second.dev_bus_addr, first.dev_bus_addr);
      assert.equal(dec(b.memory.read(MAP_VA + PAGE_SIZE, 8)), 'original');
      assert.equal(pin(a, 10), 0x200);
      noViolations(host);

      // Once the pin is back to 0 the entry is read afresh: it names someone else now.
      assert.equal(unmap(b, first.handle, MAP_VA), GNTST_okay);
      assert.equal(unmap(b, second.handle, MAP_VA + PAGE_SIZE), GNTST_okay);
      assert.equal(map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly).status, GNTST_general_error);
      noViolations(host);
    });
  }
});

// ---- maptrack handles (§4.3) -------------------------------------------------------------------------

describe('maptrack handle allocation (§4.3)', () => {
  it('handles come out 0..254, then 256.. from a second page; 255 stays the sentinel', () => {
    const { host, a, b } = setup();
    for (const ref of [10, 11, 12]) grant(a, ref, b);
    const handles: number[] = [];
    for (let i = 0; i < 300; i++) {
      const m = map(b, a, 10 + (i % 3), GNTMAP_host_map, MAP_VA + i * PAGE_SIZE);
      assert.equal(m.status, GNTST_okay);
      handles.push(m.handle);
    }
    const expected = [
      ...Array.from({ length: 255 }, (_, i) => i),
      ...Array.from({ length: 45 }, (_, i) => 256 + i),
    ];
    assert.deepEqual(handles, expected);
    assert.equal(b.xen.gt.maptrack.limit, 512);
    assert.equal(live(b, 255), false);
    noViolations(host);
  });

  it('freed handles are reused in FIFO order, behind the unused ones', () => {
    const { host, a, b } = setup();
    for (const ref of [10, 11, 12]) grant(a, ref, b);
    const at = (h: number) => MAP_VA + h * PAGE_SIZE;
    for (let i = 0; i < 3; i++) map(b, a, 10, GNTMAP_host_map, at(i));
    assert.equal(unmap(b, 1, at(1)), GNTST_okay);
    // 1 went to the tail: the next handle is 3, not 1.
    assert.equal(map(b, a, 10, GNTMAP_host_map, at(3)).handle, 3);
    for (let h = 4; h < 255; h++)
      assert.deepEqual(pick(map(b, a, 10 + (h % 3), GNTMAP_host_map, at(h))), [GNTST_okay, h]);
    for (const h of [7, 3, 100]) assert.equal(unmap(b, h, at(h)), GNTST_okay);
    // List now: 255 (old sentinel), 1, 7, 3, 100 (new sentinel).
    const next = [0, 1, 2, 3, 4].map((i) => map(b, a, 12, GNTMAP_host_map, at(400 + i)).handle);
    assert.deepEqual(next, [255, 1, 7, 3, 256]);
    noViolations(host);
  });
});

// ---- unmap ------------------------------------------------------------------------------------------------

describe('unmap_grant_ref (§6.2)', () => {
  it('a handle at or beyond the maptrack limit, or naming a free slot, is bad_handle', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    assert.equal(unmap(b, 0), GNTST_bad_handle); // limit 0: nothing allocated yet
    const m = map(b, a, 10);
    assert.equal(unmap(b, 256), GNTST_bad_handle);
    assert.equal(unmap(b, 0xffffffff), GNTST_bad_handle);
    assert.equal(unmap(b, 5), GNTST_bad_handle);
    assert.equal(unmap(b, 255), GNTST_bad_handle);
    assert.equal(pin(a, 10), 1);
    assert.equal(live(b, m.handle), true);
    noViolations(host);
  });

  it('a wrong dev_bus_addr for a device mapping is bad_dev_addr; the handle stays', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10, GNTMAP_device_map, 0);
    assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr + PAGE_SIZE), GNTST_bad_dev_addr);
    assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr + 1), GNTST_bad_dev_addr);
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 0x10000);
    assert.equal(unmap(b, m.handle, 0, m.dev_bus_addr), GNTST_okay);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });

  it('bad_dev_addr is checked before the host mapping is touched (§6.2 steps 8-9)', () => {
    const { host, a, b } = setup();
    a.memory.write(PAGE, enc('kept'));
    grant(a, 10, b);
    const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_device_map);
    assert.equal(unmap(b, m.handle, MAP_VA, 0x7000), GNTST_bad_dev_addr);
    assert.equal(dec(b.memory.read(MAP_VA, 4)), 'kept');
    assert.equal(pin(a, 10), 0x10001);
    assert.equal(b.xen.gt.maptrack.flags(m.handle), GNTMAP_host_map | GNTMAP_device_map);
    noViolations(host);
  });

  it('a dev_bus_addr given for a host-only mapping is silently ignored (§6.2 consequences)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.equal(unmap(b, m.handle, MAP_VA, 0x7000), GNTST_okay);
    assert.equal(live(b, m.handle), false);
    assert.equal(pin(a, 10), 0);
    noViolations(host);
  });

  for (const bk of KINDS) {
    it(`${bk} grantee: host_addr 0 and dev_bus_addr 0 succeed, do nothing, and keep the handle (quirk §15.4)`, () => {
      const { host, a, b } = setup({ grantee: bk });
      a.memory.write(PAGE, enc('alive'));
      grant(a, 10, b);
      const m = map(b, a, 10);
      assert.equal(unmap(b, m.handle, 0, 0), GNTST_okay);
      assert.equal(live(b, m.handle), true);
      assert.equal(pin(a, 10), 1);
      assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
      assert.equal(dec(b.memory.read(MAP_VA, 5)), 'alive');
      noViolations(host);
      assert.equal(unmap(b, m.handle), GNTST_okay);
      assert.equal(pin(a, 10), 0);
      noViolations(host);
    });
  }

  it('PV: a host_addr whose PTE does not map the grant is general_error; the handle and both mappings stay (§6.2 step 9)', () => {
    const { host, a, b } = setup();
    b.memory.write(PAGE, enc('own ram'));
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.equal(unmap(b, m.handle, PAGE), GNTST_general_error);
    assert.equal(unmap(b, m.handle, MAP_VA + PAGE_SIZE), GNTST_general_error);
    assert.equal(dec(b.memory.read(PAGE, 7)), 'own ram');
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 1);
    assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
    noViolations(host);
    assert.equal(unmap(b, m.handle), GNTST_okay);
    noViolations(host);
  });

  it('PV: the PTE must match the grant in frame and RW bit; a read-only handle cannot tear down a writable PTE (XSA-234)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const ro = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly, MAP_VA);
    const rw = map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE);
    assert.equal(unmap(b, ro.handle, MAP_VA + PAGE_SIZE), GNTST_general_error);
    assert.equal(unmap(b, rw.handle, MAP_VA), GNTST_general_error);
    assert.equal(pin(a, 10), 0x101);
    b.memory.write(MAP_VA + PAGE_SIZE, enc('w'));
    assert.equal(dec(b.memory.read(MAP_VA, 1)), 'w');
    noViolations(host);
    assert.equal(unmap(b, ro.handle, MAP_VA), GNTST_okay);
    assert.equal(unmap(b, rw.handle, MAP_VA + PAGE_SIZE), GNTST_okay);
    noViolations(host);
  });

  it('HVM: a host_addr that is not the grant GFN is general_error; the handle stays (§6.2 step 9)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.equal(unmap(b, m.handle, PAGE), GNTST_general_error);
    assert.equal(unmap(b, m.handle, MAP_VA + PAGE_SIZE), GNTST_general_error);
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 1);
    noViolations(host);
  });

  for (const bk of KINDS) {
    it(`${bk} grantee: the second unmap of a handle is bad_handle, in separate calls and within one batch (XSA-218)`, () => {
      const { host, a, b } = setup({ grantee: bk });
      grant(a, 10, b);
      const h1 = map(b, a, 10, GNTMAP_host_map, MAP_VA).handle;
      const h2 = map(b, a, 10, GNTMAP_host_map, MAP_VA + PAGE_SIZE).handle;
      assert.equal(unmap(b, h1, MAP_VA), GNTST_okay);
      assert.equal(unmap(b, h1, MAP_VA), GNTST_bad_handle);
      assert.equal(pin(a, 10), 1);
      const r = gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
        { host_addr: MAP_VA + PAGE_SIZE, handle: h2 },
        { host_addr: MAP_VA + PAGE_SIZE, handle: h2 },
      ]);
      assert.equal(r.rc, 0);
      assert.deepEqual(
        r.out.map((o) => o.status),
        [GNTST_okay, GNTST_bad_handle],
      );
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      noViolations(host);
    });
  }

  /** Maps refs 10..10+n-1 (all onto PAGE) at MAP_VA + i pages; returns the unmap ops. */
  function mapMany(a: DomainHandle, b: DomainHandle, n: number) {
    const ops: { host_addr: number; handle: number }[] = [];
    for (let i = 0; i < n; i++) {
      grant(a, 10 + i, b);
      const m = map(b, a, 10 + i, GNTMAP_host_map, MAP_VA + i * PAGE_SIZE);
      assert.equal(m.status, GNTST_okay);
      ops.push({ host_addr: MAP_VA + i * PAGE_SIZE, handle: m.handle });
    }
    return ops;
  }

  for (const v of VERSIONS) {
    it(`v${v}: a batch of 40 unmaps (two sub-batches) completes every element; a bad element fails alone`, () => {
      const { host, a, b } = setup({ version: v });
      const ops = mapMany(a, b, 40);
      ops[33] = { host_addr: MAP_VA + 33 * PAGE_SIZE, handle: 300 };
      const r = gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, ops);
      assert.equal(r.rc, 0);
      assert.deepEqual(
        r.out.map((o) => o.status),
        ops.map((_, i) => (i === 33 ? GNTST_bad_handle : GNTST_okay)),
      );
      for (let i = 0; i < 40; i++) {
        assert.equal(pin(a, 10 + i), i === 33 ? 1 : 0);
        assert.equal(statusBits(a, 10 + i), i === 33 ? GTF_reading | GTF_writing : 0);
      }
      assert.equal(b.xen.gt.maptrack.liveCount(), 1);
      noViolations(host);
    });
  }

  it('sub-batches of 32: the first 32 complete (pins drop, bits clear) before the 33rd is looked at (§6.2)', () => {
    const { host, a, b } = setup();
    const ops = mapMany(a, b, 40);
    const st0 = a.xen.gt.statusAddr(10);
    const st32 = a.xen.gt.statusAddr(10 + 32);
    const seen: { at: string; freed31: boolean; live32: boolean; live39: boolean }[] = [];
    withInterposer(
      host,
      (op, addr) => {
        if (op !== 'and16' || (addr !== st0 && addr !== st32)) return;
        seen.push({
          at: addr === st0 ? 'element 0' : 'element 32',
          freed31: !live(b, ops[31]!.handle),
          live32: live(b, ops[32]!.handle),
          live39: live(b, ops[39]!.handle),
        });
      },
      () => {
        const r = gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, ops);
        assert.equal(r.rc, 0);
      },
    );
    // Element 0's status bits clear (phase 2) after phase 1 freed all 32 handles of its
    // sub-batch, and before phase 1 of the second sub-batch touched element 32.
    assert.deepEqual(seen, [
      { at: 'element 0', freed31: true, live32: true, live39: true },
      { at: 'element 32', freed31: true, live32: false, live39: false },
    ]);
    noViolations(host);
  });

  it('a batch whose later element lies in unmapped memory returns -EFAULT; earlier elements are done (§5.4)', () => {
    for (const bk of KINDS) {
      const { host, a, b } = setup({ grantee: bk });
      const ops = mapMany(a, b, 3);
      const size = gnttab_unmap_grant_ref.size;
      const addr = b.ramBytes - 2 * size;
      b.memory.write(addr, encodeArray(gnttab_unmap_grant_ref, ops.slice(0, 2)));
      assert.equal(b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, addr, 3), -XEN_EFAULT);
      const out = readStructArray(b.memory, addr, gnttab_unmap_grant_ref, 2);
      assert.deepEqual(
        out.map((o) => o.status),
        [GNTST_okay, GNTST_okay],
      );
      assert.deepEqual([pin(a, 10), pin(a, 11), pin(a, 12)], [0, 0, 1]);
      assert.deepEqual([statusBits(a, 10), statusBits(a, 11)], [0, 0]);
      assert.equal(live(b, ops[2]!.handle), true);
      noViolations(host);
    }
  });
});

// ---- unmap_and_replace ------------------------------------------------------------------------------

describe('unmap_and_replace (§6.3)', () => {
  it('PV, new_addr 0: a plain host unmap', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.deepEqual(unmapReplace(b, m.handle, MAP_VA, 0), { rc: 0, status: GNTST_okay });
    assert.equal(live(b, m.handle), false);
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    assert.throws(() => b.memory.read(MAP_VA, 1), GuestFault);
    noViolations(host);
  });

  it('PV, new_addr set: the PTE at new_addr moves to host_addr and new_addr is zapped', () => {
    const { host, a, b } = setup();
    a.memory.write(PAGE, enc('granter'));
    b.memory.write(0x5000, enc('replacement'));
    const ownMfn = mfnOf(b, 0x5000);
    const c0 = pageCount(host, ownMfn);
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.deepEqual(unmapReplace(b, m.handle, MAP_VA, 0x5000), { rc: 0, status: GNTST_okay });
    assert.equal(dec(b.memory.read(MAP_VA, 11)), 'replacement');
    assert.equal(mfnOf(b, MAP_VA), ownMfn);
    assert.throws(() => b.memory.read(0x5000, 1), GuestFault);
    assert.equal(pageCount(host, ownMfn), c0);
    b.memory.write(MAP_VA, enc('mine'));
    assert.equal(dec(a.memory.read(PAGE, 7)), 'granter');
    assert.equal(pin(a, 10), 0);
    assert.equal(statusBits(a, 10), 0);
    assert.equal(live(b, m.handle), false);
    noViolations(host);
  });

  it('PV: a failed replace still releases the stolen PTE at new_addr; the handle stays (§6.3, x86 replace_grant_pv_mapping)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10);
    const ownMfn = mfnOf(b, 0x5000);
    const c0 = pageCount(host, ownMfn);
    assert.deepEqual(unmapReplace(b, m.handle, MAP_VA + PAGE_SIZE, 0x5000), {
      rc: 0,
      status: GNTST_general_error,
    });
    assert.throws(() => b.memory.read(0x5000, 1), GuestFault);
    assert.equal(pageCount(host, ownMfn), c0 - 1);
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 1);
    noViolations(host);
  });

  it('the device half of a handle is never touched by unmap_and_replace', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_device_map);
    assert.deepEqual(unmapReplace(b, m.handle, MAP_VA, 0), { rc: 0, status: GNTST_okay });
    assert.equal(b.xen.gt.maptrack.flags(m.handle), GNTMAP_device_map);
    assert.equal(pin(a, 10), 0x10000);
    assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
    noViolations(host);
  });

  it('HVM callers get -ENOSYS for cmd 7 and their mapping is untouched (DESIGN: hvm_grant_table_op)', () => {
    const { host, a, b } = setup({ grantee: 'hvm' });
    a.memory.write(PAGE, enc('stays'));
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.equal(unmapReplace(b, m.handle, MAP_VA, 0).rc, -XEN_ENOSYS);
    assert.equal(unmapReplace(b, m.handle, MAP_VA, 0x5000).rc, -XEN_ENOSYS);
    assert.equal(live(b, m.handle), true);
    assert.equal(pin(a, 10), 1);
    assert.equal(dec(b.memory.read(MAP_VA, 5)), 'stays');
    noViolations(host);
  });
});

// ---- implicit unmaps and dying domains -----------------------------------------------------------------

describe('implicit unmap by a PV grantee (quirk §15.19) and granters that go away (quirk §15.5, §12)', () => {
  // put_page_from_l1e (xen/arch/x86/mm.c): the #GP exists only where
  // _PAGE_GNTTAB does, in debug builds (asm/page.h: #undef under NDEBUG).
  for (const debug of [false, true]) {
    const build = debug ? 'debug build' : 'release build';
    for (const v of VERSIONS) {
      it(`${build}, v${v}: zapping a grant PTE with update_va_mapping drops the page reference, keeps pin and handle; #GP only in a debug build (put_page_from_l1e)`, () => {
        const { host, a, b } = setup({ version: v, debug });
        grant(a, 10, b);
        const mfn = mfnOf(a, PAGE);
        const c0 = pageCount(host, mfn);
        const m = map(b, a, 10);
        assert.equal(pageCount(host, mfn), c0 + 1);
        assert.equal((b.xen.pt!.get(MAP_VA / PAGE_SIZE) & PTE_GNTTAB_MARK) !== 0, debug);

        assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, 0, 0), 0);
        assert.deepEqual(
          b.xen.injected.map((e) => e.vector),
          debug ? [13] : [],
        );
        assert.equal(pageCount(host, mfn), c0);
        assert.equal(pin(a, 10), 1);
        assert.equal(live(b, m.handle), true);
        assert.equal(statusBits(a, 10), GTF_reading | GTF_writing);
        noViolations(host);

        // The PTE no longer matches: unmap fails and the handle stays (§6.2 step 9).
        assert.equal(unmap(b, m.handle), GNTST_general_error);
        assert.equal(live(b, m.handle), true);
        assert.equal(pin(a, 10), 1);
        noViolations(host);

        // Only the grantee's death releases the pin.
        host.destroyDomain(b.domid);
        assert.equal(pin(a, 10), 0);
        assert.equal(statusBits(a, 10), 0);
        assert.equal(pageCount(host, mfn), c0);
        noViolations(host);
      });
    }

    it(`${build}: overwriting a grant PTE with an ordinary mapping is the same implicit unmap (reference dropped${debug ? ', #GP' : ', no #GP'})`, () => {
      const { host, a, b } = setup({ debug });
      b.memory.write(0x5000, enc('ordinary'));
      grant(a, 10, b);
      const mfn = mfnOf(a, PAGE);
      const c0 = pageCount(host, mfn);
      const m = map(b, a, 10);
      const own = mfnOf(b, 0x5000) * PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW);
      assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, own, 0), 0);
      assert.deepEqual(
        b.xen.injected.map((e) => e.vector),
        debug ? [13] : [],
      );
      assert.equal(dec(b.memory.read(MAP_VA, 8)), 'ordinary');
      assert.equal(pageCount(host, mfn), c0);
      assert.equal(unmap(b, m.handle), GNTST_general_error);
      assert.equal(pin(a, 10), 1);
      noViolations(host);
    });

    // mod_l1_entry's fast path: same frame, differences only in
    // FASTPATH_FLAG_WHITELIST bits (accessed, dirty, user, available, NX).
    it(`${build}: update_va_mapping of the same foreign frame differing only in whitelisted bits takes the fast path; unmap still works (mod_l1_entry, replace_grant_pv_mapping)`, () => {
      const { host, a, b } = setup({ debug });
      a.memory.write(PAGE, enc('fastpath'));
      grant(a, 10, b);
      const mfn = mfnOf(a, PAGE);
      const c0 = pageCount(host, mfn);
      const t0 = typeCount(host, mfn);
      const m = map(b, a, 10);
      assert.equal(m.status, GNTST_okay);
      const c1 = pageCount(host, mfn);
      const t1 = typeCount(host, mfn);
      // Accessed and dirty cleared, user and the available bits set, NX (PTE bit 63) set.
      const pte =
        BigInt(mfn * PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_AVAIL)) | (1n << 63n);
      assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, pte, 0), 0);
      assert.deepEqual(b.xen.injected, []);
      assert.deepEqual([pageCount(host, mfn), typeCount(host, mfn)], [c1, t1]);
      const now = b.xen.pt!.get(MAP_VA / PAGE_SIZE);
      assert.equal(now, mfn * PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_AVAIL));
      assert.equal(dec(b.memory.read(MAP_VA, 8)), 'fastpath');
      noViolations(host);
      // replace_grant_pv_mapping checks only frame, PRESENT and RW.
      assert.equal(unmap(b, m.handle), GNTST_okay);
      assert.equal(live(b, m.handle), false);
      assert.equal(pin(a, 10), 0);
      assert.equal(statusBits(a, 10), 0);
      assert.deepEqual([pageCount(host, mfn), typeCount(host, mfn)], [c0, t0]);
      assert.deepEqual(b.xen.injected, []);
      noViolations(host);
    });

    it(`${build}: a PTE update that changes RW of a foreign grant frame takes the slow path: could_not_pin, -EBUSY, the grant PTE stays (get_page_from_l1e)`, () => {
      const { host, a, b } = setup({ debug });
      grant(a, 10, b);
      const mfn = mfnOf(a, PAGE);
      const m = map(b, a, 10, GNTMAP_host_map | GNTMAP_readonly);
      const before = b.xen.pt!.get(MAP_VA / PAGE_SIZE);
      const c1 = pageCount(host, mfn);
      assert.equal(
        b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, mfn * PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW), 0),
        -XEN_EBUSY,
      );
      assert.equal(b.xen.pt!.get(MAP_VA / PAGE_SIZE), before);
      assert.equal(pageCount(host, mfn), c1);
      assert.throws(() => b.memory.writeU8(MAP_VA, 1), GuestFault);
      assert.equal(unmap(b, m.handle), GNTST_okay);
      noViolations(host);
    });
  }

  it('debug build: a guest PTE may not carry _PAGE_GNTTAB (L1_DISALLOW_MASK, -EINVAL); a release build takes bit 62 as an available bit', () => {
    for (const debug of [false, true]) {
      const { host, b } = setup({ debug });
      const own = BigInt(mfnOf(b, 0x5000) * PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW)) | (1n << 62n);
      assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, own, 0), debug ? -XEN_EINVAL : 0);
      if (debug) assert.throws(() => b.memory.readU8(MAP_VA), GuestFault);
      else assert.equal(b.memory.readU8(MAP_VA), b.memory.readU8(0x5000));
      noViolations(host);
    }
  });

  it('an unmap whose granter no longer exists crashes the caller (quirk §15.5, §16.3)', () => {
    const { host, a, b } = setup();
    grant(a, 10, b);
    const m = map(b, a, 10);
    assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, 0, 0), 0);
    host.destroyDomain(a.domid);
    // Nothing references a's pages any more: it is gone, not a zombie.
    assert.equal(host.hypervisor.domains.has(a.domid), false);
    assert.equal(live(b, m.handle), true);
    noViolations(host);

    const r = gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
      { host_addr: MAP_VA, handle: m.handle },
    ]);
    assert.deepEqual(r.out, []); // nothing to read back: the caller is gone
    assert.equal(b.alive, false);
    assert.match(b.xen.crashed ?? '', /no longer exists/);
    assert.equal(host.domain(b.domid), undefined);
    assert.equal(host.hypervisor.domains.size, 0);
    noViolations(host);
  });

  for (const bk of KINDS) {
    it(`${bk} grantee: a live mapping keeps a destroyed granter as a zombie; unmap still works and frees it (§12, §16.3)`, () => {
      const { host, a, b } = setup({ grantee: bk });
      a.memory.write(PAGE, enc('zombie'));
      grant(a, 10, b);
      const m = map(b, a, 10);
      host.destroyDomain(a.domid);
      assert.equal(a.alive, false);
      assert.equal(host.hypervisor.domains.has(a.domid), true);
      assert.equal(dec(b.memory.read(MAP_VA, 6)), 'zombie');
      noViolations(host);

      assert.equal(unmap(b, m.handle), GNTST_okay);
      assert.equal(b.alive, true);
      assert.equal(host.hypervisor.domains.has(a.domid), false);
      noViolations(host);
    });
  }
});
