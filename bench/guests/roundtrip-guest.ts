// Benchmark guest (runs in a domain's worker thread): times Atomics ping-pong
// with the hypervisor thread, null hypercalls, and map+unmap pairs.
import type { GuestContext } from '../../src/guest/context.ts';
import {
  __HYPERVISOR_grant_table_op,
  encodeArray,
  GNTMAP_host_map,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
} from '../../src/index.ts';
import { DEFAULT_SPIN_LIMIT as SPIN } from '../../src/machine/wait-policy.ts';

export interface RoundtripArgs {
  pingSab: SharedArrayBuffer;
  rounds: number;
  granter: number;
  ref: number;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function stats(samples: number[]): { avgUs: number; p50Us: number; p99Us: number; opsPerSec: number } {
  const s = [...samples].sort((a, b) => a - b);
  const total = samples.reduce((a, b) => a + b, 0);
  return {
    avgUs: (total / samples.length) * 1000,
    p50Us: pct(s, 0.5) * 1000,
    p99Us: pct(s, 0.99) * 1000,
    opsPerSec: (samples.length / total) * 1000,
  };
}

export default async function main(ctx: GuestContext, a: RoundtripArgs) {
  const now = () => performance.now();
  // 1. bare ping-pong with the hypervisor thread (it plays the even moves)
  const w = new Int32Array(a.pingSab);
  const ping: number[] = [];
  for (let i = 0; i < a.rounds; i++) {
    const t = now();
    Atomics.store(w, 0, 2 * i + 1);
    Atomics.notify(w, 0);
    for (let s = 0; s < SPIN && Atomics.load(w, 0) !== 2 * i + 2; s++);
    while (Atomics.load(w, 0) !== 2 * i + 2) Atomics.wait(w, 0, 2 * i + 1, 1000);
    ping.push(now() - t);
  }
  // 2. null hypercall: grant_table_op(map_grant_ref, uop, 0) through the whole dispatcher
  const arg = ctx.start.ramBytes - 4 * 4096;
  const nul: number[] = [];
  for (let i = 0; i < a.rounds; i++) {
    const t = now();
    const rc = ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, arg, 0);
    nul.push(now() - t);
    if (rc !== 0) throw new Error(`null hypercall returned ${rc}`);
  }
  // 3. map+unmap of one grant: two hypercalls
  const mapArg = arg;
  const unmapArg = arg + 1024;
  const mapBytes = encodeArray(gnttab_map_grant_ref, [
    { host_addr: 0xe000_0000, flags: GNTMAP_host_map, ref: a.ref, dom: a.granter },
  ]);
  const mu: number[] = [];
  for (let i = 0; i < a.rounds; i++) {
    const t = now();
    ctx.mem.write(mapArg, mapBytes);
    ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, mapArg, 1);
    const status = ctx.mem.readU16(mapArg + 18);
    const handle = ctx.mem.readU32(mapArg + 20);
    if (status !== 0) throw new Error(`map status ${status}`);
    ctx.mem.write(unmapArg, encodeArray(gnttab_unmap_grant_ref, [{ host_addr: 0xe000_0000, handle }]));
    ctx.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_unmap_grant_ref, unmapArg, 1);
    if (ctx.mem.readU16(unmapArg + 20) !== 0) throw new Error('unmap failed');
    mu.push(now() - t);
  }
  return { ping: stats(ping), nullHypercall: stats(nul), mapUnmap: stats(mu) };
}
