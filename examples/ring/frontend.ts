// The ring example's frontend: shares one page as a ring.h ring with the
// backend, publishes it in xenstore (ring-ref, event-channel, state), sends
// requests, checks every response, then closes as a xenbus frontend does.
//   gnttab run examples/ring/frontend.ts examples/ring/backend.ts -- 100
import { connectVchanServices, FrontRing, type GuestContext, type RunGuestArgs } from 'gnttab';
import {
  backendPath,
  decodeResponse,
  encodeRequest,
  frontendPath,
  layout,
  removeUp,
  waitForKey,
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
} from './protocol.ts';

export default async function frontend(
  ctx: GuestContext,
  args: RunGuestArgs,
): Promise<{ requests: number; checked: number }> {
  const requests = Number(args.argv[0] ?? 64);
  const { gnttab, events, waiter, xs } = connectVchanServices(ctx);
  const me = frontendPath(args.self);
  const peer = backendPath(args.backend, args.self);

  // The ring page, granted to the backend, and a port it may bind.
  const page = gnttab.pages.alloc();
  const ring = FrontRing.xenInit(ctx.mem, page, 4096, layout);
  const ref = gnttab.grantForeignAccess(args.backend, gnttab.pages.gfnOf(page), false);
  const port = events.allocUnbound(args.backend);
  if (port < 0) throw new Error(`alloc_unbound failed (${port})`);
  let kicked = false;
  events.bind(port, () => {
    kicked = true;
  });
  await xs.write(`${me}/ring-ref`, String(ref));
  await xs.write(`${me}/event-channel`, String(port));
  await xs.write(`${me}/state`, String(XenbusStateInitialised));
  ctx.log(`shared ring ref ${ref}, port ${port}; waiting for the backend`);
  await waitForKey(
    xs,
    (r) => waiter.until(r),
    `${peer}/state`,
    (v) => v === String(XenbusStateConnected),
  );

  // Requests in as many batches as the ring needs; each response is checked.
  let sent = 0;
  let checked = 0;
  while (checked < requests) {
    while (sent < requests && !ring.full()) {
      ring.writeRequest(ring.reqProdPvt, encodeRequest(sent, sent, 2 * sent));
      ring.reqProdPvt += 1;
      sent++;
    }
    if (ring.pushRequestsAndCheckNotify()) events.send(port);
    for (;;) {
      while (ring.hasUnconsumedResponses()) {
        const r = decodeResponse(ring.copyResponse(ring.rspCons));
        ring.rspCons += 1;
        if (r.sum !== 3 * r.id) throw new Error(`response ${r.id}: sum ${r.sum}, want ${3 * r.id}`);
        checked++;
      }
      if (!ring.finalCheckForResponses()) break;
    }
    if (checked < sent) {
      kicked = false;
      await waiter.until(() => kicked || ring.hasUnconsumedResponses());
    }
  }
  ctx.log(`${checked} responses checked`);

  // Close: tell the backend, wait for it to unmap, then end access and clean up.
  await xs.write(`${me}/state`, String(XenbusStateClosing));
  await waitForKey(
    xs,
    (r) => waiter.until(r),
    `${peer}/state`,
    (v) => v === String(XenbusStateClosed),
  );
  events.unbind(port);
  events.close(port);
  if (!gnttab.tryEndForeignAccess(ref))
    throw new Error(`ref ${ref} is still mapped after the backend closed`);
  gnttab.pages.put(page);
  await removeUp(xs, me, `/local/domain/${args.self}/device`);
  await xs.close();
  return { requests, checked };
}
