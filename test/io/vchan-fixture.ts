// Test plumbing for libxenvchan in one thread: a host running the xenstore
// service, with a toolstack domain (dom0), a server and a client domain (and a
// bystander), each with its vchan services and its xenstore connection over its
// own ring page and event channel (src/io/xenstore/client.ts), and the
// end-of-test check that nothing is left behind: no grant entry in use, no
// maptrack handle live, no event channel port open beyond the xenstore one,
// the xenstore path gone, the invariants empty.
import assert from 'node:assert/strict';
import type { GuestContext } from '../../src/guest/context.ts';
import { snapshotTables } from '../../src/host/snapshot.ts';
import {
  __HYPERVISOR_event_channel_op,
  type DomainHandle,
  EVTCHNOP_send,
  GNTTAB_RESERVED_XENSTORE,
  Host,
} from '../../src/index.ts';
import { connectVchanServices, type VchanServices } from '../../src/io/vchan/index.ts';
import { type XsClient, XsError } from '../../src/io/xenstore/api.ts';
import { TraceBuffer } from '../../src/xen/trace.ts';

export type Kind = 'pv' | 'hvm';

export interface Side {
  dom: DomainHandle;
  ctx: GuestContext;
  svc: VchanServices;
  /** Hypercalls the side made. */
  hypercalls: { n: number };
  /** EVTCHNOP_send hypercalls the side made on other ports than its xenstore one. */
  sends: { n: number };
  /** Times the side waited for events (EventChannels.wait: every blocking vchan call that waits). */
  waits: { n: number };
}

export interface World {
  host: Host;
  /** The toolstack's connection (privileged: sees every node). */
  xs0: XsClient;
  srv: Side;
  cli: Side;
  /** A third domain, neither server nor client. */
  other: Side;
  path: string;
  /** The hypervisor's hypercall counters (WorldOptions.trace), or null. */
  trace: TraceBuffer | null;
}

export interface WorldOptions {
  srvKind?: Kind;
  cliKind?: Kind;
  /** RAM of the server and client (default 4 MiB: room for two 1 MiB rings). */
  memoryKiB?: number;
  gnttabVersion?: 1 | 2;
  /** Attach a trace buffer: the hypervisor counts every hypercall by domain and op (World.trace). */
  trace?: boolean;
}

function side(host: Host, kind: Kind, memoryKiB: number, version: 1 | 2): Side {
  const dom = host.createDomain({ kind, memoryKiB, maxGrantFrames: 8 });
  const raw = host.context(dom.domid);
  const hypercalls = { n: 0 };
  const sends = { n: 0 };
  const ctx: GuestContext = {
    ...raw,
    hypercall: (nr, ...args) => {
      hypercalls.n++;
      // evtchn_send { port } at the argument address; the xenstore client's own sends are not counted.
      if (
        nr === __HYPERVISOR_event_channel_op &&
        args[0] === EVTCHNOP_send &&
        raw.mem.readU32(Number(args[1])) !== raw.start.storePort
      )
        sends.n++;
      return raw.hypercall(nr, ...args);
    },
  };
  const svc = connectVchanServices(ctx, { gnttabOptions: { version } });
  const waits = { n: 0 };
  const wait = svc.events.wait.bind(svc.events);
  svc.events.wait = (ms, signal) => {
    waits.n++;
    return wait(ms, signal);
  };
  return { dom, ctx, svc, hypercalls, sends, waits };
}

export function world(o: WorldOptions = {}): World {
  const trace = o.trace === true ? new TraceBuffer() : null;
  const host = new Host({
    memoryMiB: 64,
    xenstore: true,
    ...(trace === null ? {} : { traceSab: trace.sab }),
  });
  // The toolstack domain: the first domain created is dom0.
  const dom0 = host.createDomain({ kind: 'pv', memoryKiB: 256 });
  assert.equal(dom0.domid, 0);
  const mem = o.memoryKiB ?? 4096;
  const v = o.gnttabVersion ?? 1;
  const srv = side(host, o.srvKind ?? 'pv', mem, v);
  const cli = side(host, o.cliKind ?? 'pv', mem, v);
  const other = side(host, 'pv', 512, v);
  return {
    host,
    xs0: host.xenstore!,
    srv,
    cli,
    other,
    path: `/local/domain/${srv.dom.domid}/data/vchan/test`,
    trace,
  };
}

/** Lets every promise job run (resolved waits, awaiting code). */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs the virtual clock until `p` settles: lets pending continuations run,
 * then jumps to the next timer. Fails if nothing is left to wait for.
 */
export async function drive<T>(host: Host, p: Promise<T>): Promise<T> {
  let settled = false;
  const out = p.finally(() => {
    settled = true;
  });
  for (;;) {
    await settle();
    if (settled) return out;
    const due = host.clock.nextDue();
    if (due === undefined) throw new Error('the promise waits on something no one will do');
    host.clock.advance(due - host.clock.now());
  }
}

/** Bytes filled from a seed, so that each payload is distinct and checkable. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Ports in use in a domain (the hypervisor's table), beyond its xenstore
 * channel: the guest's store port and the Xen-attached port it is bound to.
 */
export function portsInUse(s: Side): number[] {
  const t = s.dom.xen.evtchn;
  const store = s.ctx.start.storePort;
  const xenEnd = t.get(store)?.remotePort;
  return t
    .portsInUse()
    .map((p) => p.port)
    .filter((p) => p !== store && p !== xenEnd);
}

/** True when the node at path exists (the toolstack's view). */
export async function xsExists(w: World, path: string): Promise<boolean> {
  try {
    await w.xs0.read(path);
    return true;
  } catch (e) {
    if (e instanceof XsError && e.code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Nothing left behind: no grant entry in use and no mapping in any table, no
 * port open in the two domains, the deferred lists empty, every ref back on
 * the drivers' free lists, the xenstore path gone, the invariants empty.
 * Runs the virtual clock first so deferred ends of access get their turn.
 */
export async function assertClean(w: World): Promise<void> {
  for (let i = 0; i < 5 && (w.srv.svc.gnttab.deferredCount > 0 || w.cli.svc.gnttab.deferredCount > 0); i++)
    w.host.clock.advance(1000);
  for (const s of [w.srv, w.cli]) {
    assert.equal(s.svc.gnttab.deferredCount, 0, `d${s.dom.domid}: deferred ends of access left`);
    assert.equal(s.svc.gnttab.freeCount, s.svc.gnttab.size - 8, `d${s.dom.domid}: grant refs not freed`);
    assert.equal(s.svc.gntalloc.grefSize, 0, `d${s.dom.domid}: gntalloc records left`);
    assert.deepEqual(portsInUse(s), [], `d${s.dom.domid}: event channel ports left open`);
    assert.equal(s.dom.xen.gt.maptrack.liveCount(), 0, `d${s.dom.domid}: maptrack handles live`);
    for (const a of s.dom.xen.gt.activeEntries()) assert.equal(a.pin, 0, `d${s.dom.domid}: grant pinned`);
  }
  for (const t of snapshotTables(w.host.hypervisor)) {
    // The toolstack's grant of the xenstore ring to dom0 (reserved ref 1) stays.
    const used = t.entries.filter((e) => !(e.ref === GNTTAB_RESERVED_XENSTORE && e.domid === 0));
    assert.deepEqual(used, [], `d${t.domid}: grant entries in use`);
    assert.deepEqual(t.mappings, [], `d${t.domid}: mappings live`);
  }
  assert.equal(await xsExists(w, w.path), false, 'the xenstore path is gone');
  assert.deepEqual(w.host.checkInvariants(), []);
}
