// The six figures of issue 8 ("SMP hypervisor"), each beside its baseline
// measured in the same run: medians over rounds, the ratio, the target, and
// the machine's core count.
//
//   1. null hypercall from a worker           / the same call in single-thread mode   (target <= 1.3x)
//   2. map+unmap from a worker                / the same in single-thread mode        (target <= 1.5x)
//   3. two worker domains' map+unmap at once  / one domain alone (aggregate rate)     (target >= 1.6x)
//   4. GNTTABOP_copy of 4 KiB, one element    / copyWithin of 4 KiB in the same SAB   (target >= 0.75)
//   5. vchan 64 KiB writes between workers    / a bare SPSC ring between the same two (target >= 0.8)
//   6. map+unmap with 200 000 live mappings   / with 10                                (target <= 1.2x)
//
// Figures 1-2 interleave their worker rounds with the single-thread rounds;
// figure 6 interleaves two hosts (10 and 200 000 live mappings). Figures 4 and
// 6 run in single-thread mode (the hypervisor's own cost, no thread hop).
//
//   npx tsx bench/smp.bench.ts [--rounds N] [--round-ms MS] [--live N] [--json]
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Host } from '../src/host/host.ts';
import { WorkerHost } from '../src/host/worker-host.ts';
import {
  __HYPERVISOR_grant_table_op,
  DOMID_SELF,
  type DomainHandle,
  encodeArray,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTTAB_RESERVED_XENSTORE,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GRANT_PER_FRAME_V1,
  GTF_permit_access,
  GTF_readonly,
  gnttab_copy,
  gnttab_map_grant_ref,
  XEN_PAGE_SIZE,
} from '../src/index.ts';
import { DEFAULT_SPIN_MICROS } from '../src/machine/wait-policy.ts';
import { grantAccess, MAP_VA, mapGrantTable, scratch } from '../test/helpers/guest.ts';
import grantOne from './guests/grant-one-guest.ts';
import smpGuest, { type SmpGuestArgs, type SmpGuestResult } from './guests/smp-guest.ts';
import { BARE_HEADER, type VchanBenchArgs, type VchanBenchResult } from './guests/vchan-bench-guest.ts';

const { values: argv } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '7' },
    'round-ms': { type: 'string', default: '60' },
    live: { type: 'string', default: '200000' },
    only: { type: 'string', default: '1,2,3,4,5,6' },
    'spin-us': { type: 'string', default: String(DEFAULT_SPIN_MICROS) },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const usage =
  'usage: tsx bench/smp.bench.ts [--rounds N] [--round-ms MS] [--live N] [--only 1,2,...] [--spin-us US] [--json]\n';
if (argv.help) {
  process.stdout.write(usage);
  process.exit(0);
}
const rounds = Number(argv.rounds);
const roundMs = Number(argv['round-ms']);
const liveN = Number(argv.live);
const spinMicros = Number(argv['spin-us']);
if (!(Number.isFinite(spinMicros) && spinMicros >= 0)) {
  process.stderr.write(`--spin-us takes a number of microseconds (0: never spin)\n${usage}`);
  process.exit(2);
}
if (![rounds, roundMs, liveN].every((n) => Number.isInteger(n) && n > 0) || liveN < 20) {
  process.stderr.write(
    `--rounds, --round-ms and --live take positive integers (--live at least 20)\n${usage}`,
  );
  process.exit(2);
}
const json = argv.json;
const only = new Set(argv.only.split(',').map(Number));
if (![...only].every((n) => Number.isInteger(n) && n >= 1 && n <= 6)) {
  process.stderr.write(`--only takes figure numbers from 1 to 6, comma-separated\n${usage}`);
  process.exit(2);
}
const want = (n: number): boolean => only.has(n);
const PAGE = XEN_PAGE_SIZE;
const cores = os.availableParallelism();

function progress(msg: string): void {
  process.stderr.write(`smp bench: ${msg}\n`);
}
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`benchmark self-check failed: ${what}`);
}

interface Figure {
  /** The figure's number in issue 8's table. */
  no: number;
  name: string;
  unit: string;
  value: number;
  baselineName: string;
  baseline: number;
  /** value / baseline, or baseline / value where "higher is better" reads that way (see `ratioOf`). */
  ratio: number;
  ratioOf: string;
  target: string;
  met: boolean;
  rounds: { value: number[]; baseline: number[] };
}
const figures: Figure[] = [];
function figure(f: Omit<Figure, 'value' | 'baseline' | 'met'> & { met: (r: number) => boolean }): void {
  figures.push({
    ...f,
    value: median(f.rounds.value),
    baseline: median(f.rounds.baseline),
    met: f.met(f.ratio),
  });
}

// ---- 1 and 2: a worker's hypercalls against the same guest loop in single-thread mode ---------------

if (want(1) || want(2) || want(3)) {
  progress('figures 1-2: null hypercall and map+unmap, worker vs single-thread (interleaved rounds)');
  const st = new Host({ memoryMiB: 32 });
  const stGranter = st.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const stGrantee = st.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const stRef = grantOne(st.context(stGranter.domid), { grantee: stGrantee.domid });
  const stCtx = st.context(stGrantee.domid);
  const callArgs = (granter: number, ref: number): SmpGuestArgs => ({
    job: 'calls',
    rounds,
    roundMs,
    granter,
    ref,
    mapVa: MAP_VA,
  });

  const wh = await WorkerHost.start({ memoryMiB: 32 });
  let pairA: SmpGuestResult;
  let pairB: SmpGuestResult;
  let callsW: SmpGuestResult;
  const callsST: SmpGuestResult = { nullNs: [], mapUnmapNs: [], aloneRate: [], spans: [], counts: [] };
  try {
    const guestUrl = new URL('./guests/smp-guest.ts', import.meta.url);
    const grantUrl = new URL('./guests/grant-one-guest.ts', import.meta.url);
    const g1 = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const e1 = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const g2 = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const e2 = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const ref1 = await wh.spawn<number>(g1, grantUrl, { grantee: e1.domid });
    const ref2 = await wh.spawn<number>(g2, grantUrl, { grantee: e2.domid });

    const turnSab = new SharedArrayBuffer(8);
    const turn = new Int32Array(turnSab);
    const worker = wh.spawn<SmpGuestResult>(e1, guestUrl, { ...callArgs(g1.domid, ref1), syncSab: turnSab });
    for (let r = 0; r < rounds; r++) {
      Atomics.store(turn, 0, 2 * r + 1);
      Atomics.notify(turn, 0);
      // The worker's round runs while this thread sleeps (it needs nothing from this thread).
      for (let v = Atomics.load(turn, 0); v < 2 * r + 2; v = Atomics.load(turn, 0))
        Atomics.wait(turn, 0, v, 1000);
      const one = smpGuest(stCtx, { ...callArgs(stGranter.domid, stRef), rounds: 1 });
      callsST.nullNs.push(...one.nullNs);
      callsST.mapUnmapNs.push(...one.mapUnmapNs);
    }
    callsW = await worker;

    // ---- 3: two worker domains doing map+unmap on their own grants at once, against one alone ----
    progress('figure 3: two worker domains mapping at once vs one alone');
    const pairSab = new SharedArrayBuffer(8);
    const pairArgs = { rounds, roundMs, mapVa: MAP_VA, syncSab: pairSab };
    [pairA, pairB] = await Promise.all([
      wh.spawn<SmpGuestResult>(e1, guestUrl, { ...pairArgs, job: 'pair-a', granter: g1.domid, ref: ref1 }),
      wh.spawn<SmpGuestResult>(e2, guestUrl, { ...pairArgs, job: 'pair-b', granter: g2.domid, ref: ref2 }),
    ]);
    const inv = await wh.checkInvariants();
    check(inv.length === 0, `worker host invariants: ${inv.join('; ')}`);
  } finally {
    await wh.shutdown();
  }
  check(st.checkInvariants().length === 0, `single-thread invariants: ${st.checkInvariants().join('; ')}`);

  figure({
    no: 1,
    name: 'null hypercall from a worker',
    unit: 'ns',
    baselineName: 'the same call, single-thread mode',
    rounds: { value: callsW.nullNs, baseline: callsST.nullNs },
    ratio: median(callsW.nullNs) / median(callsST.nullNs),
    ratioOf: 'worker / single-thread',
    target: '<= 1.3',
    met: (r) => r <= 1.3,
  });
  figure({
    no: 2,
    name: 'map+unmap from a worker',
    unit: 'ns',
    baselineName: 'the same pair, single-thread mode',
    rounds: { value: callsW.mapUnmapNs, baseline: callsST.mapUnmapNs },
    ratio: median(callsW.mapUnmapNs) / median(callsST.mapUnmapNs),
    ratioOf: 'worker / single-thread',
    target: '<= 1.5',
    met: (r) => r <= 1.5,
  });
  const aggregate = pairA.spans.map((sa, i) => {
    const sb = pairB.spans[i]!;
    const n = pairA.counts[i]! + pairB.counts[i]!;
    return n / ((Math.max(sa[1], sb[1]) - Math.min(sa[0], sb[0])) / 1000);
  });
  figure({
    no: 3,
    name: 'two worker domains map+unmap at once (aggregate)',
    unit: 'pairs/s',
    baselineName: 'one domain alone',
    rounds: { value: aggregate, baseline: pairA.aloneRate },
    ratio: median(aggregate) / median(pairA.aloneRate),
    ratioOf: 'aggregate / alone',
    target: '>= 1.6',
    met: (r) => r >= 1.6,
  });
}

// ---- 4: GNTTABOP_copy of 4 KiB, one element, against copyWithin of the same 4 KiB ------------------

if (want(4)) {
  progress('figure 4: GNTTABOP_copy 4 KiB vs copyWithin 4 KiB');
  const host = new Host({ memoryMiB: 16 });
  const b = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const a = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  mapGrantTable(a);
  const SRC = 0x50 * PAGE;
  const DST = 0x20 * PAGE;
  const REF = 64;
  for (let i = 0; i < PAGE; i += 4) a.memory.writeU32(SRC + i, (i * 2654435761) >>> 0);
  grantAccess(a, REF, b.domid, a.frameOf(SRC), GTF_permit_access | GTF_readonly);
  const op = scratch(b, 7);
  b.memory.write(
    op,
    encodeArray(gnttab_copy, [
      {
        source_u: REF,
        source_domid: a.domid,
        source_offset: 0,
        dest_u: b.frameOf(DST),
        dest_domid: DOMID_SELF,
        dest_offset: 0,
        len: PAGE,
        flags: GNTCOPY_source_gref,
      },
    ]),
  );
  const u8 = host.hypervisor.machine.u8;
  const mSrc = a.frameOf(SRC) * PAGE;
  const mDst = b.frameOf(DST) * PAGE;
  const statusAt = op + gnttab_copy.fields.status.offset;
  const copyOnce = (): number =>
    b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_copy, op, 1) | b.memory.readU16(statusAt);
  check(copyOnce() === 0, 'copy rc/status');
  check(
    b.memory.read(DST, PAGE).every((v, i) => v === u8[mSrc + i]),
    'copy moved the granter page',
  );
  const loop = (body: () => number): number => {
    let n = 0;
    let bad = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < roundMs) {
      for (let i = 0; i < 200; i++) bad |= body();
      n += 200;
      t = performance.now();
    }
    check(bad === 0, 'a copy failed while timed');
    return ((t - t0) * 1e6) / n;
  };
  const copyNs: number[] = [];
  const withinNs: number[] = [];
  const within = (): number => {
    u8.copyWithin(mDst, mSrc, mSrc + PAGE);
    return 0;
  };
  loop(copyOnce);
  loop(within);
  for (let r = 0; r < rounds; r++) {
    copyNs.push(loop(copyOnce));
    withinNs.push(loop(within));
  }
  check(host.checkInvariants().length === 0, 'copy host invariants');
  figure({
    no: 4,
    name: 'GNTTABOP_copy 4 KiB, one element',
    unit: 'ns',
    baselineName: 'copyWithin of 4 KiB, same SAB',
    rounds: { value: copyNs, baseline: withinNs },
    ratio: median(withinNs) / median(copyNs),
    ratioOf: 'copyWithin time / copy time',
    target: '>= 0.75',
    met: (r) => r >= 0.75,
  });
}

// ---- 5: vchan 64 KiB writes between two workers, against a bare ring between the same two ---------

if (want(5)) {
  progress('figure 5: vchan 64 KiB writes vs a bare SPSC ring, two workers');
  const ringSize = 65536;
  const totalBytes = 16 << 20;
  const vh = await WorkerHost.start({ memoryMiB: 64, xenstore: true });
  try {
    await vh.createDomain({ kind: 'pv', memoryKiB: 256 }); // dom0, the toolstack
    const srv = await vh.createDomain({ kind: 'pv', memoryKiB: 8192 });
    const cli = await vh.createDomain({ kind: 'pv', memoryKiB: 4096 });
    const guest = new URL('./guests/vchan-bench-guest.ts', import.meta.url);
    const common = {
      path: `/local/domain/${srv.domid}/data/vchan/smp-bench`,
      ringSize,
      writeSizes: [65536],
      totalBytes,
      reps: rounds,
      bareSab: new SharedArrayBuffer(BARE_HEADER + ringSize),
      spinMicros,
    };
    const [s] = (await Promise.all([
      vh.spawn(srv, guest, { ...common, role: 'server', peer: cli.domid } satisfies VchanBenchArgs),
      vh.spawn(cli, guest, { ...common, role: 'client', peer: srv.domid } satisfies VchanBenchArgs),
    ])) as [VchanBenchResult, VchanBenchResult];
    const inv = await vh.checkInvariants();
    check(inv.length === 0, `vchan host invariants: ${inv.join('; ')}`);
    const left = (await vh.snapshot()).filter(
      (t) =>
        t.entries.some((e) => !(e.ref === GNTTAB_RESERVED_XENSTORE && e.domid === 0)) ||
        t.mappings.length > 0,
    );
    check(left.length === 0, 'vchan left grants or mappings behind');
    const mbps = (secs: number[]) => secs.map((x) => totalBytes / x / 1e6);
    const v = mbps(s.vchan[0]!.seconds);
    const bare = mbps(s.bare[0]!.seconds);
    figure({
      no: 5,
      name: 'vchan 64 KiB writes, two workers',
      unit: 'MB/s',
      baselineName: `bare SPSC ring, same two workers (both spin <= ${spinMicros} us, then sleep)`,
      rounds: { value: v, baseline: bare },
      ratio: median(v) / median(bare),
      ratioOf: 'vchan / bare',
      target: '>= 0.8',
      met: (r) => r >= 0.8,
    });
  } finally {
    await vh.shutdown();
  }
}

// ---- 6: map+unmap with 200 000 live mappings against 10, two hosts, interleaved rounds -----------

if (want(6)) {
  progress(`figure 6: map+unmap with ${liveN} live mappings vs 10 (setting up)`);
  /**
   * A host with `live` mappings of distinct grants of one granter, spread over
   * as many grantees as their paging pools need (a PV domain's pool holds 16
   * spare L1 leaves of 1024 pages: 15 for these, one for the timed mapping),
   * and one spare grant that the first grantee maps and unmaps while timed.
   */
  const build = (live: number) => {
    const PER_GRANTEE = 15 * 1024;
    const grantFrames = Math.ceil((live + 16) / GRANT_PER_FRAME_V1) + 1;
    const host = new Host({ memoryMiB: 64 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 1024, maxGrantFrames: grantFrames });
    const grantees = Array.from({ length: Math.ceil(live / PER_GRANTEE) }, () =>
      host.createDomain({ kind: 'pv', memoryKiB: 1024 }),
    );
    mapGrantTable(a, grantFrames);
    // Live grants 8..8+live over a pool of 128 granter pages, read-only; the timed grant after them.
    const POOL = 0x40;
    const b0 = grantees[0]!;
    for (let i = 0; i < live; i++) {
      const b = grantees[Math.floor(i / PER_GRANTEE)]!;
      grantAccess(a, 8 + i, b.domid, a.frameOf((POOL + (i % 128)) * PAGE), GTF_permit_access | GTF_readonly);
    }
    const spare = 8 + live;
    grantAccess(a, spare, b0.domid, a.frameOf(0x10 * PAGE));
    // Each grantee maps its share in batches of 100 at 0x4000_0000 upward (past its RAM).
    const BATCH = 100;
    const MAP = gnttab_map_grant_ref;
    for (let i = 0; i < live; ) {
      const b = grantees[Math.floor(i / PER_GRANTEE)]!;
      const ops = scratch(b, 4);
      const n = Math.min(BATCH, live - i, PER_GRANTEE - (i % PER_GRANTEE));
      b.memory.write(
        ops,
        encodeArray(
          MAP,
          Array.from({ length: n }, (_, j) => ({
            host_addr: 0x4000_0000 + ((i + j) % PER_GRANTEE) * PAGE,
            flags: GNTMAP_host_map | GNTMAP_readonly,
            ref: 8 + i + j,
            dom: a.domid,
          })),
        ),
      );
      check(b.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_map_grant_ref, ops, n) === 0, 'bulk map rc');
      for (let j = 0; j < n; j++) {
        const status = b.memory.readU16(ops + j * MAP.size + MAP.fields.status.offset);
        check(status === 0, `bulk map of ref ${8 + i + j}: status ${status}`);
      }
      i += n;
    }
    const mapped = grantees.reduce((s, b) => s + b.xen.gt.maptrack.liveCount(), 0);
    check(mapped === live, `the grantees hold ${live} mappings (${mapped})`);
    return { host, a, b: b0, grantees, spare, ctx: host.context(b0.domid), live };
  };
  const small = build(10);
  const t0 = performance.now();
  const large = build(liveN);
  progress(`figure 6: ${liveN} mappings set up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const once = (w: { a: DomainHandle; spare: number; ctx: typeof small.ctx }) =>
    smpGuest(w.ctx, {
      job: 'calls',
      rounds: 1,
      roundMs,
      granter: w.a.domid,
      ref: w.spare,
      mapVa: MAP_VA,
    }).mapUnmapNs[0]!;
  const smallNs: number[] = [];
  const largeNs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    smallNs.push(once(small));
    largeNs.push(once(large));
  }
  check(
    large.grantees.reduce((n, b) => n + b.xen.gt.maptrack.liveCount(), 0) === liveN,
    'live mappings kept while timed',
  );
  check(small.host.checkInvariants().length === 0, 'small host invariants');
  figure({
    no: 6,
    name: `map+unmap with ${liveN} live mappings (${large.grantees.length} grantees)`,
    unit: 'ns',
    baselineName: 'with 10',
    rounds: { value: largeNs, baseline: smallNs },
    ratio: median(largeNs) / median(smallNs),
    ratioOf: `${liveN} / 10`,
    target: '<= 1.2',
    met: (r) => r <= 1.2,
  });
}

// ---- report -------------------------------------------------------------------------------------

const machine = { cores, cpu: os.cpus()[0]?.model ?? 'unknown', node: process.version };
if (json) {
  process.stdout.write(`${JSON.stringify({ machine, rounds, roundMs, figures }, null, 2)}\n`);
} else {
  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  console.log(
    `gnttab SMP benchmark (issue 8): ${cores} cores (os.availableParallelism()), Node ${machine.node}\n` +
      `medians of ${rounds} rounds of ${roundMs} ms; baseline measured in the same run\n`,
  );
  for (const f of figures) {
    console.log(`${f.no}. ${f.name}`);
    console.log(`     ${fmt(f.value).padStart(10)} ${f.unit.padEnd(8)} vs ${f.baselineName}`);
    console.log(`     ${fmt(f.baseline).padStart(10)} ${f.unit}`);
    console.log(
      `     ratio ${f.ratio.toFixed(2)} (${f.ratioOf}), target ${f.target}: ${f.met ? 'met' : 'not met'}`,
    );
  }
}
