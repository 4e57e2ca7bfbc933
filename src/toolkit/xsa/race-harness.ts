// The harness the sides of a worker-thread race share: Int32 words outside
// machine memory (stop, hits, attempts, violations, a ready count, the
// passive sides' progress counters, published refs), the arguments each side
// gets, and the steps every role uses. A hit is counted only when the window
// was really entered: the other side changed its word (or had its hypercall
// in flight, where hypercalls can be in Xen at once) while this side's
// hypercall was in Xen, or Xen's own results show it.

import { GNTMAP_host_map } from '../../abi/flags.ts';
import { gnttab_map_grant_ref, gnttab_unmap_grant_ref } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref } from '../../abi/hypercall.ts';
import type { GuestContext } from '../../guest/context.ts';
import { grantTableOp } from '../../guest/hypercall.ts';
import { FOREIGN_MAP_VA } from '../../guest/layout.ts';

/** Harness words. */
export const H = {
  stop: 0,
  hits: 1,
  attempts: 2,
  violations: 3,
  ready: 4,
  /** The passive side's progress: incremented around each of its actions (odd while inside). */
  seq: 5,
  /** The ref the granter published (-1: none yet). */
  ref: 6,
  /** 1 while the mapper holds a mapping (set after map, cleared before unmap). */
  mapped: 7,
  /** Actions of the passive side. */
  actions: 8,
  /** More refs a side published (-1 or 0: none yet). */
  ref2: 9,
  ref3: 10,
  /** A second passive side's progress, as seq. */
  seq2: 11,
  /** Operations the active side saw succeed (for the other side's final check). */
  done: 12,
  ref4: 13,
} as const;
export const HARNESS_WORDS = 16;

export interface RaceArgs {
  role: string;
  sab: SharedArrayBuffer;
  /** The other domain of a two-sided race (-1 with more sides). */
  peer: number;
  /** Every domain of the race, by its name in the advisory. */
  domids: Record<string, number>;
  /** False when this host cannot reach the window (race.ts): attempts are run, hits not counted. */
  countHits: boolean;
  /** Hits wanted, attempts at most. */
  hits: number;
  maxAttempts: number;
  version?: 1 | 2;
}

export function words(a: RaceArgs): Int32Array {
  return new Int32Array(a.sab);
}

export function stopped(w: Int32Array): boolean {
  return Atomics.load(w, H.stop) !== 0;
}

/** Counts one attempt and a hit when `hit`; stops the race once it has enough of either. */
export function tally(w: Int32Array, a: RaceArgs, hit: boolean): void {
  const n = Atomics.add(w, H.attempts, 1) + 1;
  const h = hit && a.countHits ? Atomics.add(w, H.hits, 1) + 1 : Atomics.load(w, H.hits);
  if (h >= a.hits || n >= a.maxAttempts) Atomics.store(w, H.stop, 1);
}

export async function waitReady(ctx: GuestContext, w: Int32Array, n: number): Promise<void> {
  while (Atomics.load(w, H.ready) < n && !stopped(w)) await ctx.clock.sleep(1);
}

/** The passive side's loop: `act` until the race stops, counting around each action. */
export async function passive(ctx: GuestContext, w: Int32Array, act: () => void): Promise<number> {
  let n = 0;
  while (!stopped(w)) {
    Atomics.add(w, H.seq, 1);
    act();
    Atomics.add(w, H.seq, 1);
    Atomics.add(w, H.actions, 1);
    if ((++n & 4095) === 0) await ctx.clock.sleep(0);
  }
  return n;
}

/** One hypercall of the active side; true when the passive side acted while it was in Xen. */
export function overlapped(w: Int32Array, call: () => void): boolean {
  const s0 = Atomics.load(w, H.seq);
  call();
  const s1 = Atomics.load(w, H.seq);
  return (s0 & 1) === 1 || s1 !== s0;
}

export function mapOnce(ctx: GuestContext, granter: number, ref: number) {
  return grantTableOp(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
    { host_addr: FOREIGN_MAP_VA, flags: GNTMAP_host_map, ref, dom: granter },
  ]).out[0]!;
}

export function unmapOnce(ctx: GuestContext, handle: number): number {
  return grantTableOp(ctx, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
    { host_addr: FOREIGN_MAP_VA, handle },
  ]).out[0]!.status;
}

/** A side of a race: runs in its domain's worker until the race stops (or returns once set up). */
export type Role = (ctx: GuestContext, a: RaceArgs, w: Int32Array) => Promise<unknown>;
