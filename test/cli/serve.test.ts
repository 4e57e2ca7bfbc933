// `gnttab serve <scenario>`, `gnttab serve <frontend> <backend>` and `gnttab
// serve --xen-dmesg <file>`, run as a user runs them: the command in a
// subprocess, its /api/state fetched over HTTP. What it serves must be what `gnttab dump --json` and `gnttab decode
// --xen-dmesg --json` give for the same input; it listens on 127.0.0.1 only,
// and it is read-only: anything but GET is refused and changes nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import scenario from '../../examples/scenario.ts';
import { type HostState, hypercallTotals } from '../../src/host/host-state.ts';
import { VIEW_TRACE_RECORDS } from '../../src/host/view-server.ts';
import { Host } from '../../src/index.ts';
import { TraceBuffer } from '../../src/xen/trace.ts';
import { gnttab, type Served, serve } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gnttab-serve-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function state(url: string): Promise<HostState> {
  const r = await fetch(`${url}api/state`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  return (await r.json()) as HostState;
}

/** The first state for which `ready` holds (the scenario runs once the server listens). */
async function stateWhen(url: string, ready: (s: HostState) => boolean): Promise<HostState> {
  for (;;) {
    const s = await state(url);
    if (ready(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Until the command has printed a line matching `re` (the test's timeout guards a hang). */
async function printed(s: Served, re: RegExp): Promise<void> {
  while (!re.test(s.stdout())) await new Promise((r) => setTimeout(r, 50));
}

/** 'connected', or the error code of a TCP connection to host:port. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Listens on 127.0.0.1 alone: this machine's other addresses refuse the connection. */
async function assertLoopbackOnly(url: string): Promise<void> {
  const u = new URL(url);
  assert.equal(u.hostname, '127.0.0.1');
  const port = Number(u.port);
  assert.equal(await tryConnect('127.0.0.1', port), 'connected');
  // Link-local IPv6 addresses need a scope to connect to at all: left out.
  const others = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && !a.address.startsWith('fe80:'))
    .map((a) => a!.address);
  for (const address of others) assert.equal(await tryConnect(address, port), 'ECONNREFUSED', address);
}

/** Every method but GET and HEAD is refused on every path, and the state is the same after. */
async function assertReadOnly(url: string): Promise<void> {
  const before = await (await fetch(`${url}api/state`)).text();
  for (const path of ['api/state', 'api/events', 'api/status', '', 'app.js'])
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const r = await fetch(`${url}${path}`, { method, body: method === 'DELETE' ? null : '{"tables":[]}' });
      assert.equal(r.status, 405, `${method} /${path}`);
      assert.equal(r.headers.get('allow'), 'GET, HEAD');
    }
  assert.equal(await (await fetch(`${url}api/state`)).text(), before);
}

describe('gnttab serve <scenario>', () => {
  it('serves the scenario host: /api/state is dump --json with the hypercall totals; 127.0.0.1 only; read-only', async () => {
    const dumped = gnttab(['dump', '--json', 'examples/scenario.ts']);
    assert.equal(dumped.code, 0, dumped.err);
    let s: Served | null = null;
    try {
      s = await serve(['examples/scenario.ts']);
      assert.match(
        s.stdout(),
        /^gnttab serve: examples\/scenario\.ts at http:\/\/127\.0\.0\.1:\d+\/ \(read-only/,
      );
      // The scenario's host: a PV backend d0 and an HVM frontend d1 (v2) that granted refs 8 and 9;
      // d0 maps ref 8 read-only, so it is pinned host-read (pin 0x100).
      const st = await stateWhen(s.url, (x) => x.tables.length === 2 && x.tables[0]!.mappings.length === 1);
      const [d0, d1] = st.tables;
      assert.deepEqual([d0!.domid, d0!.kind, d1!.domid, d1!.kind, d1!.version], [0, 'pv', 1, 'hvm', 2]);
      assert.deepEqual(
        d1!.entries.map((e) => [e.ref, e.domid, e.active?.pin ?? null]),
        [
          [8, 0, 0x100],
          [9, 0, null],
        ],
      );
      assert.deepEqual(
        d0!.mappings.map((m) => [m.granter, m.ref, m.flags]),
        [[1, 8, ['host_map', 'readonly']]],
      );
      assert.deepEqual(st.invariants, []);
      // The same host as gnttab dump --json builds, which has no trace: hypercalls null there.
      assert.deepEqual({ ...st, hypercalls: null }, JSON.parse(dumped.out));
      // Here every hypercall of the scenario is counted, as the same scenario counts on a traced
      // host of this process (none lost: the ring had room).
      const host = new Host({ memoryMiB: 64 });
      host.hypervisor.trace = new TraceBuffer(VIEW_TRACE_RECORDS);
      scenario(host);
      const expected = hypercallTotals(host.hypervisor.trace);
      assert.deepEqual(st.hypercalls, expected);
      assert.equal(expected.lost, 0);
      const ops = expected.ops.map((o) => `d${o.domid} ${o.op}`);
      for (const op of [
        'd1 grant_table_op/set_version',
        'd1 memory_op/add_to_physmap',
        'd0 grant_table_op/map_grant_ref',
      ])
        assert.ok(ops.includes(op), `${op} in ${ops.join(', ')}`);
      const status = (await (await fetch(`${s.url}api/status`)).json()) as { title: string; traced: boolean };
      assert.deepEqual([status.title, status.traced], ['examples/scenario.ts', true]);
      await assertLoopbackOnly(s.url);
      await assertReadOnly(s.url);
      assert.equal(await s.stop(), 0);
      s = null;
    } finally {
      await s?.stop();
    }
  });

  it('says what is wrong with a scenario it cannot load, and does not listen', async () => {
    const bad = join(dir, 'bad.mjs');
    writeFileSync(bad, 'export const x = 1;\n');
    await assert.rejects(serve([bad]), /must export a default function taking a Host/);
    await assert.rejects(serve([join(dir, 'missing.ts')]), /cannot load the scenario/);
  });
});

describe('gnttab serve <frontend> <backend> (a gnttab run pair)', () => {
  it('runs the pair once a page watches, traced from its first hypercall, and keeps the host as it ended', async () => {
    let s: Served | null = null;
    const ac = new AbortController();
    try {
      s = await serve(['examples/ring/frontend.ts', 'examples/ring/backend.ts', '--', '100']);
      assert.match(
        s.stdout(),
        /gnttab serve: gnttab run examples\/ring\/frontend\.ts examples\/ring\/backend\.ts at /,
      );
      const served = s;
      await printed(served, /open the page to start the guests/);
      // Nothing runs before a page watches: no domain, no hypercall.
      const before = await state(s.url);
      assert.deepEqual([before.tables, before.hypercalls?.calls], [[], 0]);
      // A page's event stream starts them; their consoles go to stdout as gnttab run prints them.
      void fetch(`${s.url}api/events`, { signal: ac.signal })
        .then((r) => r.body?.cancel())
        .catch(() => {});
      await printed(served, /the guests have ended/);
      assert.match(s.stdout(), /^d1 frontend\| 100 responses checked$/m);
      assert.match(s.stdout(), /^d0 backend \| 100 requests answered; closing$/m);
      assert.match(s.stdout(), /the guests have ended \(the frontend returned, the backend returned\)/);
      // The host has gone; its counters stay: every hypercall of both guests, none lost.
      const st = await state(s.url);
      const h = st.hypercalls!;
      assert.equal(h.lost, 0);
      assert.deepEqual(
        h.domains.map((d) => d.domid),
        [0, 1],
      );
      assert.equal(
        h.calls,
        h.domains.reduce((a, d) => a + d.calls, 0),
      );
      const calls = (op: string) => h.ops.find((o) => `d${o.domid} ${o.op}` === op)?.calls;
      // The backend maps the ring page once and unmaps it once; the frontend allocates one port.
      assert.deepEqual(
        [
          calls('d0 grant_table_op/map_grant_ref'),
          calls('d0 grant_table_op/unmap_grant_ref'),
          calls('d1 event_channel_op/alloc_unbound'),
        ],
        [1, 1, 1],
      );
      const status = (await (await fetch(`${s.url}api/status`)).json()) as {
        hypercalls: number;
        lost: number;
      };
      assert.deepEqual([status.hypercalls, status.lost], [h.calls, 0]);
      await assertReadOnly(s.url);
      assert.equal(await s.stop(), 0);
      s = null;
    } finally {
      ac.abort();
      await s?.stop();
    }
  });

  it('refuses a guest module that is not there, before listening', async () => {
    await assert.rejects(serve(['examples/ring/frontend.ts', join(dir, 'nope.ts')]), /no such guest module/);
  });
});

// Hand-written in the format of gnttab_usage_print (xen/common/grant_table.c), as
// `xl dmesg` shows it with console_timestamps=datems, and a row cut short (line 11).
const DMESG = `(XEN) [2026-12-02 14:05:10.001] gnttab_usage_print_all [ key 'g' pressed
(XEN) [2026-12-02 14:05:10.001]       -------- active --------       -------- shared --------
(XEN) [2026-12-02 14:05:10.001] [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) [2026-12-02 14:05:10.001] grant-table for remote d0 (v1)
(XEN) [2026-12-02 14:05:10.001]   1 frames (64 max), 1 maptrack frames (1024 max)
(XEN) [2026-12-02 14:05:10.001] no active grant table entries
(XEN) [2026-12-02 14:05:10.002]       -------- active --------       -------- shared --------
(XEN) [2026-12-02 14:05:10.002] [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) [2026-12-02 14:05:10.002] grant-table for remote d3 (v1)
(XEN) [2026-12-02 14:05:10.002]   4 frames (64 max), 0 maptrack frames (1024 max)
(XEN) [2026-12-02 14:05:10.002] [0x008]      0 0x1a2b3 0x00000001          0
(XEN) [2026-12-02 14:05:10.002] [0x009]      0 0x1a2b4 0x00000100          0 0x0012f5 0x0d
(XEN) [2026-12-02 14:05:10.002] [0x1000]      7 0x123456789 0x01000000          7 0x0abcde 0x09
(XEN) [2026-12-02 14:05:10.003] gnttab_usage_print_all ] done
`;

describe('gnttab serve --xen-dmesg <file>', () => {
  it("serves the rows of Xen's debug key 'g' as decode --xen-dmesg --json reads them, and the line it cannot read", async () => {
    const f = join(dir, 'dmesg.txt');
    writeFileSync(f, DMESG);
    const decoded = gnttab(['decode', '--xen-dmesg', f, '--json']);
    let s: Served | null = null;
    try {
      s = await serve(['--xen-dmesg', f]);
      assert.match(s.stdout(), /gnttab serve: xl dmesg: .*dmesg\.txt at http:\/\/127\.0\.0\.1:/);
      // The row it cannot read is reported with its line number, on stderr and in the state.
      assert.match(s.stderr(), /dmesg\.txt:11: /);
      const st = await state(s.url);
      assert.deepEqual(
        st.tables.map((t) => [t.domid, t.version, t.frames, t.maxFrames, t.maptrackFrames]),
        [
          [0, 1, 1, 64, 1],
          [3, 1, 4, 64, 0],
        ],
      );
      assert.deepEqual(
        st.tables[1]!.entries.map((e) => [e.ref, e.domid, e.frame, e.flags, e.active?.mfn, e.active?.pin]),
        [
          [9, 0, 0x12f5, 0x0d, 0x1a2b4, 0x100],
          [0x1000, 7, 0xabcde, 0x09, 0x123456789, 0x01000000],
        ],
      );
      assert.equal(st.invariants.length, 1);
      assert.match(st.invariants[0]!, /^line 11 of .*dmesg\.txt could not be read: /);
      assert.deepEqual([st.eventChannels, st.xenstore, st.hypercalls], [[], null, null]);
      // The tables are decode --xen-dmesg --json's.
      assert.deepEqual(st.tables, (JSON.parse(decoded.out) as { tables: unknown }).tables);
      const status = (await (await fetch(`${s.url}api/status`)).json()) as { traced: boolean };
      assert.equal(status.traced, false);
      await assertLoopbackOnly(s.url);
      await assertReadOnly(s.url);
      assert.equal(await s.stop(), 0);
      s = null;
    } finally {
      await s?.stop();
    }
  });

  it('serves what gnttab dump prints as Xen would, and refuses a file that holds no dump', async () => {
    const dumped = gnttab(['dump', 'examples/scenario.ts']);
    const f = join(dir, 'dump.txt');
    writeFileSync(f, dumped.out);
    let s: Served | null = null;
    try {
      s = await serve(['--xen-dmesg', f]);
      const st = await state(s.url);
      // d1's pinned entry, as the scenario's host has it (dump --json).
      const host = JSON.parse(gnttab(['dump', '--json', 'examples/scenario.ts']).out) as HostState;
      const e8 = host.tables[1]!.entries.find((e) => e.ref === 8)!;
      assert.deepEqual(
        st.tables.map((t) => [
          t.domid,
          t.version,
          t.entries.map((e) => [e.ref, e.domid, e.active?.mfn, e.active?.pin]),
        ]),
        [
          [0, 1, []],
          [1, 2, [[8, 0, e8.active!.mfn, 0x100]]],
        ],
      );
      assert.deepEqual(st.invariants, []);
    } finally {
      await s?.stop();
    }
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '(XEN) nothing to see\n');
    await assert.rejects(serve(['--xen-dmesg', empty]), /holds no output of Xen's debug key 'g'/);
    await assert.rejects(serve(['--xen-dmesg', join(dir, 'nope.txt')]), /no such file/);
    await assert.rejects(
      serve(['--xen-dmesg', f, 'examples/scenario.ts']),
      /exited \(2\): error: --xen-dmesg serves a file: give no scenario/,
    );
  });
});
