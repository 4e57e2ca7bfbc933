// Read-only introspection in both modes (issue 8): page_info of a frame, the
// free frame count, a domain's translation, PTE and its L1 slot, P2M entries,
// why Xen crashed a domain and the faults it injected. The same scenario runs
// against a single-thread Host and, on real workers, a WorkerHost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GuestCrash, WorkerHost } from '../../src/host/worker-host.ts';
import {
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  GNTMAP_host_map,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  gnttab_map_grant_ref,
  Host,
} from '../../src/index.ts';
import { type IntrospectArgs, MAP_VA, PAGE_VA } from '../fixtures/introspect-guest.ts';
import { gnttabOp, grantAccess, mapGrantTable, mapRef } from '../helpers/guest.ts';

const guest = new URL('../fixtures/introspect-guest.ts', import.meta.url);
const PAGE = 4096;
const PAGE_GNTTAB = 1n << 62n;

describe('introspection, single-thread Host', () => {
  it('pageInfo: owner, count, typeCount and flags of RAM, Xen-heap, Xen and free frames (struct page_info)', () => {
    const host = new Host({ memoryMiB: 16 });
    const free0 = host.freeFrames;
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    assert.ok(
      host.freeFrames <= free0 - 64,
      'creating a 256 KiB domain takes its 64 frames off the free list',
    );
    const ram = a.machineFrameOf(PAGE_VA)!;
    // The allocation reference, plus the PV domain's own writable mapping of it (a PGT_writable_page ref).
    assert.deepEqual(host.pageInfo(ram), { owner: a.domid, count: 2, typeCount: 1, flags: ['allocated'] });
    mapGrantTable(a);
    const table = a.machineFrameOf(0xc000_0000)!;
    const t = host.pageInfo(table);
    assert.equal(t.owner, a.domid);
    assert.ok(t.flags.includes('xen_heap'), `grant frame flags ${t.flags.join(',')}`);
    assert.equal(host.pageInfo(0).owner, 'xen');
    // The machine's last frame is the last one the allocator hands out: still free here.
    const last = host.hypervisor.frames.nrFrames - 1;
    assert.deepEqual(host.pageInfo(last), { owner: null, count: 0, typeCount: 0, flags: [] });
    assert.throws(() => host.pageInfo(-1), RangeError);
    assert.throws(() => host.pageInfo(last + 1), RangeError);
  });

  it('PV: a writable grant map shows in the PTE, its L1 slot, the frame counts (get_page_and_type); a debug build marks _PAGE_GNTTAB and injects #GP on an implicit unmap', () => {
    const host = new Host({ memoryMiB: 16, gnttab: { debugBuild: true } });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    mapGrantTable(a);
    const mfn = a.machineFrameOf(PAGE_VA)!;
    assert.equal(mfn, a.frameOf(PAGE_VA));
    grantAccess(a, 8, b.domid, mfn);
    assert.equal(b.pte(MAP_VA), 0n);
    assert.equal(b.machineFrameOf(MAP_VA), null);
    assert.equal(mapRef(b, a, 8).status, GNTST_okay);
    const pte = b.pte(MAP_VA);
    assert.equal((pte >> 12n) & 0xfffffn, BigInt(mfn));
    assert.equal(Number(pte & 0xfffn) & (_PAGE_PRESENT | _PAGE_RW), _PAGE_PRESENT | _PAGE_RW);
    assert.equal(pte & PAGE_GNTTAB, PAGE_GNTTAB);
    assert.equal(b.machineFrameOf(MAP_VA), mfn);
    const slot = b.l1EntryAddress(MAP_VA)!;
    assert.equal(slot % 4, 0);
    const raw = host.hypervisor.machine.u32[slot / 4]!;
    assert.equal(raw >>> 12, mfn, 'the L1 slot holds the mapped frame');
    // Allocation, the granter's own mapping, and the grantee's (both writable).
    assert.deepEqual(host.pageInfo(mfn), { owner: a.domid, count: 3, typeCount: 2, flags: ['allocated'] });
    assert.equal(b.injectedFaults.length, 0);
    assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, 0, 0), 0);
    assert.equal(b.pte(MAP_VA), 0n);
    assert.equal(b.l1EntryAddress(MAP_VA), slot, 'the L1 table stays');
    assert.equal(b.injectedFaults.length, 1);
    assert.equal(b.injectedFaults[0]!.vector, 13);
    assert.match(b.injectedFaults[0]!.reason, /implicitly unmap/);
    assert.equal(b.crashReason, null);
    assert.equal(b.l1EntryAddress(0x8000_0000), null, 'no L1 table covers untouched space');
    assert.throws(() => b.p2mEntry(0), TypeError);
    assert.throws(() => b.pte(2 ** 32), RangeError);
  });

  it('HVM: p2mEntry names the p2m type; a grant map over a grant GFN crashes the domain and crashReason says why (p2m_add_page)', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const h = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    mapGrantTable(a);
    grantAccess(a, 8, h.domid, a.frameOf(PAGE_VA));
    grantAccess(a, 9, h.domid, a.frameOf(PAGE_VA + PAGE));
    const ram = h.p2mEntry(0)!;
    assert.equal(ram.type, 'p2m_ram_rw');
    assert.equal(ram.mfn, h.machineFrameOf(0));
    assert.equal(h.p2mEntry(MAP_VA / PAGE), null);
    assert.equal(mapRef(h, a, 8).status, GNTST_okay);
    assert.deepEqual(h.p2mEntry(MAP_VA / PAGE), { mfn: a.frameOf(PAGE_VA), type: 'p2m_grant_map_rw' });
    h.pageOut(PAGE);
    assert.equal(h.p2mEntry(1)!.type, 'p2m_ram_paged');
    assert.equal(h.machineFrameOf(PAGE), null);
    h.pageIn(PAGE);
    assert.throws(() => h.pte(0), TypeError);
    assert.throws(() => h.l1EntryAddress(0), TypeError);
    const second = gnttabOp(h, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 9, dom: a.domid },
    ]);
    assert.equal(second.rc, 0);
    assert.equal(h.alive, false);
    assert.match(h.crashReason ?? '', /grant mapping/);
    assert.deepEqual(h.injectedFaults, []);
    assert.throws(() => h.p2mEntry(0), /destroyed/);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('introspection, WorkerHost (async, answered by the hypervisor thread)', () => {
  /** Waits (without assuming any timing) until the guest has reached step `n`. */
  async function reached(w: Int32Array, n: number): Promise<void> {
    while (Atomics.load(w, 0) < n) await new Promise((r) => setTimeout(r, 2));
  }
  function resume(w: Int32Array, n: number): void {
    Atomics.store(w, 0, n);
    Atomics.notify(w, 0);
  }

  it('pageInfo, freeFrames, pte, l1EntryAddress, machineFrameOf, p2mEntry, injectedFaults and crashReason from workers', async () => {
    await using wh = await WorkerHost.start({ memoryMiB: 16, gnttab: { debugBuild: true } });
    const free0 = await wh.freeFrames;
    const a = await wh.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = await wh.createDomain({ kind: 'pv', memoryKiB: 256 });
    const h = await wh.createDomain({ kind: 'hvm', memoryKiB: 256 });
    assert.ok((await wh.freeFrames) <= free0 - 3 * 64);
    assert.equal(await wh.freeFrames, (await wh.stats()).freeFrames);
    const granted = await wh.spawn<{ tableMfn: number; mfns: number[] }>(a, guest, {
      job: 'grant',
      grantees: [b.domid, h.domid, h.domid],
    } satisfies IntrospectArgs);
    const [mfnB, mfnH] = granted.mfns as [number, number, number];
    assert.equal(await a.machineFrameOf(PAGE_VA), mfnB);
    assert.deepEqual(await wh.pageInfo(mfnB), {
      owner: a.domid,
      count: 2,
      typeCount: 1,
      flags: ['allocated'],
    });
    const table = await wh.pageInfo(granted.tableMfn);
    assert.equal(table.owner, a.domid);
    assert.ok(table.flags.includes('xen_heap'));
    assert.equal((await wh.pageInfo(0)).owner, 'xen');
    await assert.rejects(wh.pageInfo(-1), RangeError);
    await assert.rejects(b.p2mEntry(0), TypeError);
    await assert.rejects(h.pte(0), TypeError);

    // PV grantee: the mapping, then the implicit unmap and its #GP.
    const sab = new SharedArrayBuffer(4);
    const w = new Int32Array(sab);
    const pv = wh.spawn<number>(b, guest, {
      job: 'pv-map',
      granter: a.domid,
      refs: [8],
      sab,
    } satisfies IntrospectArgs);
    await reached(w, 1);
    const pte = await b.pte(MAP_VA);
    assert.equal((pte >> 12n) & 0xfffffn, BigInt(mfnB));
    assert.equal(pte & PAGE_GNTTAB, PAGE_GNTTAB);
    assert.equal(await b.machineFrameOf(MAP_VA), mfnB);
    const slot = (await b.l1EntryAddress(MAP_VA))!;
    assert.equal(new Uint32Array(wh.machineSab)[slot / 4]! >>> 12, mfnB);
    assert.deepEqual(await wh.pageInfo(mfnB), {
      owner: a.domid,
      count: 3,
      typeCount: 2,
      flags: ['allocated'],
    });
    assert.equal((await b.injectedFaults).length, 0);
    resume(w, 2);
    await reached(w, 3);
    assert.equal(await b.pte(MAP_VA), 0n);
    const faults = await b.injectedFaults;
    assert.equal(faults.length, 1);
    assert.equal(faults[0]!.vector, 13);
    assert.match(faults[0]!.reason, /implicitly unmap/);
    assert.equal(await b.crashReason, null);
    resume(w, 4);
    assert.equal(typeof (await pv), 'number');

    // HVM grantee: the P2M entry of a grant, then the crash.
    Atomics.store(w, 0, 0);
    const hvm = wh.spawn(h, guest, {
      job: 'hvm-map',
      granter: a.domid,
      refs: [9, 10],
      sab,
    } satisfies IntrospectArgs);
    await reached(w, 1);
    assert.deepEqual(await h.p2mEntry(MAP_VA / PAGE), { mfn: mfnH, type: 'p2m_grant_map_rw' });
    const ram = (await h.p2mEntry(0))!;
    assert.equal(ram.type, 'p2m_ram_rw');
    assert.equal(ram.mfn, await h.machineFrameOf(0));
    assert.equal(await h.crashReason, null);
    resume(w, 2);
    await assert.rejects(hvm, (e: unknown) => e instanceof GuestCrash && e.domid === h.domid);
    assert.match((await h.crashReason) ?? '', /grant mapping/);
    assert.deepEqual(await h.injectedFaults, []);
    await assert.rejects(h.p2mEntry(0), /destroyed/);
    assert.deepEqual(await wh.checkInvariants(), []);
  });
});
