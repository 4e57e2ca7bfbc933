// Event channels, 2-level ABI: Xen's xen/common/event_channel.c and event_2l.c.
// Each domain has a table of ports (port 0 reserved, ports handed out lowest
// free first, in buckets); each port is free, unbound (offered to one remote
// domain), interdomain (connected to a peer port), a virtual IRQ or an IPI.
// Delivery writes the domain's shared-info page (a Xen-heap frame it owns and
// may map): the port's pending bit, then, when the port is not masked, the
// vCPU's selector bit and evtchn_upcall_pending, and wakes whoever sleeps on
// the Int32 word holding evtchn_upcall_pending. Every shared-info access is an
// atomic through SharedWords, in Xen's order.
//
// Xen-attached ports (xen_consumer): a port Xen itself consumes. When its
// interdomain peer sends, Xen calls the consumer's notification function
// instead of marking the port pending; the guest may not send on it, close it,
// or re-bind its vCPU (-EINVAL); Xen signals the peer with
// notify_via_xen_event_channel. The one consumer here is the host's xenstore
// service (src/host/xenstore-service.ts), which runs where the hypervisor runs.
//
// Not modelled: physical IRQs (bind_pirq answers -ENOSYS), the FIFO ABI
// (init_control answers -ENOSYS so guests stay on 2-level, as Linux does when
// it fails), SCHEDOP_poll, controller pausing (so a reset of another domain
// answers -EINVAL, as for an unpaused domain).
import { DOMID_SELF } from '../abi/domid.ts';
import {
  BITS_PER_EVTCHN_WORD,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_pirq,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_init_control,
  EVTCHNOP_reset,
  EVTCHNOP_reset_cont,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_pirq,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_status_irq,
  evtchn_unmask,
  NR_VIRQS,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  VCPU_INFO_PENDING_SEL,
  VCPU_INFO_UPCALL_PENDING,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  VIRQ_XENOPROF,
  VIRQ_XENPMU,
  vcpuInfoOffset,
  XEN_LEGACY_MAX_VCPUS,
} from '../abi/event-channel.ts';
import {
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
  XEN_EPERM,
  XEN_ESRCH,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { decodeStruct, type StructDef, type StructValue, setField } from '../abi/struct.ts';
import type { SharedWords } from '../machine/shared-words.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

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
function getFreePort(d: Domain): number {
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
function virqIsGlobal(virq: number): boolean {
  return virq !== VIRQ_TIMER && virq !== VIRQ_DEBUG && virq !== VIRQ_XENOPROF && virq !== VIRQ_XENPMU;
}

/**
 * evtchn_usable: a guest channel in a state that can carry events. A
 * Xen-attached port is not one ("usable as in by a guest", xen/event.h): its
 * pending and mask bits are never acted on, so unmasking it does nothing.
 */
function usable(chn: EvtchnPort): boolean {
  return chn.xenConsumer === null && chn.state > ECS_RESERVED;
}

// ---- the 2-level shared-info bit operations (event_2l.c) --------------------------------------

/** Little-endian bitmaps: bit n of a 64-bit word array lies in 16-bit word n >> 4, at bit n & 15. */
function testAndSetBit(w: SharedWords, base: number, bit: number): boolean {
  const m = 1 << (bit & 15);
  return (w.or16(base + (bit >>> 4) * 2, m) & m) !== 0;
}
function testAndClearBit(w: SharedWords, base: number, bit: number): boolean {
  const m = 1 << (bit & 15);
  return (w.and16(base + (bit >>> 4) * 2, ~m & 0xffff) & m) !== 0;
}
function testBit(w: SharedWords, base: number, bit: number): boolean {
  return (w.load16(base + (bit >>> 4) * 2) & (1 << (bit & 15))) !== 0;
}

/** Machine address of the domain's shared-info page. */
function sharedInfo(d: Domain): number {
  return d.sharedInfoMfn * XEN_PAGE_SIZE;
}

/** Machine address of the Int32 word holding vCPU `vcpu`'s evtchn_upcall_pending. */
export function upcallWordAddr(d: Domain, vcpu: number): number {
  return sharedInfo(d) + vcpuInfoOffset(vcpu) + VCPU_INFO_UPCALL_PENDING;
}

/**
 * vcpu_mark_events_pending: sets evtchn_upcall_pending and, on its 0 -> 1
 * transition only, kicks the vCPU: wakes whoever sleeps on that word.
 */
function markEventsPending(hv: Hypervisor, d: Domain, vcpu: number): void {
  const w = hv.machine.words;
  const a = upcallWordAddr(d, vcpu);
  if (testAndSetBit(w, a, 0)) return;
  w.notify32(a);
}

/**
 * evtchn_2l_set_pending, in Xen's strict order: the pending bit (done if it was
 * already set); then, if the port is not masked, the selector bit, and if that
 * was clear, the upcall flag. vCPUs past XEN_LEGACY_MAX_VCPUS have no
 * vcpu_info in the page (Xen points them at a dummy until they register one).
 */
function setPending(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (!usable(chn) || d.sharedInfoMfn < 0) return;
  const w = hv.machine.words;
  const si = sharedInfo(d);
  const port = chn.port;
  if (testAndSetBit(w, si + SHARED_INFO_EVTCHN_PENDING, port)) return;
  const v = chn.notifyVcpu;
  if (v >= XEN_LEGACY_MAX_VCPUS) return;
  if (
    !testBit(w, si + SHARED_INFO_EVTCHN_MASK, port) &&
    !testAndSetBit(w, si + vcpuInfoOffset(v) + VCPU_INFO_PENDING_SEL, Math.floor(port / BITS_PER_EVTCHN_WORD))
  )
    markEventsPending(hv, d, v);
}

/** evtchn_2l_clear_pending. */
function clearPending(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (d.sharedInfoMfn < 0) return;
  testAndClearBit(hv.machine.words, sharedInfo(d) + SHARED_INFO_EVTCHN_PENDING, chn.port);
}

/** evtchn_2l_unmask: clear the mask; if it was set and the port is pending, raise it again. */
function unmask2l(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  if (!usable(chn) || d.sharedInfoMfn < 0) return;
  const w = hv.machine.words;
  const si = sharedInfo(d);
  const v = chn.notifyVcpu;
  if (
    testAndClearBit(w, si + SHARED_INFO_EVTCHN_MASK, chn.port) &&
    testBit(w, si + SHARED_INFO_EVTCHN_PENDING, chn.port) &&
    v < XEN_LEGACY_MAX_VCPUS &&
    !testAndSetBit(
      w,
      si + vcpuInfoOffset(v) + VCPU_INFO_PENDING_SEL,
      Math.floor(chn.port / BITS_PER_EVTCHN_WORD),
    )
  )
    markEventsPending(hv, d, v);
}

/** evtchn_free: clears the pending bit, back to free, binding reset to vCPU 0. */
function freeChannel(hv: Hypervisor, d: Domain, chn: EvtchnPort): void {
  clearPending(hv, d, chn);
  chn.state = ECS_FREE;
  chn.notifyVcpu = 0;
  chn.remote = null;
  chn.remotePort = 0;
  chn.unboundRemote = 0;
  chn.virq = 0;
  chn.xenConsumer = null;
}

// ---- the operations (event_channel.c), each returning 0 / a port, or -errno --------------------

/** evtchn_alloc_unbound: a port in `dom` offered to `remoteDom` (DOMID_SELF: the caller). */
export function allocUnbound(hv: Hypervisor, caller: Domain, dom: number, remoteDom: number): number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  const port = getFreePort(d);
  if (port < 0) return port;
  // XSM_TARGET after the port is found (it stays free on refusal: check_free_port).
  if (!hv.xsmTarget(caller, d)) return -XEN_EPERM;
  const chn = d.evtchn.ports[port]!;
  chn.state = ECS_UNBOUND;
  // remote_dom is not looked up: any id is recorded (only that domain can ever bind).
  chn.unboundRemote = remoteDom === DOMID_SELF ? caller.domid : remoteDom;
  return port;
}

/** evtchn_bind_interdomain: a fresh local port connected to <rdom, rport>, which must be offered to us. */
export function bindInterdomain(hv: Hypervisor, ld: Domain, rdom: number, rport: number): number {
  const rd = hv.domainByAnyId(rdom, ld);
  if (rd === undefined) return -XEN_ESRCH;
  const lport = getFreePort(ld);
  if (lport < 0) return lport;
  const rchn = rd.evtchn.get(rport);
  if (rchn === undefined) return -XEN_EINVAL;
  if (rchn.state !== ECS_UNBOUND || rchn.unboundRemote !== ld.domid) return -XEN_EINVAL;
  const lchn = ld.evtchn.ports[lport]!;
  lchn.remote = rd;
  lchn.remotePort = rport;
  lchn.state = ECS_INTERDOMAIN;
  rchn.remote = ld;
  rchn.remotePort = lport;
  rchn.state = ECS_INTERDOMAIN;
  // Notifications sent to the unbound port were dropped: Xen conservatively
  // marks the new local port pending.
  setPending(hv, ld, lchn);
  return lport;
}

export function bindVirq(_hv: Hypervisor, d: Domain, virq: number, vcpu: number): number {
  if (virq >= NR_VIRQS) return -XEN_EINVAL;
  if (virqIsGlobal(virq) && vcpu !== 0) return -XEN_EINVAL;
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  const map = d.evtchn.virqToEvtchn[vcpu]!;
  if (map[virq] !== 0) return -XEN_EEXIST;
  const port = getFreePort(d);
  if (port < 0) return port;
  const chn = d.evtchn.ports[port]!;
  chn.state = ECS_VIRQ;
  chn.notifyVcpu = vcpu;
  chn.virq = virq;
  map[virq] = port;
  return port;
}

export function bindIpi(_hv: Hypervisor, d: Domain, vcpu: number): number {
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  const port = getFreePort(d);
  if (port < 0) return port;
  const chn = d.evtchn.ports[port]!;
  chn.state = ECS_IPI;
  chn.notifyVcpu = vcpu;
  return port;
}

/**
 * evtchn_close: frees `port`; an interdomain peer goes back to unbound, offered
 * to this domain again. A guest (`guest`) cannot close a Xen-attached port.
 */
export function closePort(hv: Hypervisor, d1: Domain, port: number, guest = true): number {
  const chn1 = d1.evtchn.get(port);
  if (chn1 === undefined) return -XEN_EINVAL;
  if (chn1.xenConsumer !== null && guest) return -XEN_EINVAL;
  switch (chn1.state) {
    case ECS_FREE:
    case ECS_RESERVED:
      return -XEN_EINVAL;
    case ECS_UNBOUND:
    case ECS_IPI:
    case ECS_PIRQ:
      break;
    case ECS_VIRQ: {
      const v = virqIsGlobal(chn1.virq) ? 0 : chn1.notifyVcpu;
      d1.evtchn.virqToEvtchn[v]![chn1.virq] = 0;
      break;
    }
    case ECS_INTERDOMAIN: {
      const d2 = chn1.remote!;
      const chn2 = d2.evtchn.get(chn1.remotePort);
      if (chn2 === undefined || chn2.state !== ECS_INTERDOMAIN || chn2.remote !== d1)
        throw new Error(
          `d${d1.domid} port ${port}: interdomain peer d${d2.domid}:${chn1.remotePort} is not linked back`,
        );
      freeChannel(hv, d1, chn1);
      chn2.state = ECS_UNBOUND;
      chn2.unboundRemote = d1.domid;
      chn2.remote = null;
      chn2.remotePort = 0;
      return 0;
    }
    default:
      throw new Error(`d${d1.domid} port ${port}: state ${chn1.state}`);
  }
  freeChannel(hv, d1, chn1);
  return 0;
}

/**
 * evtchn_send: interdomain -> the peer's port (or, Xen-attached, its consumer);
 * IPI -> our own; unbound -> dropped silently. A guest cannot send via a
 * Xen-attached port.
 */
export function send(hv: Hypervisor, ld: Domain, lport: number): number {
  const lchn = ld.evtchn.get(lport);
  if (lchn === undefined) return -XEN_EINVAL;
  if (lchn.xenConsumer !== null) return -XEN_EINVAL;
  switch (lchn.state) {
    case ECS_INTERDOMAIN: {
      const rd = lchn.remote!;
      const rchn = rd.evtchn.ports[lchn.remotePort]!;
      if (rchn.xenConsumer !== null) {
        rchn.xenConsumer(rd, rchn.port);
        return 0;
      }
      setPending(hv, rd, rchn);
      return 0;
    }
    case ECS_IPI:
      setPending(hv, ld, lchn);
      return 0;
    case ECS_UNBOUND:
      return 0;
    default:
      return -XEN_EINVAL;
  }
}

export interface PortStatus {
  status: number;
  vcpu: number;
  /** unbound / interdomain: the remote domain. */
  dom?: number;
  /** interdomain: the remote port. */
  port?: number;
  /** virq / pirq. */
  irq?: number;
}

/** evtchn_status: looks up <dom, port>; another domain's needs XSM_TARGET (dom0 or itself). */
export function portStatus(hv: Hypervisor, caller: Domain, dom: number, port: number): PortStatus | number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  if (!hv.xsmTarget(caller, d)) return -XEN_EPERM;
  const vcpu = chn.notifyVcpu;
  switch (chn.state) {
    case ECS_FREE:
    case ECS_RESERVED:
      return { status: EVTCHNSTAT_closed, vcpu };
    case ECS_UNBOUND:
      return { status: EVTCHNSTAT_unbound, vcpu, dom: chn.unboundRemote };
    case ECS_INTERDOMAIN:
      return { status: EVTCHNSTAT_interdomain, vcpu, dom: chn.remote!.domid, port: chn.remotePort };
    case ECS_PIRQ:
      return { status: EVTCHNSTAT_pirq, vcpu, irq: 0 };
    case ECS_VIRQ:
      return { status: EVTCHNSTAT_virq, vcpu, irq: chn.virq };
    case ECS_IPI:
      return { status: EVTCHNSTAT_ipi, vcpu };
    default:
      throw new Error(`d${d.domid} port ${port}: state ${chn.state}`);
  }
}

/** evtchn_bind_vcpu: which vCPU an unbound, interdomain (or global VIRQ) port notifies. */
export function bindVcpu(_hv: Hypervisor, d: Domain, port: number, vcpu: number): number {
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  // A guest cannot re-bind a Xen-attached port.
  if (chn.xenConsumer !== null) return -XEN_EINVAL;
  switch (chn.state) {
    case ECS_VIRQ:
      if (!virqIsGlobal(chn.virq)) return -XEN_EINVAL;
      chn.notifyVcpu = vcpu;
      return 0;
    case ECS_UNBOUND:
    case ECS_INTERDOMAIN:
    case ECS_PIRQ:
      chn.notifyVcpu = vcpu;
      return 0;
    default:
      return -XEN_EINVAL;
  }
}

/** evtchn_unmask: any valid port answers 0; only a usable one is unmasked (and re-raised if pending). */
export function unmaskPort(hv: Hypervisor, d: Domain, port: number): number {
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  unmask2l(hv, d, chn);
  return 0;
}

/** EVTCHNOP_reset / reset_cont: closes every port of `dom` (Xen-attached ports stay, as guest closes). */
export function resetDomain(hv: Hypervisor, caller: Domain, dom: number, resuming: boolean): number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  if (!hv.xsmTarget(caller, d)) return -XEN_EPERM;
  // Another domain must be paused by its controller, which this model never does.
  if (d !== caller) return -XEN_EINVAL;
  // reset_cont resumes a reset in progress; none ever is (each runs to completion).
  if (resuming) return -XEN_EBUSY;
  const t = d.evtchn;
  for (let i = 1; i < t.validPorts && t.inUse > 0; i++) closePort(hv, d, i);
  return 0;
}

/** evtchn_destroy: a dying domain's ports all close, highest first; peers go back to unbound. */
export function destroyEventChannels(hv: Hypervisor, d: Domain): void {
  for (let i = d.evtchn.validPorts - 1; i > 0; i--) closePort(hv, d, i, false);
}

/**
 * Xen's end of a guest's channel (alloc_unbound_xen_event_channel, bound at
 * once, as the remote end's bind_interdomain would): a fresh port of `ld`,
 * consumed by Xen through `consumer`, connected to `rd`'s unbound port `rport`,
 * which must be offered to `ld`. Nothing is marked pending. Returns the new
 * port or -errno. The host's xenstore service is the caller.
 */
export function bindXenConsumer(
  _hv: Hypervisor,
  ld: Domain,
  rd: Domain,
  rport: number,
  consumer: XenConsumer,
): number {
  const rchn = rd.evtchn.get(rport);
  if (rchn === undefined || rchn.state !== ECS_UNBOUND || rchn.unboundRemote !== ld.domid) return -XEN_EINVAL;
  const lport = getFreePort(ld);
  if (lport < 0) return lport;
  const lchn = ld.evtchn.ports[lport]!;
  lchn.state = ECS_INTERDOMAIN;
  lchn.remote = rd;
  lchn.remotePort = rport;
  lchn.xenConsumer = consumer;
  rchn.state = ECS_INTERDOMAIN;
  rchn.remote = ld;
  rchn.remotePort = lport;
  return lport;
}

/** notify_via_xen_event_channel: Xen signals the guest end of its Xen-attached port `lport` of `ld`. */
export function notifyViaXenEventChannel(hv: Hypervisor, ld: Domain, lport: number): void {
  const lchn = ld.evtchn.get(lport);
  if (lchn === undefined || lchn.xenConsumer === null || lchn.state !== ECS_INTERDOMAIN) return;
  const rd = lchn.remote!;
  setPending(hv, rd, rd.evtchn.ports[lchn.remotePort]!);
}

// ---- the hypercall (do_event_channel_op) ------------------------------------------------------

/** An argument struct copied in (copy_from_guest), edited, and copied back whole. */
class Arg<F extends string> {
  readonly bytes: Uint8Array;
  readonly v: StructValue<F>;
  private readonly def: StructDef<F>;
  private readonly view: DataView;

  constructor(def: StructDef<F>, bytes: Uint8Array) {
    this.def = def;
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.v = decodeStruct(def, bytes);
  }

  set(field: F, value: number): void {
    setField(this.view, 0, this.def.fields[field], value);
  }
}

function copyIn<F extends string>(hv: Hypervisor, d: Domain, addr: number, def: StructDef<F>): Arg<F> | null {
  const bytes = hv.copyFromGuest(d, addr, def.size);
  return bytes === null ? null : new Arg(def, bytes);
}

/** __copy_to_guest of the whole struct: -EFAULT when it faults (the operation stays done). */
function copyBack<F extends string>(hv: Hypervisor, d: Domain, addr: number, a: Arg<F>): number {
  return hv.copyToGuest(d, addr, a.bytes) ? 0 : -XEN_EFAULT;
}

/** event_channel_op(cmd, arg): returns 0 or a negative errno. */
export function eventChannelOp(hv: Hypervisor, d: Domain, cmd: number, arg: number): number {
  switch (cmd) {
    case EVTCHNOP_alloc_unbound: {
      const a = copyIn(hv, d, arg, evtchn_alloc_unbound);
      if (a === null) return -XEN_EFAULT;
      const port = allocUnbound(hv, d, a.v.dom, a.v.remote_dom);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_interdomain: {
      const a = copyIn(hv, d, arg, evtchn_bind_interdomain);
      if (a === null) return -XEN_EFAULT;
      const port = bindInterdomain(hv, d, a.v.remote_dom, a.v.remote_port);
      if (port < 0) return port;
      a.set('local_port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_virq: {
      const a = copyIn(hv, d, arg, evtchn_bind_virq);
      if (a === null) return -XEN_EFAULT;
      const port = bindVirq(hv, d, a.v.virq, a.v.vcpu);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_ipi: {
      const a = copyIn(hv, d, arg, evtchn_bind_ipi);
      if (a === null) return -XEN_EFAULT;
      const port = bindIpi(hv, d, a.v.vcpu);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_pirq:
      // Physical IRQs are not modelled.
      if (copyIn(hv, d, arg, evtchn_bind_pirq) === null) return -XEN_EFAULT;
      return -XEN_ENOSYS;
    case EVTCHNOP_close: {
      const a = copyIn(hv, d, arg, evtchn_close);
      if (a === null) return -XEN_EFAULT;
      return closePort(hv, d, a.v.port);
    }
    case EVTCHNOP_send: {
      const a = copyIn(hv, d, arg, evtchn_send);
      if (a === null) return -XEN_EFAULT;
      return send(hv, d, a.v.port);
    }
    case EVTCHNOP_status: {
      const a = copyIn(hv, d, arg, evtchn_status);
      if (a === null) return -XEN_EFAULT;
      const s = portStatus(hv, d, a.v.dom, a.v.port);
      if (typeof s === 'number') return s;
      a.set('status', s.status);
      a.set('vcpu', s.vcpu);
      // Only the union member of the state is written; the rest keeps the caller's bytes.
      if (s.dom !== undefined) a.set('u_dom', s.dom);
      if (s.port !== undefined) a.set('u_port', s.port);
      if (s.irq !== undefined)
        setField(new DataView(a.bytes.buffer), 0, evtchn_status_irq.fields.u_irq, s.irq);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_vcpu: {
      const a = copyIn(hv, d, arg, evtchn_bind_vcpu);
      if (a === null) return -XEN_EFAULT;
      return bindVcpu(hv, d, a.v.port, a.v.vcpu);
    }
    case EVTCHNOP_unmask: {
      const a = copyIn(hv, d, arg, evtchn_unmask);
      if (a === null) return -XEN_EFAULT;
      return unmaskPort(hv, d, a.v.port);
    }
    case EVTCHNOP_reset:
    case EVTCHNOP_reset_cont: {
      const a = copyIn(hv, d, arg, evtchn_reset);
      if (a === null) return -XEN_EFAULT;
      return resetDomain(hv, d, a.v.dom, cmd === EVTCHNOP_reset_cont);
    }
    case EVTCHNOP_init_control:
      // The FIFO ABI is not modelled: guests stay on the 2-level ABI.
      if (copyIn(hv, d, arg, evtchn_init_control) === null) return -XEN_EFAULT;
      return -XEN_ENOSYS;
    case EVTCHNOP_expand_array:
      if (copyIn(hv, d, arg, evtchn_expand_array) === null) return -XEN_EFAULT;
      // evtchn_fifo_expand_array without a FIFO control block.
      return -XEN_EOPNOTSUPP;
    case EVTCHNOP_set_priority: {
      const a = copyIn(hv, d, arg, evtchn_set_priority);
      if (a === null) return -XEN_EFAULT;
      if (d.evtchn.get(a.v.port) === undefined) return -XEN_EINVAL;
      // The 2-level ABI has no priorities (evtchn_port_set_priority: no op).
      return -XEN_ENOSYS;
    }
    default:
      return -XEN_ENOSYS;
  }
}

// ---- invariants -------------------------------------------------------------------------------

/**
 * Event-channel consistency: interdomain ports are linked both ways between
 * live tables, dying domains hold no ports, virq_to_evtchn matches the VIRQ
 * ports, and the reserved port is port 0 alone.
 */
export function checkEventChannels(hv: Hypervisor): string[] {
  const out: string[] = [];
  for (const d of hv.domains.values()) {
    const t = d.evtchn;
    if (t.ports[0]?.state !== ECS_RESERVED) out.push(`d${d.domid}: port 0 is not reserved`);
    if (d.isDying && t.inUse > 0) out.push(`dying d${d.domid} still has ${t.inUse} event channels`);
    for (const chn of t.ports) {
      if (chn.port !== 0 && chn.state === ECS_RESERVED) out.push(`d${d.domid} port ${chn.port} is reserved`);
      if (chn.state === ECS_INTERDOMAIN) {
        const rd = chn.remote;
        if (rd === null || hv.domains.get(rd.domid) !== rd) {
          out.push(`d${d.domid} port ${chn.port}: interdomain peer d${rd?.domid} no longer exists`);
          continue;
        }
        const peer = rd.evtchn.get(chn.remotePort);
        if (peer?.state !== ECS_INTERDOMAIN || peer.remote !== d || peer.remotePort !== chn.port)
          out.push(`d${d.domid} port ${chn.port}: peer d${rd.domid}:${chn.remotePort} does not link back`);
      }
      if (chn.state === ECS_VIRQ) {
        const v = virqIsGlobal(chn.virq) ? 0 : chn.notifyVcpu;
        if (t.virqToEvtchn[v]?.[chn.virq] !== chn.port)
          out.push(`d${d.domid} port ${chn.port}: VIRQ ${chn.virq} not recorded on vCPU ${v}`);
      }
    }
    t.virqToEvtchn.forEach((map, v) => {
      map.forEach((port, virq) => {
        if (port !== 0 && (t.ports[port]?.state !== ECS_VIRQ || t.ports[port]?.virq !== virq))
          out.push(`d${d.domid} vCPU ${v}: VIRQ ${virq} names port ${port}, not bound to it`);
      });
    });
  }
  return out;
}
