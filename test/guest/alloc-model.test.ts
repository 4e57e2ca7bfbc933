// Model-based test of the driver's grant-reference allocator (guest-side.md
// §2.6, §2.7, §3.2, §3.3): private pools (alloc/claim/release/free), single
// and consecutive refs, free callbacks, growth a frame at a time up to the
// maximum and -ENOSPC beyond it, run with fast-check commands against a plain
// model written here: the set of free refs, the table size, each pool's refs
// (a stack of released refs over a set whose order the list decides), the
// callback list in Linux's order. After every command the driver's free
// count, size, frames and free bitmap must equal the model's, the callbacks
// that ran must be exactly those the model says, in order, and
// host.checkInvariants() must be empty.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ENOSPC } from '../../src/guest/gnttab/errno.ts';
import {
  GNTTAB_LIST_END,
  type GnttabFreeCallback,
  type GrantRefPool,
  newFreeCallback,
} from '../../src/guest/gnttab/free-list.ts';
import { Gnttab } from '../../src/guest/gnttab/grant-table.ts';
import { Host } from '../../src/index.ts';

const MAX_FRAMES = 3;

interface Real {
  host: Host;
  gt: Gnttab;
  pools: GrantRefPool[];
  cbs: GnttabFreeCallback[];
  fired: number[];
}

interface ModelPool {
  /** Refs released back onto the pool, top last: claim returns them first. */
  stack: number[];
  /** Refs from the allocation, in an order the free list decides. */
  rest: Set<number>;
}

interface ModelCb {
  id: number;
  count: number;
}

interface Model {
  per: number;
  frames: number;
  size: number;
  free: Set<number>;
  pools: (ModelPool | null)[];
  /** Refs claimed from pools or allocated one at a time, held by the caller. */
  held: number[];
  seqs: { first: number; count: number }[];
  /** The callback list, front first. */
  cbList: ModelCb[];
  fired: number[];
}

// ---- model helpers ------------------------------------------------------------------------------

/** do_free_callbacks: front to back; satisfied ones fire, the rest go back in reverse order. */
function checkpoint(m: Model): void {
  const old = m.cbList;
  m.cbList = [];
  for (const cb of old) {
    if (m.free.size >= cb.count) m.fired.push(cb.id);
    else m.cbList.unshift(cb);
  }
}

/** gnttab_expand: whole frames for `req` more refs, or false past the maximum. */
function grow(m: Model, req: number): boolean {
  const extra = Math.ceil(req / m.per);
  if (m.frames + extra > MAX_FRAMES) return false;
  for (let r = m.size; r < m.size + extra * m.per; r++) m.free.add(r);
  m.size += extra * m.per;
  m.frames += extra;
  checkpoint(m);
  return true;
}

function hasRun(m: Model, count: number): boolean {
  let run = 0;
  for (let r = 0; r < m.size; r++) {
    run = m.free.has(r) ? run + 1 : 0;
    if (run >= count) return true;
  }
  return false;
}

function tailRun(m: Model): number {
  let n = 0;
  for (let r = m.size - 1; r >= 0 && m.free.has(r); r--) n++;
  return n;
}

/** Refs the real list took since `before` (those the model had free and the driver no longer has). */
function taken(m: Model, r: Real): number[] {
  return [...m.free].filter((x) => !r.gt.isFree(x));
}

function same(m: Model, r: Real): void {
  assert.equal(r.gt.freeCount, m.free.size, 'free count');
  assert.equal(r.gt.size, m.size, 'table size');
  assert.equal(r.gt.nrGrantFrames, m.frames, 'frames');
  for (let x = 0; x < m.size; x++) assert.equal(r.gt.isFree(x), m.free.has(x), `ref ${x} free?`);
  assert.deepEqual(r.fired, m.fired, 'callbacks that ran');
  assert.deepEqual(r.host.checkInvariants(), []);
}

// ---- commands -----------------------------------------------------------------------------------

type Cmd = fc.Command<Model, Real>;

/** get_free_entries(count) as the model sees it: -ENOSPC, or true with the refs to take. */
function plainAlloc(m: Model, count: number): boolean {
  if (m.free.size < count && !grow(m, count - m.free.size)) return false;
  return true;
}

class AllocPool implements Cmd {
  readonly count: number;
  constructor(count: number) {
    this.count = count;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const pool = { head: GNTTAB_LIST_END };
    const rc = r.gt.allocGrantReferences(this.count, pool);
    if (!plainAlloc(m, this.count)) {
      assert.equal(rc, -ENOSPC);
      assert.equal(pool.head, GNTTAB_LIST_END);
    } else {
      assert.equal(rc, 0);
      const got = taken(m, r);
      assert.equal(got.length, this.count, 'exactly count refs left the free list');
      assert.ok(got.includes(pool.head));
      for (const x of got) m.free.delete(x);
      r.pools.push(pool);
      m.pools.push({ stack: [], rest: new Set(got) });
    }
    same(m, r);
  }
  toString(): string {
    return `allocPool(${this.count})`;
  }
}

class Claim implements Cmd {
  readonly pick: number;
  constructor(pick: number) {
    this.pick = pick;
  }
  check(m: Model): boolean {
    return m.pools.some((p) => p !== null);
  }
  run(m: Model, r: Real): void {
    const live = m.pools.map((p, i) => (p === null ? -1 : i)).filter((i) => i >= 0);
    const i = live[this.pick % live.length]!;
    const mp = m.pools[i]!;
    const ref = r.gt.claimGrantReference(r.pools[i]!);
    if (mp.stack.length === 0 && mp.rest.size === 0) {
      assert.equal(ref, -ENOSPC);
      assert.equal(r.gt.emptyGrantReferences(r.pools[i]!), true);
    } else if (mp.stack.length > 0) {
      assert.equal(ref, mp.stack.pop());
      m.held.push(ref);
    } else {
      assert.ok(mp.rest.has(ref), `claimed ${ref} from the pool`);
      mp.rest.delete(ref);
      m.held.push(ref);
    }
    same(m, r);
  }
  toString(): string {
    return `claim(${this.pick})`;
  }
}

class Release implements Cmd {
  readonly pick: number;
  readonly which: number;
  constructor(pick: number, which: number) {
    this.pick = pick;
    this.which = which;
  }
  check(m: Model): boolean {
    return m.pools.some((p) => p !== null) && m.held.length > 0;
  }
  run(m: Model, r: Real): void {
    const live = m.pools.map((p, i) => (p === null ? -1 : i)).filter((i) => i >= 0);
    const i = live[this.pick % live.length]!;
    const k = this.which % m.held.length;
    const ref = m.held[k]!;
    m.held.splice(k, 1);
    r.gt.releaseGrantReference(r.pools[i]!, ref);
    m.pools[i]!.stack.push(ref);
    assert.equal(r.gt.isFree(ref), false);
    same(m, r);
  }
  toString(): string {
    return `release(${this.pick}, ${this.which})`;
  }
}

class FreePool implements Cmd {
  readonly pick: number;
  constructor(pick: number) {
    this.pick = pick;
  }
  check(m: Model): boolean {
    return m.pools.some((p) => p !== null);
  }
  run(m: Model, r: Real): void {
    const live = m.pools.map((p, i) => (p === null ? -1 : i)).filter((i) => i >= 0);
    const i = live[this.pick % live.length]!;
    const mp = m.pools[i]!;
    r.gt.freeGrantReferences(r.pools[i]!.head);
    for (const x of [...mp.stack, ...mp.rest]) m.free.add(x);
    m.pools[i] = null;
    checkpoint(m);
    same(m, r);
  }
  toString(): string {
    return `freePool(${this.pick})`;
  }
}

class AllocOne implements Cmd {
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const ref = r.gt.allocGrantReferenceSeq(1);
    if (!plainAlloc(m, 1)) {
      assert.equal(ref, -ENOSPC);
    } else {
      assert.ok(m.free.has(ref), `allocated ${ref} was free`);
      m.free.delete(ref);
      m.held.push(ref);
    }
    same(m, r);
  }
  toString(): string {
    return 'allocOne';
  }
}

class FreeOne implements Cmd {
  readonly which: number;
  constructor(which: number) {
    this.which = which;
  }
  check(m: Model): boolean {
    return m.held.length > 0;
  }
  run(m: Model, r: Real): void {
    const k = this.which % m.held.length;
    const ref = m.held[k]!;
    m.held.splice(k, 1);
    r.gt.freeGrantReference(ref);
    m.free.add(ref);
    checkpoint(m);
    same(m, r);
  }
  toString(): string {
    return `freeOne(${this.which})`;
  }
}

class AllocSeq implements Cmd {
  readonly count: number;
  constructor(count: number) {
    this.count = count;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const first = r.gt.allocGrantReferenceSeq(this.count);
    // §3.3 get_free_entries_seq: grow for the shortfall; then a run anywhere, or grow the tail run.
    let ok = plainAlloc(m, this.count);
    if (ok && !hasRun(m, this.count)) ok = grow(m, this.count - tailRun(m));
    if (!ok) {
      assert.equal(first, -ENOSPC);
    } else {
      assert.ok(first >= 8 && first + this.count <= m.size, `run ${first}+${this.count} in ${m.size}`);
      for (let x = first; x < first + this.count; x++) {
        assert.ok(m.free.has(x), `ref ${x} of the run was free`);
        m.free.delete(x);
      }
      m.seqs.push({ first, count: this.count });
    }
    same(m, r);
  }
  toString(): string {
    return `allocSeq(${this.count})`;
  }
}

class FreeSeq implements Cmd {
  readonly which: number;
  constructor(which: number) {
    this.which = which;
  }
  check(m: Model): boolean {
    return m.seqs.length > 0;
  }
  run(m: Model, r: Real): void {
    const k = this.which % m.seqs.length;
    const s = m.seqs[k]!;
    m.seqs.splice(k, 1);
    r.gt.freeGrantReferenceSeq(s.first, s.count);
    for (let x = s.first; x < s.first + s.count; x++) m.free.add(x);
    checkpoint(m);
    same(m, r);
  }
  toString(): string {
    return `freeSeq(${this.which})`;
  }
}

class RequestCb implements Cmd {
  readonly id: number;
  readonly count: number;
  constructor(id: number, count: number) {
    this.id = id;
    this.count = count;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const id = this.id;
    r.gt.requestFreeCallback(r.cbs[id]!, () => r.fired.push(id), id, this.count);
    // Already queued: nothing changes (fn, arg and count stay as they were).
    if (!m.cbList.some((c) => c.id === id)) {
      m.cbList.unshift({ id, count: this.count });
      checkpoint(m);
    }
    same(m, r);
  }
  toString(): string {
    return `requestCb(${this.id}, ${this.count})`;
  }
}

class CancelCb implements Cmd {
  readonly id: number;
  constructor(id: number) {
    this.id = id;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    r.gt.cancelFreeCallback(r.cbs[this.id]!);
    m.cbList = m.cbList.filter((c) => c.id !== this.id);
    same(m, r);
  }
  toString(): string {
    return `cancelCb(${this.id})`;
  }
}

const commands = [
  fc.integer({ min: 1, max: 40 }).map((n) => new AllocPool(n)),
  fc.nat().map((n) => new Claim(n)),
  fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => new Release(a, b)),
  fc.nat().map((n) => new FreePool(n)),
  fc.constant(new AllocOne()),
  fc.nat().map((n) => new FreeOne(n)),
  fc.oneof(fc.integer({ min: 2, max: 40 }), fc.integer({ min: 41, max: 800 })).map((n) => new AllocSeq(n)),
  fc.nat().map((n) => new FreeSeq(n)),
  fc
    .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1600 }))
    .map(([id, c]) => new RequestCb(id, c)),
  fc.integer({ min: 0, max: 3 }).map((id) => new CancelCb(id)),
];

describe('grant-reference allocator against a model (§2.6, §2.7, §3.2, §3.3)', () => {
  for (const kind of ['pv', 'hvm'] as const) {
    for (const version of [1, 2] as const) {
      it(`${kind} v${version}: pools, single and consecutive refs, callbacks, growth and -ENOSPC`, () => {
        fc.assert(
          fc.property(fc.commands(commands, { maxCommands: 80, size: 'max' }), (cmds) => {
            const host = new Host({ memoryMiB: 8 });
            const dom = host.createDomain({ kind, memoryKiB: 256, maxGrantFrames: MAX_FRAMES });
            const gt = new Gnttab(host.context(dom.domid), { version });
            assert.equal(gt.init(), 0);
            const per = version === 1 ? 512 : 256;
            const model: Model = {
              per,
              frames: 1,
              size: per,
              free: new Set(Array.from({ length: per - 8 }, (_, i) => i + 8)),
              pools: [],
              held: [],
              seqs: [],
              cbList: [],
              fired: [],
            };
            const real: Real = {
              host,
              gt,
              pools: [],
              cbs: [0, 1, 2, 3].map(() => newFreeCallback()),
              fired: [],
            };
            fc.modelRun(() => ({ model, real }), cmds);
            // The Xen side agrees on the frames the driver set up.
            assert.equal(dom.xen.gt.nrGrantFrames, model.frames);
          }),
          { numRuns: 60 },
        );
      });
    }
  }
});
