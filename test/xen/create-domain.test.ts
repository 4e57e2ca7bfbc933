// Domain creation as Xen's does it: grant_table_init's limits (at HEAD the
// gnttab_max_frames and gnttab_max_maptrack_frames command-line values are
// defaults only, since "xen/grants: repurpose command line max options",
// 4.18; the domctl fields are int32_t, negative meaning the default; what does
// not fit Xen's heap is -ENOMEM), evtchn_init's clamp of max_evtchn_port, the
// ids of domid_alloc (xen/common/domid.c), and options of the wrong type.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  DOMID_ANY,
  DOMID_FIRST_RESERVED,
  DOMID_INVALID,
  DOMID_SELF,
  decodeStruct,
  encodeStruct,
  GNTTABOP_query_size,
  gnttab_query_size,
  Host,
  type HostOptions,
  WorkerHost,
} from 'gnttab';
import { DomainTable } from '../../src/xen/domain-table.ts';
import { PrivatePages } from '../../src/xen/private-pages.ts';

/** max_nr_frames as the domain's GNTTABOP_query_size reports it. */
function maxFrames(host: Host, domid: number): number {
  const d = host.domain(domid)!;
  const arg = d.ramBytes - 4096;
  d.memory.write(arg, encodeStruct(gnttab_query_size, { dom: DOMID_SELF }));
  assert.equal(d.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, arg, 1), 0);
  return decodeStruct(gnttab_query_size, d.memory.read(arg, 16)).max_nr_frames;
}

describe('grant_table_init: max grant and maptrack frames', () => {
  it('the host options are the defaults; a domain may ask for more (no cap at HEAD)', () => {
    const host = new Host({ memoryMiB: 16, gnttab: { maxFrames: 4, maxMaptrackFrames: 8 } });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    assert.equal(maxFrames(host, a.domid), 4);
    assert.equal(a.xen.gt.maptrack.maxFrames, 8);
    const b = host.createDomain({
      kind: 'hvm',
      memoryKiB: 256,
      maxGrantFrames: 128,
      maxMaptrackFrames: 2048,
    });
    assert.equal(maxFrames(host, b.domid), 128);
    assert.equal(b.xen.gt.maptrack.maxFrames, 2048);
    // Negative means "the default", as the domctl's int32 fields do.
    const c = host.createDomain({ kind: 'pv', memoryKiB: 256, maxGrantFrames: -1, maxMaptrackFrames: -5 });
    assert.equal(maxFrames(host, c.domid), 4);
    assert.equal(c.xen.gt.maptrack.maxFrames, 8);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('0 grant frames is -EINVAL; sizes the int32 fields cannot carry are refused', () => {
    const host = new Host({ memoryMiB: 16 });
    assert.throws(
      () => host.createDomain({ kind: 'pv', maxGrantFrames: 0 }),
      /at least 1 \(Xen answers -EINVAL\)/,
    );
    for (const n of [2 ** 31, 2 ** 32 + 1, 1.5]) {
      assert.throws(() => host.createDomain({ kind: 'pv', maxGrantFrames: n }), {
        name: 'RangeError',
        message: /maxGrantFrames must be an integer from -2147483648 to 2147483647 \(an int32\)/,
      });
      assert.throws(() => host.createDomain({ kind: 'pv', maxMaptrackFrames: n }), /\(an int32\)/);
    }
    assert.equal(host.domains.length, 0);
  });

  it('bookkeeping that does not fit Xen’s heap is -ENOMEM, and nothing is left behind', () => {
    const host = new Host({ memoryMiB: 16 });
    const free = host.hypervisor.frames.freeFrames;
    for (const o of [
      { maxGrantFrames: 1e9 },
      { maxMaptrackFrames: 2 ** 31 - 1 },
      { maxMaptrackFrames: 1e9 },
    ]) {
      assert.throws(() => host.createDomain({ kind: 'pv', memoryKiB: 256, ...o }), {
        name: 'RangeError',
        message: /KiB of Xen heap for the grant table's bookkeeping, .* \(Xen answers -ENOMEM\)/,
      });
    }
    assert.equal(host.hypervisor.frames.freeFrames, free);
    // A domain that fits still comes up, with the next id.
    assert.equal(host.createDomain({ kind: 'pv', memoryKiB: 256, maxGrantFrames: 10_000 }).domid, 0);
  });
});

describe('evtchn_init: max_evtchn_port', () => {
  it('is a uint32, kept at most INT_MAX', () => {
    const host = new Host({ memoryMiB: 16 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256, maxEvtchnPort: 2 ** 32 - 1 });
    assert.equal(d.xen.evtchn.maxPort, 2 ** 31 - 1);
    assert.throws(() => host.createDomain({ kind: 'pv', maxEvtchnPort: 2 ** 32 + 1 }), /\(a uint32\)/);
    assert.throws(() => host.createDomain({ kind: 'pv', maxEvtchnPort: -1 }), /\(a uint32\)/);
  });
});

describe('options of the wrong type are a TypeError, not a default', () => {
  const bad: [string, HostOptions][] = [
    ['gnttab.transitive', { gnttab: { transitive: 'no' as never } }],
    ['gnttab.transfer', { gnttab: { transfer: 0 as never } }],
    ['gnttab.debugBuild', { gnttab: { debugBuild: 'yes' as never } }],
    ['gnttab.maxVersion', { gnttab: { maxVersion: '2' as never } }],
    ['gnttab.maxFrames', { gnttab: { maxFrames: '64' as never } }],
    ['gnttab', { gnttab: 'max-ver:1' as never }],
    ['seed', { seed: '7' as never }],
    ['xenstore', { xenstore: 'on' as never }],
  ];
  for (const [name, options] of bad) {
    it(`Host and WorkerHost: ${name}`, async () => {
      const want = { name: 'TypeError', message: new RegExp(`^${name.replace('.', '\\.')} must be`) };
      assert.throws(() => new Host(options), want);
      await assert.rejects(WorkerHost.start(options), want);
    });
  }

  it('createDomain, in both modes', async () => {
    const host = new Host({ memoryMiB: 16 });
    await using wh = await WorkerHost.start({ memoryMiB: 16 });
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ kind: 'pv', memoryKiB: '256' }, /^memoryKiB must be a number, got "256"/],
      [{ kind: 'pv', maxGrantFrames: '64' }, /^maxGrantFrames must be a number/],
      [{ kind: 'pv', vcpus: true }, /^vcpus must be a number, got true/],
      [{ kind: 'pv', domid: '3' }, /^domid must be a number/],
      [{ kind: 'PV' }, /^kind must be 'pv' or 'hvm', got PV/],
    ];
    for (const [o, message] of cases) {
      assert.throws(() => host.createDomain(o as never), { name: 'TypeError', message });
      await assert.rejects(wh.createDomain(o as never), { name: 'TypeError', message });
    }
    await assert.rejects(wh.createDomain({ kind: 'pv', maxGrantFrames: 0 }), { name: 'RangeError' });
  });
});

describe("the domain table's allocator follows domid_alloc", () => {
  it('searches up from the last id, wraps to 1, skips ids in use, and runs out only when all are', () => {
    const pool = PrivatePages.create(64);
    const a = new DomainTable(pool, DomainTable.create(pool), () => {
      throw new Error('no domain is built here');
    });
    assert.equal(a.allocId(0), 0);
    assert.equal(a.allocId(DOMID_ANY), 1);
    assert.equal(a.allocId(7), 7); // explicit: does not move the search
    assert.equal(a.allocId(DOMID_ANY), 2);
    assert.equal(a.allocId(7), DOMID_INVALID);
    assert.equal(a.allocId(DOMID_FIRST_RESERVED), DOMID_INVALID);
    assert.equal(a.allocId(DOMID_SELF), DOMID_INVALID);
    for (let id = 3; id < DOMID_FIRST_RESERVED; id++) if (id !== 7) assert.equal(a.allocId(DOMID_ANY), id);
    assert.equal(a.allocId(DOMID_ANY), DOMID_INVALID); // all taken
    a.freeId(5);
    a.freeId(0);
    assert.equal(a.allocId(DOMID_ANY), 5); // the wrap skips 0, the boot domain's
    assert.equal(a.allocId(DOMID_ANY), DOMID_INVALID);
    a.freeId(DOMID_FIRST_RESERVED - 1);
    a.freeId(3);
    assert.equal(a.allocId(DOMID_ANY), DOMID_FIRST_RESERVED - 1); // upwards from 5 first
    assert.equal(a.allocId(DOMID_ANY), 3);
  });
});

describe('domid_alloc: ids are reused after a wrap, never while in use', () => {
  it('d0 first, then upwards from the last id handed out, not the lowest free one', () => {
    const host = new Host({ memoryMiB: 16 });
    const ids = [0, 1, 2].map(() => host.createDomain({ kind: 'pv', memoryKiB: 64 }).domid);
    assert.deepEqual(ids, [0, 1, 2]);
    host.destroyDomain(1);
    assert.equal(host.createDomain({ kind: 'pv', memoryKiB: 64 }).domid, 3);
    // An explicit id: taken if free, refused if in use.
    assert.equal(host.createDomain({ kind: 'pv', memoryKiB: 64, domid: 1 }).domid, 1);
    assert.throws(() => host.createDomain({ kind: 'pv', memoryKiB: 64, domid: 2 }), /d2 is in use/);
    assert.throws(
      () => host.createDomain({ kind: 'pv', domid: DOMID_FIRST_RESERVED }),
      /below DOMID_FIRST_RESERVED/,
    );
    assert.equal(host.createDomain({ kind: 'pv', memoryKiB: 64 }).domid, 4);
  });

  it('a long-running host creates domains forever: past 32752 ids the search wraps to 1', () => {
    const host = new Host({ memoryMiB: 4 });
    const d0 = host.createDomain({ kind: 'pv', memoryKiB: 4 });
    const keeper = host.createDomain({ kind: 'hvm', memoryKiB: 4 }); // d1 stays up throughout
    const seen = new Set<number>();
    let last = keeper.domid;
    let wrapped = 0;
    const total = DOMID_FIRST_RESERVED + 100;
    for (let i = 0; i < total; i++) {
      const d = host.createDomain({ kind: i % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 4 });
      assert.ok(d.domid !== d0.domid && d.domid !== keeper.domid, `d${d.domid} handed out while in use`);
      assert.ok(d.domid > 0 && d.domid < DOMID_FIRST_RESERVED);
      if (d.domid < last) {
        wrapped++;
        // The wrap restarts at the lowest free id above 0: d1 is live, so d2.
        assert.equal(d.domid, 2);
      } else assert.equal(d.domid, last + 1);
      last = d.domid;
      seen.add(d.domid);
      host.destroyDomain(d.domid);
    }
    assert.equal(wrapped, 1);
    assert.equal(seen.size, DOMID_FIRST_RESERVED - 2); // every id but 0 and 1
    assert.deepEqual(host.checkInvariants(), []);
  });
});
