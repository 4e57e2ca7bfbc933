// A read-only list of every domain's event-channel ports in use, in the spirit
// of Xen's event-channel debug key ('e', dump_evtchn_info): per port its state
// and, for an interdomain port, the peer's domain and port.
import { ECS_INTERDOMAIN, ECS_IPI, ECS_PIRQ, ECS_UNBOUND, ECS_VIRQ } from '../xen/event-channel.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';

/** One event-channel port in use, as the host lists it (state, peer, virq). */
export interface PortSnapshot {
  domid: number;
  port: number;
  state: 'unbound' | 'interdomain' | 'pirq' | 'virq' | 'ipi';
  /** Interdomain: the peer's domain and port; unbound: the domain allowed to bind (port -1). */
  remote?: { domid: number; port: number };
  /** Virq: the virtual IRQ. */
  virq?: number;
  /** Attached to a consumer inside Xen (consumer_is_xen), as xenstore's port is. */
  xen: boolean;
}

const STATE_NAMES: Record<number, PortSnapshot['state']> = {
  [ECS_UNBOUND]: 'unbound',
  [ECS_INTERDOMAIN]: 'interdomain',
  [ECS_PIRQ]: 'pirq',
  [ECS_VIRQ]: 'virq',
  [ECS_IPI]: 'ipi',
};

/** Every port in use (neither free nor reserved) of every domain, by domid then port. */
export function snapshotPorts(hv: Hypervisor): PortSnapshot[] {
  const out: PortSnapshot[] = [];
  const domains = [...hv.domains.values()].sort((a, b) => a.domid - b.domid);
  for (const d of domains) {
    for (const p of d.evtchn.portsInUse()) {
      const s: PortSnapshot = {
        domid: d.domid,
        port: p.port,
        state: STATE_NAMES[p.state] ?? 'unbound',
        xen: p.xenConsumer !== null,
      };
      if (p.state === ECS_INTERDOMAIN && p.remote !== null)
        s.remote = { domid: p.remote.domid, port: p.remotePort };
      if (p.state === ECS_UNBOUND) s.remote = { domid: p.unboundRemote, port: -1 };
      if (p.state === ECS_VIRQ) s.virq = p.virq;
      out.push(s);
    }
  }
  return out;
}
