// Domains in threads: each domain's guest code runs in a worker of its own,
// all over one shared machine memory and one hypervisor state in shared
// memory. A guest's hypercalls run in its own thread (Hypervisor.attach); a
// toolstack thread creates and destroys domains and runs xenstored. A guest
// that throws, or whose thread dies, crashes only its own domain: the host
// destroys it (releasing its mappings, reference §12) and the other domains
// go on. A domain thread is stopped only outside Xen (thread-slots.ts).
import os from 'node:os';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import type { StartInfo } from '../guest/context.ts';
import type { XsClient } from '../io/xenstore/api.ts';
import { XsClientCore } from '../io/xenstore/client.ts';
import { decodeMessage } from '../io/xenstore/wire.ts';
import {
  type CreateDomainOptions,
  type HypervisorShare,
  hypervisorOptions,
  machineFrames,
} from '../xen/hypervisor.ts';
import type { InvariantOptions } from '../xen/invariants.ts';
import { boolOption } from '../xen/options.ts';
import type { DomainThreadData } from './domain-thread.ts';
import type { HostState } from './host-state.ts';
import type { ControlRequest, HypervisorThreadData, WorkerHostOptions } from './hypervisor-thread.ts';
import type { DomainProbe, InjectedFault, P2mEntry, PageInfo } from './introspect.ts';
import type { PortSnapshot } from './port-snapshot.ts';
import type { TableSnapshot } from './snapshot.ts';
import { ThreadSlots } from './thread-slots.ts';
import { resolveWorkerEntry } from './worker-entry.ts';
import type { XsServiceStats } from './xenstore-service.ts';

export type { WorkerHostOptions } from './hypervisor-thread.ts';

/**
 * A domain of a WorkerHost, as createDomain returns it: pass it to spawn. Its
 * introspection is DomainHandle's, answered by the hypervisor's thread, so
 * each is a promise (`await dom.crashReason` reads the same in both modes).
 */
export interface ThreadDomain {
  readonly domid: number;
  readonly kind: 'pv' | 'hvm';
  readonly ramBytes: number;
  readonly start: StartInfo;
  /** See DomainHandle.machineFrameOf. */
  machineFrameOf(addr: number): Promise<number | null>;
  /** See DomainHandle.pte (PV). */
  pte(addr: number): Promise<bigint>;
  /** See DomainHandle.l1EntryAddress (PV). */
  l1EntryAddress(addr: number): Promise<number | null>;
  /** See DomainHandle.p2mEntry (HVM). */
  p2mEntry(gfn: number): Promise<P2mEntry | null>;
  /** Why Xen crashed the domain, or null; kept after it is destroyed. */
  readonly crashReason: Promise<string | null>;
  /** Exceptions Xen injected into the domain, oldest first; kept after it is destroyed. */
  readonly injectedFaults: Promise<InjectedFault[]>;
}

interface DomainRecord extends ThreadDomain {
  slot: number;
  root: number;
  worker: Worker | null;
  dead: boolean;
  onDeath: ((reason: string) => void) | null;
  /** Its crash reason and injected faults as the toolstack thread reported them at its death. */
  last: { crashed: string | null; injected: InjectedFault[] } | null;
}

/** A guest spawned in a worker threw or its thread died; its domain has been destroyed. */
export class GuestCrash extends Error {
  /** The domain that crashed. */
  readonly domid: number;
  constructor(domid: number, reason: string) {
    super(`d${domid} crashed: ${reason}`);
    this.name = 'GuestCrash';
    this.domid = domid;
  }
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/** An error of the toolstack thread, as the same kind (RangeError, TypeError) in this one. */
function rebuildError(name: string | undefined, message: string): Error {
  if (name === 'RangeError') return new RangeError(message);
  if (name === 'TypeError') return new TypeError(message);
  return new Error(message);
}

/** The host's xenstore client in worker mode: a tool connection in the toolstack thread. */
class PortXsClient extends XsClientCore {
  private readonly post: (bytes: Uint8Array) => Promise<unknown>;

  constructor(post: (bytes: Uint8Array) => Promise<unknown>) {
    super(0);
    this.post = post;
  }

  /** A reply or watch event from the toolstack thread. */
  deliver(bytes: Uint8Array): void {
    const m = decodeMessage(bytes);
    if (m !== null) this.receive(m);
  }

  protected override async sendMessage(bytes: Uint8Array): Promise<void> {
    await this.post(bytes);
  }

  protected override shutdown(): void {}
}

/** Options of spawn. */
export interface SpawnOptions {
  /**
   * Aborting stops the guest: its domain is destroyed (its thread stopped,
   * its mappings released) and spawn rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

/**
 * Domains in worker threads, for real concurrency: the hypervisor in a
 * thread of its own, each domain's guest code in a worker, all over one
 * shared machine memory. Start it with `WorkerHost.start()`, make domains
 * with createDomain, run a guest module in each with spawn, and end with
 * shutdown (or `await using wh = await WorkerHost.start()`).
 *
 * ```ts
 * await using wh = await WorkerHost.start({ memoryMiB: 64, xenstore: true });
 * const dom = await wh.createDomain({ kind: 'pv' });
 * const n = await wh.spawn<number>(dom, new URL('./guest.mjs', import.meta.url), { peer: 0 });
 * ```
 */
export class WorkerHost implements AsyncDisposable {
  /** The machine memory every thread runs over (the caller's, with HostOptions.machineSab). */
  readonly machineSab: SharedArrayBuffer;
  /**
   * Whether any two hypercalls can be inside Xen at the same time. Not yet:
   * each domain thread enters Xen itself, and the ops that take Xen's own
   * locks (map, unmap, copy, setup_table, set_version, event channels, ...: dispatch.ts
   * runsShared) run side by side, but the others, and the toolstack's work,
   * still run alone (an exclusive hold of the hypercall lock) until they take
   * Xen's locks too (issue 8). Races whose window lies in those ops (gnttab
   * xsa) read it to say so rather than count hits they cannot get.
   */
  readonly concurrentHypercalls: boolean = false;
  private readonly slots = new ThreadSlots();
  /**
   * Threads being stopped, by slot: a slot is reset for a new thread only
   * once the last one in it has ended (else it could enter Xen again and be
   * ended holding a lock).
   */
  private readonly ending = new Map<number, Promise<void>>();
  /** The same, by thread: a thread is stopped once, whoever asks. */
  private readonly stopping = new Map<Worker, Promise<void>>();
  private readonly cores = os.availableParallelism();
  /** Where the toolstack thread's hypervisor is (from its first reply), and its notice word. */
  private share: HypervisorShare | null = null;
  private notice: { words: Int32Array; index: number } | null = null;
  /** Errors Xen caught inside hypercalls of domain threads (bugs), for checkInvariants. */
  private readonly internalErrors: string[] = [];
  private readonly hvWorker: Worker;
  private readonly port: MessagePort;
  private readonly pending = new Map<number, Pending>();
  private readonly domains = new Map<number, DomainRecord>();
  private readonly logs = new Map<number, string[]>();
  private nextId = 1;
  private stopped = false;
  /** Called with every console line of every domain (default: kept, see consoleOf). */
  onLog: ((domid: number, line: string) => void) | null = null;
  /** The toolstack's xenstore client (privileged), when started with `xenstore: true`. */
  readonly xenstore: XsClient | null;
  private readonly xsClient: PortXsClient | null;

  private constructor(options: WorkerHostOptions) {
    const frames = machineFrames(options);
    // Bad options fail here, in the caller's thread, with the error one thread gives.
    hypervisorOptions(options);
    boolOption('xenstore', options.xenstore, false);
    this.machineSab = options.machineSab ?? new SharedArrayBuffer(frames * 4096);
    const { machineSab: _sab, memoryMiB: _mib, ...rest } = options;
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const entry = resolveWorkerEntry('hypervisor-thread');
    const data: HypervisorThreadData & { entry?: string } = {
      machineSab: this.machineSab,
      slotsSab: this.slots.sab,
      cores: this.cores,
      options: rest,
      port: port2,
      ...entry.data,
    };
    this.xsClient =
      options.xenstore === true
        ? new PortXsClient((bytes) => this.request({ op: 'xs', bytes } as ControlRequest))
        : null;
    this.xenstore = this.xsClient;
    this.hvWorker = new Worker(entry.file, { workerData: data, transferList: [port2] });
    this.hvWorker.on('error', (err) => this.failAll(err));
    this.hvWorker.on('exit', (code) => {
      if (!this.stopped) this.failAll(new Error(`the toolstack thread exited (code ${code})`));
    });
    this.port.on(
      'message',
      (m: {
        type: string;
        id?: number;
        result?: unknown;
        error?: string;
        errorName?: string;
        domid?: number;
        reason?: string;
        bytes?: Uint8Array;
        crashed?: string | null;
        injected?: InjectedFault[];
      }) => {
        if (m.type === 'xs' && m.bytes !== undefined) {
          this.xsClient?.deliver(m.bytes);
        } else if (m.type === 'reply' && m.id !== undefined) {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.error !== undefined) p?.reject(rebuildError(m.errorName, m.error));
          else p?.resolve(m.result);
        } else if (m.type === 'died' && m.domid !== undefined) {
          const rec = this.domains.get(m.domid);
          if (rec !== undefined) rec.last = { crashed: m.crashed ?? null, injected: m.injected ?? [] };
          this.markDead(m.domid, m.reason ?? 'destroyed');
        }
      },
    );
  }

  /**
   * Starts the toolstack thread (and, with `xenstore: true`, the xenstore
   * service in it). With `machineSab`, every thread runs over the caller's
   * SharedArrayBuffer (see HostOptions.machineSab).
   */
  static async start(options: WorkerHostOptions = {}): Promise<WorkerHost> {
    const host = new WorkerHost(options);
    host.share = (await host.request({ op: 'share' })) as HypervisorShare;
    host.notice = { words: new Int32Array(host.share.poolSab), index: host.share.noticeWord };
    return host;
  }

  private request(req: Omit<ControlRequest, 'id'> & { op: ControlRequest['op'] }): Promise<unknown> {
    if (this.stopped) return Promise.reject(new Error('the host has been shut down'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.port.postMessage({ ...req, id });
      // Wake the toolstack thread, asleep on the hypervisor's notice word.
      const n = this.notice;
      if (n !== null) {
        Atomics.add(n.words, n.index, 1);
        Atomics.notify(n.words, n.index);
      }
    });
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Creates a domain (dom0 is the first); its guest code is started with spawn. */
  async createDomain(options: CreateDomainOptions): Promise<ThreadDomain> {
    const r = (await this.request({ op: 'create', options } as ControlRequest)) as {
      domid: number;
      kind: 'pv' | 'hvm';
      ramBytes: number;
      root: number;
      slot: number;
      sharedInfoFrame: number;
      storeFrame: number;
      storePort: number;
    };
    const start: StartInfo = {
      domid: r.domid,
      kind: r.kind,
      ramBytes: r.ramBytes,
      sharedInfoFrame: r.sharedInfoFrame,
      storeFrame: r.storeFrame,
      storePort: r.storePort,
    };
    const probe = <T>(q: DomainProbe): Promise<T> => {
      if (rec.dead) return Promise.reject(new Error(`d${rec.domid} has been destroyed`));
      return this.request({ op: 'probe', domid: rec.domid, probe: q } as ControlRequest) as Promise<T>;
    };
    /** Crash reason and faults: from the hypervisor while the domain lives, from its death report after. */
    const last = <T>(q: DomainProbe, pick: (l: NonNullable<DomainRecord['last']>) => T): Promise<T> =>
      rec.last !== null ? Promise.resolve(pick(rec.last)) : probe<T>(q);
    const rec: DomainRecord = {
      domid: r.domid,
      kind: r.kind,
      ramBytes: r.ramBytes,
      start,
      slot: r.slot,
      root: r.root,
      worker: null,
      dead: false,
      onDeath: null,
      last: null,
      machineFrameOf: (addr) => probe({ what: 'machineFrameOf', addr }),
      pte: (addr) => probe({ what: 'pte', addr }),
      l1EntryAddress: (addr) => probe({ what: 'l1EntryAddress', addr }),
      p2mEntry: (gfn) => probe({ what: 'p2mEntry', gfn }),
      get crashReason() {
        return last<string | null>({ what: 'crashReason' }, (l) => l.crashed);
      },
      get injectedFaults() {
        return last<InjectedFault[]>({ what: 'injectedFaults' }, (l) => l.injected.map((f) => ({ ...f })));
      },
    };
    this.domains.set(r.domid, rec);
    // A reused id starts a fresh console.
    this.logs.delete(r.domid);
    return rec;
  }

  /**
   * Runs guest code in the domain's own worker thread: the default export of
   * `module` (a file URL or path) is called as `(ctx, args)`. Resolves with its
   * result (typed `T` by the caller; `args` and the result cross threads by
   * structured clone); rejects with GuestCrash when it throws or its thread
   * dies, after the domain has been destroyed. Aborting `options.signal`
   * destroys the domain and rejects with the signal's reason.
   */
  spawn<T = unknown>(
    domain: ThreadDomain,
    module: string | URL,
    args: unknown = null,
    options: SpawnOptions = {},
  ): Promise<T> {
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const rec = this.domains.get(domain.domid);
    if (rec === undefined || rec.dead)
      return Promise.reject(new Error(`d${domain.domid} is not a live domain of this host`));
    if (rec.worker !== null) return Promise.reject(new Error(`d${domain.domid} already runs guest code`));
    const entry = resolveWorkerEntry('domain-thread');
    const url =
      module instanceof URL
        ? module.href
        : module.startsWith('file:')
          ? module
          : new URL(module, `file://${process.cwd()}/`).href;
    if (this.share === null) return Promise.reject(new Error('the host has not started'));
    const ending = this.ending.get(rec.slot);
    if (ending !== undefined) return ending.then(() => this.spawn<T>(domain, module, args, options));
    this.slots.reset(rec.slot);
    const data: DomainThreadData & { entry?: string } = {
      share: this.share,
      slotsSab: this.slots.sab,
      cores: this.cores,
      slot: rec.slot,
      root: rec.root,
      start: rec.start,
      module: url,
      args,
      ...entry.data,
    };
    const worker = new Worker(entry.file, { workerData: data });
    rec.worker = worker;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        void this.destroyDomain(rec.domid).then(
          () => reject(signal?.reason),
          () => reject(signal?.reason),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const crash = (reason: string) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        void this.destroyDomain(rec.domid).then(
          () => reject(new GuestCrash(rec.domid, reason)),
          () => reject(new GuestCrash(rec.domid, reason)),
        );
      };
      rec.onDeath = (reason) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(new GuestCrash(rec.domid, reason));
      };
      worker.on('message', (m: { type: string; line?: string; result?: unknown; message?: string }) => {
        if (m.type === 'internal-error') {
          this.internalErrors.push(`d${rec.domid}: ${m.message ?? ''}`);
        } else if (m.type === 'log') {
          const lines = this.logs.get(rec.domid) ?? [];
          lines.push(m.line ?? '');
          this.logs.set(rec.domid, lines);
          this.onLog?.(rec.domid, m.line ?? '');
        } else if (m.type === 'done') {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          // The guest is done but its thread may still be inside Xen (a timer's hypercall): stop it outside.
          void this.stopThread(rec, worker).then(() => resolve(m.result as T));
        } else if (m.type === 'crash') {
          crash(m.message ?? 'guest code threw');
        }
      });
      worker.on('error', (err) => crash(err.stack ?? err.message));
      worker.on('exit', (code) => {
        if (rec.worker === worker) rec.worker = null;
        if (!settled) crash(`its thread exited with code ${code}`);
      });
    });
  }

  /**
   * Ends a domain's thread: refuses it entry into Xen, waits until it is out
   * (so it holds no lock), then terminates it.
   */
  private stopThread(rec: DomainRecord, w: Worker): Promise<void> {
    const known = this.stopping.get(w);
    if (known !== undefined) return known;
    const slot = rec.slot;
    const done = (async () => {
      await this.slots.stopAndWaitAsync(slot);
      await w.terminate();
      this.slots.uncount(slot);
      if (rec.worker === w) rec.worker = null;
    })();
    this.stopping.set(w, done);
    this.ending.set(slot, done);
    void done.finally(() => {
      this.stopping.delete(w);
      if (this.ending.get(slot) === done) this.ending.delete(slot);
    });
    return done;
  }

  private markDead(domid: number, reason: string): void {
    const rec = this.domains.get(domid);
    if (rec === undefined || rec.dead) return;
    rec.dead = true;
    // Nothing of a dead domain stays here but its console (until its id is reused).
    this.domains.delete(domid);
    // The toolstack thread stopped the thread outside Xen before it destroyed the domain.
    const w = rec.worker;
    if (w !== null) void this.stopThread(rec, w);
    rec.onDeath?.(reason);
  }

  /** Destroys a domain: stops its thread outside Xen, releases its mappings as Xen does. */
  async destroyDomain(domid: number): Promise<void> {
    const rec = this.domains.get(domid);
    await this.request({ op: 'destroy', domid } as ControlRequest);
    if (rec?.worker) await this.stopThread(rec, rec.worker);
    this.markDead(domid, 'destroyed by the host');
  }

  /** The cross-cutting invariants (and the xenstore service's); an empty list means they all hold. */
  async checkInvariants(options?: InvariantOptions): Promise<string[]> {
    const found = (await this.request({ op: 'invariants', options } as ControlRequest)) as string[];
    return [...this.internalErrors.map((e) => `hypervisor internal error in ${e}`), ...found];
  }

  /** The xenstore service's state: nodes, connections with their watches and transactions, rings. */
  xenstoreStats(): Promise<XsServiceStats> {
    return this.request({ op: 'xs-stats' } as ControlRequest) as Promise<XsServiceStats>;
  }

  /** Every domain's grant table, decoded (what `gnttab demo` prints). */
  snapshot(): Promise<TableSnapshot[]> {
    return this.request({ op: 'snapshot' } as ControlRequest) as Promise<TableSnapshot[]>;
  }

  /** What `gnttab dump --json` shows: tables, invariants, event channels, the xenstore tree. */
  state(): Promise<HostState> {
    return this.request({ op: 'state' } as ControlRequest) as Promise<HostState>;
  }

  /** Every domain's event-channel ports in use (Xen's debug key 'e'). */
  ports(): Promise<PortSnapshot[]> {
    return this.request({ op: 'ports' } as ControlRequest) as Promise<PortSnapshot[]>;
  }

  /**
   * Domains Xen still knows (zombies too), free machine frames, and the bytes
   * of the toolstack thread's heap in use (after a collection when Node runs
   * with --expose-gc).
   */
  stats(): Promise<{ domains: number; freeFrames: number; heapUsed: number }> {
    return this.request({ op: 'stats' } as ControlRequest) as Promise<{
      domains: number;
      freeFrames: number;
      heapUsed: number;
    }>;
  }

  /** Machine frame `mfn`'s page_info (see Host.pageInfo); rejects with a RangeError for no such frame. */
  pageInfo(mfn: number): Promise<PageInfo> {
    return this.request({ op: 'page-info', mfn } as ControlRequest) as Promise<PageInfo>;
  }

  /** Machine frames on Xen's free list (see Host.freeFrames). */
  get freeFrames(): Promise<number> {
    return this.stats().then((s) => s.freeFrames);
  }

  /** Benchmarks: makes the toolstack thread play `rounds` of Atomics ping-pong on word 0 of `sab`. */
  pingpong(sab: SharedArrayBuffer, rounds: number): Promise<number> {
    return this.request({ op: 'pingpong', sab, rounds } as ControlRequest) as Promise<number>;
  }

  /** What a domain's guest code printed through ctx.log. */
  consoleOf(domid: number): readonly string[] {
    return this.logs.get(domid) ?? [];
  }

  /** `await using wh = await WorkerHost.start()`: shutdown at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /** Stops every domain thread and the toolstack thread; leaves no worker or handle behind. */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    await Promise.all(
      [...this.domains.values()].map((r) => (r.worker === null ? undefined : this.stopThread(r, r.worker))),
    );
    try {
      await this.request({ op: 'stop' } as ControlRequest);
    } catch {
      // the toolstack thread is gone already
    }
    this.stopped = true;
    await this.hvWorker.terminate();
    this.port.close();
  }
}
