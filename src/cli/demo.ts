// `gnttab demo`: a backend domain and a frontend domain, each in its own worker
// thread over one machine memory; the frontend shares pages and streams data to
// the backend over vchan (grants, event channels, xenstore), the backend checks
// every byte. Then both grant tables are shown as they stood while connected,
// with the throughput, and everything is torn down and checked for leaks.
import type { TableSnapshot } from '../host/snapshot.ts';
import { type ThreadDomain, WorkerHost } from '../host/worker-host.ts';
import {
  BACKEND_CONNECTED,
  BACKEND_DONE,
  BYTES_RECEIVED,
  BYTES_SENT,
  CONNECTED_AT,
  type DemoGuestArgs,
  DONE_AT,
  FIRST_MISMATCH,
  MAY_CLOSE,
  MISMATCHES,
  PROGRESS_BYTES,
  views,
  wallMs,
} from './demo-protocol.ts';

export interface DemoOptions {
  /** Bytes to stream. */
  size: number;
  /** Grant-table layout of the frontend (the domain that shares its pages). */
  layout: 1 | 2;
  /** The vchan ring the frontend writes into, in bytes (a power of two, 1 KiB to 1 MiB). */
  ringSize: number;
  frontend: 'pv' | 'hvm';
  backend: 'pv' | 'hvm';
  /** Paced mode, for a viewer (see DemoGuestArgs.paceMs); default 0, full speed. */
  paceMs?: number;
}

/** For `gnttab demo --serve`: a trace ring for the host, and the host once it runs. */
export interface DemoHooks {
  traceSab?: SharedArrayBuffer;
  onHost?: (host: WorkerHost) => void;
}

export interface DemoProgress {
  received: number;
  size: number;
  elapsedMs: number;
}

export interface DemoReport {
  options: DemoOptions;
  ok: boolean;
  bytesSent: number;
  bytesReceived: number;
  mismatches: number;
  firstMismatch: number | null;
  elapsedMs: number;
  /** MB/s (10^6 bytes per second) from connection to the last byte checked. */
  throughputMBps: number;
  frontendDomid: number;
  backendDomid: number;
  /** Both domains' grant tables while the channel was up. */
  tables: TableSnapshot[];
  /** After teardown: invariant violations and anything left behind (all empty when clean). */
  invariants: string[];
  leftovers: string[];
  console: Record<string, readonly string[]>;
}

/** Accepted ring sizes: what libxenvchan can place (2^10 .. 2^20). */
export function validRingSize(n: number): boolean {
  return Number.isInteger(n) && n >= 1024 && n <= 1 << 20 && (n & (n - 1)) === 0;
}

function guestUrl(name: string): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./guests/${name}.${ext}`, import.meta.url);
}

export async function runDemo(
  o: DemoOptions,
  onProgress?: (p: DemoProgress) => void,
  hooks: DemoHooks = {},
): Promise<DemoReport> {
  if (!validRingSize(o.ringSize))
    throw new RangeError(
      `the ring size must be a power of two from 1024 to 1048576 bytes, got ${o.ringSize}`,
    );
  if (!(Number.isSafeInteger(o.size) && o.size > 0))
    throw new RangeError(`the size must be a positive number of bytes, got ${o.size}`);
  const ringPages = Math.max(1, o.ringSize / 4096);
  const frontKiB = 2048 + ringPages * 4;
  const host = await WorkerHost.start({
    memoryMiB: 64 + Math.ceil(frontKiB / 1024),
    xenstore: true,
    ...(hooks.traceSab !== undefined ? { traceSab: hooks.traceSab } : {}),
  });
  hooks.onHost?.(host);
  const paceMs = o.paceMs ?? 0;
  try {
    const back: ThreadDomain = await host.createDomain({ kind: o.backend, memoryKiB: 2048 });
    const front: ThreadDomain = await host.createDomain({ kind: o.frontend, memoryKiB: frontKiB });
    const progress = new SharedArrayBuffer(PROGRESS_BYTES);
    const { f64, i32 } = views(progress);
    const path = `/local/domain/${front.domid}/data/vchan`;
    const chunk = Math.min(64 * 1024, o.ringSize * 4);
    const common = { progress, size: o.size, ringSize: o.ringSize, chunk, layout: o.layout, path, paceMs };
    const backArgs: DemoGuestArgs = { ...common, peer: front.domid };
    const frontArgs: DemoGuestArgs = { ...common, peer: back.domid };
    const backDone = host.spawn(back, guestUrl('demo-backend'), backArgs);
    const frontDone = host.spawn(front, guestUrl('demo-frontend'), frontArgs);
    // If either guest crashes, stop waiting for progress.
    let failure: unknown = null;
    const watch = (p: Promise<unknown>) =>
      p.catch((e: unknown) => {
        failure ??= e;
      });
    void watch(backDone);
    void watch(frontDone);

    while (Atomics.load(i32, BACKEND_DONE) === 0 && failure === null) {
      await new Promise((r) => setTimeout(r, 50));
      // Rates count from the backend's connection, on the clock every thread shares.
      const connected = Atomics.load(i32, BACKEND_CONNECTED) === 1;
      onProgress?.({
        received: f64[BYTES_RECEIVED]!,
        size: o.size,
        elapsedMs: connected ? wallMs() - f64[CONNECTED_AT]! : 0,
      });
    }
    if (failure !== null) throw failure;
    // The backend's own clock: from connection to the last byte checked.
    const elapsedMs = Math.max(0.001, f64[DONE_AT]! - f64[CONNECTED_AT]!);
    // The channel is still up: look at both grant tables now.
    const tables = (await host.snapshot()).filter((t) => t.domid === front.domid || t.domid === back.domid);
    // Paced: the channel stays up, all data through, for a while.
    if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
    Atomics.store(i32, MAY_CLOSE, 1);
    await Promise.all([backDone, frontDone]);
    onProgress?.({ received: f64[BYTES_RECEIVED]!, size: o.size, elapsedMs });

    // Everything the channel used must be gone once both sides have closed.
    const leftovers: string[] = [];
    const after = await host.snapshot();
    for (const t of after) {
      const used = t.entries.filter((e) => e.ref >= 8 && (e.flags & 3) !== 0);
      if (used.length > 0) leftovers.push(`d${t.domid}: ${used.length} grant entries still in use`);
      if (t.mappings.length > 0)
        leftovers.push(`d${t.domid}: ${t.mappings.length} foreign mappings still held`);
    }
    if (host.xenstore !== null) {
      const keys = await host.xenstore
        .directory(`/local/domain/${front.domid}/data`)
        .catch(() => [] as string[]);
      if (keys.includes('vchan')) leftovers.push(`xenstore: ${path} was not removed`);
    }
    await host.destroyDomain(front.domid);
    await host.destroyDomain(back.domid);
    const invariants = await host.checkInvariants();
    const received = f64[BYTES_RECEIVED]!;
    const mismatches = f64[MISMATCHES]!;
    return {
      options: o,
      ok: received === o.size && mismatches === 0 && invariants.length === 0 && leftovers.length === 0,
      bytesSent: f64[BYTES_SENT]!,
      bytesReceived: received,
      mismatches,
      firstMismatch: mismatches > 0 ? f64[FIRST_MISMATCH]! : null,
      elapsedMs,
      throughputMBps: received / 1e6 / (elapsedMs / 1000),
      frontendDomid: front.domid,
      backendDomid: back.domid,
      tables,
      invariants,
      leftovers,
      console: {
        [`d${front.domid}`]: host.consoleOf(front.domid),
        [`d${back.domid}`]: host.consoleOf(back.domid),
      },
    };
  } finally {
    await host.shutdown();
  }
}
