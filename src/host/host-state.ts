// Everything a read-only view of a host shows, as one JSON-able value: what
// `gnttab dump --json` prints and `gnttab serve` answers on /api/state. The
// grant tables (snapshot.ts), the invariants, each domain's event channels in
// use (struct evtchn: state, peer, virq), the xenstore tree and, when a trace
// is attached, the hypervisor's exact counts of hypercalls.

import { permToString } from '../io/xenstore/xenstored.ts';
import { ECS_INTERDOMAIN, ECS_IPI, ECS_PIRQ, ECS_UNBOUND, ECS_VIRQ } from '../xen/event-channel.ts';
import type { Hypervisor } from '../xen/hypervisor.ts';
import { checkInvariants } from '../xen/invariants.ts';
import type { HypercallCount, TraceBuffer } from '../xen/trace.ts';
import { hypercallName } from './hypercall-names.ts';
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

/**
 * Every hypercall since the trace was attached, counted by the hypervisor as
 * each returns: exact, whatever the trace ring dropped. The ring's records
 * (what a timeline shows) are a sample of these when `lost` is not 0.
 */
export interface HypercallTotals {
  calls: number;
  /** Of which returned a negative errno. */
  failed: number;
  /** By domain, by domid. */
  domains: HypercallCount[];
  /** By domain and op ("grant_table_op/map_grant_ref"), by domid and op. */
  ops: (HypercallCount & { op: string })[];
  /** Calls counted in `domains` whose (domain, op) found no room in the hypervisor's op table. */
  unplaced: number;
  /** Trace records written into the ring, and lost to a full ring. */
  records: number;
  lost: number;
}

export interface HostState {
  tables: TableSnapshot[];
  invariants: string[];
  eventChannels: EvtchnSnapshot[];
  /** null when the host runs no xenstore service. */
  xenstore: XsNodeSnapshot[] | null;
  /** null when no trace is attached (gnttab dump, a real host's dmesg). */
  hypercalls: HypercallTotals | null;
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

/** The counters of a trace buffer, with each (hypercall, sub-op) named as the timeline names it. */
export function hypercallTotals(trace: TraceBuffer): HypercallTotals {
  const t = trace.totals();
  // Sub-ops that name alike (grant_table_op's continuation bits) count as one.
  const ops = new Map<string, HypercallCount & { op: string }>();
  for (const o of t.ops) {
    const op = hypercallName(o.nr, o.cmd);
    const key = `${o.domid} ${op}`;
    const c = ops.get(key);
    if (c === undefined) ops.set(key, { domid: o.domid, op, calls: o.calls, failed: o.failed });
    else {
      c.calls += o.calls;
      c.failed += o.failed;
    }
  }
  return {
    calls: t.calls,
    failed: t.failed,
    domains: t.domains,
    ops: [...ops.values()].sort((a, b) => a.domid - b.domid || (a.op < b.op ? -1 : a.op > b.op ? 1 : 0)),
    unplaced: t.unplaced,
    records: t.records,
    lost: t.lost,
  };
}

/** The whole view of a host, read in the thread that owns its hypervisor. */
export function hostState(hv: Hypervisor, xs: XenstoreService | null, allEntries = false): HostState {
  return {
    tables: snapshotTables(hv, allEntries),
    invariants: [...checkInvariants(hv), ...(xs?.checkInvariants() ?? [])],
    eventChannels: eventChannelsOf(hv),
    xenstore: xs === null ? null : xenstoreOf(xs),
    hypercalls: hv.trace === null ? null : hypercallTotals(hv.trace),
  };
}

/** The JSON text of a state, as `gnttab dump --json` prints it and /api/state serves it. */
export function stateJson(s: HostState): string {
  return JSON.stringify(s, null, 2);
}
