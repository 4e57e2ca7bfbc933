// Event-channel invariants, for the host's invariant check.
import type { Hypervisor } from '../hypervisor.ts';
import { ECS_INTERDOMAIN, ECS_RESERVED, ECS_VIRQ, virqIsGlobal } from './port-table.ts';

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
