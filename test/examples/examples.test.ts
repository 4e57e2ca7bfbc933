// Every example in examples/ runs and does what its comment says. The guest
// pairs run as `gnttab run` runs them (runPair: worker threads, xenstore, the
// leak and invariant checks); the raw ABI walkthrough on a one-thread Host.
// The examples import 'gnttab', which the suite resolves to the sources (the
// gnttab-source condition, see test/run.mjs).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Host } from 'gnttab';
import { walkthrough } from '../../examples/raw-abi.ts';
import { type RunOptions, runPair } from '../../src/cli/run.ts';

const example = (p: string) => new URL(`../../examples/${p}`, import.meta.url).href;

function pair(frontend: string, backend: string, argv: string[] = []): RunOptions {
  return {
    frontend: example(frontend),
    backend: example(backend),
    argv,
    frontendKind: 'hvm',
    backendKind: 'pv',
    memoryMiB: 64,
    domainKiB: 4096,
    timeoutMs: 120_000,
  };
}

describe('examples', () => {
  it('ring: 300 requests over a one-page ring.h ring (more than it holds), each answered and checked', async () => {
    const r = await runPair(pair('ring/frontend.ts', 'ring/backend.ts', ['300']));
    assert.equal(r.frontend.error, undefined);
    assert.deepEqual(r.frontend.result, { requests: 300, checked: 300 });
    assert.deepEqual(r.backend.result, { answered: 300 });
    // While they ran, the backend mapped the frontend's ring page.
    const back = r.tables.find((t) => t.domid === r.backend.domid);
    assert.ok(back !== undefined && back.mappings.some((m) => m.granter === r.frontend.domid));
    assert.deepEqual([r.leftovers, r.invariants, r.ok], [[], [], true]);
  });

  it('vchan-echo: every line comes back as sent; the server closes after the client', async () => {
    const r = await runPair(pair('vchan-echo/server.ts', 'vchan-echo/client.ts', ['40']));
    assert.equal(r.backend.error, undefined);
    assert.deepEqual(r.backend.result, { lines: 40 });
    const bytes = Array.from({ length: 40 }, (_, i) => `hello ${i} over vchan\n`).join('').length;
    assert.deepEqual(r.frontend.result, { echoed: bytes });
    assert.deepEqual([r.leftovers, r.invariants, r.ok], [[], [], true]);
  });

  it('page-share: xengntshr_share_page_notify and xengnttab_map_grant_ref_notify, each side told of the other going', async () => {
    const r = await runPair(pair('page-share/sharer.ts', 'page-share/mapper.ts'));
    assert.equal(r.frontend.error, undefined);
    assert.equal(r.backend.error, undefined);
    assert.deepEqual(r.frontend.result, { reply: 'hello back from d0' });
    assert.deepEqual(r.backend.result, { greeting: 'hello from d1' });
    assert.ok(r.frontend.console.includes('unmap notification: the mapper has let go of the page'));
    assert.ok(r.backend.console.includes('the sharer unshared the page'));
    assert.deepEqual([r.leftovers, r.invariants, r.ok], [[], [], true]);
  });

  it('raw-abi: setup_table, a grant, map_grant_ref, copy, unmap_grant_ref, a revoke and a refused map', () => {
    const host = new Host({ memoryMiB: 16 });
    const w = walkthrough(host);
    assert.equal(w.read, 'hello, backend!');
    assert.equal(w.copied, 'copied by Xen');
    assert.equal(w.steps.length, 8);
    assert.match(w.steps[7]!, /GNTST_general_error \(-1\)$/);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
