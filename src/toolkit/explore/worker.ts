// One guest of an explored scenario, in its own worker thread. It runs only
// while it holds the baton: every shared-word step, hypercall and wait hands
// the baton to the explorer and blocks until the explorer picks this guest
// again. Time is the explorer's virtual clock; timers are fired when the
// explorer says they are due. Hypercalls run in the explorer's thread.
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { GuestContext, WaitResult } from '../../guest/context.ts';
import { GuestMemory } from '../../machine/guest-memory.ts';
import { MachineMemory } from '../../machine/machine-memory.ts';
import { hypercallRegisters, u64 } from '../../xen/registers.ts';
import {
  B_ARGS,
  B_NR,
  BIGINTS,
  BUDGET,
  boardKey,
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
  MAX_NOTIFY,
  MAX_WAITS,
  NARGS,
  NNOTIFY,
  NWAIT,
  NWOKEN,
  OP,
  OP_CODE,
  R_ABORT,
  RESUME,
} from './control.ts';
import { type Board, type ExploreArgs, loadScenario, type Scenario } from './scenario.ts';

export interface RunMessage {
  type: 'run';
  module: string;
  params: unknown;
  guest: string;
  machineSab: SharedArrayBuffer;
  boardSab: SharedArrayBuffer;
  domid: number;
  kind: 'pv' | 'hvm';
  root: number;
  start: GuestContext['start'];
  domids: Record<string, number>;
}

export interface ResultMessage {
  type: 'result';
  ok: boolean;
  aborted: boolean;
  result?: unknown;
  error?: { name: string; message: string; stack: string };
  log: string[];
}

/** Thrown into guest code to unwind it when the explorer abandons a schedule. */
class AbortSchedule extends Error {
  constructor() {
    super('schedule abandoned by the explorer');
    this.name = 'AbortSchedule';
  }
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

interface Waiter {
  resolve: (r: WaitResult) => void;
  cancel: () => void;
}

const data = workerData as { control: SharedArrayBuffer; port: MessagePort };
const ctl = new Control(data.control);
const port = data.port;
/** Scenario modules already imported, by URL and parameters. */
const loaded = new Map<string, Scenario>();

// Between schedules the thread sleeps on the baton; the explorer posts the
// next run on the port and hands the baton over. No event-loop turn needed.
for (;;) {
  ctl.take(1);
  let got = receiveMessageOnPort(port);
  while (got === undefined) got = receiveMessageOnPort(port);
  const m = got.message as RunMessage | { type: 'exit' };
  if (m.type === 'exit') break;
  await runGuest(m);
}
port.close();

async function runGuest(m: RunMessage): Promise<void> {
  let aborted = false;
  let now = 0;
  let seq = 0;
  const notifies: number[] = [];
  let overflow = false;
  const timers: Timer[] = [];
  const waiters = new Map<number, Waiter[]>();
  const log: string[] = [];
  /** Steps this guest may still take without asking (the explorer's picks, known ahead). */
  let budget = 0;
  let local = 0;

  const flushNotifies = () => {
    const n = overflow ? -1 : notifies.length;
    ctl.i32[NNOTIFY] = n;
    for (let i = 0; i < notifies.length; i++) ctl.f64[F_NOTIFY + i] = notifies[i]!;
    notifies.length = 0;
    overflow = false;
  };
  const noteNotify = (key: number) => {
    // Someone may be able to run now: the explorer decides the next step afresh.
    budget = 0;
    if (notifies.length < MAX_NOTIFY) notifies.push(key);
    else overflow = true;
  };
  /** Stops here until the explorer schedules this guest again; its answer. */
  const report = (kind: number): number => {
    flushNotifies();
    ctl.i32[KIND] = kind;
    ctl.i32[LOCAL] = local;
    local = 0;
    ctl.give(0);
    ctl.take(1);
    now = ctl.f64[F_NOW]!;
    budget = ctl.i32[BUDGET]!;
    return ctl.i32[RESUME]!;
  };
  const step = (code: number, addr: number) => {
    if (aborted) throw new AbortSchedule();
    if (budget > 0) {
      budget--;
      ctl.f64[F_LOCAL + 2 * local] = code;
      ctl.f64[F_LOCAL + 2 * local + 1] = addr;
      local++;
      return;
    }
    ctl.i32[OP] = code;
    ctl.f64[F_ADDR] = addr;
    if (report(K_STEP) === R_ABORT) {
      aborted = true;
      throw new AbortSchedule();
    }
  };
  const setTimer = (ms: number, fn: () => void): (() => void) => {
    const t: Timer = { at: now + Math.max(0, ms), seq: seq++, fn, cancelled: false };
    timers.push(t);
    return () => {
      t.cancelled = true;
    };
  };
  /** Blocks (as far as the explorer knows) on `key` while `current()` equals `expected`. */
  const waitOn = (key: number, seen: number, expected: number, ms: number): Promise<WaitResult> => {
    if (seen !== expected) return Promise.resolve('not-equal');
    return new Promise((resolve) => {
      const w: Waiter = { resolve, cancel: () => {} };
      const list = waiters.get(key) ?? [];
      list.push(w);
      waiters.set(key, list);
      if (Number.isFinite(ms))
        w.cancel = setTimer(ms, () => {
          const l = waiters.get(key)?.filter((x) => x !== w) ?? [];
          if (l.length === 0) waiters.delete(key);
          else waiters.set(key, l);
          resolve('timed-out');
        });
    });
  };

  let outcome: ResultMessage;
  try {
    const key = `${m.module}\n${JSON.stringify(m.params) ?? ''}`;
    let scenario = loaded.get(key);
    if (scenario === undefined) {
      scenario = await loadScenario(m.module, m.params);
      loaded.set(key, scenario);
    }
    const main = scenario.guests[m.guest];
    if (typeof main !== 'function') throw new TypeError(`the scenario has no guest program "${m.guest}"`);
    const machine = new MachineMemory(m.machineSab.byteLength / 4096, m.machineSab);
    machine.words.interpose = (op, addr) => step(OP_CODE.get(op)!, addr);
    machine.words.onNotify = noteNotify;
    const mem = new GuestMemory(machine, { domid: m.domid, kind: m.kind, root: m.root });
    const boardWords = new Int32Array(m.boardSab);
    const board: Board = {
      get(i) {
        step(OP_CODE.get('board-load')!, boardKey(i));
        return Atomics.load(boardWords, i);
      },
      set(i, v) {
        step(OP_CODE.get('board-store')!, boardKey(i));
        Atomics.store(boardWords, i, v);
        noteNotify(boardKey(i));
      },
      async until(i, pred, ms = Number.POSITIVE_INFINITY) {
        const deadline = now + ms;
        for (;;) {
          const v = board.get(i);
          if (pred(v)) return v;
          if (now >= deadline) return null;
          await waitOn(boardKey(i), v, v, deadline - now);
        }
      },
    };
    const ctx: GuestContext = {
      start: m.start,
      mem,
      hypercall(nr, ...args) {
        if (aborted) throw new AbortSchedule();
        // Registers as in every mode (a TypeError here, in the guest's thread, for a bad value).
        const r = hypercallRegisters(nr, args);
        let big = typeof r.nr === 'bigint' ? 1 << MAX_ARGS : 0;
        r.args.forEach((a, i) => {
          if (typeof a === 'bigint') big |= 1 << i;
          ctl.b64[B_ARGS + i] = BigInt.asIntN(64, u64(a));
        });
        ctl.b64[B_NR] = BigInt.asIntN(64, u64(r.nr));
        ctl.i32[NARGS] = r.args.length;
        ctl.i32[BIGINTS] = big;
        if (report(K_HYPERCALL) === R_ABORT) {
          aborted = true;
          throw new AbortSchedule();
        }
        const errLen = ctl.i32[HCERR]!;
        if (errLen > 0) {
          const [name = 'Error', ...rest] = ctl.readText(errLen).split('\n');
          const e = new Error(rest.join('\n'));
          e.name = name;
          throw e;
        }
        return ctl.f64[F_RESULT]!;
      },
      clock: {
        now: () => now,
        setTimer,
        sleep: (ms) =>
          new Promise((resolve) => {
            setTimer(ms, resolve);
          }),
      },
      wait(addr, expected, ms) {
        const maddr = mem.wordAddr(addr);
        step(OP_CODE.get('wait32')!, maddr);
        return waitOn(maddr, Atomics.load(machine.words.i32, maddr >>> 2), expected | 0, ms);
      },
      log(line) {
        log.push(line);
      },
    };
    const args: ExploreArgs = { domids: m.domids, params: m.params, board };

    if (report(K_READY) === R_ABORT) throw new AbortSchedule();
    let settled: { ok: true; value: unknown } | { ok: false; error: unknown } | null = null;
    Promise.resolve()
      .then(() => main(ctx, args))
      .then(
        (value) => {
          settled = { ok: true, value };
        },
        (error: unknown) => {
          settled = { ok: false, error };
        },
      );
    for (;;) {
      // Every promise job of this guest runs before the next macrotask.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (settled !== null || aborted) break;
      const keys = [...waiters.keys()];
      if (keys.length > MAX_WAITS)
        throw new RangeError(`a guest may wait on at most ${MAX_WAITS} words at once`);
      ctl.i32[NWAIT] = keys.length;
      keys.forEach((k, i) => {
        ctl.f64[F_WAITS + i] = k;
      });
      let due = Number.POSITIVE_INFINITY;
      for (const t of timers) if (!t.cancelled && t.at < due) due = t.at;
      ctl.f64[F_TIMER] = due;
      if (report(K_IDLE) === R_ABORT) {
        aborted = true;
        break;
      }
      const nWoken = ctl.i32[NWOKEN]!;
      for (let i = 0; i < nWoken; i++) {
        const key = ctl.f64[F_WOKEN + i]!;
        const list = waiters.get(key) ?? [];
        waiters.delete(key);
        for (const w of list) {
          w.cancel();
          w.resolve('ok');
        }
      }
      // Due timers, in (time, order of creation) order.
      for (;;) {
        let next: Timer | undefined;
        for (const t of timers)
          if (
            !t.cancelled &&
            t.at <= now &&
            (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))
          )
            next = t;
        if (next === undefined) break;
        next.cancelled = true;
        next.fn();
      }
      for (let i = timers.length - 1; i >= 0; i--) if (timers[i]!.cancelled) timers.splice(i, 1);
    }
    const s = settled as { ok: true; value: unknown } | { ok: false; error: unknown } | null;
    if (aborted || s === null || (!s.ok && s.error instanceof AbortSchedule)) {
      outcome = { type: 'result', ok: false, aborted: true, log };
    } else if (s.ok) {
      outcome = { type: 'result', ok: true, aborted: false, result: s.value, log };
    } else {
      outcome = { type: 'result', ok: false, aborted: false, error: errorOf(s.error), log };
    }
  } catch (e) {
    outcome =
      e instanceof AbortSchedule
        ? { type: 'result', ok: false, aborted: true, log }
        : { type: 'result', ok: false, aborted: false, error: errorOf(e), log };
  }
  try {
    port.postMessage(outcome);
  } catch {
    port.postMessage({ ...outcome, result: String(outcome.result) });
  }
  ctl.i32[KIND] = outcome.ok || outcome.aborted ? K_DONE : K_ERROR;
  ctl.i32[LOCAL] = local;
  flushNotifies();
  ctl.give(0);
}

function errorOf(e: unknown): { name: string; message: string; stack: string } {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack ?? e.message };
  return { name: 'Error', message: String(e), stack: String(e) };
}
