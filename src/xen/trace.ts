// Hypervisor trace records, in the spirit of xentrace (xen/common/trace.c):
// off unless a buffer is attached; when on, each hypercall (and each domain
// created or destroyed) costs a few stores into a ring of fixed-size records in
// a SharedArrayBuffer, and a reader in any thread drains them in batches. A
// full ring drops new records and counts them (Xen's t_buf "lost records"),
// so a slow reader never slows the hypervisor down. Beside the ring, the same
// buffer counts every hypercall by domain and by op, as Xen's perf counters
// do (perfc_incra(hypercalls, ...)): exact totals, whatever the ring dropped.
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

/** Header words (Int32): records written, records read, the clock's stop word. */
const HEAD = 0;
const TAIL = 1;
const CLOCK_STOP = 2;
/**
 * Then Float64s: the time a clock thread keeps current (0: no clock, each
 * record reads its own) and the records lost (exact past 2^31; one writer, so
 * plain stores).
 */
const CLOCK = 2;
const LOST = 3;
const CLOCK_BYTE = CLOCK * 8;
const HEADER_BYTES = 32;
/**
 * Counters, Float64 pairs (calls, failed ones), exact to 2^53. Per domain
 * (domid & 0x7fff; domids are below DOMID_FIRST_RESERVED): its calls of ops
 * the op table had no room for.
 */
const DOMAIN_SLOTS = 0x8000;
/**
 * Per (domain, hypercall, sub-op): an open-addressing table of this many slots,
 * each four Int32 words (domid + 1, 0 when free; nr; cmd; unused) and a
 * counter pair. A guest passing random sub-ops fills it; what does not fit is
 * counted in its domain's unplaced pair.
 */
const OP_BITS = 10;
export const OP_SLOTS = 1 << OP_BITS;
/** Slots looked at before a new (domain, op) pair counts as unplaced. */
const OP_PROBES = 16;
const COUNT_BYTES = DOMAIN_SLOTS * 16 + OP_SLOTS * (16 + 16);
/** The clock thread: writes the time into the header every millisecond until told to stop. */
const CLOCK_THREAD = `
const { workerData } = require('node:worker_threads');
const hdr = new Int32Array(workerData.sab, 0, 3);
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

/** Exact counts of one domain's hypercalls, or of one (domain, hypercall, sub-op). */
export interface HypercallCount {
  domid: number;
  calls: number;
  /** Of which returned a negative errno. */
  failed: number;
}

export interface OpCount extends HypercallCount {
  nr: number;
  cmd: number;
}

/** What the hypervisor counted, read at one moment (a reader's look, not a snapshot under a lock). */
export interface TraceTotals {
  /** Every hypercall since the buffer was attached. */
  calls: number;
  failed: number;
  /** By domain, by domid. */
  domains: HypercallCount[];
  /** By (domain, hypercall, sub-op), by domid, nr, cmd. */
  ops: OpCount[];
  /** Calls of (domain, op) pairs that found no room in the op table: in calls and domains, not in ops. */
  unplaced: number;
  /** Trace records written into the ring, and dropped because it was full. */
  records: number;
  lost: number;
}

/**
 * One ring of trace records over a SharedArrayBuffer, and the hypercall
 * counters beside it: one writer (the thread that runs the hypervisor) and one
 * reader (the view). Build it with a capacity, hand `sab` to the other thread,
 * and open it there with fromSab.
 */
export class TraceBuffer {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  private readonly hdr: Int32Array;
  private readonly f64: Float64Array;
  private readonly unplacedCounts: Float64Array;
  private readonly opKeys: Int32Array;
  private readonly opCounts: Float64Array;
  private readonly words: Int32Array;
  private readonly times: Float64Array;
  /** The writer's copies: its own head, and the reader's tail as last seen. */
  private head: number;
  private seenTail: number;
  /** The writer's last (domain, op) and its slot: a loop of one op looks it up once. */
  private lastDomid = -1;
  private lastNr = 0;
  private lastCmd = 0;
  private lastSlot = -1;

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
    const bytes = HEADER_BYTES + COUNT_BYTES + capacity * (RECORD_WORDS * 4 + 8);
    this.sab = sab ?? new SharedArrayBuffer(bytes);
    if (this.sab.byteLength !== bytes)
      throw new RangeError(
        `a trace ring of ${capacity} records is ${bytes} bytes, got ${this.sab.byteLength}`,
      );
    this.hdr = new Int32Array(this.sab, 0, 3);
    this.f64 = new Float64Array(this.sab, 0, HEADER_BYTES / 8);
    let at = HEADER_BYTES;
    this.unplacedCounts = new Float64Array(this.sab, at, DOMAIN_SLOTS * 2);
    at += DOMAIN_SLOTS * 16;
    this.opCounts = new Float64Array(this.sab, at, OP_SLOTS * 2);
    at += OP_SLOTS * 16;
    this.opKeys = new Int32Array(this.sab, at, OP_SLOTS * 4);
    at += OP_SLOTS * 16;
    this.times = new Float64Array(this.sab, at, capacity);
    at += capacity * 8;
    this.words = new Int32Array(this.sab, at, capacity * RECORD_WORDS);
    this.head = Atomics.load(this.hdr, HEAD);
    this.seenTail = Atomics.load(this.hdr, TAIL);
  }

  /** The same buffer, from the SharedArrayBuffer another thread made. */
  static fromSab(sab: SharedArrayBuffer): TraceBuffer {
    const capacity = (sab.byteLength - HEADER_BYTES - COUNT_BYTES) / (RECORD_WORDS * 4 + 8);
    return new TraceBuffer(capacity, sab);
  }

  /** Writer: counts a hypercall that returned `rc` (exactly, whether or not the ring has room). */
  private count(domid: number, nr: number, cmd: number, rc: number): void {
    // One counter per call: the (domain, op) slot's, or its domain's unplaced
    // one (a domain's and the host's totals are sums, made by the reader).
    let slot = this.lastSlot;
    if (domid !== this.lastDomid || nr !== this.lastNr || cmd !== this.lastCmd) {
      slot = this.opSlot(domid, nr, cmd);
      this.lastDomid = domid;
      this.lastNr = nr;
      this.lastCmd = cmd;
      this.lastSlot = slot;
    }
    const c = slot >= 0 ? this.opCounts : this.unplacedCounts;
    const i = slot >= 0 ? slot * 2 : (domid & (DOMAIN_SLOTS - 1)) * 2;
    c[i] = c[i]! + 1;
    if (rc < 0) c[i + 1] = c[i + 1]! + 1;
  }

  /** The op table's slot of (domid, nr, cmd), claimed if new; -1 when it has no room. */
  private opSlot(domid: number, nr: number, cmd: number): number {
    const keys = this.opKeys;
    const tag = domid + 1;
    let slot =
      Math.imul(domid ^ Math.imul(nr, 0x9e3779b1) ^ Math.imul(cmd, 0x85ebca77), 0xc2b2ae3d) >>>
      (32 - OP_BITS);
    for (let probe = 0; probe < OP_PROBES; probe++) {
      const k = slot * 4;
      const t = keys[k]!;
      if (t === tag && keys[k + 1] === nr && keys[k + 2] === cmd) return slot;
      if (t === 0) {
        keys[k + 1] = nr;
        keys[k + 2] = cmd;
        // Publishes the key: a reader loads the tag before nr and cmd.
        Atomics.store(keys, k, tag);
        return slot;
      }
      slot = (slot + 1) & (OP_SLOTS - 1);
    }
    return -1;
  }

  /**
   * Writer: one record. Never blocks; a full ring counts the record lost. A
   * hypercall's is counted first, ring or no ring.
   */
  record(event: number, domid: number, nr: number, cmd: number, rc: number): void {
    if (event === TRC_HYPERCALL) this.count(domid, nr, cmd, rc);
    // Read from the header, not this view's copy: every hypercall thread writes
    // records (one at a time, under the hypervisor's trace lock), so another
    // thread's view may have moved the head since this one last did.
    const head = this.hdr[HEAD]!;
    if (((head - this.seenTail) | 0) >= this.capacity) {
      // Full when last seen. A plain look at the reader's tail first: it costs
      // nothing, where an atomic load costs about what the rest of a lost
      // record does, and a stale value only loses a record the reader was
      // freeing room for at that instant. The atomic load orders the slots'
      // reuse after the reader's reads of them.
      if (((head - this.hdr[TAIL]!) | 0) >= this.capacity) {
        this.f64[LOST] = this.f64[LOST]! + 1;
        return;
      }
      this.seenTail = Atomics.load(this.hdr, TAIL);
      if (((head - this.seenTail) | 0) >= this.capacity) {
        this.f64[LOST] = this.f64[LOST]! + 1;
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
    const now = this.f64[CLOCK]!;
    this.times[slot] = now !== 0 ? now : performance.timeOrigin + performance.now();
    this.head = (head + 1) | 0;
    // Publishes the record: the reader loads HEAD before the record's words.
    Atomics.store(this.hdr, HEAD, this.head);
  }

  /**
   * Starts a thread that keeps the header's clock current (every ms), so that
   * writing a record reads a word instead of the system clock, as xentrace's
   * records take the TSC. Returns a function that stops it.
   */
  startClock(): () => void {
    const w = new Worker(CLOCK_THREAD, { eval: true, workerData: { sab: this.sab } });
    w.unref();
    return () => {
      Atomics.store(this.hdr, CLOCK_STOP, 1);
      Atomics.notify(this.hdr, CLOCK_STOP);
      void w.terminate();
      this.f64[CLOCK] = 0;
    };
  }

  /** Records lost to a full ring so far. */
  get lost(): number {
    return this.f64[LOST]!;
  }

  /** Records written so far (a 32-bit counter: it wraps). */
  get written(): number {
    return Atomics.load(this.hdr, HEAD) >>> 0;
  }

  /** Reader: the hypercall counters as they stand, and the ring's written and lost counts. */
  totals(): TraceTotals {
    const byDomain = new Map<number, HypercallCount>();
    const add = (domid: number, calls: number, failed: number) => {
      const d = byDomain.get(domid);
      if (d === undefined) byDomain.set(domid, { domid, calls, failed });
      else {
        d.calls += calls;
        d.failed += failed;
      }
    };
    const ops: OpCount[] = [];
    const keys = this.opKeys;
    const oc = this.opCounts;
    for (let slot = 0; slot < OP_SLOTS; slot++) {
      const tag = Atomics.load(keys, slot * 4);
      if (tag === 0) continue;
      const op = {
        domid: tag - 1,
        nr: keys[slot * 4 + 1]!,
        cmd: keys[slot * 4 + 2]!,
        calls: oc[slot * 2]!,
        failed: oc[slot * 2 + 1]!,
      };
      ops.push(op);
      add(op.domid, op.calls, op.failed);
    }
    ops.sort((a, b) => a.domid - b.domid || a.nr - b.nr || a.cmd - b.cmd);
    let unplaced = 0;
    const uc = this.unplacedCounts;
    for (let domid = 0; domid < DOMAIN_SLOTS; domid++) {
      const calls = uc[domid * 2]!;
      if (calls === 0) continue;
      unplaced += calls;
      add(domid, calls, uc[domid * 2 + 1]!);
    }
    const domains = [...byDomain.values()].sort((a, b) => a.domid - b.domid);
    let calls = 0;
    let failed = 0;
    for (const d of domains) {
      calls += d.calls;
      failed += d.failed;
    }
    return { calls, failed, domains, ops, unplaced, records: this.written, lost: this.lost };
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
