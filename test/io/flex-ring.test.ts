// FLEX rings (src/io/flex-ring.ts): the data-interface layout, XEN_FLEX_RING_SIZE,
// mask, queued, read_packet and write_packet (guest-side.md §7.4; Xen's
// `xen/include/public/io/ring.h`, DEFINE_XEN_FLEX_RING[_AND_INTF]), and two
// domains streaming bytes both ways through a granted data area, indices
// wrapping at 2^32 (§8 item 1).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  FLEX_INTF_IN_CONS,
  FLEX_INTF_IN_PROD,
  FLEX_INTF_OUT_CONS,
  FLEX_INTF_OUT_PROD,
  FLEX_INTF_PAD1,
  FLEX_INTF_PAD2,
  FLEX_INTF_REF,
  FLEX_INTF_RING_ORDER,
  FLEX_INTF_SIZE,
  FLEX_MAX_ORDER,
  FLEX_XEN_PAGE_SHIFT,
  FlexDataIntf,
  FlexRing,
  flexMask,
  flexQueued,
  flexReadPacket,
  flexRingPtr,
  flexWritePacket,
  xenFlexRingSize,
} from '../../src/io/flex-ring.ts';
import { MAP_VA } from '../helpers/guest.ts';
import {
  type Env,
  finish,
  grantPages,
  hex,
  KIND_PAIRS,
  makeEnv,
  mapRefs,
  pattern,
  type Shared,
  unshare,
} from './ring-fixture.ts';

const U32 = 0x1_0000_0000;
const INTF = 0x10000; // the data-interface page in the frontend
const DATA = 0x11000; // the data area: 2^order pages from here
const SCRATCH = 0x20000; // a page for single-domain helper tests

describe('FLEX ring layout (guest-side.md §7.4)', () => {
  it('data interface: in_cons 0, in_prod 4, pad 8, out_cons 64, out_prod 68, pad 72, ring_order 128, ref[] 132', () => {
    assert.deepEqual(
      [
        FLEX_INTF_IN_CONS,
        FLEX_INTF_IN_PROD,
        FLEX_INTF_PAD1,
        FLEX_INTF_OUT_CONS,
        FLEX_INTF_OUT_PROD,
        FLEX_INTF_PAD2,
        FLEX_INTF_RING_ORDER,
        FLEX_INTF_REF,
        FLEX_INTF_SIZE,
      ],
      [0, 4, 8, 64, 68, 72, 128, 132, 132],
    );
    assert.equal(FlexDataIntf.MAX_REFS, 991);
    assert.equal(FLEX_XEN_PAGE_SHIFT, 12);
  });

  it('the fields land at those bytes, little-endian (golden page)', () => {
    const env = makeEnv('pv', 'pv');
    const mem = env.frontMem;
    mem.fill(INTF, 4096, 0xcc);
    const intf = new FlexDataIntf(mem, INTF);
    intf.clear();
    intf.setCons('in', 0x11223344);
    intf.setProd('in', 0x55667788);
    intf.setCons('out', 1);
    intf.setProd('out', 0xffff_ffff);
    intf.ringOrder = 2;
    intf.setRef(0, 0x1000);
    intf.setRef(3, 0xabcdef01);
    const page = mem.read(INTF, 152);
    assert.equal(hex(page.subarray(0, 8)), '4433221188776655');
    assert.equal(hex(page.subarray(8, 64)), '00'.repeat(56));
    assert.equal(hex(page.subarray(64, 72)), '01000000ffffffff');
    assert.equal(hex(page.subarray(72, 128)), '00'.repeat(56));
    assert.equal(hex(page.subarray(128, 132)), '02000000');
    assert.equal(hex(page.subarray(132, 152)), `00100000${'cc'.repeat(8)}01efcdab${'cc'.repeat(4)}`);
    assert.deepEqual(
      [intf.cons('in'), intf.prod('in'), intf.cons('out'), intf.prod('out'), intf.ringOrder, intf.ref(3)],
      [0x11223344, 0x55667788, 1, 0xffff_ffff, 2, 0xabcdef01],
    );
    assert.throws(() => intf.ref(991), RangeError);
    assert.throws(() => intf.setRef(-1, 0), RangeError);
    finish(env);
  });

  it('XEN_FLEX_RING_SIZE(order) = 2^(order + 12 − 1): each ring is half of the 2^order-page area', () => {
    const cases: [number, number][] = [
      [0, 2048],
      [1, 4096],
      [2, 8192],
      [6, 131072],
      [9, 1 << 20],
      [20, 2 ** 31],
    ];
    for (const [order, size] of cases) assert.equal(xenFlexRingSize(order), size, `order ${order}`);
    assert.equal(FLEX_MAX_ORDER, 20);
    assert.throws(() => xenFlexRingSize(21), RangeError);
    assert.throws(() => xenFlexRingSize(-1), RangeError);
  });

  it('mask and get_ring_ptr: idx & (size − 1), for any u32 index', () => {
    assert.equal(flexMask(0, 2048), 0);
    assert.equal(flexMask(2048, 2048), 0);
    assert.equal(flexMask(2049, 2048), 1);
    assert.equal(flexMask(0xffff_ffff, 2048), 2047);
    assert.equal(flexMask(-1, 4096), 4095);
    assert.equal(flexMask(0xffff_ffff, 2 ** 31), 2 ** 31 - 1);
    assert.equal(flexRingPtr(0x5000, 0xffff_fffe, 2048), 0x5000 + 2046);
  });

  it('queued: 0 when prod == cons, the ring size when only the masked values match, else the masked distance', () => {
    const N = 2048;
    const cases: [number, number, number][] = [
      // [prod, cons, queued]
      [0, 0, 0],
      [5, 3, 2],
      [N, 0, N], // full
      [0xffff_ffff, 0xffff_ffff, 0],
      [2, 0xffff_fffe, 4], // across the wrap: 2046 -> 2 is 4 bytes
      [N - 2, 0xffff_fffe, N], // full across the wrap
      [3, 5, N - 2], // prod "behind" cons: the masked distance the other way round
      [5 * N, 0, N], // a lying producer 5 rings ahead: masked equal, reads as full, never more
      [5 * N + 7, 0, 7], // ... or as 7
      [0x8000_0000, 0, N], // 2^31 apart
    ];
    for (const [prod, cons, want] of cases)
      assert.equal(flexQueued(prod, cons, N), want, `prod ${prod} cons ${cons}`);
  });
});

describe('FLEX ring read_packet / write_packet (guest-side.md §7.4)', () => {
  /** A 16-byte ring at SCRATCH + 16, with guard bytes around it. */
  function ring16(): { env: Env; buf: number; bytes: () => string; guards: () => string } {
    const env = makeEnv('hvm', 'pv');
    env.frontMem.fill(SCRATCH, 48, 0xee);
    const buf = SCRATCH + 16;
    env.frontMem.fill(buf, 16, 0);
    return {
      env,
      buf,
      bytes: () => hex(env.frontMem.read(buf, 16)),
      guards: () => hex(env.frontMem.read(SCRATCH, 16)) + hex(env.frontMem.read(buf + 16, 16)),
    };
  }
  const GUARDS = 'ee'.repeat(32);

  it('write_packet: contiguous, exactly to the end (masked prod back to 0), split at the end', () => {
    const t = ring16();
    const mem = t.env.frontMem;
    assert.equal(flexWritePacket(mem, t.buf, Uint8Array.of(1, 2, 3, 4, 5), 0, 0, 16), 5);
    assert.equal(t.bytes(), `0102030405${'00'.repeat(11)}`);
    // prod 12, cons 4: 4 bytes to the end, no split.
    assert.equal(flexWritePacket(mem, t.buf, Uint8Array.of(6, 7, 8, 9), 12, 4, 16), 0);
    assert.equal(t.bytes(), `0102030405${'00'.repeat(7)}06070809`);
    // prod 14, cons 8: 6 bytes split 2 + 4.
    assert.equal(flexWritePacket(mem, t.buf, Uint8Array.of(0xa, 0xb, 0xc, 0xd, 0xe, 0xf), 14, 8, 16), 4);
    assert.equal(t.bytes(), `0c0d0e0f05${'00'.repeat(7)}06070a0b`);
    // prod < cons: contiguous up to cons.
    assert.equal(flexWritePacket(mem, t.buf, Uint8Array.of(0x10, 0x11), 4, 7, 16), 6);
    assert.equal(t.bytes(), `0c0d0e0f1011${'00'.repeat(6)}06070a0b`);
    assert.equal(t.guards(), GUARDS);
    finish(t.env);
  });

  it('read_packet: contiguous, exactly to the end, split at the end; the ring is only read', () => {
    const t = ring16();
    const mem = t.env.frontMem;
    mem.write(
      t.buf,
      Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i),
    );
    const out5 = new Uint8Array(5);
    assert.equal(flexReadPacket(mem, t.buf, out5, 9, 2, 16), 7);
    assert.equal(hex(out5), '4243444546');
    const out4 = new Uint8Array(4);
    assert.equal(flexReadPacket(mem, t.buf, out4, 3, 12, 16), 0);
    assert.equal(hex(out4), '4c4d4e4f');
    const out6 = new Uint8Array(6);
    assert.equal(flexReadPacket(mem, t.buf, out6, 4, 14, 16), 4);
    assert.equal(hex(out6), '4e4f40414243');
    // A full ring (masked prod == cons) read whole from the middle: split.
    const all = new Uint8Array(16);
    assert.equal(flexReadPacket(mem, t.buf, all, 10, 10, 16), 10);
    assert.equal(hex(all), '4a4b4c4d4e4f40414243444546474849');
    assert.equal(t.bytes(), '404142434445464748494a4b4c4d4e4f');
    assert.equal(t.guards(), GUARDS);
    finish(t.env);
  });

  it('where the C functions would copy past the end of the ring, these refuse (and touch nothing)', () => {
    const t = ring16();
    const mem = t.env.frontMem;
    // write_packet with prod < cons takes the one-piece path; 15 bytes from 2 would run past 16.
    assert.throws(() => flexWritePacket(mem, t.buf, new Uint8Array(15).fill(9), 2, 3, 16), RangeError);
    // read_packet with cons < prod likewise.
    assert.throws(() => flexReadPacket(mem, t.buf, new Uint8Array(15), 3, 2, 16), RangeError);
    assert.throws(() => flexWritePacket(mem, t.buf, new Uint8Array(17), 0, 0, 16), RangeError);
    assert.throws(() => flexReadPacket(mem, t.buf, new Uint8Array(1), 0, 16, 16), RangeError);
    assert.throws(() => flexReadPacket(mem, t.buf, new Uint8Array(1), 0, 0, 12), RangeError);
    assert.equal(t.bytes(), '00'.repeat(16));
    assert.equal(t.guards(), GUARDS);
    finish(t.env);
  });
});

// ---- two domains --------------------------------------------------------------------------------

interface FlexRig {
  env: Env;
  intfShare: Shared;
  dataShare: Shared;
  front: FlexRing;
  back: FlexRing;
}

/**
 * The frontend sets up a data-interface page and a 2^order-page data area,
 * grants them all and lists the data refs in the interface page; the backend
 * maps the interface page, reads ring_order and the refs from it (checking the
 * order against its own limit, as pvcalls-back does), and maps the data area.
 * Indices start at `start` on both rings.
 */
function flexRig(env: Env, order: number, start: number, maxOrder = 4): FlexRig {
  const { frontMem, backMem } = env;
  const pages = 2 ** order;
  frontMem.fill(INTF, 4096, 0);
  frontMem.fill(DATA, pages * 4096, 0);
  const intf = new FlexDataIntf(frontMem, INTF);
  intf.ringOrder = order;
  for (const d of ['in', 'out'] as const) {
    intf.setCons(d, start);
    intf.setProd(d, start);
  }
  const [intfRef] = grantPages(env, INTF, 1, 8);
  const dataRefs = grantPages(env, DATA, pages, 9);
  dataRefs.forEach((ref, i) => {
    intf.setRef(i, ref);
  });
  const front = new FlexRing(frontMem, INTF, DATA, order, 'front');
  // Backend: learn everything from the interface page.
  const intfShare = mapRefs(env, INTF, [intfRef!], MAP_VA);
  const bIntf = new FlexDataIntf(backMem, MAP_VA);
  const bOrder = bIntf.ringOrder;
  assert.ok(bOrder <= maxOrder, 'ring_order within the backend limit');
  const refs = Array.from({ length: 2 ** bOrder }, (_, i) => bIntf.ref(i));
  assert.deepEqual(refs, dataRefs);
  const dataShare = mapRefs(env, DATA, refs, MAP_VA + 4096);
  const back = new FlexRing(backMem, MAP_VA, MAP_VA + 4096, bOrder, 'back');
  return { env, intfShare, dataShare, front, back };
}

function closeFlex(r: FlexRig): void {
  unshare(r.env, r.dataShare);
  unshare(r.env, r.intfShare);
  finish(r.env);
}

/** Pushes `data` from one end to the other in chunks, the reader taking what is there each time. */
function stream(from: FlexRing, to: FlexRing, data: Uint8Array, chunks: readonly number[]): Uint8Array {
  const got: Uint8Array[] = [];
  let sent = 0;
  let i = 0;
  let received = 0;
  while (received < data.length) {
    const want = chunks[i++ % chunks.length]!;
    const free = from.writable();
    const n = from.write(data.subarray(sent, sent + want));
    assert.equal(n, Math.min(want, free, data.length - sent));
    sent += n;
    const avail = to.readable();
    assert.equal(avail, sent - received);
    const part = to.read(chunks[(i * 7) % chunks.length]! * 2);
    assert.equal(part.length, Math.min(avail, chunks[(i * 7) % chunks.length]! * 2));
    got.push(part);
    received += part.length;
  }
  return Buffer.concat(got);
}

describe('FLEX rings between two domains (guest-side.md §7.4, §8 item 1)', () => {
  for (const [fk, bk] of KIND_PAIRS) {
    for (const order of [0, 1, 2]) {
      it(`${fk} front, ${bk} back, order ${order}: 3 rings' worth each way, indices across 2^32`, () => {
        const env = makeEnv(fk, bk);
        const start = 0xffff_ff00;
        const r = flexRig(env, order, start);
        const size = xenFlexRingSize(order);
        assert.equal(r.front.ringSize, size);
        assert.equal(r.back.ringSize, size);
        // Layout: in is the first half of the data area, out the second (pvcalls' data.in / data.out).
        assert.equal(r.front.ringAddr('in'), DATA);
        assert.equal(r.front.ringAddr('out'), DATA + size);
        const up = pattern(3 * size + 123, 1);
        const down = pattern(3 * size + 77, 2);
        const chunks = [1, 100, size, 7, size - 3, 2000, 5];
        assert.equal(hex(stream(r.front, r.back, up, chunks)), hex(up));
        assert.equal(hex(stream(r.back, r.front, down, chunks)), hex(down));
        // The bytes went through the right half: the last bytes sent frontend -> backend sit in out.
        const outEnd = flexMask(start + up.length, size);
        assert.equal(env.frontMem.readU8(DATA + size + ((outEnd - 1 + size) % size)), up[up.length - 1]);
        const fi = new FlexDataIntf(env.frontMem, INTF);
        assert.deepEqual(
          [fi.cons('out'), fi.prod('out'), fi.cons('in'), fi.prod('in')],
          [
            (start + up.length) % U32,
            (start + up.length) % U32,
            (start + down.length) % U32,
            (start + down.length) % U32,
          ],
        );
        assert.ok(fi.prod('out') < start, 'the indices wrapped');
        closeFlex(r);
      });
    }
  }

  it('a full ring refuses more; the writer sees the space come back as the reader consumes', () => {
    const env = makeEnv('pv', 'hvm');
    const r = flexRig(env, 0, U32 - 100);
    const size = 2048;
    assert.equal(r.front.write(pattern(size + 10, 3)), size);
    assert.equal(r.front.writable(), 0);
    assert.equal(r.back.readable(), size);
    assert.equal(r.front.write(Uint8Array.of(1)), 0);
    assert.equal(hex(r.back.read(10)), hex(pattern(size + 10, 3).subarray(0, 10)));
    assert.equal(r.front.writable(), 10);
    assert.equal(r.back.read(0).length, 0);
    closeFlex(r);
  });

  it('a lying frontend (out_prod 5 rings + 7 ahead): the backend sees 7 bytes, and never reads outside its ring', () => {
    const env = makeEnv('hvm', 'pv');
    const r = flexRig(env, 1, 0);
    const size = 4096;
    env.frontMem.fill(DATA, size, 0x55); // in
    env.frontMem.fill(DATA + size, size, 0xaa); // out
    const fi = new FlexDataIntf(env.frontMem, INTF);
    fi.setProd('out', 5 * size + 7);
    assert.equal(r.back.readable(), 7);
    assert.equal(hex(r.back.read(1 << 20)), 'aa'.repeat(7));
    // A prod that masks onto cons reads as a full ring: at most size bytes, all from out.
    fi.setProd('out', fi.cons('out') + 2 * size);
    assert.equal(r.back.readable(), size);
    const got = r.back.read(1 << 20);
    assert.equal(got.length, size);
    assert.ok(got.every((b) => b === 0xaa));
    assert.ok(
      env.backMem.read(MAP_VA + 4096, size).every((b) => b === 0x55),
      'in untouched',
    );
    closeFlex(r);
  });
});

describe('FLEX ring index handling (pvcalls __write_ring / __read_ring order)', () => {
  it('write: load cons, load prod, barrier, data, barrier, store prod; read: the same with cons', () => {
    const env = makeEnv('hvm', 'hvm');
    const r = flexRig(env, 0, 0xffff_fffc);
    const trace: string[] = [];
    const words = env.host.hypervisor.machine.words;
    const hdr = env.frontMem.wordAddr(INTF);
    const names: Record<number, string> = { 0: 'in_cons', 4: 'in_prod', 64: 'out_cons', 68: 'out_prod' };
    words.interpose = (op, addr) => {
      if (addr >= hdr && addr < hdr + 72) trace.push(`${op} ${names[addr - hdr]}`);
    };
    const mems = [env.frontMem, env.backMem];
    const saved = mems.map((m) => [m.fence, m.write, m.readInto] as const);
    for (const m of mems) {
      const [f, w, ri] = [m.fence, m.write, m.readInto];
      m.fence = () => {
        trace.push('fence');
        f.call(m);
      };
      m.write = (a, b) => {
        trace.push('data');
        w.call(m, a, b);
      };
      m.readInto = (a, o) => {
        trace.push('data');
        ri.call(m, a, o);
      };
    }
    try {
      assert.equal(r.front.write(pattern(6, 1)), 6); // 4 bytes to the end, then 2: two copies
      assert.deepEqual(trace, [
        'load32 out_cons',
        'load32 out_prod',
        'fence',
        'data',
        'data',
        'fence',
        'store32 out_prod',
      ]);
      trace.length = 0;
      assert.equal(hex(r.back.read(100)), hex(pattern(6, 1)));
      assert.deepEqual(trace, [
        'load32 out_cons',
        'load32 out_prod',
        'fence',
        'data',
        'data',
        'fence',
        'store32 out_cons',
      ]);
    } finally {
      words.interpose = null;
      mems.forEach((m, i) => {
        [m.fence, m.write, m.readInto] = saved[i]!;
      });
    }
    closeFlex(r);
  });
});

describe('FLEX ring property: random writes and reads against a byte queue (guest-side.md §7.4)', () => {
  it('bytes arrive once, in order, queued = the model, over random chunk sizes and start indices', () => {
    const env = makeEnv('pv', 'hvm');
    const order = 1;
    const size = xenFlexRingSize(order);
    const r = flexRig(env, order, 0);
    const fi = new FlexDataIntf(env.frontMem, INTF);
    let runs = 0;
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: U32 - 3 * size, max: U32 - 1 }), fc.integer({ min: 0, max: U32 - 1 })),
        fc.array(
          fc.record({
            who: fc.constantFrom('front' as const, 'back' as const),
            write: fc.boolean(),
            n: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 2 * size })),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        (start, ops) => {
          runs++;
          for (const d of ['in', 'out'] as const) {
            fi.setCons(d, start);
            fi.setProd(d, start);
          }
          const model = { out: [] as number[], in: [] as number[] };
          let seed = 0;
          const sent = { out: 0, in: 0 };
          for (const op of ops) {
            const end = op.who === 'front' ? r.front : r.back;
            const dir = op.write ? end.sendDir : end.recvDir;
            const q = model[dir];
            assert.equal(end.readable(), model[end.recvDir].length);
            assert.equal(end.writable(), size - model[end.sendDir].length);
            if (op.write) {
              const data = pattern(op.n, ++seed);
              const n = end.write(data);
              assert.equal(n, Math.min(op.n, size - q.length));
              q.push(...data.subarray(0, n));
              sent[dir] += n;
            } else {
              const got = end.read(op.n);
              assert.equal(got.length, Math.min(op.n, q.length));
              assert.deepEqual([...got], q.splice(0, got.length));
            }
            for (const d of ['in', 'out'] as const) {
              assert.equal(flexQueued(fi.prod(d), fi.cons(d), size), model[d].length);
              assert.equal(fi.prod(d), (start + sent[d]) % U32);
            }
          }
        },
      ),
      { numRuns: 150, seed: 0xf1e4 },
    );
    assert.equal(runs, 150);
    closeFlex(r);
  });
});
