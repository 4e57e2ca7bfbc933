// The demo's frontend (runs in its domain's worker thread): a vchan server that
// shares its ring pages with the backend and streams the pattern to it.
import type { GuestContext } from '../../guest/context.ts';
import { connectVchanServices } from '../../io/vchan/services.ts';
import { Vchan } from '../../io/vchan/vchan.ts';
import {
  BACKEND_CLOSED,
  BYTES_SENT,
  type DemoGuestArgs,
  FRONTEND_DONE,
  FRONTEND_PUBLISHED,
  fillPattern,
  MAY_CLOSE,
  views,
} from '../demo-protocol.ts';

export default async function frontend(
  ctx: GuestContext,
  a: DemoGuestArgs,
): Promise<{ sent: number; layout: number }> {
  const { f64, i32 } = views(a.progress);
  const svc = connectVchanServices(ctx, { gnttabOptions: { version: a.layout } });
  // Server: a small receive ring, a send ring of the size asked for.
  const v = await Vchan.serverInit(svc, a.peer, a.path, 1024, a.ringSize);
  v.blocking = true;
  Atomics.store(i32, FRONTEND_PUBLISHED, 1);
  const buf = new Uint8Array(a.chunk);
  let sent = 0;
  while (sent < a.size) {
    const n = Math.min(a.chunk, a.size - sent);
    const part = n === buf.length ? buf : buf.subarray(0, n);
    fillPattern(part, sent);
    const w = await v.write(part);
    if (w !== n) throw new Error(`vchan write returned ${w} after ${sent} bytes (the backend went away?)`);
    sent += n;
    f64[BYTES_SENT] = sent;
    if (a.paceMs > 0) await ctx.clock.sleep(a.paceMs / 20);
  }
  Atomics.store(i32, FRONTEND_DONE, 1);
  // The backend closes first (unmapping the rings), so ending access never has to wait.
  while (Atomics.load(i32, MAY_CLOSE) === 0 || Atomics.load(i32, BACKEND_CLOSED) === 0)
    await ctx.clock.sleep(2);
  // Paced: unmapped by the backend, still granted.
  if (a.paceMs > 0) await ctx.clock.sleep(a.paceMs);
  await v.close();
  await svc.xs.close();
  // Should the backend still map a page, its end of access is deferred (XSA-396): wait it out.
  for (let i = 0; i < 100 && svc.gnttab.deferredCount > 0; i++) await ctx.clock.sleep(100);
  return { sent, layout: svc.gnttab.version };
}
