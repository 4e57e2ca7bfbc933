// The host API (DESIGN.md): domains over one machine memory, each reaching the
// hypervisor through Xen's raw hypercall interface.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { GuestContext } from '../guest/context.ts';
import type { XsClient } from '../io/xenstore/api.ts';
import { GuestFault, GuestMemory } from '../machine/guest-memory.ts';
import type { Domain, DomainKind } from '../xen/domain.ts';
import { type CreateDomainOptions, type GnttabOptions, Hypervisor } from '../xen/hypervisor.ts';
import { checkInvariants, type InvariantOptions } from '../xen/invariants.ts';
import { boolOption } from '../xen/options.ts';
import { P2M_RAM_PAGED, P2M_RAM_RW } from '../xen/paging.ts';
import { hypercallRegisters } from '../xen/registers.ts';
import {
  type DomainProbe,
  type InjectedFault,
  type P2mEntry,
  type PageInfo,
  pageInfo,
  probeDomain,
} from './introspect.ts';
import { VirtualClock } from './virtual-clock.ts';
import { WaitRegistry } from './wait-registry.ts';
import { XenstoreService } from './xenstore-service.ts';

/** Options of a Host (and, with WorkerHostOptions, of a WorkerHost). */
export interface HostOptions {
  /** Machine memory in MiB (default 64; 1 to 4096). Ignored when machineSab is given, unless they disagree. */
  memoryMiB?: number;
  /**
   * Machine memory to run over, the caller's: a SharedArrayBuffer of whole
   * 4 KiB frames (at least 16 of them, at most 4 GiB), for example the buffer
   * of a shared `WebAssembly.Memory`, so that code compiled to wasm sees each
   * frame at its machine address (MFN * 4096). The host uses it as it is
   * (frames are zeroed when Xen allocates them) and never replaces it, so it
   * must not grow while the host runs (a grown wasm memory gets a new buffer).
   * With memoryMiB too, the two must agree.
   */
  machineSab?: SharedArrayBuffer;
  gnttab?: GnttabOptions;
  /** Seed for the hypervisor's random choices; the same seed gives the same run. */
  seed?: number;
  /**
   * Size of the hypervisor's private pages (HypervisorOptions.privatePages):
   * the pool of Xen's own bookkeeping, in 4 KiB pages, 37 (BOOT_PRIVATE_PAGES) to 262144. Default
   * half the machine's frames, 4096 to 65536. Small, it runs Xen out of memory.
   */
  privatePages?: number;
  /**
   * Run the xenstore service: every domain created gets a xenstore ring page,
   * an event channel to the service (StartInfo.storeFrame / storePort) and
   * its home /local/domain/<domid>. Default off.
   */
  xenstore?: boolean;
}

/** What createDomain takes: kind ('pv' or 'hvm'), memoryKiB, maxGrantFrames, maxMaptrackFrames, vcpus, ... */
export type DomainOptions = Omit<CreateDomainOptions, 'kind'> & { kind: DomainKind };

/**
 * One guest program for runGuests: `main(ctx, args)`, the same signature a
 * worker module's default export has. `A` is the type of `args`, checked
 * against what `main` takes; `R` what `main` returns (or resolves to).
 */
export interface GuestJob<A = unknown, R = unknown> {
  /** The domain it runs in. */
  domid: number;
  main: (ctx: GuestContext, args: A) => R | Promise<R>;
  /** Handed to main as it is (no structured clone in one thread). */
  args?: A;
}

/** How one guest of runGuests ended: its result, or the error it threw (its domain is then destroyed). */
export interface GuestOutcome<R = unknown> {
  domid: number;
  ok: boolean;
  result: R | undefined;
  error: Error | undefined;
}

/** What a job's `main` resolves to. */
export type JobResult<J> = J extends { main: (...a: never[]) => infer R } ? Awaited<R> : unknown;

/** Thrown by a DomainHandle whose domain has been destroyed. */
export class DomainDestroyedError extends Error {
  constructor(domid: number) {
    super(`d${domid} has been destroyed; create a new domain to go on`);
    this.name = 'DomainDestroyedError';
  }
}

/**
 * A domain of a Host, as the toolstack holds it: its raw hypercall, its
 * address space (`memory`) and the frame numbers it writes into grant entries.
 */
export class DomainHandle {
  readonly domid: number;
  /** 'pv' (MFNs in grant entries, a page table) or 'hvm' (GFNs, a P2M). */
  readonly kind: DomainKind;
  /** The domain's own address space (PV: virtual; HVM: guest-physical); faults throw GuestFault. */
  readonly memory: GuestMemory;
  /** The hypervisor's record of this domain (state private to Xen: for tests and tools, not guests). */
  readonly xen: Domain;
  private readonly hv: Hypervisor;

  constructor(hv: Hypervisor, d: Domain) {
    this.hv = hv;
    this.xen = d;
    this.domid = d.domid;
    this.kind = d.kind;
    this.memory = new GuestMemory(hv.machine, {
      domid: d.domid,
      kind: d.kind,
      root: d.mmuRoot,
      alive: () => !d.isDying,
    });
  }

  /** Bytes of RAM, mapped at addresses 0..ramBytes. */
  get ramBytes(): number {
    return this.xen.ramPages * XEN_PAGE_SIZE;
  }

  get alive(): boolean {
    return !this.xen.isDying;
  }

  /**
   * Xen's raw hypercall: `nr` and up to 6 register arguments, each an integer
   * number or bigint taken modulo 2^64 (so -1 is 2^64 - 1); returns 0 or a
   * negative errno. Anything else is a TypeError, as in a worker thread.
   */
  hypercall(nr: number | bigint, ...args: (number | bigint)[]): number {
    if (this.xen.isDying) throw new DomainDestroyedError(this.domid);
    const r = hypercallRegisters(nr, args);
    return this.hv.hypercall(this.xen, r.nr, r.args);
  }

  /**
   * Fault injection (HVM): marks the page at `addr` paged out, as Xen's memory
   * pager would. Grant ops on it answer GNTST_eagain and guest accesses fault
   * until pageIn.
   */
  pageOut(addr: number): void {
    this.pagingState(addr, P2M_RAM_PAGED);
  }

  pageIn(addr: number): void {
    this.pagingState(addr, P2M_RAM_RW);
  }

  private pagingState(addr: number, type: typeof P2M_RAM_RW | typeof P2M_RAM_PAGED): void {
    const p2m = this.xen.p2m;
    if (p2m === null) throw new TypeError('paging applies to hvm domains only');
    const gfn = Math.floor(addr / XEN_PAGE_SIZE);
    const e = p2m.get(gfn);
    if (e === undefined || (e.type !== P2M_RAM_RW && e.type !== P2M_RAM_PAGED)) {
      throw new RangeError(`d${this.domid}: no RAM at 0x${addr.toString(16)} to page out or in`);
    }
    p2m.set(gfn, e.mfn, type);
  }

  // ---- introspection (read-only, as xenctx and the debug keys show it) ----

  private probe(q: DomainProbe): unknown {
    if (this.xen.isDying) throw new DomainDestroyedError(this.domid);
    return probeDomain(this.hv, this.xen, q);
  }

  /** The machine frame behind `addr` in this domain's address space, or null when nothing is mapped there. */
  machineFrameOf(addr: number): number | null {
    return this.probe({ what: 'machineFrameOf', addr }) as number | null;
  }

  /**
   * PV: the L1 entry that maps `addr`, as Xen's 64-bit x86 PTE (frame << 12 |
   * flags; _PAGE_GNTTAB in bit 62 on a debug build's grant PTE); 0n when none.
   */
  pte(addr: number): bigint {
    return this.probe({ what: 'pte', addr }) as bigint;
  }

  /** PV: the machine address of the L1 entry for `addr`, or null when no L1 table covers it. */
  l1EntryAddress(addr: number): number | null {
    return this.probe({ what: 'l1EntryAddress', addr }) as number | null;
  }

  /** HVM: the P2M entry of guest frame `gfn` (machine frame and Xen's p2m type name), or null. */
  p2mEntry(gfn: number): P2mEntry | null {
    return this.probe({ what: 'p2mEntry', gfn }) as P2mEntry | null;
  }

  /** Why Xen crashed this domain (domain_crash), or null; kept after the domain is destroyed. */
  get crashReason(): string | null {
    return probeDomain(this.hv, this.xen, { what: 'crashReason' }) as string | null;
  }

  /** Exceptions Xen injected into the domain, oldest first (a copy). */
  get injectedFaults(): InjectedFault[] {
    return probeDomain(this.hv, this.xen, { what: 'injectedFaults' }) as InjectedFault[];
  }

  /** The frame number this domain writes into a grant entry for the page at `addr` (PV: MFN, HVM: GFN). */
  frameOf(addr: number): number {
    const pfn = Math.floor(addr / XEN_PAGE_SIZE);
    if (this.xen.translated) return pfn;
    const base = this.xen.translatePage(addr, false);
    if (base < 0) throw new GuestFault(this.domid, addr, false);
    return base / XEN_PAGE_SIZE;
  }
}

/**
 * Domains over one machine memory, in this thread: deterministic (virtual
 * time, a seeded hypervisor), for tests. Each domain reaches the hypervisor
 * through Xen's raw hypercall interface; guest programs run with runGuests.
 * WorkerHost runs the same guest code with each domain in a worker thread.
 *
 * ```ts
 * const host = new Host({ memoryMiB: 64, xenstore: true });
 * const dom = host.createDomain({ kind: 'pv' });
 * dom.memory.write(0x1000, new Uint8Array([1, 2, 3])); // its own address space
 * dom.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, arg, 1); // 0 or -errno
 * host.checkInvariants(); // [] when every invariant holds
 * ```
 */
export class Host {
  /** Xen itself (state private to the hypervisor: for tests and tools, not guests). */
  readonly hypervisor: Hypervisor;
  /** Virtual time of single-thread mode: it moves only when the host advances it. */
  readonly clock = new VirtualClock();
  /** The xenstore service (with `xenstore: true`): its store, rings and invariants. */
  readonly xenstored: XenstoreService | null;
  /** The toolstack's xenstore client (privileged), with `xenstore: true`. */
  readonly xenstore: XsClient | null;
  private readonly waits: WaitRegistry;
  private readonly handles = new Map<number, DomainHandle>();
  private readonly consoles = new Map<number, string[]>();

  constructor(options: HostOptions = {}) {
    this.hypervisor = new Hypervisor(options);
    // However a domain dies (destroyDomain, or Xen crashing it), the host lets
    // go of its handle, which held the domain's whole record: Xen keeps a
    // zombie as long as it must, the host nothing. Its console stays readable
    // until the id is reused.
    this.hypervisor.domainDestroyed.push((d) => {
      if (this.handles.get(d.domid)?.xen === d) this.handles.delete(d.domid);
    });
    this.waits = new WaitRegistry(this.hypervisor.machine, this.clock);
    this.xenstored = boolOption('xenstore', options.xenstore, false)
      ? new XenstoreService(this.hypervisor)
      : null;
    this.xenstore = this.xenstored?.toolClient() ?? null;
  }

  /**
   * The context guest code runs against, in this thread: deterministic (the
   * virtual clock, in-thread waiters). The same guest code runs in a worker
   * per domain with real time.
   */
  context(domid: number): GuestContext {
    const h = this.domain(domid);
    if (h === undefined) throw new RangeError(`no live domain d${domid}`);
    const d = h.xen;
    const lines = this.consoles.get(domid) ?? [];
    this.consoles.set(domid, lines);
    const store = this.xenstored?.endpoint(domid);
    return {
      // PV: the MFN of the shared-info page, to map with update_va_mapping. HVM: 0,
      // the idx of XENMAPSPACE_shared_info (a translated guest never sees MFNs).
      start: {
        domid,
        kind: d.kind,
        ramBytes: h.ramBytes,
        sharedInfoFrame: d.translated ? 0 : d.sharedInfoMfn,
        storeFrame: store?.storeFrame ?? -1,
        storePort: store?.storePort ?? 0,
      },
      mem: h.memory,
      hypercall: (nr, ...args) => h.hypercall(nr, ...args),
      clock: this.clock,
      wait: (addr, expected, ms, signal) => this.waits.wait(h.memory.wordAddr(addr), expected, ms, signal),
      log: (line) => {
        lines.push(line);
      },
    };
  }

  /**
   * Runs guest code of several domains in this thread, deterministically: each
   * `main(ctx, args)` runs against its domain's context; whenever every guest is
   * waiting, the virtual clock jumps to the next timer. A guest that throws
   * crashes only its own domain (destroyed, as in worker mode). Resolves when
   * every guest has finished, with each one's result or crash.
   */
  async runGuests<
    const A extends readonly unknown[],
    const J extends { readonly [K in keyof A]: GuestJob<A[K], unknown> },
  >(
    jobs: J & { readonly [K in keyof A]: GuestJob<A[K], unknown> },
  ): Promise<{ -readonly [K in keyof J]: GuestOutcome<JobResult<J[K]>> }> {
    const list = jobs as unknown as readonly GuestJob[];
    const out: GuestOutcome[] = list.map((j) => ({
      domid: j.domid,
      ok: false,
      result: undefined,
      error: undefined,
    }));
    let left = list.length;
    list.forEach((j, i) => {
      const o = out[i]!;
      const ctx = this.context(j.domid);
      Promise.resolve()
        .then(() => j.main(ctx, j.args))
        .then(
          (r) => {
            o.ok = true;
            o.result = r;
          },
          (e: unknown) => {
            o.error = e instanceof Error ? e : new Error(String(e));
            if (this.domain(j.domid) !== undefined) this.destroyDomain(j.domid);
          },
        )
        .finally(() => {
          left--;
        });
    });
    for (;;) {
      // Let every runnable guest run until it waits (promise jobs only: deterministic).
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (left === 0) return out as { -readonly [K in keyof J]: GuestOutcome<JobResult<J[K]>> };
      const next = this.clock.nextDue();
      if (next === undefined) {
        const stuck = out
          .filter((o, i) => !o.ok && o.error === undefined && list[i] !== undefined)
          .map((o) => `d${o.domid}`);
        throw new Error(
          `deadlock: ${stuck.join(', ')} wait for something no one will do, and no timer is pending`,
        );
      }
      this.clock.advance(Math.max(0, next - this.clock.now()));
    }
  }

  /** What a domain printed on its console through its context. */
  console(domid: number): readonly string[] {
    return this.consoles.get(domid) ?? [];
  }

  /** Guests waiting on a shared word in this thread. */
  get waiters(): number {
    return this.waits.count;
  }

  /** Creates a domain (dom0 is the first), with a xenstore home when the host runs xenstore. */
  createDomain(options: DomainOptions): DomainHandle {
    const xs = this.xenstored;
    const d = this.hypervisor.createDomain(xs === null ? options : XenstoreService.domainOptions(options));
    if (xs !== null) {
      try {
        xs.attach(d);
      } catch (e) {
        this.hypervisor.destroyDomain(d);
        throw e;
      }
    }
    const h = new DomainHandle(this.hypervisor, d);
    this.handles.set(d.domid, h);
    // A reused id starts a fresh console.
    this.consoles.delete(d.domid);
    return h;
  }

  /** The live domain with this id, if any. */
  domain(domid: number): DomainHandle | undefined {
    const h = this.handles.get(domid);
    return h?.alive ? h : undefined;
  }

  /** The live domains. */
  get domains(): DomainHandle[] {
    return [...this.handles.values()].filter((h) => h.alive);
  }

  /** Destroys a domain as Xen does (reference §12). */
  destroyDomain(domid: number): void {
    const h = this.handles.get(domid);
    if (h === undefined || !h.alive) throw new RangeError(`no live domain d${domid}`);
    this.hypervisor.destroyDomain(h.xen);
  }

  /** Machine frame `mfn`'s page_info: owner, reference counts, Xen's flag names. RangeError for no such frame. */
  pageInfo(mfn: number): PageInfo {
    return pageInfo(this.hypervisor, mfn);
  }

  /** Machine frames on Xen's free list. */
  get freeFrames(): number {
    return this.hypervisor.frames.freeFrames;
  }

  /** The cross-cutting invariants (and the xenstore service's); an empty list means they all hold. */
  checkInvariants(options?: InvariantOptions): string[] {
    const out = checkInvariants(this.hypervisor, options);
    if (this.xenstored !== null) out.push(...this.xenstored.checkInvariants());
    return out;
  }
}
