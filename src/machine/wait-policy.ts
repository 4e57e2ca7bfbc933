// How a thread waits for a word another thread will change: spin a bounded
// number of loads only while there are spare cores, then sleep in Atomics.wait.
//
// On this kind of machine a futex sleep and wake costs tens of microseconds,
// so a short spin pays when the thread being waited for is running on another
// core. When there are more runnable threads than cores, the one being waited
// for may need this very core, and spinning only steals its timeslice. The
// policy therefore counts running threads in one shared Int32: every thread
// that takes part joins it, and leaves it while it sleeps. Spinning is allowed
// while running threads <= cores.
//
// The core count comes from the host (os.availableParallelism()); this layer
// stays free of Node modules.

/** Loads a spinner makes before it sleeps (about 5-20 µs on current cores). */
export const DEFAULT_SPIN_LIMIT = 4000;

export class WaitPolicy {
  /** Shared counter of running threads (words[index]). */
  readonly words: Int32Array;
  readonly index: number;
  readonly cores: number;
  readonly spinLimit: number;

  /**
   * `words[index]` counts the running threads of every thread sharing this
   * policy; `cores` is os.availableParallelism() of the machine.
   */
  constructor(words: Int32Array, index: number, cores: number, spinLimit = DEFAULT_SPIN_LIMIT) {
    this.words = words;
    this.index = index;
    this.cores = cores;
    this.spinLimit = spinLimit;
  }

  /** A policy private to this thread that never spins (single-thread mode, defaults). */
  static local(): WaitPolicy {
    const words = new Int32Array(new SharedArrayBuffer(4));
    words[0] = 1;
    return new WaitPolicy(words, 0, 1, 0);
  }

  /** Counts the calling thread as running (once, when it starts taking part). */
  join(): void {
    Atomics.add(this.words, this.index, 1);
  }

  /** The calling thread stops taking part (it is about to exit). */
  leave(): void {
    Atomics.sub(this.words, this.index, 1);
  }

  get running(): number {
    return Atomics.load(this.words, this.index);
  }

  /** How many loads to spin before sleeping: the limit with spare cores, else 0. */
  spinBudget(): number {
    if (this.spinLimit === 0) return 0;
    return Atomics.load(this.words, this.index) <= this.cores ? this.spinLimit : 0;
  }

  /**
   * Atomics.wait on `arr[i] === expected`, counting this thread as not running
   * while it sleeps.
   */
  sleep(arr: Int32Array, i: number, expected: number, ms = Number.POSITIVE_INFINITY): string {
    Atomics.sub(this.words, this.index, 1);
    try {
      return Atomics.wait(arr, i, expected, ms);
    } finally {
      Atomics.add(this.words, this.index, 1);
    }
  }
}
