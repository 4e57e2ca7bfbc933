// A backend with a leak, for `gnttab attack`: it maps the frontend's ring,
// binds its event channel and refuses every request, which is fine; but when
// the toolstack says closed it closes the port and returns without unmapping
// the ring. The attacker's death does not remove a grantee's mapping (Xen
// keeps the page alive for whoever still maps it), so the mapping stays, and
// `gnttab attack` reports it:
//
//   gnttab attack examples/attack/leaky-backend.ts --as frontend --moves 100
import {
  ATTACK_RING,
  BackRing,
  connectVchanServices,
  type GuestContext,
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  mapForeignRefs,
  parseU32,
  peerClosed,
  REQ_ID,
  RSP_ID,
  RSP_STATUS,
  type VictimArgs,
} from 'gnttab';

export default async function leakyBackend(ctx: GuestContext, a: VictimArgs): Promise<string> {
  const { pages, events, xs } = connectVchanServices(ctx);
  let ref: number | null = null;
  let port: number | null = null;
  while (ref === null || port === null) {
    if (await peerClosed(xs, a.path)) return 'closed before the frontend was ready';
    ref = parseU32(await xs.read(`${a.path}/${KEY_RING_REF}`).catch(() => ''));
    port = parseU32(await xs.read(`${a.path}/${KEY_EVENT_CHANNEL}`).catch(() => ''));
    await ctx.clock.sleep(2);
  }
  const ring = await mapForeignRefs(ctx, pages, a.peer, [ref]);
  const local = ring.mapping === null ? -1 : events.bindInterdomain(a.peer, port);
  if (ring.mapping !== null && local >= 0) {
    const back = BackRing.init(ctx.mem, ring.mapping.addr, 4096, ATTACK_RING);
    while (!(await peerClosed(xs, a.path))) {
      const rp = back.sring.reqProd;
      if (back.requestProdOverflow(rp)) break;
      while (back.reqCons !== rp) {
        const id = new DataView(back.copyRequest(back.reqCons).buffer).getBigUint64(REQ_ID, true);
        back.reqCons = back.reqCons + 1;
        const slot = back.responseAddr(back.rspProdPvt);
        ctx.mem.writeU64(slot + RSP_ID, id);
        ctx.mem.writeU32(slot + RSP_STATUS, 0xffff_ffff); // -1: refused
        back.rspProdPvt = back.rspProdPvt + 1;
      }
      if (back.pushResponsesAndCheckNotify()) events.send(local);
      await ctx.clock.sleep(2);
    }
    events.close(local);
    // The bug: no unmapForeignRefs(ctx, pages, ring.mapping) here.
  }
  while (!(await peerClosed(xs, a.path))) await ctx.clock.sleep(5);
  await xs.close();
  return 'done';
}
