// libxenvchan (src/io/vchan) in one thread: the shared page layout (guest-side
// §6.1), the server's order choice (§6.2 step 2) and the client's validation
// (§6.3 step 4), setup through xenstore (§6.2 steps 4-6, §6.3), the data path
// of io.c (§6.4: notify bytes, clamps, wrap, stream and packet calls in both
// modes), the events of §6.5, closing and process death through the unmap
// notification (§5.5), §8 item 9. Every test ends with nothing left behind:
// no grant entry in use, no maptrack handle, no port, no xenstore node, no
// violated invariant.
import assert from 'node:assert/strict';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { XenError } from '../../src/guest/xen-error.ts';
import { snapshotTables } from '../../src/host/snapshot.ts';
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
  GNTTAB_RESERVED_XENSTORE,
  GTF_permit_access,
  GuestFault,
} from '../../src/index.ts';
import {
  inPageOffset,
  MAX_RING_SIZE,
  minOrder,
  ringPages,
  serverOrders,
  VCHAN_CLI_LIVE,
  VCHAN_CLI_NOTIFY,
  VCHAN_GRANTS,
  VCHAN_LEFT_CONS,
  VCHAN_LEFT_ORDER,
  VCHAN_LEFT_PROD,
  VCHAN_LIVE_WORD,
  VCHAN_NOTIFY_READ,
  VCHAN_NOTIFY_WORD,
  VCHAN_NOTIFY_WRITE,
  VCHAN_RIGHT_CONS,
  VCHAN_RIGHT_ORDER,
  VCHAN_RIGHT_PROD,
  VCHAN_SRV_LIVE,
  VCHAN_SRV_NOTIFY,
  Vchan,
  validateOrders,
} from '../../src/io/vchan/index.ts';
import { XsError } from '../../src/io/xenstore/api.ts';
import {
  assertClean,
  concat,
  drive,
  type Kind,
  pattern,
  portsInUse,
  settle,
  type World,
  type WorldOptions,
  world,
  xsExists,
} from './vchan-fixture.ts';

type Dir = 's2c' | 'c2s';

interface Pair {
  w: World;
  s: Vchan;
  c: Vchan;
  /** The side that writes in direction `dir`, and the side that reads. */
  tx: Vchan;
  rx: Vchan;
}

/**
 * The (leftMin, rightMin) a server asks for so that the ring of direction
 * `dir` is exactly `size` bytes, and the orders §6.2 step 2 then picks.
 */
function minsFor(dir: Dir, size: number): { left: number; right: number; orders: [number, number] } {
  const o = Math.log2(size);
  if (dir === 's2c') {
    // The right ring carries server -> client.
    if (size === 1024) return { left: 2048, right: 1024, orders: [11, 10] };
    if (size === 2048) return { left: 1024, right: 2048, orders: [10, 11] };
    return { left: 1024, right: size, orders: [11, o] };
  }
  if (size === 1024) return { left: 1024, right: 2048, orders: [10, 11] };
  if (size === 2048) return { left: 2048, right: 1024, orders: [11, 10] };
  return { left: size, right: 1024, orders: [o, 11] };
}

async function connect(w: World, leftMin: number, rightMin: number): Promise<{ s: Vchan; c: Vchan }> {
  const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, leftMin, rightMin);
  const c = await Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path);
  return { s, c };
}

async function pair(dir: Dir, size: number, o: WorldOptions = {}): Promise<Pair> {
  const w = world(o);
  const m = minsFor(dir, size);
  const { s, c } = await connect(w, m.left, m.right);
  assert.deepEqual([s.orders.left, s.orders.right], m.orders, '§6.2 step 2 orders');
  assert.deepEqual(c.orders, s.orders, 'the client reads the same orders');
  const tx = dir === 's2c' ? s : c;
  const rx = dir === 's2c' ? c : s;
  assert.equal(tx.writeSize, size);
  assert.equal(rx.readSize, size);
  return { w, s, c, tx, rx };
}

async function closeAll(p: { w: World; s: Vchan; c: Vchan }): Promise<void> {
  await p.c.close();
  await p.s.close();
  await assertClean(p.w);
}

/** What a vchan call came to: its number, or the code of the XenError it threw (io.c's -1). */
function code(p: Promise<unknown>): Promise<number | string | undefined> {
  return p.then(
    (n) => (typeof n === 'number' ? n : undefined),
    (e: unknown) => {
      if (e instanceof XenError) return e.code;
      throw e;
    },
  );
}

/** Reads exactly `total` bytes as a stream (blocking), in reads of up to `chunk`. */
async function readAll(v: Vchan, total: number, chunk: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < total) {
    const buf = new Uint8Array(Math.min(chunk, total - got));
    const n = await v.read(buf);
    assert.ok(n > 0, `read returned ${n} after ${got} of ${total} bytes`);
    parts.push(buf.subarray(0, n));
    got += n;
  }
  return concat(parts);
}

/** The control page's words as the server sees them. */
function page(p: { w: World; s: Vchan }) {
  const mem = p.w.srv.ctx.mem;
  const base = p.s.controlPage;
  return {
    u32: (off: number) => mem.load32(base + off),
    set32: (off: number, v: number) => mem.store32(base + off, v >>> 0),
    u16: (off: number) => mem.load16(base + off),
    set16: (off: number, v: number) => mem.store16(base + off, v),
    u8: (off: number) => mem.readU8(base + off),
    hex: (len: number) => Buffer.from(mem.read(base, len)).toString('hex'),
  };
}

/** A domain's grant entries in use, less the toolstack's xenstore grant (reserved ref 1). */
function grantsOf(w: World, domid: number) {
  return snapshotTables(w.host.hypervisor)
    .find((t) => t.domid === domid)!
    .entries.filter((e) => e.ref !== GNTTAB_RESERVED_XENSTORE);
}

const SIZES = [1024, 2048, 4096, 16384, 65536];
const DIRS: Dir[] = ['s2c', 'c2s'];

describe('libxenvchan layout (§6.1) and orders (§6.2 step 2, §6.3 step 4)', () => {
  it('struct vchan_interface offsets: left 0/4, right 8/12, orders 16/18, live 20/21, notify 22/23, grants 24', () => {
    assert.deepEqual(
      [
        VCHAN_LEFT_CONS,
        VCHAN_LEFT_PROD,
        VCHAN_RIGHT_CONS,
        VCHAN_RIGHT_PROD,
        VCHAN_LEFT_ORDER,
        VCHAN_RIGHT_ORDER,
        VCHAN_CLI_LIVE,
        VCHAN_SRV_LIVE,
        VCHAN_CLI_NOTIFY,
        VCHAN_SRV_NOTIFY,
        VCHAN_GRANTS,
      ],
      [0, 4, 8, 12, 16, 18, 20, 21, 22, 23, 24],
    );
    assert.deepEqual([VCHAN_LIVE_WORD, VCHAN_NOTIFY_WORD], [20, 22], 'the u16 words holding the u8 fields');
    assert.deepEqual([VCHAN_NOTIFY_WRITE, VCHAN_NOTIFY_READ], [1, 2]);
    assert.equal(MAX_RING_SIZE, 1 << 20);
    assert.deepEqual([inPageOffset(10), inPageOffset(11), inPageOffset(12)], [1024, 2048, -1]);
    assert.deepEqual(
      [ringPages(10), ringPages(11), ringPages(12), ringPages(16), ringPages(20)],
      [0, 0, 1, 16, 256],
    );
  });

  it('min_order: the smallest n >= 12 with 2^n >= size', () => {
    const cases: [number, number][] = [
      [0, 12],
      [1, 12],
      [4096, 12],
      [4097, 13],
      [65536, 16],
      [65537, 17],
      [1 << 20, 20],
    ];
    for (const [size, order] of cases) assert.equal(minOrder(size), order, `min_order(${size})`);
  });

  it('§6.2 step 2: the server prefers in-page rings; order 10 only when both rings are in-page', () => {
    const cases: [number, number, [number, number] | null][] = [
      [0, 0, [10, 11]],
      [1024, 2048, [10, 11]],
      [1025, 1024, [11, 10]],
      [2048, 1024, [11, 10]],
      [1024, 1025 + 2048, [11, 12]],
      [2048, 2048, [11, 12]],
      [2049, 2048, [12, 11]],
      [4096, 1024, [12, 11]],
      [4097, 4096, [13, 12]],
      [65536, 16384, [16, 14]],
      [1 << 20, 1 << 20, [20, 20]],
      [(1 << 20) + 1, 0, null],
      [0, (1 << 20) + 1, null],
    ];
    for (const [l, r, want] of cases) {
      const got = serverOrders(l, r);
      assert.deepEqual(got === null ? null : [got.left, got.right], want, `server_init(${l}, ${r})`);
      if (got !== null) assert.equal(validateOrders(got), null, 'a server choice passes the client check');
    }
  });

  it('§6.3 step 4: the client refuses orders outside 10..20 and two in-page rings at one offset', () => {
    const bad: [number, number][] = [
      [9, 11],
      [11, 9],
      [21, 12],
      [12, 21],
      [10, 10],
      [11, 11],
      [0, 0],
      [0xffff, 12],
    ];
    for (const [left, right] of bad)
      assert.notEqual(validateOrders({ left, right }), null, `(${left}, ${right})`);
    const good: [number, number][] = [
      [10, 11],
      [11, 10],
      [12, 12],
      [10, 20],
      [20, 11],
      [20, 20],
    ];
    for (const [left, right] of good)
      assert.equal(validateOrders({ left, right }), null, `(${left}, ${right})`);
  });
});

describe('setup through xenstore (§6.2, §6.3)', () => {
  it('server: page zeroed and filled (orders, cli_live 2, srv_live 1, cli_notify WRITE), keys readable by the peer only', async () => {
    const w = world();
    const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 1024, 2048);
    const pg = page({ w, s });
    // left 0/0, right 0/0, orders 10 and 11, cli_live 2, srv_live 1, cli_notify WRITE, srv_notify 0.
    assert.equal(pg.hex(24), `${'00'.repeat(16)}0a000b0002010100`);
    assert.equal(s.isOpen(), 2, 'cli_live 2 (not yet connected) counts as open');
    // xenstore: decimal ref and port; owner = server with no access for others, READ for the peer.
    const cli = w.cli.svc.xs;
    assert.equal(await cli.read(`${w.path}/ring-ref`), String(s.controlRef));
    assert.equal(await cli.read(`${w.path}/event-channel`), String(s.localPort));
    for (const k of ['ring-ref', 'event-channel']) {
      assert.deepEqual(await w.xs0.getPerms(`${w.path}/${k}`), [
        { domid: w.srv.dom.domid, perm: 'n' },
        { domid: w.cli.dom.domid, perm: 'r' },
      ]);
      await assert.rejects(w.other.svc.xs.read(`${w.path}/${k}`), (e: unknown) => {
        return e instanceof XsError && e.code === 'EACCES';
      });
    }
    // The port is offered to the peer; the page is granted to it, writable.
    const st = w.srv.svc.events.status(s.localPort);
    assert.equal(st.status, EVTCHNSTAT_unbound);
    assert.equal(st.remoteDom, w.cli.dom.domid);
    const entries = grantsOf(w, w.srv.dom.domid);
    assert.deepEqual(
      entries.map((e) => [e.ref, e.domid, e.flagNames]),
      [[s.controlRef, w.cli.dom.domid, ['permit_access']]],
    );
    assert.equal(entries[0]!.frame, w.srv.dom.frameOf(s.controlPage));
    await s.close();
    await assertClean(w);
  });

  it('server: multi-page rings are granted separately, left pages first in grants[], then right', async () => {
    const w = world({ srvKind: 'hvm', cliKind: 'pv' });
    const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 16384, 65536);
    assert.deepEqual(s.orders, { left: 14, right: 16 });
    const pg = page({ w, s });
    const refs = Array.from({ length: 4 + 16 }, (_, i) => pg.u32(VCHAN_GRANTS + i * 4));
    const pages = [...s.ringPagesOf('read'), ...s.ringPagesOf('write')];
    assert.equal(pages.length, 20);
    const entries = new Map(grantsOf(w, w.srv.dom.domid).map((e) => [e.ref, e]));
    assert.equal(entries.size, 21, 'the control page and 20 ring pages');
    refs.forEach((ref, i) => {
      const e = entries.get(ref);
      assert.ok(e !== undefined, `grants[${i}] = ${ref} is a live grant`);
      assert.equal(e.domid, w.cli.dom.domid);
      assert.equal(e.flags, GTF_permit_access, 'writable');
      assert.equal(e.frame, w.srv.dom.frameOf(pages[i]!), `grants[${i}] grants ring page ${i}`);
    });
    assert.equal(pg.u32(VCHAN_GRANTS + 20 * 4), 0, 'nothing after the last grant');
    await s.close();
    await assertClean(w);
  });

  for (const [sk, ck] of [
    ['pv', 'pv'],
    ['hvm', 'hvm'],
    ['pv', 'hvm'],
    ['hvm', 'pv'],
  ] as [Kind, Kind][]) {
    it(`${sk} server, ${ck} client: connect (cli_live 1, srv_notify WRITE, event 1), read ring mapped read-only`, async () => {
      const w = world({ srvKind: sk, cliKind: ck, gnttabVersion: sk === 'hvm' ? 2 : 1 });
      const { s, c } = await connect(w, 16384, 65536);
      const pg = page({ w, s });
      assert.equal(pg.u8(VCHAN_CLI_LIVE), 1);
      assert.equal(pg.u8(VCHAN_SRV_LIVE), 1);
      assert.equal(pg.u8(VCHAN_CLI_NOTIFY), VCHAN_NOTIFY_WRITE);
      assert.equal(pg.u8(VCHAN_SRV_NOTIFY), VCHAN_NOTIFY_WRITE);
      assert.equal(s.isOpen(), 1);
      assert.equal(c.isOpen(), 1);
      // §6.5 event 1: the client wakes the server once connected.
      assert.equal(s.eventPending, true);
      assert.equal(await s.wait(), undefined);
      assert.equal(s.eventPending, false);
      // Xen's bind_interdomain conservatively marks the new local port pending: one spurious wake-up.
      assert.equal(c.eventPending, true);
      assert.equal(await c.wait(), undefined);
      assert.equal(c.eventPending, false);
      // Ports connected to each other.
      const st = w.cli.svc.events.status(c.localPort);
      assert.equal(st.status, EVTCHNSTAT_interdomain);
      assert.equal(st.remotePort, s.localPort);
      // Mappings: control page and write ring read/write, read ring read-only (§6.3 step 5).
      const maps = snapshotTables(w.host.hypervisor).find((t) => t.domid === w.cli.dom.domid)!.mappings;
      assert.equal(maps.length, 1 + 4 + 16);
      assert.equal(maps.filter((m) => m.flags.includes('readonly')).length, 16);
      const mem = w.cli.ctx.mem;
      const rd = c.ringPagesOf('read');
      const wr = c.ringPagesOf('write');
      assert.equal(rd.length, 16);
      assert.equal(wr.length, 4);
      assert.throws(() => mem.writeU8(rd[3]!, 1), GuestFault, 'the read ring is read-only');
      mem.writeU8(wr[3]!, 7);
      assert.equal(
        w.srv.ctx.mem.readU8(s.ringPagesOf('read')[3]!),
        7,
        'the write ring is the server read ring',
      );
      await closeAll({ w, s, c });
    });
  }

  it('client: missing keys, ref 0, port 0 or garbage: XenError (ENOENT, EACCES), nothing left behind', async () => {
    const w = world();
    const refused = (code: string) => (e: unknown) =>
      e instanceof XenError && e.op === 'libxenvchan_client_init' && e.code === code;
    // The server's directory is not readable by the client, so xenstored answers EACCES (not ENOENT).
    await assert.rejects(Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path), refused('EACCES'), 'no keys');
    const xs = w.srv.svc.xs;
    for (const [ref, port] of [
      ['0', '5'],
      ['x12', '5'],
      ['12', '0'],
      ['12', 'junk'],
    ]) {
      await xs.write(`${w.path}/ring-ref`, ref!);
      await xs.write(`${w.path}/event-channel`, port!);
      // Readable by the client, as server_init leaves them: the values themselves are refused.
      const perms = [
        { domid: w.srv.dom.domid, perm: 'n' as const },
        { domid: w.cli.dom.domid, perm: 'r' as const },
      ];
      await xs.setPerms(`${w.path}/ring-ref`, perms);
      await xs.setPerms(`${w.path}/event-channel`, perms);
      await assert.rejects(
        Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path),
        refused('ENOENT'),
        `${ref}/${port}`,
      );
    }
    // Not readable by the client: EACCES is a failure as well.
    await xs.write(`${w.path}/ring-ref`, '12');
    await xs.setPerms(`${w.path}/ring-ref`, [{ domid: w.srv.dom.domid, perm: 'n' }]);
    await assert.rejects(
      Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path),
      refused('EACCES'),
      'unreadable',
    );
    assert.deepEqual(portsInUse(w.cli), []);
    await xs.rm(w.path);
    await assertClean(w);
  });

  for (const [left, right] of [
    [9, 11],
    [10, 10],
    [11, 11],
    [21, 12],
  ] as [number, number][]) {
    it(`client: orders (${left}, ${right}) in the page are refused; its unmap notification tells the server`, async () => {
      const w = world();
      const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 1024, 2048);
      const pg = page({ w, s });
      pg.set16(VCHAN_LEFT_ORDER, left);
      pg.set16(VCHAN_RIGHT_ORDER, right);
      await assert.rejects(
        Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path),
        (e: unknown) => e instanceof XenError && e.code === 'EINVAL' && /ring orders/.test(e.message),
      );
      // The client mapped the page with a notification on cli_live: unmapping it cleared the byte and signalled.
      assert.equal(pg.u8(VCHAN_CLI_LIVE), 0);
      assert.equal(s.isOpen(), 0);
      assert.equal(s.eventPending, true);
      assert.equal(w.cli.dom.xen.gt.maptrack.liveCount(), 0);
      assert.deepEqual(portsInUse(w.cli), []);
      await s.close();
      await assertClean(w);
    });
  }

  it('client: a bad ref in grants[] fails the whole setup (all or nothing, §5.3)', async () => {
    const w = world({ srvKind: 'hvm', cliKind: 'hvm' });
    const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 8192, 8192);
    assert.deepEqual(s.orders, { left: 13, right: 13 });
    const pg = page({ w, s });
    const good = pg.u32(VCHAN_GRANTS + 3 * 4);
    pg.set32(VCHAN_GRANTS + 3 * 4, 4000); // the second page of the client's read ring
    await assert.rejects(
      Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path),
      (e: unknown) =>
        e instanceof XenError &&
        e.code === 'EINVAL' &&
        /ref 4000: GNTST_bad_gntref/.test(e.message) &&
        e.cause instanceof XenError &&
        e.cause.op === 'xengnttab_map_domain_grant_refs',
    );
    assert.equal(
      w.cli.dom.xen.gt.maptrack.liveCount(),
      0,
      'the write ring and the control page are unmapped again',
    );
    for (const a of w.srv.dom.xen.gt.activeEntries()) assert.equal(a.pin, 0);
    assert.equal(s.isOpen(), 0, 'cli_live cleared by the unmap notification');
    pg.set32(VCHAN_GRANTS + 3 * 4, good);
    await s.close();
    await assertClean(w);
  });

  it('server: sizes above 1 MiB are refused before anything is allocated', async () => {
    const w = world();
    const free = w.srv.svc.gnttab.freeCount;
    const tooBig = (e: unknown) =>
      e instanceof XenError && e.op === 'libxenvchan_server_init' && e.errno === 22;
    await assert.rejects(Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, MAX_RING_SIZE + 1, 0), tooBig);
    await assert.rejects(Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 0, MAX_RING_SIZE + 1), tooBig);
    assert.equal(w.srv.svc.gnttab.freeCount, free);
    assert.deepEqual(portsInUse(w.srv), []);
    await assertClean(w);
  });

  it('server: a path it may not write fails after the grants: everything is undone', async () => {
    const w = world();
    const path = `/local/domain/${w.cli.dom.domid}/data/vchan`; // the client's directory
    await assert.rejects(
      Vchan.serverInit(w.srv.svc, w.cli.dom.domid, path, 65536, 65536),
      (e: unknown) =>
        e instanceof XenError &&
        e.code === 'EACCES' &&
        e.cause instanceof XsError &&
        /publishing/.test(e.message),
    );
    assert.equal(await xsExists(w, `${path}/ring-ref`), false);
    await assertClean(w);
  });

  it('server: 1 MiB each way (order 20, 256 pages per ring) connects and carries data', async () => {
    const w = world({ memoryKiB: 4096 });
    const { s, c } = await connect(w, 1 << 20, 1 << 20);
    assert.deepEqual(c.orders, { left: 20, right: 20 });
    assert.equal(c.ringPagesOf('read').length, 256);
    s.blocking = true;
    c.blocking = true;
    const data = pattern(3 << 20, 20);
    const [n, got] = await drive(w.host, Promise.all([s.write(data), readAll(c, data.length, 1 << 20)]));
    assert.equal(n, data.length);
    assert.deepEqual(got, data);
    await closeAll({ w, s, c });
  });
});

describe('data path (§6.4): streams and packets, off-by-one around the ring size', () => {
  for (const size of SIZES) {
    for (const dir of DIRS) {
      it(`${size} B ${dir}: stream, non-blocking: size-1, size, size+1 (partial), full ring writes 0`, async () => {
        const p = await pair(dir, size);
        const { tx, rx } = p;
        let seed = 1;
        const sent: Uint8Array[] = [];
        const recvd: Uint8Array[] = [];
        const buf = new Uint8Array(size + 1);
        const drain = async (want: number) => {
          const n = await rx.read(buf);
          assert.equal(n, want);
          recvd.push(buf.slice(0, n));
        };
        // size - 1: fits, one byte of room left.
        let d = pattern(size - 1, seed++);
        assert.equal(await tx.write(d), size - 1);
        sent.push(d);
        assert.equal(tx.bufferSpace(), 1);
        assert.equal(rx.dataReady(), size - 1);
        // 2 bytes into 1 byte of room: a stream takes what fits.
        d = pattern(2, seed++);
        assert.equal(await tx.write(d), 1);
        sent.push(d.subarray(0, 1));
        assert.equal(tx.bufferSpace(), 0);
        assert.equal(await tx.write(pattern(1, seed++)), 0, 'full: nothing written');
        await drain(size);
        assert.equal(await rx.read(buf), 0, 'empty: non-blocking read gives 0');
        // size exactly, now starting mid-ring (wraps).
        d = pattern(size, seed++);
        assert.equal(await tx.write(d), size);
        sent.push(d);
        await drain(size);
        // size + 1: only size fit.
        d = pattern(size + 1, seed++);
        assert.equal(await tx.write(d), size);
        sent.push(d.subarray(0, size));
        await drain(size);
        assert.deepEqual(concat(recvd), concat(sent));
        await closeAll(p);
      });

      it(`${size} B ${dir}: packets: all or nothing; larger than the ring refused`, async () => {
        const p = await pair(dir, size);
        const { tx, rx } = p;
        const a = pattern(size - 1, 11);
        assert.equal(await tx.send(a), size - 1);
        assert.equal(await tx.send(pattern(2, 12)), 0, 'two bytes do not fit in one: nothing sent');
        assert.equal(tx.bufferSpace(), 1);
        assert.equal(await rx.recv(new Uint8Array(size)), 0, 'size-1 queued: a size packet is not there yet');
        const got = new Uint8Array(size - 1);
        assert.equal(await rx.recv(got), size - 1);
        assert.deepEqual(got, a);
        const b = pattern(size, 13);
        assert.equal(await tx.send(b), size, 'exactly the ring size, across the wrap');
        const got2 = new Uint8Array(size);
        assert.equal(await rx.recv(got2), size);
        assert.deepEqual(got2, b);
        // size + 1: non-blocking answers 0 (it does not fit now) before looking at the ring size ...
        assert.equal(await tx.send(pattern(size + 1, 14)), 0);
        assert.equal(await rx.recv(new Uint8Array(size + 1)), 0);
        // ... blocking refuses it: it can never fit (io.c's -1: EMSGSIZE), without waiting.
        tx.blocking = true;
        rx.blocking = true;
        assert.equal(await code(tx.send(pattern(size + 1, 14))), 'EMSGSIZE');
        assert.equal(await code(rx.recv(new Uint8Array(size + 1))), 'EMSGSIZE');
        assert.equal(rx.dataReady(), 0, 'nothing was sent');
        await closeAll(p);
      });

      it(`${size} B ${dir}: blocking stream of 3*size+1 bytes and packets of size-1, size`, async () => {
        const p = await pair(dir, size);
        const { w, tx, rx } = p;
        tx.blocking = true;
        rx.blocking = true;
        const data = pattern(3 * size + 1, 21);
        const [n, got] = await drive(
          w.host,
          Promise.all([tx.write(data), readAll(rx, data.length, size + 1)]),
        );
        assert.equal(n, data.length);
        assert.deepEqual(got, data);
        const packets = [size - 1, size, 1, size, size - 1].map((len, i) => pattern(len, 30 + i));
        const receiver = (async () => {
          const out: Uint8Array[] = [];
          for (const pk of packets) {
            const b = new Uint8Array(pk.length);
            assert.equal(await rx.recv(b), pk.length);
            out.push(b);
          }
          return out;
        })();
        const sender = (async () => {
          for (const pk of packets) assert.equal(await tx.send(pk), pk.length);
        })();
        const [out] = await drive(w.host, Promise.all([receiver, sender]));
        assert.deepEqual(out, packets);
        await closeAll(p);
      });
    }
  }

  it('u32 indices wrap: a stream across prod/cons 2^32 (>>> 0 everywhere)', async () => {
    const p = await pair('s2c', 4096);
    const pg = page(p);
    const start = 0xffff_f800;
    pg.set32(VCHAN_RIGHT_CONS, start);
    pg.set32(VCHAN_RIGHT_PROD, start);
    p.s.blocking = true;
    p.c.blocking = true;
    const data = pattern(5 * 4096 + 77, 5);
    const [n, got] = await drive(p.w.host, Promise.all([p.s.write(data), readAll(p.c, data.length, 3000)]));
    assert.equal(n, data.length);
    assert.deepEqual(got, data);
    assert.equal(pg.u32(VCHAN_RIGHT_PROD), (start + data.length) >>> 0);
    assert.equal(pg.u32(VCHAN_RIGHT_CONS), (start + data.length) >>> 0);
    assert.ok(pg.u32(VCHAN_RIGHT_PROD) < 0x10000, 'wrapped past 2^32');
    await closeAll(p);
  });

  it('full duplex, both rings multi-page (64 KiB left, 16 KiB right), v2 tables, hvm/pv', async () => {
    const w = world({ srvKind: 'hvm', cliKind: 'pv', gnttabVersion: 2 });
    const { s, c } = await connect(w, 65536, 16384);
    assert.deepEqual(s.orders, { left: 16, right: 14 });
    s.blocking = true;
    c.blocking = true;
    const up = pattern(200_000, 1);
    const down = pattern(150_001, 2);
    const r = await drive(
      w.host,
      Promise.all([c.write(up), readAll(s, up.length, 7000), s.write(down), readAll(c, down.length, 9999)]),
    );
    assert.equal(r[0], up.length);
    assert.deepEqual(r[1], up);
    assert.equal(r[2], down.length);
    assert.deepEqual(r[3], down);
    await closeAll({ w, s, c });
  });
});

describe('notification bytes (§6.4 request_notify / send_notify, §6.5)', () => {
  it('a writer signals only when the reader asked (WRITE), and the signal consumes the request', async () => {
    const p = await pair('c2s', 4096);
    const { s, c } = p;
    const pg = page(p);
    assert.equal(await s.wait(), undefined, 'event 1 (connect) consumed');
    // The server asked for WRITE at setup (cli_notify = WRITE): the first write signals.
    assert.equal(await c.write(pattern(10, 1)), 10);
    assert.equal(s.eventPending, true, '§6.5 event 2');
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_WRITE, 0, 'fetch-and-clear took the bit');
    assert.equal(await s.wait(), undefined);
    // Nobody asked again: the next write is silent.
    assert.equal(await c.write(pattern(10, 2)), 10);
    assert.equal(s.eventPending, false);
    // A reader that finds less than it wants asks again (fast_get_data_ready) ...
    assert.equal(await s.recv(new Uint8Array(30)), 0);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_WRITE, VCHAN_NOTIFY_WRITE);
    // ... and then hears of the next write.
    assert.equal(await c.write(pattern(10, 3)), 10);
    assert.equal(s.eventPending, true);
    assert.equal(await s.wait(), undefined);
    // A reader that finds enough does not ask.
    assert.equal(await s.recv(new Uint8Array(30)), 30);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_WRITE, 0);
    // data_ready() always asks (it is used outside the library).
    assert.equal(s.dataReady(), 0);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_WRITE, VCHAN_NOTIFY_WRITE);
    // The other byte was never touched by the server's requests: srv_notify still holds the client's WRITE.
    assert.equal(pg.u8(VCHAN_SRV_NOTIFY), VCHAN_NOTIFY_WRITE);
    await closeAll(p);
  });

  it('a full writer asks for READ; the reader signals when it consumes (§6.5 event 3)', async () => {
    const p = await pair('s2c', 2048);
    const { s, c } = p;
    const pg = page(p);
    await s.wait();
    assert.equal(await s.write(pattern(2048, 1)), 2048);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_READ, 0, 'room was there: no READ request');
    assert.equal(await s.write(pattern(1, 2)), 0);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_READ, VCHAN_NOTIFY_READ, 'full: READ requested');
    assert.equal(s.eventPending, false);
    assert.equal(await c.read(new Uint8Array(100)), 100);
    assert.equal(s.eventPending, true, 'the reader consumed and signalled');
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_READ, 0);
    // buffer_space() always asks.
    assert.equal(s.bufferSpace(), 100);
    assert.equal(pg.u8(VCHAN_CLI_NOTIFY) & VCHAN_NOTIFY_READ, VCHAN_NOTIFY_READ);
    await closeAll(p);
  });

  it('a byte store keeps the neighbouring byte the peer changes meanwhile (cmpxchg16 on the aligned word)', async () => {
    const p = await pair('s2c', 4096);
    const { s, c, w } = p;
    const words = w.host.hypervisor.machine.words;
    const live = w.srv.ctx.mem.wordAddr(s.controlPage + VCHAN_LIVE_WORD);
    const ops: string[] = [];
    let scribbled = false;
    words.interpose = (op, addr) => {
      if (addr !== live) return;
      ops.push(op);
      if (op === 'cmpxchg16' && !scribbled) {
        // Between the server's load and its compare-exchange, the client writes cli_live = 7.
        scribbled = true;
        const keep = words.interpose;
        words.interpose = null;
        w.cli.ctx.mem.store16(c.controlPage + VCHAN_LIVE_WORD, 0x0107);
        words.interpose = keep;
      }
    };
    await s.close(); // srv_live = 0
    words.interpose = null;
    assert.deepEqual(
      ops.slice(0, 3),
      ['load16', 'cmpxchg16', 'cmpxchg16'],
      'the first exchange failed and was retried',
    );
    assert.equal(w.cli.ctx.mem.readU8(c.controlPage + VCHAN_CLI_LIVE), 7, "the client's byte survived");
    assert.equal(w.cli.ctx.mem.readU8(c.controlPage + VCHAN_SRV_LIVE), 0);
    assert.equal(c.isOpen(), 0);
    await c.close();
    await assertClean(w);
  });
});

describe('a corrupt peer is clamped, not trusted (§6.4 raw_get_*)', () => {
  it('the server claims more data than the ring holds: the client sees 0, reads 0 bytes', async () => {
    const p = await pair('s2c', 4096);
    const { c } = p;
    const pg = page(p);
    assert.equal(await p.s.write(pattern(100, 1)), 100);
    const cons = pg.u32(VCHAN_RIGHT_CONS);
    for (const [prod, want] of [
      [cons + 4097, 0],
      [cons - 1, 0],
      [cons + 0x8000_0000, 0],
      [cons + 4096, 4096],
      [cons + 100, 100],
    ] as [number, number][]) {
      pg.set32(VCHAN_RIGHT_PROD, prod);
      assert.equal(c.dataReady(), want, `prod - cons = ${(prod - cons) >>> 0}`);
    }
    pg.set32(VCHAN_RIGHT_PROD, cons + 5000);
    const buf = new Uint8Array(8192).fill(0xee);
    assert.equal(await c.read(buf), 0, 'non-blocking: nothing to read');
    assert.equal(await c.recv(new Uint8Array(10)), 0);
    assert.ok(
      buf.every((b) => b === 0xee),
      'no byte copied',
    );
    assert.equal(pg.u32(VCHAN_RIGHT_CONS), cons, 'cons untouched');
    // Back to sane: the 100 bytes come through.
    pg.set32(VCHAN_RIGHT_PROD, cons + 100);
    const got = new Uint8Array(100);
    assert.equal(await c.read(got), 100);
    assert.deepEqual(got, pattern(100, 1));
    await closeAll(p);
  });

  it('the server moves the client’s write-ring cons past prod: no buffer space, writes 0', async () => {
    const p = await pair('c2s', 16384);
    const { c } = p;
    const pg = page(p);
    const prod = pg.u32(VCHAN_LEFT_PROD);
    for (const [cons, want] of [
      [prod + 5, 0],
      [prod - 16385, 0],
      [prod - 16384, 0],
      [prod - 1, 16383],
      [prod, 16384],
    ] as [number, number][]) {
      pg.set32(VCHAN_LEFT_CONS, cons);
      assert.equal(c.bufferSpace(), want, `prod - cons = ${(prod - cons) >>> 0}`);
    }
    pg.set32(VCHAN_LEFT_CONS, prod + 5);
    assert.equal(await c.write(pattern(10, 1)), 0);
    assert.equal(await c.send(pattern(10, 1)), 0);
    assert.equal(pg.u32(VCHAN_LEFT_PROD), prod, 'nothing published');
    pg.set32(VCHAN_LEFT_CONS, prod);
    await closeAll(p);
  });

  it('a corrupt client locks the server’s read ring; a blocked reader still ends when the client closes', async () => {
    const p = await pair('c2s', 4096);
    const { s, c, w } = p;
    const pg = page(p);
    pg.set32(VCHAN_LEFT_PROD, pg.u32(VCHAN_LEFT_CONS) + 9999);
    s.blocking = true;
    let result: number | string | undefined;
    const reading = code(s.read(new Uint8Array(64))).then((n) => {
      result = n;
    });
    await settle();
    assert.equal(result, undefined, 'waiting, not reading garbage');
    await c.close();
    await drive(w.host, reading);
    assert.equal(result, 'EPIPE', 'closed and (as far as the server trusts) drained');
    await s.close();
    await assertClean(w);
  });

  it('orders changed in the page after setup are ignored: each side keeps its own copy (§6.1)', async () => {
    const p = await pair('s2c', 4096);
    const pg = page(p);
    pg.set16(VCHAN_RIGHT_ORDER, 20);
    pg.set16(VCHAN_LEFT_ORDER, 20);
    assert.equal(p.c.readSize, 4096);
    assert.equal(p.s.writeSize, 4096);
    assert.equal(await p.s.write(pattern(8192, 3)), 4096, 'still a 4 KiB ring');
    const got = new Uint8Array(8192);
    assert.equal(await p.c.read(got), 4096);
    assert.deepEqual(got.subarray(0, 4096), pattern(8192, 3).subarray(0, 4096));
    await closeAll(p);
  });
});

describe('closing (§6.4 libxenvchan_close) and process death (§5.5)', () => {
  it('the server writes and closes: the client reads what is queued, then -1; is_open 0', async () => {
    const p = await pair('s2c', 4096);
    const { s, c, w } = p;
    const data = pattern(3000, 9);
    assert.equal(await s.write(data), 3000);
    await s.close();
    assert.equal(c.isOpen(), 0, 'srv_live cleared');
    assert.equal(c.eventPending, true, '§6.5 event 4');
    assert.equal(await xsExists(w, w.path), false, 'the server removed its tree');
    const got = new Uint8Array(2000);
    assert.equal(await c.read(got), 2000, 'queued data drains after the close');
    assert.equal(
      await code(c.recv(new Uint8Array(1001))),
      'EPIPE',
      'a packet larger than what is left: EPIPE',
    );
    const first = got.slice(0, 2000);
    assert.equal(await c.recv(got.subarray(0, 1000)), 1000);
    assert.deepEqual(concat([first, got.subarray(0, 1000)]), data);
    assert.equal(await code(c.read(got)), 'EPIPE', 'drained and closed');
    assert.equal(await code(c.write(pattern(1, 1))), 'EPIPE');
    assert.equal(await code(c.send(pattern(1, 1))), 'EPIPE');
    // The server's grants are still mapped by the client: their end is deferred.
    assert.ok(w.srv.svc.gnttab.deferredCount > 0);
    await c.close();
    await assertClean(w);
  });

  it('the client closes: the server sees cli_live 0 and an event; its reads throw EPIPE once drained', async () => {
    const p = await pair('c2s', 1024);
    const { s, c, w } = p;
    await s.wait();
    assert.equal(await c.write(pattern(500, 1)), 500);
    await s.wait();
    await c.close();
    assert.equal(s.isOpen(), 0);
    assert.equal(s.eventPending, true);
    assert.equal(page(p).u8(VCHAN_CLI_LIVE), 0);
    const got = new Uint8Array(600);
    assert.equal(await s.read(got), 500);
    assert.deepEqual(got.subarray(0, 500), pattern(500, 1));
    assert.equal(await code(s.read(got)), 'EPIPE');
    assert.equal(await code(s.write(got)), 'EPIPE');
    assert.equal(w.srv.svc.gnttab.deferredCount, 0, 'the client unmapped first: nothing deferred');
    await s.close();
    await assertClean(w);
  });

  it('close signals twice: the unmap notification and the explicit notify; process death only once', async () => {
    for (const who of ['server', 'client'] as const) {
      for (const dies of [false, true]) {
        const p = await pair('s2c', 16384);
        const side = who === 'server' ? p.w.srv : p.w.cli;
        const closing = who === 'server' ? p.s : p.c;
        const peer = who === 'server' ? p.c : p.s;
        const before = side.sends.n;
        if (dies) closing.abandon();
        else await closing.close();
        assert.equal(side.sends.n - before, dies ? 1 : 2, `${who} ${dies ? 'dies' : 'closes'}`);
        assert.equal(peer.isOpen(), 0);
        await peer.close();
        if (dies && who === 'server') await p.w.xs0.rm(p.w.path);
        await assertClean(p.w);
      }
    }
  });

  it('serverPersist keeps the server open whatever cli_live says', async () => {
    const p = await pair('s2c', 2048);
    p.s.serverPersist = true;
    await p.c.close();
    assert.equal(p.s.isOpen(), 1);
    await p.s.close();
    assert.equal(p.s.isOpen(), 0);
    await assertClean(p.w);
  });

  it('a blocked reader and a blocked writer wake with -1 when the peer closes (explicit notify)', async () => {
    for (const who of ['reader', 'writer'] as const) {
      const p = await pair('s2c', 4096);
      const { s, c, w } = p;
      s.blocking = true;
      c.blocking = true;
      let r: number | string | undefined;
      const op =
        who === 'reader'
          ? code(c.read(new Uint8Array(10))).then((n) => {
              r = n;
            })
          : code(s.write(pattern(10_000, 1))).then((n) => {
              r = n;
            });
      await settle();
      assert.equal(r, undefined, `${who} is waiting`);
      assert.ok(w.host.waiters > 0, 'asleep on its event channel, not spinning');
      if (who === 'reader') await s.close();
      else await c.close();
      await drive(w.host, op);
      assert.equal(r, 'EPIPE');
      if (who === 'reader') await c.close();
      else await s.close();
      await assertClean(w);
    }
  });

  it('before the client connects the server is open (cli_live 2) and may queue data', async () => {
    const w = world();
    const s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 1024, 2048);
    assert.equal(s.isOpen(), 2);
    assert.equal(await s.write(pattern(2048, 4)), 2048);
    const c = await Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path);
    const got = new Uint8Array(2048);
    assert.equal(await c.read(got), 2048);
    assert.deepEqual(got, pattern(2048, 4));
    await closeAll({ w, s, c });
  });

  it('§5.5: the client process dies: the kernel clears cli_live and signals; the server tears down', async () => {
    const p = await pair('c2s', 65536);
    const { s, c, w } = p;
    await s.wait();
    s.blocking = true;
    let r: number | string | undefined;
    const reading = code(s.read(new Uint8Array(10))).then((n) => {
      r = n;
    });
    await settle();
    c.abandon();
    assert.equal(page(p).u8(VCHAN_CLI_LIVE), 0, 'cleared by the gntdev unmap notification');
    await drive(w.host, reading);
    assert.equal(r, 'EPIPE', 'the notification event woke the reader');
    assert.deepEqual(portsInUse(w.cli), [], 'the dead process’s ports are closed');
    assert.equal(w.cli.dom.xen.gt.maptrack.liveCount(), 0);
    await s.close();
    await assertClean(w);
  });

  it('§5.5: the server process dies: the client sees srv_live 0; the keys stay for the toolstack', async () => {
    const p = await pair('s2c', 16384);
    const { s, c, w } = p;
    c.blocking = true;
    s.abandon();
    assert.equal(c.isOpen(), 0, 'srv_live cleared by the gntalloc unmap notification');
    assert.equal(c.eventPending, true, 'and the event sent');
    assert.equal(await code(c.read(new Uint8Array(5))), 'EPIPE');
    assert.equal(await xsExists(w, `${w.path}/ring-ref`), true, 'nobody removed the keys');
    assert.deepEqual(portsInUse(w.srv), []);
    await c.close();
    await w.xs0.rm(w.path);
    await assertClean(w);
  });
});

describe('wait (§6.4 libxenvchan_wait): an event-channel sleep, no spinning', () => {
  it('sleeps without hypercalls until the peer signals; resolves; EPIPE once closed', async () => {
    const p = await pair('c2s', 4096);
    const { s, c, w } = p;
    assert.equal(await s.wait(), undefined, 'the connect event');
    let done = false;
    const waiting = s.wait().then(() => {
      done = true;
      return 'woken';
    });
    const before = w.srv.hypercalls.n;
    for (let i = 0; i < 20; i++) await settle();
    assert.equal(done, false);
    assert.equal(w.srv.hypercalls.n, before, 'no hypercall while asleep');
    assert.equal(w.host.clock.pendingTimers, 0, 'and no polling timer');
    assert.equal(await c.write(pattern(5, 5)), 5);
    assert.equal(await drive(w.host, waiting), 'woken');
    await closeAll(p);
    assert.equal(await code(s.wait()), 'EPIPE');
  });

  it('two vchans of the same domains sleep at once and each wakes for its own channel', async () => {
    const w = world();
    const a = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, `${w.path}/a`, 4096, 4096);
    const b = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, `${w.path}/b`, 4096, 4096);
    const ca = await Vchan.clientInit(w.cli.svc, w.srv.dom.domid, `${w.path}/a`);
    const cb = await Vchan.clientInit(w.cli.svc, w.srv.dom.domid, `${w.path}/b`);
    a.blocking = true;
    b.blocking = true;
    const got: string[] = [];
    const ra = a.recv(new Uint8Array(3)).then((n) => got.push(`a${n}`));
    const rb = b.recv(new Uint8Array(4)).then((n) => got.push(`b${n}`));
    await settle();
    assert.deepEqual(got, []);
    assert.equal(await cb.send(pattern(4, 1)), 4);
    await drive(w.host, rb);
    assert.deepEqual(got, ['b4']);
    assert.equal(await ca.send(pattern(3, 1)), 3);
    await drive(w.host, ra);
    assert.deepEqual(got, ['b4', 'a3']);
    for (const v of [ca, cb, a, b]) await v.close();
    assert.equal(await xsExists(w, `${w.path}/a`), false);
    await w.xs0.rm(w.path);
    await assertClean(w);
  });
});

describe('Node idioms on libxenvchan: typed errors, writev, async iterator, Duplex, AbortSignal', () => {
  it("writev: the buffers as one stream write (write's semantics for their total)", async () => {
    const p = await pair('c2s', 4096);
    const { s, c } = p;
    const parts = [pattern(1000, 1), new Uint8Array(0), pattern(3000, 2), pattern(500, 3)];
    assert.equal(await c.writev(parts), 4096, 'non-blocking: as much as fits now');
    const got = new Uint8Array(4096);
    assert.equal(await s.recv(got), 4096);
    assert.deepEqual(got, concat(parts).subarray(0, 4096));
    c.blocking = true;
    s.blocking = true;
    const all = concat(parts);
    const [n, back] = await Promise.all([c.writev(parts), readAll(s, all.length, 999)]);
    assert.equal(n, all.length);
    assert.deepEqual(back, all);
    await closeAll(p);
  });

  it('a vchan is an async iterator of Uint8Array chunks, ending when the peer closes and the ring drains', async () => {
    const p = await pair('s2c', 1024);
    const { s, c, w } = p;
    const data = pattern(5000, 7);
    s.blocking = true;
    const sending = s.write(data).then(async (n) => {
      await s.close();
      return n;
    });
    const chunks: Uint8Array[] = [];
    for await (const chunk of c) chunks.push(chunk);
    assert.equal(await sending, 5000);
    assert.deepEqual(concat(chunks), data);
    assert.ok(chunks.every((b) => b.length <= 1024));
    await c.close();
    await assertClean(w);
  });

  it('a vchan as a node:stream Duplex: Buffers both ways, the end of the stream when the peer closes; the stream owns the vchan', async () => {
    const p = await pair('c2s', 2048);
    const { s, c, w } = p;
    const up = pattern(20_000, 3);
    const server = s.stream();
    const client = c.stream({ chunkSize: 512 });
    const writing = (async () => {
      for (let o = 0; o < up.length; o += 3000) {
        if (!client.write(up.subarray(o, o + 3000))) await new Promise((r) => client.once('drain', r));
      }
    })();
    const got: Buffer[] = [];
    let n = 0;
    for await (const chunk of server.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      got.push(chunk);
      n += chunk.length;
      if (n >= up.length) break;
    }
    await writing;
    assert.deepEqual(new Uint8Array(Buffer.concat(got)), up);
    // The server answers and goes: end() flushes into the ring, destroy() closes the vchan.
    await new Promise<void>((r) => server.end(Buffer.from('bye'), () => r()));
    server.destroy();
    await new Promise((r) => server.once('close', r));
    assert.equal(s.isOpen(), 0);
    const back: Buffer[] = [];
    for await (const chunk of client as AsyncIterable<Buffer>) back.push(chunk);
    assert.equal(Buffer.concat(back).toString(), 'bye', 'read to the end: the peer closed');
    // The peer's close ended the readable side, so the writable side ends too (no half-open
    // vchan): the stream finishes, destroys itself and closes its vchan, on every Node line.
    if (!client.closed) await new Promise((r) => client.once('close', r));
    assert.equal(client.writableFinished, true, 'the writable side ended with the readable');
    assert.equal(c.isOpen(), 0);
    await assertClean(w);
  });

  it('stream.pipeline: the server pipes its stream through a Transform back into itself, the client a Readable into its own', async () => {
    const p = await pair('c2s', 2048);
    const { s, c, w } = p;
    // The server: every byte back upper-cased, until the client closes.
    const server = s.stream();
    const upper = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        cb(null, Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1'));
      },
    });
    const serving = pipeline(server, upper, server);
    // The client: 7000 bytes (more than either ring) in from a Readable, read back alongside.
    const text = Array.from({ length: 500 }, (_, i) => `line ${i % 10}; `).join('');
    const client = c.stream({ chunkSize: 512 });
    const sending = pipeline(
      Readable.from(
        Array.from({ length: Math.ceil(text.length / 300) }, (_, i) =>
          Buffer.from(text.slice(i * 300, i * 300 + 300), 'latin1'),
        ),
      ),
      client,
    );
    const back: Buffer[] = [];
    let n = 0;
    for await (const chunk of client as AsyncIterable<Buffer>) {
      back.push(chunk);
      n += chunk.length;
      if (n >= text.length) break; // leaving the loop destroys the stream, which closes c
    }
    await sending;
    assert.equal(Buffer.concat(back).toString('latin1'), text.toUpperCase());
    // The client's close ends the server's readable side: the pipeline finishes and its stream closes s.
    await serving;
    if (!server.closed) await new Promise((r) => server.once('close', r));
    assert.equal(s.isOpen(), 0);
    assert.equal(c.isOpen(), 0);
    await assertClean(w);
  });

  it('waits take an AbortSignal: wait, a blocking read and the iterator reject with its reason; nothing keeps waiting', async () => {
    const p = await pair('c2s', 4096);
    const { s, c, w } = p;
    await s.wait();
    const ac = new AbortController();
    const waiting = s.wait({ signal: ac.signal });
    await settle();
    assert.ok(w.host.waiters > 0);
    ac.abort();
    await assert.rejects(waiting, (e: unknown) => e instanceof Error && e.name === 'AbortError');
    assert.equal(w.host.waiters, 0, 'the aborted wait left nothing behind');
    s.blocking = true;
    await assert.rejects(
      s.read(new Uint8Array(10), { signal: AbortSignal.abort(new Error('stop reading')) }),
      /stop reading/,
    );
    const it = new AbortController();
    const reading = (async () => {
      for await (const _ of s.chunks({ signal: it.signal })) it.abort();
    })();
    assert.equal(await c.write(pattern(10, 1)), 10);
    const ended = await drive(
      w.host,
      reading.then(
        () => null,
        (e: unknown) => e,
      ),
    );
    assert.ok(ended instanceof Error && ended.name === 'AbortError', String(ended));
    assert.equal(w.host.waiters, 0);
    // The channel still works after the aborts.
    assert.equal(await c.write(pattern(5, 2)), 5);
    const got = new Uint8Array(5);
    assert.equal(await s.read(got), 5);
    assert.deepEqual(got, pattern(5, 2));
    await closeAll(p);
  });

  it('await using closes the vchan (Symbol.asyncDispose)', async () => {
    const w = world();
    {
      await using s = await Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, 1024, 1024);
      await using c = await Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path);
      assert.equal(c.isOpen(), 1);
      assert.equal(s.isOpen(), 1);
    }
    assert.equal(await xsExists(w, `${w.path}/ring-ref`), false, 'the server removed its keys');
    await assertClean(w);
  });
});
