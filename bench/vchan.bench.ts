// libxenvchan stream throughput between two worker domains (server -> client,
// blocking write / blocking read) for 4 KiB, 64 KiB and 1 MiB writes, beside a
// bare single-producer single-consumer byte ring over a SharedArrayBuffer
// between the same two worker threads, with the same ring size, in the same
// run. The ratio is vchan / bare (1.0 = the cost of moving the bytes between
// two threads at all).
//
// Both use the same wait policy: spin up to --spin-us microseconds while the
// two threads have a core each, then sleep.
//
//   npx tsx bench/vchan.bench.ts [--ring BYTES] [--mib N] [--reps N] [--spin-us US] [--json]
import os from 'node:os';
import { WorkerHost } from '../src/host/worker-host.ts';
import { GNTTAB_RESERVED_XENSTORE } from '../src/index.ts';
import { DEFAULT_SPIN_MICROS } from '../src/machine/wait-policy.ts';
import {
  BARE_HEADER,
  type Measure,
  type VchanBenchArgs,
  type VchanBenchResult,
} from './guests/vchan-bench-guest.ts';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const opt = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const ringSize = opt('--ring', 65536);
const totalBytes = opt('--mib', 64) * (1 << 20);
const reps = opt('--reps', 3);
const spinMicros = opt('--spin-us', DEFAULT_SPIN_MICROS);
const writeSizes = [4096, 65536, 1 << 20];
if (!(ringSize >= 4096 && ringSize <= 1 << 20 && (ringSize & (ringSize - 1)) === 0))
  throw new RangeError('--ring must be a power of two from 4096 to 1048576 (a multi-page vchan ring)');

const guest = new URL('./guests/vchan-bench-guest.ts', import.meta.url);
const host = await WorkerHost.start({ memoryMiB: 64, xenstore: true });
try {
  await host.createDomain({ kind: 'pv', memoryKiB: 256 }); // dom0, the toolstack
  const srv = await host.createDomain({ kind: 'pv', memoryKiB: 8192 });
  const cli = await host.createDomain({ kind: 'pv', memoryKiB: 4096 });
  const path = `/local/domain/${srv.domid}/data/vchan/bench`;
  const bareSab = new SharedArrayBuffer(BARE_HEADER + ringSize);
  const common = { path, ringSize, writeSizes, totalBytes, reps, bareSab, spinMicros };
  const [s, c] = (await Promise.all([
    host.spawn(srv, guest, { ...common, role: 'server', peer: cli.domid } satisfies VchanBenchArgs),
    host.spawn(cli, guest, { ...common, role: 'client', peer: srv.domid } satisfies VchanBenchArgs),
  ])) as [VchanBenchResult, VchanBenchResult];
  const inv = await host.checkInvariants();
  // Grants or mappings left (the toolstack's xenstore grant, reserved ref 1 to dom0, stays).
  const left = (await host.snapshot()).filter(
    (t) =>
      t.entries.some((e) => !(e.ref === GNTTAB_RESERVED_XENSTORE && e.domid === 0)) || t.mappings.length > 0,
  );

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const mbps = (m: Measure) => {
    const writes = Math.max(1, Math.floor(totalBytes / m.writeSize));
    return (writes * m.writeSize) / median(m.seconds) / 1e6;
  };
  const rows = writeSizes.map((ws, i) => {
    const v = s.vchan[i]!;
    const b = s.bare[i]!;
    const vchanMBps = mbps(v);
    const bareMBps = mbps(b);
    return {
      writeSize: ws,
      vchanMBps,
      bareMBps,
      ratio: vchanMBps / bareMBps,
      vchanSeconds: v.seconds,
      bareSeconds: b.seconds,
      hypercallsPerMiB: (v.hypercallsPerMiB ?? 0) + (c.vchan[i]!.hypercallsPerMiB ?? 0),
    };
  });
  const machine = {
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
  };
  if (json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          machine,
          ringSize,
          totalBytes,
          reps,
          spinMicros,
          rows,
          invariants: inv,
          leftBehind: left.map((t) => t.domid),
        },
        null,
        2,
      )}\n`,
    );
  } else {
    const kib = (n: number) => (n >= 1 << 20 ? `${n / (1 << 20)} MiB` : `${n / 1024} KiB`);
    console.log(
      `gnttab vchan benchmark — ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}\n` +
        `server -> client stream, ${kib(ringSize)} ring, ${kib(totalBytes)} per run, median of ${reps} (MB = 10^6 bytes)\n`,
    );
    console.log(
      `${'write size'.padEnd(12)}${'vchan MB/s'.padStart(12)}${'bare MB/s'.padStart(12)}${'vchan/bare'.padStart(12)}${'hypercalls/MiB (both)'.padStart(24)}`,
    );
    for (const r of rows) {
      console.log(
        `${kib(r.writeSize).padEnd(12)}${r.vchanMBps.toFixed(0).padStart(12)}${r.bareMBps.toFixed(0).padStart(12)}${r.ratio.toFixed(2).padStart(12)}${r.hypercallsPerMiB.toFixed(1).padStart(24)}`,
      );
    }
    console.log(
      `\nbare = a single-producer single-consumer byte ring over a SharedArrayBuffer between the same two workers` +
        `\n(spin up to ${spinMicros} us while cores are spare, then Atomics.wait, as vchan's waits), the same ring size. invariants after: ${inv.length === 0 ? 'none violated' : inv.join('; ')}; ` +
        `grants or mappings left: ${left.length === 0 ? 'none' : left.map((t) => `d${t.domid}`).join(', ')}`,
    );
  }
  if (inv.length > 0 || left.length > 0) process.exitCode = 1;
} finally {
  await host.shutdown();
}
