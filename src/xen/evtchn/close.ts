// Closing ports (event_channel.c): one port, every port of a domain
// (EVTCHNOP_reset), and a dying domain's (evtchn_destroy).
import { XEN_EAGAIN, XEN_EBUSY, XEN_EINVAL, XEN_EPERM, XEN_ESRCH } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { doubleEvtchnLock, doubleEvtchnUnlock } from './locking.ts';
import {
  ECS_FREE,
  ECS_INTERDOMAIN,
  ECS_IPI,
  ECS_PIRQ,
  ECS_RESERVED,
  ECS_UNBOUND,
  ECS_VIRQ,
  type EvtchnPort,
} from './port-table.ts';
import { clearPending } from './two-level.ts';

/**
 * evtchn_free: clears the pending bit, back to free, binding reset to vCPU 0.
 * The caller holds the domain's event_lock and the channel's lock (write).
 */
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

/**
 * evtchn_close: frees `port`; an interdomain peer goes back to unbound, offered
 * to this domain again. A guest (`guest`) cannot close a Xen-attached port.
 *
 * Locks, as Xen HEAD's evtchn_close: the port is looked up without one; d1's
 * event_lock (write); a VIRQ's entry is cleared under each vCPU's virq_lock
 * (write); an interdomain port takes d2's event_lock too, at once when d1's
 * key is lower, else by dropping d1's, taking d2's and starting again (the
 * port is validated afresh: closed and re-bound elsewhere meanwhile, it
 * answers -EINVAL as if seen free); then both channels' locks
 * (double_evtchn_lock) for the two state changes. Any other port: its own
 * channel lock (write). d2 cannot go while d1's lock is dropped: a domain is
 * destroyed and freed only by the toolstack, alone in Xen (Xen takes a
 * reference with get_domain).
 */
export function closePort(hv: Hypervisor, d1: Domain, port: number, guest = true): number {
  const chn1 = d1.evtchn.get(port);
  if (chn1 === undefined) return -XEN_EINVAL;
  const peer: Peer = { d2: null };
  try {
    for (;;) {
      let first: Domain;
      d1.eventLock.writeLock();
      try {
        const rc = closeLocked(hv, d1, chn1, guest, peer);
        if (typeof rc === 'number') return rc;
        first = rc;
      } finally {
        d1.eventLock.writeUnlock();
      }
      // d2 ranks below d1: take it first, then d1 again, and start over.
      first.eventLock.writeLock();
      peer.d2 = first;
    }
  } finally {
    if (peer.d2 !== null && peer.d2 !== d1) peer.d2.eventLock.writeUnlock();
  }
}

/** evtchn_close's d2: the interdomain peer whose event_lock is held too (d1 itself: no second lock). */
interface Peer {
  d2: Domain | null;
}

/**
 * evtchn_close under d1's event_lock (and d2's, once `peer.d2` is set): 0 or
 * -errno, or the peer domain whose event_lock must be taken before d1's.
 */
function closeLocked(
  hv: Hypervisor,
  d1: Domain,
  chn1: EvtchnPort,
  guest: boolean,
  peer: Peer,
): number | Domain {
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
      // Every vCPU whose entry names the port (read_atomic, then cleared under its virq_lock).
      const t = d1.evtchn;
      for (let v = 0; v < t.virqToEvtchn.length; v++) {
        const map = t.virqToEvtchn[v]!;
        if (Atomics.load(map, chn1.virq) !== chn1.port) continue;
        const vl = t.virqLocks[v]!;
        vl.writeLock();
        try {
          Atomics.store(map, chn1.virq, 0);
        } finally {
          vl.writeUnlock();
        }
      }
      break;
    }
    case ECS_INTERDOMAIN: {
      const remote = chn1.remote!;
      if (peer.d2 === null) {
        if (remote !== d1) {
          if (remote.eventLock.key < d1.eventLock.key) return remote;
          remote.eventLock.writeLock();
        }
        peer.d2 = remote;
      } else if (remote !== peer.d2) {
        // Closed and re-bound to another domain while d1's lock was dropped.
        return -XEN_EINVAL;
      }
      const d2 = peer.d2;
      const chn2 = d2.evtchn.get(chn1.remotePort);
      if (chn2 === undefined || chn2.state !== ECS_INTERDOMAIN || chn2.remote !== d1)
        throw new Error(
          `d${d1.domid} port ${chn1.port}: interdomain peer d${d2.domid}:${chn1.remotePort} is not linked back`,
        );
      doubleEvtchnLock(chn1, chn2);
      try {
        freeChannel(hv, d1, chn1);
        chn2.state = ECS_UNBOUND;
        chn2.unboundRemote = d1.domid;
        chn2.remote = null;
        chn2.remotePort = 0;
      } finally {
        doubleEvtchnUnlock(chn1, chn2);
      }
      return 0;
    }
    default:
      throw new Error(`d${d1.domid} port ${chn1.port}: state ${chn1.state}`);
  }
  chn1.lock.writeLock();
  try {
    freeChannel(hv, d1, chn1);
  } finally {
    chn1.lock.writeUnlock();
  }
  return 0;
}

/**
 * EVTCHNOP_reset / reset_cont (evtchn_reset): closes every port of `dom`
 * (Xen-attached ports stay, as guest closes), one by one with no lock held
 * between them; then, under the event_lock (write), -EAGAIN if a guest port
 * is in use again (another thread bound one meanwhile: Xen's
 * active_evtchns > xen_evtchns).
 */
export function resetDomain(hv: Hypervisor, caller: Domain, dom: number, resuming: boolean): number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  if (!hv.xsmTarget(caller, d)) return -XEN_EPERM;
  // Another domain must be paused by its controller, which this model never does.
  if (d !== caller) return -XEN_EINVAL;
  // reset_cont resumes a reset in progress (next_evtchn); none ever is: each
  // runs to completion, and only the domain's own thread resets it.
  if (resuming) return -XEN_EBUSY;
  const t = d.evtchn;
  for (let i = 1; i < t.validPorts; i++) closePort(hv, d, i);
  d.eventLock.writeLock();
  try {
    for (const p of t.portsInUse()) if (p.xenConsumer === null) return -XEN_EAGAIN;
    return 0;
  } finally {
    d.eventLock.writeUnlock();
  }
}

/**
 * evtchn_destroy: a dying domain's ports all close, highest first; peers go
 * back to unbound. Its event_lock is taken for reading and dropped first, a
 * barrier: an allocation that began before is_dying was set is over, and any
 * later one sees is_dying under the lock (get_free_port). Then each port as
 * evtchn_close takes its locks. The toolstack runs it, alone in Xen.
 */
export function destroyEventChannels(hv: Hypervisor, d: Domain): void {
  if (!d.isDying) throw new Error(`evtchn_destroy of d${d.domid}, which is not dying`);
  d.eventLock.readLock();
  d.eventLock.readUnlock();
  for (let i = d.evtchn.validPorts - 1; i > 0; i--) closePort(hv, d, i, false);
}
