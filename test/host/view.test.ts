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
import { OP_SLOTS, TRC_DOM_CREATE, TRC_HYPERCALL, TraceBuffer } from '../../src/xen/trace.ts';

/** The data of the first server-sent event named `name` on a stream, read from `rd`. */
async function nextEvent(
  rd: ReadableStreamDefaultReader<Uint8Array>,
  name: string,
  buf: { text: string },
): Promise<Record<string, unknown>> {
  const dec = new TextDecoder();
  for (;;) {
    let end = buf.text.indexOf('\n\n');
    while (end >= 0) {
      const msg = buf.text.slice(0, end);
      buf.text = buf.text.slice(end + 2);
      if (new RegExp(`^event: ${name}$`, 'm').test(msg))
        return JSON.parse(/^data: (.*)$/m.exec(msg)![1]!) as Record<string, unknown>;
      end = buf.text.indexOf('\n\n');
    }
    const { value, done } = await rd.read();
    if (done) throw new Error(`the stream ended before a ${name} event`);
    buf.text += dec.decode(value, { stream: true });
  }
}

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

describe('hypercall counters (exact, beside the sampled ring)', () => {
  it('count every hypercall by domain and op, however many the ring drops', () => {
    const t = new TraceBuffer(8);
    t.record(TRC_DOM_CREATE, 1, 0, 0, 0);
    for (let i = 0; i < 1000; i++) t.record(TRC_HYPERCALL, 1, 20, 6, 0);
    for (let i = 0; i < 300; i++) t.record(TRC_HYPERCALL, 2, 20, 9, -38);
    for (let i = 0; i < 5; i++) t.record(TRC_HYPERCALL, 1, 32, 4, i % 2 === 0 ? 0 : -22);
    const c = t.totals();
    assert.deepEqual(
      [c.calls, c.failed, c.domains, c.unplaced],
      [
        1305,
        302,
        [
          { domid: 1, calls: 1005, failed: 2 },
          { domid: 2, calls: 300, failed: 300 },
        ],
        0,
      ],
    );
    assert.deepEqual(
      c.ops.map((o) => [o.domid, o.nr, o.cmd, o.calls, o.failed]),
      [
        [1, 20, 6, 1000, 0],
        [1, 32, 4, 5, 2],
        [2, 20, 9, 300, 300],
      ],
    );
    // The ring kept the first 8 records (the domain's creation, not a hypercall, among them)
    // and lost the rest; the counts do not depend on it.
    assert.deepEqual([c.records, c.lost], [8, 1298]);
    assert.equal(t.drain().records.length, 8);
    // Another thread's view of the same buffer reads the same counts.
    assert.deepEqual(TraceBuffer.fromSab(t.sab).totals().ops, c.ops);
  });

  it('a guest that fills the op table with made-up sub-ops is still counted exactly in its domain', () => {
    const t = new TraceBuffer(1);
    const n = OP_SLOTS + 500;
    for (let cmd = 0; cmd < n; cmd++) t.record(TRC_HYPERCALL, 3, 20, 0x1000 + cmd, -38);
    t.record(TRC_HYPERCALL, 4, 20, 6, 0);
    const c = t.totals();
    assert.equal(c.calls, n + 1);
    assert.deepEqual(c.domains, [
      { domid: 3, calls: n, failed: n },
      { domid: 4, calls: 1, failed: 0 },
    ]);
    // What the op table holds and what found no room add up to every call.
    const placed = c.ops.reduce((a, o) => a + o.calls, 0);
    assert.ok(c.unplaced > 0 && placed + c.unplaced === n + 1, `${placed} placed + ${c.unplaced} unplaced`);
    assert.equal(c.lost, n);
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

  it('more hypercalls than the ring holds: /api/state, /api/status and the stream give exact totals and the lost count', async () => {
    const host = new Host({ memoryMiB: 16 });
    const pv = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const hvm = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    pv.memory.writeU16(0x1000, 0x7ff0);
    const CAP = 64;
    const trace = new TraceBuffer(CAP);
    host.hypervisor.trace = trace;
    const server = new ViewServer(
      { title: 'busy', trace, state: () => hostState(host.hypervisor, host.xenstored) },
      { tickMs: 20 },
    );
    const url = await server.listen();
    const ac = new AbortController();
    try {
      const r = await fetch(`${url}api/events`, { signal: ac.signal });
      const rd = (r.body as ReadableStream<Uint8Array>).getReader();
      const buf = { text: '' };
      const hello = await nextEvent(rd, 'hello', buf);
      assert.equal((hello.totals as { calls: number }).calls, 0);
      // 5000 query_size from the PV domain, 700 ops the HVM domain may not use (-ENOSYS),
      // in one synchronous run, so between two ticks: the ring keeps CAP records and loses the rest.
      const OK = 5000;
      const BAD = 700;
      for (let i = 0; i < OK; i++)
        assert.equal(pv.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, 0x1000, 1), 0);
      for (let i = 0; i < BAD; i++)
        assert.equal(hvm.hypercall(__HYPERVISOR_grant_table_op, 9, 0x1000, 1), -38);
      const lost = OK + BAD - CAP;
      const expected = {
        calls: OK + BAD,
        failed: BAD,
        domains: [
          { domid: pv.domid, calls: OK, failed: 0 },
          { domid: hvm.domid, calls: BAD, failed: BAD },
        ],
        ops: [
          { domid: pv.domid, op: 'grant_table_op/query_size', calls: OK, failed: 0 },
          { domid: hvm.domid, op: hypercallName(20, 9), calls: BAD, failed: BAD },
        ],
        unplaced: 0,
        records: CAP,
        lost,
      };
      const state = JSON.parse(await (await fetch(`${url}api/state`)).text()) as {
        hypercalls: typeof expected;
      };
      assert.deepEqual(state.hypercalls, expected);
      // The next tick drains the ring: one batch of its CAP records, with the exact totals.
      const batch = (await nextEvent(rd, 'hypercalls', buf)) as {
        records: [number, number, string, string][];
        totals: typeof expected;
        skipped: number;
        lost: number;
      };
      assert.equal(batch.records.length, CAP);
      assert.ok(batch.records.every((x) => x[1] === pv.domid && x[2] === 'grant_table_op/query_size'));
      assert.deepEqual(batch.totals, expected);
      assert.deepEqual([batch.lost, batch.skipped], [lost, 0]);
      const status = (await (await fetch(`${url}api/status`)).json()) as Record<string, number>;
      assert.deepEqual(
        [status.hypercalls, status.failed, status.records, status.skipped, status.lost],
        [OK + BAD, BAD, CAP, 0, lost],
      );
      // Once drained, the ring has room again: the next calls are recorded, and lost stays.
      for (let i = 0; i < 10; i++) pv.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, 0x1000, 1);
      const next = (await nextEvent(rd, 'hypercalls', buf)) as {
        records: unknown[];
        totals: typeof expected;
      };
      assert.deepEqual(
        [next.records.length, next.totals.calls, next.totals.lost, next.totals.records],
        [10, OK + BAD + 10, lost, CAP + 10],
      );
    } finally {
      ac.abort();
      await server.close();
    }
  });
});
