// Cross-thread costs: a hypercall round trip from a domain's worker thread to
// the hypervisor thread (a null op, and a map+unmap pair), beside a bare
// Atomics ping-pong between the same two threads in the same run.
// Run: npx tsx bench/threads.bench.ts [--rounds N] [--json]
import os from 'node:os';
import { WorkerHost } from '../src/host/worker-host.ts';

const json = process.argv.includes('--json');
const ri = process.argv.indexOf('--rounds');
const rounds = ri > 0 ? Number(process.argv[ri + 1]) : 20000;

const host = await WorkerHost.start({ memoryMiB: 32 });
try {
  const granter = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const grantee = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  // The granter shares one page with the grantee (guest code in its own thread).
  const setup = new URL('./guests/grant-one-guest.ts', import.meta.url);
  const ref = (await host.spawn(granter, setup, { grantee: grantee.domid })) as number;
  const pingSab = new SharedArrayBuffer(64);
  const play = host.pingpong(pingSab, rounds);
  const r = (await host.spawn(grantee, new URL('./guests/roundtrip-guest.ts', import.meta.url), {
    pingSab,
    rounds,
    granter: granter.domid,
    ref,
  })) as Record<
    'ping' | 'nullHypercall' | 'mapUnmap',
    { avgUs: number; p50Us: number; p99Us: number; opsPerSec: number }
  >;
  await play;
  const inv = await host.checkInvariants();
  const machine = {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
  };
  const ratio = {
    nullHypercallOverPingpong: r.nullHypercall.avgUs / r.ping.avgUs,
    mapUnmapOverPingpong: r.mapUnmap.avgUs / r.ping.avgUs,
  };
  if (json) {
    process.stdout.write(`${JSON.stringify({ machine, rounds, ...r, ratio, invariants: inv }, null, 2)}\n`);
  } else {
    const row = (name: string, s: { avgUs: number; p50Us: number; p99Us: number; opsPerSec: number }) =>
      `${name.padEnd(44)}${(s.opsPerSec / 1000).toFixed(1).padStart(10)} k/s${s.avgUs.toFixed(2).padStart(10)} µs${s.p50Us.toFixed(2).padStart(10)} µs${s.p99Us.toFixed(2).padStart(10)} µs`;
    console.log(
      `gnttab thread benchmark — ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}, ${rounds} rounds each\n`,
    );
    console.log(
      `${'round trip'.padEnd(44)}${'rate'.padStart(14)}${'avg'.padStart(13)}${'p50'.padStart(13)}${'p99'.padStart(13)}`,
    );
    console.log(row('bare Atomics ping-pong (domain <-> hv thread)', r.ping));
    console.log(row('null hypercall from a worker', r.nullHypercall));
    console.log(row('map+unmap (2 hypercalls) from a worker', r.mapUnmap));
    console.log(
      `\nnull hypercall / ping-pong: ${ratio.nullHypercallOverPingpong.toFixed(2)}x   map+unmap / ping-pong: ${ratio.mapUnmapOverPingpong.toFixed(2)}x (1.0 = the physical limit)`,
    );
    console.log(`invariants after: ${inv.length === 0 ? 'none violated' : inv.join('; ')}`);
  }
  if (inv.length > 0) process.exitCode = 1;
} finally {
  await host.shutdown();
}
