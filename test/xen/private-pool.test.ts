// The hypervisor's private pages running out (HypervisorOptions.privatePages):
// a host with a tiny pool reaches each of Xen's failure paths for its own
// bookkeeping, and each answers as Xen does and leaks nothing: the pool's free
// count is back once the domain is gone (or at once, when creation failed),
// and the invariants hold.
//
// A maptrack that finds no page for its next frame steals a handle from
// another vCPU (get_maptrack_handle's steal_maptrack_handle): that is tested
// in test/xen/private-pages.test.ts, "a maptrack that finds no private page
// for its next frame steals a handle instead"; here the case with nothing to
// steal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_event_channel_op,
  DOMID_SELF,
  type DomainHandle,
  decodeStruct,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_close,
  encodeStruct,
  evtchn_alloc_unbound,
  evtchn_close,
  GNTMAP_host_map,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  GNTTABOP_setup_table,
  gnttab_map_grant_ref,
  gnttab_setup_table,
  Host,
  type StructDef,
  type StructValue,
  WorkerHost,
  XEN_ENOMEM,
} from '../../src/index.ts';
import { DomainTable } from '../../src/xen/domain-table.ts';
import { EVTCHNS_PER_BUCKET } from '../../src/xen/event-channel.ts';
import { BOOT_PRIVATE_PAGES } from '../../src/xen/hypervisor.ts';
import { PrivatePages } from '../../src/xen/private-pages.ts';
import { XenGlobals } from '../../src/xen/xen-globals.ts';
import { gnttabOp, grantAccess, MAP_VA, mapGrantTable, one, scratch } from '../helpers/guest.ts';

const DOM = { kind: 'pv', memoryKiB: 256 } as const;

/** What booting takes from the pool, and what one DOM takes, measured on a host with room. */
const { boot, perDomain } = (() => {
  const host = new Host({ memoryMiB: 16 });
  const pool = host.hypervisor.privatePages;
  const boot = pool.usedPages;
  host.createDomain(DOM);
  return { boot, perDomain: pool.usedPages - boot };
})();

/** A host whose pool has its header, what booting takes, and `spare` pages more. */
function tinyHost(spare: number): Host {
  return new Host({ memoryMiB: 16, privatePages: 1 + boot + spare });
}

const free = (host: Host) => host.hypervisor.privatePages.freePages;

function evtchnOp<F extends string>(
  dom: DomainHandle,
  cmd: number,
  def: StructDef<F>,
  value: Partial<StructValue<F>>,
): { rc: number; out: StructValue<F> } {
  const addr = scratch(dom, 3);
  dom.memory.write(addr, encodeStruct(def, value));
  const rc = dom.hypercall(__HYPERVISOR_event_channel_op, cmd, addr);
  return { rc, out: decodeStruct(def, dom.memory.read(addr, def.size)) };
}

/** EVTCHNOP_alloc_unbound in the caller for itself: the port, or -errno. */
function allocUnbound(dom: DomainHandle): number {
  const r = evtchnOp(dom, EVTCHNOP_alloc_unbound, evtchn_alloc_unbound, {
    dom: DOMID_SELF,
    remote_dom: dom.domid,
  });
  return r.rc < 0 ? r.rc : r.out.port;
}

function setupTable(dom: DomainHandle, nrFrames: number) {
  return gnttabOp(dom, GNTTABOP_setup_table, gnttab_setup_table, [
    { dom: DOMID_SELF, nr_frames: nrFrames, frame_list: scratch(dom, 2) },
  ]);
}

describe('the privatePages option', () => {
  const min = BOOT_PRIVATE_PAGES;

  it('is checked: an integer from what booting takes to 1 GiB of pages, in Host and WorkerHost', async () => {
    const range = new RegExp(`^privatePages must be an integer from ${min} to ${PrivatePages.MAX_PAGES}`);
    assert.throws(() => new Host({ privatePages: min - 1 }), { name: 'RangeError', message: range });
    assert.throws(() => new Host({ privatePages: PrivatePages.MAX_PAGES + 1 }), RangeError);
    assert.throws(() => new Host({ privatePages: 100.5 }), RangeError);
    assert.throws(() => new Host({ privatePages: '100' as unknown as number }), {
      name: 'TypeError',
      message: 'privatePages must be a number, got "100"',
    });
    // Refused in the caller's thread, before the hypervisor thread starts.
    await assert.rejects(WorkerHost.start({ privatePages: 2 }), { name: 'RangeError', message: range });
    assert.equal(new Host({ memoryMiB: 16, privatePages: 300 }).hypervisor.privatePages.maxPages, 300);
    assert.equal(new Host({ memoryMiB: 16 }).hypervisor.privatePages.maxPages, 4096, 'the default');
  });

  it('the smallest pool boots a host, with no page to spare: its first domain finds no grant table (grant_table_init)', () => {
    const host = new Host({ memoryMiB: 16, privatePages: min });
    assert.equal(boot, XenGlobals.PAGES + DomainTable.PAGES);
    assert.equal(free(host), 0);
    assert.throws(() => host.createDomain(DOM), {
      name: 'RangeError',
      message: "out of the hypervisor's private memory for a grant table",
    });
    assert.equal(free(host), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe("domain_create without the hypervisor's private memory", () => {
  it('a domain that gets no record fails with a RangeError saying so, and gives back its grant table', () => {
    // grant_table_init takes 5 pages first: its header, the maptrack's header
    // and directory root, the roots of the active entries and of the frame lists.
    const host = tinyHost(5);
    const frames = host.hypervisor.frames.freeFrames;
    assert.throws(() => host.createDomain(DOM), {
      name: 'RangeError',
      message: "out of the hypervisor's private memory for a domain",
    });
    assert.equal(free(host), 5, 'the grant table went back');
    assert.equal(host.hypervisor.frames.freeFrames, frames, 'no machine frame was kept');
    // The id went back too: asking for it again fails for memory, not "d0 is in use".
    assert.throws(() => host.createDomain({ ...DOM, domid: 0 }), {
      message: "out of the hypervisor's private memory for a domain",
    });
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('fails at every shortfall, each time with all it took given back (its failure path)', () => {
    const messages = new Set<string>();
    for (let spare = 0; spare < perDomain; spare++) {
      const host = tinyHost(spare);
      const frames = host.hypervisor.frames.freeFrames;
      assert.throws(
        () => host.createDomain(DOM),
        (err: Error) => {
          assert.ok(err instanceof RangeError, `${spare} spare: ${err}`);
          assert.match(err.message, /the hypervisor's private memory/);
          messages.add(err.message);
          return true;
        },
      );
      assert.equal(free(host), spare, `${spare} spare pages: every one came back`);
      assert.equal(
        host.hypervisor.frames.freeFrames,
        frames,
        `${spare} spare pages: machine frames came back`,
      );
      assert.deepEqual(host.checkInvariants(), []);
    }
    // grant_table_init, domain_create's record, evtchn_init, gnttab_grow_table of the first frame.
    assert.deepEqual(
      [...messages].filter((m) => / for (a grant table|a maptrack|a domain|event channels)$/.test(m)).length,
      4,
      [...messages].join('; '),
    );
    const host = tinyHost(perDomain);
    host.createDomain(DOM);
    assert.equal(free(host), 0, 'one page fewer would not do');
  });
});

describe('gnttab_setup_table: gnttab_grow_table finds no page for the active entries', () => {
  it('GNTST_general_error, the table as it was, every page back once the domain goes', () => {
    const host = tinyHost(perDomain);
    const a = host.createDomain(DOM);
    assert.equal(free(host), 0);
    assert.equal(one(setupTable(a, 1)).status, GNTST_okay, 'no growth, no page needed');
    const r = setupTable(a, 2);
    assert.equal(r.rc, 0);
    assert.equal(one(r).status, GNTST_general_error);
    assert.equal(a.xen.gt.nrGrantFrames, 1);
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(a.domid);
    assert.equal(free(host), perDomain);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('growth that gets some of its pages and not all fails the same way, and leaks none of them', () => {
    // Four frames need 24 more pages of active entries: 10 are there.
    const host = tinyHost(perDomain + 10);
    const a = host.createDomain(DOM);
    const frames = host.hypervisor.frames.freeFrames;
    const r = setupTable(a, 4);
    assert.equal(r.rc, 0);
    assert.equal(one(r).status, GNTST_general_error);
    assert.equal(a.xen.gt.nrGrantFrames, 1);
    assert.equal(host.hypervisor.frames.freeFrames, frames, 'no grant frame was taken');
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(a.domid);
    assert.equal(free(host), perDomain + 10);
  });
});

describe('EVTCHNOP_alloc_unbound: get_free_port finds no page for a bucket (alloc_evtchn_bucket)', () => {
  it('-ENOMEM once the first bucket is full; a port freed in it is handed out again', () => {
    const host = tinyHost(perDomain);
    const a = host.createDomain(DOM);
    // evtchn_init gave the first bucket; port 0 is reserved.
    for (let port = 1; port < EVTCHNS_PER_BUCKET; port++) assert.equal(allocUnbound(a), port);
    assert.equal(allocUnbound(a), -XEN_ENOMEM);
    assert.equal(allocUnbound(a), -XEN_ENOMEM, 'nothing changed in between');
    assert.equal(a.xen.evtchn.validPorts, EVTCHNS_PER_BUCKET);
    assert.deepEqual(host.checkInvariants(), []);
    assert.equal(evtchnOp(a, EVTCHNOP_close, evtchn_close, { port: 17 }).rc, 0);
    assert.equal(allocUnbound(a), 17, 'the lowest free port, in the bucket there is');
    host.destroyDomain(a.domid);
    assert.equal(free(host), perDomain);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('map_grant_ref: get_maptrack_handle finds no page and nothing to steal', () => {
  it('GNTST_no_space, and the granter and mapper give every page back', () => {
    const host = tinyHost(2 * perDomain);
    const a = host.createDomain(DOM);
    const b = host.createDomain(DOM);
    assert.equal(free(host), 0);
    mapGrantTable(a);
    grantAccess(a, 9, b.domid, a.frameOf(0x3000));
    // b's maptrack has no slot page yet (it gets one with its first handle) and one vCPU.
    const m = one(
      gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 9, dom: a.domid },
      ]),
    );
    assert.equal(m.status, GNTST_no_space);
    assert.equal(a.xen.gt.activeEntry(9).pin, 0, 'the grant was not pinned');
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(b.domid);
    host.destroyDomain(a.domid);
    assert.equal(free(host), 2 * perDomain);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
