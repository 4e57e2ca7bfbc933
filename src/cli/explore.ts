// `gnttab explore <scenario>`: runs the schedule explorer on a scenario module
// (or a built-in: revoke) and prints the first failing schedule, its replay
// token and its trace; --json for scripts.
import { Command, InvalidArgumentError, Option } from 'commander';
import { type ExploreResult, explore, type StrategyName } from '../toolkit/explore/index.ts';
import { plural } from './format.ts';

function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
}

const BUILT_IN: Record<string, string> = {
  revoke: new URL('../toolkit/explore/scenarios/revoke.ts', import.meta.url).href.replace(
    /\.ts$/,
    import.meta.url.endsWith('.js') ? '.js' : '.ts',
  ),
};

export function exploreCommand(): Command {
  return new Command('explore')
    .description(
      'interleave the guests of a scenario module at every shared-word step (PCT or DFS) and report the first schedule where its check, a guest or the invariants fail',
    )
    .argument('<scenario>', 'a scenario module (its default export: { domains, guests, check }), or "revoke"')
    .addOption(new Option('--schedules <n>', 'schedules to run at most').default(1000).argParser(intArg))
    .addOption(new Option('--seed <s>', 'seed of the PCT strategy').default(1).argParser(intArg))
    .addOption(new Option('--strategy <name>', 'pct or dfs').choices(['pct', 'dfs']).default('pct'))
    .addOption(new Option('--depth <d>', 'PCT bug depth, or DFS preemption bound').argParser(intArg))
    .option('--replay <token>', 'run exactly the schedule of a replay token')
    .addOption(
      new Option('--layout <n>', 'grant-table layout of the built-in revoke scenario')
        .choices(['1', '2'])
        .default('1'),
    )
    .option('--json', 'print one JSON object instead of text (no progress)')
    .addHelpText(
      'after',
      '\nExamples:\n  gnttab explore examples/racy-revoke/scenario.ts\n  gnttab explore revoke --layout 2 --schedules 10000\n  gnttab explore examples/racy-revoke/scenario.ts --replay x1.2.16.AQgABA',
    )
    .action(
      async (
        scenario: string,
        opts: {
          schedules: number;
          seed: number;
          strategy: StrategyName;
          depth?: number;
          replay?: string;
          layout: string;
          json?: boolean;
        },
      ) => {
        const tty = process.stderr.isTTY === true && opts.json !== true;
        const r = await explore({
          scenario: BUILT_IN[scenario] ?? scenario,
          params: { version: opts.layout === '2' ? 2 : 1 },
          schedules: opts.schedules,
          seed: opts.seed,
          strategy: opts.strategy,
          ...(opts.depth !== undefined ? { depth: opts.depth } : {}),
          ...(opts.replay !== undefined ? { replay: opts.replay } : {}),
          onProgress: (p) => {
            if (tty)
              process.stderr.write(`\r${p.schedules}/${p.of} schedules, ${Math.round(p.elapsedMs / 1000)} s`);
          },
        });
        if (tty) process.stderr.write('\r\x1b[K');
        if (opts.json === true) process.stdout.write(`${JSON.stringify(jsonOf(r), null, 2)}\n`);
        else process.stdout.write(formatResult(r));
        if (r.failure !== null) process.exitCode = 1;
      },
    );
}

function jsonOf(r: ExploreResult): unknown {
  if (r.failure === null) return r;
  const outcomes = Object.fromEntries(
    Object.entries(r.failure.outcomes).map(([k, o]) => [
      k,
      { domid: o.domid, ok: o.ok, result: o.result, error: o.error?.message },
    ]),
  );
  return { ...r, failure: { ...r.failure, outcomes } };
}

/** Text of a result, 80 columns. */
export function formatResult(r: ExploreResult): string {
  const rate = r.elapsedMs > 0 ? Math.round((r.schedules * 1000) / r.elapsedMs) : 0;
  const lines = [
    `${r.scenario}: ${plural(r.schedules, 'schedule')} by ${r.strategy}` +
      (r.strategy === 'replay' ? '' : ` (seed ${r.seed}, depth ${r.depth})`) +
      `, ${rate}/s, longest ${plural(r.longestSchedule, 'step')}`,
  ];
  if (r.complete) lines.push('every schedule within the bound was run');
  const f = r.failure;
  if (f === null) {
    lines.push('no failure found');
  } else {
    lines.push(`FAILED (${f.kind}) in schedule ${f.schedule}, ${plural(f.steps, 'step')}:`);
    for (const m of f.message.split('\n'))
      for (let i = 0; i < m.length; i += 76) lines.push(`  ${m.slice(i, i + 76)}`);
    lines.push(`replay: --replay ${f.token}`, 'trace:');
    for (const t of f.trace) lines.push(`  ${String(t.step).padStart(4)}  ${t.text}`.slice(0, 80));
  }
  if (r.reproduced === false)
    lines.push('note: the replay took a different number of steps than the token says');
  return `${lines.join('\n')}\n`;
}
