// Runs a test fixture in a worker thread (through the TypeScript bootstrap) and
// resolves with the one message it posts; rejects if it throws or exits
// without one.
import { Worker } from 'node:worker_threads';

const bootstrap = new URL('../../src/host/worker-bootstrap.mjs', import.meta.url);

/** Runs `data.entry` (a fixture's URL) in a worker with `data` as its workerData. */
export function runFixture<T>(data: { entry: string }): Promise<T> {
  const w = new Worker(bootstrap, { workerData: data });
  return new Promise((resolve, reject) => {
    let result: { value: T } | null = null;
    w.on('message', (m: T) => {
      result = { value: m };
    });
    w.on('error', reject);
    w.on('exit', (code) => {
      if (result !== null && code === 0) resolve(result.value);
      else reject(new Error(`worker ${data.entry} exited ${code} without a result`));
    });
  });
}

/** In a fixture: counts this thread in at control[i] and waits until `n` threads have. */
export function startTogether(control: Int32Array, i: number, n: number): void {
  Atomics.add(control, i, 1);
  for (let seen = Atomics.load(control, i); seen < n; seen = Atomics.load(control, i))
    Atomics.wait(control, i, seen, 1);
}
