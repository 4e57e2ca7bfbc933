// The web view of a host (`gnttab serve`): a node:http server, read-only, that
// answers GET only. /api/state is the host's state as `gnttab dump --json`
// prints it; /api/events is a server-sent-event stream that pushes the state
// when it changes and the hypercall trace in batches (one message per tick,
// never one per hypercall), each with the hypervisor's exact totals and what
// the timeline misses (records the ring lost, records the server did not
// send); the page and its library (Preact + htm) are files of the package,
// nothing from the network.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TRC_DOM_CREATE, TRC_HYPERCALL, type TraceBuffer } from '../xen/trace.ts';
import { type HostState, type HypercallTotals, hypercallTotals, stateJson } from './host-state.ts';
import { hypercallName, returnName } from './hypercall-names.ts';

/** Where the view reads from: the state on demand, and the trace ring when the host has one. */
export interface ViewSource {
  state(): Promise<HostState> | HostState;
  trace: TraceBuffer | null;
  /** A title for the page: what runs ("gnttab demo", a scenario's file, a dmesg file). */
  title: string;
}

export interface ViewServerOptions {
  port?: number;
  /** Default 127.0.0.1: only this machine. */
  host?: string;
  /** How often the trace is drained and the state looked at, in ms (default 100). */
  tickMs?: number;
}

/** One trace record in a batch: [time ms, domid, hypercall/sub-op or domain event, return]. */
export type TimelineRecord = [number, number, string, string];

/** A `hypercalls` message of the stream (and the same figures in `hello` and /api/status). */
export interface HypercallBatch {
  /** The records drained this tick, oldest first (the newest MAX_RECORDS_PER_BATCH of them). */
  records: TimelineRecord[];
  /** The hypervisor's exact counts, read after the drain, at `time` (ms since the epoch). */
  totals: HypercallTotals;
  time: number;
  /** Records drained but not sent, so far (at most MAX_RECORDS_PER_BATCH go out per tick). */
  skipped: number;
  /** Records the ring lost, so far (= totals.lost). */
  lost: number;
}

/** Records sent per tick at most (the newest; the others are counted as skipped). */
const MAX_RECORDS_PER_BATCH = 500;
/**
 * The trace ring a viewed host gets: 16 ticks' worth of batches. A bigger one
 * would only make a busy hypervisor write records that the server then skips
 * (writing a record costs several times what losing one does); the counters
 * beside the ring are exact whatever its size.
 */
export const VIEW_TRACE_RECORDS = 1 << 13;
/** The state is looked at no more often than this while hypercalls keep coming. */
const STATE_EVERY_MS = 500;
const HISTORY = 20_000;

const here = dirname(fileURLToPath(import.meta.url));
/** The page's files: web/ at the package root (beside src/ and dist/). */
const WEB_DIR = join(here, '..', '..', 'web');
const require = createRequire(import.meta.url);

const STATIC: Record<string, { file: () => string; type: string }> = {
  '/': { file: () => join(WEB_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: () => join(WEB_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: () => join(WEB_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  // The front-end library, from the package's own dependencies (node resolution).
  '/vendor/preact.mjs': { file: () => require.resolve('preact'), type: 'text/javascript; charset=utf-8' },
  '/vendor/hooks.mjs': {
    file: () => require.resolve('preact/hooks'),
    type: 'text/javascript; charset=utf-8',
  },
  '/vendor/htm.mjs': {
    // htm's exports give require the CommonJS build; its ES module sits beside it.
    file: () => join(dirname(require.resolve('htm')), 'htm.mjs'),
    type: 'text/javascript; charset=utf-8',
  },
};

export class ViewServer {
  private readonly source: ViewSource;
  private readonly server: Server;
  private readonly clients = new Set<ServerResponse>();
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | null = null;
  private stopClock: (() => void) | null = null;
  /** Sequence number of the last message sent on the stream (every client gets every message). */
  private seq = 0;
  private lastStateText = '';
  private lastState: HostState | null = null;
  private stateDirty = true;
  private polling = false;
  private lastPoll = 0;
  private readonly history: TimelineRecord[] = [];
  /** Records sent on the stream, and records drained but not sent, so far. */
  private sent = 0;
  private skipped = 0;
  /** Records sent once but gone from the history a new page gets. */
  private evicted = 0;
  private lastTotals: HypercallTotals | null = null;
  private lastTotalsTime = 0;
  private readonly options: ViewServerOptions;
  private onFirstClient: (() => void) | null = null;
  /** Resolves when the first page has connected to the event stream. */
  readonly firstClient: Promise<void> = new Promise((resolve) => {
    this.onFirstClient = resolve;
  });

  constructor(source: ViewSource, options: ViewServerOptions = {}) {
    this.source = source;
    this.options = options;
    this.tickMs = options.tickMs ?? 100;
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  /** Listens (default 127.0.0.1, port 0 picks a free one); resolves with the URL. */
  async listen(): Promise<string> {
    const host = this.options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.stopClock = this.source.trace?.startClock() ?? null;
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    await this.tick();
    const a = this.server.address() as AddressInfo;
    const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${h}:${a.port}/`;
  }

  /** The sequence number of the last message pushed. */
  get sequence(): number {
    return this.seq;
  }

  /** Stops the stream and the server; the host goes on. */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.stopClock?.();
    this.stopClock = null;
    for (const c of this.clients) c.end();
    this.clients.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Event streams and keep-alive sockets would hold close() open.
    this.server.closeAllConnections();
    await closed;
  }

  /** Marks the state for a fresh look at the next tick (a host without trace calls this on changes). */
  invalidate(): void {
    this.stateDirty = true;
  }

  private send(event: string, data: unknown): void {
    this.seq++;
    const msg = `id: ${this.seq}\nevent: ${event}\ndata: ${JSON.stringify({ seq: this.seq, ...(data as object) })}\n\n`;
    for (const c of this.clients) c.write(msg);
  }

  /** One tick: drain the trace into one batch, then look at the state if anything happened. */
  private async tick(): Promise<void> {
    const trace = this.source.trace;
    if (trace !== null) {
      const { records: kept, skipped } = trace.drain(MAX_RECORDS_PER_BATCH);
      const totals = hypercallTotals(trace);
      const time = performance.timeOrigin + performance.now();
      const moved = totals.calls !== this.lastTotals?.calls || totals.records !== this.lastTotals.records;
      this.lastTotals = totals;
      this.lastTotalsTime = time;
      if (kept.length > 0 || skipped > 0 || moved) {
        this.stateDirty = true;
        this.sent += kept.length;
        this.skipped += skipped;
        const batch: TimelineRecord[] = kept.map((r) => [
          Math.round(r.time * 1000) / 1000,
          r.domid,
          r.event === TRC_HYPERCALL
            ? hypercallName(r.nr, r.cmd)
            : r.event === TRC_DOM_CREATE
              ? 'domain created'
              : 'domain destroyed',
          returnName(r.rc),
        ]);
        for (const b of batch) this.history.push(b);
        if (this.history.length > HISTORY) {
          this.evicted += this.history.length - HISTORY;
          this.history.splice(0, this.history.length - HISTORY);
        }
        const msg: HypercallBatch = {
          records: batch,
          totals,
          time,
          skipped: this.skipped,
          lost: totals.lost,
        };
        this.send('hypercalls', msg);
      }
    }
    if (this.stateDirty && !this.polling && performance.now() - this.lastPoll >= STATE_EVERY_MS) {
      this.stateDirty = false;
      this.lastPoll = performance.now();
      this.polling = true;
      try {
        const s = await this.source.state();
        const text = stateJson(s);
        if (text !== this.lastStateText) {
          this.lastStateText = text;
          this.lastState = s;
          this.send('state', { state: s });
        }
      } catch {
        // The host has stopped (the demo ended): keep serving what was last seen.
      } finally {
        this.polling = false;
      }
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('read-only: this server answers GET only\n');
      return;
    }
    try {
      if (url.pathname === '/api/state') {
        let text = this.lastStateText;
        try {
          text = stateJson(await this.source.state());
        } catch {
          // The host has stopped: what was last seen.
        }
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(`${text}\n`);
        return;
      }
      if (url.pathname === '/api/status') {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        // The counters as they are now (the last tick's may miss the newest calls).
        const trace = this.source.trace;
        const t = trace !== null ? hypercallTotals(trace) : this.lastTotals;
        const status = {
          title: this.source.title,
          seq: this.seq,
          traced: this.source.trace !== null,
          // Exact (the hypervisor's counters), then what the timeline has of them.
          hypercalls: t?.calls ?? 0,
          failed: t?.failed ?? 0,
          records: this.sent,
          skipped: this.skipped,
          lost: t?.lost ?? 0,
        };
        res.end(`${JSON.stringify(status)}\n`);
        return;
      }
      if (url.pathname === '/api/events') {
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-store',
          connection: 'keep-alive',
        });
        // What a new page needs first: the title, the state now and the timeline
        // so far. The state is read afresh: the poller may not have run yet.
        let state = this.lastState;
        try {
          state = await this.source.state();
        } catch {
          // The host has stopped: what was last seen.
        }
        const hello = {
          seq: this.seq,
          title: this.source.title,
          traced: this.source.trace !== null,
          state,
          records: this.history,
          totals: this.lastTotals,
          time: this.lastTotalsTime,
          skipped: this.skipped,
          evicted: this.evicted,
          lost: this.lastTotals?.lost ?? 0,
        };
        res.write(`id: ${this.seq}\nevent: hello\ndata: ${JSON.stringify(hello)}\n\n`);
        this.clients.add(res);
        this.onFirstClient?.();
        this.onFirstClient = null;
        req.on('close', () => this.clients.delete(res));
        return;
      }
      const f = STATIC[url.pathname];
      if (f === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end(`no such page: ${url.pathname}\n`);
        return;
      }
      const body = await readFile(f.file());
      res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
}
