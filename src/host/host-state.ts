// Everything a read-only view of a host shows, as one JSON-able value: what
// `gnttab dump --json` prints and `gnttab serve` answers on /api/state. The
// grant tables (snapshot.ts), the invariants, each domain's event channels in
// use (struct evtchn: state, peer, virq) and the xenstore tree.

import { permToString } from '../io/xenstore/xenstored.ts';
import { ECS_INTERDOMAIN, ECS_IPI, ECS_PIRQ, ECS_UNBOUND, ECS_VIRQ } from '../xen/event-channel.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';
import { checkInvariants } from '../xen/invariants.ts';
import { snapshotTables, type TableSnapshot } from './snapshot.ts';
import type { XenstoreService } from './xenstore-service.ts';

export interface EvtchnSnapshot {
  domid: number;
  port: number;
  state: 'unbound' | 'interdomain' | 'pirq' | 'virq' | 'ipi';
  /** The vCPU it notifies. */
  vcpu: number;
  /** unbound: the domain allowed to bind it. */
  remoteDomid?: number;
  /** interdomain: the peer. */
  peer?: { domid: number; port: number };
  virq?: number;
  /** Attached to Xen itself (consumer_is_xen: xenstored's rings here). */
  xen: boolean;
}

export interface XsNodeSnapshot {
  path: string;
  /** The value as UTF-8 text (xenstore values are bytes; these are text in practice). */
  value: string;
  /** Permissions as xenstored writes them: "n0", "r1", ... */
  perms: string[];
}

export interface HostState {
  tables: TableSnapshot[];
  invariants: string[];
  eventChannels: EvtchnSnapshot[];
  /** null when the host runs no xenstore service. */
  xenstore: XsNodeSnapshot[] | null;
}

const STATE_NAMES: Record<number, EvtchnSnapshot['state']> = {
  [ECS_UNBOUND]: 'unbound',
  [ECS_INTERDOMAIN]: 'interdomain',
  [ECS_PIRQ]: 'pirq',
  [ECS_VIRQ]: 'virq',
  [ECS_IPI]: 'ipi',
};

export function eventChannelsOf(hv: Hypervisor): EvtchnSnapshot[] {
  const out: EvtchnSnapshot[] = [];
  for (const d of hv.domains.values()) {
    if (d.isDying) continue;
    for (const p of d.evtchn.portsInUse()) {
      const e: EvtchnSnapshot = {
        domid: d.domid,
        port: p.port,
        state: STATE_NAMES[p.state] ?? 'unbound',
        vcpu: p.notifyVcpu,
        xen: p.xenConsumer !== null,
      };
      if (p.state === ECS_UNBOUND) e.remoteDomid = p.unboundRemote;
      if (p.state === ECS_INTERDOMAIN && p.remote !== null)
        e.peer = { domid: p.remote.domid, port: p.remotePort };
      if (p.state === ECS_VIRQ) e.virq = p.virq;
      out.push(e);
    }
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

export function xenstoreOf(xs: XenstoreService): XsNodeSnapshot[] {
  const out: XsNodeSnapshot[] = [];
  for (const path of xs.store.paths()) {
    const n = xs.store.node(path);
    if (n === undefined) continue;
    out.push({ path, value: utf8.decode(n.value), perms: n.perms.map(permToString) });
  }
  return out;
}

/** The whole view of a host, read in the thread that owns its hypervisor. */
export function hostState(hv: Hypervisor, xs: XenstoreService | null, allEntries = false): HostState {
  return {
    tables: snapshotTables(hv, allEntries),
    invariants: [...checkInvariants(hv), ...(xs?.checkInvariants() ?? [])],
    eventChannels: eventChannelsOf(hv),
    xenstore: xs === null ? null : xenstoreOf(xs),
  };
}

/** The JSON text of a state, as `gnttab dump --json` prints it and /api/state serves it. */
export function stateJson(s: HostState): string {
  return JSON.stringify(s, null, 2);
}
