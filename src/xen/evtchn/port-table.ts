// The port table of a domain (d->evtchn and its buckets, event_channel.c):
// port records and their states, allocation lowest free first, and the
// predicates the operations share.
import {
  EVTCHN_2L_NR_CHANNELS,
  NR_VIRQS,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  VIRQ_XENOPROF,
  VIRQ_XENPMU,
} from '../../abi/event-channel.ts';
import { XEN_EBUSY, XEN_EINVAL, XEN_ENOMEM, XEN_ENOSPC } from '../../abi/hypercall.ts';
import type { WaitPolicy } from '../../machine/wait-policy.ts';
import type { Domain } from '../domain.ts';
import { LOCK_CLASSES, LOCK_WORDS, RwLock } from '../locks.ts';
import { PageDirectory } from '../page-directory.ts';
import { PAGE_WORDS, type PrivatePages } from '../private-pages.ts';

// struct evtchn states (xen/include/xen/sched.h).
export const ECS_FREE = 0;
export const ECS_RESERVED = 1;
export const ECS_UNBOUND = 2;
export const ECS_INTERDOMAIN = 3;
export const ECS_PIRQ = 4;
export const ECS_VIRQ = 5;
export const ECS_IPI = 6;

/**
 * Ports per bucket: PAGE_SIZE / next_power_of_2(sizeof(struct evtchn)), 64 on
 * an x86_64 build. A port below the allocated buckets is "valid" (a free one
 * reads as EVTCHNSTAT_closed); one above answers -EINVAL.
 */
export const EVTCHNS_PER_BUCKET = 64;
/** libxl's default max_event_channels: a domU's max_evtchn_port. */
export const DEFAULT_MAX_EVTCHN_PORT = 1023;

/**
 * A Xen-internal consumer of a port (Xen's xen_event_channel_notification_t):
 * called with the port's domain and number when the interdomain peer sends.
 */
export type XenConsumer = (d: Domain, port: number) => void;

// ---- a port's record, in Int32 words (the one definition) ----
// One bucket of EVTCHNS_PER_BUCKET records is one private page.
/**
 * The channel's lock (chn->lock, an rwlock at HEAD): the first LOCK_WORDS
 * words. Written for a state change (under the domain's event_lock, write),
 * read by send, unmask and status; its key is its word index, the model's
 * address of the record (double_evtchn_lock orders two by address).
 */
export const EVTCHN_LOCK = 0;
const P_STATE = LOCK_WORDS;
const P_NOTIFY_VCPU = LOCK_WORDS + 1;
const P_UNBOUND_REMOTE = LOCK_WORDS + 2;
/** The interdomain peer's domid, -1 for none. */
const P_REMOTE_DOMID = LOCK_WORDS + 3;
const P_REMOTE_PORT = LOCK_WORDS + 4;
const P_VIRQ = LOCK_WORDS + 5;
/** 0, or 1 + the index of Xen's consumer in the hypervisor's registry. */
const P_CONSUMER = LOCK_WORDS + 6;
const P_WORDS = PAGE_WORDS / EVTCHNS_PER_BUCKET;

// ---- the table's words in the domain's record ----
const T_MAX_PORT = 0;
const T_VALID = 1;
/** Root of the directory of buckets. */
const T_BUCKETS = 2;
/** Root of the directory of the vCPUs' virq_to_evtchn maps. */
const T_VIRQS = 3;
/** Words of the table's part of a domain record. */
export const EVTCHN_TABLE_WORDS = 4;
/**
 * A vCPU's slot in the VIRQ pages: its virq_lock (v->virq_lock, an rwlock),
 * then its virq_to_evtchn[NR_VIRQS]; a multiple of LOCK_WORDS, so each lock
 * is a lock slot.
 */
const VIRQ_SLOT_WORDS = LOCK_WORDS * Math.ceil((LOCK_WORDS + NR_VIRQS) / LOCK_WORDS);
const VIRQ_MAPS_PER_PAGE = Math.floor(PAGE_WORDS / VIRQ_SLOT_WORDS);

/**
 * Resolves what a port record holds by number: a domain by domid, Xen's
 * consumers by their index in the hypervisor's registry.
 */
export interface PortResolver {
  domain(domid: number): Domain | undefined;
  /** One slot per Xen-attached port's binding; a freed slot is undefined and reused. */
  readonly consumers: (XenConsumer | undefined)[];
  /**
   * Runs for a Xen-attached port whose consumer another thread registered
   * (xenstored's, in the toolstack thread): it tells that thread. Absent, such
   * a port reads as not Xen-attached in this thread.
   */
  readonly remote?: XenConsumer;
}

/** struct evtchn, the fields the 2-level ABI needs: one thread's view of one record. */
export class EvtchnPort {
  readonly port: number;
  /** chn->lock (see EVTCHN_LOCK). */
  readonly lock: RwLock;
  private readonly words: Int32Array;
  private readonly at: number;
  private readonly resolve: PortResolver;

  constructor(port: number, words: Int32Array, at: number, resolve: PortResolver, policy: WaitPolicy) {
    this.port = port;
    this.words = words;
    this.at = at;
    this.resolve = resolve;
    this.lock = new RwLock(words, at + EVTCHN_LOCK, LOCK_CLASSES.evtchn, at, policy);
  }

  get state(): number {
    return this.words[this.at + P_STATE]!;
  }
  set state(v: number) {
    this.words[this.at + P_STATE] = v;
  }

  /** vCPU whose selector and upcall flag a pending event raises. */
  get notifyVcpu(): number {
    return this.words[this.at + P_NOTIFY_VCPU]!;
  }
  set notifyVcpu(v: number) {
    this.words[this.at + P_NOTIFY_VCPU] = v;
  }

  /** UNBOUND: the domain allowed to bind (u.unbound.remote_domid). */
  get unboundRemote(): number {
    return this.words[this.at + P_UNBOUND_REMOTE]!;
  }
  set unboundRemote(v: number) {
    this.words[this.at + P_UNBOUND_REMOTE] = v;
  }

  /** INTERDOMAIN: the peer domain (held by its domid) and its port. */
  get remote(): Domain | null {
    const id = this.words[this.at + P_REMOTE_DOMID]!;
    return id < 0 ? null : (this.resolve.domain(id) ?? null);
  }
  set remote(d: Domain | null) {
    this.words[this.at + P_REMOTE_DOMID] = d === null ? -1 : d.domid;
  }

  get remotePort(): number {
    return this.words[this.at + P_REMOTE_PORT]!;
  }
  set remotePort(v: number) {
    this.words[this.at + P_REMOTE_PORT] = v;
  }

  /** VIRQ: the virtual IRQ. */
  get virq(): number {
    return this.words[this.at + P_VIRQ]!;
  }
  set virq(v: number) {
    this.words[this.at + P_VIRQ] = v;
  }

  /** Xen-attached (consumer_is_xen): Xen's notification function, else null. */
  get xenConsumer(): XenConsumer | null {
    const c = this.words[this.at + P_CONSUMER]!;
    return c === 0 ? null : (this.resolve.consumers[c - 1] ?? this.resolve.remote ?? null);
  }

  /** Xen-attached: the index of its consumer in the registry of the thread that bound it; else -1. */
  get consumerIndex(): number {
    return this.words[this.at + P_CONSUMER]! - 1;
  }
  set xenConsumer(f: XenConsumer | null) {
    const reg = this.resolve.consumers;
    // Each binding has a slot of its own, freed when the port lets it go, so
    // the registry holds nothing of a domain that is gone.
    const old = this.words[this.at + P_CONSUMER]!;
    if (old !== 0) reg[old - 1] = undefined;
    if (f === null) {
      this.words[this.at + P_CONSUMER] = 0;
      return;
    }
    let i = reg.indexOf(undefined);
    if (i < 0) i = reg.push(f) - 1;
    else reg[i] = f;
    this.words[this.at + P_CONSUMER] = i + 1;
  }
}

/**
 * A domain's ports (d->evtchn and its buckets), max_evtchn_port and
 * virq_to_evtchn, in the hypervisor's private pages: their numbers in the
 * domain's record, a directory of buckets, one page each, and a directory of
 * the vCPUs' VIRQ maps. This object is one thread's view.
 */
export class EventChannelTable {
  private readonly words: Int32Array;
  /** The table's numbers and where they start (the domain's record; this view's own once it is gone). */
  private hw: Int32Array;
  private hdr: number;
  private readonly buckets: PageDirectory;
  private readonly virqPages: PageDirectory;
  private readonly resolve: PortResolver;
  /** This thread's views of the valid ports. */
  private views: EvtchnPort[] = [];
  /**
   * v->virq_to_evtchn[] of each vCPU (0: not bound), views of their words:
   * read and written with Atomics (read_atomic / write_atomic), as Xen reads
   * them under virq_lock only (send_guest_*_virq) or none (evtchn_close).
   */
  readonly virqToEvtchn: Int32Array[];
  /** v->virq_lock of each vCPU: written by evtchn_close to clear a VIRQ's entry. */
  readonly virqLocks: RwLock[];
  private readonly policy: WaitPolicy;

  /** A new table (evtchn_init) whose numbers go at words[at..at + EVTCHN_TABLE_WORDS). */
  static create(
    maxPort: number,
    vcpus: number,
    pool: PrivatePages,
    at: number,
    resolve: PortResolver,
  ): EventChannelTable {
    const w = pool.words;
    const fail = () => new RangeError("out of the hypervisor's private memory for event channels");
    const virqPages = new PageDirectory(pool);
    let buckets: PageDirectory;
    try {
      for (let k = 0; k * VIRQ_MAPS_PER_PAGE < vcpus; k++) if (virqPages.add(k) < 0) throw fail();
      buckets = new PageDirectory(pool);
    } catch (err) {
      // evtchn_init's failure path: what was allocated goes back.
      virqPages.free();
      throw err;
    }
    w[at + T_MAX_PORT] = maxPort;
    w[at + T_VALID] = 0;
    w[at + T_BUCKETS] = buckets.root;
    w[at + T_VIRQS] = virqPages.root;
    const t = new EventChannelTable(pool, at, vcpus, resolve);
    // evtchn_init: the first bucket, and port 0 reserved.
    if (!t.growTo(0)) {
      t.destroy();
      throw fail();
    }
    t.ports[0]!.state = ECS_RESERVED;
    return t;
  }

  /** A view of the table whose numbers are at words[at..] of `pool`, for a domain of `vcpus` vCPUs. */
  constructor(pool: PrivatePages, at: number, vcpus: number, resolve: PortResolver) {
    this.words = pool.words;
    this.hw = pool.words;
    this.hdr = at;
    this.resolve = resolve;
    this.buckets = new PageDirectory(pool, this.words[at + T_BUCKETS]!);
    this.virqPages = new PageDirectory(pool, this.words[at + T_VIRQS]!);
    this.policy = pool.policy;
    this.virqToEvtchn = [];
    this.virqLocks = [];
    for (let v = 0; v < vcpus; v++) {
      const page = this.virqPages.page(Math.floor(v / VIRQ_MAPS_PER_PAGE));
      const slot = page * PAGE_WORDS + (v % VIRQ_MAPS_PER_PAGE) * VIRQ_SLOT_WORDS;
      this.virqLocks.push(new RwLock(this.words, slot, LOCK_CLASSES.virqLock, slot, pool.policy));
      this.virqToEvtchn.push(new Int32Array(pool.sab, (slot + LOCK_WORDS) * 4, NR_VIRQS));
    }
  }

  /** d->max_evtchn_port. */
  get maxPort(): number {
    return this.hw[this.hdr + T_MAX_PORT]!;
  }

  /**
   * d->valid_evtchns, read without a lock (port_is_valid): an atomic load,
   * after which the buckets below it are seen as published (XSA-340).
   */
  get validPorts(): number {
    return Atomics.load(this.hw, this.hdr + T_VALID);
  }

  /** Every valid port (d->valid_evtchns of them), bucket by bucket: this thread's views. */
  get ports(): readonly EvtchnPort[] {
    const n = this.validPorts;
    for (let port = this.views.length; port < n; port++) {
      const page = this.buckets.page(Math.floor(port / EVTCHNS_PER_BUCKET));
      const at = page * PAGE_WORDS + (port % EVTCHNS_PER_BUCKET) * P_WORDS;
      this.views.push(new EvtchnPort(port, this.words, at, this.resolve, this.policy));
    }
    return this.views;
  }

  /** _evtchn_from_port: the port's record when it is below valid_evtchns. */
  get(port: number): EvtchnPort | undefined {
    return Number.isInteger(port) && port >= 0 && port < this.validPorts ? this.ports[port] : undefined;
  }

  /** Ports in use (neither free nor the reserved port 0): zero once a domain is gone. */
  get inUse(): number {
    let n = 0;
    for (const p of this.ports) if (p.state > ECS_RESERVED) n++;
    return n;
  }

  /** The ports in use, lowest first. */
  portsInUse(): EvtchnPort[] {
    return this.ports.filter((p) => p.state > ECS_RESERVED);
  }

  /**
   * evtchn_allocate_port: 0, -ENOSPC (beyond the limit, or no memory for a
   * bucket), or -EBUSY (taken). The caller holds the domain's event_lock for
   * writing.
   */
  allocatePort(port: number): number {
    if (port > this.maxPort || port >= EVTCHN_2L_NR_CHANNELS) return -XEN_ENOSPC;
    const chn = this.get(port);
    if (chn !== undefined) return chn.state !== ECS_FREE ? -XEN_EBUSY : 0;
    // evtchn_allocate_port's alloc_evtchn_bucket failing is -ENOMEM.
    return this.growTo(port) ? 0 : -XEN_ENOMEM;
  }

  private growTo(port: number): boolean {
    const w = this.words;
    while (this.validPorts <= port) {
      const base = this.validPorts;
      const page = this.buckets.add(base / EVTCHNS_PER_BUCKET);
      if (page < 0) return false;
      for (let i = 0; i < EVTCHNS_PER_BUCKET; i++) w[page * PAGE_WORDS + i * P_WORDS + P_REMOTE_DOMID] = -1;
      // The bucket (its directory slot, its records) before the count that
      // makes it valid: lock-free readers load the count first (XSA-340).
      Atomics.store(this.hw, this.hdr + T_VALID, base + EVTCHNS_PER_BUCKET);
    }
    return true;
  }

  /** evtchn_destroy's end: the buckets and VIRQ maps give their pages back. */
  destroy(): void {
    if (this.buckets.root === 0) return;
    this.buckets.free();
    this.virqPages.free();
    this.views = [];
    const tomb = new Int32Array(EVTCHN_TABLE_WORDS);
    tomb[T_MAX_PORT] = this.maxPort;
    this.hw = tomb;
    this.hdr = 0;
    this.virqToEvtchn.length = 0;
    this.virqLocks.length = 0;
  }
}

/**
 * get_free_port: the lowest free port of `d`, or -EINVAL (dying) / -ENOSPC.
 * The caller holds d's event_lock for writing: is_dying is authoritative
 * under it (evtchn_destroy's barrier takes it after is_dying is set).
 */
export function getFreePort(d: Domain): number {
  if (d.isDying) return -XEN_EINVAL;
  const t = d.evtchn;
  for (let port = 0; port <= t.maxPort; port++) {
    const rc = t.allocatePort(port);
    if (rc === 0) return port;
    if (rc !== -XEN_EBUSY) return rc;
  }
  return -XEN_ENOSPC;
}

/** VIRQs bound per vCPU; every other VIRQ is global (x86: the arch VIRQs too). */
export function virqIsGlobal(virq: number): boolean {
  return virq !== VIRQ_TIMER && virq !== VIRQ_DEBUG && virq !== VIRQ_XENOPROF && virq !== VIRQ_XENPMU;
}

/**
 * evtchn_usable: a guest channel in a state that can carry events. A
 * Xen-attached port is not one ("usable as in by a guest", xen/event.h): its
 * pending and mask bits are never acted on, so unmasking it does nothing.
 */
export function usable(chn: EvtchnPort): boolean {
  return chn.xenConsumer === null && chn.state > ECS_RESERVED;
}
