// `gnttab serve [scenario | frontend backend]` and `gnttab demo --serve`: the
// web view of a host, live. The demo (paced, so that every state can be seen),
// a scenario module run on a single-thread Host, a `gnttab run` pair of guest
// modules in worker threads, or the text of Xen's debug key 'g' from a real
// host (--xen-dmesg). Bound to 127.0.0.1 unless told otherwise; read-only.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Host } from '../host/host.ts';
import { type HostState, hostState, hypercallTotals } from '../host/host-state.ts';
import { importUserModule } from '../host/user-module.ts';
import { VIEW_TRACE_RECORDS, ViewServer, type ViewSource } from '../host/view-server.ts';
import type { WorkerHost } from '../host/worker-host.ts';
import { TraceBuffer } from '../xen/trace.ts';
import { memoryArg, secondsArg } from './args.ts';
import { type DemoOptions, runDemo } from './demo.ts';
import { outputWidth, plural } from './format.ts';
import { consoleLine, type RunOptions, runPair } from './run.ts';
import { readXenDmesg } from './xen-dmesg.ts';

export interface ServeOptions {
  port: number;
  host: string;
}

export function portArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('a TCP port from 0 to 65535 (0 picks a free one)');
  return n;
}

export function paceArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 600_000)
    throw new InvalidArgumentError('milliseconds from 0 (full speed) to 600000');
  return n;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/** Starts the server, says where it is, and stops it (and the host) on Ctrl-C. */
async function start(source: ViewSource, o: ServeOptions, stop: () => Promise<void>): Promise<ViewServer> {
  const server = new ViewServer(source, { port: o.port, host: o.host });
  let url: string;
  try {
    url = await server.listen();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      e.code === 'EADDRINUSE'
        ? `port ${o.port} on ${o.host} is taken: choose another with --port (0 picks a free one)`
        : `cannot listen on ${o.host}:${o.port}: ${e.message}`,
    );
  }
  process.stdout.write(`gnttab serve: ${source.title} at ${url} (read-only; Ctrl-C to stop)\n`);
  if (!LOOPBACK.test(o.host))
    process.stderr.write(
      `gnttab serve: listening on ${o.host}, reachable from other machines: anyone who can reach it sees this host's state\n`,
    );
  const quit = () => {
    void server
      .close()
      .then(stop)
      .finally(() => process.exit(0));
  };
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  return server;
}

/**
 * A WorkerHost run by `run` (the demo, a gnttab run pair), traced, once the
 * first page watches, so that it is seen from its first grant; the page keeps
 * the last state once the run has ended and the host has gone.
 */
async function serveWorkerRun(
  title: string,
  what: string,
  o: ServeOptions,
  run: (traceSab: SharedArrayBuffer, onHost: (h: WorkerHost) => void) => Promise<string>,
): Promise<void> {
  const trace = new TraceBuffer(VIEW_TRACE_RECORDS);
  let host: WorkerHost | null = null;
  let last: HostState = { tables: [], invariants: [], eventChannels: [], xenstore: null, hypercalls: null };
  const source: ViewSource = {
    title,
    trace,
    state: async () => {
      if (host !== null) last = await host.state();
      // The counters are in the trace buffer, which outlives the host: always the latest.
      return { ...last, hypercalls: hypercallTotals(trace) };
    },
  };
  const server = await start(source, o, async () => {
    await host?.shutdown();
  });
  process.stdout.write(`gnttab serve: open the page to start ${what}\n`);
  await server.firstClient;
  const outcome = await run(trace.sab, (h) => {
    host = h;
  });
  host = null;
  process.stdout.write(`gnttab serve: ${outcome}; the page shows the host as it ended\n`);
}

/** The demo, paced, with its host's trace. */
export function serveDemo(demo: DemoOptions, o: ServeOptions): Promise<void> {
  return serveWorkerRun(
    `gnttab demo (${demo.frontend} frontend v${demo.layout}, ${demo.backend} backend)`,
    'the demo',
    o,
    async (traceSab, onHost) => {
      const r = await runDemo(demo, undefined, { traceSab, onHost });
      return `the demo has ended (${r.ok ? 'every byte checked, nothing left behind' : 'with failures, see the page'})`;
    },
  );
}

/** A `gnttab run` pair of guest modules, with their host's trace; the consoles go to stdout. */
export function servePair(pair: Omit<RunOptions, 'traceSab'>, o: ServeOptions): Promise<void> {
  for (const f of [pair.frontend, pair.backend])
    if (!f.startsWith('file:') && !existsSync(f))
      throw new Error(`no such guest module: ${f} (give the path of a .mjs, .js or .ts file)`);
  const width = outputWidth();
  return serveWorkerRun(
    `gnttab run ${pair.frontend} ${pair.backend}`,
    'the guests',
    o,
    async (traceSab, onHost) => {
      const r = await runPair(
        { ...pair, traceSab },
        {
          host: onHost,
          console: (role, domid, line) => process.stdout.write(consoleLine(role, domid, line, width)),
        },
      );
      const outcome = (g: typeof r.frontend) =>
        `the ${g.role} ${g.outcome}${g.outcome === 'crashed' ? ` (${g.error ?? ''})` : ''}`;
      return `the guests have ended (${outcome(r.frontend)}, ${outcome(r.backend)}${r.leftovers.length > 0 ? `, ${plural(r.leftovers.length, 'thing')} left behind` : ''}${r.invariants.length > 0 ? `, ${plural(r.invariants.length, 'invariant')} broken` : ''})`;
    },
  );
}

/** A scenario module on a single-thread Host, traced from its first hypercall. */
export async function serveScenario(file: string, o: ServeOptions & { memory: number }): Promise<void> {
  let mod: Record<string, unknown>;
  try {
    mod = await importUserModule(pathToFileURL(resolve(file)).href);
  } catch (err) {
    throw new Error(`cannot load the scenario ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof mod.default !== 'function')
    throw new Error(
      `${file} must export a default function taking a Host, e.g. export default (host) => { ... }`,
    );
  const host = new Host({ memoryMiB: o.memory });
  host.hypervisor.trace = new TraceBuffer(VIEW_TRACE_RECORDS);
  const source: ViewSource = {
    title: file,
    trace: host.hypervisor.trace,
    state: () => hostState(host.hypervisor, host.xenstored),
  };
  await start(source, o, async () => {});
  await (mod.default as (h: Host) => unknown)(host);
}

/** The tables of Xen's debug key 'g' on a real host: what `gnttab decode --xen-dmesg` reads. */
export async function serveXenDmesg(file: string, o: ServeOptions): Promise<void> {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(e.code === 'ENOENT' ? `no such file: ${file}` : `cannot read ${file}: ${e.message}`);
  }
  const r = readXenDmesg(text, file === '-' ? 'standard input' : file);
  for (const u of r.unreadable) process.stderr.write(`gnttab: ${file}:${u.line}: ${u.reason}\n`);
  const state: HostState = {
    tables: r.tables,
    invariants: r.unreadable.map((u) => `line ${u.line} of ${file} could not be read: ${u.reason}`),
    eventChannels: [],
    xenstore: null,
    hypercalls: null,
  };
  await start({ title: `xl dmesg: ${file}`, trace: null, state: () => state }, o, async () => {});
}

export function serveOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--port <n>', 'TCP port (0 picks a free one)').default(8080).argParser(portArg))
    .addOption(
      new Option(
        '--host <address>',
        'address to listen on (another than 127.0.0.1 opens it to the network)',
      ).default('127.0.0.1'),
    );
}

/** What `gnttab serve` and `gnttab demo --serve` run when told nothing else: 4 MiB, not 64. */
export const SERVE_DEMO_SIZE = 4 * 1024 * 1024;

export function serveCommand(demoDefaults: () => DemoOptions): Command {
  const cmd = new Command('serve')
    .description(
      "a live web view of a host: domains, grant tables, mappings, event channels, xenstore and the hypercall timeline (the paced demo by default, a scenario module, a gnttab run pair, or a real host's debug key 'g' text)",
    )
    .argument(
      '[scenario]',
      'a module whose default export takes a Host (as for gnttab dump); default: the demo. With a second module: the frontend of a gnttab run pair',
    )
    .argument('[backend]', "the backend's guest module of a gnttab run pair")
    .argument('[args...]', 'after --: words passed to both guests of a pair as args.argv')
    .usage('[options] [scenario | <frontend> <backend> [-- args...]]');
  serveOptions(cmd)
    .option('--xen-dmesg <file>', "serve the tables of Xen's debug key 'g' text (xl dmesg) instead of a host")
    .addOption(
      new Option('--pace <ms>', 'the demo pauses this long at each step so every state can be seen')
        .default(1500)
        .argParser(paceArg),
    )
    .addOption(
      new Option('--memory <MiB>', 'machine memory of a scenario or pair host')
        .default(64)
        .argParser(memoryArg),
    )
    .addOption(
      new Option('--frontend-kind <kind>', "a pair's frontend domain").choices(['pv', 'hvm']).default('hvm'),
    )
    .addOption(
      new Option('--backend-kind <kind>', "a pair's backend domain").choices(['pv', 'hvm']).default('pv'),
    )
    .addOption(
      new Option('--timeout <seconds>', "a pair's guests are stopped when they have not returned by then")
        .default(60)
        .argParser(secondsArg),
    )
    .addHelpText(
      'after',
      '\nExamples:\n  gnttab serve\n  gnttab serve examples/scenario.ts --port 9000\n' +
        '  gnttab serve examples/ring/frontend.ts examples/ring/backend.ts -- 300\n' +
        '  gnttab serve --xen-dmesg dmesg.txt',
    )
    .action(
      async (
        scenario: string | undefined,
        backend: string | undefined,
        argv: string[],
        opts: ServeOptions & {
          xenDmesg?: string;
          pace: number;
          memory: number;
          frontendKind: 'pv' | 'hvm';
          backendKind: 'pv' | 'hvm';
          timeout: number;
        },
      ) => {
        if (opts.xenDmesg !== undefined) {
          if (scenario !== undefined)
            cmd.error('error: --xen-dmesg serves a file: give no scenario or pair with it', { exitCode: 2 });
          await serveXenDmesg(opts.xenDmesg, opts);
        } else if (backend !== undefined)
          await servePair(
            {
              frontend: scenario!,
              backend,
              argv,
              frontendKind: opts.frontendKind,
              backendKind: opts.backendKind,
              memoryMiB: opts.memory,
              domainKiB: 4096,
              timeoutMs: opts.timeout * 1000,
            },
            opts,
          );
        else if (scenario !== undefined) await serveScenario(scenario, opts);
        else await serveDemo({ ...demoDefaults(), paceMs: opts.pace }, opts);
      },
    );
  return cmd;
}
