// Real time for guests running in worker threads.
import { performance } from 'node:perf_hooks';
import type { GuestClock } from '../guest/context.ts';

export class RealClock implements GuestClock {
  private readonly t0: number;

  constructor(t0 = performance.now()) {
    this.t0 = t0;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  }
}
