// What the web view costs a busy host: one domain doing hypercalls as fast as
// it can (GNTTABOP_query_size, the cheapest grant-table op), with nothing
// attached, and with the view attached: the trace ring on, the view server
// listening on 127.0.0.1 with one event-stream client reading it, draining the
// ring and reading the hypervisor's counters every 100 ms, looking at the state
// at most every 500 ms. Both run the same loop, in
// slices that let timers run between them, alternating, in the same process;
// the ratio of the medians is the slowdown (budget: 1.10).
//
//   npx tsx bench/view.bench.ts [--json] [--calls N] [--rounds R]
import os from 'node:os';
import { setImmediate as yieldToTimers } from 'node:timers/promises';
import { hostState } from '../src/host/host-state.ts';
import { VIEW_TRACE_RECORDS, ViewServer } from '../src/host/view-server.ts';
import { __HYPERVISOR_grant_table_op, GNTTABOP_query_size, Host } from '../src/index.ts';
import { TraceBuffer } from '../src/xen/trace.ts';

const json = process.argv.includes('--json');
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(name);
  const n = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  return Number.isInteger(n) && n > 0 ? n : dflt;
};
const CALLS = arg('--calls', 1_000_000);
const ROUNDS = arg('--rounds', 7);
const SLICE = 10_000;

const host = new Host({ memoryMiB: 16 });
const dom = host.createDomain({ kind: 'pv', memoryKiB: 256 });
// struct gnttab_query_size at 0x1000 of the domain's own memory: dom = DOMID_SELF.
const ARG = 0x1000;
dom.memory.writeU16(ARG, 0x7ff0);

async function loop(): Promise<number> {
  const t0 = performance.now();
  for (let done = 0; done < CALLS; done += SLICE) {
    for (let i = 0; i < SLICE; i++) {
      if (dom.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_query_size, ARG, 1) !== 0)
        throw new Error('query_size failed');
    }
    await yieldToTimers();
  }
  return performance.now() - t0;
}

const trace = new TraceBuffer(VIEW_TRACE_RECORDS);
const server = new ViewServer({
  title: 'bench',
  trace,
  state: () => hostState(host.hypervisor, host.xenstored),
});
const url = await server.listen();
// One page's worth of stream reader, counting what it gets.
let streamed = 0;
const abort = new AbortController();
const reader = fetch(`${url}api/events`, { signal: abort.signal })
  .then(async (r) => {
    for await (const chunk of r.body as AsyncIterable<Uint8Array>) streamed += chunk.length;
  })
  .catch(() => {});

const base: number[] = [];
const view: number[] = [];
await loop(); // warm-up, untimed
for (let r = 0; r < ROUNDS; r++) {
  host.hypervisor.trace = null;
  base.push(await loop());
  host.hypervisor.trace = trace;
  view.push(await loop());
}
host.hypervisor.trace = null;
abort.abort();
await reader;
await server.close();

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const mb = median(base);
const mv = median(view);
const result = {
  cores: os.availableParallelism(),
  callsPerRound: CALLS,
  rounds: ROUNDS,
  baselineMs: mb,
  viewMs: mv,
  baselineCallsPerSec: CALLS / (mb / 1000),
  viewCallsPerSec: CALLS / (mv / 1000),
  ratio: mv / mb,
  withinBudget: mv / mb <= 1.1,
  traceRecords: trace.written,
  traceLost: trace.lost,
  // The hypervisor's counters beside the ring: every call of the view's rounds, exactly.
  countedCalls: trace.totals().calls,
  countedExact: trace.totals().calls === ROUNDS * CALLS,
  streamedBytes: streamed,
  streamSeq: server.sequence,
};
if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
else {
  const f = (n: number) => Math.round(n).toLocaleString('en-US');
  process.stdout.write(
    [
      `view cost: ${f(CALLS)} query_size hypercalls per round, ${ROUNDS} rounds each way, ${result.cores} cores`,
      `  nothing attached:  median ${mb.toFixed(1)} ms  (${f(result.baselineCallsPerSec)} calls/s)`,
      `  view attached:     median ${mv.toFixed(1)} ms  (${f(result.viewCallsPerSec)} calls/s)`,
      `  ratio ${result.ratio.toFixed(3)} (budget 1.10: ${result.withinBudget ? 'within' : 'OVER'}); ` +
        `${f(trace.written)} records traced, ${f(trace.lost)} lost, ${f(streamed)} bytes streamed in ${server.sequence} messages`,
      `  ${f(result.countedCalls)} hypercalls counted (${result.countedExact ? 'exact' : `WRONG: ${f(ROUNDS * CALLS)} made`})`,
    ].join('\n') + '\n',
  );
}
