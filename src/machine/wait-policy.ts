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

/**
 * Longest spinUntil spins, in microseconds: about what a sleep and a wake
 * cost, so a waiter that spins in vain loses at most what sleeping at once
 * would have cost it.
 */
export const DEFAULT_SPIN_MICROS = 50;

/**
 * What guest code may use of the wait policy: spin on a condition of its own
 * (a ring index) for a bounded time while there are spare cores. A host hands
 * guests this, never the policy's words.
 */
export interface Spinner {
  /**
   * True as soon as `ready()` holds; false when the bound passed, or at once
   * when there is no spare core. `ready` must only read.
   */
  spinUntil(ready: () => boolean): boolean;
}

export class WaitPolicy implements Spinner {
  /** Shared counter of running threads (words[index]). */
  readonly words: Int32Array;
  readonly index: number;
  readonly cores: number;
  readonly spinLimit: number;
  /** Longest bound of spinUntil in microseconds (0: never spins). */
  readonly spinMicros: number;
  /** spinUntil's current bound (adapted as spins succeed or run out); this thread's own. */
  private bound: number;

  /**
   * `words[index]` counts the running threads of every thread sharing this
   * policy; `cores` is os.availableParallelism() of the machine.
   */
  constructor(
    words: Int32Array,
    index: number,
    cores: number,
    spinLimit = DEFAULT_SPIN_LIMIT,
    spinMicros = DEFAULT_SPIN_MICROS,
  ) {
    this.words = words;
    this.index = index;
    this.cores = cores;
    this.spinLimit = spinLimit;
    this.spinMicros = spinLimit === 0 ? 0 : spinMicros;
    this.bound = this.spinMicros;
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
   * Spins on `ready()` for at most the current bound, and only while running
   * threads <= cores (re-read as it spins: a thread that wakes ends the
   * spin). The clock and the count are read every 16 tries. The bound adapts
   * (as glibc's adaptive mutexes do): a spin that ran out halves it, down to
   * 1/64 of spinMicros, and one that succeeded doubles it back up to
   * spinMicros. So when the awaited thread does not get a core in time (more
   * threads runnable than cores, other processes among them, which the
   * running count cannot see), spins shrink to almost nothing and the thread
   * sleeps at once instead of taking the core from the thread it waits for.
   */
  spinUntil(ready: () => boolean): boolean {
    if (ready()) return true;
    if (this.spinMicros === 0 || this.spinBudget() === 0) return false;
    const end = performance.now() + this.bound / 1000;
    for (;;) {
      for (let i = 0; i < 16; i++) {
        if (ready()) {
          this.bound = Math.min(this.spinMicros, this.bound * 2);
          return true;
        }
      }
      if (performance.now() >= end || Atomics.load(this.words, this.index) > this.cores) {
        if (ready()) return true;
        this.bound = Math.max(this.spinMicros / 64, this.bound / 2);
        return false;
      }
    }
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
