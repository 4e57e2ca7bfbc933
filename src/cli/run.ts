// `gnttab run <frontend> <backend>`: the user's own pair of guest modules, each
// in its own domain's worker thread on a fresh host with xenstore. While they
// run, their consoles stream out and the grant tables are sampled; once both
// have returned (or crashed, or timed out), everything each domain still holds
// is listed (grants, mappings, ports, xenstore keys), then both domains are
// destroyed and the invariants checked. Anything left behind is a leak.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { GNTTAB_NR_RESERVED_ENTRIES } from '../abi/limits.ts';
import type { PortSnapshot } from '../host/port-snapshot.ts';
import type { MappingSnapshot, TableSnapshot } from '../host/snapshot.ts';
import { type ThreadDomain, WorkerHost } from '../host/worker-host.ts';
import type { XsClient } from '../io/xenstore/api.ts';
import { wrap } from './format.ts';

/** What each guest module's default export receives as `args` under `gnttab run`. */
export interface RunGuestArgs {
  /** Which of the two this guest is. */
  role: 'frontend' | 'backend';
  /** This guest's domid (also ctx.start.domid). */
  self: number;
  /** The other guest's domid. */
  peer: number;
  frontend: number;
  backend: number;
  /** The words after `--` on the command line. */
  argv: string[];
}

export interface RunOptions {
  /** The frontend's guest module (path or file URL). */
  frontend: string;
  /** The backend's guest module (path or file URL). */
  backend: string;
  argv: string[];
  frontendKind: 'pv' | 'hvm';
  backendKind: 'pv' | 'hvm';
  /** Machine memory of the host. */
  memoryMiB: number;
  /** RAM of each domain. */
  domainKiB: number;
  /** Both guests must have returned by then, or they are stopped and the run fails. */
  timeoutMs: number;
  /** A trace buffer's SharedArrayBuffer for the host (gnttab serve's view); default none. */
  traceSab?: SharedArrayBuffer;
}

/** What one domain still held once its guest had returned. */
export interface LeftBehind {
  /** Grant refs (past the reserved ones) whose entry still grants access. */
  grants: number[];
  /** Foreign mappings it still holds. */
  mappings: MappingSnapshot[];
  /** Event-channel ports it bound and did not close. */
  ports: PortSnapshot[];
  /** xenstore keys under its home path that were not there before it ran. */
  xenstoreKeys: string[];
}

/** What `gnttab run` (runGuestPair) reports of one guest: its domain, outcome, console and leftovers. */
export interface GuestReport {
  role: 'frontend' | 'backend';
  module: string;
  domid: number;
  kind: 'pv' | 'hvm';
  /** 'stopped': the host stopped it a second after its peer crashed. */
  outcome: 'returned' | 'crashed' | 'timed out' | 'stopped';
  /** The default export's result (structured-cloned), when it returned. */
  result?: unknown;
  /** Why it crashed. */
  error?: string;
  console: string[];
  /** Only for a guest that returned (a crashed domain is destroyed, which releases everything). */
  leftBehind: LeftBehind | null;
}

/** The whole of a `gnttab run` (its `--json`): both guests, the tables while they ran, leftovers, invariants. */
export interface RunReport {
  ok: boolean;
  frontend: GuestReport;
  backend: GuestReport;
  /** Both grant tables at the busiest moment sampled while the guests ran (empty if none was sampled). */
  tables: TableSnapshot[];
  /** One line per thing left behind; empty when clean. */
  leftovers: string[];
  /** Invariant violations after both domains were destroyed; empty when they all hold. */
  invariants: string[];
}

export interface RunEvents {
  /** A console line of one of the guests, as it is printed. */
  console?: (role: 'frontend' | 'backend', domid: number, line: string) => void;
  /** The host, once it runs (before the domains are made). */
  host?: (host: WorkerHost) => void;
}

/** A guest's console line as gnttab run prints it: "d1 frontend| ...", wrapped to `width`. */
export function consoleLine(
  role: 'frontend' | 'backend',
  domid: number,
  line: string,
  width: number,
): string {
  return `${wrap(`d${domid} ${role.padEnd(8)}| ${line}`, width, '             ')}\n`;
}

/** A path (relative to the working directory) or a file: URL, as a file: URL. */
function moduleUrl(m: string): string {
  return m.startsWith('file:') ? m : pathToFileURL(resolve(m)).href;
}

/** Every key below `path` (itself excluded), depth first; a missing path has none. */
async function keysBelow(xs: XsClient, path: string): Promise<string[]> {
  let names: string[];
  try {
    names = await xs.directory(path);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const child = `${path}/${n}`;
    out.push(child, ...(await keysBelow(xs, child)));
  }
  return out;
}

/** How much of a table is in use: the sample with the most is the one shown. */
function busyness(tables: TableSnapshot[]): number {
  let n = 0;
  for (const t of tables) n += grantsInUse(t).length + t.mappings.length;
  return n;
}

function grantsInUse(t: TableSnapshot): number[] {
  return t.entries
    .filter((e) => e.ref >= GNTTAB_NR_RESERVED_ENTRIES && (e.flags & 3) !== 0)
    .map((e) => e.ref);
}

function portText(p: PortSnapshot): string {
  if (p.state === 'interdomain' && p.remote)
    return `port ${p.port} (interdomain to d${p.remote.domid}:${p.remote.port})`;
  if (p.state === 'unbound' && p.remote) return `port ${p.port} (unbound, for d${p.remote.domid})`;
  if (p.state === 'virq') return `port ${p.port} (virq ${p.virq})`;
  return `port ${p.port} (${p.state})`;
}

/** The leftovers of one domain as lines ("d1 (frontend): grant refs 8, 9 still granted"). */
export function leftoverLines(g: GuestReport): string[] {
  const l = g.leftBehind;
  if (l === null) return [];
  const who = `d${g.domid} (${g.role})`;
  const out: string[] = [];
  if (l.grants.length > 0)
    out.push(`${who}: grant ref${l.grants.length === 1 ? '' : 's'} ${l.grants.join(', ')} still granted`);
  for (const m of l.mappings)
    out.push(`${who}: still maps ref ${m.ref} of d${m.granter} (handle ${m.handle}, ${m.flags.join('|')})`);
  for (const p of l.ports) out.push(`${who}: ${portText(p)} still bound`);
  for (const k of l.xenstoreKeys) out.push(`${who}: xenstore key ${k} left`);
  return out;
}

/** Runs the two guest modules as a frontend and a backend domain; see the file comment. */
export async function runPair(o: RunOptions, events: RunEvents = {}): Promise<RunReport> {
  const wh = await WorkerHost.start({
    memoryMiB: o.memoryMiB,
    xenstore: true,
    ...(o.traceSab !== undefined ? { traceSab: o.traceSab } : {}),
  });
  events.host?.(wh);
  try {
    const xs = wh.xenstore!;
    // The backend first: it is dom0, as a backend usually is.
    const back = await wh.createDomain({ kind: o.backendKind, memoryKiB: o.domainKiB });
    const front = await wh.createDomain({ kind: o.frontendKind, memoryKiB: o.domainKiB });
    const doms: Record<'frontend' | 'backend', ThreadDomain> = { frontend: front, backend: back };
    const roleOf = (domid: number) => (domid === front.domid ? 'frontend' : 'backend');
    const home = (d: ThreadDomain) => `/local/domain/${d.domid}`;

    // As libxl__domain_make does, the toolstack gives each domain its data/ and
    // device/ directories, owned by the domain (so it may write below them).
    for (const d of [back, front])
      for (const dir of ['data', 'device']) {
        await xs.mkdir(`${home(d)}/${dir}`);
        await xs.setPerms(`${home(d)}/${dir}`, [{ domid: d.domid, perm: 'n' }]);
      }
    // What the toolstack made for each domain, so only what its guest made counts.
    const portsBefore = new Set((await wh.ports()).map((p) => `${p.domid}:${p.port}`));
    const keysBefore = new Set([...(await keysBelow(xs, home(front))), ...(await keysBelow(xs, home(back)))]);

    const consoles: Record<'frontend' | 'backend', string[]> = { frontend: [], backend: [] };
    let busiest: TableSnapshot[] = [];
    let sampling: Promise<void> | null = null;
    let running = true;
    const ours = (t: TableSnapshot) => t.domid === front.domid || t.domid === back.domid;
    const sample = () => {
      if (sampling !== null || !running) return;
      sampling = wh
        .snapshot()
        .then((all) => {
          const tables = all.filter(ours);
          if (running && (busiest.length === 0 || busyness(tables) > busyness(busiest))) busiest = tables;
        })
        .catch(() => {})
        .finally(() => {
          sampling = null;
        });
    };
    wh.onLog = (domid, line) => {
      const role = roleOf(domid);
      consoles[role].push(line);
      events.console?.(role, domid, line);
      sample();
    };

    const reports = {} as Record<'frontend' | 'backend', GuestReport>;
    const timeout = new Error(`still running after ${o.timeoutMs / 1000} s`);
    const peerCrashed = new Error('stopped after its peer crashed');
    const stops = { frontend: new AbortController(), backend: new AbortController() };
    const base = (role: 'frontend' | 'backend', module: string) => ({
      role,
      module,
      domid: doms[role].domid,
      kind: doms[role].kind,
      console: consoles[role],
      leftBehind: null,
    });
    const args = (role: 'frontend' | 'backend'): RunGuestArgs => ({
      role,
      self: doms[role].domid,
      peer: (role === 'frontend' ? back : front).domid,
      frontend: front.domid,
      backend: back.domid,
      argv: o.argv,
    });
    const peerTimers: NodeJS.Timeout[] = [];
    const run = (role: 'frontend' | 'backend', module: string) =>
      wh.spawn(doms[role], moduleUrl(module), args(role), { signal: stops[role].signal }).then(
        (result) => {
          reports[role] = { ...base(role, module), outcome: 'returned', result };
        },
        (err: unknown) => {
          if (err === timeout) reports[role] = { ...base(role, module), outcome: 'timed out' };
          else if (err === peerCrashed) reports[role] = { ...base(role, module), outcome: 'stopped' };
          else {
            reports[role] = {
              ...base(role, module),
              outcome: 'crashed',
              error: err instanceof Error ? err.message : String(err),
            };
            // The peer may wait for this one for ever: give it a second to notice, then stop it.
            const peer = role === 'frontend' ? 'backend' : 'frontend';
            peerTimers.push(setTimeout(() => stops[peer].abort(peerCrashed), 1000));
          }
        },
      );
    const both = Promise.all([run('backend', o.backend), run('frontend', o.frontend)]);
    const ticker = setInterval(sample, 20);
    const timer = setTimeout(() => {
      stops.frontend.abort(timeout);
      stops.backend.abort(timeout);
    }, o.timeoutMs);
    try {
      sample();
      await both;
    } finally {
      running = false;
      clearInterval(ticker);
      clearTimeout(timer);
      for (const t of peerTimers) clearTimeout(t);
      wh.onLog = null;
    }
    await sampling;

    // What each domain whose guest returned still holds.
    const tables = await wh.snapshot();
    const ports = await wh.ports();
    for (const role of ['frontend', 'backend'] as const) {
      const r = reports[role];
      if (r.outcome !== 'returned') continue;
      const t = tables.find((x) => x.domid === r.domid);
      r.leftBehind = {
        grants: t ? grantsInUse(t) : [],
        mappings: t ? t.mappings : [],
        ports: ports.filter((p) => p.domid === r.domid && !portsBefore.has(`${p.domid}:${p.port}`)),
        xenstoreKeys: (await keysBelow(xs, home(doms[role]))).filter((k) => !keysBefore.has(k)),
      };
    }
    const leftovers = [...leftoverLines(reports.frontend), ...leftoverLines(reports.backend)];
    for (const d of [front, back]) await wh.destroyDomain(d.domid).catch(() => {});
    const invariants = await wh.checkInvariants();
    const returned = reports.frontend.outcome === 'returned' && reports.backend.outcome === 'returned';
    return {
      ok: returned && leftovers.length === 0 && invariants.length === 0,
      frontend: reports.frontend,
      backend: reports.backend,
      tables: busiest,
      leftovers,
      invariants,
    };
  } finally {
    await wh.shutdown();
  }
}
