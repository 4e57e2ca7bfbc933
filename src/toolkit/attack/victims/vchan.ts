// gnttab's libxenvchan as a victim of `gnttab attack vchan`: the frontend is
// the vchan server (it shares the control page and rings), the backend the
// client (it maps them). Non-blocking reads and writes until the toolstack
// says closed, then libxenvchan_close, the deferred ends of access, and the
// xenstore connection closed.
import type { GuestContext } from '../../../guest/context.ts';
import { XenError } from '../../../guest/xen-error.ts';
import { connectVchanServices } from '../../../io/vchan/services.ts';
import { Vchan } from '../../../io/vchan/vchan.ts';
import { KEY_EVENT_CHANNEL, parseU32, peerClosed, type VictimArgs } from '../victim.ts';

export interface VchanVictimResult {
  role: 'frontend' | 'backend';
  connected: boolean;
  /** Why a client could not connect (the server's page was garbage, say). */
  setupError?: string;
  bytesRead: number;
  bytesWritten: number;
  /** is_open() went to 0 before the toolstack said closed. */
  sawPeerClose: boolean;
  deferredLeft: number;
}

const DEFERRED_WAIT_MS = 4000;

export default async function vchanVictim(ctx: GuestContext, a: VictimArgs): Promise<VchanVictimResult> {
  const svc = connectVchanServices(ctx, { gnttabOptions: { version: a.gnttabVersion } });
  svc.gnttab.deferred.freePerIteration = 0;
  const r: VchanVictimResult = {
    role: a.role,
    connected: false,
    bytesRead: 0,
    bytesWritten: 0,
    sawPeerClose: false,
    deferredLeft: 0,
  };
  let last = Number.NEGATIVE_INFINITY;
  const closed = async () => {
    if (ctx.clock.now() - last < 20) return false;
    last = ctx.clock.now();
    return peerClosed(svc.xs, a.path);
  };
  let v: Vchan | null = null;
  if (a.role === 'frontend') {
    v = await Vchan.serverInit(svc, a.peer, a.path, 1024, 8192);
  } else {
    while (v === null && !(await closed())) {
      const port = parseU32(await svc.xs.read(`${a.path}/${KEY_EVENT_CHANNEL}`).catch(() => ''));
      if (port === null) {
        await ctx.clock.sleep(2);
        continue;
      }
      try {
        v = await Vchan.clientInit(svc, a.peer, a.path);
      } catch (e) {
        // A hostile server's page: clientInit undoes what it did; wait for the end.
        r.setupError = e instanceof Error ? e.message : String(e);
        break;
      }
    }
  }
  if (v !== null) {
    r.connected = true;
    v.blocking = false;
    const buf = new Uint8Array(4096);
    const out = new Uint8Array(777).map((_, i) => i & 0xff);
    while (!(await closed())) {
      let work = false;
      if (v.isOpen() === 0) r.sawPeerClose = true;
      else {
        try {
          const n = await v.read(buf);
          if (n > 0) {
            r.bytesRead += n;
            work = true;
          }
          const w = await v.write(out);
          if (w > 0) {
            r.bytesWritten += w;
            work = true;
          }
        } catch (e) {
          // libxenvchan's -1 (EPIPE: the peer closed; a failed notification): wait for the toolstack.
          if (!(e instanceof XenError)) throw e;
          r.sawPeerClose = true;
        }
      }
      svc.events.poll();
      if (!work) await ctx.clock.sleep(2);
    }
    await v.close();
  } else {
    while (!(await closed())) await ctx.clock.sleep(5);
  }
  const deadline = ctx.clock.now() + DEFERRED_WAIT_MS;
  while (svc.gnttab.deferredCount > 0 && ctx.clock.now() < deadline) await ctx.clock.sleep(50);
  r.deferredLeft = svc.gnttab.deferredCount;
  await svc.xs.close();
  return r;
}
