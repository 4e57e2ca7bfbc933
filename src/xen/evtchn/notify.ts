// Delivering events (event_channel.c): a guest's send, its unmask, and Xen's
// notification through a Xen-attached port.
import { XEN_EINVAL } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { ECS_INTERDOMAIN, ECS_IPI, ECS_UNBOUND } from './port-table.ts';
import { setPending, unmask2l } from './two-level.ts';

/**
 * evtchn_send: interdomain -> the peer's port (or, Xen-attached, its consumer);
 * IPI -> our own; unbound -> dropped silently. A guest cannot send via a
 * Xen-attached port.
 *
 * Locks, as Xen HEAD's evtchn_send: the port is looked up without one
 * (port_is_valid), then the local channel's lock is read-locked and its state
 * read under it. That lock pins the whole binding: a close or bind of either
 * end writes both channels' locks (double_evtchn_lock), so the remote channel
 * read under it is still this port's peer, and its pending bit is not set
 * once the peer was freed and its port re-used. A Xen consumer is called
 * with the lock dropped, as Xen does.
 */
export function send(hv: Hypervisor, ld: Domain, lport: number): number {
  const lchn = ld.evtchn.get(lport);
  if (lchn === undefined) return -XEN_EINVAL;
  let consumer: (() => void) | null = null;
  lchn.lock.readLock();
  try {
    if (lchn.xenConsumer !== null) return -XEN_EINVAL;
    switch (lchn.state) {
      case ECS_INTERDOMAIN: {
        const rd = lchn.remote!;
        const rchn = rd.evtchn.ports[lchn.remotePort]!;
        const fn = rchn.xenConsumer;
        if (fn !== null) {
          const rport = rchn.port;
          consumer = () => fn(rd, rport);
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
  } finally {
    lchn.lock.readUnlock();
    if (consumer !== null) consumer();
  }
}

/**
 * evtchn_unmask: any valid port answers 0; only a usable one is unmasked (and
 * re-raised if pending). Locks: the port looked up without one, then its
 * channel lock read-locked around the bit operations.
 */
export function unmaskPort(hv: Hypervisor, d: Domain, port: number): number {
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  chn.lock.readLock();
  try {
    unmask2l(hv, d, chn);
  } finally {
    chn.lock.readUnlock();
  }
  return 0;
}

/**
 * notify_via_xen_event_channel: Xen signals the guest end of its Xen-attached
 * port `lport` of `ld`. Locks: the channel's read lock by trylock, as Xen's
 * (a port in the middle of a state change is on its way to or from free or
 * unbound: the event is dropped).
 */
export function notifyViaXenEventChannel(hv: Hypervisor, ld: Domain, lport: number): void {
  const lchn = ld.evtchn.get(lport);
  if (lchn === undefined) return;
  if (!lchn.lock.tryReadLock()) return;
  try {
    if (lchn.xenConsumer === null || lchn.state !== ECS_INTERDOMAIN) return;
    const rd = lchn.remote!;
    setPending(hv, rd, rd.evtchn.ports[lchn.remotePort]!);
  } finally {
    lchn.lock.readUnlock();
  }
}
