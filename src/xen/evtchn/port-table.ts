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
import { XEN_EBUSY, XEN_EINVAL, XEN_ENOSPC } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';

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

/** struct evtchn, the fields the 2-level ABI needs. */
export class EvtchnPort {
  readonly port: number;
  state = ECS_FREE;
  /** vCPU whose selector and upcall flag a pending event raises. */
  notifyVcpu = 0;
  /** UNBOUND: the domain allowed to bind (u.unbound.remote_domid). */
  unboundRemote = 0;
  /** INTERDOMAIN: the peer domain and its port. */
  remote: Domain | null = null;
  remotePort = 0;
  /** VIRQ: the virtual IRQ. */
  virq = 0;
  /** Xen-attached (consumer_is_xen): Xen's notification function, else null. */
  xenConsumer: XenConsumer | null = null;

  constructor(port: number) {
    this.port = port;
  }
}

/** A domain's ports (d->evtchn and its buckets), max_evtchn_port and virq_to_evtchn. */
export class EventChannelTable {
  /** Every valid port (d->valid_evtchns of them), bucket by bucket. */
  readonly ports: EvtchnPort[] = [];
  /** d->max_evtchn_port. */
  readonly maxPort: number;
  /** v->virq_to_evtchn[] of each vCPU (0: not bound). */
  readonly virqToEvtchn: Int32Array[];

  constructor(maxPort: number, vcpus: number) {
    this.maxPort = maxPort;
    this.virqToEvtchn = Array.from({ length: vcpus }, () => new Int32Array(NR_VIRQS));
    // evtchn_init: the first bucket, and port 0 reserved.
    this.growTo(0);
    this.ports[0]!.state = ECS_RESERVED;
  }

  /** d->valid_evtchns. */
  get validPorts(): number {
    return this.ports.length;
  }

  /** _evtchn_from_port: the port's record when it is below valid_evtchns. */
  get(port: number): EvtchnPort | undefined {
    return Number.isInteger(port) && port >= 0 ? this.ports[port] : undefined;
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

  /** evtchn_allocate_port: 0, -ENOSPC, or -EBUSY (taken). */
  allocatePort(port: number): number {
    if (port > this.maxPort || port >= EVTCHN_2L_NR_CHANNELS) return -XEN_ENOSPC;
    const chn = this.ports[port];
    if (chn !== undefined) return chn.state !== ECS_FREE ? -XEN_EBUSY : 0;
    this.growTo(port);
    return 0;
  }

  private growTo(port: number): void {
    while (this.ports.length <= port) {
      const base = this.ports.length;
      for (let i = 0; i < EVTCHNS_PER_BUCKET; i++) this.ports.push(new EvtchnPort(base + i));
    }
  }
}

/** get_free_port: the lowest free port of `d`, or -EINVAL (dying) / -ENOSPC. */
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
