// libxenvchan across threads: the server and the client run as guest programs
// (test/fixtures/vchan-guest.ts) in their domains' own worker threads, the
// hypervisor in its thread, all over one machine memory, with real waits on
// the event channel and real races on the ring indices and notify bytes
// (guest-side.md §6.4, §6.5). The same program also runs in one thread
// (Host.runGuests) as a cross-check. Each test ends with nothing left behind:
// no grant entry in use or mapping live in any table, no port open in either
// domain (as the guests themselves query it with EVTCHNOP_status), every ref
// back on the free lists, the xenstore path gone, the invariants empty.
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { WorkerHost } from '../../src/host/worker-host.ts';
import { GNTTAB_RESERVED_XENSTORE, Host } from '../../src/index.ts';
import type { XsClient } from '../../src/io/xenstore/api.ts';
import { XsError } from '../../src/io/xenstore/api.ts';
import vchanGuest, { type VchanGuestArgs, type VchanGuestResult } from '../fixtures/vchan-guest.ts';
import type { PipelineGuestArgs } from '../fixtures/vchan-pipeline-guest.ts';

const guestUrl = new URL('../fixtures/vchan-guest.ts', import.meta.url);
const pipelineUrl = new URL('../fixtures/vchan-pipeline-guest.ts', import.meta.url);

type Dir = 's2c' | 'c2s';
type Mode = 'stream' | 'packet' | 'pingpong';

/** (leftMin, rightMin) that give the ring of direction `dir` exactly `size` bytes (§6.2 step 2). */
function mins(dir: Dir, size: number): { leftMin: number; rightMin: number } {
  if (dir === 's2c') {
    if (size === 1024) return { leftMin: 2048, rightMin: 1024 };
    return { leftMin: 1024, rightMin: size };
  }
  if (size === 2048) return { leftMin: 2048, rightMin: 1024 };
  return { leftMin: size, rightMin: size === 1024 ? 2048 : 1024 };
}

/** Writes or packets around the ring size: size-1, size, size+1, a run of odd sizes, 1. */
function lengths(mode: Mode, size: number): number[] {
  if (mode === 'stream') return [size - 1, size, size + 1, 3 * size + 7, 1, 2 * size, 17];
  return [size - 1, size, size + 1, 1, size, 2 * size, size - 1, 3];
}

function args(
  role: 'server' | 'client',
  peer: number,
  path: string,
  o: { dir: Dir; mode: Mode; size: number; closeFirst?: 'server' | 'client'; version?: 1 | 2 },
): VchanGuestArgs {
  return {
    role,
    peer,
    path,
    ...(o.mode === 'pingpong' ? { leftMin: o.size, rightMin: o.size } : mins(o.dir, o.size)),
    dir: o.dir,
    mode: o.mode,
    lengths: lengths(o.mode, o.size),
    seed: o.size + (o.dir === 's2c' ? 1 : 2),
    closeFirst: o.closeFirst ?? 'client',
    gnttabVersion: o.version ?? 1,
    deferredWaitMs: 10_000,
  };
}

/** True when the node exists (the toolstack's view). */
async function xsExists(xs: XsClient, path: string): Promise<boolean> {
  try {
    await xs.read(path);
    return true;
  } catch (e) {
    if (e instanceof XsError && e.code === 'ENOENT') return false;
    throw e;
  }
}

/** A table's entries in use, less the toolstack's xenstore grant (reserved ref 1, to dom0). */
function inUse<T extends { ref: number; domid: number }>(entries: readonly T[]): T[] {
  return entries.filter((e) => !(e.ref === GNTTAB_RESERVED_XENSTORE && e.domid === 0));
}

/** What both guests must report, whatever the run. */
function assertResults(
  srv: VchanGuestResult,
  cli: VchanGuestResult,
  o: { dir: Dir; mode: Mode; size: number },
  over: Partial<VchanGuestArgs> = {},
) {
  const lens = over.lengths ?? lengths(o.mode, o.size);
  if (o.mode === 'pingpong') {
    const rounds = over.rounds ?? 0;
    let both = 0;
    for (let i = 0; i < rounds; i++) both += 2 * lens[i % lens.length]!;
    for (const r of [srv, cli]) {
      assert.equal(r.packets, rounds, `${r.role}: every round trip`);
      assert.equal(r.bytes, both, `${r.role}: every byte both ways`);
    }
  } else {
    const total =
      o.mode === 'stream'
        ? lens.reduce((a, b) => a + b, 0)
        : lens.filter((l) => l <= o.size).reduce((a, b) => a + b, 0);
    const [tx, rx] = o.dir === 's2c' ? [srv, cli] : [cli, srv];
    assert.equal(tx.bytes, total, 'the sender sent everything');
    assert.equal(rx.bytes, total, 'the receiver got everything, in order');
  }
  if (o.mode === 'packet') {
    const [tx, rx] = o.dir === 's2c' ? [srv, cli] : [cli, srv];
    assert.equal(tx.refused, lens.filter((l) => l > o.size).length, 'packets larger than the ring refused');
    assert.equal(rx.packets, lens.filter((l) => l <= o.size).length);
  }
  assert.deepEqual(srv.orders, cli.orders);
  const ringOrder = o.dir === 's2c' ? srv.orders.right : srv.orders.left;
  assert.equal(2 ** ringOrder, o.size);
  const second = srv.sawPeerClose ? srv : cli;
  assert.equal(srv.sawPeerClose !== cli.sawPeerClose, true, 'exactly one side waited for the other to close');
  assert.equal(second.readAfterClose, 'EPIPE', 'is_open went false and reads throw EPIPE once drained');
  for (const r of [srv, cli]) {
    assert.deepEqual(r.openPorts, [], `${r.role}: no port left open`);
    assert.equal(r.deferredLeft, 0, `${r.role}: no end of access still deferred`);
    assert.equal(r.freeRefs, r.tableSize - 8, `${r.role}: every grant ref freed`);
    assert.equal(r.grefSize, 0, `${r.role}: no gntalloc record left`);
  }
}

const SIZES = [1024, 2048, 4096, 16384, 65536];
const DIRS: Dir[] = ['s2c', 'c2s'];
const MODES: Mode[] = ['stream', 'packet'];

/** Sizes from a seed: 1..max each. */
function randomLengths(count: number, max: number, seed: number): number[] {
  let x = seed >>> 0;
  return Array.from({ length: count }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return 1 + ((x >>> 8) % max);
  });
}

describe('vchan between worker threads (real concurrency)', () => {
  let host: WorkerHost;
  let xs: XsClient;
  let n = 0;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 48, xenstore: true });
    xs = host.xenstore!;
    // The toolstack domain (dom0): never runs guest code here, so neither vchan end is privileged.
    const d0 = await host.createDomain({ kind: 'pv', memoryKiB: 256 });
    assert.equal(d0.domid, 0);
  });
  after(async () => {
    await host.shutdown();
  });

  async function run(
    o: {
      dir: Dir;
      mode: Mode;
      size: number;
      closeFirst?: 'server' | 'client';
      version?: 1 | 2;
      srvKind?: 'pv' | 'hvm';
      cliKind?: 'pv' | 'hvm';
    },
    over: Partial<VchanGuestArgs> = {},
  ): Promise<[VchanGuestResult, VchanGuestResult]> {
    const s = await host.createDomain({ kind: o.srvKind ?? 'pv', memoryKiB: 1024, maxGrantFrames: 8 });
    const c = await host.createDomain({ kind: o.cliKind ?? 'hvm', memoryKiB: 1024, maxGrantFrames: 8 });
    const path = `/local/domain/${s.domid}/data/vchan/w${n++}`;
    const [srv, cli] = (await Promise.all([
      host.spawn(s, guestUrl, { ...args('server', c.domid, path, o), ...over }),
      host.spawn(c, guestUrl, { ...args('client', s.domid, path, o), ...over }),
    ])) as [VchanGuestResult, VchanGuestResult];
    assertResults(srv, cli, o, over);
    assert.equal(await xsExists(xs, path), false, 'the server removed its xenstore tree');
    for (const t of await host.snapshot()) {
      if (t.domid !== s.domid && t.domid !== c.domid) continue;
      assert.deepEqual(inUse(t.entries), [], `d${t.domid}: no grant entry in use`);
      assert.deepEqual(t.mappings, [], `d${t.domid}: no mapping live`);
    }
    assert.deepEqual(await host.checkInvariants(), []);
    await host.destroyDomain(c.domid);
    await host.destroyDomain(s.domid);
    assert.deepEqual(await host.checkInvariants(), []);
    return [srv, cli];
  }

  for (const size of SIZES) {
    for (const dir of DIRS) {
      for (const mode of MODES) {
        it(`${size} B ring, ${dir}, ${mode}: ${lengths(mode, size).join(', ')} bytes`, {
          timeout: 60_000,
        }, async () => {
          await run({ dir, mode, size });
        });
      }
    }
  }

  for (const size of [1024, 4096, 65536]) {
    it(`${size} B rings: 3000 lock-step round trips (each recv finds too little, asks, re-reads: §6.4 fast_get_*)`, {
      timeout: 60_000,
    }, async () => {
      const lens = [1, 7, size >> 2, size - 1, size, 2];
      await run({ dir: 'c2s', mode: 'pingpong', size }, { lengths: lens, rounds: 3000 });
    });
  }

  for (const [dir, size] of [
    ['s2c', 1024],
    ['c2s', 2048],
    ['s2c', 16384],
  ] as [Dir, number][]) {
    it(`${size} B ring, ${dir}: 4000 writes of 1..${size + size / 2} bytes read back in random sizes`, {
      timeout: 60_000,
    }, async () => {
      await run(
        { dir, mode: 'stream', size },
        { lengths: randomLengths(4000, size + size / 2, size), randomReads: true },
      );
    });
  }

  // Blocking calls that spin on the peer's index before they ask for a
  // notification (the wait policy), with a bound so short that most spins
  // fail and the ask / look again / take back path races the peer's
  // fetch-and-clear, and with one long enough that most waits end spinning:
  // a lost wake-up hangs the run.
  for (const micros of [1, 200]) {
    const spin = () => ({ sab: new SharedArrayBuffer(4), cores: availableParallelism(), micros });
    it(`spinning up to ${micros} us: 3000 lock-step round trips on 1024 B rings, every byte back`, {
      timeout: 60_000,
    }, async () => {
      const lens = [1, 7, 256, 1023, 1024, 2];
      await run({ dir: 'c2s', mode: 'pingpong', size: 1024 }, { lengths: lens, rounds: 3000, spin: spin() });
    });
    it(`spinning up to ${micros} us: 4000 writes of 1..6144 bytes through a 4096 B ring, random reads`, {
      timeout: 60_000,
    }, async () => {
      await run(
        { dir: 's2c', mode: 'stream', size: 4096 },
        { lengths: randomLengths(4000, 6144, micros), randomReads: true, spin: spin() },
      );
    });
  }

  it('server closes first while the client still maps its grants: ends deferred, then completed (v2, hvm server)', {
    timeout: 60_000,
  }, async () => {
    const [srv] = await run({
      dir: 's2c',
      mode: 'stream',
      size: 16384,
      closeFirst: 'server',
      version: 2,
      srvKind: 'hvm',
      cliKind: 'pv',
    });
    assert.equal(srv.sawPeerClose, false);
  });

  // A stream's read and write block at once on one vchan: an event taken by the
  // first waiter only (the vchan's `fired` flag alone) hung about half of these runs.
  for (const ring of [1024, 4096]) {
    it(`stream.pipeline: ${ring} B rings, 3 rounds of 64 KiB piped in, through a Transform and back`, {
      timeout: 60_000,
    }, async () => {
      for (let round = 0; round < 3; round++) {
        const s = await host.createDomain({ kind: 'pv', memoryKiB: 1024, maxGrantFrames: 8 });
        const c = await host.createDomain({ kind: 'hvm', memoryKiB: 1024, maxGrantFrames: 8 });
        const path = `/local/domain/${s.domid}/data/vchan/p${n++}`;
        const a = (role: 'server' | 'client', peer: number): PipelineGuestArgs => ({
          role,
          peer,
          path,
          ring,
          total: 64 * 1024,
          piece: 1000 + round * 700,
        });
        const [srv, cli] = await Promise.all([
          host.spawn<string>(s, pipelineUrl, a('server', c.domid)),
          host.spawn<string>(c, pipelineUrl, a('client', s.domid)),
        ]);
        assert.equal(cli, 'upper-cased');
        assert.equal(srv, 'served');
        for (const t of await host.snapshot()) {
          if (t.domid !== s.domid && t.domid !== c.domid) continue;
          assert.deepEqual(inUse(t.entries), [], `d${t.domid}: no grant entry in use`);
          assert.deepEqual(t.mappings, [], `d${t.domid}: no mapping live`);
        }
        await host.destroyDomain(c.domid);
        await host.destroyDomain(s.domid);
        assert.deepEqual(await host.checkInvariants(), []);
      }
    });
  }

  it('1 MiB each way (order 20): 4 MiB stream client to server', { timeout: 60_000 }, async () => {
    const s = await host.createDomain({ kind: 'pv', memoryKiB: 4096, maxGrantFrames: 8 });
    const c = await host.createDomain({ kind: 'pv', memoryKiB: 1024, maxGrantFrames: 8 });
    const path = `/local/domain/${s.domid}/data/vchan/big`;
    const o = { dir: 'c2s' as const, mode: 'stream' as const, size: 1 << 20 };
    const a = (role: 'server' | 'client', peer: number): VchanGuestArgs => ({
      ...args(role, peer, path, o),
      leftMin: 1 << 20,
      rightMin: 1 << 20,
      lengths: [(1 << 20) - 1, 1 << 20, (1 << 20) + 1, 1 << 20],
    });
    const [srv, cli] = (await Promise.all([
      host.spawn(s, guestUrl, a('server', c.domid)),
      host.spawn(c, guestUrl, a('client', s.domid)),
    ])) as [VchanGuestResult, VchanGuestResult];
    assert.deepEqual(srv.orders, { left: 20, right: 20 });
    assert.equal(srv.bytes, 4 << 20);
    assert.equal(cli.bytes, 4 << 20);
    for (const r of [srv, cli]) {
      assert.deepEqual(r.openPorts, []);
      assert.equal(r.freeRefs, r.tableSize - 8);
    }
    for (const t of await host.snapshot()) {
      assert.deepEqual(inUse(t.entries), []);
      assert.deepEqual(t.mappings, []);
    }
    assert.equal(await xsExists(xs, path), false);
    assert.deepEqual(await host.checkInvariants(), []);
    await host.destroyDomain(c.domid);
    await host.destroyDomain(s.domid);
  });
});

describe('the same guest programs in one thread (Host.runGuests, virtual time)', () => {
  for (const [dir, mode, size] of [
    ['s2c', 'stream', 1024],
    ['c2s', 'packet', 4096],
    ['s2c', 'packet', 65536],
    ['c2s', 'stream', 16384],
  ] as [Dir, Mode, number][]) {
    it(`${size} B ring, ${dir}, ${mode}, the server closing first`, async () => {
      const host = new Host({ memoryMiB: 32, xenstore: true });
      host.createDomain({ kind: 'pv', memoryKiB: 256 });
      const s = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
      const c = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const path = `/local/domain/${s.domid}/data/vchan/st`;
      const o = { dir, mode, size, closeFirst: 'server' as const };
      const out = await host.runGuests([
        { domid: s.domid, main: vchanGuest as never, args: args('server', c.domid, path, o) },
        { domid: c.domid, main: vchanGuest as never, args: args('client', s.domid, path, o) },
      ]);
      for (const r of out) assert.equal(r.error, undefined, String(r.error?.stack));
      assertResults(out[0]!.result as VchanGuestResult, out[1]!.result as VchanGuestResult, o);
      assert.equal(await xsExists(host.xenstore!, path), false);
      // Left in use: each domain's xenstore channel (its store port and the Xen-attached end).
      assert.equal(s.xen.evtchn.inUse, 2);
      assert.equal(c.xen.evtchn.inUse, 2);
      assert.equal(c.xen.gt.maptrack.liveCount(), 0);
      for (const a of s.xen.gt.activeEntries()) assert.equal(a.pin, 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }
});
