// The adversary as a frontend (the side that grants): it grants and revokes at
// random moments, rewrites entries (flags, domid, frame, sub-page window,
// transitive ref) while the victim has them mapped, puts hostile requests on
// the ring and changes them after publishing (bait for a double fetch), and
// writes garbage into ring and vchan indices. Over vchan it is libxenvchan's
// server with a control page of its own making.

import {
  GTF_accept_transfer,
  GTF_PCD,
  GTF_permit_access,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
} from '../../abi/flags.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { FrontRing } from '../../io/ring.ts';
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
  KEY_EVENT_CHANNEL,
  KEY_RING_REF,
  OP_READ,
  OP_WRITE,
  REQ_GREF,
  REQ_ID,
  REQ_LENGTH,
  REQ_OFFSET,
  REQ_OP,
  RSP_ID,
} from './victim.ts';

interface Grant {
  ref: number;
  page: number;
  frame: number;
  /** Its entry is (as far as the attacker wrote it) a live grant to the victim. */
  granted: boolean;
}

const DATA_PAGES = 6;

export async function attackAsFrontend(p: Peer): Promise<void> {
  const { ctx, rng, svc } = p;
  const mem = ctx.mem;
  const grants: Grant[] = [];
  const grant = (readonly = false): Grant => {
    const page = svc.pages.alloc();
    if (page < 0) throw new Error('the attacker ran out of pages');
    mem.write(page, rng.bytes(XEN_PAGE_SIZE));
    const frame = svc.pages.gfnOf(page);
    const ref = svc.gnttab.grantForeignAccess(p.peer, frame, readonly);
    if (ref < 0) throw new Error(`the attacker could not grant (${ref})`);
    const g = { ref, page, frame, granted: true };
    grants.push(g);
    return g;
  };
  const ring = grant();
  for (let i = 0; i < DATA_PAGES; i++) grant();
  const port = svc.events.allocUnbound(p.peer);
  p.log(
    'setup',
    `ring page ref ${ring.ref}, data refs ${grants
      .slice(1)
      .map((g) => g.ref)
      .join(' ')}, port ${port}`,
  );

  let front: FrontRing | null = null;
  let nextId = 1;
  const inFlight: number[] = [];
  if (p.a.protocol === 'ring') {
    front = FrontRing.xenInit(mem, ring.page, XEN_PAGE_SIZE, ATTACK_RING);
  } else {
    // libxenvchan's control page, with orders and grant refs of its choosing.
    const orders = rng.weighted({ small: 4, pages: 4, bad: 1 });
    const [left, right] =
      orders === 'small' ? [10, 11] : orders === 'pages' ? [12, 12] : [rng.pick([0, 9, 21, 0xffff]), 13];
    mem.writeU16(ring.page + VCHAN_LEFT_ORDER, left);
    mem.writeU16(ring.page + VCHAN_RIGHT_ORDER, right);
    for (let i = 0; i < 2; i++) mem.writeU32(ring.page + VCHAN_GRANTS + 4 * i, grants[1 + i]!.ref);
    mem.writeU16(ring.page + VCHAN_LIVE_WORD, 0x0102); // srv_live 1, cli_live 2 (not yet connected)
    p.log('setup', `vchan control page: orders ${left}/${right}, grants ${grants[1]!.ref} ${grants[2]!.ref}`);
  }
  await svc.xs.write(`${p.a.path}/${KEY_RING_REF}`, String(ring.ref));
  await svc.xs.write(`${p.a.path}/${KEY_EVENT_CHANNEL}`, String(port));

  const connected = await p.waitMapped(ring.ref);
  p.log(
    'connect',
    connected ? `d${p.peer} mapped the ring` : `d${p.peer} did not map the ring: attacking anyway`,
  );
  const someGrant = (): Grant => rng.pick(grants);
  const mapped = (g: Grant): boolean => p.inUse(g.ref);

  for (p.step = 1; ; p.step++) {
    p.maybeDie();
    await p.pace();
    const moves =
      p.a.protocol === 'ring'
        ? {
            request: 30,
            consume: 12,
            bait: 8,
            revoke: 8,
            regrant: 8,
            rewrite: 12,
            garbageIndex: 3,
            repair: 3,
            flood: 3,
            version: 2,
            xenstore: 2,
            scan: 4,
            grantMore: grants.length < 24 ? 2 : 0,
          }
        : {
            vchanWrite: 16,
            vchanRead: 12,
            garbageIndex: 8,
            live: 4,
            notifyBits: 3,
            orders: 3,
            revoke: 6,
            regrant: 6,
            rewrite: 10,
            flood: 3,
            version: 2,
            xenstore: 2,
            scan: 5,
            request: 0,
            consume: 0,
            bait: 0,
            repair: 0,
            grantMore: 0,
          };
    const move = p.moveRng.weighted(moves as Record<string, number>);
    try {
      switch (move) {
        case 'request': {
          if (front === null) break;
          const n = rng.range(1, 4);
          const ids: number[] = [];
          for (let i = 0; i < n && !front.full(); i++) {
            const slot = front.requestAddr(front.reqProdPvt);
            const id = rng.chance(0.1) && inFlight.length > 0 ? rng.pick(inFlight) : nextId++;
            const op = rng.weighted({ read: 5, write: 5, bad: 1 });
            const g = rng.weighted({ data: 8, ring: 1, revoked: 1, random: 1 });
            const revoked = grants.filter((x) => !x.granted);
            const gref =
              g === 'ring'
                ? ring.ref
                : g === 'revoked' && revoked.length > 0
                  ? rng.pick(revoked).ref
                  : g === 'random'
                    ? rng.int(4096)
                    : rng.pick(grants.slice(1)).ref;
            const bad = rng.chance(0.15);
            const offset = bad ? rng.pick([4095, 4096, 0xffff, 4000]) : rng.int(XEN_PAGE_SIZE);
            const length = bad ? rng.pick([0, 4096, 0xffff, 200]) : rng.range(1, XEN_PAGE_SIZE - offset);
            mem.writeU64(slot + REQ_ID, id);
            mem.writeU16(
              slot + REQ_OP,
              op === 'read' ? OP_READ : op === 'write' ? OP_WRITE : rng.range(2, 255),
            );
            mem.writeU32(slot + REQ_GREF, gref);
            mem.writeU16(slot + REQ_OFFSET, offset);
            mem.writeU16(slot + REQ_LENGTH, length);
            front.reqProdPvt = front.reqProdPvt + 1;
            inFlight.push(id);
            ids.push(id);
          }
          front.pushRequests();
          const rc = svc.events.send(port);
          p.log('request', `${ids.length} request(s), ids ${ids.join(' ')}`, rc);
          break;
        }
        case 'consume': {
          if (front === null) break;
          const rp = front.sring.rspProd;
          const n = (rp - front.rspCons) >>> 0;
          if (n > front.size) {
            p.log('consume', `rsp_prod ${rp} is ${n} past rsp_cons: the victim wrote a bad index`, 'ignored');
            break;
          }
          const got: number[] = [];
          for (let i = 0; i < n; i++) {
            const slot = front.responseAddr(front.rspCons + i);
            got.push(Number(mem.readU64(slot + RSP_ID)));
            p.scan(slot, ATTACK_RING.entrySize, `response slot ${(front.rspCons + i) % front.size}`);
          }
          front.rspCons = rp;
          for (const id of got) {
            const k = inFlight.indexOf(id);
            if (k >= 0) inFlight.splice(k, 1);
          }
          p.log('consume', `${n} response(s)${got.length > 0 ? `, ids ${got.slice(0, 8).join(' ')}` : ''}`);
          break;
        }
        case 'bait': {
          // Change a request after publishing it: a backend that reads the slot twice acts on both.
          if (front === null || front.reqProdPvt === 0) break;
          const idx = (front.reqProdPvt - 1 - rng.int(Math.min(front.size, front.reqProdPvt))) >>> 0;
          const slot = front.requestAddr(idx);
          const field = rng.weighted({ gref: 3, window: 3, op: 1, id: 1 });
          if (field === 'gref') mem.writeU32(slot + REQ_GREF, rng.pick([ring.ref, rng.int(4096), 0]));
          else if (field === 'window') {
            mem.writeU16(slot + REQ_OFFSET, rng.pick([4095, 0, 2048]));
            mem.writeU16(slot + REQ_LENGTH, rng.pick([0xffff, 4096, 2049]));
          } else if (field === 'op') mem.writeU16(slot + REQ_OP, rng.range(0, 255));
          else mem.writeU64(slot + REQ_ID, rng.u32());
          p.log('rewrite-request', `request ${idx}: ${field} changed after it was published`);
          break;
        }
        case 'revoke': {
          const g = someGrant();
          const was = mapped(g);
          // A hostile granter does not compare-exchange: it just clears the entry.
          mem.store16(p.entryAddr(g.ref), 0);
          g.granted = false;
          p.log(
            'revoke',
            `ref ${g.ref}${g === ring ? ' (the ring)' : ''}, flags cleared${was ? ' while mapped' : ''}`,
          );
          break;
        }
        case 'regrant': {
          const g = rng.pick(grants.filter((x) => !x.granted).concat(ring));
          const ro = rng.chance(0.3);
          p.writeEntry(g.ref, p.peer, g.frame, GTF_permit_access | (ro ? GTF_readonly : 0));
          g.granted = true;
          p.log('grant', `ref ${g.ref} to d${p.peer}${ro ? ' read-only' : ''}`);
          break;
        }
        case 'grantMore': {
          const g = grant(rng.chance(0.3));
          p.log('grant', `a new page, ref ${g.ref}`);
          break;
        }
        case 'rewrite': {
          const g = someGrant();
          const was = mapped(g) ? ' while mapped' : '';
          const field = rng.weighted({ flags: 3, domid: 3, frame: 3, subPage: 2, transitive: 2 });
          const flags = p.flagsOf(g.ref);
          if (field === 'flags') {
            const nf = rng.pick([
              flags ^ GTF_readonly,
              GTF_accept_transfer,
              flags | GTF_PCD,
              0,
              rng.int(0x10000),
            ]);
            p.writeEntry(g.ref, p.peer, g.frame, nf);
            p.log(
              'rewrite-entry',
              `ref ${g.ref}: flags 0x${flags.toString(16)} -> 0x${nf.toString(16)}${was}`,
            );
          } else if (field === 'domid') {
            const d = p.oddDomid();
            p.writeEntry(g.ref, d, g.frame, GTF_permit_access);
            p.log('rewrite-entry', `ref ${g.ref}: domid -> ${d}${was}`);
          } else if (field === 'frame') {
            const f = rng.pick([someGrant().frame, ring.frame, 0xfffff, svc.pages.nrPages + 7, 0]);
            p.writeEntry(g.ref, p.peer, f, GTF_permit_access);
            p.log(
              'rewrite-entry',
              `ref ${g.ref}: frame 0x${g.frame.toString(16)} -> 0x${f.toString(16)}${was}`,
            );
          } else if (field === 'subPage') {
            const off = rng.pick([0, 1, 2048, 4095, 4096, 0xffff]);
            const len = rng.pick([0, 1, 2048, 4096, 0xffff]);
            if (p.version === 2)
              p.writeSubPage(g.ref, p.peer, g.frame, GTF_permit_access | GTF_sub_page, off, len);
            else p.writeEntry(g.ref, p.peer, g.frame, GTF_permit_access | GTF_sub_page);
            p.log('rewrite-entry', `ref ${g.ref}: sub-page window ${off}+${len} (v${p.version})${was}`);
          } else {
            const td = rng.pick([p.peer, ctx.start.domid, 0, 0x7ff0]);
            const tref = rng.pick([g.ref, ring.ref, rng.int(64)]);
            if (p.version === 2) p.writeTransitive(g.ref, p.peer, GTF_transitive, td, tref);
            else p.writeEntry(g.ref, p.peer, g.frame, GTF_transitive);
            p.log('rewrite-entry', `ref ${g.ref}: transitive to ref ${tref} of d${td} (v${p.version})${was}`);
          }
          g.granted = true;
          break;
        }
        case 'garbageIndex': {
          const base = ring.page;
          if (p.a.protocol === 'ring') {
            const field = rng.pick(['req_prod', 'rsp_event', 'req_event'] as const);
            const off = field === 'req_prod' ? 0 : field === 'req_event' ? 4 : 12;
            const v = rng.pick([
              rng.u32(),
              (front?.reqProdPvt ?? 0) + 1000,
              ((front?.reqProdPvt ?? 0) - 5) >>> 0,
            ]);
            mem.store32(base + off, v);
            svc.events.send(port);
            p.log('garbage-index', `${field} = ${v >>> 0}`);
          } else {
            const field = rng.pick([
              ['left cons', VCHAN_LEFT_CONS],
              ['right prod', VCHAN_RIGHT_PROD],
              ['left prod', VCHAN_LEFT_PROD],
              ['right cons', VCHAN_RIGHT_CONS],
            ] as const);
            const v = rng.pick([rng.u32(), mem.load32(base + field[1]) + rng.range(1, 1 << 21)]) >>> 0;
            mem.store32(base + field[1], v);
            svc.events.send(port);
            p.log('garbage-index', `vchan ${field[0]} = ${v}`);
          }
          break;
        }
        case 'repair': {
          if (front === null) break;
          mem.store32(ring.page, front.reqProdPvt);
          p.log('repair-index', `req_prod back to ${front.reqProdPvt}`);
          break;
        }
        case 'vchanWrite': {
          // The server writes the right ring: data, then prod, then a notification.
          const order = mem.readU16(ring.page + VCHAN_RIGHT_ORDER);
          const size = order === 10 || order === 11 ? 1 << order : order === 12 ? XEN_PAGE_SIZE : 0;
          if (size === 0) break;
          const at = order === 10 ? 1024 : order === 11 ? 2048 : 0;
          const buf = order === 12 ? grants[2]!.page : ring.page + at;
          const prod = mem.load32(ring.page + VCHAN_RIGHT_PROD);
          const n = rng.range(1, 512);
          for (let i = 0; i < n; i++) mem.write(buf + ((prod + i) & (size - 1)), Uint8Array.of(rng.int(256)));
          mem.fence();
          mem.store32(ring.page + VCHAN_RIGHT_PROD, (prod + n) >>> 0);
          p.log('vchan-write', `${n} bytes into the right ring`, svc.events.send(port));
          break;
        }
        case 'vchanRead': {
          const prod = mem.load32(ring.page + VCHAN_LEFT_PROD);
          const order = mem.readU16(ring.page + VCHAN_LEFT_ORDER);
          if (order === 10) p.scan(ring.page + 1024, 1024, 'the left ring');
          else if (order === 12) p.scan(grants[1]!.page, XEN_PAGE_SIZE, 'the left ring');
          mem.store32(ring.page + VCHAN_LEFT_CONS, prod);
          p.log('vchan-read', `left cons = ${prod}`, svc.events.send(port));
          break;
        }
        case 'live': {
          const v = rng.pick([0x0000, 0x0101, 0x0001, 0xff00, rng.int(0x10000)]);
          mem.writeU16(ring.page + VCHAN_LIVE_WORD, v);
          p.log('vchan-live', `live bytes = 0x${v.toString(16)}`, svc.events.send(port));
          break;
        }
        case 'notifyBits': {
          const v = rng.int(0x10000);
          mem.writeU16(ring.page + VCHAN_NOTIFY_WORD, v);
          p.log('vchan-notify', `notify bytes = 0x${v.toString(16)}`);
          break;
        }
        case 'orders': {
          const l = rng.pick([10, 11, 12, 20, 0, 0xffff]);
          const r = rng.pick([10, 11, 12, 20, 0, 0xffff]);
          mem.writeU16(ring.page + VCHAN_LEFT_ORDER, l);
          mem.writeU16(ring.page + VCHAN_RIGHT_ORDER, r);
          mem.writeU32(ring.page + VCHAN_GRANTS, rng.pick([rng.int(64), ring.ref]));
          p.log('vchan-orders', `orders ${l}/${r} and grants[0] rewritten after publishing`);
          break;
        }
        case 'flood':
          p.flood(port);
          break;
        case 'version':
          p.switchVersion();
          break;
        case 'xenstore':
          await p.xsGarbage([KEY_RING_REF, KEY_EVENT_CHANNEL, 'feature-x', 'protocol']);
          break;
        case 'scan':
          for (const g of grants) p.scan(g.page, XEN_PAGE_SIZE, `its own granted page (ref ${g.ref})`);
          p.log('scan', `${grants.length} granted pages read for the victim's memory`);
          break;
      }
    } catch (e) {
      // A move on a page it no longer maps (it unmapped or revoked it itself): its own fault.
      if (!(e instanceof GuestFault)) throw e;
      p.log('fault', `${move}: ${e.message}`);
    }
  }
}
