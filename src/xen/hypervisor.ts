// The hypervisor: machine memory, the frame table, every domain, and the page
// reference rules grants rely on (reference §4.4). Hypercalls enter through
// dispatch.ts; one file per op under ops/.
import { DOMID_ANY, DOMID_FIRST_RESERVED, DOMID_INVALID, DOMID_SELF } from '../abi/domid.ts';
import {
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_PRESENT,
  _PAGE_RW,
  XEN_EFAULT,
  XEN_ESRCH,
} from '../abi/hypercall.ts';
import {
  DEFAULT_MAX_GRANT_FRAMES,
  DEFAULT_MAX_MAPTRACK_FRAMES,
  GRANT_PER_FRAME_V1,
  INITIAL_NR_GRANT_FRAMES,
  statusFramesFor,
  XEN_PAGE_SIZE,
} from '../abi/limits.ts';
import { MachineMemory } from '../machine/machine-memory.ts';
import type { WaitPolicy } from '../machine/wait-policy.ts';
import { dispatchHypercall, runsShared } from './dispatch.ts';
import { Domain, type DomainKind, type PageOwner } from './domain.ts';
import { DomainTable } from './domain-table.ts';
import { DEFAULT_MAX_EVTCHN_PORT, destroyEventChannels } from './event-channel.ts';
import type { PortResolver } from './evtchn/port-table.ts';
import { relinquishP2mMapping } from './foreign-mapping.ts';
import {
  FrameTable,
  NO_REFERENCE,
  OWNER_NONE,
  OWNER_XEN,
  PGC_allocated,
  PGC_xen_heap,
} from './frame-table.ts';
import { GrantTable, NO_GFN } from './grant-table.ts';
import { releaseMappings } from './lifecycle.ts';
import { LOCAL_WAIT, otherCpuBegin, otherCpuEnd, setLockThread } from './locks.ts';
import { boolOption, intOption, objectOption } from './options.ts';
import { ADDRESS_SPACE_PAGES, makePte, P2M_RAM_RW, PTE_GNTTAB_MARK, pteFlags, pteFrame } from './paging.ts';
import { defaultPrivatePages, PrivatePages } from './private-pages.ts';
import type { Register } from './registers.ts';
import { subOp, TRC_DOM_CREATE, TRC_DOM_DESTROY, TRC_HYPERCALL, TraceBuffer } from './trace.ts';
import { XenGlobals } from './xen-globals.ts';

/** The hypervisor's grant-table options (Xen's gnttab= command line and domain limits). */
export interface GnttabOptions {
  /** Highest grant-table version guests may select (Xen's gnttab=max-ver:N). Default 2 (x86). */
  maxVersion?: 1 | 2;
  /** Transitive grants (gnttab=transitive). Default on. */
  transitive?: boolean;
  /** GNTTABOP_transfer (gnttab=transfer, PV builds). Default on. */
  transfer?: boolean;
  /**
   * Behave as a Xen debug build (no NDEBUG) in the checks that differ: grant
   * PTEs carry _PAGE_GNTTAB, a guest PTE may not, and a running PV guest that
   * zaps or overwrites a grant PTE with an ordinary PTE update gets #GP
   * ("attempt to implicitly unmap", put_page_from_l1e). Default off: a release
   * build, where such a PTE update is an ordinary one.
   */
  debugBuild?: boolean;
  /**
   * gnttab_max_frames (Xen's command line): the max grant frames of a domain
   * created without its own maxGrantFrames. Default 64. As at Xen HEAD (since
   * 4.18) it is a default only, not a cap on what a toolstack asks for.
   */
  maxFrames?: number;
  /** gnttab_max_maptrack_frames: the same for maxMaptrackFrames. Default 1024. */
  maxMaptrackFrames?: number;
}

export interface HypervisorOptions {
  memoryMiB?: number;
  /** Machine memory to run over, the caller's or worker mode's (see machineFrames). */
  machineSab?: SharedArrayBuffer;
  gnttab?: GnttabOptions;
  /** Seed of the hypervisor's random choices (maptrack stealing); runs are deterministic per seed. */
  seed?: number;
  /**
   * A trace ring's SharedArrayBuffer (TraceBuffer.sab): every hypercall and
   * every domain created or destroyed is recorded there. Default none (off).
   */
  traceSab?: SharedArrayBuffer;
  /**
   * Size of the hypervisor's private pages, the pool its bookkeeping comes
   * from (domain table, domain records, grant-table headers, active entries,
   * maptrack, event-channel buckets), in 4 KiB pages, its header included.
   * Default defaultPrivatePages(machine frames): half the machine's frames,
   * 4096 to 65536. At least BOOT_PRIVATE_PAGES (the header, the globals and
   * the domain table: 37 pages), at most 262144 (1 GiB). A small pool makes Xen's out-of-memory
   * paths reachable: growth fails, a port gets no bucket (-ENOMEM).
   */
  privatePages?: number;
  /**
   * How this thread waits for a lock another thread holds (spin while cores
   * are spare, then sleep). Default: never spin, as in single-thread mode.
   */
  waitPolicy?: WaitPolicy;
}

/**
 * What another thread needs to run hypercalls on the same hypervisor
 * (Hypervisor.attach): the shared buffers, where its tables start, and its
 * settings. Structured-clonable, for workerData.
 */
export interface HypervisorShare {
  readonly machineSab: SharedArrayBuffer;
  readonly framesSab: SharedArrayBuffer;
  readonly poolSab: SharedArrayBuffer;
  readonly traceSab: SharedArrayBuffer | null;
  /** The domain table's header page and the globals page, among the private pages. */
  readonly domainTable: number;
  readonly globals: number;
  /** The Int32 index, in poolSab, of the word the toolstack's thread sleeps on (wakeToolstack). */
  readonly noticeWord: number;
  readonly opts: Hypervisor['opts'];
  readonly seed: number;
}

export interface CreateDomainOptions {
  kind: DomainKind;
  memoryKiB?: number;
  /** Reservation limit in KiB (xl maxmem); default memoryKiB. */
  maxMemoryKiB?: number;
  /**
   * Explicit domain id (the toolstack's choice), refused when in use. Default:
   * 0 for the host's first domain, then the next free id after the last one
   * handed out, wrapping below DOMID_FIRST_RESERVED (domid_alloc).
   */
  domid?: number;
  /**
   * xen_domctl_createdomain.max_grant_frames, an int32: negative or undefined
   * means the host's gnttab.maxFrames; below 1 is refused (-EINVAL).
   */
  maxGrantFrames?: number;
  /** max_maptrack_frames, an int32: negative or undefined means the host's gnttab.maxMaptrackFrames. */
  maxMaptrackFrames?: number;
  /** Per-domain max grant version (xl max_grant_version); default the host's. */
  maxGrantVersion?: 1 | 2;
  vcpus?: number;
  /**
   * Highest event-channel port (Xen's max_evtchn_port, a uint32 that
   * evtchn_init clamps to INT_MAX); default 1023, libxl's max_event_channels.
   * The 2-level ABI stops at port 4095 whatever the limit.
   */
  maxEvtchnPort?: number;
}

/**
 * The number of machine frames the options ask for: memoryMiB (default 64,
 * 1 to 4096), or the size of machineSab, a SharedArrayBuffer of whole 4 KiB
 * frames, 16 to 1048576 of them (4 GiB), agreeing with memoryMiB when both
 * are given. Throws RangeError / TypeError saying what is wrong.
 */
export function machineFrames(options: { memoryMiB?: number; machineSab?: SharedArrayBuffer }): number {
  const mib = options.memoryMiB;
  if (mib !== undefined && (!Number.isInteger(mib) || mib < 1 || mib > 4096))
    throw new RangeError(`memoryMiB must be an integer from 1 to 4096, got ${mib}`);
  const sab = options.machineSab;
  if (sab === undefined) return ((mib ?? 64) * 1024 * 1024) / XEN_PAGE_SIZE;
  if (!(sab instanceof SharedArrayBuffer))
    throw new TypeError('machineSab must be a SharedArrayBuffer (a shared WebAssembly.Memory has one)');
  const bytes = sab.byteLength;
  if (bytes % XEN_PAGE_SIZE !== 0 || bytes < 16 * XEN_PAGE_SIZE || bytes > 4096 * 1024 * 1024)
    throw new RangeError(`machineSab must hold whole 4096-byte frames, 64 KiB to 4 GiB, got ${bytes} bytes`);
  if (mib !== undefined && mib * 1024 * 1024 !== bytes)
    throw new RangeError(`memoryMiB ${mib} disagrees with machineSab's ${bytes / (1024 * 1024)} MiB`);
  return bytes / XEN_PAGE_SIZE;
}

/**
 * Leaf frames of a domain's paging pool beyond those its RAM needs: each maps
 * 4 MiB of its address space (grant frames, status frames, foreign mappings).
 */
export const PAGING_POOL_SPARE_LEAVES = 16;

const INT32_MAX = 0x7fff_ffff;
const INT32_MIN = -0x8000_0000;

/**
 * What grant_table_init allocates from Xen's heap before the table has a
 * single frame: pointer arrays (8 bytes a slot) for every possible shared
 * frame, status frame (v2) and maptrack frame, and for the frames of active
 * entries (sizeof(struct active_grant_entry) is 40 in a release build, so a
 * page holds 102 of them).
 */
export function grantTableBookkeepingBytes(
  maxGrantFrames: number,
  maxMaptrack: number,
  maxVersion: 1 | 2,
): number {
  const acgntPerPage = Math.floor(XEN_PAGE_SIZE / 40);
  const activeFrames = Math.ceil((maxGrantFrames * (XEN_PAGE_SIZE / 8)) / acgntPerPage);
  const statusFrames = maxVersion > 1 ? statusFramesFor(maxGrantFrames) : 0;
  return 8 * (activeFrames + maxGrantFrames + statusFrames + maxMaptrack);
}

/** Private pages a hypervisor takes to boot: the pool's header, the globals page, the domain table. */
export const BOOT_PRIVATE_PAGES = 1 + XenGlobals.PAGES + DomainTable.PAGES;

/**
 * The host-wide settings (Xen's gnttab= command line and the seed), checked:
 * a TypeError or RangeError naming the option that is wrong. Run by the host
 * thread of a WorkerHost too, so that a bad option fails where it was given.
 */
export function hypervisorOptions(options: HypervisorOptions): Hypervisor['opts'] & { seed: number } {
  const g = objectOption('gnttab', options.gnttab);
  // Checked here; its default depends on the machine's size (the constructor's).
  intOption(
    'privatePages',
    options.privatePages,
    BOOT_PRIVATE_PAGES,
    BOOT_PRIVATE_PAGES,
    PrivatePages.MAX_PAGES,
    " (at least the pool's header, the globals and the domain table)",
  );
  return {
    maxVersion: intOption('gnttab.maxVersion', g.maxVersion, 2, 1, 2) as 1 | 2,
    transitive: boolOption('gnttab.transitive', g.transitive, true),
    transfer: boolOption('gnttab.transfer', g.transfer, true),
    debugBuild: boolOption('gnttab.debugBuild', g.debugBuild, false),
    maxFrames: intOption('gnttab.maxFrames', g.maxFrames, DEFAULT_MAX_GRANT_FRAMES, 1, INT32_MAX),
    maxMaptrackFrames: intOption(
      'gnttab.maxMaptrackFrames',
      g.maxMaptrackFrames,
      DEFAULT_MAX_MAPTRACK_FRAMES,
      0,
      INT32_MAX,
    ),
    seed: intOption('seed', options.seed, 0x9e3779b9, 0, 0xffff_ffff),
  };
}

/** Frames kept by the hypervisor itself at the bottom of machine memory. */
const XEN_RESERVED_FRAMES = 16;

export class Hypervisor {
  readonly machine: MachineMemory;
  readonly frames: FrameTable;
  /** The hypervisor's private pages: active entries (and, in time, the rest of its bookkeeping). */
  readonly privatePages: PrivatePages;
  /** Every domain by id, and the id allocator (shared; this thread's views of the domains). */
  readonly domains: DomainTable;
  /** The global words: the hypercall lock, notices for Xen-attached ports. */
  readonly globals: XenGlobals;
  readonly opts: {
    maxVersion: 1 | 2;
    transitive: boolean;
    transfer: boolean;
    debugBuild: boolean;
    maxFrames: number;
    maxMaptrackFrames: number;
  };
  /** Exceptions raised inside the hypervisor (bugs): never thrown at guests, reported by checkInvariants. */
  readonly internalErrors: unknown[] = [];
  /**
   * Called at the end of destroyDomain, once the domain's ports are closed and
   * its pages released: what VIRQ_DOM_EXC tells xenstored (the host's xenstore
   * service drops the domain's connection, watches and home tree). A hook that
   * throws is recorded in internalErrors.
   */
  readonly domainDestroyed: ((d: Domain) => void)[] = [];
  /**
   * Called where Xen drops the granter's grant lock in the middle of an op and
   * takes it again later: map_grant_ref after the pin, before the host mapping
   * (its undo path retakes the lock), and gnttab_transfer between
   * gnttab_prepare_for_transfer and the entry's final update. Null by default. Another CPU may act
   * there; a fixed interleaving (gnttab xsa, XSA-501) places its hypercall here.
   */
  grantLockDropped: ((op: string, rd: Domain, ref: number) => void) | null = null;
  /**
   * How this thread resolves what event-channel records hold by number: a
   * peer's domid, and Xen's consumers (functions of this thread's, by index).
   */
  readonly ports: PortResolver = {
    domain: (id) => this.domains.get(id),
    consumers: [],
    remote: (d, port) => this.postNotice(d, port),
  };
  /**
   * Set in a thread attached to another's hypervisor (a domain's thread): a
   * domain Xen crashes is not destroyed here but left crashed for the
   * toolstack's thread, which wakeToolstack tells, to destroy once its thread
   * is out of Xen (as xl destroys a crashed domain).
   */
  readonly deferDestroy: boolean;
  /** Hypercalls of this thread inside Xen now (more than one only in a fixed interleaving). */
  private inside = 0;
  /** This thread's hypercall holds the hypercall lock shared: other threads may be inside Xen. */
  private shared = false;
  /** This thread is the toolstack's, working beside domain threads' hypercalls (beside). */
  private besideDomains = false;
  /**
   * Dying domains whose last page went inside the current hypercall: their
   * grant table, ports and record are freed once it is done, when no lock of
   * theirs is held any more (Xen frees them after an RCU grace period,
   * complete_domain_destroy; freeing them under their own table's lock would
   * write the unlock into a freed page).
   */
  private readonly toFinalise: Domain[] = [];
  private finalising = false;
  /** Settings and seed, for shares. */
  private readonly seed: number;
  /** The trace ring records go to (xentrace's buffers), or null: tracing off, the default. */
  trace: TraceBuffer | null = null;
  /** The first domain of the host is the boot domain, d0 (domid_alloc never picks 0 itself). */
  private booted = false;
  /** Domains crashed during the current hypercall, destroyed once it returns. */
  private readonly pendingCrashes: Domain[] = [];
  private rngState: number;

  /**
   * A new hypervisor (over `machineSab` when given). `attached` is for
   * Hypervisor.attach: another thread's view of an existing one.
   */
  constructor(options: HypervisorOptions = {}, attached?: { share: HypervisorShare; thread: number }) {
    const policy = options.waitPolicy ?? LOCAL_WAIT;
    if (attached !== undefined) {
      const sh = attached.share;
      this.opts = sh.opts;
      this.seed = sh.seed;
      this.machine = new MachineMemory(sh.machineSab.byteLength / XEN_PAGE_SIZE, sh.machineSab);
      this.frames = FrameTable.attach(sh.framesSab, policy);
      this.privatePages = PrivatePages.attach(sh.poolSab, policy);
      this.globals = new XenGlobals(this.privatePages, sh.globals, policy);
      this.domains = this.domainTable(sh.domainTable);
      // Each thread's random choices are its own, from the host's seed and the thread.
      this.rngState = (sh.seed ^ Math.imul(attached.thread + 1, 0x9e3779b1)) >>> 0 || 1;
      if (sh.traceSab !== null) this.trace = TraceBuffer.fromSab(sh.traceSab);
      this.booted = true;
      this.deferDestroy = true;
      return;
    }
    const nrFrames = machineFrames(options);
    const { seed, ...opts } = hypervisorOptions(options);
    this.opts = opts;
    this.seed = seed;
    this.machine = new MachineMemory(nrFrames, options.machineSab);
    this.frames = FrameTable.create(nrFrames, XEN_RESERVED_FRAMES, policy);
    this.privatePages = PrivatePages.create(options.privatePages ?? defaultPrivatePages(nrFrames), policy);
    this.globals = new XenGlobals(this.privatePages, XenGlobals.create(this.privatePages), policy);
    this.domains = this.domainTable(DomainTable.create(this.privatePages));
    this.rngState = seed >>> 0 || 1;
    this.deferDestroy = false;
    if (options.traceSab !== undefined) {
      if (!(options.traceSab instanceof SharedArrayBuffer))
        throw new TypeError('traceSab must be the SharedArrayBuffer of a TraceBuffer (its .sab)');
      this.trace = TraceBuffer.fromSab(options.traceSab);
    }
  }

  /**
   * Another thread's view of the hypervisor `share` describes: its hypercalls
   * run there, on the same shared state, under the same locks. `thread` is a
   * small number naming the thread (its lock owner id and random stream).
   */
  static attach(share: HypervisorShare, thread: number, waitPolicy?: WaitPolicy): Hypervisor {
    // Lock owner words name the thread; the creating thread is 1.
    setLockThread(thread + 2);
    return new Hypervisor(waitPolicy === undefined ? {} : { waitPolicy }, { share, thread });
  }

  /** What Hypervisor.attach needs, for another thread. */
  get share(): HypervisorShare {
    return {
      machineSab: this.machine.sab,
      framesSab: this.frames.sab,
      poolSab: this.privatePages.sab,
      traceSab: this.trace?.sab ?? null,
      domainTable: this.domains.headerPage,
      globals: this.globals.page,
      noticeWord: this.globals.noticeSeqIndex,
      opts: this.opts,
      seed: this.seed,
    };
  }

  private domainTable(header: number): DomainTable {
    const pool = this.privatePages;
    return new DomainTable(
      pool,
      header,
      (record) => new Domain(pool, this.frames, this.machine, record, this.ports, () => this.random()),
    );
  }

  /** xorshift32: deterministic per seed. */
  random(): number {
    let x = this.rngState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rngState = x >>> 0;
    return this.rngState / 0x1_0000_0000;
  }

  /**
   * A hypercall from domain `d`: returns 0 or a negative errno, never throws.
   * A domain Xen crashed during the call is destroyed once it returns.
   */
  hypercall(d: Domain, nr: Register, args: readonly Register[]): number {
    // A hypercall made inside another in this thread is a fixed interleaving's
    // model of a second CPU inside Xen at that point (gnttab xsa, explore): it
    // runs as that CPU would, not waiting for the lock its own thread holds.
    if (this.inside > 0) {
      const saved = otherCpuBegin();
      try {
        return this.hypercallLocked(d, nr, args);
      } finally {
        otherCpuEnd(saved);
      }
    }
    const lock = this.globals.hypercallLock;
    const shared = runsShared(nr, args);
    if (shared) lock.shared();
    else lock.exclusive();
    this.inside++;
    this.shared = shared;
    try {
      const rc = this.hypercallLocked(d, nr, args);
      this.finaliseDeferred();
      return rc;
    } finally {
      this.shared = false;
      this.inside--;
      if (shared) lock.sharedEnd();
      else lock.exclusiveEnd();
    }
  }

  private hypercallLocked(d: Domain, nr: Register, args: readonly Register[]): number {
    // A crashed domain never runs again (its vCPUs are paused until xl destroys it).
    if (d.isDying || d.crashed !== null) return -XEN_ESRCH;
    let rc: number;
    try {
      rc = dispatchHypercall(this, d, nr, args);
    } catch (err) {
      this.internalErrors.push(err);
      this.crashDomain(d, `hypervisor internal error: ${err instanceof Error ? err.message : String(err)}`);
      rc = -XEN_EFAULT;
    }
    if (this.deferDestroy) {
      // Xen may crash a domain other than the caller (a transfer's receiver, say).
      if (this.pendingCrashes.length > 0) {
        this.pendingCrashes.length = 0;
        this.wakeToolstack();
      }
    } else {
      if (d.crashed !== null && !d.isDying) this.destroyDomain(d);
      while (this.pendingCrashes.length > 0) {
        const x = this.pendingCrashes.pop()!;
        if (!x.isDying) this.destroyDomain(x);
      }
    }
    // The sub-op is the first argument of every multiplexed hypercall this host has.
    if (this.trace !== null) this.traceRecord(TRC_HYPERCALL, d.domid, subOp(nr), subOp(args[0]), rc);
    return rc;
  }

  /** A trace record, under xentrace's buffer lock: one writer at a time, in whichever thread. */
  private traceRecord(event: number, domid: number, a: number, b: number, c: number): void {
    const trace = this.trace;
    if (trace === null) return;
    const tl = this.globals.traceLock;
    tl.lock();
    try {
      trace.record(event, domid, a, b, c);
    } finally {
      tl.unlock();
    }
  }

  /**
   * Runs `fn` holding the hypercall lock: what the toolstack's thread does
   * with the shared state (create, destroy, debug keys, xenstored) while
   * domain threads make hypercalls.
   */
  locked<T>(fn: () => T): T {
    if (this.inside > 0) return fn();
    const lock = this.globals.hypercallLock;
    lock.exclusive();
    this.inside++;
    try {
      // Alone in Xen: the grace period of domains other threads unlinked is over.
      this.reapBuried();
      const r = fn();
      this.finaliseDeferred();
      return r;
    } finally {
      this.inside--;
      lock.exclusiveEnd();
    }
  }

  /**
   * Runs `fn`, the toolstack's creation or destruction of a domain, beside the
   * domain threads' hypercalls: it holds the hypercall lock shared, as their
   * shared ops do, so it runs alone only with respect to the ops that still
   * run alone in Xen. Like them it takes Xen's locks for what it touches, and
   * a domain it kills whose last page goes is unlinked now and freed by
   * reapZombies after the grace period (see maybeFinalise).
   */
  beside<T>(fn: () => T): T {
    if (this.inside > 0) return fn();
    const lock = this.globals.hypercallLock;
    lock.shared();
    this.inside++;
    this.shared = true;
    this.besideDomains = true;
    try {
      return fn();
    } finally {
      this.besideDomains = false;
      this.shared = false;
      this.inside--;
      lock.sharedEnd();
    }
  }

  /**
   * In a section other threads' hypercalls may run beside (a shared hypercall
   * of a domain thread, or the toolstack's beside): a dead domain's record is
   * freed only after the grace period.
   */
  private get othersInside(): boolean {
    return this.shared && (this.deferDestroy || this.besideDomains);
  }

  /** Wakes the toolstack's thread (it waits on globals.noticeSeqIndex): a notice or a crash. */
  wakeToolstack(): void {
    const w = this.privatePages.words;
    Atomics.add(w, this.globals.noticeSeqIndex, 1);
    Atomics.notify(w, this.globals.noticeSeqIndex);
  }

  /** A send reached a Xen-attached port whose consumer another thread registered: tell it. */
  private postNotice(d: Domain, port: number): void {
    const index = d.evtchn.get(port)?.consumerIndex ?? -1;
    if (!this.globals.post(index, d.domid, port))
      this.internalErrors.push(new Error(`d${d.domid} port ${port}: consumer ${index} has no notice slot`));
  }

  /**
   * Runs the consumers of this thread's Xen-attached ports that other threads
   * notified since the last call; returns how many ran. Call it holding the
   * hypercall lock (locked).
   */
  runNotices(): number {
    const reg = this.ports.consumers;
    let ran = 0;
    for (let i = 0; i < reg.length; i++) {
      const f = reg[i];
      if (f === undefined) continue;
      const n = this.globals.take(i);
      if (n === null) continue;
      const d = this.domains.get(n[0]);
      if (d === undefined || d.isDying) continue;
      ran++;
      try {
        f(d, n[1]);
      } catch (err) {
        this.internalErrors.push(err);
      }
    }
    return ran;
  }

  // ---- domains --------------------------------------------------------------------------------

  createDomain(options: CreateDomainOptions): Domain {
    const o = objectOption('createDomain options', options);
    if (o.kind !== 'pv' && o.kind !== 'hvm')
      throw new TypeError(`kind must be 'pv' or 'hvm', got ${String(o.kind)}`);
    const kib = intOption('memoryKiB', o.memoryKiB, 4096, 4, 4096 * 1024);
    if (kib % 4 !== 0) throw new RangeError(`memoryKiB must be a multiple of 4, got ${kib}`);
    const ramPages = kib / 4;
    const maxKib = intOption(
      'maxMemoryKiB',
      o.maxMemoryKiB,
      kib,
      kib,
      Number.MAX_SAFE_INTEGER,
      ' (memoryKiB up)',
    );
    // The domctl's fields are int32_t; negative means the host's default (grant_table_init).
    let maxGrantFrames = intOption(
      'maxGrantFrames',
      o.maxGrantFrames,
      -1,
      INT32_MIN,
      INT32_MAX,
      ' (an int32)',
    );
    if (maxGrantFrames < 0) maxGrantFrames = this.opts.maxFrames;
    if (maxGrantFrames < INITIAL_NR_GRANT_FRAMES) {
      throw new RangeError(`maxGrantFrames must be at least 1 (Xen answers -EINVAL), got ${maxGrantFrames}`);
    }
    let maxMaptrackFrames = intOption(
      'maxMaptrackFrames',
      o.maxMaptrackFrames,
      -1,
      INT32_MIN,
      INT32_MAX,
      ' (an int32)',
    );
    if (maxMaptrackFrames < 0) maxMaptrackFrames = this.opts.maxMaptrackFrames;
    const maxVersion = intOption('maxGrantVersion', o.maxGrantVersion, this.opts.maxVersion, 1, 2) as 1 | 2;
    if (maxVersion > this.opts.maxVersion) {
      throw new RangeError(
        `maxGrantVersion must be between 1 and the host's ${this.opts.maxVersion} (Xen answers -EINVAL)`,
      );
    }
    const vcpus = intOption('vcpus', o.vcpus, 1, 1, 128);
    // A uint32 in the domctl; evtchn_init keeps at most INT_MAX of it.
    const maxEvtchnPort = Math.min(
      intOption('maxEvtchnPort', o.maxEvtchnPort, DEFAULT_MAX_EVTCHN_PORT, 0, 0xffff_ffff, ' (a uint32)'),
      INT32_MAX,
    );
    // grant_table_init sizes its bookkeeping from the maxima up front, from Xen's heap: too much is -ENOMEM.
    const book = grantTableBookkeepingBytes(maxGrantFrames, maxMaptrackFrames, maxVersion);
    if (book > this.frames.freeFrames * XEN_PAGE_SIZE) {
      throw new RangeError(
        `maxGrantFrames ${maxGrantFrames} and maxMaptrackFrames ${maxMaptrackFrames} need ` +
          `${Math.ceil(book / 1024)} KiB of Xen heap for the grant table's bookkeeping, and ` +
          `${this.frames.freeFrames * 4} KiB are free (Xen answers -ENOMEM); ask for fewer frames`,
      );
    }
    const wanted =
      o.domid !== undefined
        ? intOption('domid', o.domid, 0, 0, DOMID_FIRST_RESERVED - 1, ' (below DOMID_FIRST_RESERVED)')
        : this.booted
          ? DOMID_ANY
          : 0;
    if (o.domid !== undefined && this.domains.has(wanted)) throw new RangeError(`d${wanted} is in use`);
    const poolFrames = 1 + Math.ceil(ramPages / 1024) + PAGING_POOL_SPARE_LEAVES;
    // RAM, the first grant frame, the paging pool and the shared-info page.
    if (ramPages + INITIAL_NR_GRANT_FRAMES + poolFrames + 1 > this.frames.freeFrames) {
      throw new RangeError(
        `not enough machine memory for a ${kib} KiB domain: ${this.frames.freeFrames * 4} KiB free; give the Host a larger memoryMiB`,
      );
    }
    const domid = this.domains.allocId(wanted);
    if (domid === DOMID_INVALID) {
      throw new RangeError(
        o.domid !== undefined
          ? `d${wanted} is in use`
          : 'every domain id below DOMID_FIRST_RESERVED is in use: destroy a domain first',
      );
    }
    this.booted = true;
    let gt: GrantTable;
    try {
      gt = GrantTable.create(
        maxVersion,
        maxGrantFrames,
        maxMaptrackFrames,
        vcpus,
        () => this.random(),
        this.privatePages,
      );
    } catch (err) {
      this.domains.freeId(domid);
      throw err;
    }
    let d: Domain;
    try {
      d = Domain.create(
        { domid, kind: o.kind, vcpus, ramPages, maxPages: maxKib / 4, poolFrames, maxEvtchnPort },
        gt,
        this.machine,
        this.frames,
        this.privatePages,
        () => this.allocXenFrame(),
        this.ports,
      );
    } catch (err) {
      // domain_create's failure path: the grant table and the id go back.
      gt.destroy();
      this.domains.freeId(domid);
      throw err;
    }
    // Built whole before it is published (domlist_insert comes last in
    // domain_create): the toolstack creates domains beside other threads'
    // hypercalls, and none of them may find a domain without its grant table
    // or shared-info page.
    let built = true;
    for (let pfn = 0; pfn < ramPages && built; pfn += 1024) {
      built = d.pt !== null ? d.pt.ensure(pfn) : d.p2m!.ensure(pfn);
    }
    for (let pfn = 0; pfn < ramPages && built; pfn++) {
      const mfn = this.frames.alloc(domid, PGC_allocated);
      if (mfn < 0) {
        built = false;
        break;
      }
      this.machine.zeroFrame(mfn);
      d.owned.add(mfn);
      if (d.pt !== null) {
        // The PV domain's initial mappings of its own RAM: each PTE holds a
        // general reference and, being writable, a writable type reference.
        this.frames.addRef(mfn);
        this.frames.getType(mfn);
        d.pt.set(pfn, makePte(mfn, _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY));
      } else {
        d.p2m!.set(pfn, mfn, P2M_RAM_RW);
      }
    }
    built &&= this.growTable(d, INITIAL_NR_GRANT_FRAMES);
    // The shared-info page (event channels): a zeroed Xen-heap frame shared rw with the domain.
    if (built) d.sharedInfoMfn = this.allocXenHeapFrame(d);
    built &&= d.sharedInfoMfn >= 0;
    if (!built) {
      // Another thread took the memory the check above counted on. The
      // partial domain is torn down as a dead one is: published dying (its
      // pages name it as their owner, and the release path finds it so), and
      // destroyed at once. It has no port another domain could have bound.
      d.isDying = true;
      this.domains.set(domid, d);
      // Alone in Xen for it, so that no thread that found it is inside when
      // its record goes (the grace period of a dead domain's record).
      this.locked(() => this.killDomain(d));
      throw new RangeError(
        "out of machine memory or the hypervisor's private memory for the domain: give the Host a larger memoryMiB",
      );
    }
    this.domains.set(domid, d);
    this.traceRecord(TRC_DOM_CREATE, domid, 0, 0, 0);
    return d;
  }

  /** rcu_lock_domain_by_id: an exact id; reserved ids (DOMID_SELF included) find nothing. */
  domainById(domid: number): Domain | undefined {
    return this.domains.get(domid);
  }

  /** rcu_lock_domain_by_any_id: DOMID_SELF means the caller. */
  domainByAnyId(domid: number, caller: Domain): Domain | undefined {
    return domid === DOMID_SELF ? caller : this.domains.get(domid);
  }

  /** The default XSM policy's target check: itself, or the control domain (dom0). */
  xsmTarget(caller: PageOwner, target: PageOwner): boolean {
    return caller === target || caller.domid === 0;
  }

  /** domain_crash: the domain is marked, and the host destroys it once the hypercall returns. */
  crashDomain(d: Domain, reason: string): void {
    if (d.crashed === null) {
      d.crashed = reason;
      this.pendingCrashes.push(d);
    }
  }

  /**
   * Destroys a domain (reference §12): releases its grant mappings, tears down its
   * address space, gives back its pages. Pages others still map keep the domain
   * as a zombie until the last reference goes.
   */
  destroyDomain(d: Domain): void {
    if (d.isDying) return;
    d.isDying = true;
    this.killDomain(d);
  }

  /** domain_kill and domain_relinquish_resources of a domain marked dying. */
  private killDomain(d: Domain): void {
    this.traceRecord(TRC_DOM_DESTROY, d.domid, 0, 0, 0);
    // evtchn_destroy: its ports close; interdomain peers go back to unbound.
    destroyEventChannels(this, d);
    releaseMappings(this, d);
    if (d.pt !== null) {
      for (const [vpn, pte] of [...d.pt.entries()]) {
        d.pt.set(vpn, 0);
        this.putPteReferences(d, pte);
      }
    } else {
      relinquishP2mMapping(this, d);
    }
    // relinquish_memory: the list is read under the page_alloc_lock, after
    // is_dying was set, so an assign_pages racing it (which re-checks is_dying
    // under the same lock) either put its page on the list first or failed.
    d.pageAllocLock.lock();
    let pages: number[];
    try {
      pages = [...d.owned];
    } finally {
      d.pageAllocLock.unlock();
    }
    for (const mfn of pages) this.dropAllocation(mfn);
    this.maybeFinalise(d);
    for (const hook of this.domainDestroyed) {
      try {
        hook(d);
      } catch (err) {
        this.internalErrors.push(err);
      }
    }
  }

  /**
   * The domain builder's special page (libxl / xc_dom populate one for the
   * xenstore ring): one more zeroed frame owned by `d` and counted in its pages
   * (tot_pages stays within max_pages), placed at `gfn` in an HVM domain's P2M
   * (HVM_PARAM_STORE_PFN); a PV domain maps it by MFN (start_info.store_mfn).
   * Returns the MFN, or -1 (no room, gfn taken, out of memory).
   */
  populateSpecialPage(d: Domain, gfn: number): number {
    if (
      d.p2m !== null &&
      (!(Number.isInteger(gfn) && gfn >= 0 && gfn < ADDRESS_SPACE_PAGES) ||
        d.p2m.get(gfn) !== undefined ||
        !d.p2m.ensure(gfn))
    )
      return -1;
    // assign_pages: is_dying and max_pages are checked, and the page goes on
    // the list, under the owner's page_alloc_lock (the toolstack does this
    // beside other threads' hypercalls, which may free d's pages).
    d.pageAllocLock.lock();
    let mfn = -1;
    try {
      if (d.isDying || d.totPages >= d.maxPages) return -1;
      mfn = this.frames.alloc(d.domid, PGC_allocated);
      if (mfn < 0) return -1;
      this.machine.zeroFrame(mfn);
      d.owned.add(mfn);
    } finally {
      d.pageAllocLock.unlock();
    }
    if (d.p2m !== null) d.p2m.set(gfn, mfn, P2M_RAM_RW);
    return mfn;
  }

  /**
   * The end of a hypercall (or of the toolstack's locked work): the domains
   * left to finalise are finalised now, or, in a shared hypercall of a domain
   * thread (others may use their views), by the toolstack's thread.
   */
  private finaliseDeferred(): void {
    if (this.toFinalise.length === 0 || this.inside > 1) return;
    if (this.othersInside) {
      this.toFinalise.length = 0;
      this.wakeToolstack();
      return;
    }
    this.finalising = true;
    try {
      for (let d = this.toFinalise.pop(); d !== undefined; d = this.toFinalise.pop()) this.maybeFinalise(d);
    } finally {
      this.finalising = false;
    }
  }

  /**
   * Finalises every dying domain whose last page has gone (the toolstack's
   * thread calls it, holding the hypercall lock exclusive: see maybeFinalise).
   */
  reapZombies(): void {
    this.reapBuried();
    for (const d of [...this.domains.values()]) if (d.isDying) this.maybeFinalise(d);
  }

  /** Frees the domains other threads' shared hypercalls unlinked (see maybeFinalise). */
  private reapBuried(): void {
    for (let record = this.globals.unbury(); record > 0; record = this.globals.unbury()) {
      const d = this.domains.view(record);
      this.finalising = true;
      try {
        this.finalise(d);
      } finally {
        this.finalising = false;
      }
    }
  }

  /**
   * Final destruction once no page of the domain is referenced any more. A
   * shared hypercall (another thread may be using the domain's views) leaves
   * it to the toolstack's thread, as Xen frees a domain only after an RCU
   * grace period (complete_domain_destroy).
   */
  private maybeFinalise(d: Domain): void {
    // tot_pages counts a transfer's reserved slot too: until it is given back
    // or listed, the receiver is not gone (get_knownalive_domain).
    if (!d.isDying || d.totPages > 0 || !this.domains.has(d.domid)) return;
    // Its grant and status frames are pages it owns too (share_xen_page_with_guest
    // takes a domain reference for them): while another domain still maps or
    // pins one, d stays a zombie, and the granter of that mapping can still be found.
    if (this.xenHeapFramesInUse(d)) return;
    if (this.inside > 0 && !this.finalising) {
      if (this.othersInside) {
        // domain_destroy from another thread's unmap: unlinked now, so no new
        // lookup finds it (domlist_remove); freed by the toolstack's thread
        // once no hypercall can be using it (call_rcu).
        if (this.domains.remove(d.domid, d.recordPage) && !this.globals.bury(d.recordPage))
          this.internalErrors.push(new Error(`d${d.domid}: no room to bury its record`));
        this.wakeToolstack();
        return;
      }
      if (!this.toFinalise.includes(d)) this.toFinalise.push(d);
      return;
    }
    this.finalise(d);
  }

  /** complete_domain_destroy: what a dead domain still holds goes back; its id is free again. */
  private finalise(d: Domain): void {
    for (const mfn of [...d.gt.shared, ...d.gt.status]) this.freeXenHeapFrame(mfn);
    d.gt.destroy();
    d.evtchn.destroy();
    if (d.sharedInfoMfn >= 0) this.freeXenHeapFrame(d.sharedInfoMfn);
    d.sharedInfoMfn = -1;
    for (let mfn = d.pagingPool.pop(); mfn >= 0; mfn = d.pagingPool.pop()) this.putPage(mfn);
    for (const mfn of d.tableFrames()) this.putPage(mfn);
    d.gt.shared.clear();
    d.gt.status.clear();
    d.retire(this.privatePages);
    this.domains.remove(d.domid, d.recordPage);
  }

  // ---- pages ------------------------------------------------------------------------------------

  /**
   * get_page: a general reference, if the page is allocated and owned by `d`.
   * A reference taken on a page of someone else, or of no one (steal_page
   * cleared its owner after we read the count), goes back at once.
   */
  getPage(mfn: number, d: Domain): boolean {
    if (!this.frames.isValid(mfn)) return false;
    const owner = this.frames.getOwnerAndReference(mfn);
    if (owner === d.domid) return true;
    if (owner !== NO_REFERENCE) this.putPage(mfn);
    return false;
  }

  /** Whether another domain still holds a reference to one of d's grant or status frames. */
  xenHeapFramesInUse(d: Domain): boolean {
    for (const mfn of d.gt.shared) if (this.frames.count[mfn]! > 1) return true;
    for (const mfn of d.gt.status) if (this.frames.count[mfn]! > 1) return true;
    if (d.sharedInfoMfn >= 0 && this.frames.count[d.sharedInfoMfn]! > 1) return true;
    return false;
  }

  /** put_page: drops a general reference; the last one frees the page. */
  putPage(mfn: number): void {
    const f = this.frames;
    const c = f.putRef(mfn);
    if (c > 0) {
      // The last foreign reference to a dying domain's grant frame: it may be finalised now.
      if (c === 1 && (f.flags[mfn]! & PGC_xen_heap) !== 0) {
        const d = this.domains.get(f.owner[mfn]!);
        if (d?.isDying === true) this.maybeFinalise(d);
      }
      return;
    }
    if (c < 0) throw new Error(`page ${mfn}: reference count underflow`);
    const owner = f.owner[mfn]!;
    const xenHeap = (f.flags[mfn]! & PGC_xen_heap) !== 0;
    // Off its owner's page list before it is free: once on the free list,
    // another thread may hand it out and put it on a list of its own.
    const d = owner !== OWNER_NONE && !xenHeap ? this.domains.get(owner) : undefined;
    if (d !== undefined) {
      d.pageAllocLock.lock();
      try {
        d.owned.delete(mfn);
      } finally {
        d.pageAllocLock.unlock();
      }
    }
    this.machine.zeroFrame(mfn);
    f.release(mfn);
    if (d !== undefined) this.maybeFinalise(d);
  }

  /** A dying domain whose last page (or reserved slot) went: it may be finalised now. */
  domainMayGo(d: Domain): void {
    this.maybeFinalise(d);
  }

  /**
   * Drops the owner's allocation reference (PGC_allocated), once. The flag is
   * cleared under the owner's page_alloc_lock, as steal_page clears it with
   * the count (FrameTable.stealCommit); the reference goes after the lock.
   */
  dropAllocation(mfn: number): void {
    const f = this.frames;
    const d = this.domains.get(Atomics.load(f.owner, mfn));
    let had: boolean;
    if (d === undefined) had = f.testAndClear(mfn, PGC_allocated);
    else {
      d.pageAllocLock.lock();
      try {
        had = f.testAndClear(mfn, PGC_allocated);
      } finally {
        d.pageAllocLock.unlock();
      }
    }
    if (had) this.putPage(mfn);
  }

  /**
   * free_domheap_page of a page steal_page took (no owner, count 0, on no
   * list): zeroed and back on the free list.
   */
  freeStolenPage(mfn: number): void {
    this.machine.zeroFrame(mfn);
    this.frames.release(mfn);
  }

  getPageTypeWritable(mfn: number): boolean {
    this.frames.getType(mfn);
    return true;
  }

  putPageType(mfn: number): void {
    if (this.frames.putType(mfn) < 0) throw new Error(`page ${mfn}: type count underflow`);
  }

  /**
   * put_page_from_l1e: drops what a PV PTE of `d` holds: a general reference,
   * and a writable type reference unless the frame belongs to a translated
   * domain other than d (such mappings never took one). A debug build injects
   * #GP into a running domain whose grant PTE goes this way (quirk §15.19); in
   * either build the grant's pin and maptrack slot stay.
   */
  putPteReferences(d: Domain, pte: number): void {
    if ((pte & _PAGE_PRESENT) === 0) return;
    const mfn = pteFrame(pte);
    const flags = pteFlags(pte);
    if (!this.frames.isValid(mfn)) return;
    // The PTE's reference keeps the owner from changing (it changes only at
    // count 0, or in steal_page's exact count), whichever thread drops others.
    const ownerId = Atomics.load(this.frames.owner, mfn);
    if (ownerId === OWNER_NONE) return;
    if (this.opts.debugBuild && (flags & PTE_GNTTAB_MARK) !== 0 && !d.isDying)
      d.inject(13, 'attempt to implicitly unmap a grant PTE');
    const owner = this.domains.get(ownerId);
    if ((flags & _PAGE_RW) !== 0 && (owner === d || (owner !== undefined && !owner.translated)))
      this.putPageType(mfn);
    this.putPage(mfn);
  }

  /** A zeroed frame for the hypervisor's own use (page-table frames), or -1. */
  allocXenFrame(): number {
    const mfn = this.frames.alloc(OWNER_XEN);
    if (mfn >= 0) this.machine.zeroFrame(mfn);
    return mfn;
  }

  /** Allocates a zeroed Xen-heap frame owned (and shared read-write) by `d`. */
  private allocXenHeapFrame(d: Domain): number {
    const mfn = this.frames.alloc(d.domid, PGC_xen_heap, 1);
    if (mfn < 0) return -1;
    this.machine.zeroFrame(mfn);
    return mfn;
  }

  /** Frees a Xen-heap frame: drops the allocation reference (it goes when nothing else maps it). */
  freeXenHeapFrame(mfn: number): void {
    this.putPageType(mfn);
    this.putPage(mfn);
  }

  /** Frees a Xen-heap frame whose last reference went by FrameTable.dropLastRef. */
  releaseXenHeapFrameAtZero(mfn: number): void {
    this.putPageType(mfn);
    this.machine.zeroFrame(mfn);
    this.frames.release(mfn);
  }

  /**
   * gnttab_grow_table: grows to `n` shared frames (and, in v2, the status
   * frames they need). All or nothing; the table never shrinks.
   */
  growTable(d: Domain, n: number): boolean {
    const gt = d.gt;
    if (n > gt.maxGrantFrames) return false;
    const needShared = Math.max(0, n - gt.nrGrantFrames);
    const needStatus =
      gt.version === 2 ? Math.max(0, statusFramesFor(Math.max(n, gt.nrGrantFrames)) - gt.nrStatusFrames) : 0;
    if (needShared + needStatus === 0) return true;
    if (needShared + needStatus > this.frames.freeFrames) return false;
    // The bookkeeping first (xzalloc of active entries and of the frame
    // lists' pages can fail), then the frames, all or nothing.
    if (!gt.ensureActive(n * GRANT_PER_FRAME_V1) || !gt.shared.reserve(needShared)) return false;
    if (!gt.status.reserve(needStatus)) return false;
    const shared = this.allocXenHeapFrames(d, needShared);
    if (shared === null) return false;
    const status = this.allocXenHeapFrames(d, needStatus);
    if (status === null) {
      for (const mfn of shared) this.freeXenHeapFrame(mfn);
      return false;
    }
    for (const mfn of shared) {
      gt.shared.push(mfn);
      gt.sharedGfn.push(NO_GFN);
    }
    for (const mfn of status) {
      gt.status.push(mfn);
      gt.statusGfn.push(NO_GFN);
    }
    return true;
  }

  /** `n` zeroed Xen-heap frames for `d`, or null (and none taken) when memory runs out. */
  private allocXenHeapFrames(d: Domain, n: number): number[] | null {
    const got: number[] = [];
    for (let i = 0; i < n; i++) {
      const mfn = this.allocXenHeapFrame(d);
      if (mfn < 0) {
        for (const m of got) this.freeXenHeapFrame(m);
        return null;
      }
      got.push(mfn);
    }
    return got;
  }

  /** Allocates and shares the status frames for the current table size (v1 -> v2). */
  populateStatusFrames(d: Domain): boolean {
    const gt = d.gt;
    const need = statusFramesFor(gt.nrGrantFrames) - gt.nrStatusFrames;
    if (need > this.frames.freeFrames || !gt.status.reserve(need)) return false;
    const status = this.allocXenHeapFrames(d, need);
    if (status === null) return false;
    for (const mfn of status) {
      gt.status.push(mfn);
      gt.statusGfn.push(NO_GFN);
    }
    return true;
  }

  // ---- guest memory, as Xen's copy_from_guest / copy_to_guest --------------------------------------

  /** Reads guest memory; null when any byte faults. */
  copyFromGuest(d: Domain, addr: number, len: number): Uint8Array | null {
    if (!(addr >= 0) || !Number.isSafeInteger(addr)) return null;
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const base = d.translatePage(a, false);
      if (base < 0) return null;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(len - done, XEN_PAGE_SIZE - off);
      out.set(this.machine.u8.subarray(base + off, base + off + n), done);
      done += n;
    }
    return out;
  }

  /** Writes guest memory; false when a page faults (earlier pages are written, as in Xen). */
  copyToGuest(d: Domain, addr: number, bytes: Uint8Array): boolean {
    if (!(addr >= 0) || !Number.isSafeInteger(addr)) return false;
    let done = 0;
    while (done < bytes.length) {
      const a = addr + done;
      const base = d.translatePage(a, true);
      if (base < 0) return false;
      const off = a % XEN_PAGE_SIZE;
      const n = Math.min(bytes.length - done, XEN_PAGE_SIZE - off);
      this.machine.u8.set(bytes.subarray(done, done + n), base + off);
      done += n;
    }
    return true;
  }
}
