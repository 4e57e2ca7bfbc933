// Worker entry of the toolstack: the thread that creates the hypervisor's
// shared state and then does what dom0's toolstack and xenstored do with it.
// Domain threads make their hypercalls themselves, on views of the same state
// (Hypervisor.attach); this thread creates and destroys domains, answers the
// host's debug-key requests and runs the xenstore service, each under the
// hypercall lock. Its loop sleeps on the hypervisor's notice word, which
// moves when a guest notifies a xenstore port, when Xen crashes a domain in
// another thread, and when the host posts a request.
import { getHeapStatistics } from 'node:v8';
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { Domain } from '../xen/domain.ts';
import { type CreateDomainOptions, Hypervisor, type HypervisorOptions } from '../xen/hypervisor.ts';
import { checkInvariants, type InvariantOptions } from '../xen/invariants.ts';
import { boolOption } from '../xen/options.ts';
import { hostState } from './host-state.ts';
import { type DomainProbe, pageInfo, probeDomain } from './introspect.ts';
import { snapshotPorts } from './port-snapshot.ts';
import { snapshotTables } from './snapshot.ts';
import { MAX_SLOTS, ThreadSlots } from './thread-slots.ts';
import { NO_STORE, XenstoreService } from './xenstore-service.ts';

/** The hypervisor's options and, with `xenstore`, the xenstore service beside it. */
export type WorkerHostOptions = HypervisorOptions & {
  /** Run the xenstore service in the toolstack thread (see HostOptions.xenstore). */
  xenstore?: boolean;
};

export interface HypervisorThreadData {
  machineSab: SharedArrayBuffer;
  slotsSab: SharedArrayBuffer;
  cores: number;
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
  | { id: number; op: 'share' }
  | { id: number; op: 'stop' };

/**
 * How a request runs (see the loop): beside the domains' hypercalls
 * (Hypervisor.beside), taking what locks it needs itself (destroy: kill), or
 * alone in Xen (the hypercall lock exclusive, as the debug keys pause every
 * domain to read a consistent state).
 */
const HOW: Partial<Record<ControlRequest['op'], 'beside' | 'itself'>> = {
  create: 'beside',
  destroy: 'itself',
  pingpong: 'itself',
};

const data = workerData as HypervisorThreadData;
const slots = new ThreadSlots(data.slotsSab);
const policy = slots.policy(data.cores);
policy.join();
const hv = new Hypervisor({ ...data.options, machineSab: data.machineSab, waitPolicy: policy });
const port = data.port;
const xenstored = boolOption('xenstore', data.options.xenstore, false) ? new XenstoreService(hv) : null;
/** The host's tool connection to xenstore: its replies and watch events go back as 'xs' messages. */
let toolConn: { send(bytes: Uint8Array): void; close(): void } | null = null;
const bySlot = new Map<number, Domain>();
const slotOf = new Map<number, number>();

/**
 * Destroys the domain of a thread slot (domain_kill): its thread is refused
 * entry into Xen and waited for until it is out (domain_pause), then the
 * domain is destroyed beside the other domains' hypercalls, under Xen's
 * locks (their maps, copies and unmaps of its grants go on: page references
 * carry its pages' liveness), and the host is told, so it stops the thread.
 * Only this thread destroys the domains of slots, so `d` is live until here;
 * its record is freed after the grace period (reapZombies, under the
 * hypercall lock exclusive: no hypercall that could have found it is left).
 */
function kill(slot: number, d: Domain): void {
  slots.stopAndWait(slot);
  const report = hv.beside(() => {
    if (!d.isDying) hv.destroyDomain(d);
    return {
      type: 'died',
      domid: d.domid,
      reason: d.crashed ?? 'destroyed',
      crashed: d.crashed,
      injected: probeDomain(hv, d, { what: 'injectedFaults' }),
    };
  });
  bySlot.delete(slot);
  slotOf.delete(d.domid);
  port.postMessage(report);
}

/** Destroys the domains Xen crashed (in their threads or this one), as xl does on a crash. */
function reapCrashed(): void {
  for (const [slot, d] of bySlot) if (d.crashed !== null || d.isDying) kill(slot, d);
}

function control(req: ControlRequest): unknown {
  switch (req.op) {
    case 'create': {
      let slot = 0;
      // The slot stays stopped until the host spawns a thread in it (a thread of
      // the slot's last domain may still be ending).
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
          hv.locked(() => hv.destroyDomain(d));
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
      const slot = slotOf.get(req.domid);
      if (slot !== undefined) kill(slot, bySlot.get(slot)!);
      else {
        const d = hv.domainById(req.domid);
        if (d !== undefined && !d.isDying) hv.locked(() => hv.destroyDomain(d));
      }
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
      // The toolstack thread's own heap (its isolate), collected first when the process runs --expose-gc.
      (globalThis as { gc?: () => void }).gc?.();
      const heapUsed = getHeapStatistics().used_heap_size;
      return { domains: hv.domains.size, freeFrames: hv.frames.freeFrames, heapUsed };
    }
    case 'share':
      return hv.share;
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
 * domain thread, with nothing but Atomics and the wait policy's
 * spin-then-sleep. Word 0 is the ball: the domain thread moves it to odd
 * values, this thread to even ones.
 */
function pingpong(sab: SharedArrayBuffer, rounds: number): number {
  const w = new Int32Array(sab);
  for (let i = 0; i < rounds; i++) {
    const odd = 2 * i + 1;
    for (let s = policy.spinBudget(); s > 0 && Atomics.load(w, 0) !== odd; s--);
    while (Atomics.load(w, 0) !== odd) policy.sleep(w, 0, 2 * i, 1000);
    Atomics.store(w, 0, odd + 1);
    Atomics.notify(w, 0);
  }
  return rounds;
}

/** StartInfo.sharedInfoFrame: PV, the MFN to map; HVM, 0, the index for add_to_physmap (XENMAPSPACE_shared_info). */
function sharedInfoFrameOf(d: Domain): number {
  return d.translated ? 0 : d.sharedInfoMfn;
}

const notices = hv.privatePages.words;
const noticeSeq = hv.globals.noticeSeqIndex;
let running = true;
while (running) {
  const seen = Atomics.load(notices, noticeSeq);
  let work = hv.locked(() => {
    // A domain whose last page went in another thread's shared hypercall is finalised here.
    hv.reapZombies();
    return hv.runNotices();
  });
  reapCrashed();
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    work++;
    const req = m.message as ControlRequest;
    try {
      // Creation runs beside the domains' hypercalls, as domain_create does
      // (the domain is published whole, under domlist_update_lock); so does
      // destroy (kill), once the domain's thread is out of Xen.
      const how = HOW[req.op];
      const result =
        how === 'beside'
          ? hv.beside(() => control(req))
          : how === 'itself'
            ? control(req)
            : hv.locked(() => control(req));
      port.postMessage({ type: 'reply', id: req.id, result });
    } catch (err) {
      port.postMessage({
        type: 'reply',
        id: req.id,
        error: err instanceof Error ? err.message : String(err),
        errorName: err instanceof Error ? err.name : 'Error',
      });
    }
    if (req.op === 'stop') running = false;
    // What a request did may have crashed a domain (a xenstore write, say).
    reapCrashed();
  }
  if (running && work === 0) policy.sleep(notices, noticeSeq, seen, 200);
}
port.close();
