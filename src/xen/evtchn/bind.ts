// Binding ports (event_channel.c): an unbound port offered to a domain, an
// interdomain connection to one, a VIRQ, an IPI, the vCPU a port notifies,
// and Xen's own end of a channel.
//
// Locks, as Xen HEAD takes them: a port's state changes under its domain's
// event_lock (write) and the channel's own lock (write); an interdomain bind
// holds both domains' event_locks (write, ordered by key) and both channels'
// locks (double_evtchn_lock). A free port is found under the event_lock only
// (get_free_port); senders, which hold just a channel's read lock, never see
// a state change half made.
import { DOMID_SELF } from '../../abi/domid.ts';
import { NR_VIRQS } from '../../abi/event-channel.ts';
import { XEN_EEXIST, XEN_EINVAL, XEN_ENOENT, XEN_EPERM, XEN_ESRCH } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { doubleEventLock, doubleEventUnlock, doubleEvtchnLock, doubleEvtchnUnlock } from './locking.ts';
import {
  ECS_INTERDOMAIN,
  ECS_IPI,
  ECS_PIRQ,
  ECS_UNBOUND,
  ECS_VIRQ,
  getFreePort,
  virqIsGlobal,
  type XenConsumer,
} from './port-table.ts';
import { setPending } from './two-level.ts';

/**
 * evtchn_alloc_unbound: a port in `dom` offered to `remoteDom` (DOMID_SELF:
 * the caller). Locks: d's event_lock (write), then the new channel's lock
 * (write) for its state.
 */
export function allocUnbound(hv: Hypervisor, caller: Domain, dom: number, remoteDom: number): number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  d.eventLock.writeLock();
  try {
    const port = getFreePort(d);
    if (port < 0) return port;
    // XSM_TARGET after the port is found (it stays free on refusal: check_free_port).
    if (!hv.xsmTarget(caller, d)) return -XEN_EPERM;
    const chn = d.evtchn.ports[port]!;
    chn.lock.writeLock();
    try {
      chn.state = ECS_UNBOUND;
      // remote_dom is not looked up: any id is recorded (only that domain can ever bind).
      chn.unboundRemote = remoteDom === DOMID_SELF ? caller.domid : remoteDom;
    } finally {
      chn.lock.writeUnlock();
    }
    return port;
  } finally {
    d.eventLock.writeUnlock();
  }
}

/**
 * evtchn_bind_interdomain: a fresh local port connected to <rdom, rport>,
 * which must be offered to us. Locks: both event_locks (write, lower key
 * first; one when ld is rd), then both channels' (double_evtchn_lock).
 */
export function bindInterdomain(hv: Hypervisor, ld: Domain, rdom: number, rport: number): number {
  const rd = hv.domainByAnyId(rdom, ld);
  if (rd === undefined) return -XEN_ESRCH;
  doubleEventLock(ld, rd);
  try {
    const lport = getFreePort(ld);
    if (lport < 0) return lport;
    const rchn = rd.evtchn.get(rport);
    if (rchn === undefined) return -XEN_EINVAL;
    if (rchn.state !== ECS_UNBOUND || rchn.unboundRemote !== ld.domid) return -XEN_EINVAL;
    const lchn = ld.evtchn.ports[lport]!;
    doubleEvtchnLock(lchn, rchn);
    try {
      lchn.remote = rd;
      lchn.remotePort = rport;
      lchn.state = ECS_INTERDOMAIN;
      rchn.remote = ld;
      rchn.remotePort = lport;
      rchn.state = ECS_INTERDOMAIN;
      // Notifications sent to the unbound port were dropped: Xen conservatively
      // marks the new local port pending (still under both channels' locks).
      setPending(hv, ld, lchn);
    } finally {
      doubleEvtchnUnlock(lchn, rchn);
    }
    return lport;
  } finally {
    doubleEventUnlock(ld, rd);
  }
}

/**
 * evtchn_bind_virq. Locks: d's event_lock (write), the channel's (write) for
 * its state; virq_to_evtchn is stored last with write_atomic, under the
 * event_lock alone (the close that clears it holds that lock too).
 */
export function bindVirq(_hv: Hypervisor, d: Domain, virq: number, vcpu: number): number {
  if (virq >= NR_VIRQS) return -XEN_EINVAL;
  if (virqIsGlobal(virq) && vcpu !== 0) return -XEN_EINVAL;
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  d.eventLock.writeLock();
  try {
    const map = d.evtchn.virqToEvtchn[vcpu]!;
    if (Atomics.load(map, virq) !== 0) return -XEN_EEXIST;
    const port = getFreePort(d);
    if (port < 0) return port;
    const chn = d.evtchn.ports[port]!;
    chn.lock.writeLock();
    try {
      chn.state = ECS_VIRQ;
      chn.notifyVcpu = vcpu;
      chn.virq = virq;
    } finally {
      chn.lock.writeUnlock();
    }
    Atomics.store(map, virq, port);
    return port;
  } finally {
    d.eventLock.writeUnlock();
  }
}

/** evtchn_bind_ipi. Locks: d's event_lock (write), the channel's (write). */
export function bindIpi(_hv: Hypervisor, d: Domain, vcpu: number): number {
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  d.eventLock.writeLock();
  try {
    const port = getFreePort(d);
    if (port < 0) return port;
    const chn = d.evtchn.ports[port]!;
    chn.lock.writeLock();
    try {
      chn.state = ECS_IPI;
      chn.notifyVcpu = vcpu;
    } finally {
      chn.lock.writeUnlock();
    }
    return port;
  } finally {
    d.eventLock.writeUnlock();
  }
}

/**
 * evtchn_bind_vcpu: which vCPU an unbound, interdomain (or global VIRQ) port
 * notifies. Locks: the port is looked up without one, then d's event_lock
 * (write) alone: Xen HEAD writes notify_vcpu_id without the channel's lock,
 * and senders read it racily (any value is a valid vCPU).
 */
export function bindVcpu(_hv: Hypervisor, d: Domain, port: number, vcpu: number): number {
  if (!(vcpu < d.vcpus)) return -XEN_ENOENT;
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  d.eventLock.writeLock();
  try {
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
  } finally {
    d.eventLock.writeUnlock();
  }
}

/**
 * Xen's end of a guest's channel (alloc_unbound_xen_event_channel, bound at
 * once, as the remote end's bind_interdomain would): a fresh port of `ld`,
 * consumed by Xen through `consumer`, connected to `rd`'s unbound port `rport`,
 * which must be offered to `ld`. Nothing is marked pending. Returns the new
 * port or -errno. The host's xenstore service is the caller. Locks: as
 * evtchn_bind_interdomain, both event_locks then both channels'.
 */
export function bindXenConsumer(
  _hv: Hypervisor,
  ld: Domain,
  rd: Domain,
  rport: number,
  consumer: XenConsumer,
): number {
  doubleEventLock(ld, rd);
  try {
    const rchn = rd.evtchn.get(rport);
    if (rchn === undefined || rchn.state !== ECS_UNBOUND || rchn.unboundRemote !== ld.domid)
      return -XEN_EINVAL;
    const lport = getFreePort(ld);
    if (lport < 0) return lport;
    const lchn = ld.evtchn.ports[lport]!;
    doubleEvtchnLock(lchn, rchn);
    try {
      lchn.state = ECS_INTERDOMAIN;
      lchn.remote = rd;
      lchn.remotePort = rport;
      lchn.xenConsumer = consumer;
      rchn.state = ECS_INTERDOMAIN;
      rchn.remote = ld;
      rchn.remotePort = lport;
    } finally {
      doubleEvtchnUnlock(lchn, rchn);
    }
    return lport;
  } finally {
    doubleEventUnlock(ld, rd);
  }
}
