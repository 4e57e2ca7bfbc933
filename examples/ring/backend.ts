// The ring example's backend: waits for the frontend to publish its ring in
// xenstore, maps the ring page (xengnttab), binds the frontend's port, answers
// every request, and on the frontend's Closing unmaps, closes and says Closed.
import { BackRing, connectVchanServices, type GuestContext, type RunGuestArgs, Xengnttab } from 'gnttab';
import {
  backendPath,
  decodeRequest,
  encodeResponse,
  frontendPath,
  layout,
  removeUp,
  waitForKey,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
} from './protocol.ts';

export default async function backend(ctx: GuestContext, args: RunGuestArgs): Promise<{ answered: number }> {
  const { gntdev, events, waiter, xs } = connectVchanServices(ctx);
  const front = frontendPath(args.frontend);
  const me = backendPath(args.self, args.frontend);
  const sleep = (ready: () => boolean) => waiter.until(ready);

  await waitForKey(xs, sleep, `${front}/state`, (v) => v === String(XenbusStateInitialised));
  const ref = Number(await xs.read(`${front}/ring-ref`));
  const remotePort = Number(await xs.read(`${front}/event-channel`));

  using gnttab = Xengnttab.open(gntdev);
  using mapping = await gnttab.mapGrantRef(args.frontend, ref, true);
  const ring = BackRing.init(ctx.mem, mapping.addr, 4096, layout);
  const port = events.bindInterdomain(args.frontend, remotePort);
  if (port < 0) throw new Error(`bind_interdomain to d${args.frontend}:${remotePort} failed (${port})`);
  let kicked = false;
  events.bind(port, () => {
    kicked = true;
  });
  // The frontend may read our state (dom0's keys are its own otherwise).
  await xs.write(`${me}/state`, String(XenbusStateConnected));
  await xs.setPerms(`${me}/state`, [
    { domid: args.self, perm: 'n' },
    { domid: args.frontend, perm: 'r' },
  ]);
  ctx.log(`mapped ref ${ref} of d${args.frontend} at 0x${mapping.addr.toString(16)}, port ${port}`);

  let closing = false;
  const token = 'frontend-state';
  await xs.watch(`${front}/state`, token, () => {
    kicked = true;
  });
  let answered = 0;
  while (!closing) {
    for (;;) {
      while (ring.hasUnconsumedRequests()) {
        // RING_COPY_REQUEST: the frontend may rewrite the slot at any time.
        const r = decodeRequest(ring.copyRequest(ring.reqCons));
        ring.reqCons += 1;
        ring.writeResponse(ring.rspProdPvt, encodeResponse(r.id, r.a + r.b));
        ring.rspProdPvt += 1;
        answered++;
      }
      if (ring.pushResponsesAndCheckNotify()) events.send(port);
      if (!ring.finalCheckForRequests()) break;
    }
    kicked = false;
    closing = (await xs.read(`${front}/state`).catch(() => '')) === String(XenbusStateClosing);
    if (!closing) await sleep(() => kicked || ring.hasUnconsumedRequests());
  }
  await xs.unwatch(`${front}/state`, token);
  ctx.log(`${answered} requests answered; closing`);

  mapping.unmap();
  events.unbind(port);
  events.close(port);
  await xs.write(`${me}/state`, String(XenbusStateClosed));
  // The frontend removes its keys once it has seen Closed; then ours go too.
  await waitForKey(xs, sleep, `${front}/state`, (v) => v === null);
  await removeUp(xs, me, `/local/domain/${args.self}`);
  await xs.close();
  return { answered };
}
