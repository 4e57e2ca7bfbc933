// Worker entry of the hypervisor: owns the Hypervisor (its state never leaves
// this thread), serves hypercalls from domain threads through the hypercall
// channel, and control requests from the host through a message port, all
// from one loop that sleeps on the channel's doorbell.
import { getHeapStatistics } from 'node:v8';
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { XEN_ESRCH } from '../abi/hypercall.ts';
import type { Domain } from '../xen/domain.ts';
import { type CreateDomainOptions, Hypervisor, type HypervisorOptions } from '../xen/hypervisor.ts';
import { checkInvariants, type InvariantOptions } from '../xen/invariants.ts';
import { boolOption } from '../xen/options.ts';
import { hostState } from './host-state.ts';
import { HypercallChannel, MAX_SLOTS, SPIN } from './hypercall-channel.ts';
import { type DomainProbe, pageInfo, probeDomain } from './introspect.ts';
import { snapshotPorts } from './port-snapshot.ts';
import { snapshotTables } from './snapshot.ts';
import { NO_STORE, XenstoreService } from './xenstore-service.ts';

/** The hypervisor's options and, with `xenstore`, the xenstore service beside it. */
export type WorkerHostOptions = HypervisorOptions & {
  /** Run the xenstore service in the hypervisor thread (see HostOptions.xenstore). */
  xenstore?: boolean;
};

export interface HypervisorThreadData {
  machineSab: SharedArrayBuffer;
  channelSab: SharedArrayBuffer;
  options: WorkerHostOptions;
  port: MessagePort;
}

export type ControlRequest =
  | { id: number; op: 'create'; options: CreateDomainOptions }
  | { id: number; op: 'destroy'; domid: number }
  | { id: number; op: 'invariants'; options?: InvariantOptions }
  | { id: number; op: 'snapshot' }
  | { id: number; op: 'state' }
  | { id: number; op: 'ports' }
  | { id: number; op: 'stats' }
  | { id: number; op: 'page-info'; mfn: number }
  | { id: number; op: 'probe'; domid: number; probe: DomainProbe }
  | { id: number; op: 'pingpong'; sab: SharedArrayBuffer; rounds: number }
  | { id: number; op: 'xs'; bytes: Uint8Array }
  | { id: number; op: 'xs-stats' }
  | { id: number; op: 'stop' };

const data = workerData as HypervisorThreadData;
const hv = new Hypervisor({ ...data.options, machineSab: data.machineSab });
const channel = new HypercallChannel(data.channelSab);
const port = data.port;
const xenstored = boolOption('xenstore', data.options.xenstore, false) ? new XenstoreService(hv) : null;
/** The host's tool connection to xenstore: its replies and watch events go back as 'xs' messages. */
let toolConn: { send(bytes: Uint8Array): void; close(): void } | null = null;
const bySlot = new Map<number, Domain>();
const slotOf = new Map<number, number>();
let hypercalls = 0;

/** Tells the host about domains Xen destroyed (crashed) so it stops their threads. */
function reportDeaths(): void {
  for (const [slot, d] of bySlot) {
    if (!d.isDying) continue;
    bySlot.delete(slot);
    slotOf.delete(d.domid);
    channel.abandon(slot, -XEN_ESRCH);
    port.postMessage({
      type: 'died',
      domid: d.domid,
      reason: d.crashed ?? 'destroyed',
      crashed: d.crashed,
      injected: probeDomain(hv, d, { what: 'injectedFaults' }),
    });
  }
}

function control(req: ControlRequest): unknown {
  switch (req.op) {
    case 'create': {
      let slot = 0;
      while (bySlot.has(slot) && slot < MAX_SLOTS) slot++;
      if (slot >= MAX_SLOTS) throw new RangeError(`at most ${MAX_SLOTS} domains run in threads at once`);
      const d = hv.createDomain(
        xenstored === null ? req.options : XenstoreService.domainOptions(req.options),
      );
      let store = NO_STORE;
      if (xenstored !== null) {
        try {
          store = xenstored.attach(d);
        } catch (e) {
          hv.destroyDomain(d);
          throw e;
        }
      }
      bySlot.set(slot, d);
      slotOf.set(d.domid, slot);
      return {
        domid: d.domid,
        kind: d.kind,
        ramBytes: d.ramPages * 4096,
        root: d.mmuRoot,
        slot,
        sharedInfoFrame: sharedInfoFrameOf(d),
        storeFrame: store.storeFrame,
        storePort: store.storePort,
      };
    }
    case 'destroy': {
      const d = hv.domainById(req.domid);
      if (d !== undefined && !d.isDying) hv.destroyDomain(d);
      reportDeaths();
      return null;
    }
    case 'invariants':
      return [...checkInvariants(hv, req.options), ...(xenstored?.checkInvariants() ?? [])];
    case 'xs': {
      if (xenstored === null) throw new Error('this host runs no xenstore (start it with xenstore: true)');
      toolConn ??= xenstored.openToolConnection((bytes) => port.postMessage({ type: 'xs', bytes }));
      toolConn.send(req.bytes);
      return null;
    }
    case 'xs-stats':
      if (xenstored === null) throw new Error('this host runs no xenstore (start it with xenstore: true)');
      return xenstored.stats();
    case 'snapshot':
      return snapshotTables(hv);
    case 'state':
      return hostState(hv, xenstored);
    case 'ports':
      return snapshotPorts(hv);
    case 'stats': {
      // The hypervisor thread's own heap (its isolate), collected first when the process runs --expose-gc.
      (globalThis as { gc?: () => void }).gc?.();
      const heapUsed = getHeapStatistics().used_heap_size;
      return { hypercalls, domains: hv.domains.size, freeFrames: hv.frames.freeFrames, heapUsed };
    }
    case 'page-info':
      return pageInfo(hv, req.mfn);
    case 'probe': {
      const d = hv.domainById(req.domid);
      if (d === undefined || d.isDying) throw new RangeError(`d${req.domid} is not a live domain`);
      return probeDomain(hv, d, req.probe);
    }
    case 'pingpong':
      return pingpong(req.sab, req.rounds);
    case 'stop':
      return null;
  }
}

/**
 * For benchmarks: the bare cost of a round trip between this thread and a
 * domain thread, with nothing but Atomics and the same spin-then-sleep waiting
 * as the hypercall channel. Word 0 is the ball: the domain thread moves it to
 * odd values, this thread to even ones.
 */
function pingpong(sab: SharedArrayBuffer, rounds: number): number {
  const w = new Int32Array(sab);
  for (let i = 0; i < rounds; i++) {
    const odd = 2 * i + 1;
    for (let s = 0; s < SPIN && Atomics.load(w, 0) !== odd; s++);
    while (Atomics.load(w, 0) !== odd) Atomics.wait(w, 0, 2 * i, 1000);
    Atomics.store(w, 0, odd + 1);
    Atomics.notify(w, 0);
  }
  return rounds;
}

/** StartInfo.sharedInfoFrame: PV, the MFN to map; HVM, 0, the index for add_to_physmap (XENMAPSPACE_shared_info). */
function sharedInfoFrameOf(d: Domain): number {
  return d.translated ? 0 : d.sharedInfoMfn;
}

let running = true;
while (running) {
  const seen = channel.doorbell();
  let work = channel.serve((slot, nr, args) => {
    const d = bySlot.get(slot);
    if (d === undefined) return -XEN_ESRCH;
    hypercalls++;
    return hv.hypercall(d, nr, args);
  });
  if (work > 0) reportDeaths();
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    work++;
    const req = m.message as ControlRequest;
    try {
      port.postMessage({ type: 'reply', id: req.id, result: control(req) });
    } catch (err) {
      port.postMessage({
        type: 'reply',
        id: req.id,
        error: err instanceof Error ? err.message : String(err),
        errorName: err instanceof Error ? err.name : 'Error',
      });
    }
    if (req.op === 'stop') running = false;
  }
  if (channel.stopRequested()) running = false;
  if (running && work === 0) channel.waitDoorbell(seen, 200);
}
port.close();
