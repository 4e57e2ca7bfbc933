// gnttab's own split driver as a victim of `gnttab attack ring`: Linux's
// grant-table driver, ring.h rings, event channels and the xenstore client,
// speaking the 'ring' protocol of victim.ts from either side. It trusts
// nothing on the shared page: requests and responses are copied once
// (RING_COPY_*), indices that claim more than the ring holds stop it, ids it
// did not issue are dropped, windows are checked before use; on "closed" it
// ends every grant (deferred while the dead peer's mappings go away), unmaps,
// closes its port, removes its keys and returns what it saw.
import { XEN_PAGE_SIZE } from '../../../abi/limits.ts';
import type { GuestContext } from '../../../guest/context.ts';
import { mapForeignRefs, unmapForeignRefs } from '../../../guest/gnttab/backend.ts';
import { BackRing, FrontRing } from '../../../io/ring.ts';
import { connectVchanServices } from '../../../io/vchan/services.ts';
import {
  ATTACK_RING,
  fillByte,
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  OP_READ,
  OP_WRITE,
  parseU32,
  peerClosed,
  REQ_GREF,
  REQ_ID,
  REQ_LENGTH,
  REQ_OFFSET,
  REQ_OP,
  RSP_ID,
  RSP_STATUS,
  type VictimArgs,
} from '../victim.ts';

export interface RingVictimResult {
  role: 'frontend' | 'backend';
  /** Frontend: requests issued and answered; backend: requests served and refused. */
  requests: number;
  answered: number;
  refused: number;
  /** Responses for ids not in flight (dropped). */
  badIds: number;
  /** READ windows whose bytes were not what the protocol says (the peer's business). */
  badData: number;
  /** The peer's indices claimed more than the ring holds: the connection was given up. */
  broken: boolean;
  deferredLeft: number;
}

const CLOSED_CHECK_MS = 20;
const MAX_IN_FLIGHT = 8;
const DEFERRED_WAIT_MS = 4000;

export default async function ringVictim(ctx: GuestContext, a: VictimArgs): Promise<RingVictimResult> {
  const svc = connectVchanServices(ctx, { gnttabOptions: { version: a.gnttabVersion } });
  // Linux's free_per_iteration: 0 frees every deferred entry the peer no longer maps at once.
  svc.gnttab.deferred.freePerIteration = 0;
  const r: RingVictimResult = {
    role: a.role,
    requests: 0,
    answered: 0,
    refused: 0,
    badIds: 0,
    badData: 0,
    broken: false,
    deferredLeft: 0,
  };
  if (a.role === 'frontend') await frontend(ctx, a, svc, r);
  else await backend(ctx, a, svc, r);
  const deadline = ctx.clock.now() + DEFERRED_WAIT_MS;
  while (svc.gnttab.deferredCount > 0 && ctx.clock.now() < deadline) await ctx.clock.sleep(50);
  r.deferredLeft = svc.gnttab.deferredCount;
  await svc.xs.close();
  return r;
}

type Services = ReturnType<typeof connectVchanServices>;

/** Every CLOSED_CHECK_MS, asks xenstore whether the toolstack said closed. */
function closedWatch(ctx: GuestContext, svc: Services, path: string): () => Promise<boolean> {
  let last = Number.NEGATIVE_INFINITY;
  return async () => {
    if (ctx.clock.now() - last < CLOSED_CHECK_MS) return false;
    last = ctx.clock.now();
    return peerClosed(svc.xs, path);
  };
}

async function frontend(ctx: GuestContext, a: VictimArgs, svc: Services, r: RingVictimResult): Promise<void> {
  const { gnttab: gt, pages, events, xs } = svc;
  const mem = ctx.mem;
  const ringPage = pages.alloc();
  const ringRef = gt.grantForeignAccess(a.peer, pages.gfnOf(ringPage), false);
  if (ringRef < 0) throw new Error(`no grant ref for the ring (${ringRef})`);
  const front = FrontRing.xenInit(mem, ringPage, XEN_PAGE_SIZE, ATTACK_RING);
  const port = events.allocUnbound(a.peer);
  if (port < 0) throw new Error(`alloc_unbound failed (${port})`);
  events.bind(port, () => {});
  await xs.write(`${a.path}/${KEY_RING_REF}`, String(ringRef));
  await xs.write(`${a.path}/${KEY_EVENT_CHANNEL}`, String(port));
  const inFlight = new Map<
    number,
    { ref: number; page: number; op: number; offset: number; length: number }
  >();
  let nextId = 1;
  const closed = closedWatch(ctx, svc, a.path);
  while (!(await closed())) {
    let work = false;
    while (!r.broken && !front.full() && inFlight.size < MAX_IN_FLIGHT) {
      const page = pages.alloc();
      if (page < 0) break; // the peer still maps the rest: wait for responses
      const id = nextId++;
      const op = id % 2 === 0 ? OP_READ : OP_WRITE;
      const offset = (id * 97) % 2048;
      const length = 1 + ((id * 131) % 2048);
      if (op === OP_WRITE) {
        const data = new Uint8Array(length);
        for (let i = 0; i < length; i++) data[i] = fillByte(id, i);
        mem.write(page + offset, data);
      }
      const ref = gt.grantForeignAccess(a.peer, pages.gfnOf(page), op === OP_WRITE);
      if (ref < 0) {
        pages.put(page);
        break;
      }
      const slot = front.requestAddr(front.reqProdPvt);
      mem.writeU64(slot + REQ_ID, id);
      mem.writeU16(slot + REQ_OP, op);
      mem.writeU32(slot + REQ_GREF, ref);
      mem.writeU16(slot + REQ_OFFSET, offset);
      mem.writeU16(slot + REQ_LENGTH, length);
      front.reqProdPvt = front.reqProdPvt + 1;
      inFlight.set(id, { ref, page, op, offset, length });
      r.requests++;
      work = true;
    }
    if (front.pushRequestsAndCheckNotify()) events.send(port);
    if (!r.broken) {
      const rp = front.sring.rspProd;
      mem.fence();
      if ((rp - front.rspCons) >>> 0 > front.size) {
        // Linux: "illegal number of responses", and the device is given up.
        ctx.log(`ring: rsp_prod ${rp} is past what the ring holds; giving the connection up`);
        r.broken = true;
      } else {
        while (front.rspCons !== rp) {
          const rsp = front.copyResponse(front.rspCons);
          front.rspCons = front.rspCons + 1;
          work = true;
          const dv = new DataView(rsp.buffer, rsp.byteOffset, rsp.byteLength);
          const id = Number(dv.getBigUint64(RSP_ID, true));
          const req = inFlight.get(id);
          if (req === undefined) {
            r.badIds++;
            continue;
          }
          inFlight.delete(id);
          const status = dv.getInt32(RSP_STATUS, true);
          if (status === 0) r.answered++;
          else r.refused++;
          if (status === 0 && req.op === OP_READ) {
            const got = mem.read(req.page + req.offset, req.length);
            if (got.some((b, i) => b !== fillByte(id, i))) r.badData++;
          }
          // Deferred while the peer still maps it; the page goes with the grant.
          gt.endForeignAccess(req.ref, req.page);
        }
      }
    }
    events.poll();
    if (!work) await ctx.clock.sleep(2);
  }
  for (const req of inFlight.values()) gt.endForeignAccess(req.ref, req.page);
  gt.endForeignAccess(ringRef, ringPage);
  events.close(port);
  for (const k of [KEY_RING_REF, KEY_EVENT_CHANNEL]) await xs.rm(`${a.path}/${k}`).catch(() => {});
}

async function backend(ctx: GuestContext, a: VictimArgs, svc: Services, r: RingVictimResult): Promise<void> {
  const { pages, events, xs } = svc;
  const mem = ctx.mem;
  const closed = closedWatch(ctx, svc, a.path);
  // The frontend's keys: decimal numbers, or keep waiting (garbage is the peer's problem).
  let keys: [number, number] | null = null;
  while (keys === null) {
    if (await closed()) return;
    const ref = parseU32(await xs.read(`${a.path}/${KEY_RING_REF}`).catch(() => ''));
    const port = parseU32(await xs.read(`${a.path}/${KEY_EVENT_CHANNEL}`).catch(() => ''));
    if (ref !== null && port !== null) keys = [ref, port];
    else await ctx.clock.sleep(2);
  }
  const ring = await mapForeignRefs(ctx, pages, a.peer, [keys[0]]);
  const lport = ring.mapping === null ? -1 : events.bindInterdomain(a.peer, keys[1]);
  if (ring.mapping === null || lport < 0) {
    ctx.log(`ring: cannot connect (map ${ring.rc}, bind ${lport}); waiting for closed`);
    r.broken = true;
    if (ring.mapping !== null) unmapForeignRefs(ctx, pages, ring.mapping);
    while (!(await closed())) await ctx.clock.sleep(5);
    return;
  }
  events.bind(lport, () => {});
  const back = BackRing.init(mem, ring.mapping.addr, XEN_PAGE_SIZE, ATTACK_RING);
  while (!(await closed())) {
    let work = false;
    if (!r.broken) {
      const rp = back.sring.reqProd;
      mem.fence();
      if (back.requestProdOverflow(rp)) {
        ctx.log(`ring: req_prod ${rp} is past what the ring holds; giving the connection up`);
        r.broken = true;
      }
      while (!r.broken && back.reqCons !== rp && !back.requestConsOverflow(back.reqCons)) {
        // One fetch into private memory; only the copy is looked at.
        const req = back.copyRequest(back.reqCons);
        back.reqCons = back.reqCons + 1;
        work = true;
        const dv = new DataView(req.buffer, req.byteOffset, req.byteLength);
        const id = dv.getBigUint64(REQ_ID, true);
        const op = dv.getUint8(REQ_OP);
        const gref = dv.getUint32(REQ_GREF, true);
        const offset = dv.getUint16(REQ_OFFSET, true);
        const length = dv.getUint16(REQ_LENGTH, true);
        let status = -1;
        if ((op === OP_READ || op === OP_WRITE) && length > 0 && offset + length <= XEN_PAGE_SIZE) {
          const m = await mapForeignRefs(ctx, pages, a.peer, [gref], op === OP_WRITE);
          if (m.mapping !== null) {
            if (op === OP_READ) {
              const data = new Uint8Array(length);
              for (let i = 0; i < length; i++) data[i] = fillByte(Number(id & 0xffn), i);
              mem.write(m.mapping.addr + offset, data);
            } else {
              const got = mem.read(m.mapping.addr + offset, length);
              if (got.some((b, i) => b !== fillByte(Number(id & 0xffn), i))) r.badData++;
            }
            const u = unmapForeignRefs(ctx, pages, m.mapping);
            if (u.rc !== 0) ctx.log(`ring: unmap of ref ${gref} failed (${u.rc})`);
            status = 0;
          }
        }
        r.requests++;
        if (status === 0) r.answered++;
        else r.refused++;
        const slot = back.responseAddr(back.rspProdPvt);
        mem.writeU64(slot + RSP_ID, id);
        mem.writeU32(slot + RSP_STATUS, status >>> 0);
        back.rspProdPvt = back.rspProdPvt + 1;
      }
      if (back.pushResponsesAndCheckNotify()) events.send(lport);
    }
    events.poll();
    if (!work) await ctx.clock.sleep(2);
  }
  unmapForeignRefs(ctx, pages, ring.mapping);
  events.close(lport);
}
