// `gnttab attack <victim>`: the malicious peer against a victim module (or a
// built-in: ring, vchan), each domain in a worker thread; prints what the
// victim did wrong (nothing, ideally) and the attacker's moves; --json for
// scripts. Exit 1 on any finding.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type AttackReport, attack, builtInVictim, formatEntry } from '../toolkit/attack/index.ts';
import { outputWidth, plural, wrap } from './format.ts';

function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** "10s", "500ms", "2m", "10" (seconds) -> milliseconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
  if (m === null) return Number.NaN;
  const unit = m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000;
  return Math.round(Number(m[1]) * unit);
}

function durationArg(v: string): number {
  const ms = parseDuration(v);
  if (!(Number.isSafeInteger(ms) && ms >= 100 && ms <= 3_600_000))
    throw new InvalidArgumentError('a duration from 100ms to 60m, like 10s, 500ms or 2m');
  return ms;
}

function victimArg(v: string): string {
  if (builtInVictim(v) !== null) return v;
  if (!existsSync(resolve(v)))
    throw new InvalidArgumentError(
      `no such module: ${v} (give the path of your frontend or backend module, or "ring" or "vchan")`,
    );
  return pathToFileURL(resolve(v)).href;
}

export function attackCommand(): Command {
  return new Command('attack')
    .description(
      'run a malicious peer against your frontend or backend module, each domain in a worker thread, and report whether it threw, hung, exposed memory or leaked grants, mappings, ports or xenstore keys',
    )
    .argument(
      '<victim>',
      'a module whose default export is a guest program (ctx, args) => result (see the README), or "ring" / "vchan" (gnttab\'s own drivers)',
      victimArg,
    )
    .addOption(
      new Option('--as <side>', 'the side the attacker plays (your module plays the other)')
        .choices(['frontend', 'backend'])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--protocol <p>', "what the two speak (default: the built-in's, else ring)").choices([
        'ring',
        'vchan',
      ]),
    )
    .addOption(new Option('--seed <s>', "seed of the attacker's choices").default(1).argParser(intArg))
    .addOption(
      new Option('--time <duration>', 'how long the attack may run (the attacker dies within it)')
        .default(10_000, '10s')
        .argParser(durationArg),
    )
    .addOption(
      new Option(
        '--moves <n>',
        'the attacker dies at a move its seed picks in the second half of n',
      ).argParser(intArg),
    )
    .addOption(
      new Option('--grace <duration>', 'how long your module has to clean up and return after "closed"')
        .default(5000, '5s')
        .argParser(durationArg),
    )
    .addOption(
      new Option('--victim-kind <kind>', "kind of your module's domain")
        .choices(['pv', 'hvm'])
        .default('hvm'),
    )
    .addOption(
      new Option('--layout <n>', 'grant-table layout your module is asked to use (args.gnttabVersion)')
        .choices(['1', '2'])
        .default('1'),
    )
    .option('--log', 'print every move of the attacker, not only the last ones')
    .option('--json', 'print one JSON object instead of text (no progress)')
    .addHelpText(
      'after',
      [
        '',
        'Your module runs as a guest in its own domain: export default async (ctx, args)',
        '=> ..., with args = { role, protocol, peer, path, gnttabVersion }. It connects',
        'through xenstore under args.path (ring-ref and event-channel, written by the',
        'frontend) and returns once the toolstack writes "closed" to <path>/state,',
        'having released everything it held.',
        '',
        'Examples:',
        '  gnttab attack ring --as frontend',
        '  gnttab attack examples/attack/leaky-backend.ts --as frontend --moves 100',
        '  gnttab attack ./my-frontend.ts --as backend --protocol vchan --seed 7 --json',
      ].join('\n'),
    )
    .action(
      async (
        victim: string,
        opts: {
          as: 'frontend' | 'backend';
          protocol?: 'ring' | 'vchan';
          seed: number;
          time: number;
          moves?: number;
          grace: number;
          victimKind: 'pv' | 'hvm';
          layout: '1' | '2';
          log?: boolean;
          json?: boolean;
        },
      ) => {
        const tty = process.stderr.isTTY === true && opts.json !== true;
        const r = await attack({
          victim,
          as: opts.as,
          seed: opts.seed,
          timeMs: opts.time,
          graceMs: opts.grace,
          victimKind: opts.victimKind,
          gnttabVersion: opts.layout === '2' ? 2 : 1,
          ...(opts.protocol !== undefined ? { protocol: opts.protocol } : {}),
          ...(opts.moves !== undefined ? { moves: opts.moves } : {}),
          onProgress: (p) => {
            if (tty)
              process.stderr.write(
                `\r${plural(p.moves, 'move')} of the attacker, ${Math.round(p.elapsedMs / 1000)} s`,
              );
          },
        });
        if (tty) process.stderr.write('\r\x1b[K');
        if (opts.json === true) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        else process.stdout.write(formatReport(r, opts.log === true, outputWidth()));
        if (!r.ok || r.attacker.end === 'crashed') process.exitCode = 1;
      },
    );
}

/** Text of a report, `width` columns. */
export function formatReport(r: AttackReport, allMoves: boolean, width: number): string {
  const a = r.attacker;
  const v = r.victimOutcome;
  const victimSide = r.as === 'frontend' ? 'backend' : 'frontend';
  const name = r.victim.startsWith('file:') ? new URL(r.victim).pathname.split('/').pop() : r.victim;
  const lines = [
    wrap(
      `gnttab attack: d${a.domid} (${a.kind}, grant table v${a.gnttabVersion}) as the ${r.as} of ${name}, the ${victimSide} in d${v.domid} (${v.kind}), over ${r.protocol}, seed ${r.seed}`,
      width,
    ),
    '',
  ];
  const death =
    a.end === 'died'
      ? `died at move ${a.moves}, as its seed says`
      : a.end === 'killed'
        ? `killed at the end of its time, after move ${a.moves}`
        : `crashed after move ${a.moves} (a bug of the attacker, not of your module)`;
  lines.push(wrap(`attacker: ${death}`, width));
  if (a.error !== undefined) lines.push(wrap(`  ${a.error.split('\n')[0]}`, width, '    '));
  const result = v.status === 'returned' ? `returned ${JSON.stringify(v.result) ?? 'undefined'}` : v.status;
  lines.push(`victim: ${result.length > width - 8 ? `${result.slice(0, width - 9)}…` : result}`);
  lines.push('', allMoves ? 'moves:' : 'last moves:');
  const shown = allMoves ? r.log : r.log.slice(-8);
  for (const e of shown) lines.push(formatEntry(e).slice(0, width));
  lines.push('');
  if (r.findings.length === 0) {
    lines.push(
      wrap(
        'no finding: the victim stayed alive, exposed nothing, and released every grant, mapping, port and xenstore key',
        width,
      ),
    );
  } else {
    lines.push(`FOUND ${plural(r.findings.length, 'problem')}:`);
    for (const f of r.findings) lines.push(wrap(`  ${f.kind}: ${f.message.split('\n')[0]}`, width, '    '));
    const o = r.options;
    const again = [
      `gnttab attack ${r.victim.startsWith('file:') ? new URL(r.victim).pathname : r.victim} --as ${r.as}`,
      `--protocol ${r.protocol} --seed ${r.seed}`,
      o.moves !== null ? `--moves ${o.moves}` : `--time ${o.timeMs}ms`,
      `--victim-kind ${o.victimKind} --layout ${o.gnttabVersion}`,
    ].join(' ');
    lines.push(
      '',
      o.moves !== null
        ? 'the same moves again:'
        : 'the same moves again (the moment of death follows --time):',
      wrap(`  ${again}`, width, '    '),
    );
  }
  return `${lines.join('\n')}\n`;
}
