// Closing ports (event_channel.c): one port, every port of a domain
// (EVTCHNOP_reset), and a dying domain's (evtchn_destroy).
import { XEN_EBUSY, XEN_EINVAL, XEN_EPERM, XEN_ESRCH } from '../../abi/hypercall.ts';
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
  virqIsGlobal,
} from './port-table.ts';
import { clearPending } from './two-level.ts';

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
