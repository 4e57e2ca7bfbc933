// The worker-thread half of an advisory's race: domains, each in its own
// worker thread, run the roles of race-guest.ts until the window has been hit
// the stated number of times (or the attempts run out). Hits are counted by
// the guests as they happen; no time is measured. The invariant check runs
// once every side has stopped.
//
// Two kinds of window. One lies between a guest's writes to shared memory and
// a hypercall reading it (XSA-226, 295, 396): any worker host reaches it. The
// other needs two hypercalls inside Xen at once (XSA-73, 287, 318, 379, 384,
// 411, 486, 501). Each domain thread enters Xen itself, and the ops that take
// Xen's own locks run side by side (dispatch.ts runsShared), and so does the
// toolstack's destroy (Hypervisor.beside); a race whose window's ops all do
// is run for real. One whose ops still run alone in Xen (issue 8 moves them
// one family at a time) cannot be hit yet: the harness
// still runs a bounded number of attempts with every check, reports hits 0
// and says what it needs (threadsNeed). The hit test is the other side's
// hypercall in flight during this one's (race-harness.ts overlapped).

import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GNTTABOP_transfer,
  GNTTABOP_unmap_grant_ref,
  XENMEM_add_to_physmap,
} from '../../abi/hypercall.ts';
import type { DomainOptions } from '../../host/host.ts';
import { type ThreadDomain, WorkerHost } from '../../host/worker-host.ts';
import { runsShared } from '../../xen/dispatch.ts';
import type { Lab } from './lab.ts';
import { H, HARNESS_WORDS, type RaceArgs } from './race-harness.ts';
import type { XsaRace, XsaRunOptions } from './types.ts';

/** A hypercall of a race's window: (hypercall number, sub-op), and its name for messages. */
interface Op {
  nr: number;
  cmd: number;
  name: string;
}
const op = (nr: number, cmd: number, name: string): Op => ({ nr, cmd, name });
const COPY = op(__HYPERVISOR_grant_table_op, GNTTABOP_copy, 'GNTTABOP_copy');
const MAP = op(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, 'GNTTABOP_map_grant_ref');
const UNMAP = op(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, 'GNTTABOP_unmap_grant_ref');
const SET_VERSION = op(__HYPERVISOR_grant_table_op, GNTTABOP_set_version, 'GNTTABOP_set_version');
const TRANSFER = op(__HYPERVISOR_grant_table_op, GNTTABOP_transfer, 'GNTTABOP_transfer');
const ADD_TO_PHYSMAP = op(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, 'XENMEM_add_to_physmap');

interface Side {
  name: string;
  role: string;
  domain: DomainOptions;
}

interface RaceSpec {
  window: string;
  /**
   * The domains, created in this order (dom0 first, if one is named so) and
   * started in this order: the last is the active side, which counts the
   * attempts and hits and stops the race.
   */
  sides: Side[];
  version?: 1 | 2;
  /** host.checkInvariants option (a guest that scribbles on its own flags turns statusBits off). */
  statusBits?: boolean;
  /** The window needs two hypercalls inside Xen at once: why (see the header). */
  smp?: string;
  /**
   * With smp: the hypercalls that must be inside Xen at once, as (hypercall,
   * sub-op). The window is reachable once every one of them runs side by side
   * (WorkerHost.runsSideBySide); a destroy (toolstack) always does.
   */
  ops?: readonly Op[];
  /**
   * The host destroys this domain once the active side has made this many
   * attempts (the toolstack's action of the race; its guest has returned by then).
   */
  destroy?: { name: string; afterAttempts: number };
  /**
   * Both sides are vCPUs of one domain: a WorkerHost runs one thread per
   * domain, so there is no harness yet (sides is empty) and nothing is run.
   */
  oneDomain?: boolean;
}

/** What a race whose window lies between two hypercalls needs. */
export const NEEDS_SMP = 'the SMP hypervisor (issue 8: hypercalls run in the calling thread)';
/** What a race between two vCPUs of one domain needs besides. */
export const NEEDS_VCPU_THREADS =
  'a domain with two vCPU threads (a WorkerHost runs one worker per domain, so no harness yet)';

const pv: DomainOptions = { kind: 'pv', memoryKiB: 1024 };

const SPECS: Record<string, RaceSpec> = {
  'xsa-295': {
    window: "A toggled ref 10's flags while B's map_grant_ref was in Xen",
    sides: [
      { name: 'A', role: 'xsa-295-granter', domain: pv },
      { name: 'B', role: 'xsa-295-mapper', domain: pv },
    ],
    statusBits: false,
  },
  'xsa-396': {
    window: "A's end of access was refused because B held the grant mapped",
    sides: [
      { name: 'B', role: 'xsa-396-backend', domain: pv },
      { name: 'A', role: 'xsa-396-frontend', domain: { kind: 'hvm', memoryKiB: 1024 } },
    ],
  },
  'xsa-73': {
    window: "A's transfer into B and B's copy from its own grant inside Xen at once (both take B's locks)",
    sides: [
      { name: 'B', role: 'xsa-73-receiver', domain: { kind: 'pv', memoryKiB: 1024, maxMemoryKiB: 2048 } },
      { name: 'A', role: 'xsa-73-sender', domain: { kind: 'pv', memoryKiB: 2048 } },
    ],
    smp: "the transfer is one hypercall, the copy on the receiver's table another",
    ops: [TRANSFER, COPY],
  },
  'xsa-287': {
    window:
      "A's transfer of its page (steal_page) and C's map of it through A's grant (get_page) inside Xen at once",
    sides: [
      { name: 'B', role: 'xsa-287-acceptor', domain: { kind: 'pv', memoryKiB: 1024, maxMemoryKiB: 2048 } },
      { name: 'C', role: 'xsa-287-referencer', domain: pv },
      { name: 'A', role: 'xsa-287-giver', domain: { kind: 'pv', memoryKiB: 2048 } },
    ],
    smp: 'the transfer is one hypercall, the map taking a reference on the same page another',
    ops: [TRANSFER, MAP],
  },
  'xsa-236': {
    window: "A's destruction while B's copy from A's grant (on the pinned fast path) was inside Xen",
    sides: [
      { name: 'A', role: 'xsa-236-granter', domain: pv },
      { name: 'B', role: 'xsa-236-copier', domain: pv },
    ],
    destroy: { name: 'A', afterAttempts: 50 },
    smp: "A's destruction is the toolstack's call into Xen, the copy is B's hypercall",
    ops: [COPY],
  },
  'xsa-226': {
    window: "B rewrote t (target ref, type) while Xen was inside C's batch of copies through it",
    sides: [
      { name: 'A', role: 'xsa-226-granter', domain: pv },
      { name: 'B', role: 'xsa-226-intermediate', domain: pv },
      { name: 'C', role: 'xsa-226-copier', domain: pv },
    ],
    statusBits: false,
  },
  'xsa-501': {
    window:
      "A's set_version(1) inside Xen while B's copy of A's sub-page ref 20 held its pin (the switch refused)",
    sides: [
      { name: 'B', role: 'xsa-501-copier', domain: pv },
      { name: 'A', role: 'xsa-501-switcher', domain: pv },
    ],
    smp: "the copy's pin is held inside one hypercall, the switch is another",
    ops: [COPY, SET_VERSION],
  },
  'xsa-501-map': {
    window:
      "A's set_version inside Xen while B's map of A's reserved ref 3 was between its pin and its late failure",
    sides: [
      { name: 'B', role: 'xsa-501-late-mapper', domain: pv },
      { name: 'A', role: 'xsa-501-reserved-switcher', domain: pv },
    ],
    smp: "the map's unlocked stretch is inside one hypercall, the switch is another",
    ops: [MAP, SET_VERSION],
  },
  'xsa-318': {
    window:
      "C's batch of 3 copies through (B, t) inside Xen while C2's copy through t (B switches t's grantee between them) held its pin",
    sides: [
      { name: 'A', role: 'xsa-318-granter', domain: pv },
      { name: 'B', role: 'xsa-318-grantee', domain: pv },
      { name: 'C2', role: 'xsa-318-second', domain: pv },
      { name: 'C', role: 'xsa-318-batch', domain: pv },
    ],
    statusBits: false,
    smp: "Xen retries C's element when t's pin changed while B's lock was dropped: another copy's pin, inside another hypercall",
    ops: [COPY],
  },
  'xsa-411': {
    window:
      "C's copy through (B, t) and D's through (A, 21) inside Xen at once, each taking the other's intermediate's grant lock",
    sides: [
      { name: 'A', role: 'xsa-411-a', domain: pv },
      { name: 'B', role: 'xsa-411-b', domain: pv },
      { name: 'C', role: 'xsa-411-c', domain: pv },
      { name: 'D', role: 'xsa-411-d', domain: pv },
    ],
    statusBits: false,
    smp: 'a deadlock needs the two copies, two hypercalls, inside Xen at the same time',
    ops: [COPY],
  },
  'xsa-218': {
    window: "B's two unmaps of one grant (or of one handle's host and device parts) inside Xen at once",
    sides: [],
    oneDomain: true,
    smp: 'the two unmaps are two hypercalls of two vCPUs of B',
    ops: [UNMAP],
  },
  'xsa-228': {
    window:
      "B's vCPU1 stealing a maptrack handle from vCPU0's free list while vCPU0 frees one, inside Xen at once",
    sides: [],
    oneDomain: true,
    smp: 'the map and the unmap are two hypercalls of two vCPUs of B',
    ops: [MAP, UNMAP],
  },
  'xsa-379': {
    window: "A's and dom0's add_to_physmap of A's status frame 0 (at X and at Y) inside Xen at once",
    sides: [
      { name: 'A', role: 'xsa-379-self', domain: { kind: 'hvm', memoryKiB: 1024 } },
      { name: 'dom0', role: 'xsa-379-other', domain: pv },
    ],
    smp: "the two placements are two hypercalls (of A's two vCPUs in the advisory; here A and dom0)",
    ops: [ADD_TO_PHYSMAP],
  },
  'xsa-384': {
    window: "A's set_version and dom0's add_to_physmap of A's status frame inside Xen at the same time",
    sides: [
      { name: 'A', role: 'xsa-384-switcher', domain: { kind: 'hvm', memoryKiB: 1024 } },
      { name: 'dom0', role: 'xsa-384-placer', domain: pv },
    ],
    smp: "the status frame's lookup and its P2M insertion are one hypercall, the switch another",
    ops: [SET_VERSION, ADD_TO_PHYSMAP],
  },
};

/**
 * Why race `name`'s worker half cannot hit its window on `WorkerHost` today,
 * if it cannot: its window's ops do not all run side by side yet (runsShared:
 * the others run alone in Xen), or its sides are two vCPUs of one domain.
 */
export function threadsNeed(name: string): string | undefined {
  const spec = SPECS[name];
  if (spec?.smp === undefined) return undefined;
  const alone = (spec.ops ?? []).filter((o) => !runsShared(o.nr, [o.cmd])).map((o) => o.name);
  if (alone.length === 0 && spec.oneDomain !== true) return undefined;
  const why =
    alone.length > 0
      ? ` (${alone.join(' and ')} still ${alone.length > 1 ? 'run' : 'runs'} alone in Xen)`
      : '';
  return `${NEEDS_SMP}${spec.oneDomain === true ? ` and ${NEEDS_VCPU_THREADS}` : ''}: ${spec.smp}${why}`;
}

/** The catalogue entry's threadsNeed field of race `name`: absent when its window is reachable. */
export function threadsNeedOf(name: string): { threadsNeed?: string } {
  const needs = threadsNeed(name);
  return needs === undefined ? {} : { threadsNeed: needs };
}

/** Module of the race roles, beside this file (.ts in a checkout, .js when built). */
const GUEST = new URL('./race-guest.ts', import.meta.url).href.replace(
  /\.ts$/,
  import.meta.url.endsWith('.js') ? '.js' : '.ts',
);

export const DEFAULT_HITS = 20;
export const DEFAULT_MAX_ATTEMPTS = 200_000;
/** Attempts of a race whose window this host cannot reach: enough to run every check, no more. */
export const UNREACHABLE_ATTEMPTS = 300;

/**
 * The host's part of a race: destroys `dom` once enough attempts were made,
 * counting around it as a passive side counts around its actions (H.seq).
 */
async function destroyMidway(
  wh: WorkerHost,
  w: Int32Array,
  dom: ThreadDomain,
  name: string,
  afterAttempts: number,
  lab: Lab,
): Promise<void> {
  while (Atomics.load(w, H.attempts) < afterAttempts && Atomics.load(w, H.stop) === 0)
    await new Promise((r) => setTimeout(r, 1));
  Atomics.add(w, H.seq, 1);
  await wh.destroyDomain(dom.domid);
  Atomics.add(w, H.seq, 1);
  lab.step('threads', 'host destroy', `${name}, after ${Atomics.load(w, H.attempts)} attempts`, 'done');
}

/** Runs race `name` on worker threads; records its setup and checks in `lab`. */
export async function threadRace(name: string, lab: Lab, o: XsaRunOptions = {}): Promise<XsaRace> {
  const spec = SPECS[name];
  if (spec === undefined) throw new Error(`no thread race ${name}`);
  const hits = o.hits ?? DEFAULT_HITS;
  if (spec.oneDomain === true) {
    const needs = threadsNeed(name)!;
    lab.note(`threads: not run; the window needs ${needs}`);
    return { mode: 'threads', window: spec.window, target: hits, hits: 0, attempts: 0, violations: 0, needs };
  }
  // Not `await using`: from a checkout, Node 22 runs these sources by stripping
  // types (a worker's guest importing 'gnttab'), and its V8 has no `using`.
  const wh = await WorkerHost.start({ memoryMiB: 16 });
  try {
    return await raceOn(wh, name, spec, hits, lab, o);
  } finally {
    await wh.shutdown();
  }
}

async function raceOn(
  wh: WorkerHost,
  name: string,
  spec: RaceSpec,
  hits: number,
  lab: Lab,
  o: XsaRunOptions,
): Promise<XsaRace> {
  const reachable = threadsNeed(name) === undefined || wh.concurrentHypercalls;
  const maxAttempts = Math.min(
    o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    reachable ? Number.POSITIVE_INFINITY : UNREACHABLE_ATTEMPTS,
  );
  const order = [...spec.sides].sort((x, y) => Number(y.name === 'dom0') - Number(x.name === 'dom0'));
  const doms = new Map<string, ThreadDomain>();
  for (const side of order) doms.set(side.name, await wh.createDomain(side.domain));
  const domids: Record<string, number> = {};
  for (const [n, d] of doms) domids[n] = d.domid;
  const sab = new SharedArrayBuffer(HARNESS_WORDS * 4);
  const w = new Int32Array(sab);
  w[H.ref] = -1;
  const names = spec.sides.map((s) => s.name);
  const args = (side: Side): RaceArgs => ({
    role: side.role,
    sab,
    // Two sides: the other one; more: none (the roles name theirs in domids).
    peer: names.length === 2 ? domids[names.find((n) => n !== side.name)!]! : -1,
    domids,
    hits,
    maxAttempts,
    countHits: reachable,
    ...(spec.version !== undefined ? { version: spec.version } : {}),
  });
  const needs = reachable ? undefined : threadsNeed(name);
  lab.note(
    `threads: ${names.join(', ')} each in a worker thread of a WorkerHost, until ${hits} hits or ${maxAttempts} attempts`,
  );
  if (needs !== undefined)
    lab.note(
      `threads: this host serves hypercalls one at a time, so the window cannot be hit; it needs ${needs}. The harness runs ${maxAttempts} attempts with every check, and counts no hit`,
    );
  const threads = spec.sides.map((s) => wh.spawn(doms.get(s.name)!, GUEST, args(s)));
  if (spec.destroy !== undefined) {
    // Halfway through at the latest, so that copies run on both sides of the death.
    const after = Math.min(spec.destroy.afterAttempts, Math.floor(maxAttempts / 2));
    await destroyMidway(wh, w, doms.get(spec.destroy.name)!, spec.destroy.name, after, lab);
  }
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
    ...(needs !== undefined ? { needs } : {}),
  };
  const active = spec.sides.at(-1)!.name;
  lab.step(
    'threads',
    'race',
    `${active} against ${names.filter((n) => n !== active).join(', ')}`,
    `${race.hits} hits in ${race.attempts} attempts, ${race.violations} violations${needs !== undefined ? ' (window unreachable here)' : ''}`,
  );
  lab.expect(
    crashed.length === 0,
    `threads: no guest crashed${crashed.length > 0 ? ` (${crashed.join('; ')})` : ''}`,
  );
  if (needs === undefined)
    lab.expect(
      race.hits >= hits,
      race.hits >= hits
        ? `threads: the window was hit ${race.hits} times (wanted ${hits})`
        : `threads: the window was hit only ${race.hits} times in ${race.attempts} attempts (wanted ${hits}): inconclusive`,
    );
  else lab.expect(race.attempts > 0, `threads: the harness ran ${race.attempts} attempts`);
  lab.expect(race.violations === 0, `threads: no attempt broke the expectation (${race.violations})`);
  lab.expect(
    invariants.length === 0,
    `threads: the invariants hold after the race${invariants.length > 0 ? `: ${invariants[0]}` : ''}`,
  );
  return race;
}
