// Benchmark guest for bench/smp.bench.ts. The same code runs against a
// single-thread Host's context (called directly, in the bench's thread) and in
// a WorkerHost domain's worker, so each figure and its baseline time the same
// guest loop. Each round runs for a fixed time and reports ns per call; the
// bench takes medians over rounds.
import type { GuestContext } from '../../src/guest/context.ts';
import {
  __HYPERVISOR_grant_table_op,
  GNTMAP_host_map,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
} from '../../src/index.ts';

export interface SmpGuestArgs {
  /**
   * 'calls': per round, null hypercalls then map+unmap pairs.
   * 'pair-a' / 'pair-b': the concurrency figure; a runs alone, then a and b
   * run the same number of pairs at once (synchronised through syncSab).
   */
  job: 'calls' | 'pair-a' | 'pair-b';
  rounds: number;
  /** Milliseconds of work per round (per loop). */
  roundMs: number;
  granter: number;
  ref: number;
  /** Where the grant is mapped (distinct per grantee when several share a granter). */
  mapVa: number;
  /**
   * Worker mode: word 0 is a turn counter the bench moves, so that its
   * single-thread rounds and these rounds interleave (odd: this guest's turn).
   * Pair jobs: word 0 is a barrier counter and word 1 the pairs per round.
   */
  syncSab?: SharedArrayBuffer;
}

export interface SmpGuestResult {
  /** ns per null hypercall, per round. */
  nullNs: number[];
  /** ns per map+unmap pair, per round. */
  mapUnmapNs: number[];
  /** pair jobs: pairs per second of a alone, per round. */
  aloneRate: number[];
  /** pair jobs: [start, end] of the concurrent run per round, in ms since the epoch. */
  spans: [number, number][];
  /** pair jobs: pairs run concurrently per round. */
  counts: number[];
}

/** Machine-independent clock: ms since the epoch, comparable across worker threads. */
const epochMs = (): number => performance.timeOrigin + performance.now();

const MAP = gnttab_map_grant_ref.fields;
const UNMAP = gnttab_unmap_grant_ref.fields;

/** Sleeps until word 0 of `w` reaches `target` (a two-party barrier counter, or a turn). */
function waitFor(w: Int32Array, target: number): void {
  for (let v = Atomics.load(w, 0); v < target; v = Atomics.load(w, 0)) Atomics.wait(w, 0, v, 1000);
}

function arrive(w: Int32Array, target: number): void {
  Atomics.add(w, 0, 1);
  Atomics.notify(w, 0);
  waitFor(w, target);
}

export default function main(ctx: GuestContext, a: SmpGuestArgs): SmpGuestResult {
  const arg = ctx.start.ramBytes - 4 * 4096;
  const mapArg = arg;
  const unmapArg = arg + 1024;
  ctx.mem.writeU32(mapArg + MAP.host_addr.offset, a.mapVa);
  ctx.mem.writeU32(mapArg + MAP.host_addr.offset + 4, 0);
  ctx.mem.writeU32(mapArg + MAP.flags.offset, GNTMAP_host_map);
  ctx.mem.writeU32(mapArg + MAP.ref.offset, a.ref);
  ctx.mem.writeU16(mapArg + MAP.dom.offset, a.granter);
  ctx.mem.writeU32(unmapArg + UNMAP.host_addr.offset, a.mapVa);
  ctx.mem.writeU32(unmapArg + UNMAP.host_addr.offset + 4, 0);
  const HC = __HYPERVISOR_grant_table_op;

  const nullCalls = (n: number): void => {
    for (let i = 0; i < n; i++) {
      // grant_table_op(map_grant_ref, uop, 0): the whole dispatcher, no element
      const rc = ctx.hypercall(HC, GNTTABOP_map_grant_ref, arg, 0);
      if (rc !== 0) throw new Error(`null hypercall returned ${rc}`);
    }
  };
  const pairs = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const rc = ctx.hypercall(HC, GNTTABOP_map_grant_ref, mapArg, 1);
      const st = ctx.mem.readU16(mapArg + MAP.status.offset);
      if (rc !== 0 || st !== 0) throw new Error(`map rc ${rc} status ${st}`);
      ctx.mem.writeU32(unmapArg + UNMAP.handle.offset, ctx.mem.readU32(mapArg + MAP.handle.offset));
      const rc2 = ctx.hypercall(HC, GNTTABOP_unmap_grant_ref, unmapArg, 1);
      const st2 = ctx.mem.readU16(unmapArg + UNMAP.status.offset);
      if (rc2 !== 0 || st2 !== 0) throw new Error(`unmap rc ${rc2} status ${st2}`);
    }
  };
  /** Runs `body` in chunks for roundMs; [calls, ms]. */
  const timed = (body: (n: number) => void, chunk: number): [number, number] => {
    let n = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < a.roundMs) {
      body(chunk);
      n += chunk;
      t = performance.now();
    }
    return [n, t - t0];
  };

  const out: SmpGuestResult = { nullNs: [], mapUnmapNs: [], aloneRate: [], spans: [], counts: [] };
  const w = a.syncSab === undefined ? null : new Int32Array(a.syncSab);
  // Warm-up (JIT, first-touch of the maptrack and page-table leaves).
  nullCalls(200);
  pairs(200);

  for (let r = 0; r < a.rounds; r++) {
    if (a.job === 'calls') {
      if (w !== null) waitFor(w, 2 * r + 1);
      const [n1, ms1] = timed(nullCalls, 100);
      out.nullNs.push((ms1 * 1e6) / n1);
      const [n2, ms2] = timed(pairs, 50);
      out.mapUnmapNs.push((ms2 * 1e6) / n2);
      if (w !== null) {
        Atomics.store(w, 0, 2 * r + 2);
        Atomics.notify(w, 0);
      }
    } else if (w !== null) {
      // Barrier k (1-based) is reached when word 0 is 2k.
      if (a.job === 'pair-a') {
        const [n, ms] = timed(pairs, 20);
        out.aloneRate.push(n / (ms / 1000));
        Atomics.store(w, 1, n);
      }
      arrive(w, 2 * (2 * r + 1));
      const n = Atomics.load(w, 1);
      const t0 = epochMs();
      pairs(n);
      out.spans.push([t0, epochMs()]);
      out.counts.push(n);
      arrive(w, 2 * (2 * r + 2));
    }
  }
  return out;
}
