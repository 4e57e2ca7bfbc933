// Notify avoidance in libxenvchan's blocking calls, counted by the hypervisor
// (its trace counters of EVTCHNOP_send by domain). io.c's request_notify sets
// a bit in the peer's notify byte and send_notify signals only when that bit
// was set (fetch-and-clear), so every event a side sends answers one request
// of its peer. Our blocking read and write request only as they are about to
// wait (and take a request back when the second look finds what they
// wanted), so in one thread, where nothing runs between that look and the
// wait, each side sends at most one event per wait of its peer, plus one for
// the WRITE request setup leaves for the writer (libxenvchan_server_init's
// cli_notify, libxenvchan_client_init's srv_notify). io.c's
// fast_get_data_ready instead asks whenever a read finds less than its
// buffer, which made every 4 KiB write to a reader with a 64 KiB buffer signal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { __HYPERVISOR_event_channel_op, EVTCHNOP_send } from '../../src/index.ts';
import { Vchan } from '../../src/io/vchan/index.ts';
import { assertClean, drive, pattern, type Side, type World, world } from './vchan-fixture.ts';

/** EVTCHNOP_send calls of the side's domain, as the hypervisor counted them. */
function sendsOf(w: World, s: Side): number {
  const op = w
    .trace!.totals()
    .ops.find(
      (o) => o.domid === s.dom.domid && o.nr === __HYPERVISOR_event_channel_op && o.cmd === EVTCHNOP_send,
    );
  return op?.calls ?? 0;
}

interface Transfer {
  /** Server to client (the right ring) or client to server (the left ring). */
  dir: 's2c' | 'c2s';
  ring: number;
  /** The writer's calls, each a blocking libxenvchan_write of this many bytes. */
  writes: readonly number[];
  /** The reader's buffer sizes, used in turn (blocking libxenvchan_read). */
  reads: readonly number[];
}

interface Counted {
  bytes: number;
  /** EVTCHNOP_send by the writer and the reader during the transfer. */
  txSends: number;
  rxSends: number;
  /** Waits for events (EventChannels.wait) of the writer and the reader. */
  txWaits: number;
  rxWaits: number;
}

/** Moves the writes through a fresh pair, both blocking, and counts what it cost. */
async function transfer(t: Transfer): Promise<Counted> {
  const w = world({ trace: true });
  // The ring of `dir` gets t.ring bytes; the other one the smallest that can go with it.
  const other = t.ring === 1024 ? 2048 : 1024;
  const [left, right] = t.dir === 's2c' ? [other, t.ring] : [t.ring, other];
  const s = await drive(w.host, Vchan.serverInit(w.srv.svc, w.cli.dom.domid, w.path, left, right));
  const c = await drive(w.host, Vchan.clientInit(w.cli.svc, w.srv.dom.domid, w.path));
  s.blocking = true;
  c.blocking = true;
  const [tx, rx] = t.dir === 's2c' ? [s, c] : [c, s];
  const [txSide, rxSide] = t.dir === 's2c' ? [w.srv, w.cli] : [w.cli, w.srv];
  assert.equal(tx.writeSize, t.ring);
  // The connect event (§6.5 event 1) is the server's: take it before counting.
  await drive(w.host, s.wait());
  const total = t.writes.reduce((a, b) => a + b, 0);
  const data = pattern(total, 7);
  const before = [sendsOf(w, txSide), sendsOf(w, rxSide), txSide.waits.n, rxSide.waits.n] as const;
  const writer = (async () => {
    let at = 0;
    for (const n of t.writes) {
      assert.equal(await tx.write(data.subarray(at, at + n)), n);
      at += n;
    }
  })();
  const got = new Uint8Array(total);
  const reader = (async () => {
    let at = 0;
    for (let i = 0; at < total; i++) {
      const size = Math.min(t.reads[i % t.reads.length]!, total - at);
      const n = await rx.read(got.subarray(at, at + size));
      assert.ok(n > 0 && n <= size, `read of ${size} returned ${n}`);
      at += n;
    }
  })();
  // drive() fails if both sides sleep with nothing left to wake them (a lost wakeup).
  await drive(w.host, Promise.all([writer, reader]));
  assert.deepEqual(got, data, 'every byte, in order');
  const out: Counted = {
    bytes: total,
    txSends: sendsOf(w, txSide) - before[0],
    rxSends: sendsOf(w, rxSide) - before[1],
    txWaits: txSide.waits.n - before[2],
    rxWaits: rxSide.waits.n - before[3],
  };
  await drive(w.host, c.close());
  await drive(w.host, s.close());
  await assertClean(w);
  return out;
}

/** The protocol's bound: an event answers a request, and a side requests only before it waits. */
function assertBound(r: Counted): void {
  // The writer may also answer the WRITE request that setup left it.
  assert.ok(
    r.txSends <= r.rxWaits + 1,
    `writer sent ${r.txSends} events for ${r.rxWaits} waits of the reader`,
  );
  assert.ok(r.rxSends <= r.txWaits, `reader sent ${r.rxSends} events for ${r.txWaits} waits of the writer`);
}

describe('notify avoidance (io.c request_notify / send_notify), counted by the hypervisor', () => {
  it('1 MiB in 4 KiB writes to a reader with a 64 KiB buffer (64 KiB ring): 1 EVTCHNOP_send, not 256', async () => {
    const t: Transfer = { dir: 's2c', ring: 65536, writes: Array(256).fill(4096), reads: [65536] };
    const r = await transfer(t);
    assertBound(r);
    // The ring never fills (the reader drains it between writes): the writer
    // never waits, so the reader never signals; the reader waits only once it
    // has drained the ring, and it never has.
    assert.deepEqual([r.txWaits, r.rxSends], [0, 0], 'the writer never waited, never asked for READ');
    assert.equal(r.txSends, 1, "only the connect's request was answered");
  });

  it('1 MiB in 64 KiB writes through a 4 KiB ring, 1000-byte reads: one event per wait of the writer, at most', async () => {
    const t: Transfer = { dir: 'c2s', ring: 4096, writes: Array(16).fill(65536), reads: [1000] };
    const r = await transfer(t);
    assertBound(r);
    // The reader only ever finds data (the writer keeps the ring full), so the writer signals only once.
    assert.equal(r.txSends, 1);
    // The writer waits whenever the ring is full; the reader signals once for each such wait, not once per read.
    assert.ok(r.rxSends < r.bytes / 1000 / 2, `${r.rxSends} events for ${Math.ceil(r.bytes / 1000)} reads`);
  });

  it('1024-byte in-page ring, 3000-byte writes, 700-byte reads', async () => {
    const t: Transfer = { dir: 's2c', ring: 1024, writes: Array(100).fill(3000), reads: [700] };
    assertBound(await transfer(t));
  });

  it('random rings, writes and reads: every byte arrives, no lost wakeup, events within the bound (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<'s2c' | 'c2s'>('s2c', 'c2s'),
        fc.constantFrom(1024, 2048, 4096, 16384),
        fc.array(fc.integer({ min: 1, max: 40000 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 40000 }), { minLength: 1, maxLength: 6 }),
        async (dir, ring, writes, reads) => {
          const t: Transfer = { dir, ring, writes, reads };
          assertBound(await transfer(t));
        },
      ),
      { numRuns: 40 },
    );
  });
});
