// The schedule explorer. Each guest of a scenario runs in a worker thread of
// its own, but only one thread runs at a time: a guest stops before every
// shared-word step (the SharedWords interposition hook), every hypercall and
// every wait, hands the baton back, and the explorer picks who goes next.
// Hypercalls run here, in the explorer's thread, on an in-thread Host, each as
// one step (Xen's own shared-word accesses inside it are traced, not
// preempted). Time is virtual and moves only when every guest waits, as in
// single-thread mode, so a schedule is a pure function of its choices: the
// same seed gives the same run, and a replay token reproduces one exactly.
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { gnttab_map_grant_ref, gnttab_unmap_grant_ref } from '../../abi/gnttab-ops.ts';
import {
  __HYPERVISOR_grant_table_op,
  GNTTABOP_CMD_MASK,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
} from '../../abi/hypercall.ts';
import { gntstName } from '../../abi/status.ts';
import { readStruct } from '../../abi/struct.ts';
import { type GuestOutcome, Host } from '../../host/host.ts';
import { resolveWorkerEntry } from '../../host/worker-entry.ts';
import {
  B_ARGS,
  B_NR,
  BIGINTS,
  BUDGET,
  Control,
  F_ADDR,
  F_LOCAL,
  F_NOTIFY,
  F_NOW,
  F_RESULT,
  F_TIMER,
  F_WAITS,
  F_WOKEN,
  HCERR,
  K_DONE,
  K_ERROR,
  K_HYPERCALL,
  K_IDLE,
  K_READY,
  K_STEP,
  KIND,
  LOCAL,
  MAX_ARGS,
  MAX_LOCAL,
  MAX_WAITS,
  NARGS,
  NNOTIFY,
  NWAIT,
  NWOKEN,
  OP,
  OP_NAMES,
  R_ABORT,
  R_GO,
  R_WAKE,
  RESUME,
} from './control.ts';
import { describeHypercall, describeReturn, nameAddress } from './names.ts';
import { BOARD_WORDS, loadScenario, type Scenario } from './scenario.ts';
import { DfsStrategy, PctStrategy, ReplayMismatch, ReplayStrategy, type Strategy } from './strategy.ts';
import { decodeToken, encodeToken } from './token.ts';
import type { ResultMessage, RunMessage } from './worker.ts';

export type StrategyName = 'pct' | 'dfs';

/** Options of explore(): the scenario, the strategy (PCT or DFS), the budget and a replay token. */
export interface ExploreOptions {
  /** The scenario module: a URL, or a file path. */
  scenario: string | URL;
  /** Passed to the module's default export when it is a function, and to every guest. */
  params?: unknown;
  /** Schedules to run at most (default 1000). */
  schedules?: number;
  /** Seed of the PCT strategy (default 1). */
  seed?: number;
  /** 'pct' (default) or 'dfs'. */
  strategy?: StrategyName;
  /** PCT: bug depth d (default 3). DFS: the preemption bound (default 2). */
  depth?: number;
  /** Reproduce the schedule of this token (one schedule; strategy and seed are ignored). */
  replay?: string;
  /** A schedule longer than this many steps fails (a livelock, default 20000). */
  maxSteps?: number;
  /** Real time a guest may run between two steps before the schedule fails as a hang (default 10 s). */
  stepTimeoutMs?: number;
  /** Called about every 250 ms of real time. */
  onProgress?: (p: ExploreProgress) => void;
}

export interface ExploreProgress {
  schedules: number;
  of: number;
  elapsedMs: number;
  longestSchedule: number;
}

/** One line of a trace: who did what, in the order it happened. */
export interface TraceStep {
  /** Index of the pick that ran it (several lines share one: Xen's accesses inside a hypercall). */
  step: number;
  guest: string;
  domid: number;
  kind: 'start' | 'step' | 'hypercall' | 'xen' | 'wake' | 'done' | 'crash';
  /** The operation ("cmpxchg16", "map_grant_ref", ...). */
  op: string;
  /** Machine address (steps), board word (below zero), or undefined. */
  addr?: number;
  /** Readable: "d1 cmpxchg16 flags of d2's ref 8". */
  text: string;
}

export type FailureKind = 'check' | 'crash' | 'invariant' | 'deadlock' | 'livelock' | 'hang';

/** A schedule that broke the scenario: what failed, its trace and the token that replays it. */
export interface ExploreFailure {
  /** 0-based index of the failing schedule. */
  schedule: number;
  kind: FailureKind;
  message: string;
  token: string;
  steps: number;
  trace: TraceStep[];
  outcomes: Record<string, GuestOutcome>;
  logs: Record<string, string[]>;
}

/** What explore() did: schedules run, and the first failure if any. */
export interface ExploreResult {
  scenario: string;
  strategy: StrategyName | 'replay';
  seed: number;
  depth: number;
  schedules: number;
  /** DFS: every schedule within the bound was run. */
  complete: boolean;
  failure: ExploreFailure | null;
  elapsedMs: number;
  longestSchedule: number;
  /** Replay: whether the run took as many steps as the token says. */
  reproduced?: boolean;
}

type PartyState = 'ready' | 'step' | 'hypercall' | 'idle' | 'done';

interface Party {
  name: string;
  domid: number;
  ctl: Control;
  worker: Worker;
  port: MessagePort;
  /** The worker died outside guest code (a module that failed to load, say). */
  workerError: Error | null;
  state: PartyState;
  crashed: boolean;
  op: number;
  addr: number;
  nr: number | bigint;
  args: (number | bigint)[];
  waits: number[];
  timerAt: number;
  woken: Set<number>;
}

interface RawStep {
  step: number;
  party: number;
  kind: TraceStep['kind'];
  op: string;
  addr?: number;
  detail?: string;
}

class Abandon extends Error {
  readonly kind: FailureKind;
  constructor(kind: FailureKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

function toUrl(s: string | URL): string {
  if (s instanceof URL) return s.href;
  if (/^(file|data|node):/.test(s)) return s;
  return new URL(s, `file://${process.cwd()}/`).href;
}

/** Explores schedules of a scenario; the first failing one, with its token and trace, or none. */
export async function explore(options: ExploreOptions): Promise<ExploreResult> {
  const url = toUrl(options.scenario);
  const scenario = await loadScenario(url, options.params);
  const ex = new Explorer(url, scenario, options);
  try {
    return await ex.run();
  } finally {
    await ex.close();
  }
}

class Explorer {
  private readonly url: string;
  private readonly scenario: Scenario;
  private readonly opts: ExploreOptions;
  private readonly names: string[];
  private parties: Party[] = [];
  private now = 0;
  private trace: RawStep[] = [];
  private stepNo = 0;
  /** The party whose hypercall is running here (for Xen's accesses and notifies). */
  private inHypercall = -1;
  /** The machine memory every schedule's host runs over. */
  private machineSab: SharedArrayBuffer | null = null;

  constructor(url: string, scenario: Scenario, opts: ExploreOptions) {
    this.url = url;
    this.scenario = scenario;
    this.opts = opts;
    this.names = Object.keys(scenario.domains).filter((n) => typeof scenario.guests[n] === 'function');
    for (const n of Object.keys(scenario.guests))
      if (!(n in scenario.domains)) throw new TypeError(`guest program "${n}" has no domain of that name`);
    if (this.names.length === 0) throw new TypeError('the scenario has no guest programs');
  }

  private spawn(): void {
    const entry = resolveWorkerEntry('worker', import.meta.url);
    this.parties = this.names.map((name) => {
      const ctl = new Control();
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(entry.file, {
        workerData: { ...entry.data, control: ctl.sab, port: port2 },
        transferList: [port2],
        ...(entry.execArgv !== undefined ? { execArgv: entry.execArgv } : {}),
      });
      const p: Party = {
        name,
        domid: -1,
        ctl,
        worker,
        port: port1,
        workerError: null,
        state: 'done',
        crashed: false,
        op: 0,
        addr: 0,
        nr: 0,
        args: [],
        waits: [],
        timerAt: Number.POSITIVE_INFINITY,
        woken: new Set(),
      };
      worker.on('error', (e) => {
        p.workerError = e;
      });
      return p;
    });
  }

  async close(): Promise<void> {
    for (const p of this.parties) {
      p.port.postMessage({ type: 'exit' });
      p.ctl.give(1);
    }
    await Promise.all(
      this.parties.map(
        (p) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              void p.worker.terminate().then(() => resolve());
            }, 2000);
            p.worker.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    for (const p of this.parties) p.port.close();
    this.parties = [];
  }

  async run(): Promise<ExploreResult> {
    const o = this.opts;
    const strategyName: StrategyName = o.strategy ?? 'pct';
    const seed = o.seed ?? 1;
    const depth = o.depth ?? (strategyName === 'pct' ? 3 : 2);
    let strategy: Strategy;
    let limit = o.schedules ?? 1000;
    let token: ReturnType<typeof decodeToken> | null = null;
    if (o.replay !== undefined) {
      token = decodeToken(o.replay);
      if (token.guests !== this.names.length)
        throw new ReplayMismatch(`it is for ${token.guests} guests, the scenario has ${this.names.length}`);
      strategy = new ReplayStrategy(token.choices);
      limit = 1;
    } else if (strategyName === 'dfs') {
      strategy = new DfsStrategy(depth);
    } else {
      strategy = new PctStrategy(seed, this.names.length, depth);
    }
    this.spawn();
    const t0 = performance.now();
    let lastProgress = t0;
    let longest = 0;
    let ran = 0;
    let complete = false;
    let failure: ExploreFailure | null = null;
    let reproduced: boolean | undefined;
    for (let i = 0; i < limit; i++) {
      if (!strategy.begin(i)) {
        complete = true;
        break;
      }
      const r = await this.schedule(i, strategy);
      ran++;
      strategy.end(r.steps);
      longest = Math.max(longest, r.steps);
      if (token !== null) reproduced = r.steps === token.steps;
      if (r.failure !== null) {
        failure = r.failure;
        break;
      }
      const t = performance.now();
      if (o.onProgress !== undefined && t - lastProgress >= 250) {
        lastProgress = t;
        o.onProgress({ schedules: ran, of: limit, elapsedMs: t - t0, longestSchedule: longest });
      }
    }
    if (strategyName === 'dfs' && failure === null && !complete && token === null && ran === limit)
      complete = !strategy.begin(limit);
    const result: ExploreResult = {
      scenario: this.scenario.name ?? url2name(this.url),
      strategy: token !== null ? 'replay' : strategyName,
      seed,
      depth,
      schedules: ran,
      complete,
      failure,
      elapsedMs: performance.now() - t0,
      longestSchedule: longest,
    };
    if (reproduced !== undefined) result.reproduced = reproduced;
    return result;
  }

  /** Runs one schedule from a fresh host. */
  private async schedule(
    index: number,
    strategy: Strategy,
  ): Promise<{ steps: number; failure: ExploreFailure | null }> {
    const s = this.scenario;
    // Every schedule runs over the same machine memory (Xen zeroes a frame
    // when it allocates it) and a small private pool: a fresh 2 MiB machine and
    // the default pool (16 MiB) per schedule were thousands of buffers the
    // garbage collector freed late, gigabytes resident, and Node 24 spent most
    // of a run in the kernel mapping and unmapping them.
    const memoryMiB = s.host?.memoryMiB ?? 2;
    if (this.machineSab?.byteLength !== memoryMiB * 0x10_0000)
      this.machineSab = new SharedArrayBuffer(memoryMiB * 0x10_0000);
    const host = new Host({ memoryMiB, machineSab: this.machineSab, privatePages: 128, ...s.host });
    this.host = host;
    const domids: Record<string, number> = {};
    for (const [name, d] of Object.entries(s.domains)) domids[name] = host.createDomain(d).domid;
    const boardSab = new SharedArrayBuffer(BOARD_WORDS * 4);
    const words = host.hypervisor.machine.words;
    words.onNotify = (addr) => this.notified(addr);
    words.interpose = (op, addr) => {
      if (this.inHypercall >= 0)
        this.trace.push({ step: this.stepNo, party: this.inHypercall, kind: 'xen', op, addr });
    };
    this.now = 0;
    this.trace = [];
    this.stepNo = 0;
    this.strategy = strategy;
    const maxSteps = this.opts.maxSteps ?? 20000;
    this.maxSteps = maxSteps;
    const timeout = this.opts.stepTimeoutMs ?? 10_000;
    const choices: number[] = [];
    this.choices = choices;
    const results: (ResultMessage | null)[] = this.parties.map(() => null);
    let abandon: Abandon | null = null;

    for (const p of this.parties) {
      const h = host.domain(domids[p.name]!)!;
      p.domid = h.domid;
      p.state = 'ready';
      p.crashed = false;
      p.waits = [];
      p.woken.clear();
      p.timerAt = Number.POSITIVE_INFINITY;
      const m: RunMessage = {
        type: 'run',
        module: this.url,
        params: this.opts.params,
        guest: p.name,
        machineSab: host.hypervisor.machine.sab,
        boardSab,
        domid: h.domid,
        kind: h.kind,
        root: h.xen.mmuRoot,
        start: host.context(h.domid).start,
        domids,
      };
      p.port.postMessage(m);
      p.ctl.i32[BUDGET] = 0;
      p.ctl.give(1);
    }
    for (const [i, p] of this.parties.entries()) {
      if (!p.ctl.take(0, Math.max(timeout, 60_000))) {
        abandon = new Abandon(
          'hang',
          `${p.name} did not start: ${p.workerError?.message ?? 'its worker does not answer'}`,
        );
        break;
      }
      this.readReport(i);
      if (p.crashed && abandon === null) abandon = new Abandon('crash', `${p.name} could not start`);
    }

    let current = -1;
    let preemptible = false;
    try {
      while (abandon === null) {
        const enabled: number[] = [];
        this.parties.forEach((p, i) => {
          if (
            p.state === 'ready' ||
            p.state === 'step' ||
            p.state === 'hypercall' ||
            (p.state === 'idle' && (p.woken.size > 0 || p.timerAt <= this.now))
          )
            enabled.push(i);
        });
        if (enabled.length === 0) {
          if (this.parties.every((p) => p.state === 'done')) break;
          let t = Number.POSITIVE_INFINITY;
          for (const p of this.parties) if (p.state === 'idle' && p.timerAt < t) t = p.timerAt;
          if (t === Number.POSITIVE_INFINITY) {
            const stuck = this.parties.filter((p) => p.state === 'idle').map((p) => p.name);
            throw new Abandon(
              'deadlock',
              `deadlock: ${stuck.join(', ')} wait for something no one will do, and no timer is pending`,
            );
          }
          this.now = t;
          continue;
        }
        if (this.stepNo >= maxSteps)
          throw new Abandon(
            'livelock',
            `the schedule ran past ${maxSteps} steps (a livelock, or raise maxSteps)`,
          );
        let pick = enabled[0]!;
        if (enabled.length > 1 || strategy.everyStep)
          pick = strategy.choose(enabled, current, preemptible && enabled.includes(current), this.stepNo);
        if (enabled.length > 1) choices.push(pick);
        this.resume(pick, timeout);
        const p = this.parties[pick]!;
        current = pick;
        preemptible = p.state === 'step' || p.state === 'hypercall';
        if (p.crashed) throw new Abandon('crash', `${p.name} threw`);
      }
    } catch (e) {
      if (!(e instanceof Abandon)) throw e;
      abandon = e;
    } finally {
      words.interpose = null;
    }
    if (abandon !== null) this.abortAll(timeout);
    this.parties.forEach((p, i) => {
      results[i] = (receiveMessageOnPort(p.port)?.message as ResultMessage | undefined) ?? {
        type: 'result',
        ok: false,
        aborted: false,
        error: { name: 'Error', message: 'its worker sent no result', stack: 'its worker sent no result' },
        log: [],
      };
    });
    const msgs = results as ResultMessage[];
    const outcomes: Record<string, GuestOutcome> = {};
    const logs: Record<string, string[]> = {};
    this.parties.forEach((p, i) => {
      const m = msgs[i]!;
      logs[p.name] = m.log;
      let error: Error | undefined;
      if (m.error !== undefined) {
        error = new Error(m.error.message);
        error.name = m.error.name;
        error.stack = m.error.stack;
      } else if (m.aborted) {
        error = new Error('stopped: the schedule was abandoned');
        error.name = 'Abandoned';
      }
      outcomes[p.name] = { domid: p.domid, ok: m.ok, result: m.result, error };
    });
    const steps = this.stepNo;
    const problems: string[] = [];
    let kind: FailureKind | null = abandon?.kind ?? null;
    if (abandon !== null) {
      problems.push(abandon.message);
      for (const [name, o] of Object.entries(outcomes))
        if (o.error !== undefined && o.error.name !== 'Abandoned')
          problems.push(`${name}: ${o.error.stack ?? o.error.message}`);
    } else {
      try {
        let c = s.check?.(host, { outcomes, domids, board: [...new Int32Array(boardSab)] });
        if (c instanceof Promise) c = await c;
        const list = c === undefined ? [] : typeof c === 'string' ? [c] : [...c];
        if (list.length > 0) {
          kind = 'check';
          problems.push(...list);
        }
      } catch (e) {
        kind = 'check';
        problems.push(e instanceof Error ? e.message : String(e));
      }
      if (s.invariants !== false) {
        const inv = host.checkInvariants(s.invariants ?? {});
        if (inv.length > 0) {
          kind ??= 'invariant';
          problems.push(...inv.map((x) => `invariant: ${x}`));
        }
      }
    }
    if (kind === null) return { steps, failure: null };
    return {
      steps,
      failure: {
        schedule: index,
        kind,
        message: problems.join('\n'),
        token: encodeToken({ guests: this.parties.length, steps, choices }),
        steps,
        trace: this.nameTrace(host),
        outcomes,
        logs,
      },
    };
  }

  /** Runs party `i` from where it stopped to its next report. */
  private resume(i: number, timeout: number): void {
    const p = this.parties[i]!;
    const c = p.ctl;
    const base = { step: this.stepNo, party: i };
    this.stepNo++;
    let code = R_GO;
    switch (p.state) {
      case 'ready':
        this.trace.push({ ...base, kind: 'start', op: 'start' });
        break;
      case 'step':
        this.trace.push({ ...base, kind: 'step', op: OP_NAMES[p.op] ?? `op ${p.op}`, addr: p.addr });
        break;
      case 'hypercall':
        this.hypercall(i);
        break;
      case 'idle': {
        const woken = [...p.woken];
        c.i32[NWOKEN] = woken.length;
        woken.forEach((k, j) => {
          c.f64[F_WOKEN + j] = k;
        });
        p.woken.clear();
        const why = woken.length > 0 ? 'notified' : `timer (t=${this.now} ms)`;
        this.trace.push({ ...base, kind: 'wake', op: 'wake', detail: why });
        code = R_WAKE;
        break;
      }
      case 'done':
        throw new Error(`BUG: explorer resumed ${p.name}, which has finished`);
    }
    c.i32[RESUME] = code;
    c.f64[F_NOW] = this.now;
    // The steps the strategy would give this guest anyway, taken without asking.
    const enabled = this.enabledWith(i);
    const run = Math.min(
      this.strategy.runLength(enabled, i, this.stepNo),
      MAX_LOCAL,
      Math.max(0, this.maxSteps - this.stepNo),
    );
    c.i32[BUDGET] = run;
    this.localEnabled = enabled;
    c.give(1);
    if (!c.take(0, timeout)) {
      throw new Abandon(
        'hang',
        `${p.name} ran for ${timeout / 1000} s without a shared-word step, hypercall or wait ` +
          '(a loop over plain memory? such a loop never lets the other guests run)',
      );
    }
    this.readReport(i);
  }

  private hypercall(i: number): void {
    const p = this.parties[i]!;
    const c = p.ctl;
    const text = describeHypercall(this.hostOf(), p.domid, p.nr, p.args);
    const at = this.trace.length;
    this.trace.push({
      step: this.stepNo,
      party: i,
      kind: 'hypercall',
      op: text.split('(')[0]!,
      detail: text,
    });
    this.inHypercall = i;
    let errLen = 0;
    let rc = 0;
    try {
      const h = this.hostOf().domain(p.domid);
      if (h === undefined)
        throw Object.assign(new Error(`d${p.domid} has been destroyed`), { name: 'DomainDestroyedError' });
      rc = h.hypercall(p.nr, ...p.args);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      errLen = c.writeText(`${err.name}\n${err.message}`);
    } finally {
      this.inHypercall = -1;
    }
    const step = this.trace[at]!;
    step.detail = `${text} = ${errLen > 0 ? 'threw' : describeReturn(rc)}${this.elementStatus(p)}`;
    c.f64[F_RESULT] = rc;
    c.i32[HCERR] = errLen;
  }

  /** ", GNTST_okay" for a map or unmap: the first element's status. */
  private elementStatus(p: Party): string {
    if (p.nr !== __HYPERVISOR_grant_table_op) return '';
    const cmd = Number(p.args[0] ?? 0) & GNTTABOP_CMD_MASK;
    const mem = this.hostOf().domain(p.domid)?.memory;
    if (mem === undefined) return '';
    try {
      if (cmd === GNTTABOP_map_grant_ref)
        return `, ${gntstName(readStruct(mem, Number(p.args[1]), gnttab_map_grant_ref).status)}`;
      if (cmd === GNTTABOP_unmap_grant_ref)
        return `, ${gntstName(readStruct(mem, Number(p.args[1]), gnttab_unmap_grant_ref).status)}`;
    } catch {
      return '';
    }
    return '';
  }

  private host: Host | null = null;
  private strategy: Strategy = new ReplayStrategy([]);
  private choices: number[] = [];
  private maxSteps = 0;
  /** The guests runnable while the one resumed takes steps on its budget. */
  private localEnabled: number[] = [];
  private hostOf(): Host {
    return this.host!;
  }

  /** Guests that could run if picked, with `i` among them (it is about to be at a step). */
  private enabledWith(i: number): number[] {
    const out: number[] = [];
    this.parties.forEach((p, j) => {
      if (
        j === i ||
        p.state === 'ready' ||
        p.state === 'step' ||
        p.state === 'hypercall' ||
        (p.state === 'idle' && (p.woken.size > 0 || p.timerAt <= this.now))
      )
        out.push(j);
    });
    return out;
  }

  /** Takes in what party i stopped at, after the steps it took on its budget. */
  private readReport(i: number): void {
    const p = this.parties[i]!;
    const c = p.ctl;
    const local = c.i32[LOCAL]!;
    const e = this.localEnabled;
    for (let j = 0; j < local; j++) {
      if (e.length > 1 || this.strategy.everyStep) {
        const pick = this.strategy.choose(e, i, true, this.stepNo);
        if (pick !== i)
          throw new Error(`BUG: ${this.strategy.name} gave ${p.name} a step it then did not pick`);
      }
      if (e.length > 1) this.choices.push(i);
      const op = c.f64[F_LOCAL + 2 * j]!;
      this.trace.push({
        step: this.stepNo,
        party: i,
        kind: 'step',
        op: OP_NAMES[op] ?? `op ${op}`,
        addr: c.f64[F_LOCAL + 2 * j + 1]!,
      });
      this.stepNo++;
    }
    c.i32[LOCAL] = 0;
    const n = c.i32[NNOTIFY]!;
    if (n < 0) {
      for (const q of this.parties) if (q.state === 'idle') for (const k of q.waits) q.woken.add(k);
    } else {
      for (let j = 0; j < n; j++) this.notified(c.f64[F_NOTIFY + j]!);
    }
    switch (c.i32[KIND]) {
      case K_READY:
        p.state = 'ready';
        break;
      case K_STEP:
        p.state = 'step';
        p.op = c.i32[OP]!;
        p.addr = c.f64[F_ADDR]!;
        break;
      case K_HYPERCALL: {
        p.state = 'hypercall';
        const big = c.i32[BIGINTS]!;
        const nr = c.b64[B_NR]!;
        p.nr = (big & (1 << MAX_ARGS)) !== 0 ? BigInt.asUintN(64, nr) : Number(nr);
        p.args = [];
        for (let j = 0; j < c.i32[NARGS]!; j++) {
          const v = c.b64[B_ARGS + j]!;
          p.args.push((big & (1 << j)) !== 0 ? BigInt.asUintN(64, v) : Number(v));
        }
        break;
      }
      case K_IDLE: {
        p.state = 'idle';
        const nw = Math.min(c.i32[NWAIT]!, MAX_WAITS);
        p.waits = [];
        for (let j = 0; j < nw; j++) p.waits.push(c.f64[F_WAITS + j]!);
        p.timerAt = c.f64[F_TIMER]!;
        p.woken.clear();
        break;
      }
      case K_DONE:
        p.state = 'done';
        this.trace.push({ step: this.stepNo, party: i, kind: 'done', op: 'done' });
        break;
      case K_ERROR:
        p.state = 'done';
        p.crashed = true;
        this.trace.push({ step: this.stepNo, party: i, kind: 'crash', op: 'crash' });
        break;
      default:
        throw new Error(`BUG: ${p.name} reported kind ${c.i32[KIND]}`);
    }
  }

  /** A word was notified (by a guest, or by Xen here): guests waiting on it may run. */
  private notified(key: number): void {
    for (const q of this.parties) if (q.state === 'idle' && q.waits.includes(key)) q.woken.add(key);
  }

  /** Stops every guest still running: each unwinds with an AbortSchedule thrown at its next step. */
  private abortAll(timeout: number): void {
    for (const [i, p] of this.parties.entries()) {
      if (p.state === 'done') continue;
      p.ctl.i32[RESUME] = R_ABORT;
      p.ctl.i32[BUDGET] = 0;
      p.ctl.give(1);
      if (p.ctl.take(0, timeout)) this.readReport(i);
      p.state = 'done';
    }
  }

  private nameTrace(host: Host): TraceStep[] {
    return this.trace.map((r) => {
      const p = this.parties[r.party]!;
      const who = `d${p.domid}`;
      const base = { step: r.step, guest: p.name, domid: p.domid, kind: r.kind, op: r.op };
      const at = r.addr !== undefined ? { addr: r.addr } : {};
      switch (r.kind) {
        case 'step':
          return { ...base, ...at, text: `${who} ${r.op} ${nameAddress(host, r.addr!)}` };
        case 'xen':
          return { ...base, ...at, text: `  xen ${r.op} ${nameAddress(host, r.addr!)}` };
        case 'hypercall':
          return { ...base, text: `${who} hypercall ${r.detail}` };
        case 'wake':
          return { ...base, text: `${who} wakes (${r.detail})` };
        case 'start':
          return { ...base, text: `${who} starts ${p.name}` };
        case 'done':
          return { ...base, text: `${who} ${p.name} returns` };
        default:
          return { ...base, text: `${who} ${p.name} throws` };
      }
    });
  }
}

function url2name(url: string): string {
  const parts = url.split('/');
  const file = parts.pop() ?? url;
  const base = file.replace(/\.(m?[jt]s)$/, '');
  return base === 'scenario' || base === 'index' ? (parts.pop() ?? base) : base;
}
