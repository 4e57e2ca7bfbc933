// The `gnttab` command: thin; it parses arguments and calls the library.
import { Command, InvalidArgumentError, Option } from 'commander';
import { type DemoOptions, runDemo } from './demo.ts';
import { formatTable } from './format.ts';

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
  return program;
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
    process.stderr.write(`gnttab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}

// Run when executed directly (tsx src/cli/main.ts, node dist/cli/main.js, or the bin shim).
const invoked = process.argv[1] ?? '';
if (/[/\\]cli[/\\]main\.(ts|js)$/.test(invoked)) await main(process.argv);
