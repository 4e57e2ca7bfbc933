// The view's two halves: the trace ring the hypervisor writes (as xentrace's
// t_buf: fixed records, lost ones counted, never blocking), and the read-only
// server that answers /api/state with what `gnttab dump --json` prints.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostState, stateJson } from '../../src/host/host-state.ts';
import { hypercallName, returnName } from '../../src/host/hypercall-names.ts';
import { ViewServer } from '../../src/host/view-server.ts';
import {
  __HYPERVISOR_grant_table_op,
  GNTTABOP_query_size,
  GNTTABOP_setup_table,
  Host,
} from '../../src/index.ts';
import { TRC_DOM_CREATE, TRC_HYPERCALL, TraceBuffer } from '../../src/xen/trace.ts';

describe('trace ring (xentrace-style records of do_grant_table_op and domain events)', () => {
  it('records each hypercall with its domain, op and return, and domain creation, only when attached', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    a.memory.writeU16(0x1000, 0x7ff0);
    assert.equal(a.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, 0x1000, 1), 0);
    const t = new TraceBuffer(16);
    host.hypervisor.trace = t;
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    assert.equal(a.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, 0x1000, 1), 0);
    // An op an HVM guest may not use (hvm_grant_table_op): -ENOSYS.
    assert.equal(b.hypercall(__HYPERVISOR_grant_table_op, 9, 0x1000, 1), -38);
    const { records, skipped } = t.drain();
    assert.equal(skipped, 0);
    assert.deepEqual(
      records.map((r) => [r.event, r.domid, r.nr, r.cmd, r.rc]),
      [
        [TRC_DOM_CREATE, b.domid, 0, 0, 0],
        [TRC_HYPERCALL, a.domid, __HYPERVISOR_grant_table_op, GNTTABOP_query_size, 0],
        [TRC_HYPERCALL, b.domid, __HYPERVISOR_grant_table_op, 9, -38],
      ],
    );
    assert.ok(records.every((r) => r.time > 0));
    assert.deepEqual(t.drain().records, []);
    assert.equal(hypercallName(20, GNTTABOP_setup_table), 'grant_table_op/setup_table');
    assert.equal(hypercallName(32, 4), 'event_channel_op/send');
    assert.equal(returnName(-38), '-ENOSYS');
  });

  it('a full ring counts the records it drops and never blocks; drain keeps the newest', () => {
    const t = new TraceBuffer(8);
    for (let i = 0; i < 20; i++) t.record(TRC_HYPERCALL, 1, 20, i, 0);
    assert.equal(t.lost, 12);
    const d = t.drain(3);
    assert.deepEqual([d.skipped, d.records.map((r) => r.cmd)], [5, [5, 6, 7]]);
    for (let i = 0; i < 8; i++) t.record(TRC_HYPERCALL, 1, 20, 100 + i, 0);
    assert.equal(t.lost, 12);
    assert.equal(t.drain().records.length, 8);
    assert.throws(() => new TraceBuffer(12), /power of two/);
    // The same ring from its SharedArrayBuffer, as another thread opens it.
    const other = TraceBuffer.fromSab(t.sab);
    t.record(TRC_HYPERCALL, 2, 20, 7, -22);
    assert.deepEqual(
      other.drain().records.map((r) => [r.domid, r.rc]),
      [[2, -22]],
    );
  });
});

describe('view server (gnttab serve): read-only, /api/state = dump --json', () => {
  it('answers the state, streams a hello with it, refuses anything but GET', async () => {
    const host = new Host({ memoryMiB: 16, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const trace = new TraceBuffer(1 << 10);
    host.hypervisor.trace = trace;
    const server = new ViewServer({
      title: 't',
      trace,
      state: () => hostState(host.hypervisor, host.xenstored),
    });
    const url = await server.listen();
    try {
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      const state = await (await fetch(`${url}api/state`)).text();
      assert.equal(state, `${stateJson(hostState(host.hypervisor, host.xenstored))}\n`);
      const s = JSON.parse(state) as { tables: { domid: number }[]; xenstore: { path: string }[] };
      assert.deepEqual(
        s.tables.map((t) => t.domid),
        [0, 1],
      );
      assert.ok(s.xenstore.some((n) => n.path === '/local/domain/1'));
      for (const method of ['POST', 'PUT', 'DELETE']) {
        const r = await fetch(`${url}api/state`, { method });
        assert.equal(r.status, 405, method);
      }
      assert.equal((await fetch(`${url}nothing-here`)).status, 404);
      const page = await (await fetch(url)).text();
      assert.match(page, /importmap/);
      for (const f of ['app.js', 'style.css', 'vendor/preact.mjs', 'vendor/hooks.mjs', 'vendor/htm.mjs'])
        assert.equal((await fetch(`${url}${f}`)).status, 200, f);
      // The stream starts with a hello holding the last state seen.
      const ac = new AbortController();
      const r = await fetch(`${url}api/events`, { signal: ac.signal });
      assert.equal(r.headers.get('content-type'), 'text/event-stream');
      const rd = (r.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await rd.read()).value);
      ac.abort();
      assert.match(text, /^id: \d+\nevent: hello\ndata: \{/);
      const hello = JSON.parse(/data: (.*)\n/.exec(text)![1]!) as {
        title: string;
        state: { tables: unknown[] };
      };
      assert.equal(hello.title, 't');
      assert.equal(hello.state.tables.length, 2);
    } finally {
      await server.close();
    }
  });
});
