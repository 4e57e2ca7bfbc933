// Backend helpers of the guest driver (guest-side.md §2.9, §2.10, §5.2, §5.3):
// batched maps and copies with the GNTST_eagain retry, per-element statuses
// and undoing exactly what mapped (XSA-361/362), and gntdev/libxengnttab-style
// mapping with the unmap notification (§5.5).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XEN_PAGE_SIZE as PAGE_SIZE } from '../../src/abi/limits.ts';
import type { GuestContext } from '../../src/guest/context.ts';
import {
  type CopyOp,
  GNTST_NOT_DONE,
  gnttabBatchCopy,
  gnttabBatchMap,
  gnttabMapRefs,
  gnttabSetMapOp,
  gnttabSetUnmapOp,
  gnttabUnmapRefs,
  mapForeignRefs,
  unmapForeignRefs,
} from '../../src/guest/gnttab/backend.ts';
import { EINVAL, ENOENT } from '../../src/guest/gnttab/errno.ts';
import { Gntdev } from '../../src/guest/gnttab/gntdev.ts';
import { UNMAP_NOTIFY_CLEAR_BYTE, UNMAP_NOTIFY_SEND_EVENT } from '../../src/guest/gnttab/unmap-notify.ts';
import { Xengnttab } from '../../src/guest/gnttab/xengnttab.ts';
import { FOREIGN_MAP_VA, GNTTAB_SHARED_VA, GNTTAB_STATUS_VA } from '../../src/guest/layout.ts';
import { PageAllocator } from '../../src/guest/pages.ts';
import { XenError } from '../../src/guest/xen-error.ts';
import {
  __HYPERVISOR_grant_table_op,
  DOMID_SELF,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_page,
  GNTST_general_error,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  GTF_reading,
  GTF_writing,
} from '../../src/index.ts';
import { dec, drive, enc, type Kind, pin, type World, world } from './gnttab-world.ts';

const KINDS: Kind[] = ['pv', 'hvm'];
const RW = GTF_reading | GTF_writing;

/** A backend context that counts map_grant_ref hypercalls and the elements in each. */
function counting(ctx: GuestContext, calls: number[]): GuestContext {
  return {
    ...ctx,
    hypercall: (nr, ...args) => {
      if (nr === __HYPERVISOR_grant_table_op && args[0] === GNTTABOP_map_grant_ref)
        calls.push(Number(args[2]));
      return ctx.hypercall(nr, ...args);
    },
  };
}

interface Grants {
  pages: number[];
  refs: number[];
}

/** The driver's domain grants `n` pages to the backend, each starting with a text naming it. */
function grantPages(w: World, n: number, readonly = false): Grants {
  const pages: number[] = [];
  const refs: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = w.gt.pages.alloc();
    w.ctx.mem.write(p, enc(`page ${String(i).padStart(3, '0')}`));
    pages.push(p);
    refs.push(w.gt.grantForeignAccess(w.back.domid, w.gt.pages.gfnOf(p), readonly));
  }
  return { pages, refs };
}

function granterStatus(w: World, ref: number): number {
  const a = w.gt.version === 1 ? GNTTAB_SHARED_VA + ref * 8 : GNTTAB_STATUS_VA + ref * 2;
  return w.ctx.mem.readU16(a) & RW;
}

describe('gnttab_set_map_op / gnttab_set_unmap_op (§2.9)', () => {
  it('fill the structs as Linux does: map status 1 (not yet done), unmap dev_bus_addr 0', () => {
    assert.deepEqual(gnttabSetMapOp(0xe000_1000, GNTMAP_host_map | GNTMAP_readonly, 42, 3), {
      host_addr: 0xe000_1000,
      flags: GNTMAP_host_map | GNTMAP_readonly,
      ref: 42,
      dom: 3,
      status: GNTST_NOT_DONE,
      handle: 0,
      dev_bus_addr: 0,
    });
    assert.equal(GNTST_NOT_DONE, 1);
    assert.deepEqual(gnttabSetUnmapOp(0xe000_1000, GNTMAP_host_map, 7), {
      host_addr: 0xe000_1000,
      dev_bus_addr: 0,
      handle: 7,
      status: GNTST_NOT_DONE,
    });
  });
});

describe('batched maps (§2.9 gnttab_batch_map, gnttab_map_refs)', () => {
  for (const kind of KINDS) {
    for (const backKind of KINDS) {
      it(`${kind} granter, ${backKind} backend: a batch maps, the pages read through; unmap_refs undoes it`, async () => {
        const w = world({ kind, version: kind === 'pv' ? 2 : 1, backKind });
        const g = grantPages(w, 3);
        const bctx = w.host.context(w.back.domid);
        const bpages = new PageAllocator(bctx);
        const base = bpages.allocUnpopulated(3);
        assert.equal(base, FOREIGN_MAP_VA);
        const ops = g.refs.map((ref, i) =>
          gnttabSetMapOp(base + i * PAGE_SIZE, GNTMAP_host_map, ref, w.dom.domid),
        );
        assert.equal(await gnttabMapRefs(bctx, ops, bpages), 0);
        assert.deepEqual(
          ops.map((o) => o.status),
          [0, 0, 0],
        );
        for (let i = 0; i < 3; i++) {
          assert.equal(dec(bctx.mem.read(base + i * PAGE_SIZE, 8)), `page 00${i}`);
          assert.deepEqual(bpages.foreign(base + i * PAGE_SIZE), { domid: w.dom.domid, gref: g.refs[i] });
          assert.equal(granterStatus(w, g.refs[i]!), RW);
        }
        const un = ops.map((o) => gnttabSetUnmapOp(o.host_addr, GNTMAP_host_map, o.handle));
        assert.equal(gnttabUnmapRefs(bctx, un, bpages), 0);
        assert.deepEqual(
          un.map((u) => u.status),
          [0, 0, 0],
        );
        for (let i = 0; i < 3; i++) {
          assert.equal(bpages.foreign(base + i * PAGE_SIZE), undefined);
          assert.equal(pin(w.dom, g.refs[i]!), 0);
          w.gt.endForeignAccess(g.refs[i]!, g.pages[i]!);
        }
        assert.equal(w.gt.deferredCount, 0);
        assert.deepEqual(w.host.checkInvariants(), []);
      });
    }
  }

  it('batches larger than the argument area go in chunks (600 maps: 512 + 88)', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'pv' });
    const g = grantPages(w, 10, true);
    // 600 read-only grants of those 10 pages.
    const refs: number[] = [];
    for (let i = 0; i < 600; i++)
      refs.push(w.gt.grantForeignAccess(w.back.domid, w.gt.pages.gfnOf(g.pages[i % 10]!), true));
    const calls: number[] = [];
    const bctx = counting(w.host.context(w.back.domid), calls);
    const bpages = new PageAllocator(bctx);
    const base = bpages.allocUnpopulated(600);
    const ops = refs.map((ref, i) =>
      gnttabSetMapOp(base + i * PAGE_SIZE, GNTMAP_host_map | GNTMAP_readonly, ref, w.dom.domid),
    );
    assert.equal(await gnttabBatchMap(bctx, ops), 0);
    assert.deepEqual(calls, [512, 88]);
    assert.ok(ops.every((o) => o.status === GNTST_okay));
    assert.equal(dec(bctx.mem.read(base + 599 * PAGE_SIZE, 8)), 'page 009');
    const un = ops.map((o) => gnttabSetUnmapOp(o.host_addr, o.flags, o.handle));
    assert.equal(gnttabUnmapRefs(bctx, un, bpages), 0);
    assert.ok(un.every((u) => u.status === GNTST_okay));
    for (const r of [...refs, ...g.refs]) assert.equal(w.gt.tryEndForeignAccess(r), true);
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('GNTST_eagain: each element retried alone with sleeps 1, 2, ..., 255 ms (§2.9)', () => {
  it('a paged-out page paged in at t=10 ms: retried at t=0, 1, 3, 6, 10, then mapped', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'pv' });
    const g = grantPages(w, 2);
    w.dom.pageOut(g.pages[1]!);
    w.host.clock.setTimer(10, () => w.dom.pageIn(g.pages[1]!));
    const calls: number[] = [];
    const times: number[] = [];
    const raw = w.host.context(w.back.domid);
    const bctx = counting(raw, calls);
    const timed: GuestContext = {
      ...bctx,
      hypercall: (nr, ...args) => {
        times.push(w.host.clock.now());
        return bctx.hypercall(nr, ...args);
      },
    };
    const bpages = new PageAllocator(raw);
    const base = bpages.allocUnpopulated(2);
    const ops = g.refs.map((ref, i) =>
      gnttabSetMapOp(base + i * PAGE_SIZE, GNTMAP_host_map, ref, w.dom.domid),
    );
    assert.equal(await drive(w.host, gnttabMapRefs(timed, ops, bpages)), 0);
    assert.deepEqual(calls, [2, 1, 1, 1, 1, 1]);
    assert.deepEqual(times, [0, 0, 1, 3, 6, 10]);
    assert.equal(w.host.clock.now(), 10);
    assert.deepEqual(
      ops.map((o) => o.status),
      [GNTST_okay, GNTST_okay],
    );
    // Looked at again after the retry: marked foreign like the others.
    assert.deepEqual(bpages.foreign(base + PAGE_SIZE), { domid: w.dom.domid, gref: g.refs[1] });
    assert.equal(dec(raw.mem.read(base + PAGE_SIZE, 8)), 'page 001');
    const un = ops.map((o) => gnttabSetUnmapOp(o.host_addr, GNTMAP_host_map, o.handle));
    assert.equal(gnttabUnmapRefs(raw, un, bpages), 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('never paged in: 255 retries, about 32 s asleep, then GNTST_bad_page', async () => {
    const w = world({ kind: 'hvm', version: 2, backKind: 'hvm' });
    const g = grantPages(w, 1);
    w.dom.pageOut(g.pages[0]!);
    const calls: number[] = [];
    const bctx = counting(w.host.context(w.back.domid), calls);
    const bpages = new PageAllocator(bctx);
    const op = gnttabSetMapOp(bpages.allocUnpopulated(1), GNTMAP_host_map, g.refs[0]!, w.dom.domid);
    assert.equal(await drive(w.host, gnttabBatchMap(bctx, [op])), 0);
    assert.equal(op.status, GNTST_bad_page);
    assert.equal(calls.length, 1 + 255);
    assert.equal(w.host.clock.now(), (255 * 256) / 2);
    assert.ok(w.host.console(w.back.domid).includes('gnttab_batch_map: eagain grant'));
    assert.equal(pin(w.dom, g.refs[0]!), 0);
    w.dom.pageIn(g.pages[0]!);
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('batch copy: the eagain element is retried until its page is back; the bytes arrive', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'hvm' });
    const g = grantPages(w, 2, true);
    w.dom.pageOut(g.pages[0]!);
    w.host.clock.setTimer(3, () => w.dom.pageIn(g.pages[0]!));
    const bctx = w.host.context(w.back.domid);
    const dst = 0x9000;
    const ops: CopyOp[] = g.refs.map((ref, i) => ({
      source_u: ref,
      source_domid: w.dom.domid,
      source_offset: 0,
      dest_u: w.back.frameOf(dst),
      dest_domid: DOMID_SELF,
      dest_offset: i * 16,
      len: 8,
      flags: GNTCOPY_source_gref,
      status: GNTST_NOT_DONE,
    }));
    assert.equal(await drive(w.host, gnttabBatchCopy(bctx, ops)), 0);
    assert.deepEqual(
      ops.map((o) => o.status),
      [GNTST_okay, GNTST_okay],
    );
    assert.equal(w.host.clock.now(), 3);
    assert.equal(dec(bctx.mem.read(dst, 8)), 'page 000');
    assert.equal(dec(bctx.mem.read(dst + 16, 8)), 'page 001');
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('partial failures: only what mapped is undone (XSA-361, XSA-362)', () => {
  for (const kind of KINDS) {
    it(`${kind} backend: [good, not granted (general_error, §6.1), good] fails as a whole, the two good maps are unmapped`, async () => {
      const w = world({ kind: 'pv', version: 1, backKind: kind });
      const g = grantPages(w, 2);
      const bctx = w.host.context(w.back.domid);
      const bpages = new PageAllocator(bctx);
      const before = bpages.unpopulatedFree;
      const refs = [g.refs[0]!, 300, g.refs[1]!];
      const r = await mapForeignRefs(bctx, bpages, w.dom.domid, refs);
      assert.equal(r.rc, -ENOENT);
      assert.equal(r.mapping, null);
      assert.deepEqual(r.status, [GNTST_okay, GNTST_general_error, GNTST_okay]);
      assert.equal(r.leaked, false);
      for (const ref of g.refs) {
        assert.equal(pin(w.dom, ref), 0);
        assert.equal(granterStatus(w, ref), 0);
      }
      assert.equal(bpages.unpopulatedFree, before);
      assert.equal(bpages.foreign(FOREIGN_MAP_VA), undefined);
      assert.equal(bctx.mem.mapped(FOREIGN_MAP_VA), false);
      assert.equal(bctx.mem.mapped(FOREIGN_MAP_VA + 2 * PAGE_SIZE), false);
      // Now a good one: mapped, read, unmapped, range reused.
      const ok = await mapForeignRefs(bctx, bpages, w.dom.domid, g.refs, true);
      assert.equal(ok.rc, 0);
      assert.ok(ok.mapping !== null);
      assert.equal(ok.mapping.addr, FOREIGN_MAP_VA);
      assert.equal(dec(bctx.mem.read(ok.mapping.addr + PAGE_SIZE, 8)), 'page 001');
      assert.equal(granterStatus(w, g.refs[0]!), GTF_reading);
      assert.deepEqual(unmapForeignRefs(bctx, bpages, ok.mapping), { rc: 0, status: [0, 0] });
      assert.equal(bpages.unpopulatedFree, before);
      g.refs.forEach((ref, i) => {
        w.gt.endForeignAccess(ref, g.pages[i]!);
      });
      assert.equal(w.gt.deferredCount, 0);
      assert.deepEqual(w.host.checkInvariants(), []);
    });
  }

  it('an element that stays paged out becomes bad_page; the others are undone', async () => {
    const w = world({ kind: 'hvm', version: 2, backKind: 'pv' });
    const g = grantPages(w, 3);
    w.dom.pageOut(g.pages[1]!);
    const bctx = w.host.context(w.back.domid);
    const bpages = new PageAllocator(bctx);
    const r = await drive(w.host, mapForeignRefs(bctx, bpages, w.dom.domid, g.refs));
    assert.equal(r.rc, -ENOENT);
    assert.deepEqual(r.status, [GNTST_okay, GNTST_bad_page, GNTST_okay]);
    for (const ref of g.refs) assert.equal(pin(w.dom, ref), 0);
    w.dom.pageIn(g.pages[1]!);
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('the granter ends access while the backend holds a mapping: deferred until unmap (XSA-396)', async () => {
    const w = world({ kind: 'pv', version: 2, backKind: 'hvm' });
    const g = grantPages(w, 1);
    const bctx = w.host.context(w.back.domid);
    const bpages = new PageAllocator(bctx);
    const m = await mapForeignRefs(bctx, bpages, w.dom.domid, g.refs);
    assert.ok(m.mapping !== null);
    w.gt.endForeignAccess(g.refs[0]!, g.pages[0]!);
    assert.equal(w.gt.deferredCount, 1);
    // v2 cleared the flags at once, but while the entry is pinned a second map needing no more
    // permission does not look at the entry again (quirk §15.8): it succeeds.
    const second = await mapForeignRefs(bctx, bpages, w.dom.domid, g.refs);
    assert.equal(second.rc, 0);
    assert.ok(second.mapping !== null);
    assert.equal(dec(bctx.mem.read(m.mapping.addr, 8)), 'page 000');
    w.host.clock.advance(1000);
    assert.equal(w.gt.pages.count(g.pages[0]!), 1);
    assert.equal(unmapForeignRefs(bctx, bpages, m.mapping).rc, 0);
    w.host.clock.advance(1000);
    assert.equal(w.gt.deferredCount, 1, 'one mapping left');
    assert.equal(unmapForeignRefs(bctx, bpages, second.mapping).rc, 0);
    // Once unpinned, the cleared entry refuses new maps.
    assert.equal((await mapForeignRefs(bctx, bpages, w.dom.domid, g.refs)).rc, -ENOENT);
    w.host.clock.advance(1000);
    assert.equal(w.gt.deferredCount, 0);
    assert.equal(w.gt.pages.count(g.pages[0]!), 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('gntdev and libxengnttab (§5.2, §5.3, §5.5)', () => {
  for (const kind of KINDS) {
    it(`${kind} backend: map domain grant refs, read and write through, unmap`, async () => {
      const w = world({ kind: 'hvm', version: 1, backKind: kind });
      const g = grantPages(w, 2);
      const bctx = w.host.context(w.back.domid);
      const dev = new Gntdev(bctx, new PageAllocator(bctx));
      const xg = new Xengnttab(dev);
      const { addr } = await xg.mapDomainGrantRefs(w.dom.domid, g.refs, true);
      assert.equal(dec(bctx.mem.read(addr + PAGE_SIZE, 8)), 'page 001');
      bctx.mem.write(addr + 100, enc('hi'));
      assert.equal(dec(w.ctx.mem.read(g.pages[0]! + 100, 2)), 'hi');
      assert.throws(
        () => xg.unmap(addr, 1),
        (e: unknown) => e instanceof XenError && e.errno === EINVAL && e.op === 'xengnttab_unmap',
        'the count must match',
      );
      xg.unmap(addr, 2);
      for (const ref of g.refs) assert.equal(pin(w.dom, ref), 0);
      assert.equal(bctx.mem.mapped(addr), false);
      xg.close();
      assert.deepEqual(w.host.checkInvariants(), []);
    });
  }

  it('all or nothing: one bad ref and nothing stays mapped or registered', async () => {
    const w = world({ kind: 'pv', version: 1, backKind: 'hvm' });
    const g = grantPages(w, 2);
    const bctx = w.host.context(w.back.domid);
    const pages = new PageAllocator(bctx);
    const free = pages.unpopulatedFree;
    const dev = new Gntdev(bctx, pages);
    const f = dev.open();
    const index = f.mapGrantRef([
      { domid: w.dom.domid, ref: g.refs[0]! },
      { domid: w.dom.domid, ref: 500 },
      { domid: w.dom.domid, ref: g.refs[1]! },
    ]);
    assert.equal(index, 0);
    const mm = await f.mmap(index, 3, true);
    assert.equal(mm.rc, -EINVAL);
    assert.deepEqual(mm.status, [GNTST_okay, GNTST_general_error, GNTST_okay]);
    for (const ref of g.refs) assert.equal(pin(w.dom, ref), 0);
    assert.equal(pages.unpopulatedFree, free);
    assert.equal(f.unmapGrantRef(index, 3), 0);
    assert.equal(f.unmapGrantRef(index, 3), -ENOENT);
    const xg = new Xengnttab(dev);
    await assert.rejects(
      xg.mapDomainGrantRefs(w.dom.domid, [g.refs[0]!, 500], false),
      (e: unknown) =>
        e instanceof XenError &&
        e.code === 'EINVAL' &&
        /ref 500: GNTST_general_error/.test(e.message) &&
        e.status?.[1] === GNTST_general_error,
    );
    assert.equal(pin(w.dom, g.refs[0]!), 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('device rules: first-fit offsets (strict gap), count limits, mmap once, notify on read-only maps', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'pv' });
    const g = grantPages(w, 4, true);
    const bctx = w.host.context(w.back.domid);
    const dev = new Gntdev(bctx, new PageAllocator(bctx), { limit: 3 });
    const f = dev.open();
    const gr = (i: number) => ({ domid: w.dom.domid, ref: g.refs[i]! });
    assert.equal(f.mapGrantRef([]), -EINVAL);
    assert.equal(f.mapGrantRef([gr(0), gr(1), gr(2), gr(3)]), -EINVAL, 'above the limit');
    assert.equal(f.mapGrantRef([gr(0)]), 0);
    assert.equal(f.mapGrantRef([gr(1), gr(2)]), PAGE_SIZE);
    assert.equal(f.mapGrantRef([gr(3)]), 3 * PAGE_SIZE);
    assert.equal(f.unmapGrantRef(PAGE_SIZE, 2), 0);
    // A gap of exactly 2 pages at index 1 is skipped for 2 (strict <), used for 1.
    assert.equal(f.mapGrantRef([gr(1), gr(2)]), 4 * PAGE_SIZE);
    assert.equal(f.mapGrantRef([gr(1)]), PAGE_SIZE);
    const mm = await f.mmap(0, 1, false);
    assert.equal(mm.rc, 0);
    assert.equal((await f.mmap(0, 1, false)).rc, -EINVAL, 'mmap once');
    assert.equal(f.setUnmapNotify(10, UNMAP_NOTIFY_CLEAR_BYTE, 0), -EINVAL, 'read-only map');
    assert.equal(f.setUnmapNotify(10, UNMAP_NOTIFY_SEND_EVENT, 5), -EINVAL, 'no event channel');
    assert.equal(f.setUnmapNotify(20 * PAGE_SIZE, UNMAP_NOTIFY_CLEAR_BYTE, 0), -ENOENT);
    assert.deepEqual(f.getOffsetForVaddr(mm.addr + 5), { rc: 0, offset: 0, count: 1 });
    assert.equal(f.getOffsetForVaddr(mm.addr + PAGE_SIZE).rc, -EINVAL);
    assert.equal(pin(w.dom, g.refs[0]!) !== 0, true);
    f.close();
    for (const ref of g.refs) assert.equal(pin(w.dom, ref), 0);
    assert.equal(bctx.mem.mapped(mm.addr), false);
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('unmap notification: the byte is cleared through the mapping before unmap, the port signalled after', async () => {
    const w = world({ kind: 'pv', version: 2, backKind: 'hvm' });
    const g = grantPages(w, 1);
    const bctx = w.host.context(w.back.domid);
    const events: string[] = [];
    const dev = new Gntdev(bctx, new PageAllocator(bctx), {
      notify: (port) => events.push(`port ${port}, pin ${pin(w.dom, g.refs[0]!)}`),
    });
    const xg = new Xengnttab(dev);
    w.ctx.mem.writeU8(g.pages[0]! + 20, 1);
    const { addr } = await xg.mapGrantRefNotify(w.dom.domid, g.refs[0]!, true, 20, 9);
    assert.equal(bctx.mem.readU8(addr + 20), 1);
    xg.unmap(addr, 1);
    assert.equal(w.ctx.mem.readU8(g.pages[0]! + 20), 0, 'the granter sees the live byte cleared');
    assert.deepEqual(events, ['port 9, pin 0'], 'signalled once, after the unmap');
    // Closing a handle with a live mapping tears it down the same way.
    w.ctx.mem.writeU8(g.pages[0]! + 20, 1);
    const again = await xg.mapGrantRefNotify(w.dom.domid, g.refs[0]!, true, 20, 4);
    xg.close();
    assert.equal(again.mapped, false);
    assert.equal(w.ctx.mem.readU8(g.pages[0]! + 20), 0);
    assert.deepEqual(events, ['port 9, pin 0', 'port 4, pin 0']);
    w.gt.endForeignAccess(g.refs[0]!, g.pages[0]!);
    assert.equal(w.gt.deferredCount, 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});
