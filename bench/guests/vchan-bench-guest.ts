// Benchmark guest (one per domain worker): stream throughput server -> client
// through libxenvchan, then, between the same two threads, through a bare
// single-producer single-consumer byte ring of the same size over a
// SharedArrayBuffer. For each write size the writer times from the reader's
// "go" to the reader's acknowledgement that every byte arrived. Both use the
// same wait policy (src/machine/wait-policy.ts): spin for a bounded time while
// the two threads have a core each, then sleep; the policy's running count is
// a word of the bare ring's header that both guests join.
import os from 'node:os';
import type { GuestContext } from '../../src/guest/context.ts';
import { connectVchanServices, Vchan } from '../../src/io/vchan/index.ts';
import { XsError } from '../../src/io/xenstore/api.ts';
import { DEFAULT_SPIN_LIMIT, DEFAULT_SPIN_MICROS, WaitPolicy } from '../../src/machine/wait-policy.ts';

export interface VchanBenchArgs {
  role: 'server' | 'client';
  peer: number;
  path: string;
  ringSize: number;
  writeSizes: number[];
  /** Bytes moved per measurement. */
  totalBytes: number;
  reps: number;
  /** The bare ring: header words, then ringSize bytes of data. */
  bareSab: SharedArrayBuffer;
  /** The wait policy's spin bound in microseconds (default DEFAULT_SPIN_MICROS); 0: never spin. */
  spinMicros?: number;
}

export interface Measure {
  writeSize: number;
  /** Seconds per rep, as the writer timed them. */
  seconds: number[];
  /** Hypercalls (event-channel sends) this side made per MiB moved, vchan only. */
  hypercallsPerMiB?: number;
}

export interface VchanBenchResult {
  vchan: Measure[];
  bare: Measure[];
  hypercalls: number;
}

// ---- the bare ring -------------------------------------------------------------------------------

/** Int32 indexes of the bare ring's header words (prod and cons on separate 64-byte lines). */
const PROD = 0;
const CONS = 16;
const READER_WAITING = 32;
const WRITER_WAITING = 33;
const GO = 48;
const ACK = 49;
/** The wait policy's count of running threads (both guests). */
const RUNNING = 56;
export const BARE_HEADER = 256;

class BareRing {
  private readonly w: Int32Array;
  private readonly data: Uint8Array;
  private readonly size: number;
  private readonly policy: WaitPolicy;

  constructor(sab: SharedArrayBuffer, size: number, policy: WaitPolicy) {
    this.w = new Int32Array(sab, 0, BARE_HEADER / 4);
    this.data = new Uint8Array(sab, BARE_HEADER, size);
    this.size = size;
    this.policy = policy;
  }

  /** Waits while word i holds v: the policy's bounded spin, then its sleep. */
  private waitWhile(i: number, v: number): void {
    const w = this.w;
    if (this.policy.spinUntil(() => Atomics.load(w, i) !== v)) return;
    while (Atomics.load(w, i) === v) this.policy.sleep(w, i, v);
  }

  write(src: Uint8Array): void {
    const { w, data, size } = this;
    let pos = 0;
    while (pos < src.length) {
      const prod = Atomics.load(w, PROD) >>> 0;
      const cons = Atomics.load(w, CONS);
      const space = size - ((prod - (cons >>> 0)) >>> 0);
      if (space === 0) {
        Atomics.store(w, WRITER_WAITING, 1);
        if (Atomics.load(w, CONS) === cons) this.waitWhile(CONS, cons);
        Atomics.store(w, WRITER_WAITING, 0);
        continue;
      }
      const n = Math.min(space, src.length - pos);
      const at = prod & (size - 1);
      const first = Math.min(n, size - at);
      data.set(src.subarray(pos, pos + first), at);
      if (first < n) data.set(src.subarray(pos + first, pos + n), 0);
      Atomics.store(w, PROD, (prod + n) | 0);
      if (Atomics.load(w, READER_WAITING) !== 0) Atomics.notify(w, PROD);
      pos += n;
    }
  }

  /** Up to dst.length bytes; waits when empty. */
  read(dst: Uint8Array): number {
    const { w, data, size } = this;
    for (;;) {
      const cons = Atomics.load(w, CONS) >>> 0;
      const prod = Atomics.load(w, PROD);
      const ready = ((prod >>> 0) - cons) >>> 0;
      if (ready === 0) {
        Atomics.store(w, READER_WAITING, 1);
        if (Atomics.load(w, PROD) === prod) this.waitWhile(PROD, prod);
        Atomics.store(w, READER_WAITING, 0);
        continue;
      }
      const n = Math.min(ready, dst.length);
      const at = cons & (size - 1);
      const first = Math.min(n, size - at);
      dst.set(data.subarray(at, at + first), 0);
      if (first < n) dst.set(data.subarray(0, n - first), first);
      Atomics.store(w, CONS, (cons + n) | 0);
      if (Atomics.load(w, WRITER_WAITING) !== 0) Atomics.notify(w, CONS);
      return n;
    }
  }

  signal(i: number, v: number): void {
    Atomics.store(this.w, i, v);
    Atomics.notify(this.w, i);
  }

  waitFor(i: number, v: number): void {
    for (;;) {
      const cur = Atomics.load(this.w, i);
      if (cur === v) return;
      this.waitWhile(i, cur);
    }
  }
}

// ---- the guest -----------------------------------------------------------------------------------

function payload(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}

export default async function main(raw: GuestContext, a: VchanBenchArgs): Promise<VchanBenchResult> {
  let hypercalls = 0;
  const ctx: GuestContext = {
    ...raw,
    hypercall: (nr, ...args) => {
      hypercalls++;
      return raw.hypercall(nr, ...args);
    },
  };
  const policy = new WaitPolicy(
    new Int32Array(a.bareSab, 0, BARE_HEADER / 4),
    RUNNING,
    os.availableParallelism(),
    DEFAULT_SPIN_LIMIT,
    a.spinMicros ?? DEFAULT_SPIN_MICROS,
  );
  policy.join();
  const svc = connectVchanServices(ctx, { spinner: policy });
  const xs = svc.xs;
  let v: Vchan;
  if (a.role === 'server') {
    v = await Vchan.serverInit(svc, a.peer, a.path, 1024, a.ringSize);
  } else {
    for (let i = 0; ; i++) {
      try {
        await xs.read(`${a.path}/event-channel`);
        break;
      } catch (e) {
        if (!(e instanceof XsError) || i > 20_000) throw e;
        await ctx.clock.sleep(1);
      }
    }
    v = await Vchan.clientInit(svc, a.peer, a.path);
  }
  v.blocking = true;
  const one = new Uint8Array(1);
  const out: VchanBenchResult = { vchan: [], bare: [], hypercalls: 0 };
  const bare = new BareRing(a.bareSab, a.ringSize, policy);
  let round = 0;

  for (const ws of a.writeSizes) {
    const chunk = payload(ws);
    const writes = Math.max(1, Math.floor(a.totalBytes / ws));
    const total = writes * ws;
    const vm: Measure = { writeSize: ws, seconds: [] };
    const bm: Measure = { writeSize: ws, seconds: [] };
    let calls = 0;
    for (let rep = 0; rep < a.reps; rep++) {
      // vchan: the client says go (left ring), the server streams, the client acknowledges.
      const h0 = hypercalls;
      if (a.role === 'server') {
        if ((await v.recv(one)) !== 1) throw new Error('go');
        const t0 = performance.now();
        for (let i = 0; i < writes; i++) if ((await v.write(chunk)) !== ws) throw new Error('write');
        if ((await v.recv(one)) !== 1) throw new Error('ack');
        vm.seconds.push((performance.now() - t0) / 1000);
      } else {
        const buf = new Uint8Array(a.ringSize);
        if ((await v.send(one)) !== 1) throw new Error('send go');
        let got = 0;
        let last = 0;
        while (got < total) {
          const n = await v.read(buf);
          if (n <= 0) throw new Error(`read ${n}`);
          got += n;
          last = buf[n - 1]!;
        }
        if (got !== total || last !== chunk[ws - 1]) throw new Error('stream corrupt');
        if ((await v.send(one)) !== 1) throw new Error('send ack');
      }
      calls += hypercalls - h0;
      // The bare ring, between the same two threads.
      round++;
      if (a.role === 'server') {
        bare.waitFor(GO, round);
        const t0 = performance.now();
        for (let i = 0; i < writes; i++) bare.write(chunk);
        bare.waitFor(ACK, round);
        bm.seconds.push((performance.now() - t0) / 1000);
      } else {
        const buf = new Uint8Array(a.ringSize);
        bare.signal(GO, round);
        let got = 0;
        let last = 0;
        while (got < total) {
          const n = bare.read(buf);
          got += n;
          last = buf[n - 1]!;
        }
        if (got !== total || last !== chunk[ws - 1]) throw new Error('bare stream corrupt');
        bare.signal(ACK, round);
      }
    }
    vm.hypercallsPerMiB = calls / a.reps / (total / (1 << 20));
    out.vchan.push(vm);
    out.bare.push(bm);
  }
  // The client closes first; the server sees it and closes too.
  if (a.role === 'client') {
    await v.close();
  } else {
    while (v.isOpen() !== 0) await v.wait();
    await v.close();
    // cli_live goes 0 before the client unmaps the control page: an end of
    // access may be deferred until it has (the toolstack's check follows).
    for (let i = 0; i < 100 && svc.gnttab.deferredCount > 0; i++) await ctx.clock.sleep(10);
  }
  out.hypercalls = hypercalls;
  policy.leave();
  return out;
}
