// In-thread waiters on shared Int32 words (single-thread mode): a guest that
// waits gets a promise, resolved when someone notifies the word (through
// SharedWords.notify32) or when its virtual timeout passes.
import type { WaitResult } from '../guest/context.ts';
import type { MachineMemory } from '../machine/machine-memory.ts';
import type { VirtualClock } from './virtual-clock.ts';

interface Waiter {
  resolve: (r: WaitResult) => void;
  cancelTimer: () => void;
}

export class WaitRegistry {
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly machine: MachineMemory;
  private readonly clock: VirtualClock;

  constructor(machine: MachineMemory, clock: VirtualClock) {
    this.machine = machine;
    this.clock = clock;
    machine.words.onNotify = (addr) => this.notify(addr);
  }

  /**
   * Waits on the machine word at `maddr` while it holds `expected`. An abort
   * of `signal` ends the wait early, as a timeout does ('timed-out'), and
   * leaves no waiter behind.
   */
  wait(maddr: number, expected: number, ms: number, signal?: AbortSignal): Promise<WaitResult> {
    if (Atomics.load(this.machine.words.i32, maddr >>> 2) !== (expected | 0))
      return Promise.resolve('not-equal');
    if (signal?.aborted === true) return Promise.resolve('timed-out');
    return new Promise((resolve) => {
      const list = this.waiters.get(maddr) ?? [];
      const leave = () => {
        const l = this.waiters.get(maddr);
        if (l === undefined) return;
        const rest = l.filter((x) => x !== w);
        if (rest.length === 0) this.waiters.delete(maddr);
        else this.waiters.set(maddr, rest);
      };
      const onAbort = () => {
        w.cancelTimer();
        leave();
        resolve('timed-out');
      };
      const w: Waiter = {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r);
        },
        cancelTimer: () => {},
      };
      if (Number.isFinite(ms)) {
        w.cancelTimer = this.clock.setTimer(ms, () => {
          leave();
          w.resolve('timed-out');
        });
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(w);
      this.waiters.set(maddr, list);
    });
  }

  notify(maddr: number): void {
    const list = this.waiters.get(maddr);
    if (list === undefined) return;
    this.waiters.delete(maddr);
    for (const w of list) {
      w.cancelTimer();
      w.resolve('ok');
    }
  }

  get count(): number {
    let n = 0;
    for (const l of this.waiters.values()) n += l.length;
    return n;
  }
}
