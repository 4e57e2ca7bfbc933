// Hypervisor trace records, in the spirit of xentrace (xen/common/trace.c):
// off unless a buffer is attached; when on, each hypercall (and each domain
// created or destroyed) costs a few stores into a ring of fixed-size records in
// a SharedArrayBuffer, and a reader in any thread drains them in batches. A
// full ring drops new records and counts them (Xen's t_buf "lost records"),
// so a slow reader never slows the hypervisor down.
import { Worker } from 'node:worker_threads';

/** Record kinds (the event field, like Xen's TRC_* classes). */
export const TRC_HYPERCALL = 1;
export const TRC_DOM_CREATE = 2;
export const TRC_DOM_DESTROY = 3;

/** A hypercall's first argument as the 32-bit cmd a trace record keeps (any value a guest passes). */
export function subOp(arg: unknown): number {
  if (typeof arg === 'number') return arg | 0;
  if (typeof arg === 'bigint') return Number(BigInt.asIntN(32, arg));
  return 0;
}

/** Header words (Int32): records written, records read, records lost, the clock's stop word. */
const HEAD = 0;
const TAIL = 1;
const LOST = 2;
const CLOCK_STOP = 3;
/** Then one Float64: the time a clock thread keeps current (0: no clock, each record reads its own). */
const CLOCK_BYTE = 16;
const HEADER_BYTES = 24;
/** The clock thread: writes the time into the header every millisecond until told to stop. */
const CLOCK_THREAD = `
const { workerData } = require('node:worker_threads');
const hdr = new Int32Array(workerData.sab, 0, 4);
const clock = new Float64Array(workerData.sab, ${CLOCK_BYTE}, 1);
for (;;) {
  clock[0] = performance.timeOrigin + performance.now();
  if (Atomics.wait(hdr, ${CLOCK_STOP}, 0, 1) !== 'timed-out') break;
}
clock[0] = 0;
`;

/** Per record: four Int32 words (event<<16 | domid, nr, cmd, rc) and one Float64 (time, ms). */
const RECORD_WORDS = 4;

export interface TraceRecord {
  /** TRC_HYPERCALL, TRC_DOM_CREATE or TRC_DOM_DESTROY. */
  event: number;
  domid: number;
  /** Hypercall number (0 for domain events). */
  nr: number;
  /** The sub-op: grant_table_op's, memory_op's or event_channel_op's cmd (0 otherwise). */
  cmd: number;
  /** What the hypercall returned: 0 or -errno. */
  rc: number;
  /** performance.timeOrigin + performance.now() of the writing thread, in ms. */
  time: number;
}

/**
 * One ring of trace records over a SharedArrayBuffer: one writer (the thread
 * that runs the hypervisor) and one reader (the view). Build it with a
 * capacity, hand `sab` to the other thread, and open it there with fromSab.
 */
export class TraceBuffer {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  private readonly hdr: Int32Array;
  private readonly words: Int32Array;
  private readonly times: Float64Array;
  private readonly clock: Float64Array;
  /** The writer's copies: its own head, and the reader's tail as last seen. */
  private head: number;
  private seenTail: number;

  constructor(capacity = 1 << 16, sab?: SharedArrayBuffer) {
    // A power of two, so that slots stay in step when the 32-bit counters wrap.
    if (
      !Number.isInteger(capacity) ||
      capacity < 1 ||
      capacity > 1 << 24 ||
      (capacity & (capacity - 1)) !== 0
    )
      throw new RangeError(`a trace ring holds a power of two of records, 1 to 16M, got ${capacity}`);
    this.capacity = capacity;
    const bytes = HEADER_BYTES + capacity * (RECORD_WORDS * 4 + 8);
    this.sab = sab ?? new SharedArrayBuffer(bytes);
    if (this.sab.byteLength !== bytes)
      throw new RangeError(
        `a trace ring of ${capacity} records is ${bytes} bytes, got ${this.sab.byteLength}`,
      );
    this.hdr = new Int32Array(this.sab, 0, 4);
    this.clock = new Float64Array(this.sab, CLOCK_BYTE, 1);
    this.times = new Float64Array(this.sab, HEADER_BYTES, capacity);
    this.words = new Int32Array(this.sab, HEADER_BYTES + capacity * 8, capacity * RECORD_WORDS);
    this.head = Atomics.load(this.hdr, HEAD);
    this.seenTail = Atomics.load(this.hdr, TAIL);
  }

  /** The same ring, from the SharedArrayBuffer another thread made. */
  static fromSab(sab: SharedArrayBuffer): TraceBuffer {
    const capacity = (sab.byteLength - HEADER_BYTES) / (RECORD_WORDS * 4 + 8);
    return new TraceBuffer(capacity, sab);
  }

  /** Writer: one record. Never blocks; a full ring counts the record lost. */
  record(event: number, domid: number, nr: number, cmd: number, rc: number): void {
    const head = this.head;
    if (((head - this.seenTail) | 0) >= this.capacity) {
      this.seenTail = Atomics.load(this.hdr, TAIL);
      if (((head - this.seenTail) | 0) >= this.capacity) {
        Atomics.add(this.hdr, LOST, 1);
        return;
      }
    }
    const slot = head & (this.capacity - 1);
    const w = slot * RECORD_WORDS;
    this.words[w] = (event << 16) | (domid & 0xffff);
    this.words[w + 1] = nr;
    this.words[w + 2] = cmd;
    this.words[w + 3] = rc;
    // Reading the clock costs more than the rest of the record: a clock thread
    // keeps a coarse copy in the header (startClock); without one, each record reads it.
    const now = this.clock[0]!;
    this.times[slot] = now !== 0 ? now : performance.timeOrigin + performance.now();
    this.head = (head + 1) | 0;
    // Publishes the record: the reader loads HEAD before the record's words.
    Atomics.store(this.hdr, HEAD, this.head);
  }

  /**
   * Starts a thread that keeps the header's clock current (every ms), so that
   * writing a record reads a word instead of the system clock, as xentrace's
   * records take the TSC. Resolves with a function that stops it.
   */
  startClock(): () => void {
    const w = new Worker(CLOCK_THREAD, { eval: true, workerData: { sab: this.sab } });
    w.unref();
    return () => {
      Atomics.store(this.hdr, CLOCK_STOP, 1);
      Atomics.notify(this.hdr, CLOCK_STOP);
      void w.terminate();
      this.clock[0] = 0;
    };
  }

  /** Records lost to a full ring so far. */
  get lost(): number {
    return Atomics.load(this.hdr, LOST);
  }

  /** Records written so far. */
  get written(): number {
    return Atomics.load(this.hdr, HEAD);
  }

  /**
   * Reader: the records written since the last drain, oldest first; of more
   * than `keep`, only the newest `keep` are decoded and the others counted in
   * `skipped` (a view cannot show a million a second one by one anyway).
   */
  drain(keep = this.capacity): { records: TraceRecord[]; skipped: number } {
    const head = Atomics.load(this.hdr, HEAD);
    let tail = Atomics.load(this.hdr, TAIL);
    const waiting = (head - tail) | 0;
    const skipped = Math.max(0, waiting - keep);
    tail = (tail + skipped) | 0;
    const records: TraceRecord[] = [];
    while (tail !== head) {
      const slot = tail & (this.capacity - 1);
      const w = slot * RECORD_WORDS;
      const ev = this.words[w]!;
      records.push({
        event: ev >>> 16,
        domid: ev & 0xffff,
        nr: this.words[w + 1]!,
        cmd: this.words[w + 2]!,
        rc: this.words[w + 3]!,
        time: this.times[slot]!,
      });
      tail = (tail + 1) | 0;
    }
    // Frees the slots: the writer may reuse them once it sees TAIL move.
    Atomics.store(this.hdr, TAIL, tail);
    return { records, skipped };
  }
}
