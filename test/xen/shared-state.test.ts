// The hypervisor's state is in shared memory (DESIGN.md "Concurrency"): a
// thread that attaches the frame table, the private pages and machine memory
// finds any domain by id in the domain table, makes its view from its record,
// and sees what the hypervisor that made it sees — grant table, active
// entries, maptrack, page list, event channels, page table — and a change
// made through one view is seen through the other. This is what lets every domain thread enter Xen itself.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVTCHNOP_alloc_unbound } from '../../src/abi/event-channel.ts';
import { GNTST_okay } from '../../src/abi/status.ts';
import { Host } from '../../src/host/host.ts';
import type { StateViewData } from '../fixtures/state-view-worker.ts';
import { grantAccess, MAP_VA, mapGrantTable, mapRef, scratch } from '../helpers/guest.ts';
import { runFixture } from '../helpers/worker.ts';

const entry = new URL('../fixtures/state-view-worker.ts', import.meta.url).href;

const view = (data: StateViewData) => runFixture<Record<string, unknown>>(data);

describe('hypervisor state seen from another thread', { timeout: 60_000 }, () => {
  it("a worker's views of two domains agree with the hypervisor's, and a change through one is seen by the other", async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    mapGrantTable(a);
    grantAccess(a, 8, b.domid, a.frameOf(0x3000));
    const m = mapRef(b, a, 8);
    assert.equal(m.status, GNTST_okay);
    // An unbound port of a's, offered to b (struct evtchn_alloc_unbound: dom, remote_dom, port).
    const op = scratch(a, 1);
    a.memory.writeU16(op, 0x7ff0);
    a.memory.writeU16(op + 2, b.domid);
    assert.equal(a.hypercall(32, EVTCHNOP_alloc_unbound, op), 0);
    const port = a.memory.readU32(op + 4);
    const hv = host.hypervisor;
    const ax = a.xen;
    const act = ax.gt.activeEntry(8);
    const got = await view({
      entry,
      machine: hv.machine.sab,
      frames: hv.frames.sab,
      pool: hv.privatePages.sab,
      table: hv.domains.headerPage,
      domids: [a.domid, b.domid],
      ref: 8,
      handle: m.handle,
      port,
      addr: 0x3000,
    });
    assert.deepEqual(got, {
      size: 2,
      ids: [a.domid, b.domid],
      domids: [a.domid, b.domid],
      kinds: ['pv', 'hvm'],
      version: 1,
      grantFrames: ax.gt.shared.toArray(),
      pin: act.pin,
      actDomid: b.domid,
      actMfn: a.frameOf(0x3000),
      mapping: { flags: b.xen.gt.maptrack.flags(m.handle), domid: a.domid, ref: 8, limit: 256 },
      totPages: 128,
      firstPages: [...ax.owned].slice(0, 3),
      count: hv.frames.count[a.frameOf(0x3000)],
      port: { state: 2, remote: b.domid },
      translated: ax.translatePage(0x3000, false),
      freeFrames: hv.frames.freeFrames,
    });
    assert.equal(act.pin, 1, 'one host mapping, writable');
    assert.equal(act.domid, 0x7ff1, "the worker's write is seen here");
    act.domid = b.domid;
    assert.equal(b.memory.readU16(MAP_VA), a.memory.readU16(0x3000));
  });
});
