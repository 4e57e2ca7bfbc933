// The advisory catalogue (gnttab xsa): every advisory of the reference is
// listed, and every runnable scenario is safe with the statuses Xen gives at
// each step (the fixed-interleaving half of races; the worker-thread half is
// in xsa-threads.test.ts). A scenario fails if the hypervisor regressed. The
// reference is test/fixtures/security-advisories.md, a copy of the shared notes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { runXsa, XSA_CATALOGUE, xsaEntry } from '../../src/index.ts';

const reference = readFileSync(new URL('../fixtures/security-advisories.md', import.meta.url), 'utf8');

/** `op: status` of each step, in order (entry writes and thread races left out). */
const EXPECTED: Record<number, string[]> = {
  // gnttab_swap_grant_ref: ref_a, then ref_b, bounds-checked; a pinned entry is eagain.
  18: [
    'swap_grant_ref: rc 0, bad_gntref',
    'swap_grant_ref: rc 0, bad_gntref',
    'swap_grant_ref: rc 0, okay',
    'map_grant_ref: okay, handle 0',
    'swap_grant_ref: rc 0, eagain',
    'unmap_grant_ref: okay',
  ],
  // gnttab_get_status_frames: count != 1 is -EINVAL.
  24: ['get_status_frames: okay', 'get_status_frames: -EINVAL'],
  // gnttab_set_version / gnttab_grow_table.
  26: ['setup_table: okay', ...Array<string>(16).fill('set_version: rc 0'), 'setup_table: general_error'],
  134: ['swap_grant_ref: rc 0, okay'],
  // gnttab_transfer: steal_page leaves no type.
  214: ['update_va_mapping: rc 0', 'transfer: okay'],
  // hvm_grant_table_op refuses transfer; steal_page refuses extra references.
  217: ['transfer: -ENOSYS', 'transfer: bad_page'],
  // unmap_common / unmap_common_complete.
  218: [
    'map_grant_ref: okay, handle 0',
    'map_grant_ref: okay, handle 1',
    'unmap_grant_ref: okay',
    'unmap_grant_ref: okay',
    'map_grant_ref: okay, handle 2',
    'map_grant_ref: okay, handle 3',
    'unmap_grant_ref: okay',
    'unmap_grant_ref: okay',
    'map_grant_ref: okay, handle 4',
    'unmap_grant_ref: okay',
    'unmap_grant_ref: okay',
    'unmap_grant_ref: bad_handle',
    'map_grant_ref: okay, handle 5',
    'map_grant_ref: okay, handle 6',
    'unmap_grant_ref: okay',
    'unmap_grant_ref: okay',
  ],
  // get_maptrack_handle / steal_maptrack_handle.
  228: [
    'map_grant_ref: no_space',
    'map_grant_ref: okay',
    'unmap/map: 64 maps okay',
    'map_grant_ref: no_space',
  ],
  // release_grant_for_copy looks at the device counters too.
  230: ['map_grant_ref: okay, handle 0', 'copy: okay', 'unmap_grant_ref: okay'],
  // _set_status_v1: at most 5 CMPXCHG attempts.
  295: ['map_grant_ref: general_error', 'map_grant_ref: okay, handle 1', 'unmap_grant_ref: okay'],
  // gnttab_release_mappings leaves a zombie; acquire_grant_for_copy checks the owner is alive.
  236: [
    'copy: okay',
    'map_grant_ref: okay, handle 0',
    'destroy: done',
    'copy: bad_domain',
    'unmap_grant_ref: okay',
    'copy: bad_domain',
  ],
  // steal_page: exactly the allocation reference plus the temporary one.
  287: [
    'update_va_mapping: rc 0',
    'map_grant_ref: okay, handle 0',
    'transfer: bad_page',
    'unmap_grant_ref: okay',
    'transfer: okay',
    'map_grant_ref: bad_page',
  ],
  // Guest backend: each element's status on its own (Linux gnttab_map_refs callers).
  361: ['map_grant_ref: okay,okay,general_error,okay,okay,bad_gntref,okay,okay'],
  362: [
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: failed (bad_gntref)',
    'map_grant_ref: okay',
    'map_grant_ref: failed (general_error)',
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: failed (no_space)',
  ],
  367: [
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: failed (bad_gntref)',
    'map_grant_ref: okay',
    'map_grant_ref: failed (general_error)',
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: okay',
    'map_grant_ref: failed (no_space)',
  ],
  // gnttab_map_frame: in v1 the status index is invalid.
  384: ['add_to_physmap: rc 0', 'set_version: rc 0', 'add_to_physmap: -EINVAL', 'set_version: rc 0'],
  486: ['add_to_physmap: rc 0', 'set_version: rc 0', 'add_to_physmap: -EINVAL', 'set_version: rc 0'],
  // Linux gnttab_end_foreign_access_ref_v1/v2 against Xen's _set_status_v1/v2.
  396: [
    ...['general_error', 'ended', 'okay, handle 1', 'in use'].flatMap((x, i) =>
      i % 2 === 0
        ? ['gnttab_grant_foreign_access: done', `map_grant_ref: ${x}`]
        : [`gnttab_try_end_foreign_access: ${x}`, ...(x === 'in use' ? ['unmap_grant_ref: okay'] : [])],
    ),
    ...['general_error', 'ended', 'okay, handle 3', 'in use'].flatMap((x, i) =>
      i % 2 === 0
        ? ['gnttab_grant_foreign_access: done', `map_grant_ref: ${x}`]
        : [`gnttab_try_end_foreign_access: ${x}`, ...(x === 'in use' ? ['unmap_grant_ref: okay'] : [])],
    ),
  ],
  // gnttab_transfer takes no grant lock under page_alloc_lock (the lock checker is on).
  73: ['update_va_mapping: rc 0', 'copy: okay', 'copy: okay', 'copy: okay', 'transfer: okay'],
  // ring.h RING_COPY_REQUEST: one snapshot.
  155: ['map_grant_ref: okay', 'push request: done', 'RING_COPY_REQUEST: length 256', 'rewrite slot: done'],
  // acquire_grant_for_copy: one level of transitive grants, read once.
  226: [
    'copy: all general_error/okay',
    'copy: general_error',
    'copy: general_error',
    'copy: okay',
    'copy: general_error',
  ],
  // gnttab_copy: every element's status written before the hypercall returns.
  318: ['copy: all general_error'],
  365: ['map_grant_ref: 8 okay, then undone', 'destroy: done'],
  // gnttab_release_mappings.
  380: ['map_grant_ref: 800 okay', 'destroy: done'],
  // gntalloc_ioctl_alloc: zeroed pages.
  403: ['free page: done', 'IOCTL_GNTALLOC_ALLOC_GREF: ref 8', 'write: done', 'map_grant_ref: okay'],
  // acquire_grant_for_copy releases the inner grant after dropping rd's lock.
  411: ['copy: general_error', 'copy: okay', 'copy: okay', ...Array<string>(37).fill('copy: general_error')],
  // gnttab_set_version: -EAGAIN while v2 ops are in flight; gnttab_transfer fails on a version change.
  501: [
    'set_version: -EAGAIN',
    'copy: okay',
    'update_va_mapping: rc 0',
    'set_version: rc 0',
    'transfer: general_error',
    // Test 3: map_grant_ref's undo path clears the bits where the current version keeps them.
    'set_version: rc 0',
    'map_grant_ref: general_error',
    'set_version: rc 0',
    'map_grant_ref: general_error',
    'set_version: -EBUSY',
    'map_grant_ref: general_error',
  ],
  // gnttab_map_frame / xenmem_add_to_physmap_one.
  379: [...Array<string>(8).fill('add_to_physmap: rc 0'), 'set_version: rc 0'],
  // gnttab_get_status_frames: bounded by nr_status_frames.
  382: [
    'setup_table: okay',
    'get_status_frames: general_error',
    'get_status_frames: general_error',
    'get_status_frames: okay',
  ],
  387: ['add_to_physmap: rc 0', 'add_to_physmap: rc 0', 'add_to_physmap: rc 0', 'set_version: rc 0'],
  // unmap_common: a partial unmap keeps the handle.
  394: [
    'map_grant_ref: okay, handle 0',
    ...Array<string>(7).fill('unmap_grant_ref: okay'),
    'unmap_grant_ref: bad_handle',
  ],
  // gnttab_copy_one: len 0 is ignored (a4a790f432).
  448: ['copy: all okay'],
  // acquire_grant_for_copy: a writable upgrade must find the frame it pinned.
  500: ['map_grant_ref: okay, handle 0', 'copy: general_error', 'unmap_grant_ref: okay'],
};

describe('gnttab xsa: the catalogue', () => {
  it('every entry is runnable or says why not, with id, year, title and op', () => {
    const ids = new Set<number>();
    for (const e of XSA_CATALOGUE) {
      assert.ok(!ids.has(e.id), `XSA-${e.id} listed twice`);
      ids.add(e.id);
      assert.ok(e.year >= 2012 && e.year <= 2026 && e.title !== '' && e.op !== '', `XSA-${e.id} metadata`);
      assert.ok(
        (e.run === undefined) !== (e.notApplicable === undefined),
        `XSA-${e.id}: a run or a reason, not both`,
      );
    }
    assert.deepEqual(
      XSA_CATALOGUE.map((e) => e.id),
      [...ids].sort((a, b) => a - b),
    );
  });

  it('lists every advisory of the reference: each heading, XSA-371 and XSA-376, with its year', () => {
    const headings = [...reference.matchAll(/^### XSA-(\d+) \((\d{4})\): (.*)$/gm)];
    assert.ok(headings.length >= 35, `only ${headings.length} headings parsed`);
    for (const m of headings) {
      const e = xsaEntry(Number(m[1]));
      assert.ok(e !== undefined, `XSA-${m[1]} (${m[3]}) is not in the catalogue`);
      assert.equal(e.year, Number(m[2]), `XSA-${m[1]} year`);
    }
    // Named in the text rather than a heading: the XSA-365 follow-up and the support statement.
    for (const id of [371, 376]) {
      assert.match(reference, new RegExp(`XSA-${id}`));
      assert.ok(xsaEntry(id) !== undefined, `XSA-${id} is not in the catalogue`);
    }
    const named = new Set([...reference.matchAll(/XSA-(\d+)/g)].map((m) => Number(m[1])));
    assert.deepEqual(
      XSA_CATALOGUE.map((e) => e.id).filter((id) => !named.has(id)),
      [],
      'catalogue entries the reference does not name',
    );
  });
});

describe('gnttab xsa: every runnable scenario is safe, step by step', () => {
  for (const e of XSA_CATALOGUE) {
    if (e.run === undefined) continue;
    it(`XSA-${e.id}: ${e.title}`, async () => {
      const r = await runXsa(e.id, { threads: false });
      assert.deepEqual(
        r.checks.filter((c) => !c.ok),
        [],
        'failed checks',
      );
      assert.deepEqual(r.invariants, []);
      assert.equal(r.outcome, 'safe');
      const steps = r.steps
        .filter((s) => s.op !== 'write entry' && s.who !== 'threads')
        .map((s) => `${s.op}: ${s.status}`);
      assert.deepEqual(steps, EXPECTED[e.id], 'statuses of the steps');
      assert.ok(r.setup.length > 0 && r.expectation.length > 0);
      for (const race of r.races) {
        assert.equal(race.mode, 'interleaving');
        assert.equal(race.violations, 0);
        assert.ok(race.hits > 0, 'the interleaving entered its window');
      }
    });
  }
});
