// The guest driver's grant and end of access, per second (single thread,
// mitata): gnttab_grant_foreign_access + gnttab_try_end_foreign_access, v1 and
// v2, beside the bare cost of the shared-word operations they are made of (one
// atomic store of the flags, one compare-exchange or store+fence+load).
//
//   npx tsx bench/driver.bench.ts [--json]
import os from 'node:os';
import { do_not_optimize, measure } from 'mitata';
import { Gnttab } from '../src/guest/gnttab/grant-table.ts';
import { Host } from '../src/index.ts';

const json = process.argv.includes('--json');

interface Row {
  name: string;
  opsPerSec: number;
  avgNs: number;
  p50Ns: number;
  p99Ns: number;
}

async function time(name: string, fn: () => unknown): Promise<Row> {
  const s = await measure(() => do_not_optimize(fn()), { min_cpu_time: 1e9 });
  return { name, opsPerSec: 1e9 / s.avg, avgNs: s.avg, p50Ns: s.p50, p99Ns: s.p99 };
}

const rows: Row[] = [];
for (const version of [1, 2] as const) {
  const host = new Host({ memoryMiB: 32 });
  const back = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const front = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const gt = new Gnttab(host.context(front.domid), { version });
  if (gt.init() !== 0 || gt.version !== version) throw new Error('driver init failed');
  const page = gt.pages.alloc();
  const gfn = gt.pages.gfnOf(page);
  let failures = 0;
  rows.push(
    await time(`v${version}: grant_foreign_access + try_end_foreign_access`, () => {
      const ref = gt.grantForeignAccess(back.domid, gfn, false);
      if (!gt.tryEndForeignAccess(ref)) failures++;
      return ref;
    }),
  );
  if (failures !== 0) throw new Error(`${failures} ends failed while timing`);
  const inv = host.checkInvariants();
  if (inv.length > 0) throw new Error(inv.join('\n'));
}
// The floor: the shared-word operations alone on one entry.
{
  const host = new Host({ memoryMiB: 16 });
  const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
  const mem = d.memory;
  rows.push(
    await time('floor: store16 + cmpxchg16 on one word', () => {
      mem.store16(0x1000, 1);
      return mem.cmpxchg16(0x1000, 1, 0);
    }),
  );
}

const machine = {
  cores: os.availableParallelism(),
  cpu: os.cpus()[0]?.model ?? 'unknown',
  node: process.version,
};
const floor = rows[rows.length - 1]!;
if (json) {
  process.stdout.write(
    `${JSON.stringify({ machine, rows, ratioToFloor: rows.map((r) => r.avgNs / floor.avgNs) }, null, 2)}\n`,
  );
} else {
  console.log(`gnttab driver benchmark — ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}\n`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(56)}${(r.opsPerSec / 1e6).toFixed(2).padStart(8)} M/s${r.avgNs.toFixed(0).padStart(8)} ns  p50 ${r.p50Ns.toFixed(0)} ns  p99 ${r.p99Ns.toFixed(0)} ns  (${(r.avgNs / floor.avgNs).toFixed(1)}x floor)`,
    );
  }
}
