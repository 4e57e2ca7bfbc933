// The hypervisor's private pages (src/xen/private-pages.ts): the memory its
// bookkeeping is carved from (Xen's alloc_xenheap_pages / xzalloc), a
// SharedArrayBuffer every hypervisor thread sees. Pages come zeroed, run out
// with -1 (Xen's -ENOMEM), and on worker threads are never handed out twice.
// A grant table's active entries live there (gnttab_grow_table allocates them
// with the frames; grant_table_destroy frees them).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GNTTABOP_setup_table } from '../../src/abi/hypercall.ts';
import { GNTST_okay } from '../../src/abi/status.ts';
import { Host } from '../../src/host/host.ts';
import { Maptrack } from '../../src/xen/maptrack.ts';
import { PAGE_WORDS, PrivatePages } from '../../src/xen/private-pages.ts';
import type { PoolWorkerData } from '../fixtures/private-pages-worker.ts';
import { runFixture } from '../helpers/worker.ts';

describe('private pages (alloc_xenheap_pages)', () => {
  it('hands out zeroed pages, lowest first, and runs out with -1', () => {
    const p = PrivatePages.create(200);
    assert.equal(p.maxPages, 200);
    assert.equal(p.freePages, 199);
    const pages: number[] = [];
    for (;;) {
      const page = p.alloc();
      if (page < 0) break;
      pages.push(page);
    }
    assert.equal(pages.length, 199);
    assert.deepEqual(pages.slice(0, 3), [1, 2, 3]);
    assert.equal(p.sab.byteLength, 200 * 4096);
    assert.equal(p.freePages, 0);
    assert.equal(p.usedPages, 199);
    p.words[pages[5]! * PAGE_WORDS + 3] = 42;
    p.free(pages[5]!);
    assert.equal(p.freePages, 1);
    const again = p.alloc();
    assert.equal(again, pages[5]);
    assert.equal(p.words[again * PAGE_WORDS + 3], 0, 'a freed page comes back zeroed');
    assert.throws(() => p.free(0), RangeError, 'the header is not a page to free');
    assert.throws(() => PrivatePages.create(1), RangeError);
  });

  it("a grant table's active entries take pages as it grows and give them back when its domain goes", () => {
    const host = new Host({ memoryMiB: 16 });
    const pool = host.hypervisor.privatePages;
    const base = pool.usedPages;
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    // The table's header page; active entries: the directory's root, one
    // directory page, and 8 pages for the first frame's 512 entries; the frame
    // lists: root, directory page and one page of records; the maptrack: its
    // header and directory root; the domain's record; event channels: the
    // buckets' root, directory and first bucket, and the same for VIRQ maps.
    const atCreation = 1 + (2 + 8) + 3 + 2 + 1 + 6;
    assert.equal(pool.usedPages - base, atCreation);
    assert.equal(d.xen.gt.nrActive, 512);
    // struct gnttab_setup_table (24 bytes): dom, nr_frames, status, frame_list.
    const op = new DataView(new ArrayBuffer(24));
    op.setUint16(0, 0x7ff0, true); // DOMID_SELF
    op.setUint32(4, 4, true);
    op.setBigUint64(16, 0x2000n, true);
    d.memory.write(0x1000, new Uint8Array(op.buffer));
    assert.equal(d.hypercall(20, GNTTABOP_setup_table, 0x1000, 1), 0);
    assert.equal(d.memory.readU16(0x1000 + 8), GNTST_okay);
    assert.equal(d.xen.gt.nrActive, 4 * 512);
    assert.equal(pool.usedPages - base, atCreation + 3 * 8);
    // A first handle gives the maptrack a page of 256 slots, and its directory a page.
    const mt = d.xen.gt.maptrack;
    assert.equal(mt.get(0), 0);
    assert.equal(mt.limit, 256);
    assert.equal(pool.usedPages - base, atCreation + 3 * 8 + 2);
    mt.put(0);
    host.destroyDomain(d.domid);
    assert.equal(pool.usedPages, base, 'every page went back');
  });
});

const entry = new URL('../fixtures/private-pages-worker.ts', import.meta.url).href;

const run = (data: PoolWorkerData) => runFixture<Record<string, number>>(data);

describe('private pages on worker threads', { timeout: 120_000 }, () => {
  it('a maptrack that finds no private page for its next frame steals a handle instead (get_maptrack_handle)', () => {
    // Header, directory root, directory page and one slot page: 4 pages, and the header of the pool.
    const mt = Maptrack.create(8, 2, () => 0, PrivatePages.create(5));
    const got: number[] = [];
    for (let i = 0; i < 255; i++) got.push(mt.get(0));
    assert.equal(mt.limit, 256);
    // vCPU 0's list is down to its sentinel and no page can be had: vCPU 1 has no list either.
    assert.equal(mt.get(0), -1);
    assert.equal(mt.limit, 256);
    mt.put(got[0]!);
    mt.put(got[1]!);
    // vCPU 0's list is 255 -> 0 -> 1. vCPU 1 steals from it: first 255 to be
    // its own list's sentinel, then handle 0.
    assert.equal(mt.get(1), got[0]);
    assert.equal(mt.freeListLength(1), 1);
    assert.equal(mt.freeListLength(0), 1);
    mt.destroy();
  });

  it('3 workers take and give back 1500 rounds of 6 pages: no page is handed out twice', async () => {
    // 3 x 6 pages in flight, 16 to hand out: some rounds run dry; the buffer grows under them.
    const pool = PrivatePages.create(17);
    const control = new SharedArrayBuffer(8);
    const results = await Promise.all(
      [0, 1, 2].map((id) => run({ entry, pool: pool.sab, control, id, rounds: 1500, batch: 6, workers: 3 })),
    );
    for (const r of results) {
      assert.equal(r.stolen, 0, 'a page one worker held was handed to another');
      assert.equal(r.dirty, 0, 'a page was not handed out zeroed');
      assert.equal(r.got! + r.exhausted!, 1500 * 6);
    }
    assert.ok(results.reduce((n, r) => n + r.got!, 0) >= 3 * 1500);
    assert.equal(pool.freePages, 16, 'every page went back');
    assert.equal(new Int32Array(control)[0], 0);
  });
});
