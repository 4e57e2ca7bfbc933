// The words a WorkerHost's threads share to start and stop domain threads
// safely, one SharedArrayBuffer: the count of running threads the wait policy
// reads (spin only while cores are spare), and one slot per domain thread.
//
// A slot says whether its thread is inside Xen and whether it may enter.
// Stopping a thread is a handshake, so that no thread is terminated holding a
// lock: the stopper sets STOP, then waits until IN_XEN reads 0. The domain
// thread sets IN_XEN before it reads STOP, and both are sequentially
// consistent atomics, so once the stopper has seen STOP set and IN_XEN clear,
// every later hypercall of that thread sees STOP and is refused before it
// takes a lock.
import { WaitPolicy } from '../machine/wait-policy.ts';

export const MAX_SLOTS = 256;
/** Word 0: running threads (the wait policy's counter). */
const RUNNING = 0;
const HEADER_WORDS = 16;
const SLOT_WORDS = 4;
const IN_XEN = 0;
const STOP = 1;
/** 1 while the slot's thread is counted in RUNNING. */
const COUNTED = 2;
export const SLOTS_BYTES = (HEADER_WORDS + MAX_SLOTS * SLOT_WORDS) * 4;

export class ThreadSlots {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;

  constructor(sab: SharedArrayBuffer = new SharedArrayBuffer(SLOTS_BYTES)) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
  }

  private at(slot: number): number {
    return HEADER_WORDS + slot * SLOT_WORDS;
  }

  /** A policy over the running count for a thread that is never stopped mid-run (the toolstack's). */
  policy(cores: number): WaitPolicy {
    return new WaitPolicy(this.i32, RUNNING, cores);
  }

  /** A domain thread's policy: its sleeps are marked in its slot, so the host can uncount a stopped thread. */
  slotPolicy(slot: number, cores: number): WaitPolicy {
    return new SlotWaitPolicy(this.i32, RUNNING, cores, this.at(slot) + COUNTED);
  }

  /** Makes a slot ready for a new thread: it may enter Xen. */
  reset(slot: number): void {
    const b = this.at(slot);
    Atomics.store(this.i32, b + IN_XEN, 0);
    Atomics.store(this.i32, b + COUNTED, 0);
    Atomics.store(this.i32, b + STOP, 0);
  }

  /** Domain thread: marks itself inside Xen; false (and not inside) when it has been stopped. */
  enter(slot: number): boolean {
    const b = this.at(slot);
    Atomics.store(this.i32, b + IN_XEN, 1);
    if (Atomics.load(this.i32, b + STOP) === 0) return true;
    this.leave(slot);
    return false;
  }

  /** Domain thread: out of Xen again; wakes a stopper waiting for that. */
  leave(slot: number): void {
    const b = this.at(slot);
    Atomics.store(this.i32, b + IN_XEN, 0);
    if (Atomics.load(this.i32, b + STOP) !== 0) Atomics.notify(this.i32, b + IN_XEN);
  }

  /** Refuses the slot's thread any further entry into Xen. */
  stop(slot: number): void {
    Atomics.store(this.i32, this.at(slot) + STOP, 1);
  }

  /** Stops the slot's thread and waits (blocking: not for the main thread) until it is out of Xen. */
  stopAndWait(slot: number): void {
    this.stop(slot);
    const i = this.at(slot) + IN_XEN;
    while (Atomics.load(this.i32, i) !== 0) Atomics.wait(this.i32, i, 1, 5);
  }

  /** The same without blocking, for the host's main thread. */
  async stopAndWaitAsync(slot: number): Promise<void> {
    this.stop(slot);
    const i = this.at(slot) + IN_XEN;
    // A hypercall takes microseconds: polling each millisecond leaves the event loop free.
    while (Atomics.load(this.i32, i) !== 0) await new Promise((r) => setTimeout(r, 1));
  }

  /** After a stopped thread is terminated: it no longer counts as running. */
  uncount(slot: number): void {
    if (Atomics.exchange(this.i32, this.at(slot) + COUNTED, 0) === 1) Atomics.sub(this.i32, RUNNING, 1);
  }
}

/**
 * A WaitPolicy that also marks, in the thread's slot, whether the thread is
 * counted as running, so a thread terminated while asleep is not uncounted
 * twice. (Terminated between the two stores it stays counted: the policy
 * then spins a little less, never more.)
 */
class SlotWaitPolicy extends WaitPolicy {
  private readonly counted: number;

  constructor(words: Int32Array, index: number, cores: number, counted: number) {
    super(words, index, cores);
    this.counted = counted;
  }

  override join(): void {
    Atomics.add(this.words, this.index, 1);
    Atomics.store(this.words, this.counted, 1);
  }

  override leave(): void {
    Atomics.store(this.words, this.counted, 0);
    Atomics.sub(this.words, this.index, 1);
  }

  override sleep(arr: Int32Array, i: number, expected: number, ms = Number.POSITIVE_INFINITY): string {
    this.leave();
    try {
      return Atomics.wait(arr, i, expected, ms);
    } finally {
      this.join();
    }
  }
}
