// The ring.h shared ring (src/io/ring.ts): layout golden vectors (guest-side.md
// §7.1), the front/back operations (§7.2), notification avoidance and the final
// check (§7.3), u32 index arithmetic (§8 item 1), between two domains of one
// Host: the frontend on its own RAM, the backend on its mapping of the grants.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { WorkerHost } from '../../src/host/worker-host.ts';
import { Host } from '../../src/index.ts';
import {
  BackRing,
  FrontRing,
  type RingLayout,
  ringEntrySize,
  ringSize,
  roundDownPow2,
  SharedRing,
  SRING_HEADER_SIZE,
  SRING_PAD,
  SRING_PAD_SIZE,
  SRING_PVT,
  SRING_PVT_SIZE,
  SRING_REQ_EVENT,
  SRING_REQ_PROD,
  SRING_RING,
  SRING_RSP_EVENT,
  SRING_RSP_PROD,
  sharedRingInit,
  shouldNotify,
  slotOffset,
} from '../../src/io/ring.ts';
import type { SharedOp } from '../../src/machine/shared-words.ts';
import ringGuest, { type RingGuestArgs, type RingGuestStats } from '../fixtures/ring-guest.ts';
import {
  type Env,
  finish,
  hex,
  KIND_PAIRS,
  type Kind,
  makeEnv,
  pattern,
  type Shared,
  share,
  unshare,
} from './ring-fixture.ts';

/** blkif: 112-byte requests (BLKIF_MAX_SEGMENTS_PER_REQUEST = 11), 16-byte responses. */
const BLKIF: RingLayout = { entrySize: ringEntrySize(112, 16, 8), requestSize: 112, responseSize: 16 };
const FRONT_BASE = 0x10000;
const U32 = 0x1_0000_0000;

interface Rig {
  env: Env;
  shared: Shared;
  front: FrontRing;
  back: BackRing;
}

/**
 * A ring over `pages` pages: the frontend initialises it (SHARED_RING_INIT),
 * grants it, the backend maps it. With `start`, the ring is one that has been
 * running for a long time: the shared words stand at `start` (events at
 * start + 1, as after a final check) and both ends ATTACH at `start`.
 */
function rig(env: Env, pages: number, layout: RingLayout, start?: number): Rig {
  const area = pages * 4096;
  let front: FrontRing;
  if (start === undefined) {
    front = FrontRing.xenInit(env.frontMem, FRONT_BASE, area, layout);
  } else {
    const s = new SharedRing(env.frontMem, FRONT_BASE);
    s.init();
    s.reqProd = start;
    s.rspProd = start;
    s.reqEvent = start + 1;
    s.rspEvent = start + 1;
    front = new FrontRing(env.frontMem, FRONT_BASE, area, layout, start);
  }
  const shared = share(env, FRONT_BASE, pages);
  const back = new BackRing(env.backMem, shared.backBase, area, layout, start ?? 0);
  return { env, shared, front, back };
}

function close(r: Rig): void {
  unshare(r.env, r.shared);
  finish(r.env);
}

function request(layout: RingLayout, id: number): Uint8Array {
  const b = pattern(layout.requestSize ?? layout.entrySize, id);
  new DataView(b.buffer).setUint32(0, id >>> 0, true);
  return b;
}

function response(layout: RingLayout, id: number): Uint8Array {
  const b = pattern(layout.responseSize ?? layout.entrySize, id ^ 0x5a5a5a5a);
  new DataView(b.buffer).setUint32(0, id >>> 0, true);
  return b;
}

function idOf(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(0, true);
}

/** The shared header's 64 bytes as the other side sees them (plain bytes, for golden vectors). */
function headerHex(r: Rig): string {
  return hex(r.env.backMem.read(r.shared.backBase, SRING_HEADER_SIZE));
}

describe('ring.h layout (guest-side.md §7.1)', () => {
  it('sring header offsets: req_prod 0, req_event 4, rsp_prod 8, rsp_event 12, pvt 16 (4), pad 20 (44), ring 64', () => {
    assert.deepEqual(
      [
        SRING_REQ_PROD,
        SRING_REQ_EVENT,
        SRING_RSP_PROD,
        SRING_RSP_EVENT,
        SRING_PVT,
        SRING_PVT_SIZE,
        SRING_PAD,
        SRING_PAD_SIZE,
        SRING_RING,
        SRING_HEADER_SIZE,
      ],
      [0, 4, 8, 12, 16, 4, 20, 44, 64, 64],
    );
  });

  it('__RD32 rounds down to a power of two', () => {
    const cases: [number, number][] = [
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 2],
      [36, 32],
      [63, 32],
      [64, 64],
      [4032, 2048],
      [0x7fff_ffff, 0x4000_0000],
      [0x8000_0000, 0x8000_0000],
      [0xffff_ffff, 0x8000_0000],
    ];
    for (const [x, want] of cases) assert.equal(roundDownPow2(x), want, `__RD32(${x})`);
  });

  it('ring entry = union of request and response: larger size rounded up to the alignment', () => {
    assert.equal(ringEntrySize(112, 16, 8), 112); // blkif
    assert.equal(ringEntrySize(12, 4, 4), 12); // netif tx: 12-byte request, 4-byte response
    assert.equal(ringEntrySize(8, 8, 4), 8); // netif rx
    assert.equal(ringEntrySize(13, 4, 8), 16);
    assert.equal(ringEntrySize(4, 13), 13);
    assert.throws(() => ringEntrySize(0, 4), RangeError);
  });

  it('nr_ents = (area − 64) / entry size, rounded down to a power of two', () => {
    const cases: [number, number, number][] = [
      // [area bytes, entry size, nr_ents]
      [4096, 112, 32], // blkif, one page: 36 -> 32 (Linux BLK_RING_SIZE)
      [8192, 112, 64], // 72 -> 64
      [16384, 112, 128], // 145 -> 128
      [65536, 112, 512], // 16 pages: 584 -> 512 (blkfront's largest ring)
      [4096, 12, 256], // netif tx: 336 -> 256 (NET_TX_RING_SIZE)
      [4096, 8, 256], // netif rx: 504 -> 256 (NET_RX_RING_SIZE)
      [4096, 64, 32], // 63 -> 32
      [4096, 63, 64], // exactly 64
      [4096, 1, 2048], // 4032 -> 2048
      [4096, 4032, 1],
      [4096, 4033, 0],
      [64, 1, 0],
      [8192, 100, 64], // 81 -> 64
      [16384, 512, 16], // 31 -> 16
    ];
    for (const [area, entry, want] of cases) assert.equal(ringSize(area, entry), want, `${area}/${entry}`);
    assert.throws(() => ringSize(63, 1), RangeError);
    assert.throws(() => ringSize(4096, 0), RangeError);
  });

  it('slot addresses: 64 + (idx & (size − 1)) × entry size, for any u32 index', () => {
    const cases: [number, number][] = [
      [0, 64],
      [1, 176],
      [31, 64 + 31 * 112],
      [32, 64],
      [33, 176],
      [0xffff_ffff, 64 + 31 * 112],
      [0xffff_ffe0, 64],
      [-1, 64 + 31 * 112], // -1 is 0xffffffff as a RING_IDX
    ];
    for (const [idx, off] of cases) assert.equal(slotOffset(idx, 32, 112), off, `idx ${idx}`);
    // Two pages of 100-byte entries: slot 40 straddles the page boundary.
    assert.equal(slotOffset(40, 64, 100), 4064);
    assert.equal(slotOffset(104, 64, 100), 4064);
  });

  it('a ring with no room for one entry, or a copy size larger than the slot, is refused', () => {
    const env = makeEnv('pv', 'pv');
    assert.throws(() => FrontRing.init(env.frontMem, FRONT_BASE, 4096, { entrySize: 4033 }), RangeError);
    assert.throws(
      () => new BackRing(env.backMem, FRONT_BASE, 4096, { entrySize: 16, requestSize: 17 }),
      RangeError,
    );
    assert.throws(() => new SharedRing(env.frontMem, FRONT_BASE + 2), RangeError);
    const f = FrontRing.xenInit(env.frontMem, FRONT_BASE, 4096, BLKIF);
    assert.throws(() => f.writeRequest(0, new Uint8Array(113)), RangeError);
    finish(env);
  });
});

describe('ring.h init and attach (guest-side.md §7.2)', () => {
  it('SHARED_RING_INIT writes the 64-byte header exactly: prods 0, events 1, pvt and pad zeroed; entries untouched', () => {
    const env = makeEnv('pv', 'hvm');
    env.frontMem.fill(FRONT_BASE, 4096, 0xff);
    sharedRingInit(env.frontMem, FRONT_BASE);
    const shared = share(env, FRONT_BASE, 1);
    assert.equal(
      hex(env.backMem.read(shared.backBase, 64)),
      `00000000010000000000000001000000${'00'.repeat(48)}`,
    );
    assert.equal(hex(env.backMem.read(shared.backBase + 64, 8)), 'ff'.repeat(8));
    unshare(env, shared);
    finish(env);
  });

  it('XEN_FRONT_RING_INIT = SHARED_RING_INIT + FRONT_RING_INIT; BACK_RING_INIT leaves the shared page alone', () => {
    const env = makeEnv('hvm', 'pv');
    env.frontMem.fill(FRONT_BASE, 64, 0xee);
    const r = rig(env, 1, BLKIF);
    assert.equal(headerHex(r), `00000000010000000000000001000000${'00'.repeat(48)}`);
    assert.equal([r.front.reqProdPvt, r.front.rspCons, r.front.size].join(), '0,0,32');
    assert.equal([r.back.rspProdPvt, r.back.reqCons, r.back.size].join(), '0,0,32');
    const before = headerHex(r);
    const b2 = BackRing.init(env.backMem, r.shared.backBase, 4096, BLKIF);
    assert.equal(b2.size, 32);
    assert.equal(headerHex(r), before);
    close(r);
  });

  it('FRONT_RING_INIT and the ATTACH forms only set the private indices (start as a u32)', () => {
    const env = makeEnv('pv', 'pv');
    env.frontMem.fill(FRONT_BASE, 64, 0xab);
    const f0 = FrontRing.init(env.frontMem, FRONT_BASE, 4096, BLKIF);
    assert.equal(hex(env.frontMem.read(FRONT_BASE, 64)), 'ab'.repeat(64));
    assert.deepEqual([f0.reqProdPvt, f0.rspCons], [0, 0]);
    const f = FrontRing.attach(env.frontMem, FRONT_BASE, 4096, BLKIF, -3);
    assert.deepEqual([f.reqProdPvt, f.rspCons], [0xffff_fffd, 0xffff_fffd]);
    const b = BackRing.attach(env.frontMem, FRONT_BASE, 4096, BLKIF, 0x1_0000_0005);
    assert.deepEqual([b.rspProdPvt, b.reqCons], [5, 5]);
    assert.equal(hex(env.frontMem.read(FRONT_BASE, 64)), 'ab'.repeat(64));
    f.reqProdPvt = U32 + 7;
    assert.equal(f.reqProdPvt, 7);
    finish(env);
  });

  it('pvt bytes are protocol-private: written by one end, read by the other', () => {
    const env = makeEnv('pv', 'hvm');
    const r = rig(env, 1, BLKIF);
    r.front.sring.setPvt(Uint8Array.of(1, 0, 0, 0)); // netif smartpoll_active
    assert.equal(hex(r.back.sring.pvt()), '01000000');
    assert.equal(hex(env.backMem.read(r.shared.backBase + 16, 4)), '01000000');
    close(r);
  });
});

describe('ring.h exchange between two domains (guest-side.md §7.2, §7.3, §8 item 1)', () => {
  for (const [fk, bk] of KIND_PAIRS) {
    it(`${fk} front, ${bk} back: 300 blkif-like requests and responses across the 2^32 wrap (ATTACH at 0xffffff80)`, () => {
      const env = makeEnv(fk, bk);
      const start = 0xffff_ff80;
      const r = rig(env, 1, BLKIF, start);
      const { front, back } = r;
      assert.equal(front.size, 32);
      let nextId = 1;
      let expectRsp = 1;
      let backAsleep = true; // it did its final check (req_event = start + 1)
      let frontAsleep = true;
      const batches = [1, 3, 32, 7, 31, 2, 16, 32, 5, 17];
      let total = 0;
      for (let round = 0; total < 300; round++) {
        // Frontend: queue a batch (no more than the free slots), push, notify if asked.
        const want = batches[round % batches.length]!;
        const n = Math.min(want, front.freeRequests(), 300 - total);
        assert.equal(front.freeRequests(), 32, 'every earlier request has had its response');
        for (let i = 0; i < n; i++) {
          front.writeRequest(front.reqProdPvt, request(BLKIF, nextId++));
          front.reqProdPvt++;
        }
        total += n;
        assert.equal(front.full(), n === 32);
        const notify = front.pushRequestsAndCheckNotify();
        assert.equal(notify, backAsleep, 'notify exactly when the backend asked to be woken');
        backAsleep = false;
        // Backend: blkback's loop (copy each request, then respond), then the final check.
        const rp = back.sring.reqProd;
        assert.equal(back.requestProdOverflow(rp), false);
        assert.equal(back.unconsumedRequests(), n);
        let rc = back.reqCons;
        while (rc !== rp) {
          assert.equal(back.requestConsOverflow(rc), false);
          const req = back.copyRequest(rc);
          rc = (rc + 1) >>> 0; // a RING_IDX: u32 arithmetic (§8 item 1)
          back.reqCons = rc;
          const id = idOf(req);
          assert.equal(hex(req), hex(request(BLKIF, id)));
          back.writeResponse(back.rspProdPvt, response(BLKIF, id));
          back.rspProdPvt++;
        }
        const rnotify = back.pushResponsesAndCheckNotify();
        assert.equal(rnotify, frontAsleep);
        frontAsleep = false;
        assert.equal(back.finalCheckForRequests(), false);
        backAsleep = true;
        assert.equal(front.sring.reqEvent, (back.reqCons + 1) >>> 0);
        // Frontend: take the responses off, then its final check.
        const sp = front.sring.rspProd;
        assert.equal(front.responseProdOverflow(sp), false);
        assert.equal(front.unconsumedResponses(), n);
        for (let i = front.rspCons; i !== sp; i = (i + 1) >>> 0) {
          const rsp = front.copyResponse(i);
          assert.equal(rsp.length, 16);
          assert.equal(hex(rsp), hex(response(BLKIF, expectRsp++)));
        }
        front.rspCons = sp;
        assert.equal(front.finalCheckForResponses(), false);
        frontAsleep = true;
      }
      assert.equal(expectRsp, 301);
      // Every index went once across 2^32: (start + 300) mod 2^32.
      const end = (start + 300) % U32;
      assert.equal(end, 0xac);
      assert.deepEqual(
        [front.reqProdPvt, front.rspCons, back.reqCons, back.rspProdPvt],
        [end, end, end, end],
      );
      assert.deepEqual([back.sring.reqProd, back.sring.rspProd], [end, end]);
      assert.deepEqual([front.sring.reqEvent, front.sring.rspEvent], [end + 1, end + 1]);
      close(r);
    });
  }

  it('both ends see the same bytes at the slot the macros name (v2 grant table on the frontend)', () => {
    const env = makeEnv('hvm', 'pv', 2);
    const r = rig(env, 1, BLKIF, 0xffff_ffff);
    r.front.writeRequest(0xffff_ffff, request(BLKIF, 77));
    r.front.writeRequest(0, request(BLKIF, 78));
    r.front.reqProdPvt += 2;
    r.front.pushRequests();
    assert.equal(r.back.requestAddr(0xffff_ffff) - r.shared.backBase, 64 + 31 * 112);
    assert.equal(r.back.requestAddr(0) - r.shared.backBase, 64);
    assert.equal(hex(env.backMem.read(r.shared.backBase + 64 + 31 * 112, 112)), hex(request(BLKIF, 77)));
    assert.equal(hex(env.backMem.read(r.shared.backBase + 64, 112)), hex(request(BLKIF, 78)));
    assert.equal(env.backMem.readU32(r.shared.backBase + SRING_REQ_PROD), 1);
    assert.equal(r.back.unconsumedRequests(), 2);
    close(r);
  });
});

describe('ring.h notification avoidance (guest-side.md §7.3)', () => {
  // [old prod, new prod, consumer's event, notify]: notify iff event lies in (old, new].
  const table: [number, number, number, boolean][] = [
    [0, 1, 1, true], // the ring as SHARED_RING_INIT leaves it; the first entry wakes
    [0, 1, 2, false], // consumer wants to hear of entry 2 only
    [0, 3, 2, true],
    [0, 3, 3, true], // event == new: included
    [0, 3, 4, false],
    [2, 5, 2, false], // event == old: it already passed with an earlier push
    [2, 5, 1, false], // stale event from long ago: the consumer is busy, no notify
    [5, 5, 5, false], // nothing published
    [5, 5, 6, false],
    [0xffff_fffe, 1, 0xffff_ffff, true], // across the wrap
    [0xffff_fffe, 1, 0, true],
    [0xffff_fffe, 1, 1, true],
    [0xffff_fffe, 1, 2, false],
    [0xffff_fffe, 1, 0xffff_fffe, false],
    [0xffff_ffff, 0, 0, true],
    [0, 0x8000_0000, 0x8000_0000, true],
    [0, 0x8000_0000, 0x8000_0001, false],
  ];

  it('shouldNotify: (new − event) < (new − old) as u32, table of cases', () => {
    for (const [old, now, event, want] of table) {
      assert.equal(shouldNotify(old, now, event), want, `old ${old} new ${now} event ${event}`);
    }
  });

  it('RING_PUSH_REQUESTS_AND_CHECK_NOTIFY on a live ring gives the table, and publishes req_prod', () => {
    const env = makeEnv('pv', 'hvm');
    const r = rig(env, 1, { entrySize: 8 });
    for (const [old, now, event, want] of table) {
      r.front.sring.reqProd = old; // as left by the frontend's previous push
      const f = new FrontRing(env.frontMem, FRONT_BASE, 4096, { entrySize: 8 }, now);
      r.back.sring.reqEvent = event; // the backend asked, through its mapping
      assert.equal(f.pushRequestsAndCheckNotify(), want, `old ${old} new ${now} event ${event}`);
      assert.equal(r.back.sring.reqProd, now);
      assert.equal(env.backMem.readU32(r.shared.backBase + SRING_REQ_PROD), now);
    }
    close(r);
  });

  it('RING_PUSH_RESPONSES_AND_CHECK_NOTIFY on a live ring gives the table, and publishes rsp_prod', () => {
    const env = makeEnv('hvm', 'pv');
    const r = rig(env, 1, { entrySize: 8 });
    for (const [old, now, event, want] of table) {
      r.back.sring.rspProd = old;
      const b = new BackRing(env.backMem, r.shared.backBase, 4096, { entrySize: 8 }, now);
      r.front.sring.rspEvent = event;
      assert.equal(b.pushResponsesAndCheckNotify(), want, `old ${old} new ${now} event ${event}`);
      assert.equal(r.front.sring.rspProd, now);
      assert.equal(env.frontMem.readU32(FRONT_BASE + SRING_RSP_PROD), now);
    }
    close(r);
  });

  it('plain PUSH_REQUESTS / PUSH_RESPONSES publish without looking at the events', () => {
    const env = makeEnv('pv', 'pv');
    const r = rig(env, 1, BLKIF, 10);
    r.front.reqProdPvt = 13;
    r.front.pushRequests();
    assert.equal(r.back.sring.reqProd, 13);
    assert.equal(r.back.sring.reqEvent, 11);
    r.back.rspProdPvt = 12;
    r.back.pushResponses();
    assert.equal(r.front.sring.rspProd, 12);
    assert.equal(r.front.sring.rspEvent, 11);
    close(r);
  });
});

describe('ring.h final check (guest-side.md §7.3)', () => {
  it('FINAL_CHECK_FOR_REQUESTS with work pending returns true and leaves req_event alone', () => {
    const env = makeEnv('pv', 'hvm');
    const r = rig(env, 1, BLKIF, 100);
    r.front.reqProdPvt = 102;
    r.front.pushRequests();
    assert.equal(r.back.finalCheckForRequests(), true);
    assert.equal(r.front.sring.reqEvent, 101);
    r.back.reqCons = 102;
    r.back.rspProdPvt = 102;
    assert.equal(r.back.finalCheckForRequests(), false);
    assert.equal(r.front.sring.reqEvent, 103);
    assert.equal(env.frontMem.readU32(FRONT_BASE + SRING_REQ_EVENT), 103);
    close(r);
  });

  it('FINAL_CHECK sets event = cons + 1 modulo 2^32', () => {
    const env = makeEnv('hvm', 'hvm');
    const r = rig(env, 1, BLKIF, 0xffff_ffff);
    assert.equal(r.back.finalCheckForRequests(), false);
    assert.equal(r.front.sring.reqEvent, 0);
    assert.equal(r.front.finalCheckForResponses(), false);
    assert.equal(r.back.sring.rspEvent, 0);
    assert.equal(env.backMem.readU32(r.shared.backBase + SRING_RSP_EVENT), 0);
    close(r);
  });

  // The producer's push runs whole at the consumer's k-th shared-word step of
  // its final check (steps: load prod, store event, load prod again). In every
  // schedule the producer notifies or the consumer finds the work: no lost
  // wake-up. At k = 1 the producer saw the stale event and did not notify; only
  // the re-check after the barrier finds the request.
  const schedules: { k: number; notify: boolean; work: boolean; why: string }[] = [
    { k: 0, notify: false, work: true, why: 'pushed before the first check: found at once' },
    { k: 1, notify: false, work: true, why: 'pushed between check and event store: the re-check finds it' },
    { k: 2, notify: true, work: true, why: 'pushed after the event store: both' },
    { k: 3, notify: true, work: false, why: 'pushed after the final check: the notify wakes the sleeper' },
  ];

  for (const s of schedules) {
    it(`the race is closed, requests: producer at consumer step ${s.k} (${s.why})`, () => {
      const env = makeEnv('pv', 'hvm');
      const start = 0xffff_fffe;
      const r = rig(env, 1, BLKIF, start);
      const { front, back } = r;
      // Three requests (notified: event start + 1), consumed in a batch without a final check,
      // so req_event is stale (start + 1) when the backend runs out of work.
      for (let i = 0; i < 3; i++) front.writeRequest(front.reqProdPvt++, request(BLKIF, i));
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      for (let i = 0; i < 3; i++) {
        back.writeResponse(back.rspProdPvt++, response(BLKIF, idOf(back.copyRequest(back.reqCons++))));
      }
      back.pushResponses();
      front.rspCons += 3;
      const words = env.host.hypervisor.machine.words;
      const hdr = env.frontMem.wordAddr(FRONT_BASE);
      assert.equal(env.backMem.wordAddr(r.shared.backBase), hdr, 'both ends reach the same machine words');
      let notify: boolean | undefined;
      const producer = (): void => {
        front.writeRequest(front.reqProdPvt++, request(BLKIF, 9));
        notify = front.pushRequestsAndCheckNotify();
      };
      let step = 0;
      const seen: SharedOp[] = [];
      words.interpose = (op, addr) => {
        if (addr < hdr || addr >= hdr + 16) return;
        seen.push(op);
        if (step++ === s.k) {
          words.interpose = null;
          producer();
        }
      };
      let work: boolean;
      try {
        work = back.finalCheckForRequests();
      } finally {
        words.interpose = null;
      }
      if (notify === undefined) producer();
      // The consumer's steps in ring.h's order: load req_prod, store req_event, load req_prod.
      assert.deepEqual(seen, ['load32', 'store32', 'load32'].slice(0, Math.min(s.k + 1, 3)));
      assert.equal(notify, s.notify);
      assert.equal(work, s.work);
      assert.ok(notify || work, 'no lost wake-up');
      // Whoever was told goes on: the request is there.
      assert.equal(back.unconsumedRequests(), 1);
      assert.equal(idOf(back.copyRequest(back.reqCons)), 9);
      close(r);
    });

    it(`the race is closed, responses: producer at consumer step ${s.k}`, () => {
      const env = makeEnv('hvm', 'pv');
      const start = 0xffff_fffd;
      const r = rig(env, 1, BLKIF, start);
      const { front, back } = r;
      for (let i = 0; i < 3; i++) front.writeRequest(front.reqProdPvt++, request(BLKIF, i));
      front.pushRequests();
      back.reqCons += 3;
      // Two responses (notified), taken off without a final check: rsp_event stale at start + 1.
      for (let i = 0; i < 2; i++) back.writeResponse(back.rspProdPvt++, response(BLKIF, i));
      assert.equal(back.pushResponsesAndCheckNotify(), true);
      front.rspCons += 2;
      const words = env.host.hypervisor.machine.words;
      const hdr = env.frontMem.wordAddr(FRONT_BASE);
      let notify: boolean | undefined;
      const producer = (): void => {
        back.writeResponse(back.rspProdPvt++, response(BLKIF, 2));
        notify = back.pushResponsesAndCheckNotify();
      };
      let step = 0;
      words.interpose = (_op, addr) => {
        if (addr < hdr || addr >= hdr + 16) return;
        if (step++ === s.k) {
          words.interpose = null;
          producer();
        }
      };
      let work: boolean;
      try {
        work = front.finalCheckForResponses();
      } finally {
        words.interpose = null;
      }
      if (notify === undefined) producer();
      assert.equal(notify, s.notify);
      assert.equal(work, s.work);
      assert.equal(front.unconsumedResponses(), 1);
      assert.equal(hex(front.copyResponse(front.rspCons)), hex(response(BLKIF, 2)));
      close(r);
    });
  }
});

describe('ring.h barrier placement (guest-side.md §7.2-§7.3)', () => {
  /** Records each shared-word step on the ring header and each fence of either end, in order. */
  function traced(r: Rig): { trace: string[]; stop: () => void } {
    const trace: string[] = [];
    const words = r.env.host.hypervisor.machine.words;
    const hdr = r.env.frontMem.wordAddr(FRONT_BASE);
    const names = ['req_prod', 'req_event', 'rsp_prod', 'rsp_event'];
    words.interpose = (op, addr) => {
      if (addr >= hdr && addr < hdr + 16) trace.push(`${op} ${names[(addr - hdr) / 4]}`);
    };
    const mems = [r.env.frontMem, r.env.backMem];
    const saved = mems.map((m) => m.fence);
    for (const m of mems) {
      const f = m.fence;
      m.fence = () => {
        trace.push('fence');
        f.call(m);
      };
    }
    return {
      trace,
      stop: () => {
        words.interpose = null;
        mems.forEach((m, i) => {
          m.fence = saved[i]!;
        });
      },
    };
  }

  it('each macro touches the shared words in ring.h order, with its barriers', () => {
    const env = makeEnv('pv', 'hvm');
    const r = rig(env, 1, BLKIF, 7);
    const { front, back } = r;
    const t = traced(r);
    const steps = (fn: () => unknown): string[] => {
      t.trace.length = 0;
      fn();
      return [...t.trace];
    };
    try {
      front.reqProdPvt = 8;
      assert.deepEqual(
        steps(() => front.pushRequests()),
        ['fence', 'store32 req_prod'],
      );
      front.reqProdPvt = 9;
      assert.deepEqual(
        steps(() => front.pushRequestsAndCheckNotify()),
        [
          'load32 req_prod',
          'fence', // wmb: requests before the index
          'store32 req_prod',
          'fence', // mb: index before reading the event
          'load32 req_event',
        ],
      );
      back.rspProdPvt = 8;
      assert.deepEqual(
        steps(() => back.pushResponses()),
        ['fence', 'store32 rsp_prod'],
      );
      back.rspProdPvt = 9;
      assert.deepEqual(
        steps(() => back.pushResponsesAndCheckNotify()),
        ['load32 rsp_prod', 'fence', 'store32 rsp_prod', 'fence', 'load32 rsp_event'],
      );
      back.reqCons = 9;
      assert.deepEqual(
        steps(() => back.finalCheckForRequests()),
        [
          'load32 req_prod',
          'store32 req_event',
          'fence', // mb: event before the re-check
          'load32 req_prod',
        ],
      );
      front.rspCons = 9;
      assert.deepEqual(
        steps(() => front.finalCheckForResponses()),
        ['load32 rsp_prod', 'store32 rsp_event', 'fence', 'load32 rsp_prod'],
      );
      assert.deepEqual(
        steps(() => back.unconsumedRequests()),
        ['load32 req_prod'],
      );
      assert.deepEqual(
        steps(() => front.unconsumedResponses()),
        ['load32 rsp_prod'],
      );
    } finally {
      t.stop();
    }
    close(r);
  });

  // The other direction of the race: the consumer's whole final check runs at the
  // producer's k-th shared-word step (load prod, store prod, load event). A producer
  // that read the event before publishing would lose the wake-up at k = 1.
  const schedules: { k: number; notify: boolean; work: boolean }[] = [
    { k: 0, notify: true, work: false }, // consumer sleeps first (event = cons + 1); the push notifies
    { k: 1, notify: true, work: false }, // same: the index is not yet published
    { k: 2, notify: false, work: true }, // published: the consumer sees it; stale event, no notify
    { k: 3, notify: false, work: true }, // after the push
  ];
  for (const s of schedules) {
    it(`consumer's final check at producer step ${s.k}: notify ${s.notify}, work found ${s.work}`, () => {
      const env = makeEnv('hvm', 'pv');
      const start = 0xffff_fffe;
      const r = rig(env, 1, BLKIF, start);
      const { front, back } = r;
      for (let i = 0; i < 3; i++) front.writeRequest(front.reqProdPvt++, request(BLKIF, i));
      assert.equal(front.pushRequestsAndCheckNotify(), true);
      for (let i = 0; i < 3; i++) idOf(back.copyRequest(back.reqCons++));
      back.rspProdPvt += 3; // (answered; the responses do not matter here)
      const words = env.host.hypervisor.machine.words;
      const hdr = env.frontMem.wordAddr(FRONT_BASE);
      let work: boolean | undefined;
      let step = 0;
      const seen: string[] = [];
      words.interpose = (op, addr) => {
        if (addr < hdr || addr >= hdr + 16) return;
        seen.push(op);
        if (step++ === s.k) {
          words.interpose = null;
          work = back.finalCheckForRequests();
        }
      };
      front.writeRequest(front.reqProdPvt++, request(BLKIF, 9));
      let notify: boolean;
      try {
        notify = front.pushRequestsAndCheckNotify();
      } finally {
        words.interpose = null;
      }
      if (work === undefined) work = back.finalCheckForRequests();
      assert.deepEqual(seen, ['load32', 'store32', 'load32'].slice(0, Math.min(s.k + 1, 3)));
      assert.equal(notify, s.notify);
      assert.equal(work, s.work);
      assert.ok(notify || work, 'no lost wake-up');
      assert.equal(idOf(back.copyRequest(back.reqCons)), 9);
      close(r);
    });
  }
});

describe('ring.h hardening against the peer (guest-side.md §7.2)', () => {
  it('a malicious frontend claiming 1000 requests: the backend sees at most the free response slots', () => {
    const env = makeEnv('hvm', 'pv');
    const start = 0xffff_fff0;
    const r = rig(env, 1, BLKIF, start);
    const { front, back } = r;
    front.sring.reqProd = start + 1000; // not a push: a lie
    assert.equal(back.requestProdOverflow(back.sring.reqProd), true);
    assert.equal(back.unconsumedRequests(), 32, 'min(1000, 32 − 0)');
    // The backend consumes 20 without responding: only 12 slots can still hold responses.
    back.reqCons += 20;
    assert.equal(back.unconsumedRequests(), 12);
    back.reqCons += 12;
    assert.equal(back.unconsumedRequests(), 0);
    assert.equal(back.hasUnconsumedRequests(), false);
    // RING_REQUEST_CONS_OVERFLOW stops a loop at the 33rd outstanding request.
    assert.equal(back.requestConsOverflow(start + 31), false);
    assert.equal(back.requestConsOverflow(start + 32), true);
    // Responses for 10: 10 more requests may be consumed.
    back.rspProdPvt += 10;
    assert.equal(back.unconsumedRequests(), 10);
    assert.equal(back.requestConsOverflow(start + 41), false);
    assert.equal(back.requestConsOverflow(start + 42), true);
    // A req_prod moved behind rsp_prod_pvt (prod − cons huge as a u32) is capped the same way.
    front.sring.reqProd = back.rspProdPvt - 5;
    assert.equal(back.unconsumedRequests(), 10);
    assert.equal(back.requestProdOverflow(back.sring.reqProd), true);
    close(r);
  });

  it('RING_REQUEST_PROD_OVERFLOW is (prod − rsp_prod_pvt) > size; RING_RESPONSE_PROD_OVERFLOW (prod − rsp_cons) > size', () => {
    const env = makeEnv('pv', 'pv');
    const start = 0xffff_fff8;
    const r = rig(env, 1, BLKIF, start);
    const { front, back } = r;
    assert.equal(back.requestProdOverflow(start + 32), false);
    assert.equal(back.requestProdOverflow(start + 33), true);
    assert.equal(back.requestProdOverflow(start), false);
    assert.equal(back.requestProdOverflow(start - 1), true);
    assert.equal(front.responseProdOverflow(start + 32), false);
    assert.equal(front.responseProdOverflow(start + 33), true);
    assert.equal(front.responseProdOverflow(start - 1), true);
    // A malicious backend claims 40 responses: the frontend can tell.
    back.sring.rspProd = start + 40;
    assert.equal(front.responseProdOverflow(front.sring.rspProd), true);
    assert.equal(
      front.unconsumedResponses(),
      40,
      'the raw count is unchecked; the overflow test is the guard',
    );
    close(r);
  });

  it('free requests and full: the frontend cannot get more than size requests ahead of its responses', () => {
    const env = makeEnv('pv', 'hvm');
    const start = 0xffff_ffe8;
    const r = rig(env, 1, BLKIF, start);
    const { front, back } = r;
    for (let i = 0; i < 32; i++) {
      assert.equal(front.freeRequests(), 32 - i);
      front.writeRequest(front.reqProdPvt++, request(BLKIF, i));
    }
    assert.equal(front.full(), true);
    assert.equal(front.freeRequests(), 0);
    front.pushRequests();
    // Consumed is not enough: the slots free only when the responses are taken off.
    while (back.hasUnconsumedRequests()) {
      const id = idOf(back.copyRequest(back.reqCons++));
      back.writeResponse(back.rspProdPvt++, response(BLKIF, id));
    }
    assert.equal(front.full(), true);
    back.pushResponses();
    assert.equal(front.full(), true);
    assert.equal(front.unconsumedResponses(), 32);
    front.rspCons += 5;
    assert.equal(front.freeRequests(), 5);
    assert.equal(front.full(), false);
    close(r);
  });

  it('RING_COPY_REQUEST: the copy does not change when the frontend rewrites the slot after it (double fetch)', () => {
    const env = makeEnv('hvm', 'hvm');
    const r = rig(env, 1, BLKIF);
    const { front, back } = r;
    front.writeRequest(0, request(BLKIF, 5));
    front.reqProdPvt = 1;
    front.pushRequests();
    const copy = back.copyRequest(0);
    assert.equal(copy.length, 112);
    front.writeRequest(0, request(BLKIF, 666)); // the peer changes it after validation
    assert.equal(idOf(copy), 5);
    assert.equal(hex(copy), hex(request(BLKIF, 5)));
    assert.equal(idOf(back.copyRequest(0)), 666, 'the shared slot itself did change');
    // RING_COPY_RESPONSE copies sizeof(response) = 16 bytes, not the whole 112-byte slot.
    back.writeResponse(0, response(BLKIF, 5));
    back.rspProdPvt = 1;
    back.pushResponses();
    const rc = front.copyResponse(0);
    assert.equal(rc.length, 16);
    back.writeResponse(0, response(BLKIF, 6));
    assert.equal(idOf(rc), 5);
    close(r);
  });
});

describe('ring.h multi-page rings (guest-side.md §7.1)', () => {
  // straddle: how many slots cross a page boundary (blkif in 2 pages: slot 36 starts page 2 exactly).
  const cases: {
    pages: number;
    layout: RingLayout;
    size: number;
    straddle: number;
    kinds: readonly [Kind, Kind];
  }[] = [
    { pages: 2, layout: BLKIF, size: 64, straddle: 0, kinds: ['pv', 'hvm'] },
    { pages: 2, layout: { entrySize: 100 }, size: 64, straddle: 1, kinds: ['hvm', 'pv'] },
    { pages: 4, layout: BLKIF, size: 128, straddle: 2, kinds: ['pv', 'pv'] },
    {
      pages: 4,
      layout: { entrySize: 200, requestSize: 200, responseSize: 24 },
      size: 64,
      straddle: 3,
      kinds: ['hvm', 'hvm'],
    },
  ];
  for (const c of cases) {
    it(`${c.pages} pages of ${c.layout.entrySize}-byte entries: ${c.size} entries, filled and drained twice across the wrap (${c.kinds.join('/')})`, () => {
      const env = makeEnv(c.kinds[0], c.kinds[1]);
      const start = (U32 - c.size - 3) >>> 0;
      const r = rig(env, c.pages, c.layout, start);
      const { front, back, shared } = r;
      assert.equal(front.size, c.size);
      assert.equal(back.size, c.size);
      assert.equal(shared.refs.length, c.pages);
      // The backend reaches page i of the ring through mapping i.
      for (let i = 0; i < c.pages; i++) {
        env.frontMem.writeU32(FRONT_BASE + i * 4096 + 4092, 0xc0de0000 + i);
        assert.equal(env.backMem.readU32(shared.backBase + i * 4096 + 4092), 0xc0de0000 + i);
      }
      let id = 0;
      let straddling = 0;
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < c.size; i++) front.writeRequest(front.reqProdPvt++, request(c.layout, ++id));
        assert.equal(front.full(), true);
        front.pushRequestsAndCheckNotify();
        assert.equal(back.unconsumedRequests(), c.size);
        let rc = back.reqCons;
        const rp = back.sring.reqProd;
        const ids: number[] = [];
        while (rc !== rp) {
          assert.equal(back.requestConsOverflow(rc), false);
          const off = back.requestAddr(rc) - shared.backBase;
          if (Math.floor(off / 4096) !== Math.floor((off + c.layout.entrySize - 1) / 4096)) straddling++;
          // The slot as the frontend wrote it, through the backend's mappings of the grants.
          const len = c.layout.entrySize;
          assert.equal(
            hex(env.backMem.read(shared.backBase + off, len)),
            hex(env.frontMem.read(FRONT_BASE + off, len)),
          );
          const req = back.copyRequest(rc);
          rc = (rc + 1) >>> 0;
          back.reqCons = rc;
          assert.equal(hex(req), hex(request(c.layout, idOf(req))));
          ids.push(idOf(req));
        }
        // size requests consumed and none answered: one more would overwrite an unanswered slot.
        assert.equal(back.requestConsOverflow(rc), true);
        for (const i of ids) back.writeResponse(back.rspProdPvt++, response(c.layout, i));
        assert.equal(back.requestConsOverflow(rc), false);
        back.pushResponsesAndCheckNotify();
        assert.equal(front.unconsumedResponses(), c.size);
        const first = id - c.size + 1;
        for (let k = 0; k < c.size; k++) {
          assert.equal(hex(front.copyResponse(front.rspCons)), hex(response(c.layout, first + k)));
          front.rspCons++;
        }
        assert.equal(front.finalCheckForResponses(), false);
        assert.equal(back.finalCheckForRequests(), false);
      }
      const end = (start + 2 * c.size) >>> 0;
      assert.ok(end < start, 'the indices wrapped');
      assert.deepEqual(
        [back.sring.reqProd, front.sring.rspProd, front.rspCons, back.reqCons],
        [end, end, end, end],
      );
      assert.equal(straddling, 2 * c.straddle, 'entries straddling a page boundary (per round)');
      close(r);
    });
  }
});

// ---- property: random pushes and consumes on both sides against a queue model -------------------

type Op =
  | { t: 'fwrite'; n: number } // frontend queues up to n requests (no push)
  | { t: 'fpush' } // RING_PUSH_REQUESTS
  | { t: 'fpushn' } // RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
  | { t: 'bcons'; n: number } // backend consumes up to n requests
  | { t: 'bresp'; n: number } // backend writes responses to up to n consumed requests
  | { t: 'bpush' }
  | { t: 'bpushn' }
  | { t: 'bfinal' } // RING_FINAL_CHECK_FOR_REQUESTS
  | { t: 'fcons'; n: number } // frontend takes up to n responses
  | { t: 'ffinal' }; // RING_FINAL_CHECK_FOR_RESPONSES

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('fwrite' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ t: 'fpush' as const }),
  fc.constant({ t: 'fpushn' as const }),
  fc.record({ t: fc.constant('bcons' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ t: fc.constant('bresp' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ t: 'bpush' as const }),
  fc.constant({ t: 'bpushn' as const }),
  fc.constant({ t: 'bfinal' as const }),
  fc.record({ t: fc.constant('fcons' as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ t: 'ffinal' as const }),
);

const geometries: { pages: number; layout: RingLayout }[] = [
  { pages: 1, layout: { entrySize: 4032 } }, // 1 entry
  { pages: 1, layout: { entrySize: 2016 } }, // 2
  { pages: 1, layout: { entrySize: 1008, requestSize: 1000, responseSize: 16 } }, // 4
  { pages: 1, layout: BLKIF }, // 32
  { pages: 2, layout: { entrySize: 100 } }, // 64, entries straddle pages
  { pages: 4, layout: { entrySize: 512, requestSize: 512, responseSize: 40 } }, // 16
];

/** Independent form of the notify rule: the event index lies in (old, new]. */
function inWindow(old: number, now: number, event: number): boolean {
  const d = (event - old + U32) % U32;
  const w = (now - old + U32) % U32;
  return d >= 1 && d <= w;
}

describe('ring.h property: random push/consume sequences against a queue model (guest-side.md §7.2-§7.3)', () => {
  it('FIFO, nothing lost or duplicated, counts as the model says, notify = event in (old, new], no lost wake-up', () => {
    const env = makeEnv('pv', 'hvm');
    const pages = 4;
    const frontMem = env.frontMem;
    frontMem.fill(FRONT_BASE, pages * 4096, 0);
    const shared = share(env, FRONT_BASE, pages);
    let runs = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...geometries),
        fc.oneof(
          fc.constant(0),
          fc.integer({ min: U32 - 80, max: U32 - 1 }),
          fc.integer({ min: 0, max: U32 - 1 }),
        ),
        fc.array(opArb, { minLength: 1, maxLength: 80 }),
        (geo, start, ops) => {
          runs++;
          const area = geo.pages * 4096;
          const s = new SharedRing(frontMem, FRONT_BASE);
          s.init();
          s.reqProd = start;
          s.rspProd = start;
          s.reqEvent = start + 1;
          s.rspEvent = start + 1;
          const front = new FrontRing(frontMem, FRONT_BASE, area, geo.layout, start);
          const back = new BackRing(env.backMem, shared.backBase, area, geo.layout, start);
          const size = front.size;
          // The model: ids in flight at each stage, oldest first.
          let nextId = 1;
          const written: number[] = []; // in slots, not yet published
          const published: number[] = []; // published, not yet consumed by the backend
          const consumed: number[] = []; // consumed, no response written yet
          const responded: number[] = []; // response written, not yet published
          const rspPublished: number[] = []; // response published, not yet taken by the frontend
          const completed: number[] = [];
          let reqPublishedIdx = start; // sring.req_prod as the model has it
          let rspPublishedIdx = start;
          let reqEvent = (start + 1) >>> 0;
          let rspEvent = (start + 1) >>> 0;
          // 'asleep': did a final check that found nothing; 'missed': asleep and something was
          // published by a plain push (no notification owed); false: awake.
          let backAsleep: boolean | 'missed' = true;
          let frontAsleep: boolean | 'missed' = true;

          const check = (): void => {
            const outstanding = written.length + published.length + consumed.length + responded.length;
            assert.equal(front.freeRequests(), size - outstanding - rspPublished.length);
            assert.equal(front.full(), front.freeRequests() === 0);
            assert.equal(back.unconsumedRequests(), published.length);
            assert.equal(front.unconsumedResponses(), rspPublished.length);
            assert.equal(back.sring.reqProd, reqPublishedIdx);
            assert.equal(front.sring.rspProd, rspPublishedIdx);
            assert.equal(front.sring.reqEvent, reqEvent);
            assert.equal(back.sring.rspEvent, rspEvent);
            assert.equal(back.requestProdOverflow(back.sring.reqProd), false);
            assert.equal(front.responseProdOverflow(front.sring.rspProd), false);
          };
          const pushReq = (withNotify: boolean): void => {
            const old = reqPublishedIdx;
            const now = front.reqProdPvt;
            let notify = false;
            if (withNotify) notify = front.pushRequestsAndCheckNotify();
            else front.pushRequests();
            reqPublishedIdx = now;
            published.push(...written.splice(0));
            if (withNotify) {
              assert.equal(notify, inWindow(old, now, reqEvent));
              if (backAsleep === true && now !== old) assert.equal(notify, true, 'lost wake-up (requests)');
            }
            if (now !== old && backAsleep === true) backAsleep = withNotify ? false : 'missed';
          };
          const pushRsp = (withNotify: boolean): void => {
            const old = rspPublishedIdx;
            const now = back.rspProdPvt;
            let notify = false;
            if (withNotify) notify = back.pushResponsesAndCheckNotify();
            else back.pushResponses();
            rspPublishedIdx = now;
            rspPublished.push(...responded.splice(0));
            if (withNotify) {
              assert.equal(notify, inWindow(old, now, rspEvent));
              if (frontAsleep === true && now !== old) assert.equal(notify, true, 'lost wake-up (responses)');
            }
            if (now !== old && frontAsleep === true) frontAsleep = withNotify ? false : 'missed';
          };

          const apply = (op: Op): void => {
            switch (op.t) {
              case 'fwrite': {
                const n = Math.min(op.n, front.freeRequests());
                for (let i = 0; i < n; i++) {
                  const id = nextId++;
                  front.writeRequest(front.reqProdPvt, request(geo.layout, id));
                  front.reqProdPvt++;
                  written.push(id);
                }
                break;
              }
              case 'fpush':
                pushReq(false);
                break;
              case 'fpushn':
                pushReq(true);
                break;
              case 'bcons': {
                const n = Math.min(op.n, back.unconsumedRequests());
                for (let i = 0; i < n; i++) {
                  assert.equal(back.requestConsOverflow(back.reqCons), false);
                  const req = back.copyRequest(back.reqCons);
                  back.reqCons++;
                  const want = published.shift();
                  assert.equal(idOf(req), want, 'requests in FIFO order');
                  assert.equal(hex(req), hex(request(geo.layout, want!)));
                  consumed.push(want!);
                }
                if (n > 0) backAsleep = false;
                break;
              }
              case 'bresp': {
                const n = Math.min(op.n, consumed.length);
                for (let i = 0; i < n; i++) {
                  const id = consumed.shift()!;
                  back.writeResponse(back.rspProdPvt, response(geo.layout, id));
                  back.rspProdPvt++;
                  responded.push(id);
                }
                break;
              }
              case 'bpush':
                pushRsp(false);
                break;
              case 'bpushn':
                pushRsp(true);
                break;
              case 'bfinal': {
                const work = back.finalCheckForRequests();
                assert.equal(work, published.length > 0);
                if (!work) {
                  reqEvent = (back.reqCons + 1) >>> 0;
                  backAsleep = true;
                } else backAsleep = false;
                break;
              }
              case 'fcons': {
                const n = Math.min(op.n, front.unconsumedResponses());
                for (let i = 0; i < n; i++) {
                  const rsp = front.copyResponse(front.rspCons);
                  front.rspCons++;
                  const want = rspPublished.shift();
                  assert.equal(idOf(rsp), want, 'responses in FIFO order');
                  assert.equal(hex(rsp), hex(response(geo.layout, want!)));
                  completed.push(want!);
                }
                if (n > 0) frontAsleep = false;
                break;
              }
              case 'ffinal': {
                const work = front.finalCheckForResponses();
                assert.equal(work, rspPublished.length > 0);
                if (!work) {
                  rspEvent = (front.rspCons + 1) >>> 0;
                  frontAsleep = true;
                } else frontAsleep = false;
                break;
              }
            }
            check();
          };

          check();
          for (const op of ops) apply(op);
          // Drain: everything written reaches the frontend as a response, once, in order.
          apply({ t: 'fpushn' });
          apply({ t: 'bcons', n: size });
          apply({ t: 'bresp', n: size });
          apply({ t: 'bpushn' });
          apply({ t: 'fcons', n: size });
          assert.deepEqual(
            completed,
            Array.from({ length: nextId - 1 }, (_, i) => i + 1),
          );
          assert.equal(front.freeRequests(), size);
          apply({ t: 'bfinal' });
          apply({ t: 'ffinal' });
          const end = (start + nextId - 1) >>> 0;
          assert.deepEqual(
            [front.reqProdPvt, front.rspCons, back.reqCons, back.rspProdPvt],
            [end, end, end, end],
          );
        },
      ),
      { numRuns: 300, seed: 0x5eed },
    );
    assert.equal(runs, 300);
    unshare(env, shared);
    finish(env);
  });
});

// ---- the same frontend and backend as guest programs: one thread, then real threads -------------

const guestUrl = new URL('../fixtures/ring-guest.ts', import.meta.url);

function guestArgs(phase: RingGuestArgs['phase'], peer: number, over: Partial<RingGuestArgs>): RingGuestArgs {
  return {
    phase,
    peer,
    frontBase: FRONT_BASE,
    pages: 1,
    ref0: 8,
    layout: BLKIF,
    start: 0xffff_f000,
    n: 3000,
    waitMs: 5_000,
    ...over,
  };
}

function assertStats(
  front: RingGuestStats,
  back: RingGuestStats & { unmapped: number },
  n: number,
  pages: number,
) {
  assert.equal(front.done, n, 'every response, in order');
  assert.equal(back.done, n, 'every request, in order');
  assert.equal(front.timeouts, 0, 'no lost wake-up (frontend)');
  assert.equal(back.timeouts, 0, 'no lost wake-up (backend)');
  assert.ok(back.sleeps > 0 && back.notifies > 0, 'the backend slept and notified');
  // Each sleep that did not time out ended on a doorbell change, and only a notify changes it.
  assert.ok(front.notifies >= back.sleeps, `${front.notifies} notifies for ${back.sleeps} backend sleeps`);
  assert.ok(back.notifies >= front.sleeps, `${back.notifies} notifies for ${front.sleeps} frontend sleeps`);
  assert.equal(back.unmapped, pages + 1);
}

describe('ring.h between guest programs (guest-side.md §7.2-§7.3)', () => {
  for (const [fk, bk, pages] of [
    ['pv', 'hvm', 1],
    ['hvm', 'pv', 2],
  ] as const) {
    it(`one thread, virtual time: ${fk} front, ${bk} back, ${pages}-page ring, 3000 requests across 2^32, no wait times out`, async () => {
      const host = new Host({ memoryMiB: 16 });
      const f = host.createDomain({ kind: fk, memoryKiB: 512 });
      const b = host.createDomain({ kind: bk, memoryKiB: 512 });
      const over = { pages, n: 3000 };
      const refs = await ringGuest(host.context(f.domid), guestArgs('front-setup', b.domid, over));
      assert.deepEqual(
        refs,
        Array.from({ length: pages + 1 }, (_, i) => 8 + i),
      );
      const t0 = host.clock.now();
      const out = await host.runGuests([
        { domid: f.domid, main: ringGuest as never, args: guestArgs('front-run', b.domid, over) },
        { domid: b.domid, main: ringGuest as never, args: guestArgs('back-run', f.domid, over) },
      ]);
      for (const o of out) assert.equal(o.error, undefined, String(o.error?.stack));
      assert.equal(host.clock.now(), t0, 'no timer ever fired: every sleeper was woken by a notify');
      assertStats(
        out[0]!.result as RingGuestStats,
        out[1]!.result as RingGuestStats & { unmapped: number },
        3000,
        pages,
      );
      assert.deepEqual(await ringGuest(host.context(f.domid), guestArgs('front-end', b.domid, over)), {
        ended: pages + 1,
      });
      assert.equal(b.xen.gt.maptrack.liveCount(), 0);
      for (const a of f.xen.gt.activeEntries()) assert.equal(a.pin, 0);
      assert.deepEqual(host.checkInvariants(), []);
      host.destroyDomain(b.domid);
      host.destroyDomain(f.domid);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  describe('in worker threads (real races)', () => {
    let host: WorkerHost;
    before(async () => {
      host = await WorkerHost.start({ memoryMiB: 32 });
    });
    after(async () => {
      await host.shutdown();
    });
    for (const [fk, bk, pages] of [
      ['pv', 'hvm', 1],
      ['hvm', 'pv', 4],
    ] as const) {
      it(`${fk} front, ${bk} back, ${pages}-page ring: 20000 requests, FIFO, nothing lost, no wait times out`, async () => {
        const f = await host.createDomain({ kind: fk, memoryKiB: 512 });
        const b = await host.createDomain({ kind: bk, memoryKiB: 512 });
        const over = { pages, n: 20_000 };
        const refs = await host.spawn(f, guestUrl, guestArgs('front-setup', b.domid, over));
        assert.deepEqual(
          refs,
          Array.from({ length: pages + 1 }, (_, i) => 8 + i),
        );
        const [fr, br] = await Promise.all([
          host.spawn(f, guestUrl, guestArgs('front-run', b.domid, over)),
          host.spawn(b, guestUrl, guestArgs('back-run', f.domid, over)),
        ]);
        assertStats(fr as RingGuestStats, br as RingGuestStats & { unmapped: number }, 20_000, pages);
        assert.deepEqual(await host.spawn(f, guestUrl, guestArgs('front-end', b.domid, over)), {
          ended: pages + 1,
        });
        assert.deepEqual(await host.checkInvariants(), []);
        await host.destroyDomain(b.domid);
        await host.destroyDomain(f.domid);
        assert.deepEqual(await host.checkInvariants(), []);
      });
    }
  });
});
