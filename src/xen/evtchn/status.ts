// EVTCHNOP_status (event_channel.c evtchn_status).
import {
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_pirq,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
} from '../../abi/event-channel.ts';
import { XEN_EINVAL, XEN_EPERM, XEN_ESRCH } from '../../abi/hypercall.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
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

/**
 * evtchn_status: looks up <dom, port>; another domain's needs XSM_TARGET
 * (dom0 or itself). Locks, as Xen HEAD's evtchn_status: the port is looked
 * up without one, then the channel's lock is read-locked while its state is
 * read (since "evtchn: use per-channel lock where possible", no event_lock).
 */
export function portStatus(hv: Hypervisor, caller: Domain, dom: number, port: number): PortStatus | number {
  const d = hv.domainByAnyId(dom, caller);
  if (d === undefined) return -XEN_ESRCH;
  const chn = d.evtchn.get(port);
  if (chn === undefined) return -XEN_EINVAL;
  chn.lock.readLock();
  try {
    return statusLocked(hv, caller, d, chn);
  } finally {
    chn.lock.readUnlock();
  }
}

function statusLocked(hv: Hypervisor, caller: Domain, d: Domain, chn: EvtchnPort): PortStatus | number {
  const port = chn.port;
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
