// The hypercall channel between domain threads and the hypervisor thread: one
// SharedArrayBuffer with a doorbell word and one slot per domain. A guest
// writes its request into its slot, rings the doorbell and sleeps on its slot
// until the hypervisor has written the result, so a hypercall completes
// synchronously for its caller, as on real hardware.
//
// Slot (64 bytes): state i32, nr i32, ret i32, nargs i32, then 6 f64 arguments.
// state: IDLE -> REQUEST (guest) -> DONE (hypervisor) -> IDLE (guest).

export const MAX_SLOTS = 256;
export const SLOT_BYTES = 64;
const HEADER_BYTES = 64;
export const CHANNEL_BYTES = HEADER_BYTES + MAX_SLOTS * SLOT_BYTES;

const IDLE = 0;
const REQUEST = 1;
const DONE = 2;
/** Doorbell word index; a second word counts control requests. */
const DOORBELL = 0;
const STOP = 1;

const TWO64 = 2 ** 64;
/** Loads to spin before sleeping on a word (the other side is usually quick). */
export const SPIN = 2000;

export class HypercallChannel {
  readonly sab: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;

  constructor(sab: SharedArrayBuffer = new SharedArrayBuffer(CHANNEL_BYTES)) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
  }

  private base(slot: number): number {
    return (HEADER_BYTES + slot * SLOT_BYTES) / 4;
  }

  /** Guest side: a blocking hypercall through slot `slot`. */
  call(slot: number, nr: number, args: readonly (number | bigint)[]): number {
    const b = this.base(slot);
    const f = b / 2 + 2;
    const n = Math.min(args.length, 6);
    for (let i = 0; i < 6; i++) {
      const a = i < n ? args[i] : 0;
      this.f64[f + i] =
        typeof a === 'bigint'
          ? Number(BigInt.asUintN(64, a))
          : typeof a === 'number' && Number.isFinite(a)
            ? a
            : 0;
    }
    this.i32[b + 1] = nr | 0;
    this.i32[b + 3] = n;
    // The arguments are published by the state store; the hypervisor reads them after seeing REQUEST.
    Atomics.store(this.i32, b, REQUEST);
    this.ring();
    // Spin a little first: the hypervisor thread usually answers within a few
    // microseconds, sooner than a sleeping thread can be woken.
    for (let i = 0; i < SPIN && Atomics.load(this.i32, b) === REQUEST; i++);
    while (Atomics.load(this.i32, b) === REQUEST) Atomics.wait(this.i32, b, REQUEST);
    const ret = this.i32[b + 2]!;
    Atomics.store(this.i32, b, IDLE);
    return ret;
  }

  /** Wakes the hypervisor thread. */
  ring(): void {
    Atomics.add(this.i32, DOORBELL, 1);
    Atomics.notify(this.i32, DOORBELL);
  }

  /** Hypervisor side: the doorbell value, to wait on. */
  doorbell(): number {
    return Atomics.load(this.i32, DOORBELL);
  }

  /** Hypervisor side: sleeps until the doorbell moves past `seen` (or ms pass), after a short spin. */
  waitDoorbell(seen: number, ms: number): void {
    for (let i = 0; i < SPIN && Atomics.load(this.i32, DOORBELL) === seen; i++);
    Atomics.wait(this.i32, DOORBELL, seen, ms);
  }

  /** Hypervisor side: serves every pending request; returns how many. */
  serve(handler: (slot: number, nr: number, args: number[]) => number): number {
    let served = 0;
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const b = this.base(slot);
      if (Atomics.load(this.i32, b) !== REQUEST) continue;
      const f = b / 2 + 2;
      const n = this.i32[b + 3]!;
      const args: number[] = [];
      for (let i = 0; i < n; i++) args.push(this.f64[f + i]! % TWO64);
      let ret: number;
      try {
        ret = handler(slot, this.i32[b + 1]!, args);
      } catch {
        ret = -14;
      }
      this.i32[b + 2] = ret | 0;
      Atomics.store(this.i32, b, DONE);
      Atomics.notify(this.i32, b);
      served++;
    }
    return served;
  }

  /** Fails a pending request in a slot whose domain is gone (its thread is being stopped). */
  abandon(slot: number, ret: number): void {
    const b = this.base(slot);
    if (Atomics.load(this.i32, b) !== REQUEST) return;
    this.i32[b + 2] = ret | 0;
    Atomics.store(this.i32, b, DONE);
    Atomics.notify(this.i32, b);
  }

  requestStop(): void {
    Atomics.store(this.i32, STOP, 1);
    this.ring();
  }

  stopRequested(): boolean {
    return Atomics.load(this.i32, STOP) === 1;
  }
}
