// The host API's typed surface: machine memory that is the caller's
// SharedArrayBuffer (a shared WebAssembly.Memory) in one thread and in worker
// threads, typed guest jobs (runGuests, spawn<T>), spawn's AbortSignal and
// `await using` of a WorkerHost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type GuestContext, type GuestJob, Host, PageAllocator, WorkerHost } from 'gnttab';
import type { SabGuestArgs } from '../fixtures/sab-guest.ts';

const sabGuest = new URL('../fixtures/sab-guest.ts', import.meta.url);

/** The pattern sab-guest writes for a seed. */
function pattern(seed: number): Uint8Array {
  return new Uint8Array(4096).map((_, i) => (seed + i * 7) & 0xff);
}

// The WebAssembly global, as far as these tests use it (lib es2023 does not declare it).
declare const WebAssembly: {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: ArrayBufferLike };
};

/** 16 MiB of shared wasm memory, filled with garbage the host must not trust. */
function wasmMemory(): { buffer: ArrayBufferLike } {
  const m = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });
  new Uint8Array(m.buffer).fill(0xa5);
  return m;
}

function workerResources(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'MessagePort' || r === 'Worker').length;
}

/**
 * The count of worker resources once it has stopped changing: a thread or port
 * of an earlier test that is still closing (slow on a loaded machine) must not
 * count against this one. Waits in event-loop turns, not time.
 */
async function settledWorkerResources(): Promise<number> {
  let last = workerResources();
  let same = 0;
  for (let turn = 0; turn < 20_000 && same < 200; turn++) {
    await new Promise<void>((r) => setImmediate(r));
    const now = workerResources();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}

describe('machine memory from the caller (machineSab)', () => {
  it('one thread: a shared WebAssembly.Memory is the machine; frames sit at MFN * 4096', async () => {
    const mem = wasmMemory();
    const sab = mem.buffer as SharedArrayBuffer;
    const host = new Host({ machineSab: sab });
    assert.equal(host.hypervisor.machine.sab, sab);
    const d = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const main = async (ctx: GuestContext, args: { seed: number }) => {
      const pages = new PageAllocator(ctx);
      const page = pages.alloc();
      ctx.mem.write(page, pattern(args.seed));
      return { frame: pages.gfnOf(page), page };
    };
    const [o] = await host.runGuests([{ domid: d.domid, main, args: { seed: 3 } }]);
    assert.equal(o.ok, true, String(o.error));
    const r = o.result!;
    assert.equal(d.frameOf(r.page), r.frame);
    // What wasm code would read at that machine address.
    assert.deepEqual(new Uint8Array(mem.buffer, r.frame * 4096, 4096), pattern(3));
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(d.domid);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('worker threads: every thread runs over the caller buffer', async () => {
    const mem = wasmMemory();
    const sab = mem.buffer as SharedArrayBuffer;
    const wh = await WorkerHost.start({ machineSab: sab });
    try {
      assert.equal(wh.machineSab, sab);
      const a = await wh.createDomain({ kind: 'pv', memoryKiB: 512 });
      const b = await wh.createDomain({ kind: 'pv', memoryKiB: 512 });
      const args: SabGuestArgs = { seed: 11 };
      const [ra, rb] = await Promise.all([
        wh.spawn<{ frame: number }>(a, sabGuest, args),
        wh.spawn<{ frame: number }>(b, sabGuest, { seed: 200 }),
      ]);
      assert.notEqual(ra.frame, rb.frame);
      assert.deepEqual(new Uint8Array(sab, ra.frame * 4096, 4096), pattern(11));
      assert.deepEqual(new Uint8Array(sab, rb.frame * 4096, 4096), pattern(200));
      const s = await wh.stats();
      assert.ok(s.freeFrames < sab.byteLength / 4096);
      assert.deepEqual(await wh.checkInvariants(), []);
    } finally {
      await wh.shutdown();
    }
  });

  it('a buffer that is not whole frames, too small, not shared, or disagrees with memoryMiB is refused', async () => {
    assert.throws(() => new Host({ machineSab: new SharedArrayBuffer(4096 * 16 + 1) }), RangeError);
    assert.throws(() => new Host({ machineSab: new SharedArrayBuffer(4096 * 15) }), RangeError);
    assert.throws(
      () => new Host({ machineSab: new ArrayBuffer(1 << 20) as unknown as SharedArrayBuffer }),
      TypeError,
    );
    assert.throws(
      () => new Host({ memoryMiB: 2, machineSab: new SharedArrayBuffer(1 << 20) }),
      /memoryMiB 2 disagrees with machineSab's 1 MiB/,
    );
    assert.equal(
      new Host({ memoryMiB: 1, machineSab: new SharedArrayBuffer(1 << 20) }).hypervisor.machine.nrFrames,
      256,
    );
    const before = workerResources();
    await assert.rejects(WorkerHost.start({ machineSab: new SharedArrayBuffer(5000) }), RangeError);
    assert.equal(workerResources(), before);
  });
});

describe('typed guest jobs', () => {
  it('runGuests checks args against main and types each result', async () => {
    const host = new Host();
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const twice = (_ctx: GuestContext, args: { n: number }) => args.n * 2;
    const hello = async (ctx: GuestContext) => `d${ctx.start.domid}`;
    const [x, y] = await host.runGuests([
      { domid: a.domid, main: twice, args: { n: 21 } },
      { domid: b.domid, main: hello },
    ]);
    const n: number | undefined = x.result;
    const s: string | undefined = y.result;
    assert.equal(n, 42);
    assert.equal(s, `d${b.domid}`);
    // A list typed by hand works too.
    const jobs: GuestJob<{ n: number }, number>[] = [{ domid: a.domid, main: twice, args: { n: 1 } }];
    const [z] = await host.runGuests(jobs);
    assert.equal(z?.result, 2);
    // @ts-expect-error args that main does not take do not type-check
    await host.runGuests([{ domid: a.domid, main: twice, args: { n: 'one' } }]);
  });
});

describe('spawn with an AbortSignal, await using a WorkerHost', () => {
  it('aborting a running guest destroys its domain and rejects with the reason', async () => {
    const before = await settledWorkerResources();
    {
      await using wh = await WorkerHost.start({ memoryMiB: 16 });
      const d = await wh.createDomain({ kind: 'pv', memoryKiB: 256 });
      const ac = new AbortController();
      const run = wh.spawn(d, sabGuest, { seed: 0, mode: 'hang' }, { signal: ac.signal });
      await new Promise((r) => setTimeout(r, 50));
      ac.abort(new Error('enough'));
      await assert.rejects(run, /enough/);
      assert.equal((await wh.stats()).domains, 0);
      await assert.rejects(wh.spawn(d, sabGuest, { seed: 0 }), /not a live domain/);
      // An aborted signal refuses at once.
      const e = await wh.createDomain({ kind: 'pv', memoryKiB: 256 });
      await assert.rejects(wh.spawn(e, sabGuest, { seed: 0 }, { signal: AbortSignal.abort() }), {
        name: 'AbortError',
      });
      assert.deepEqual(await wh.checkInvariants(), []);
    }
    // The scope's end shut the host down: no thread or port is left.
    assert.equal(await settledWorkerResources(), before);
  });
});

describe('GuestMemory: addresses and lengths are type-checked', () => {
  const host = new Host({ memoryMiB: 16 });
  const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
  const m = d.memory;
  const bad: unknown[] = [
    '0',
    null,
    true,
    false,
    undefined,
    0n,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    {},
  ];
  // Every method that takes an address, called with `a` there and good values elsewhere.
  const calls: [string, (a: never) => unknown][] = [
    ['read', (a) => m.read(a, 2)],
    ['readInto', (a) => m.readInto(a, new Uint8Array(2))],
    ['write', (a) => m.write(a, new Uint8Array(2))],
    ['fill', (a) => m.fill(a, 2)],
    ['copy dst', (a) => m.copy(a, 0, 2)],
    ['copy src', (a) => m.copy(0x100, a, 2)],
    ['readU8', (a) => m.readU8(a)],
    ['readU16', (a) => m.readU16(a)],
    ['readU32', (a) => m.readU32(a)],
    ['readU64', (a) => m.readU64(a)],
    ['writeU8', (a) => m.writeU8(a, 1)],
    ['writeU16', (a) => m.writeU16(a, 1)],
    ['writeU32', (a) => m.writeU32(a, 1)],
    ['writeU64', (a) => m.writeU64(a, 1)],
    ['load16', (a) => m.load16(a)],
    ['store16', (a) => m.store16(a, 1)],
    ['cmpxchg16', (a) => m.cmpxchg16(a, 0, 1)],
    ['or16', (a) => m.or16(a, 1)],
    ['and16', (a) => m.and16(a, 1)],
    ['load32', (a) => m.load32(a)],
    ['store32', (a) => m.store32(a, 1)],
    ['cmpxchg32', (a) => m.cmpxchg32(a, 0, 1)],
    ['wordAddr', (a) => m.wordAddr(a)],
    ['mapped', (a) => m.mapped(a)],
    ['frameOf', (a) => m.frameOf(a)],
    ['virtToMfn', (a) => m.virtToMfn(a)],
  ];

  it('a non-number address is the same TypeError everywhere, and nothing is read or written', () => {
    m.write(0, new Uint8Array([7, 7, 7, 7, 7, 7, 7, 7]));
    for (const [name, call] of calls) {
      for (const a of bad) {
        assert.throws(
          () => call(a as never),
          (e: unknown) =>
            e instanceof TypeError && /^d0: a guest address must be an integer number, got /.test(e.message),
          `${name}(${String(a)})`,
        );
      }
    }
    // null and true would have been addresses 0 and 1 had they been coerced.
    assert.deepEqual([...m.read(0, 8)], [7, 7, 7, 7, 7, 7, 7, 7]);
  });

  it('an integer address the guest cannot reach faults (GuestFault), not a TypeError', () => {
    for (const a of [-1, 2 ** 53, 2 ** 60]) {
      assert.throws(() => m.read(a, 2), { name: 'GuestFault' });
    }
  });

  it('a length must be a non-negative integer; write and readInto take a Uint8Array', () => {
    for (const len of ['2', -1, 1.5, null, 2n]) {
      assert.throws(() => m.read(0, len as never), /a length must be a non-negative integer/);
      assert.throws(() => m.fill(0, len as never), /a length must be a non-negative integer/);
    }
    assert.throws(() => m.write(0, [1, 2] as never), /write takes a Uint8Array/);
    assert.throws(() => m.readInto(0, 'xx' as never), /readInto fills a Uint8Array/);
    assert.deepEqual([...m.read(0, 2)], [7, 7]);
  });
});
