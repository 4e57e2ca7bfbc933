// bench/smp.bench.ts, run as a user runs it (a subprocess, tiny rounds): it
// prints all six figures of issue 8's table, each with its baseline measured
// in the same run, per-round samples and their medians, the ratio and the
// machine's core count. Only the report's shape and arithmetic are checked,
// never a figure's value (the targets are the bench's business).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { describe, it } from 'node:test';
import { root } from '../helpers/cli.ts';

const ROUNDS = 2;

function bench(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'bench/smp.bench.ts', '--rounds', String(ROUNDS), '--round-ms', '5', ...args],
    { cwd: root, encoding: 'utf8', timeout: 300_000 },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

interface Figure {
  no: number;
  name: string;
  unit: string;
  value: number;
  baselineName: string;
  baseline: number;
  ratio: number;
  ratioOf: string;
  target: string;
  met: boolean;
  rounds: { value: number[]; baseline: number[] };
}

describe('bench/smp.bench.ts', () => {
  it("reports issue 8's six figures, each beside a baseline of the same run, with medians, ratio and cores", () => {
    const r = bench(['--live', '40', '--json']);
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out) as { machine: { cores: number }; rounds: number; figures: Figure[] };
    assert.equal(report.machine.cores, os.availableParallelism());
    assert.equal(report.rounds, ROUNDS);
    assert.deepEqual(
      report.figures.map((f) => f.no),
      [1, 2, 3, 4, 5, 6],
    );
    for (const f of report.figures) {
      const what = `figure ${f.no} (${f.name})`;
      // Every round measured the figure and its baseline; the reported numbers are their medians.
      assert.equal(f.rounds.value.length, ROUNDS, what);
      assert.equal(f.rounds.baseline.length, ROUNDS, what);
      for (const x of [...f.rounds.value, ...f.rounds.baseline])
        assert.ok(Number.isFinite(x) && x > 0, `${what}: sample ${x}`);
      assert.equal(f.value, median(f.rounds.value), what);
      assert.equal(f.baseline, median(f.rounds.baseline), what);
      assert.ok(f.baselineName.length > 0, what);
      // Figure 4 is a speed ratio (copyWithin time over copy time); the others divide the figure by its baseline.
      const ratio = f.no === 4 ? f.baseline / f.value : f.value / f.baseline;
      assert.ok(
        Math.abs(f.ratio - ratio) <= 1e-9 * ratio,
        `${what}: ratio ${f.ratio}, medians give ${ratio}`,
      );
      const m = /^(<=|>=) ([0-9.]+)$/.exec(f.target);
      assert.ok(m !== null, `${what}: target ${f.target}`);
      const bound = Number(m[2]);
      assert.equal(f.met, m[1] === '<=' ? f.ratio <= bound : f.ratio >= bound, what);
    }
  });

  it('prints the core count, each figure with its baseline and the ratio against the target', () => {
    const r = bench(['--only', '4']);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      new RegExp(`^gnttab SMP benchmark \\(issue 8\\): ${os.availableParallelism()} cores`),
    );
    assert.match(r.out, new RegExp(`medians of ${ROUNDS} rounds`));
    assert.match(r.out, /^4\. GNTTABOP_copy 4 KiB, one element$/m);
    assert.match(r.out, /vs copyWithin of 4 KiB, same SAB/);
    assert.match(r.out, /ratio [0-9.]+ \(copyWithin time \/ copy time\), target >= 0\.75: (met|not met)/);
  });
});
