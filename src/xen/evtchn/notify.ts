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

/** evtchn_unmask: any valid port answers 0; only a usable one is unmasked (and re-raised if pending). */
export function unmaskPort(hv: Hypervisor, d: Domain, port: number): number {
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  unmask2l(hv, d, chn);
  return 0;
}

/** notify_via_xen_event_channel: Xen signals the guest end of its Xen-attached port `lport` of `ld`. */
export function notifyViaXenEventChannel(hv: Hypervisor, ld: Domain, lport: number): void {
  const lchn = ld.evtchn.get(lport);
  if (lchn === undefined || lchn.xenConsumer === null || lchn.state !== ECS_INTERDOMAIN) return;
  const rd = lchn.remote!;
  setPending(hv, rd, rd.evtchn.ports[lchn.remotePort]!);
}
