// Single-thread costs of the hypervisor's grant-table hot paths, measured with
// mitata on one Host with two domains: a PV granter (domU frontend, grant table
// mapped, v1) and a grantee (dom0 backend, PV by default, `--grantee hvm`).
//
//   1. map+unmap of one grant: one map hypercall, then one unmap hypercall;
//   2. map+unmap of 32 grants: one 32-element map hypercall, one 32-element unmap;
//   3. GNTTABOP_copy of 4 KiB, gref -> gmfn (the common backend case) and gref -> gref;
//   4. Uint8Array.copyWithin of the same 4 KiB between the same two frames of the
//      machine's SharedArrayBuffer: the physical limit of a copy here.
//
// Argument structs are encoded once, before timing, in the grantee's memory; each
// iteration only moves the handles the map returned into the unmap structs (as a
// guest kernel would) and ORs every rc and status into a failure word, so the
// timings are the hypervisor's, and a run whose ops failed is reported as failed.
//
//   npx tsx bench/gnttab.bench.ts [--json] [--grantee pv|hvm]
import { createRequire } from 'node:module';
import os from 'node:os';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { do_not_optimize, measure } from 'mitata';
import {
  __HYPERVISOR_grant_table_op,
  DOMID_SELF,
  type DomainHandle,
  encodeArray,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  GTF_readonly,
  GuestFault,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
  type StructDef,
  type StructValue,
} from '../src/index.ts';
import { entryAddr, grantAccess, MAP_VA, mapGrantTable, scratch } from '../test/helpers/guest.ts';

// ---- options ---------------------------------------------------------------------------------

const { values: argv } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    grantee: { type: 'string', default: 'pv' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (argv.help) {
  process.stdout.write('usage: tsx bench/gnttab.bench.ts [--json] [--grantee pv|hvm]\n');
  process.exit(0);
}
const granteeKind = argv.grantee;
if (granteeKind !== 'pv' && granteeKind !== 'hvm') {
  process.stderr.write(`--grantee must be pv or hvm, got ${granteeKind}\n`);
  process.exit(2);
}
const json = argv.json;

const PAGE = 4096;
const BATCH = 32;
const COPY_LEN = 4096;
/** mitata budgets (ns of measured time per benchmark): throughput (batched) and latency (one call per sample). */
const THROUGHPUT_NS = 2e9;
const LATENCY_NS = 1e9;

// ---- setup: the backend (dom0, grantee) and the frontend (granter) ----------------------------

const host = new Host({ memoryMiB: 64 });
const hv = host.hypervisor;
const b = host.createDomain({ kind: granteeKind, memoryKiB: 1024 });
const a = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
mapGrantTable(a);

/** Refs and the granter's pages behind them (Linux keeps refs 0..7 for the toolstack). */
const REF_SINGLE = 8;
const REF_BATCH = 16; // 16..47
const REF_COPY_SRC = 64;
const REF_COPY_DST = 65;
const PAGE_SINGLE = 0x10 * PAGE;
const PAGE_BATCH = 0x20 * PAGE; // 32 pages
const PAGE_COPY_SRC = 0x50 * PAGE;
const PAGE_COPY_DST = 0x51 * PAGE;
/** The grantee's own destination page for gref -> gmfn. */
const B_COPY_DST = 0x20 * PAGE;

let seed = 0x2545f491;
function pattern(len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    out[i] = seed & 0xff;
  }
  return out;
}

a.memory.write(PAGE_SINGLE, pattern(PAGE));
for (let i = 0; i < BATCH; i++) a.memory.write(PAGE_BATCH + i * PAGE, pattern(PAGE));
a.memory.write(PAGE_COPY_SRC, pattern(PAGE));
grantAccess(a, REF_SINGLE, b.domid, a.frameOf(PAGE_SINGLE));
for (let i = 0; i < BATCH; i++) grantAccess(a, REF_BATCH + i, b.domid, a.frameOf(PAGE_BATCH + i * PAGE));
grantAccess(a, REF_COPY_SRC, b.domid, a.frameOf(PAGE_COPY_SRC), GTF_permit_access | GTF_readonly);
grantAccess(a, REF_COPY_DST, b.domid, a.frameOf(PAGE_COPY_DST));

// Argument structs, encoded once in the grantee's scratch pages 4..7.
const S_MAP1 = scratch(b, 4);
const S_UNMAP1 = scratch(b, 4) + 64;
const S_MAPN = scratch(b, 5);
const S_UNMAPN = scratch(b, 6);
const S_COPY_GMFN = scratch(b, 7);
const S_COPY_GREF = scratch(b, 7) + 64;

function place<F extends string>(
  dom: DomainHandle,
  addr: number,
  def: StructDef<F>,
  ops: Partial<StructValue<F>>[],
): void {
  dom.memory.write(addr, encodeArray(def, ops));
}
place(b, S_MAP1, gnttab_map_grant_ref, [
  { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: REF_SINGLE, dom: a.domid },
]);
place(b, S_UNMAP1, gnttab_unmap_grant_ref, [{ host_addr: MAP_VA, dev_bus_addr: 0, handle: 0 }]);
place(
  b,
  S_MAPN,
  gnttab_map_grant_ref,
  Array.from({ length: BATCH }, (_, i) => ({
    host_addr: MAP_VA + (i + 1) * PAGE,
    flags: GNTMAP_host_map,
    ref: REF_BATCH + i,
    dom: a.domid,
  })),
);
place(
  b,
  S_UNMAPN,
  gnttab_unmap_grant_ref,
  Array.from({ length: BATCH }, (_, i) => ({
    host_addr: MAP_VA + (i + 1) * PAGE,
    dev_bus_addr: 0,
    handle: 0,
  })),
);
place(b, S_COPY_GMFN, gnttab_copy, [
  {
    source_u: REF_COPY_SRC,
    source_domid: a.domid,
    source_offset: 0,
    dest_u: b.frameOf(B_COPY_DST),
    dest_domid: DOMID_SELF,
    dest_offset: 0,
    len: COPY_LEN,
    flags: GNTCOPY_source_gref,
  },
]);
place(b, S_COPY_GREF, gnttab_copy, [
  {
    source_u: REF_COPY_SRC,
    source_domid: a.domid,
    source_offset: 0,
    dest_u: REF_COPY_DST,
    dest_domid: a.domid,
    dest_offset: 0,
    len: COPY_LEN,
    flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
  },
]);

/** Machine byte address of `addr` in `dom`'s address space (the struct never crosses a page). */
function machineAddr(dom: DomainHandle, addr: number): number {
  const base = dom.xen.translatePage(addr, true);
  if (base < 0) throw new Error(`d${dom.domid}: 0x${addr.toString(16)} is not mapped`);
  return base + (addr % PAGE);
}
const dv = new DataView(hv.machine.sab);
const u8 = hv.machine.u8;
const mMap1 = machineAddr(b, S_MAP1);
const mUnmap1 = machineAddr(b, S_UNMAP1);
const mMapN = machineAddr(b, S_MAPN);
const mUnmapN = machineAddr(b, S_UNMAPN);
const mCopyGmfn = machineAddr(b, S_COPY_GMFN);
const mCopyGref = machineAddr(b, S_COPY_GREF);
const mSrc = machineAddr(a, PAGE_COPY_SRC);
const mDstB = machineAddr(b, B_COPY_DST);

const MAP = gnttab_map_grant_ref.fields;
const UNMAP = gnttab_unmap_grant_ref.fields;
const COPY = gnttab_copy.fields;
const MAP_SIZE = gnttab_map_grant_ref.size;
const UNMAP_SIZE = gnttab_unmap_grant_ref.size;

// ---- the measured operations: each returns 0, or something non-zero when any rc or status is ----

const HC = __HYPERVISOR_grant_table_op;

function mapUnmapSingle(): number {
  let r = b.hypercall(HC, GNTTABOP_map_grant_ref, S_MAP1, 1);
  r |= dv.getInt16(mMap1 + MAP.status.offset, true);
  dv.setUint32(mUnmap1 + UNMAP.handle.offset, dv.getUint32(mMap1 + MAP.handle.offset, true), true);
  r |= b.hypercall(HC, GNTTABOP_unmap_grant_ref, S_UNMAP1, 1);
  return r | dv.getInt16(mUnmap1 + UNMAP.status.offset, true);
}

function mapUnmapBatch(): number {
  let r = b.hypercall(HC, GNTTABOP_map_grant_ref, S_MAPN, BATCH);
  for (let i = 0; i < BATCH; i++) {
    const m = mMapN + i * MAP_SIZE;
    r |= dv.getInt16(m + MAP.status.offset, true);
    dv.setUint32(
      mUnmapN + i * UNMAP_SIZE + UNMAP.handle.offset,
      dv.getUint32(m + MAP.handle.offset, true),
      true,
    );
  }
  r |= b.hypercall(HC, GNTTABOP_unmap_grant_ref, S_UNMAPN, BATCH);
  for (let i = 0; i < BATCH; i++) r |= dv.getInt16(mUnmapN + i * UNMAP_SIZE + UNMAP.status.offset, true);
  return r;
}

function copyGrefToGmfn(): number {
  return b.hypercall(HC, GNTTABOP_copy, S_COPY_GMFN, 1) | dv.getInt16(mCopyGmfn + COPY.status.offset, true);
}

function copyGrefToGref(): number {
  return b.hypercall(HC, GNTTABOP_copy, S_COPY_GREF, 1) | dv.getInt16(mCopyGref + COPY.status.offset, true);
}

function copyWithin4k(): Uint8Array {
  return u8.copyWithin(mDstB, mSrc, mSrc + COPY_LEN);
}

// ---- correctness, once before timing and again after -----------------------------------------

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`benchmark self-check failed: ${what}`);
}

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function pinsClear(): boolean {
  const refs = [
    REF_SINGLE,
    REF_COPY_SRC,
    REF_COPY_DST,
    ...Array.from({ length: BATCH }, (_, i) => REF_BATCH + i),
  ];
  return refs.every(
    (ref) => a.xen.gt.activeEntry(ref).pin === 0 && (a.memory.readU16(entryAddr(a, ref)) & 0x18) === 0,
  );
}

function unmapped(addr: number): boolean {
  try {
    b.memory.read(addr, 1);
    return false;
  } catch (err) {
    return err instanceof GuestFault;
  }
}

function verify(): void {
  check(host.checkInvariants().length === 0, `invariants before: ${host.checkInvariants().join('; ')}`);
  check(pinsClear(), 'no grant pinned before');

  // 1. one map: the grantee reads the granter's page; then the unmap undoes it all.
  check(b.hypercall(HC, GNTTABOP_map_grant_ref, S_MAP1, 1) === 0, 'map rc');
  check(dv.getInt16(mMap1 + MAP.status.offset, true) === 0, 'map status');
  check(
    sameBytes(b.memory.read(MAP_VA, PAGE), a.memory.read(PAGE_SINGLE, PAGE)),
    'bytes through the mapping',
  );
  check((a.memory.readU16(entryAddr(a, REF_SINGLE)) & 0x18) === 0x18, 'GTF_reading|GTF_writing while mapped');
  check(a.xen.gt.activeEntry(REF_SINGLE).pin !== 0, 'entry pinned while mapped');
  dv.setUint32(mUnmap1 + UNMAP.handle.offset, dv.getUint32(mMap1 + MAP.handle.offset, true), true);
  check(b.hypercall(HC, GNTTABOP_unmap_grant_ref, S_UNMAP1, 1) === 0, 'unmap rc');
  check(dv.getInt16(mUnmap1 + UNMAP.status.offset, true) === 0, 'unmap status');
  check(unmapped(MAP_VA), 'mapping gone after unmap');
  check(pinsClear(), 'no grant pinned after single unmap');

  // 2. 32 maps in one hypercall, 32 distinct handles, each page readable; then 32 unmaps.
  check(b.hypercall(HC, GNTTABOP_map_grant_ref, S_MAPN, BATCH) === 0, 'batch map rc');
  const handles = new Set<number>();
  for (let i = 0; i < BATCH; i++) {
    const m = mMapN + i * MAP_SIZE;
    check(dv.getInt16(m + MAP.status.offset, true) === 0, `batch map status [${i}]`);
    handles.add(dv.getUint32(m + MAP.handle.offset, true));
    check(
      sameBytes(b.memory.read(MAP_VA + (i + 1) * PAGE, PAGE), a.memory.read(PAGE_BATCH + i * PAGE, PAGE)),
      `bytes through batch mapping [${i}]`,
    );
    dv.setUint32(
      mUnmapN + i * UNMAP_SIZE + UNMAP.handle.offset,
      dv.getUint32(m + MAP.handle.offset, true),
      true,
    );
  }
  check(handles.size === BATCH, 'distinct handles');
  check(b.xen.gt.maptrack.liveCount() === BATCH, 'maptrack holds the batch');
  check(b.hypercall(HC, GNTTABOP_unmap_grant_ref, S_UNMAPN, BATCH) === 0, 'batch unmap rc');
  for (let i = 0; i < BATCH; i++) {
    check(
      dv.getInt16(mUnmapN + i * UNMAP_SIZE + UNMAP.status.offset, true) === 0,
      `batch unmap status [${i}]`,
    );
    check(unmapped(MAP_VA + (i + 1) * PAGE), `batch mapping [${i}] gone`);
  }
  check(b.xen.gt.maptrack.liveCount() === 0, 'maptrack empty after batch unmap');

  // 3. copies: the bytes arrive.
  b.memory.fill(B_COPY_DST, PAGE);
  check(copyGrefToGmfn() === 0, 'copy gref->gmfn rc/status');
  check(
    sameBytes(b.memory.read(B_COPY_DST, PAGE), a.memory.read(PAGE_COPY_SRC, PAGE)),
    'copy gref->gmfn bytes',
  );
  a.memory.fill(PAGE_COPY_DST, PAGE);
  check(copyGrefToGref() === 0, 'copy gref->gref rc/status');
  check(
    sameBytes(a.memory.read(PAGE_COPY_DST, PAGE), a.memory.read(PAGE_COPY_SRC, PAGE)),
    'copy gref->gref bytes',
  );

  // 4. the baseline copies the same frames.
  b.memory.fill(B_COPY_DST, PAGE);
  copyWithin4k();
  check(sameBytes(b.memory.read(B_COPY_DST, PAGE), a.memory.read(PAGE_COPY_SRC, PAGE)), 'copyWithin bytes');

  check(pinsClear(), 'no grant pinned after the copies');
  check(host.checkInvariants().length === 0, `invariants after verify: ${host.checkInvariants().join('; ')}`);
}

// ---- timing ----------------------------------------------------------------------------------

/** A real GC between benchmarks (mitata runs opts.gc once after warm-up); no 1 GiB fallback. */
function findGc(): (() => void) | false {
  const g = (globalThis as { gc?: unknown }).gc;
  if (typeof g === 'function') return g as () => void;
  try {
    v8.setFlagsFromString('--expose-gc');
    const f: unknown = vm.runInNewContext('gc');
    if (typeof f === 'function') return f as () => void;
  } catch {
    // no GC hook: mitata runs without one
  }
  return false;
}
const gc = findGc();

interface Timing {
  /** From the batched run (mitata's default): mean ns per call. */
  avgNs: number;
  /** Calls measured in the batched run. */
  calls: number;
  /** From the one-call-per-sample run: percentiles of single calls (absent for copyWithin). */
  latency?: { avgNs: number; minNs: number; p50Ns: number; p99Ns: number; maxNs: number; samples: number };
  /** OR of every rc and status seen while timing: 0 when every op succeeded. */
  failures: number;
}

function progress(msg: string): void {
  if (!json && process.stderr.isTTY) process.stderr.write(`\r\x1b[2K  measuring ${msg}…`);
}

/** Times `op` (a hypercall wrapper returning 0 on success, or the baseline when `op` is null). */
async function time(name: string, op: (() => number) | null, withLatency: boolean): Promise<Timing> {
  let failures = 0;
  const body =
    op === null
      ? () => do_not_optimize(copyWithin4k())
      : () => {
          const r = op();
          failures |= r;
          do_not_optimize(r);
        };
  progress(`${name} (throughput)`);
  const t = await measure(body, { gc, min_cpu_time: THROUGHPUT_NS });
  const out: Timing = { avgNs: t.avg, calls: t.ticks, failures: 0 };
  if (withLatency) {
    progress(`${name} (latency)`);
    // batch_threshold -1: never batch, so every sample is one call and p50/p99 are per call.
    const l = await measure(body, {
      gc,
      min_cpu_time: LATENCY_NS,
      batch_threshold: -1,
      max_samples: 2_000_000,
    });
    out.latency = { avgNs: l.avg, minNs: l.min, p50Ns: l.p50, p99Ns: l.p99, maxNs: l.max, samples: l.ticks };
  }
  out.failures = failures;
  return out;
}

const started = performance.now();
verify();
const single = await time('map+unmap x1', mapUnmapSingle, true);
const batch = await time(`map+unmap x${BATCH}`, mapUnmapBatch, true);
const copyGmfn = await time('copy gref->gmfn', copyGrefToGmfn, true);
const copyGref = await time('copy gref->gref', copyGrefToGref, true);
const baseline = await time('copyWithin', null, false);
if (!json && process.stderr.isTTY) process.stderr.write('\r\x1b[2K');

// After timing: nothing failed, nothing is left pinned or mapped, the bytes are right, invariants hold.
for (const [name, t] of [
  ['map+unmap x1', single],
  [`map+unmap x${BATCH}`, batch],
  ['copy gref->gmfn', copyGmfn],
  ['copy gref->gref', copyGref],
] as const) {
  check(t.failures === 0, `${name}: an rc or status was non-zero while timing (OR = ${t.failures})`);
}
check(pinsClear(), 'no grant pinned after timing');
check(b.xen.gt.maptrack.liveCount() === 0, 'maptrack empty after timing');
check(
  sameBytes(b.memory.read(B_COPY_DST, PAGE), a.memory.read(PAGE_COPY_SRC, PAGE)),
  'copied bytes after timing',
);
check(
  sameBytes(a.memory.read(PAGE_COPY_DST, PAGE), a.memory.read(PAGE_COPY_SRC, PAGE)),
  'gref copy bytes after timing',
);
const invariants = host.checkInvariants();
check(invariants.length === 0, `invariants after timing: ${invariants.join('; ')}`);
const elapsedS = (performance.now() - started) / 1000;

// ---- report ----------------------------------------------------------------------------------

const perSec = (ns: number, n = 1): number => (n * 1e9) / ns;
const mbps = (ns: number): number => COPY_LEN / 1e6 / (ns / 1e9);

const cpus = os.cpus();
const mitataVersion = (createRequire(import.meta.url)('mitata/package.json') as { version: string }).version;
const report = {
  machine: {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    mitata: mitataVersion,
    gc: gc !== false,
  },
  setup: {
    granter: { domid: a.domid, kind: a.kind, grantVersion: a.xen.gt.version },
    grantee: { domid: b.domid, kind: b.kind },
    batch: BATCH,
    copyBytes: COPY_LEN,
    units: 'ns per call; MB = 1e6 bytes',
  },
  mapUnmapSingle: {
    pairsPerSec: perSec(single.avgNs),
    avgNs: single.avgNs,
    latency: single.latency,
    calls: single.calls,
  },
  mapUnmapBatch32: {
    mapsPerSec: perSec(batch.avgNs, BATCH),
    batchesPerSec: perSec(batch.avgNs),
    avgNsPerBatch: batch.avgNs,
    avgNsPerMap: batch.avgNs / BATCH,
    latency: batch.latency,
    calls: batch.calls,
  },
  copyGrefToGmfn: {
    MBps: mbps(copyGmfn.avgNs),
    avgNs: copyGmfn.avgNs,
    latency: copyGmfn.latency,
    calls: copyGmfn.calls,
  },
  copyGrefToGref: {
    MBps: mbps(copyGref.avgNs),
    avgNs: copyGref.avgNs,
    latency: copyGref.latency,
    calls: copyGref.calls,
  },
  copyWithin4k: { MBps: mbps(baseline.avgNs), avgNs: baseline.avgNs, calls: baseline.calls },
  ratios: {
    copyGrefToGmfnVsCopyWithin: baseline.avgNs / copyGmfn.avgNs,
    copyGrefToGrefVsCopyWithin: baseline.avgNs / copyGref.avgNs,
    batchVsSinglePerMap: single.avgNs / (batch.avgNs / BATCH),
  },
  checks: {
    verifiedBeforeTiming: true,
    failedOpsWhileTiming: 0,
    invariantsAfter: invariants,
  },
  elapsedSeconds: elapsedS,
};

if (json) {
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
} else {
  const tty = process.stdout.isTTY === true && !process.env.NO_COLOR;
  const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);
  const dim = (s: string): string => (tty ? `\x1b[2m${s}\x1b[0m` : s);
  const ns = (v: number | undefined): string => {
    if (v === undefined) return '-';
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} ms`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(2)} µs`;
    return `${v.toFixed(0)} ns`;
  };
  const num = (v: number): string => {
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
    if (v >= 1e3) return `${(v / 1e3).toFixed(1)} k`;
    return v.toFixed(0);
  };
  const rows: string[][] = [
    ['benchmark', 'throughput', 'avg', 'p50', 'p99'],
    [
      'map+unmap, 1 grant per hypercall',
      `${num(report.mapUnmapSingle.pairsPerSec)} pairs/s`,
      ns(single.avgNs),
      ns(single.latency?.p50Ns),
      ns(single.latency?.p99Ns),
    ],
    [
      `map+unmap, ${BATCH} grants per hypercall`,
      `${num(report.mapUnmapBatch32.mapsPerSec)} maps/s`,
      ns(batch.avgNs),
      ns(batch.latency?.p50Ns),
      ns(batch.latency?.p99Ns),
    ],
    [
      'GNTTABOP_copy 4 KiB, gref -> gmfn',
      `${report.copyGrefToGmfn.MBps.toFixed(0)} MB/s`,
      ns(copyGmfn.avgNs),
      ns(copyGmfn.latency?.p50Ns),
      ns(copyGmfn.latency?.p99Ns),
    ],
    [
      'GNTTABOP_copy 4 KiB, gref -> gref',
      `${report.copyGrefToGref.MBps.toFixed(0)} MB/s`,
      ns(copyGref.avgNs),
      ns(copyGref.latency?.p50Ns),
      ns(copyGref.latency?.p99Ns),
    ],
    [
      'Uint8Array.copyWithin 4 KiB (same SAB)',
      `${report.copyWithin4k.MBps.toFixed(0)} MB/s`,
      ns(baseline.avgNs),
      '-',
      '-',
    ],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const rule = '-'.repeat(widths.reduce((s, w) => s + w, 0) + 2 * (widths.length - 1));
  const m = report.machine;
  const out = [
    bold('gnttab grant-table hot paths'),
    `cpu: ${m.cpu} (${m.cores} cores)   node: ${m.node} ${m.platform}   mitata ${m.mitata}`,
    `granter d${a.domid} ${a.kind} (v${a.xen.gt.version}, table mapped)   grantee d${b.domid} ${b.kind}`,
    '',
    bold(line(rows[0]!)),
    rule,
    ...rows.slice(1).map(line),
    rule,
    `avg: mitata batched mean per call (a map+unmap pair, a batch of ${BATCH} + ${BATCH}, one copy)`,
    'p50/p99: mitata with one call per sample; MB = 1e6 bytes',
    '',
    `per map, batched: ${ns(report.mapUnmapBatch32.avgNsPerMap)}  ` +
      `(${report.ratios.batchVsSinglePerMap.toFixed(2)}x the single-grant rate)`,
    `copy hypercall / copyWithin: gref->gmfn ${report.ratios.copyGrefToGmfnVsCopyWithin.toFixed(3)}, ` +
      `gref->gref ${report.ratios.copyGrefToGrefVsCopyWithin.toFixed(3)}  (1.0 = the physical limit)`,
    dim(
      `checks: verified before timing; 0 failed ops while timing; invariants after: none   ` +
        `(${elapsedS.toFixed(1)} s)`,
    ),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
