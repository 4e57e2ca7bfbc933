// The `gnttab` command: thin; it parses arguments and calls the library.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DecodeError, decodeGrantFrames } from '../host/decode.ts';
import { Host } from '../host/host.ts';
import { snapshotTables } from '../host/snapshot.ts';
import { type DemoOptions, runDemo } from './demo.ts';
import { formatDecoded, formatTable, formatXenDebugKey } from './format.ts';

function layoutArg(v: string): 1 | 2 {
  if (v === '1' || v === '2') return Number(v) as 1 | 2;
  throw new InvalidArgumentError('the layout is 1 or 2');
}

export function buildProgram(): Command {
  const program = new Command('gnttab')
    .description(
      "Xen's grant tables in TypeScript: a hypervisor with layouts v1 and v2 behind Xen's hypercall ABI",
    )
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('demo')
    .description(
      'two domains grant, map and copy pages through the raw hypercall ABI; shows both grant tables',
    )
    .addOption(
      new Option('--layout <n>', 'grant-table layout of the frontend (1 or 2)')
        .default(1)
        .argParser(layoutArg),
    )
    .addOption(
      new Option('--frontend <kind>', 'kind of the granting domain').choices(['pv', 'hvm']).default('pv'),
    )
    .addOption(
      new Option('--backend <kind>', 'kind of the mapping domain').choices(['pv', 'hvm']).default('pv'),
    )
    .option('--json', 'print one JSON object instead of text')
    .addHelpText('after', '\nExample:\n  gnttab demo --layout 2 --frontend hvm')
    .action((opts: { layout: 1 | 2; frontend: 'pv' | 'hvm'; backend: 'pv' | 'hvm'; json?: boolean }) => {
      const o: DemoOptions = { layout: opts.layout, frontend: opts.frontend, backend: opts.backend };
      const report = runDemo(o);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        process.stdout.write(
          `gnttab demo: layout v${o.layout}, frontend ${o.frontend}, backend ${o.backend}\n\n`,
        );
        report.steps.forEach((s, i) => {
          process.stdout.write(
            `${String(i + 1).padStart(2)}. ${s.who.padEnd(4)} ${s.what}\n      -> ${s.result}\n`,
          );
        });
        process.stdout.write('\nGrant tables while the backend holds its mapping:\n\n');
        for (const t of report.tables) process.stdout.write(`${formatTable(t)}\n\n`);
        for (const v of report.invariants) process.stdout.write(`invariant violated: ${v}\n`);
      }
      if (!report.ok) process.exitCode = 1;
    });
  program
    .command('dump')
    .description(
      "run a scenario module on a fresh host, then show every grant table as Xen's debug key 'g' does",
    )
    .argument(
      '<scenario>',
      'a module whose default export is a function (host: Host) => void | Promise<void>',
    )
    .option('--json', 'print the tables as JSON')
    .option('--all', 'include unused entries in the readable table')
    .addOption(new Option('--memory <MiB>', 'machine memory of the host').default(64).argParser(positiveInt))
    .addHelpText(
      'after',
      '\nExample:\n  gnttab dump examples/scenario.ts\n  gnttab dump ./my-scenario.js --json',
    )
    .action(async (scenario: string, opts: { json?: boolean; all?: boolean; memory: number }) => {
      const url = pathToFileURL(resolve(scenario)).href;
      let mod: { default?: unknown };
      try {
        mod = (await import(url)) as { default?: unknown };
      } catch (err) {
        throw new Error(
          `cannot load the scenario ${scenario}: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      if (typeof mod.default !== 'function') {
        throw new Error(
          `${scenario} must export a default function taking a Host, e.g. export default (host) => { ... }`,
        );
      }
      const host = new Host({ memoryMiB: opts.memory });
      await (mod.default as (h: Host) => unknown)(host);
      const tables = snapshotTables(host.hypervisor, opts.all === true);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ tables, invariants: host.checkInvariants() }, null, 2)}\n`);
        return;
      }
      process.stdout.write("(XEN) gnttab_usage_print_all [ key 'g' pressed\n");
      for (const t of tables)
        for (const line of formatXenDebugKey(t).split('\n')) process.stdout.write(`(XEN) ${line}\n`);
      process.stdout.write('(XEN) gnttab_usage_print_all ] done\n\n');
      for (const t of tables) process.stdout.write(`${formatTable(t)}\n\n`);
      const inv = host.checkInvariants();
      process.stdout.write(
        inv.length === 0 ? 'invariants: all hold\n' : `invariants violated:\n  ${inv.join('\n  ')}\n`,
      );
      if (inv.length > 0) process.exitCode = 1;
    });

  program
    .command('decode')
    .description(
      'decode a binary dump of grant frames (v1, or v2 with an optional status dump) and list the valid entries',
    )
    .argument('[file]', "the dump of grant frames; '-' or nothing reads standard input", '-')
    .addOption(
      new Option('--layout <n>', 'grant-table layout of the dump (1 or 2)').default(1).argParser(layoutArg),
    )
    .option('--status <file>', 'v2: a dump of the status frames')
    .option('--json', 'print the entries as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  gnttab decode frames.bin\n  gnttab decode --layout 2 --status status.bin frames.bin\n  cat frames.bin | gnttab decode --json',
    )
    .action((file: string, opts: { layout: 1 | 2; status?: string; json?: boolean }) => {
      const bytes = readInput(file);
      const status = opts.status !== undefined ? readInput(opts.status) : undefined;
      const entries = decodeGrantFrames(bytes, { layout: opts.layout, ...(status ? { status } : {}) });
      if (opts.json) process.stdout.write(`${JSON.stringify({ layout: opts.layout, entries }, null, 2)}\n`);
      else process.stdout.write(`${formatDecoded(entries, opts.layout)}\n`);
    });
  return program;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive whole number');
  return n;
}

function readInput(file: string): Uint8Array {
  try {
    return file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      e.code === 'ENOENT'
        ? `no such file: ${file}`
        : `cannot read ${file === '-' ? 'standard input' : file}: ${e.message}`,
    );
  }
}

export async function main(argv: string[]): Promise<void> {
  // A reader that goes away (`gnttab demo | head`) is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const msg =
      err instanceof DecodeError
        ? `bad grant-frame dump: ${err.message}`
        : err instanceof Error
          ? err.message
          : String(err);
    process.stderr.write(`gnttab: ${msg}\n`);
    process.exitCode = 1;
  }
}

// Run when executed directly (tsx src/cli/main.ts, node dist/cli/main.js, or the bin shim).
const invoked = process.argv[1] ?? '';
if (/[/\\]cli[/\\]main\.(ts|js)$/.test(invoked)) await main(process.argv);
