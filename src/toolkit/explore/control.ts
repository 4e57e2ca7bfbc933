// The control block between the explorer and one guest's worker: a baton word
// that says who may run (the explorer or that guest), what the guest stopped
// at (a shared-word step, a hypercall, idle, done), and the explorer's answer.
// Only one thread runs at any moment: the one holding the baton.
import type { SharedOp } from '../../machine/shared-words.ts';

/** Int32 words. */
export const TURN = 0; // 0: the explorer runs; 1: the guest runs
export const KIND = 1; // what the guest stopped at (K_*)
export const OP = 2; // STEP: op code (OP_NAMES index)
export const RESUME = 3; // the explorer's answer (R_*)
export const NARGS = 4; // HYPERCALL: argument count
export const BIGINTS = 5; // HYPERCALL: bit i set when argument i is a bigint (bit 6: the number)
export const NWAIT = 6; // IDLE: words waited on
export const NNOTIFY = 7; // notifies since the last report (-1: too many to list)
export const HCERR = 8; // HYPERCALL answer: length of the error text (0: none)
export const NWOKEN = 9; // R_WAKE: words notified among those waited on
export const BUDGET = 10; // steps the guest may take before it stops to ask (the explorer's picks, known ahead)
export const LOCAL = 11; // steps taken on the budget since the last report (listed at F_LOCAL)

/** Float64 slots (index into a Float64Array over the same buffer). */
export const F_ADDR = 8;
export const F_NOW = 9;
export const F_TIMER = 10; // IDLE: when the guest's next timer falls due (Infinity: none)
export const F_RESULT = 11;
export const F_WAITS = 16;
export const MAX_WAITS = 16;
export const F_NOTIFY = 32;
export const MAX_NOTIFY = 64;
export const F_WOKEN = 96;
/** BigInt64 slots for hypercall arguments. */
export const B_ARGS = 112;
export const MAX_ARGS = 6;
/** BigInt64 slot of the hypercall number (a 64-bit register too). */
export const B_NR = B_ARGS + MAX_ARGS;
/** Bytes of error text (a hypercall that threw). */
export const TEXT_OFFSET = 1024;
export const TEXT_END = 4096;
/** Steps taken on the budget: (op code, address) pairs of Float64. */
export const F_LOCAL = TEXT_END / 8;
export const MAX_LOCAL = 1024;
export const CONTROL_BYTES = TEXT_END + MAX_LOCAL * 16;

export const K_READY = 1;
export const K_STEP = 2;
export const K_HYPERCALL = 3;
export const K_IDLE = 4;
export const K_DONE = 5;
export const K_ERROR = 6;

export const R_GO = 0;
export const R_ABORT = 1;
export const R_WAKE = 2;

/** Shared-word operations as step codes; 'wait32' is ctx.wait's look at its word. */
export const OP_NAMES: readonly (SharedOp | 'wait32' | 'board-load' | 'board-store')[] = [
  'load16',
  'store16',
  'cmpxchg16',
  'or16',
  'and16',
  'load32',
  'store32',
  'cmpxchg32',
  'or32',
  'wait32',
  'board-load',
  'board-store',
];
export const OP_CODE = new Map<string, number>(OP_NAMES.map((n, i) => [n, i]));

/**
 * Board words (the scenario's own handshake words) live outside machine
 * memory; in wait and notify lists they are keys below zero.
 */
export function boardKey(i: number): number {
  return -(i + 1);
}

export class Control {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly b64: BigInt64Array;
  readonly u8: Uint8Array;

  constructor(sab: SharedArrayBuffer = new SharedArrayBuffer(CONTROL_BYTES)) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.b64 = new BigInt64Array(sab);
    this.u8 = new Uint8Array(sab);
  }

  /** Hands the baton over: `to` is 0 (explorer) or 1 (guest). */
  give(to: 0 | 1): void {
    Atomics.store(this.i32, TURN, to);
    Atomics.notify(this.i32, TURN);
  }

  /**
   * Blocks until the baton is ours (`me`). Spins briefly first: a handover
   * usually comes back within microseconds, and a thread woken from
   * Atomics.wait costs tens. Returns false when `timeoutMs` passed first.
   */
  take(me: 0 | 1, timeoutMs = Number.POSITIVE_INFINITY): boolean {
    const i32 = this.i32;
    for (let spin = 0; spin < SPIN; spin++) if (Atomics.load(i32, TURN) === me) return true;
    const other = me === 0 ? 1 : 0;
    const end = Number.isFinite(timeoutMs) ? performance.now() + timeoutMs : Number.POSITIVE_INFINITY;
    for (;;) {
      if (Atomics.load(i32, TURN) === me) return true;
      const left = end - performance.now();
      if (left <= 0) return false;
      Atomics.wait(i32, TURN, other, Math.min(left, 1000));
    }
  }

  writeText(s: string): number {
    const bytes = new TextEncoder().encode(s).subarray(0, TEXT_END - TEXT_OFFSET);
    this.u8.set(bytes, TEXT_OFFSET);
    return bytes.length;
  }

  readText(len: number): string {
    return new TextDecoder().decode(this.u8.slice(TEXT_OFFSET, TEXT_OFFSET + len));
  }
}

/** Iterations of the spin before a thread sleeps in Atomics.wait. */
const SPIN = 1000;
