// Worker entry of a domain: builds the domain's GuestContext over the shared
// machine memory and the hypercall channel, runs the guest module's default
// export, and reports its result (or its crash) to the host.
import { parentPort, workerData } from 'node:worker_threads';
import type { GuestContext, StartInfo, WaitResult } from '../guest/context.ts';
import { GuestMemory } from '../machine/guest-memory.ts';
import { MachineMemory } from '../machine/machine-memory.ts';
import { HypercallChannel } from './hypercall-channel.ts';
import { RealClock } from './real-clock.ts';

export interface DomainThreadData {
  machineSab: SharedArrayBuffer;
  channelSab: SharedArrayBuffer;
  slot: number;
  root: number;
  start: StartInfo;
  /** URL of the guest module; its default export is `(ctx, args) => result`. */
  module: string;
  args: unknown;
}

/** Atomics.waitAsync exists on Node 20 but is typed only from lib es2024. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      i: number,
      v: number,
      ms: number,
    ): { async: false; value: WaitResult } | { async: true; value: Promise<WaitResult> };
  }
).waitAsync;

const data = workerData as DomainThreadData;
const machine = new MachineMemory(data.machineSab.byteLength / 4096, data.machineSab);
const channel = new HypercallChannel(data.channelSab);
const mem = new GuestMemory(machine, { domid: data.start.domid, kind: data.start.kind, root: data.root });
const port = parentPort!;

const ctx: GuestContext = {
  start: data.start,
  mem,
  hypercall: (nr, ...args) => channel.call(data.slot, nr, args),
  clock: new RealClock(),
  wait(addr, expected, ms): Promise<WaitResult> {
    const i = mem.wordAddr(addr) >>> 2;
    const r = waitAsync(machine.words.i32, i, expected | 0, ms);
    if (!r.async) return Promise.resolve(r.value);
    // A pending Atomics.waitAsync does not keep Node's event loop alive: a guest
    // whose only pending work is this wait would see its thread exit (code 13,
    // unsettled top-level await). A timer holds the loop open until it settles.
    const keepAlive = setInterval(() => {}, 0x3fff_ffff);
    return r.value.finally(() => clearInterval(keepAlive));
  },
  log(line) {
    port.postMessage({ type: 'log', line });
  },
};

try {
  const mod = (await import(data.module)) as { default?: (ctx: GuestContext, args: unknown) => unknown };
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
