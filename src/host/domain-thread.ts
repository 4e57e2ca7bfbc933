// Worker entry of a domain: builds the domain's GuestContext over the shared
// machine memory, runs the guest module's default export, and reports its
// result (or its crash) to the host. Its hypercalls run here, in this thread,
// on this thread's view of the hypervisor (Hypervisor.attach), as a vCPU
// enters Xen on its own pCPU.
import { parentPort, workerData } from 'node:worker_threads';
import { XEN_ESRCH } from '../abi/hypercall.ts';
import type { GuestContext, StartInfo, WaitResult } from '../guest/context.ts';
import { GuestMemory } from '../machine/guest-memory.ts';
import { Hypervisor, type HypervisorShare } from '../xen/hypervisor.ts';
import { hypercallRegisters } from '../xen/registers.ts';
import { RealClock } from './real-clock.ts';
import { ThreadSlots } from './thread-slots.ts';
import { importUserModule } from './user-module.ts';

export interface DomainThreadData {
  share: HypervisorShare;
  slotsSab: SharedArrayBuffer;
  cores: number;
  slot: number;
  root: number;
  start: StartInfo;
  /** URL of the guest module; its default export is `(ctx, args) => result`. */
  module: string;
  args: unknown;
}

/** Longest single sleep of ctx.wait before the event loop gets a turn (timers, messages). */
const WAIT_SLICE_MS = 10;

const data = workerData as DomainThreadData;
const slots = new ThreadSlots(data.slotsSab);
const slot = data.slot;
const policy = slots.slotPolicy(slot, data.cores);
policy.join();
const hv = Hypervisor.attach(data.share, slot, policy);
const machine = hv.machine;
const dom = hv.domainById(data.start.domid);
const mem = new GuestMemory(machine, { domid: data.start.domid, kind: data.start.kind, root: data.root });
const port = parentPort!;

/**
 * The raw hypercall, entered here. The slot's handshake lets the host stop
 * this thread only outside Xen (thread-slots.ts); an exception inside Xen
 * is a bug Xen caught, told to the host for its invariant check.
 */
function hypercall(nr: number | bigint, args: readonly (number | bigint)[]): number {
  const r = hypercallRegisters(nr, args);
  if (dom === undefined || !slots.enter(slot)) return -XEN_ESRCH;
  try {
    return hv.hypercall(dom, r.nr, r.args);
  } finally {
    slots.leave(slot);
    if (hv.internalErrors.length > 0) {
      for (const e of hv.internalErrors.splice(0))
        port.postMessage({
          type: 'internal-error',
          message: e instanceof Error ? (e.stack ?? e.message) : String(e),
        });
    }
  }
}

const ctx: GuestContext = {
  start: data.start,
  mem,
  hypercall: (nr, ...args) => hypercall(nr, args),
  clock: new RealClock(),
  /**
   * Sleeps in Atomics.wait on the word, in slices of at most WAIT_SLICE_MS:
   * a thread woken by Atomics.notify resumes within microseconds (waitAsync
   * takes far longer), and between slices the event loop runs the domain's
   * timers and messages. Nothing spins: the thread is asleep in the kernel.
   * An abort of `signal` (which can only happen between slices, when the
   * event loop runs) ends the wait as a timeout does.
   */
  async wait(addr, expected, ms, signal): Promise<WaitResult> {
    const i = mem.wordAddr(addr) >>> 2;
    const i32 = machine.words.i32;
    const deadline = Number.isFinite(ms) ? performance.now() + Math.max(0, ms) : Number.POSITIVE_INFINITY;
    for (;;) {
      if (signal?.aborted === true) return 'timed-out';
      const left = deadline - performance.now();
      const r = policy.sleep(i32, i, expected | 0, Math.max(0, Math.min(WAIT_SLICE_MS, left))) as WaitResult;
      if (r !== 'timed-out') return r;
      if (left <= WAIT_SLICE_MS) return 'timed-out';
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  },
  log(line) {
    port.postMessage({ type: 'log', line });
  },
  // The wait policy as guests may use it (a ring's bounded spin), never its words: the slots' stop flags live there.
  spinner: { spinUntil: (ready) => policy.spinUntil(ready) },
};

try {
  const mod = (await importUserModule(data.module)) as {
    default?: (ctx: GuestContext, args: unknown) => unknown;
  };
  if (typeof mod.default !== 'function')
    throw new TypeError(`${data.module} has no default export function (ctx, args) => result`);
  const result = await mod.default(ctx, data.args);
  port.postMessage({ type: 'done', result });
} catch (err) {
  port.postMessage({
    type: 'crash',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
}
