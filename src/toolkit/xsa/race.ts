// The worker-thread half of an advisory's race: two domains, each in its own
// worker thread entering the hypervisor itself, run the roles of
// race-guest.ts until the window has been hit the stated number of times (or
// the attempts run out). Hits are counted by the guests as they happen; no
// time is measured. The invariant check runs once both have stopped.

import type { DomainOptions } from '../../host/host.ts';
import { type ThreadDomain, WorkerHost } from '../../host/worker-host.ts';
import type { Lab } from './lab.ts';
import { H, HARNESS_WORDS, type RaceArgs } from './race-guest.ts';
import type { XsaRace, XsaRunOptions } from './types.ts';

interface RaceSpec {
  window: string;
  /** The two sides: the passive one (started first) and the active one. */
  passive: { name: string; role: string; domain: DomainOptions };
  active: { name: string; role: string; domain: DomainOptions };
  /** The active side's target is the passive domain; the passive side's, the active domain. */
  version?: 1 | 2;
  /** host.checkInvariants option (a guest that scribbles on its own flags turns statusBits off). */
  statusBits?: boolean;
}

const SPECS: Record<string, RaceSpec> = {
  'xsa-295': {
    window: "A toggled ref 10's flags while B's map_grant_ref was in Xen",
    passive: { name: 'A', role: 'xsa-295-granter', domain: { kind: 'pv', memoryKiB: 1024 } },
    active: { name: 'B', role: 'xsa-295-mapper', domain: { kind: 'pv', memoryKiB: 1024 } },
    statusBits: false,
  },
  'xsa-396': {
    window: "A's end of access was refused because B held the grant mapped",
    passive: { name: 'B', role: 'xsa-396-backend', domain: { kind: 'pv', memoryKiB: 1024 } },
    active: { name: 'A', role: 'xsa-396-frontend', domain: { kind: 'hvm', memoryKiB: 1024 } },
  },
  'xsa-384': {
    window: "A's set_version was in flight while dom0's add_to_physmap of A's status frame was in Xen",
    passive: { name: 'A', role: 'xsa-384-switcher', domain: { kind: 'hvm', memoryKiB: 1024 } },
    active: { name: 'dom0', role: 'xsa-384-placer', domain: { kind: 'pv', memoryKiB: 1024 } },
  },
};

/** Module of the race roles, beside this file (.ts in a checkout, .js when built). */
const GUEST = new URL('./race-guest.ts', import.meta.url).href.replace(
  /\.ts$/,
  import.meta.url.endsWith('.js') ? '.js' : '.ts',
);

export const DEFAULT_HITS = 20;
export const DEFAULT_MAX_ATTEMPTS = 200_000;

/** Runs race `name` on worker threads; records its setup and checks in `lab`. */
export async function threadRace(name: string, lab: Lab, o: XsaRunOptions = {}): Promise<XsaRace> {
  const spec = SPECS[name];
  if (spec === undefined) throw new Error(`no thread race ${name}`);
  const hits = o.hits ?? DEFAULT_HITS;
  const maxAttempts = o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  await using wh = await WorkerHost.start({ memoryMiB: 16 });
  // dom0 is the first domain created: the active side first when it is dom0.
  const order = spec.active.name === 'dom0' ? [spec.active, spec.passive] : [spec.passive, spec.active];
  const doms = new Map<string, ThreadDomain>();
  for (const side of order) doms.set(side.name, await wh.createDomain(side.domain));
  const sab = new SharedArrayBuffer(HARNESS_WORDS * 4);
  const w = new Int32Array(sab);
  w[H.ref] = -1;
  const args = (role: string, peer: string): RaceArgs => ({
    role,
    sab,
    peer: doms.get(peer)!.domid,
    hits,
    maxAttempts,
    ...(spec.version !== undefined ? { version: spec.version } : {}),
  });
  lab.note(
    `threads: ${spec.passive.name} and ${spec.active.name} each in a worker thread of a WorkerHost, until ${hits} hits or ${maxAttempts} attempts`,
  );
  const threads = [
    wh.spawn(doms.get(spec.passive.name)!, GUEST, args(spec.passive.role, spec.active.name)),
    wh.spawn(doms.get(spec.active.name)!, GUEST, args(spec.active.role, spec.passive.name)),
  ];
  const outcomes = await Promise.allSettled(threads);
  const crashed = outcomes
    .filter((r) => r.status === 'rejected')
    .map((r) => String((r as PromiseRejectedResult).reason));
  const invariants = await wh.checkInvariants(spec.statusBits === false ? { statusBits: false } : {});
  const race: XsaRace = {
    mode: 'threads',
    window: spec.window,
    target: hits,
    hits: Atomics.load(w, H.hits),
    attempts: Atomics.load(w, H.attempts),
    violations: Atomics.load(w, H.violations),
  };
  lab.step(
    'threads',
    'race',
    `${spec.active.name} against ${spec.passive.name}`,
    `${race.hits} hits in ${race.attempts} attempts, ${race.violations} violations`,
  );
  lab.expect(
    crashed.length === 0,
    `threads: no guest crashed${crashed.length > 0 ? ` (${crashed.join('; ')})` : ''}`,
  );
  lab.expect(race.hits >= hits, `threads: the window was hit ${race.hits} times (wanted ${hits})`);
  lab.expect(race.violations === 0, `threads: no attempt broke the expectation (${race.violations})`);
  lab.expect(
    invariants.length === 0,
    `threads: the invariants hold after the race${invariants.length > 0 ? `: ${invariants[0]}` : ''}`,
  );
  return race;
}
