// `gnttab xsa list` and `gnttab xsa run <N...|all>`: the advisory catalogue,
// and each scenario run on a fresh host with its setup, steps, expectation,
// checks, races and invariant check; --json for scripts.
import { Command, InvalidArgumentError, Option } from 'commander';
import { XSA_CATALOGUE, type XsaEntry, type XsaResult, xsaEntry } from '../toolkit/xsa/index.ts';
import { outputWidth, plural, wrap } from './format.ts';

function countArg(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('expected a whole number of at least 1');
  return n;
}

function kindOf(e: XsaEntry): string {
  return e.run === undefined ? 'n/a' : e.race === true ? 'race' : 'run';
}

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** The catalogue as a table of `width` columns; not-applicable entries get their reason below. */
export function formatList(entries: readonly XsaEntry[], width = 80): string {
  const lines = [`${'XSA'.padEnd(8)}${'year'.padEnd(5)}${'kind'.padEnd(5)}${'op'.padEnd(28)}title`];
  for (const e of entries) {
    const head = `${`XSA-${e.id}`.padEnd(8)}${String(e.year).padEnd(5)}${kindOf(e).padEnd(5)}${cut(e.op, 27).padEnd(28)}`;
    lines.push(head + cut(e.title, Math.max(10, width - head.length)));
    if (e.notApplicable !== undefined)
      lines.push(wrap(`      not applicable: ${e.notApplicable}`, width, '        '));
    if (e.threadsNeed !== undefined)
      lines.push(wrap(`      worker-thread race needs ${e.threadsNeed}`, width, '        '));
  }
  const runnable = entries.filter((e) => e.run !== undefined).length;
  const races = entries.filter((e) => e.race === true);
  const waiting = races.filter((e) => e.threadsNeed !== undefined).length;
  lines.push(
    '',
    `${entries.length} advisories: ${runnable} runnable, ${entries.length - runnable} not applicable`,
    `${races.length} races, each run as a fixed interleaving and on worker threads;`,
    `${waiting} of their worker runs cannot hit the window on this host yet`,
  );
  return `${lines.join('\n')}\n`;
}

/** One scenario's result as text of `width` columns. */
export function formatRun(r: XsaResult, width = 80): string {
  const out = [wrap(`XSA-${r.id}: ${r.title}`, width), 'setup:'];
  for (const s of r.setup) out.push(wrap(`  ${s}`, width, '    '));
  out.push('steps:');
  r.steps.forEach((s, i) => {
    out.push(
      wrap(`  ${String(i + 1).padStart(2)}. ${s.who} ${s.op}(${s.args}) -> ${s.status}`, width, '        '),
    );
  });
  out.push('expectation:');
  for (const e of r.expectation) out.push(wrap(`  - ${e}`, width, '    '));
  out.push('checks:');
  for (const c of r.checks) out.push(wrap(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.what}`, width, '       '));
  if (r.races.length > 0) {
    out.push('races:');
    for (const x of r.races)
      out.push(
        wrap(
          `  ${x.mode}: ${x.hits} of ${plural(x.target, 'hit')} in ${plural(x.attempts, 'attempt')}, ${plural(x.violations, 'violation')}; window: ${x.window}${x.needs !== undefined ? `; not reachable on this host: needs ${x.needs}` : ''}`,
          width,
          '    ',
        ),
      );
  }
  out.push(
    r.invariants.length === 0 ? 'invariants: all hold' : `invariants: ${r.invariants.length} violated`,
  );
  for (const v of r.invariants.slice(0, 10)) out.push(wrap(`  ${v}`, width, '    '));
  out.push(`result: ${r.outcome === 'safe' ? 'safe' : 'UNSAFE'}`);
  return `${out.join('\n')}\n`;
}

export function xsaCommand(): Command {
  // Usage errors reach main as CommanderError (exit 2), as for the other commands.
  const xsa = new Command('xsa')
    .description(
      'every grant-table and event-channel advisory of the reference: list them, or run their scenarios on a fresh host',
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  xsa
    .command('list')
    .exitOverride()
    .description('list the advisories: number, year, op attacked, runnable or why not')
    .option('--json', 'print a JSON array instead of the table')
    .action((opts: { json?: boolean }) => {
      if (opts.json === true) {
        const rows = XSA_CATALOGUE.map((e) => ({
          id: e.id,
          year: e.year,
          title: e.title,
          op: e.op,
          side: e.side,
          runnable: e.run !== undefined,
          race: e.race === true,
          ...(e.notApplicable !== undefined ? { notApplicable: e.notApplicable } : {}),
          ...(e.threadsNeed !== undefined ? { threadsNeed: e.threadsNeed } : {}),
        }));
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      } else process.stdout.write(formatList(XSA_CATALOGUE, outputWidth()));
    });
  xsa
    .command('run')
    .exitOverride()
    .description('run advisory scenarios (numbers, or all); exits 1 if any is unsafe')
    .argument('<ids...>', 'advisory numbers (18, XSA-218) or "all"')
    .addOption(
      new Option('--hits <n>', 'thread races: hits of the window wanted').default(20).argParser(countArg),
    )
    .option('--no-threads', 'run races as the fixed interleaving only, not on worker threads')
    .option('--json', 'print a JSON array of results instead of text')
    .addHelpText('after', '\nExamples:\n  gnttab xsa run 18 218\n  gnttab xsa run all --json')
    .action(async (ids: string[], opts: { hits: number; threads: boolean; json?: boolean }, cmd: Command) => {
      let entries: XsaEntry[];
      if (ids.length === 1 && ids[0] === 'all') entries = XSA_CATALOGUE.filter((e) => e.run !== undefined);
      else {
        entries = [];
        for (const raw of ids) {
          const id = Number(raw.replace(/^xsa-?/i, ''));
          const e = Number.isInteger(id) ? xsaEntry(id) : undefined;
          if (e === undefined)
            cmd.error(`gnttab: no advisory ${raw} in the catalogue; see \`gnttab xsa list\``, {
              exitCode: 2,
            });
          else if (e.run === undefined)
            cmd.error(`gnttab: XSA-${e.id} is not applicable: ${e.notApplicable}`, { exitCode: 2 });
          else entries.push(e);
        }
      }
      const width = outputWidth();
      const progress = entries.length > 1 && (opts.json === true || process.stdout.isTTY !== true);
      const results: XsaResult[] = [];
      for (const [i, e] of entries.entries()) {
        if (progress) process.stderr.write(`[${i + 1}/${entries.length}] XSA-${e.id} ...`);
        const r = await e.run!({ hits: opts.hits, threads: opts.threads });
        if (progress) process.stderr.write(` ${r.outcome}\n`);
        results.push(r);
        if (opts.json !== true) process.stdout.write(`${i > 0 ? '\n' : ''}${formatRun(r, width)}`);
      }
      if (opts.json === true) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      const unsafe = results.filter((r) => r.outcome !== 'safe');
      if (opts.json !== true && results.length > 1)
        process.stdout.write(
          `\n${results.length} scenarios: ${results.length - unsafe.length} safe${unsafe.length > 0 ? `, unsafe: ${unsafe.map((r) => `XSA-${r.id}`).join(', ')}` : ''}\n`,
        );
      if (unsafe.length > 0) process.exitCode = 1;
    });
  return xsa;
}
