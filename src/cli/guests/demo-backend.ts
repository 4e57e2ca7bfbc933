// The demo's backend (runs in its domain's worker thread): a vchan client that
// maps the frontend's rings and checks every byte it reads.
import type { GuestContext } from '../../guest/context.ts';
import { XenError } from '../../guest/xen-error.ts';
import { connectVchanServices } from '../../io/vchan/services.ts';
import { Vchan } from '../../io/vchan/vchan.ts';
import {
  BACKEND_CLOSED,
  BACKEND_CONNECTED,
  BACKEND_DONE,
  BYTES_RECEIVED,
  CONNECTED_AT,
  checkPattern,
  type DemoGuestArgs,
  DONE_AT,
  FIRST_MISMATCH,
  FRONTEND_PUBLISHED,
  MAY_CLOSE,
  MISMATCHES,
  views,
  wallMs,
} from '../demo-protocol.ts';

export default async function backend(
  ctx: GuestContext,
  a: DemoGuestArgs,
): Promise<{ received: number; mismatches: number }> {
  const { f64, i32 } = views(a.progress);
  f64[FIRST_MISMATCH] = -1;
  const svc = connectVchanServices(ctx);
  // Paced: once the frontend has granted and published its rings, they stand unmapped for a while.
  if (a.paceMs > 0) {
    while (Atomics.load(i32, FRONTEND_PUBLISHED) === 0) await ctx.clock.sleep(10);
    await ctx.clock.sleep(a.paceMs);
  }
  // The server publishes ring-ref and event-channel under its path; connect once it has.
  let v: Vchan | null = null;
  for (let tries = 0; v === null; tries++) {
    try {
      v = await Vchan.clientInit(svc, a.peer, a.path);
    } catch (e) {
      // ENOENT: not published yet; anything else is a real failure.
      if (!(e instanceof XenError) || e.code !== 'ENOENT') throw e;
      if (tries > 5000) throw new Error(`no vchan server appeared under ${a.path}`, { cause: e });
      await ctx.clock.sleep(2);
    }
  }
  v.blocking = true;
  // Paced: mapped, before the first byte.
  if (a.paceMs > 0) await ctx.clock.sleep(a.paceMs);
  f64[CONNECTED_AT] = wallMs();
  Atomics.store(i32, BACKEND_CONNECTED, 1);
  const buf = new Uint8Array(a.chunk);
  let received = 0;
  let mismatches = 0;
  while (received < a.size) {
    const n = await v.read(buf.subarray(0, Math.min(buf.length, a.size - received)));
    if (n <= 0) throw new Error(`vchan read returned ${n} after ${received} bytes`);
    const [bad, first] = checkPattern(buf, received, n);
    if (bad > 0) {
      if (mismatches === 0) f64[FIRST_MISMATCH] = first;
      mismatches += bad;
      f64[MISMATCHES] = mismatches;
    }
    received += n;
    f64[BYTES_RECEIVED] = received;
  }
  f64[DONE_AT] = wallMs();
  Atomics.store(i32, BACKEND_DONE, 1);
  while (Atomics.load(i32, MAY_CLOSE) === 0) await ctx.clock.sleep(2);
  await v.close();
  await svc.xs.close();
  Atomics.store(i32, BACKEND_CLOSED, 1);
  return { received, mismatches };
}
