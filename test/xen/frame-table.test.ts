// The frame table in shared memory (src/xen/frame-table.ts): Xen's frame_table
// of struct page_info and the heap's free list. Reference counts follow
// get_page/put_page (xen/arch/x86/mm.c: page_get_owner_and_reference takes a
// reference only while count_info's count is non-zero), steal_page's cmpxchg
// and alloc_heap_pages/free_heap_pages under heap_lock; on real worker threads,
// two threads allocating and freeing at once never get the same frame.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FrameTable,
  frameTableBytes,
  NO_REFERENCE,
  OWNER_NONE,
  OWNER_XEN,
  PGC_allocated,
} from '../../src/xen/frame-table.ts';
import { PageList, pageListTag } from '../../src/xen/page-list.ts';
import type { FrameWorkerData } from '../fixtures/frame-table-worker.ts';
import { runFixture } from '../helpers/worker.ts';

describe('frame table (frame_table, heap_lock)', () => {
  it('reserves the low frames for Xen and hands out the rest lowest first', () => {
    const t = FrameTable.create(32, 16);
    assert.equal(t.sab.byteLength, frameTableBytes(32));
    assert.equal(t.freeFrames, 16);
    assert.equal(t.owner[0], OWNER_XEN);
    assert.equal(t.count[15], 1);
    const a = t.alloc(3, PGC_allocated);
    const b = t.alloc(4, 0, 1);
    assert.deepEqual([a, b], [16, 17]);
    assert.deepEqual([t.owner[a], t.count[a], t.flags[a], t.typeCount[a]], [3, 1, PGC_allocated, 0]);
    assert.deepEqual([t.owner[b], t.count[b], t.flags[b], t.typeCount[b]], [4, 1, 0, 1]);
    assert.equal(t.freeFrames, 14);
    t.release(a);
    assert.deepEqual([t.owner[a], t.count[a], t.flags[a]], [OWNER_NONE, 0, 0]);
    assert.equal(t.freeFrames, 15);
    // LIFO: the frame freed last is handed out next.
    assert.equal(t.alloc(5), a);
  });

  it('runs dry with -1 and no change', () => {
    const t = FrameTable.create(18, 16);
    assert.equal(t.alloc(1), 16);
    assert.equal(t.alloc(1), 17);
    assert.equal(t.alloc(1), -1);
    assert.equal(t.freeFrames, 0);
  });

  it('page_get_owner_and_reference: no reference on a free frame; the owner of an allocated one', () => {
    const t = FrameTable.create(20, 16);
    assert.equal(t.getOwnerAndReference(18), NO_REFERENCE);
    assert.equal(t.count[18], 0, 'a free frame is not revived');
    const m = t.alloc(7);
    assert.equal(t.getOwnerAndReference(m), 7);
    assert.equal(t.count[m], 2);
    assert.equal(t.putRef(m), 1);
    assert.equal(t.getType(m), 1);
    assert.equal(t.putType(m), 0);
  });

  it('test_and_clear_bit of PGC_allocated succeeds once', () => {
    const t = FrameTable.create(20, 16);
    const m = t.alloc(7, PGC_allocated);
    assert.equal(t.testAndClear(m, PGC_allocated), true);
    assert.equal(t.testAndClear(m, PGC_allocated), false);
    assert.equal(t.flags[m], 0);
  });

  it("steal_page's cmpxchg commits only at exactly two references; assign_pages gives the frame away", () => {
    const t = FrameTable.create(20, 16);
    const m = t.alloc(7, PGC_allocated);
    assert.equal(t.stealCommit(m), false, 'one reference: nothing to steal with');
    t.addRef(m);
    t.addRef(m);
    assert.equal(t.stealCommit(m), false, 'three references');
    t.putRef(m);
    assert.equal(t.stealCommit(m), true);
    // steal_page: both references go in the one cmpxchg (count 0, PGC_allocated clear) ...
    assert.deepEqual([t.owner[m], t.count[m], t.flags[m]], [7, 0, 0]);
    assert.equal(t.getOwnerAndReference(m), NO_REFERENCE, 'no reference can be taken any more');
    assert.equal(t.count[m], 0);
    // ... then the owner goes (under the owner's page_alloc_lock).
    t.disown(m);
    assert.deepEqual([t.owner[m], t.count[m], t.flags[m]], [OWNER_NONE, 0, 0]);
    t.assign(m, 9);
    assert.deepEqual([t.owner[m], t.count[m], t.flags[m]], [9, 1, PGC_allocated]);
    const n = t.alloc(7);
    t.addRef(n);
    assert.equal(t.stealCommit(n), false, 'two references but not PGC_allocated');
    assert.deepEqual([t.owner[n], t.count[n]], [7, 2]);
  });

  it('put_page_alloc_ref then the count check (gnttab_unpopulate_status_frames): the last reference goes in one cmpxchg, or none does', () => {
    const t = FrameTable.create(20, 16);
    const m = t.alloc(7, 0, 1);
    t.addRef(m);
    assert.equal(t.dropLastRef(m), false, 'another reference is held');
    assert.equal(t.count[m], 2);
    t.putRef(m);
    assert.equal(t.dropLastRef(m), true);
    assert.equal(t.count[m], 0);
    // At 0 no reference can be taken any more: a mapping racing the switch is refused.
    assert.equal(t.getOwnerAndReference(m), NO_REFERENCE);
    t.restoreLastRef(m);
    assert.deepEqual([t.owner[m], t.count[m]], [7, 1]);
    assert.equal(t.getOwnerAndReference(m), 7);
  });

  it("a domain's page list (page_list_add_tail, page_list_del) is linked through the frame table", () => {
    const t = FrameTable.create(32, 16);
    const words = new Int32Array(8);
    const a = new PageList(t, pageListTag(3), words, 0);
    const b = new PageList(t, pageListTag(4), words, 4);
    a.init();
    b.init();
    const m = [t.alloc(3), t.alloc(3), t.alloc(3), t.alloc(4)];
    for (const mfn of m.slice(0, 3)) a.add(mfn);
    b.add(m[3]!);
    a.add(m[3]!); // on b's list already: stays there
    assert.deepEqual([...a], m.slice(0, 3));
    assert.deepEqual([a.size, b.size], [3, 1]);
    assert.equal(a.has(m[3]!), false);
    assert.equal(a.delete(m[1]!), true, 'from the middle');
    assert.equal(a.delete(m[1]!), false, 'once');
    assert.deepEqual([...a], [m[0], m[2]]);
    assert.equal(a.delete(m[2]!), true, 'the tail');
    assert.equal(a.delete(m[0]!), true, 'the head');
    assert.deepEqual([[...a], a.size], [[], 0]);
    a.add(m[1]!);
    assert.deepEqual([...a], [m[1]]);
    assert.deepEqual([...b], [m[3]]);
  });

  it('attach views the same words', () => {
    const t = FrameTable.create(20, 16);
    const v = FrameTable.attach(t.sab);
    const m = v.alloc(2);
    assert.equal(t.owner[m], 2);
    assert.equal(t.freeFrames, v.freeFrames);
    assert.throws(() => FrameTable.attach(new SharedArrayBuffer(12)), RangeError);
  });
});

const entry = new URL('../fixtures/frame-table-worker.ts', import.meta.url).href;

const run = (data: FrameWorkerData) => runFixture<Record<string, number>>(data);

describe('frame table on worker threads', { timeout: 120_000 }, () => {
  // cores 64: heap-lock waits spin first; cores 1: every wait sleeps.
  for (const cores of [64, 1]) {
    it(`3 workers allocate, reference and free 2000 rounds of 8 frames; none is handed out twice (cores=${cores})`, async () => {
      // 3 x 8 frames in flight at most, and 20 free: some rounds run dry.
      const t = FrameTable.create(16 + 20 + 1, 16);
      const shared = t.alloc(OWNER_XEN);
      const free = t.freeFrames;
      const control = new SharedArrayBuffer(8);
      const workers = 3;
      const results = await Promise.all(
        [0, 1, 2].map((id) =>
          run({ entry, table: t.sab, control, id, rounds: 2000, batch: 8, shared, cores, workers }),
        ),
      );
      for (const r of results) {
        assert.equal(r.foreign, 0, 'a frame held by one worker was handed to another');
        assert.equal(r.badCount, 0, 'a reference count went astray');
        assert.equal(r.allocated! + r.exhausted!, 2000 * 8);
      }
      assert.ok(
        results.reduce((n, r) => n + r.allocated!, 0) >= 3 * 2000,
        'every worker got frames in most rounds',
      );
      assert.equal(t.freeFrames, free, 'every frame went back');
      assert.equal(t.count[shared], 1, "the shared frame's count is back to its allocation reference");
      for (let mfn = 16; mfn < t.nrFrames; mfn++) {
        if (mfn === shared) continue;
        assert.deepEqual([t.owner[mfn], t.count[mfn]], [OWNER_NONE, 0], `frame ${mfn}`);
      }
      assert.equal(new Int32Array(control)[0], 0, 'every worker left the wait policy');
    });
  }
});
