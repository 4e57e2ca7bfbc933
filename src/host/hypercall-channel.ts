// The hypercall channel between domain threads and the hypervisor thread: one
// SharedArrayBuffer with a doorbell word and one slot per domain. A guest
// writes its request into its slot, rings the doorbell and sleeps on its slot
// until the hypervisor has written the result, so a hypercall completes
// synchronously for its caller, as on real hardware.
//
// Slot (80 bytes of 32-bit words): state, ret, nargs, a spare word, then the
// hypercall number and 6 arguments, each a 64-bit register as low and high
// halves, so every register crosses exactly (registers.ts).
// state: IDLE -> REQUEST (guest) -> DONE (hypervisor) -> IDLE (guest).
import {
  HYPERCALL_MAX_ARGS,
  hypercallRegisters,
  joinRegister,
  type Register,
  splitRegister,
} from '../xen/registers.ts';

export const MAX_SLOTS = 256;
export const SLOT_BYTES = 80;
const HEADER_BYTES = 64;
export const CHANNEL_BYTES = HEADER_BYTES + MAX_SLOTS * SLOT_BYTES;

const IDLE = 0;
const REQUEST = 1;
const DONE = 2;
/** Doorbell word index; a second word counts control requests. */
const DOORBELL = 0;
const STOP = 1;

/** Register slots after the number: the most arguments a hypercall takes. */
const SLOT_ARGS = HYPERCALL_MAX_ARGS;
/** Loads to spin before sleeping on a word (the other side is usually quick). */
export const SPIN = 2000;

export class HypercallChannel {
  readonly sab: SharedArrayBuffer;
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;

  constructor(sab: SharedArrayBuffer = new SharedArrayBuffer(CHANNEL_BYTES)) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.u32 = new Uint32Array(sab);
  }

  private put(w: number, x: Register): void {
    const [lo, hi] = splitRegister(x);
    this.u32[w] = lo;
    this.u32[w + 1] = hi;
  }

  private base(slot: number): number {
    return (HEADER_BYTES + slot * SLOT_BYTES) / 4;
  }

  /**
   * Guest side: a blocking hypercall through slot `slot`. The number and the
   * arguments become registers here, in the caller's thread, as in one thread
   * (a value no register holds is a TypeError for the caller).
   */
  call(slot: number, nr: unknown, args: readonly unknown[]): number {
    const r = hypercallRegisters(nr, args);
    const b = this.base(slot);
    this.put(b + 4, r.nr);
    for (let i = 0; i < r.args.length; i++) this.put(b + 6 + 2 * i, r.args[i]!);
    this.i32[b + 2] = r.args.length;
    // The arguments are published by the state store; the hypervisor reads them after seeing REQUEST.
    Atomics.store(this.i32, b, REQUEST);
    this.ring();
    // Spin a little first: the hypervisor thread usually answers within a few
    // microseconds, sooner than a sleeping thread can be woken.
    for (let i = 0; i < SPIN && Atomics.load(this.i32, b) === REQUEST; i++);
    while (Atomics.load(this.i32, b) === REQUEST) Atomics.wait(this.i32, b, REQUEST);
    const ret = this.i32[b + 1]!;
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
  serve(handler: (slot: number, nr: Register, args: Register[]) => number): number {
    let served = 0;
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      const b = this.base(slot);
      if (Atomics.load(this.i32, b) !== REQUEST) continue;
      const n = Math.min(this.i32[b + 2]!, SLOT_ARGS);
      const args: Register[] = [];
      for (let i = 0; i < n; i++) args.push(joinRegister(this.u32[b + 6 + 2 * i]!, this.u32[b + 7 + 2 * i]!));
      let ret: number;
      try {
        ret = handler(slot, joinRegister(this.u32[b + 4]!, this.u32[b + 5]!), args);
      } catch {
        ret = -14;
      }
      this.i32[b + 1] = ret | 0;
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
    this.i32[b + 1] = ret | 0;
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
