// The `gnttab` command: thin; it parses arguments and calls the library.

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DecodeError, decodeGrantFrames } from '../host/decode.ts';
import { Host } from '../host/host.ts';
import { hostState, stateJson } from '../host/host-state.ts';
import { snapshotTables } from '../host/snapshot.ts';
import { importUserModule } from '../host/user-module.ts';
import { memoryArg, secondsArg } from './args.ts';
import { attackCommand } from './attack.ts';
import { type DemoProgress, runDemo, validRingSize } from './demo.ts';
import { exploreCommand } from './explore.ts';
import {
  article,
  formatDecoded,
  formatTable,
  formatXenDebugKey,
  outputWidth,
  sizeText,
  wrap,
} from './format.ts';
import { consoleLine, type RunReport, runPair } from './run.ts';
import { paceArg, portArg, SERVE_DEMO_SIZE, serveCommand, serveDemo } from './serve.ts';
import { runTour, type TourOptions } from './tour.ts';
import { formatUnreadable, formatXenDmesgReport, readXenDmesg } from './xen-dmesg.ts';
import { xsaCommand } from './xsa.ts';

function layoutArg(v: string): 1 | 2 {
  if (v === '1' || v === '2') return Number(v) as 1 | 2;
  throw new InvalidArgumentError('the layout is 1 or 2');
}

/** The package's version, from its package.json (beside src/ or dist/). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

const SHORT_TERMS: Record<string, string> = {
  run: 'run [options] <frontend> <backend>',
  serve: 'serve [options] [scenario | pair]',
};

export function buildProgram(): Command {
  const program = new Command('gnttab')
    .description(
      "Xen's grant tables in TypeScript: a hypervisor with layouts v1 and v2 behind Xen's hypercall ABI",
    )
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .option('--verbose', 'on a failure, print the stack (of a scenario or guest too)')
    .showHelpAfterError('(run with --help for usage)')
    // run's and serve's terms short of their [args...], so the command list still wraps at
    // 80 columns (commander stops wrapping when fewer than 40 columns are left for descriptions).
    .configureHelp({
      subcommandTerm: (c) => SHORT_TERMS[c.name()] ?? `${c.name()} ${c.usage()}`.trimEnd(),
    })
    // Usage errors exit 2 (see main), failures 1; subcommands inherit this.
    .exitOverride();

  program
    .command('demo')
    .description(
      'a frontend and a backend domain, each in its own thread, stream data over vchan through grants, event channels and xenstore; the backend checks every byte',
    )
    .addOption(
      new Option('--size <bytes>', 'how much to stream (suffixes k, M, G)')
        .default(64 * 1024 * 1024, '64M')
        .argParser(sizeArg),
    )
    .addOption(
      new Option('--layout <n>', "grant-table layout of the frontend's table (1 or 2)")
        .default(1)
        .argParser(layoutArg),
    )
    .addOption(
      new Option('--ring-size <bytes>', 'the vchan ring the frontend writes into (1k to 1M, a power of two)')
        .default(262144, '256k')
        .argParser(ringArg),
    )
    .addOption(
      new Option('--frontend <kind>', 'kind of the frontend domain').choices(['pv', 'hvm']).default('hvm'),
    )
    .addOption(
      new Option('--backend <kind>', 'kind of the backend domain').choices(['pv', 'hvm']).default('pv'),
    )
    .option('--json', 'print one JSON object instead of text (no progress)')
    .option('--serve', 'run it paced and show it live in the browser (see gnttab serve; 4M unless --size)')
    .addOption(
      new Option('--pace <ms>', 'with --serve: the pause at each step, so every state can be seen')
        .default(1500)
        .argParser(paceArg),
    )
    .addOption(
      new Option('--port <n>', 'with --serve: TCP port (0 picks a free one)')
        .default(8080)
        .argParser(portArg),
    )
    .addOption(new Option('--host <address>', 'with --serve: address to listen on').default('127.0.0.1'))
    .addHelpText(
      'after',
      '\nExamples:\n  gnttab demo\n  gnttab demo --size 8M --layout 2 --ring-size 1M\n  gnttab demo --size 1M --json\n  gnttab demo --serve --port 9000',
    )
    .action(
      async (
        opts: {
          size: number;
          layout: 1 | 2;
          ringSize: number;
          frontend: 'pv' | 'hvm';
          backend: 'pv' | 'hvm';
          json?: boolean;
          serve?: boolean;
          pace: number;
          port: number;
          host: string;
        },
        cmd: Command,
      ) => {
        const o = {
          size: opts.size,
          layout: opts.layout,
          ringSize: opts.ringSize,
          frontend: opts.frontend,
          backend: opts.backend,
        };
        if (opts.serve === true) {
          if (cmd.getOptionValueSource('size') === 'default') o.size = SERVE_DEMO_SIZE;
          await serveDemo({ ...o, paceMs: opts.pace }, { port: opts.port, host: opts.host });
          return;
        }
        const tty = process.stdout.isTTY === true && opts.json !== true;
        const width = outputWidth();
        let nextMark = 0.25;
        const show = (p: DemoProgress) => {
          const frac = p.size > 0 ? p.received / p.size : 1;
          const rate = p.elapsedMs > 0 ? p.received / 1e6 / (p.elapsedMs / 1000) : 0;
          if (tty) {
            const w = 30;
            const full = Math.round(frac * w);
            process.stdout.write(
              `\r  [${'#'.repeat(full)}${' '.repeat(w - full)}] ${sizeText(p.received)} / ${sizeText(p.size)}  ${rate.toFixed(0)} MB/s `,
            );
          } else if (opts.json !== true && frac >= nextMark) {
            process.stdout.write(
              `  ${Math.round(frac * 100)}%: ${sizeText(p.received)} of ${sizeText(p.size)} checked, ${rate.toFixed(0)} MB/s\n`,
            );
            while (frac >= nextMark) nextMark += 0.25;
          }
        };
        if (opts.json !== true) {
          const banner = `gnttab demo: ${sizeText(o.size)} from ${article(o.frontend)} frontend (grant table v${o.layout}) to ${article(o.backend)} backend over vchan, ${o.ringSize / 1024} KiB ring`;
          process.stdout.write(`${wrap(banner, width)}\n\n`);
        }
        const r = await runDemo(o, show);
        if (tty) process.stdout.write('\n');
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        } else {
          const checked = `d${r.backendDomid} (backend) checked ${r.bytesReceived} bytes: ${r.mismatches === 0 ? 'every byte as sent' : `${r.mismatches} wrong, the first at offset ${r.firstMismatch}`}`;
          process.stdout.write(`\n${wrap(checked, width)}\n`);
          process.stdout.write(
            `throughput: ${r.throughputMBps.toFixed(1)} MB/s (${(r.elapsedMs / 1000).toFixed(2)} s)\n\n`,
          );
          process.stdout.write('Grant tables while the channel was up:\n\n');
          for (const t of r.tables) process.stdout.write(`${formatTable(t, width)}\n\n`);
          process.stdout.write(
            r.leftovers.length === 0 && r.invariants.length === 0
              ? `${wrap('after close: no grant, mapping, port or xenstore key left; all invariants hold', width)}\n`
              : `after close:\n${[...r.leftovers, ...r.invariants].map((l) => wrap(`  ${l}`, width, '    ')).join('\n')}\n`,
          );
        }
        if (!r.ok) process.exitCode = 1;
      },
    );

  program
    .command('tour')
    .description(
      'the raw ABI step by step: two domains grant, map and copy pages with hypercalls; shows both grant tables',
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
    .addHelpText('after', '\nExample:\n  gnttab tour --layout 2 --frontend hvm')
    .action((opts: { layout: 1 | 2; frontend: 'pv' | 'hvm'; backend: 'pv' | 'hvm'; json?: boolean }) => {
      const o: TourOptions = { layout: opts.layout, frontend: opts.frontend, backend: opts.backend };
      const report = runTour(o);
      const width = outputWidth();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        process.stdout.write(
          `gnttab tour: layout v${o.layout}, frontend ${o.frontend}, backend ${o.backend}\n\n`,
        );
        report.steps.forEach((s, i) => {
          const what = wrap(`${String(i + 1).padStart(2)}. ${s.who.padEnd(4)} ${s.what}`, width, '         ');
          process.stdout.write(`${what}\n${wrap(`      -> ${s.result}`, width, '         ')}\n`);
        });
        process.stdout.write('\nGrant tables while the backend holds its mapping:\n\n');
        for (const t of report.tables) process.stdout.write(`${formatTable(t, width)}\n\n`);
        for (const v of report.invariants)
          process.stdout.write(`${wrap(`invariant violated: ${v}`, width)}\n`);
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
    .addOption(
      new Option('--memory <MiB>', 'machine memory of the host (1 to 4096)').default(64).argParser(memoryArg),
    )
    .addHelpText(
      'after',
      '\nExample:\n  gnttab dump examples/scenario.ts\n  gnttab dump ./my-scenario.js --json',
    )
    .action(async (scenario: string, opts: { json?: boolean; all?: boolean; memory: number }) => {
      const url = pathToFileURL(resolve(scenario)).href;
      let mod: { default?: unknown };
      try {
        mod = await importUserModule(url);
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
      if (opts.json) {
        // The same value `gnttab serve` answers on /api/state.
        process.stdout.write(`${stateJson(hostState(host.hypervisor, host.xenstored, opts.all === true))}\n`);
        return;
      }
      const tables = snapshotTables(host.hypervisor, opts.all === true);
      process.stdout.write("(XEN) gnttab_usage_print_all [ key 'g' pressed\n");
      for (const t of tables)
        for (const line of formatXenDebugKey(t).split('\n')) process.stdout.write(`(XEN) ${line}\n`);
      process.stdout.write('(XEN) gnttab_usage_print_all ] done\n\n');
      const width = outputWidth();
      for (const t of tables) process.stdout.write(`${formatTable(t, width)}\n\n`);
      const inv = host.checkInvariants();
      process.stdout.write(
        inv.length === 0
          ? 'invariants: all hold\n'
          : `invariants violated:\n${inv.map((l) => wrap(`  ${l}`, width, '    ')).join('\n')}\n`,
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
    .option(
      '--xen-dmesg <file>',
      "read the text of Xen's debug key 'g' (xl debug-keys g; xl dmesg) from a file, or '-' for standard input, instead of a frame dump",
    )
    .option('--json', 'print the entries as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  gnttab decode frames.bin\n  gnttab decode --layout 2 --status status.bin frames.bin\n  cat frames.bin | gnttab decode --json\n  xl dmesg | gnttab decode --xen-dmesg -',
    )
    .action((file: string, opts: { layout: 1 | 2; status?: string; xenDmesg?: string; json?: boolean }) => {
      if (opts.xenDmesg !== undefined) {
        decodeXenDmesg(opts.xenDmesg, opts.json === true);
        return;
      }
      if (file === '-' && process.stdin.isTTY === true)
        process.stderr.write(
          'gnttab decode: reading a dump of grant frames from standard input (end it with Ctrl-D, or name a file)\n',
        );
      const bytes = readInput(file);
      const status = opts.status !== undefined ? readInput(opts.status) : undefined;
      const entries = decodeGrantFrames(bytes, { layout: opts.layout, ...(status ? { status } : {}) });
      if (opts.json) process.stdout.write(`${JSON.stringify({ layout: opts.layout, entries }, null, 2)}\n`);
      else process.stdout.write(`${formatDecoded(entries, opts.layout, outputWidth())}\n`);
    });
  program
    .command('run')
    .description(
      'run your own frontend and backend guest modules as two domains in worker threads; show their consoles, both grant tables while they run, what each left behind and the invariant check',
    )
    .argument('<frontend>', "the frontend's guest module (.mjs, .js or .ts): default export (ctx, args)")
    .argument('<backend>', "the backend's guest module, the same way")
    .argument('[args...]', 'after --: words passed to both guests as args.argv')
    .usage('[options] <frontend> <backend> [-- args...]')
    .addOption(
      new Option('--frontend-kind <kind>', 'kind of the frontend domain')
        .choices(['pv', 'hvm'])
        .default('hvm'),
    )
    .addOption(
      new Option('--backend-kind <kind>', 'kind of the backend domain').choices(['pv', 'hvm']).default('pv'),
    )
    .addOption(
      new Option('--memory <MiB>', 'machine memory of the host (1 to 4096)').default(64).argParser(memoryArg),
    )
    .addOption(
      new Option('--timeout <seconds>', 'stop both guests and fail when they have not returned by then')
        .default(60)
        .argParser(secondsArg),
    )
    .option('--json', 'print one JSON object instead of text (the consoles are in it, and on stderr)')
    .addHelpText(
      'after',
      "\nEach guest's default export is called as (ctx, args), args being { role, self, peer,\n" +
        'frontend, backend, argv }; the backend is d0, the frontend d1, and xenstore runs.\n' +
        'Exit status: 0 when both returned and left nothing behind, 1 on a crash, a timeout,\n' +
        'a leak or a broken invariant, 2 on a usage error.\n\n' +
        'Examples:\n  gnttab run examples/ring/frontend.ts examples/ring/backend.ts\n' +
        '  gnttab run front.mjs back.mjs --json -- --requests 100',
    )
    .action(
      async (
        frontend: string,
        backend: string,
        argv: string[],
        opts: {
          frontendKind: 'pv' | 'hvm';
          backendKind: 'pv' | 'hvm';
          memory: number;
          timeout: number;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        for (const f of [frontend, backend])
          if (!f.startsWith('file:') && !existsSync(f))
            cmd.error(`gnttab run: no such guest module: ${f} (give the path of a .mjs, .js or .ts file)`);
        const width = outputWidth();
        const json = opts.json === true;
        if (!json)
          process.stdout.write(
            `${wrap(`gnttab run: ${frontend} as the frontend (${article(opts.frontendKind)}, d1), ${backend} as the backend (${article(opts.backendKind)}, d0)`, width)}\n\n`,
          );
        const r = await runPair(
          {
            frontend,
            backend,
            argv,
            frontendKind: opts.frontendKind,
            backendKind: opts.backendKind,
            memoryMiB: opts.memory,
            domainKiB: 4096,
            timeoutMs: opts.timeout * 1000,
          },
          {
            // With --json the consoles are in the JSON; as they come, they go to stderr.
            console: (role, domid, line) =>
              (json ? process.stderr : process.stdout).write(consoleLine(role, domid, line, width)),
          },
        );
        if (json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
        else process.stdout.write(formatRun(r, width));
        if (!r.ok) process.exitCode = 1;
      },
    );
  // Commands built on their own inherit the program's settings only when asked
  // (exitOverride among them, so that their usage errors exit 2 too).
  program.addCommand(exploreCommand().copyInheritedSettings(program));
  program.addCommand(xsaCommand());
  program.addCommand(attackCommand().copyInheritedSettings(program));
  program.addCommand(
    serveCommand(() => ({
      size: SERVE_DEMO_SIZE,
      layout: 1,
      ringSize: 65536,
      frontend: 'hvm',
      backend: 'pv',
    })).copyInheritedSettings(program),
  );

  return program;
}

/** "64M", "1g", "4096", "10k" -> bytes. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?$/.exec(v.trim());
  if (m === null) return Number.NaN;
  const mult = { '': 1, k: 1024, m: 1024 * 1024, g: 1024 * 1024 * 1024 }[m[2]!.toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

function sizeArg(v: string): number {
  const n = parseSize(v);
  if (!(Number.isSafeInteger(n) && n > 0))
    throw new InvalidArgumentError('a size in bytes, like 65536, 64k, 64M or 1G');
  return n;
}

function ringArg(v: string): number {
  const n = parseSize(v);
  if (!validRingSize(n))
    throw new InvalidArgumentError('a power of two from 1k to 1M (1024 to 1048576 bytes)');
  return n;
}

function decodeXenDmesg(file: string, json: boolean): void {
  if (file === '-' && process.stdin.isTTY === true)
    process.stderr.write(
      "gnttab decode: reading Xen's console text from standard input (end it with Ctrl-D, or name a file)\n",
    );
  const what = file === '-' ? 'standard input' : file;
  const r = readXenDmesg(Buffer.from(readInput(file)).toString('utf8'), what);
  const width = outputWidth();
  if (json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else process.stdout.write(`${formatXenDmesgReport(r, width)}\n`);
  if (r.unreadable.length > 0) {
    process.stderr.write(`${formatUnreadable(r, file === '-' ? 'stdin' : file, width)}\n`);
    process.exitCode = 1;
  }
}

/** The end of `gnttab run`'s text: outcomes, the tables seen, leftovers, invariants. */
function formatRun(r: RunReport, width: number): string {
  const out: string[] = [''];
  for (const g of [r.frontend, r.backend]) {
    const who = `d${g.domid} (${g.role}, ${g.module})`;
    const what =
      g.outcome === 'returned'
        ? `returned ${g.result === undefined ? 'nothing' : JSON.stringify(g.result)}`
        : g.outcome === 'crashed'
          ? `crashed: ${g.error ?? ''}`
          : g.outcome === 'timed out'
            ? 'was still running at the timeout and was stopped (raise --timeout if it is slow)'
            : 'was stopped a second after its peer crashed';
    out.push(wrap(`${who} ${what}`, width));
  }
  out.push('');
  if (r.tables.length > 0) {
    out.push('Grant tables while they ran (the busiest moment sampled):', '');
    for (const t of r.tables) out.push(formatTable(t, width), '');
  } else out.push('Grant tables while they ran: none was sampled (the guests ended first)', '');
  if (r.leftovers.length === 0) {
    const some = r.frontend.leftBehind !== null || r.backend.leftBehind !== null;
    if (some) out.push(wrap('left behind: nothing (no grant, mapping, port or xenstore key)', width));
  } else {
    out.push('left behind:');
    for (const l of r.leftovers) out.push(wrap(`  ${l}`, width, '    '));
  }
  out.push(
    r.invariants.length === 0
      ? 'invariants: all hold'
      : `invariants violated:\n${r.invariants.map((l) => wrap(`  ${l}`, width, '    ')).join('\n')}`,
  );
  return `${out.join('\n')}\n`;
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
    if (err instanceof CommanderError) {
      // Commander has printed the help, the version or the usage error already.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (argv.includes('--verbose') && err instanceof Error && err.stack !== undefined) {
      process.stderr.write(`gnttab: ${err.stack}\n`);
      process.exitCode = 1;
      return;
    }
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
