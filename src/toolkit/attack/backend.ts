// The adversary as a backend (the side that maps): it maps and never unmaps
// (most of the time), reuses stale handles, fetches each request twice and
// acts on the second fetch, answers with ids nobody asked for and answers
// twice, copies with windows that leave the page, and writes garbage into the
// ring and vchan indices the victim reads. Over vchan it is libxenvchan's
// client.
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { ringSize, SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RING, SRING_RSP_PROD } from '../../io/ring.ts';
import {
  VCHAN_GRANTS,
  VCHAN_LEFT_CONS,
  VCHAN_LEFT_ORDER,
  VCHAN_LEFT_PROD,
  VCHAN_LIVE_WORD,
  VCHAN_NOTIFY_WORD,
  VCHAN_RIGHT_CONS,
  VCHAN_RIGHT_ORDER,
  VCHAN_RIGHT_PROD,
} from '../../io/vchan/layout.ts';
import { GuestFault } from '../../machine/guest-memory.ts';
import type { Peer } from './peer.ts';
import {
  ATTACK_RING,
  fillByte,
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  OP_READ,
  REQ_GREF,
  REQ_ID,
  REQ_LENGTH,
  REQ_OFFSET,
  REQ_OP,
  RSP_ID,
  RSP_STATUS,
} from './victim.ts';

export async function attackAsBackend(p: Peer): Promise<void> {
  const { ctx, rng, svc } = p;
  const mem = ctx.mem;
  const keys = await p.waitKeys([KEY_RING_REF, KEY_EVENT_CHANNEL]);
  const seenRefs = new Set<number>();
  let ringAddr = -1;
  let port = -1;
  if (keys === null) {
    p.log('connect', 'the victim published no ring-ref and event-channel: attacking blind');
  } else {
    const [ringRef, remotePort] = keys as [number, number];
    seenRefs.add(ringRef);
    const m = p.mapRef(p.peer, ringRef, false);
    ringAddr = m.mapping?.addr ?? -1;
    if (m.mapping !== null) p.scan(m.mapping.addr, XEN_PAGE_SIZE, `the ring page (ref ${ringRef})`);
    port = svc.events.bindInterdomain(p.peer, remotePort);
    p.log(
      'connect',
      `map ring ref ${ringRef}, bind port ${remotePort}`,
      `${p.statusName(m.status)}, port ${port}`,
    );
  }
  const size = ringSize(XEN_PAGE_SIZE, ATTACK_RING.entrySize);
  const slot = (idx: number) => ringAddr + SRING_RING + (idx & (size - 1)) * ATTACK_RING.entrySize;
  let reqCons = 0;
  let rspProdPvt = 0;
  const answered: number[] = [];
  /** vchan: the ring pages it mapped from grants[] (left first). */
  const vchanPages: number[] = [];
  if (ringAddr >= 0 && p.a.protocol === 'vchan') {
    const lo = mem.readU16(ringAddr + VCHAN_LEFT_ORDER);
    const ro = mem.readU16(ringAddr + VCHAN_RIGHT_ORDER);
    const n = (lo >= 12 && lo <= 20 ? 1 << (lo - 12) : 0) + (ro >= 12 && ro <= 20 ? 1 << (ro - 12) : 0);
    for (let i = 0; i < Math.min(n, 8); i++) {
      const ref = mem.readU32(ringAddr + VCHAN_GRANTS + 4 * i);
      seenRefs.add(ref);
      const m = p.mapRef(p.peer, ref, false);
      if (m.mapping !== null) vchanPages.push(m.mapping.addr);
      p.log('map', `vchan ring page ref ${ref} (never unmapped)`, p.statusName(m.status));
    }
    // cli_live = 1: connected (the low byte of the live word).
    const w = mem.load16(ringAddr + VCHAN_LIVE_WORD);
    mem.store16(ringAddr + VCHAN_LIVE_WORD, (w & 0xff00) | 1);
    if (port >= 0) svc.events.send(port);
  }
  const refs = () => [...seenRefs];

  const respond = (id: number, status: number) => {
    const s = slot(rspProdPvt);
    mem.writeU64(s + RSP_ID, id);
    mem.writeU32(s + RSP_STATUS, status >>> 0);
    rspProdPvt = (rspProdPvt + 1) >>> 0;
  };
  const push = () => {
    mem.fence();
    mem.store32(ringAddr + SRING_RSP_PROD, rspProdPvt);
    if (port >= 0) svc.events.send(port);
  };

  for (p.step = 1; ; p.step++) {
    p.maybeDie();
    await p.pace();
    const connected = ringAddr >= 0;
    const ring = connected && p.a.protocol === 'ring';
    const vchan = connected && p.a.protocol === 'vchan';
    const move = p.moveRng.weighted({
      serve: ring ? 24 : 0,
      badResponse: ring ? 8 : 0,
      garbageIndex: connected ? 5 : 0,
      repair: ring ? 3 : 0,
      scribble: connected ? 3 : 0,
      vchanWrite: vchan ? 14 : 0,
      vchanRead: vchan ? 14 : 0,
      live: vchan ? 4 : 0,
      notifyBits: vchan ? 3 : 0,
      map: 8,
      staleHandle: 4,
      copy: 5,
      scan: 4,
      flood: port >= 0 ? 3 : 0,
      version: 2,
      xenstore: 3,
    });
    try {
      switch (move) {
        case 'serve': {
          const rp = mem.load32(ringAddr + SRING_REQ_PROD);
          const n = (rp - reqCons) >>> 0;
          if (n > size) {
            p.log('serve', `req_prod ${rp} is ${n} past req_cons: the victim wrote a bad index`, 'skipped');
            reqCons = rp;
            break;
          }
          let served = 0;
          for (let i = 0; i < n; i++, reqCons = (reqCons + 1) >>> 0) {
            const s = slot(reqCons);
            // Double fetch: read the request, give the victim time, read it again and use that.
            const first = mem.read(s, ATTACK_RING.requestSize);
            await p.pace(1);
            const id = Number(mem.readU64(s + REQ_ID));
            const op = mem.readU16(s + REQ_OP) & 0xff;
            const gref = mem.readU32(s + REQ_GREF);
            const off = mem.readU16(s + REQ_OFFSET);
            const len = mem.readU16(s + REQ_LENGTH);
            const second = mem.read(s, ATTACK_RING.requestSize);
            if (first.some((b, k) => b !== second[k]))
              p.log('double-fetch', `request ${reqCons} changed between two fetches`);
            seenRefs.add(gref);
            const m = p.mapRef(p.peer, gref, op !== OP_READ);
            if (m.mapping !== null) {
              const end = Math.min(XEN_PAGE_SIZE, off + len);
              if (op === OP_READ)
                for (let k = off; k < end; k++)
                  mem.write(m.mapping.addr + k, Uint8Array.of(fillByte(id, k - off)));
              p.scan(m.mapping.addr, XEN_PAGE_SIZE, `ref ${gref} of d${p.peer}, mapped`);
              if (rng.chance(0.4) && p.unmap(m.mapping.addr, m.mapping.handle) === 0) m.mapping.live = false;
            }
            const bad = rng.weighted({ right: 8, random: 1, old: 1, twice: 1 });
            if (bad === 'random') respond(rng.u32(), 0);
            else if (bad === 'old' && answered.length > 0) respond(rng.pick(answered), 0);
            else {
              respond(id, m.status === 0 ? 0 : -1);
              if (bad === 'twice') respond(id, 0);
            }
            answered.push(id);
            if (answered.length > 64) answered.shift();
            served++;
          }
          push();
          p.log(
            'serve',
            `${served} request(s) fetched twice and answered${served > 0 ? `, rsp_prod ${rspProdPvt}` : ''}`,
          );
          break;
        }
        case 'badResponse': {
          const id = rng.pick([rng.u32(), answered[answered.length - 1] ?? 0, 0xffff_ffff]);
          const k = rng.range(1, 3);
          for (let i = 0; i < k; i++) respond(id, rng.pick([0, -1, 0x7fff_ffff]));
          push();
          p.log('bad-response', `${k} response(s) with id ${id} nobody is waiting for`);
          break;
        }
        case 'garbageIndex': {
          if (p.a.protocol === 'ring') {
            const field = rng.pick(['rsp_prod', 'req_event'] as const);
            const v = rng.pick([rng.u32(), rspProdPvt + 1000, (rspProdPvt - 3) >>> 0]) >>> 0;
            mem.store32(ringAddr + (field === 'rsp_prod' ? SRING_RSP_PROD : SRING_REQ_EVENT), v);
            p.log('garbage-index', `${field} = ${v}`);
          } else {
            const field = rng.pick([
              ['left prod', VCHAN_LEFT_PROD],
              ['right cons', VCHAN_RIGHT_CONS],
              ['left cons', VCHAN_LEFT_CONS],
              ['right prod', VCHAN_RIGHT_PROD],
            ] as const);
            const v = rng.pick([rng.u32(), mem.load32(ringAddr + field[1]) + rng.range(1, 1 << 21)]) >>> 0;
            mem.store32(ringAddr + field[1], v);
            p.log('garbage-index', `vchan ${field[0]} = ${v}`);
          }
          if (port >= 0) svc.events.send(port);
          break;
        }
        case 'repair':
          mem.store32(ringAddr + SRING_RSP_PROD, rspProdPvt);
          p.log('repair-index', `rsp_prod back to ${rspProdPvt}`);
          break;
        case 'scribble': {
          const at = rng.range(SRING_RING, XEN_PAGE_SIZE - 16);
          mem.write(ringAddr + at, rng.bytes(16));
          p.log('scribble', `16 random bytes at offset ${at} of the shared page`);
          break;
        }
        case 'vchanWrite': {
          // The client writes the left ring.
          const order = mem.readU16(ringAddr + VCHAN_LEFT_ORDER);
          const sz =
            order === 10 || order === 11
              ? 1 << order
              : order === 12 && vchanPages.length > 0
                ? XEN_PAGE_SIZE
                : 0;
          if (sz === 0) break;
          const buf = order === 10 ? ringAddr + 1024 : order === 11 ? ringAddr + 2048 : vchanPages[0]!;
          const prod = mem.load32(ringAddr + VCHAN_LEFT_PROD);
          const n = rng.range(1, 512);
          for (let i = 0; i < n; i++) mem.write(buf + ((prod + i) & (sz - 1)), Uint8Array.of(rng.int(256)));
          mem.fence();
          mem.store32(ringAddr + VCHAN_LEFT_PROD, (prod + n) >>> 0);
          p.log(
            'vchan-write',
            `${n} bytes into the left ring`,
            port >= 0 ? svc.events.send(port) : 'no port',
          );
          break;
        }
        case 'vchanRead': {
          const order = mem.readU16(ringAddr + VCHAN_RIGHT_ORDER);
          if (order === 11) p.scan(ringAddr + 2048, 2048, 'the right ring');
          else if (order === 10) p.scan(ringAddr + 1024, 1024, 'the right ring');
          for (const pg of vchanPages) p.scan(pg, XEN_PAGE_SIZE, 'a vchan ring page');
          const prod = mem.load32(ringAddr + VCHAN_RIGHT_PROD);
          mem.store32(ringAddr + VCHAN_RIGHT_CONS, prod);
          p.log('vchan-read', `right cons = ${prod}`, port >= 0 ? svc.events.send(port) : 'no port');
          break;
        }
        case 'live': {
          const w = mem.load16(ringAddr + VCHAN_LIVE_WORD);
          const v = rng.pick([0, 1, 2, 0xff]);
          mem.store16(ringAddr + VCHAN_LIVE_WORD, (w & 0xff00) | v);
          p.log('vchan-live', `cli_live = ${v}`, port >= 0 ? svc.events.send(port) : 'no port');
          break;
        }
        case 'notifyBits': {
          const v = rng.int(0x10000);
          mem.store16(ringAddr + VCHAN_NOTIFY_WORD, v);
          p.log('vchan-notify', `notify bytes = 0x${v.toString(16)}`);
          break;
        }
        case 'map': {
          const ref =
            rng.weighted({ seen: 4, random: 2 }) === 'seen' && seenRefs.size > 0
              ? rng.pick(refs())
              : rng.int(64);
          const ro = rng.chance(0.5);
          const m = p.mapRef(p.peer, ref, ro);
          if (m.mapping !== null) p.scan(m.mapping.addr, XEN_PAGE_SIZE, `ref ${ref} of d${p.peer}, mapped`);
          p.log(
            'map',
            `ref ${ref} of d${p.peer}${ro ? ' read-only' : ''}, kept mapped`,
            p.statusName(m.status),
          );
          break;
        }
        case 'staleHandle':
          p.staleHandle();
          break;
        case 'copy': {
          const ref = seenRefs.size > 0 && rng.chance(0.8) ? rng.pick(refs()) : rng.int(64);
          const off = rng.pick([0, 1, 2048, 4095, rng.int(XEN_PAGE_SIZE)]);
          const len = rng.pick([1, 16, 4096 - off, 4096, 0xffff, rng.range(1, XEN_PAGE_SIZE)]);
          const dest = svc.pages.alloc();
          if (dest < 0) break;
          const st = p.copyFrom(p.peer, ref, off, len, dest);
          if (st === 0) p.scan(dest, XEN_PAGE_SIZE, `a copy of ref ${ref} of d${p.peer}`);
          svc.pages.free(dest);
          p.log('copy', `grant copy of ref ${ref} of d${p.peer}, ${off}+${len}`, p.statusName(st));
          break;
        }
        case 'scan':
          p.scanMappings();
          p.log(
            'scan',
            `${p.mappings.filter((m) => m.live).length} mapped pages read for the victim's memory`,
          );
          break;
        case 'flood':
          p.flood(port);
          break;
        case 'version':
          p.switchVersion();
          break;
        case 'xenstore':
          await p.xsGarbage([KEY_RING_REF, KEY_EVENT_CHANNEL, 'backend-feature', 'protocol']);
          break;
      }
    } catch (e) {
      // A move on a page it no longer maps (it unmapped or revoked it itself): its own fault.
      if (!(e instanceof GuestFault)) throw e;
      p.log('fault', `${move}: ${e.message}`);
    }
  }
}
