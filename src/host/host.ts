// The host API (DESIGN.md): domains over one machine memory, each reaching the
// hypervisor through Xen's raw hypercall interface.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { GuestContext } from '../guest/context.ts';
import type { XsClient } from '../io/xenstore/api.ts';
import { GuestFault, GuestMemory } from '../machine/guest-memory.ts';
import type { Domain, DomainKind } from '../xen/domain.ts';
import { type CreateDomainOptions, type GnttabOptions, Hypervisor } from '../xen/hypervisor.ts';
import { checkInvariants, type InvariantOptions } from '../xen/invariants.ts';
import { P2M_RAM_PAGED, P2M_RAM_RW } from '../xen/paging.ts';
import { VirtualClock } from './virtual-clock.ts';
import { WaitRegistry } from './wait-registry.ts';
import { XenstoreService } from './xenstore-service.ts';

export interface HostOptions {
  /** Machine memory in MiB (default 64). */
  memoryMiB?: number;
  gnttab?: GnttabOptions;
  /** Seed for the hypervisor's random choices; the same seed gives the same run. */
  seed?: number;
  /**
   * Run the xenstore service: every domain created gets a xenstore ring page,
   * an event channel to the service (StartInfo.storeFrame / storePort) and
   * its home /local/domain/<domid>. Default off.
   */
  xenstore?: boolean;
}

export type DomainOptions = Omit<CreateDomainOptions, 'kind'> & { kind: DomainKind };

/** One guest program for runGuests: `main(ctx, args)`, the same signature a worker module's default export has. */
export interface GuestJob {
  domid: number;
  main: (ctx: GuestContext, args: unknown) => unknown;
  args?: unknown;
}

export interface GuestOutcome {
  domid: number;
  ok: boolean;
  result: unknown;
  error: Error | undefined;
}

export class DomainDestroyedError extends Error {
  constructor(domid: number) {
    super(`d${domid} has been destroyed; create a new domain to go on`);
    this.name = 'DomainDestroyedError';
  }
}

export class DomainHandle {
  readonly domid: number;
  readonly kind: DomainKind;
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

  /** Xen's raw hypercall: `nr` and register arguments; returns 0 or a negative errno. */
  hypercall(nr: number, ...args: (number | bigint)[]): number {
    if (this.xen.isDying) throw new DomainDestroyedError(this.domid);
    return this.hv.hypercall(this.xen, nr, args);
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

  /** The frame number this domain writes into a grant entry for the page at `addr` (PV: MFN, HVM: GFN). */
  frameOf(addr: number): number {
    const pfn = Math.floor(addr / XEN_PAGE_SIZE);
    if (this.xen.translated) return pfn;
    const base = this.xen.translatePage(addr, false);
    if (base < 0) throw new GuestFault(this.domid, addr, false);
    return base / XEN_PAGE_SIZE;
  }
}

export class Host {
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
    this.waits = new WaitRegistry(this.hypervisor.machine, this.clock);
    this.xenstored = options.xenstore === true ? new XenstoreService(this.hypervisor) : null;
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
      wait: (addr, expected, ms) => this.waits.wait(h.memory.wordAddr(addr), expected, ms),
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
  async runGuests(jobs: readonly GuestJob[]): Promise<GuestOutcome[]> {
    const out: GuestOutcome[] = jobs.map((j) => ({
      domid: j.domid,
      ok: false,
      result: undefined,
      error: undefined,
    }));
    let left = jobs.length;
    jobs.forEach((j, i) => {
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
      if (left === 0) return out;
      const next = this.clock.nextDue();
      if (next === undefined) {
        const stuck = out
          .filter((o, i) => !o.ok && o.error === undefined && jobs[i] !== undefined)
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
    return h;
  }

  /** The live domain with this id, if any. */
  domain(domid: number): DomainHandle | undefined {
    const h = this.handles.get(domid);
    return h?.alive ? h : undefined;
  }

  get domains(): DomainHandle[] {
    return [...this.handles.values()].filter((h) => h.alive);
  }

  /** Destroys a domain as Xen does (reference §12). */
  destroyDomain(domid: number): void {
    const h = this.handles.get(domid);
    if (h === undefined || !h.alive) throw new RangeError(`no live domain d${domid}`);
    this.hypervisor.destroyDomain(h.xen);
  }

  /** The cross-cutting invariants (and the xenstore service's); an empty list means they all hold. */
  checkInvariants(options?: InvariantOptions): string[] {
    const out = checkInvariants(this.hypervisor, options);
    if (this.xenstored !== null) out.push(...this.xenstored.checkInvariants());
    return out;
  }
}
