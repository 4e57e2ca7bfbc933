// Model-based tests (fast-check commands + modelRun).
//
// 1. Random sequences of grant-table operations on a small host (three domain
//    slots, pv and hvm, v1 and v2, maxGrantFrames <= 4) checked against a plain
//    reference model written here: per granter its version, frames and the
//    entries it granted; per grantee its live handles; the expected pins per
//    (granter, ref); the contents of the pages grants point at; the maptrack
//    free lists (reference §4.3). After every command the real statuses must
//    equal the model's predictions, `host.checkInvariants()` must be empty and
//    the pins of every `dom.xen.gt.active` must equal the model's.
// 2. The maptrack handle allocator alone (src/xen/maptrack.ts) against a model
//    of reference §4.3.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  DOMID_SELF,
  type DomainHandle,
  encodeArray,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_bad_gntref,
  GNTST_bad_handle,
  GNTST_bad_page,
  GNTST_eagain,
  GNTST_general_error,
  GNTST_no_space,
  GNTST_okay,
  GNTST_permission_denied,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_writing,
  GuestFault,
  gntstName,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
  readStructArray,
  type StructDef,
  type StructValue,
  XEN_EBUSY,
  XEN_EINVAL,
  XEN_ENOSYS,
} from '../../src/index.ts';
import { Maptrack } from '../../src/xen/maptrack.ts';
import { GNTTAB_VA, MAP_VA, mapGrantTable, STATUS_VA, scratch } from '../helpers/guest.ts';

// ---- the maptrack model (reference §4.3) ------------------------------------------------------

const PER_PAGE = 256;

/**
 * §4.3 as plain queues: each vCPU has a FIFO free list that always keeps one
 * entry back (the sentinel); a new page hands out its first handle and puts
 * the other 255 at the head of the list; with no page to add, a handle is
 * stolen from another vCPU's list (starting at a random vCPU), and a vCPU
 * whose list was never set up first steals an extra entry for its sentinel.
 * A freed handle goes to the tail of the list of the vCPU it belongs to.
 */
class MaptrackModel {
  limit = 0;
  readonly lists: number[][];
  readonly initialised: boolean[];
  /** Handle -> the vCPU whose list it returns to. */
  readonly owner: number[] = [];
  readonly maxFrames: number;
  private readonly random: () => number;

  constructor(maxFrames: number, vcpus: number, random: () => number) {
    this.maxFrames = maxFrames;
    this.lists = Array.from({ length: vcpus }, () => []);
    this.initialised = new Array<boolean>(vcpus).fill(false);
    this.random = random;
  }

  get frames(): number {
    return this.limit / PER_PAGE;
  }

  private pop(v: number): number {
    const q = this.lists[v]!;
    return q.length > 1 ? q.shift()! : -1;
  }

  private steal(curr: number): number {
    const n = this.lists.length;
    const first = Math.floor(this.random() * n) % n;
    let i = first;
    do {
      const h = this.pop(i);
      if (h !== -1) {
        this.owner[h] = curr;
        return h;
      }
      i = (i + 1) % n;
    } while (i !== first);
    return -1;
  }

  get(v: number): number {
    const h = this.pop(v);
    if (h !== -1) return h;
    if (this.frames >= this.maxFrames) {
      if (!this.initialised[v]) {
        const s = this.steal(v);
        if (s === -1) return -1;
        this.lists[v] = [s];
        this.initialised[v] = true;
      }
      return this.steal(v);
    }
    const first = this.limit;
    const fresh: number[] = [];
    for (let i = 0; i < PER_PAGE; i++) this.owner[first + i] = v;
    for (let i = 1; i < PER_PAGE; i++) fresh.push(first + i);
    this.lists[v] = [...fresh, ...this.lists[v]!];
    this.initialised[v] = true;
    this.limit += PER_PAGE;
    return first;
  }

  put(h: number): void {
    this.lists[this.owner[h]!]!.push(h);
  }
}

/** xorshift32, so the real allocator and the model see the same "random" vCPU choices. */
function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

// ---- the grant-table model ---------------------------------------------------------------------

type Kind = 'pv' | 'hvm';

interface DomConfig {
  kind: Kind;
  maxVersion: 1 | 2;
  maxFrames: number;
  maptrackFrames: number;
  vcpus: number;
}

interface Grant {
  grantee: number;
  /** RAM page index of the granter (0..PAGES-1). */
  page: number;
  readonly: boolean;
}

interface Mapping {
  granter: number;
  ref: number;
  readonly: boolean;
  /** Index of the host-address slot: host_addr = MAP_VA + slot * 4096. */
  slot: number;
  page: number;
}

interface MDom {
  domid: number;
  cfg: DomConfig;
  version: 1 | 2;
  nrFrames: number;
  alive: boolean;
  grants: Map<number, Grant>;
  handles: Map<number, Mapping>;
  usedSlots: Set<number>;
  mt: MaptrackModel;
  /** Contents of RAM pages 0..PAGES-1. */
  pages: Uint8Array[];
  /** Machine frame of each of those pages (recorded at creation). */
  mfns: number[];
  /** PV: MFNs of the shared frames, as setup_table reported them. */
  sharedMfns: number[];
}

interface Pin {
  grantee: number;
  hstw: number;
  hstr: number;
  page: number;
}

interface Model {
  slots: (number | null)[];
  /** Domains the hypervisor still knows: alive, or dead but kept as zombies by mappings. */
  doms: Map<number, MDom>;
  pins: Map<string, Pin>;
  nextDomid: number;
  /** Domids that existed once and are gone for good. */
  gone: number[];
}

interface Real {
  host: Host;
  handles: Map<number, DomainHandle>;
}

const NSLOTS = 3;
const PAGES = 8;
const RAM_KIB = 256;
/** Refs >= 8 the guests grant (some only exist once the table has grown). */
const REF_POOL = [8, 9, 10, 11, 12, 13, 255, 256, 300, 511, 512, 1023, 1024, 1500, 2047];
/** Refs used to probe: reserved ones, the pool, and refs beyond any table here. */
const PROBE_REFS = [0, 1, 5, 7, ...REF_POOL, 2048, 4096, 0x7fffffff, 0xffffffff];

const key = (granter: number, ref: number) => `${granter}:${ref}`;
const entries = (d: MDom) => d.nrFrames * (d.version === 1 ? 512 : 256);
const addrOf = (slot: number) => MAP_VA + slot * 4096;

function pageFill(domid: number, page: number): Uint8Array {
  const out = new Uint8Array(4096);
  const rnd = xorshift((domid + 1) * 7919 + page * 104729);
  for (let i = 0; i < 4096; i++) out[i] = Math.floor(rnd() * 256);
  return out;
}

function freeSlot(d: MDom): number {
  let s = 0;
  while (d.usedSlots.has(s)) s++;
  return s;
}

function aliveDoms(m: Model): MDom[] {
  const out: MDom[] = [];
  for (const id of m.slots) if (id !== null) out.push(m.doms.get(id)!);
  return out;
}

/** Dead domains stay (as zombies) only while a live domain still maps one of their pages. */
function collectZombies(m: Model): void {
  const held = new Set<number>();
  for (const d of m.doms.values()) if (d.alive) for (const h of d.handles.values()) held.add(h.granter);
  for (const [id, d] of [...m.doms]) {
    if (!d.alive && !held.has(id)) {
      m.doms.delete(id);
      m.gone.push(id);
    }
  }
}

function dropPin(m: Model, granter: number, ref: number, readonly: boolean): void {
  const k = key(granter, ref);
  const p = m.pins.get(k)!;
  if (readonly) p.hstr--;
  else p.hstw--;
  if (p.hstr === 0 && p.hstw === 0) m.pins.delete(k);
}

/** Reference §6.1: the status one host map should get, with the model updated as Xen would. */
function modelMap(
  m: Model,
  g: MDom,
  a: number,
  ref: number,
  ro: boolean,
  vcpu: number,
  slot: number,
): { status: number; handle: number } {
  const rd = m.doms.get(a);
  // Step 3: lookup by exact id (DOMID_SELF and gone domains are bad_domain).
  if (rd === undefined) return { status: GNTST_bad_domain, handle: -1 };
  // Step 5: a handle is taken before the ref is even looked at.
  const h = g.mt.get(vcpu);
  if (h < 0) return { status: GNTST_no_space, handle: -1 };
  const fail = (status: number) => {
    g.mt.put(h);
    return { status, handle: -1 };
  };
  if (ref >= entries(rd)) return fail(GNTST_bad_gntref);
  const k = key(a, ref);
  const pin = m.pins.get(k);
  // Step 7: another grantee, or the counter being incremented is at 128 (quirk §15.10).
  if (pin !== undefined && (pin.grantee !== g.domid || (ro ? pin.hstr : pin.hstw) >= 128))
    return fail(GNTST_general_error);
  const e = rd.grants.get(ref);
  let page: number;
  if (pin === undefined || (!ro && pin.hstw === 0)) {
    // H1 (§6.0): an unpinned entry must be permit_access for this grantee; a
    // writable pin needs the entry not read-only (checked even when pinned).
    if (pin === undefined && (e === undefined || e.grantee !== g.domid)) return fail(GNTST_general_error);
    if (!ro && e?.readonly === true) return fail(GNTST_general_error);
    // H3: a dying granter's frames cannot be looked up any more.
    if (pin === undefined && !rd.alive) return fail(GNTST_bad_page);
    page = pin?.page ?? e!.page;
  } else {
    page = pin.page;
  }
  const p = pin ?? { grantee: g.domid, hstw: 0, hstr: 0, page };
  if (ro) p.hstr++;
  else p.hstw++;
  m.pins.set(k, p);
  g.handles.set(h, { granter: a, ref, readonly: ro, slot, page });
  g.usedSlots.add(slot);
  return { status: GNTST_okay, handle: h };
}

/** Reference §6.2: unmap of one handle at one host address (0: nothing to do, quirk §15.4). */
function modelUnmap(m: Model, g: MDom, handle: number, hostAddr: number): number {
  const hd = g.handles.get(handle);
  if (hd === undefined) return GNTST_bad_handle;
  if (hostAddr === 0) return GNTST_okay;
  if (hostAddr !== addrOf(hd.slot)) return GNTST_general_error;
  g.handles.delete(handle);
  g.usedSlots.delete(hd.slot);
  g.mt.put(handle);
  dropPin(m, hd.granter, hd.ref, hd.readonly);
  return GNTST_okay;
}

// ---- the real side -----------------------------------------------------------------------------

function hypercallOps<F extends string>(
  dom: DomainHandle,
  cmd: number,
  def: StructDef<F>,
  ops: readonly Partial<StructValue<F>>[],
): { rc: number; out: StructValue<F>[] } {
  const addr = scratch(dom);
  dom.memory.write(addr, encodeArray(def, ops));
  const rc = dom.hypercall(__HYPERVISOR_grant_table_op, cmd, addr, ops.length);
  return { rc, out: readStructArray(dom.memory, addr, def, ops.length) };
}

function entryAddr(version: 1 | 2, ref: number): number {
  const per = version === 1 ? 512 : 256;
  return GNTTAB_VA + Math.floor(ref / per) * 4096 + (ref % per) * (version === 1 ? 8 : 16);
}

function statusWordAddr(version: 1 | 2, ref: number): number {
  if (version === 1) return entryAddr(1, ref);
  return STATUS_VA + Math.floor(ref / 2048) * 4096 + (ref % 2048) * 2;
}

function createDomain(m: Model, r: Real, slot: number, cfg: DomConfig): void {
  const h = r.host.createDomain({
    kind: cfg.kind,
    memoryKiB: RAM_KIB,
    maxGrantFrames: cfg.maxFrames,
    maxMaptrackFrames: cfg.maptrackFrames,
    maxGrantVersion: cfg.maxVersion,
    vcpus: cfg.vcpus,
  });
  assert.equal(h.domid, m.nextDomid, 'domids are handed out in order and never reused');
  m.nextDomid++;
  const d: MDom = {
    domid: h.domid,
    cfg,
    version: 1,
    nrFrames: 1,
    alive: true,
    grants: new Map(),
    handles: new Map(),
    usedSlots: new Set(),
    // With at most two vCPUs a steal never depends on the random starting vCPU.
    mt: new MaptrackModel(cfg.maptrackFrames, cfg.vcpus, () => 0),
    pages: [],
    mfns: [],
    sharedMfns: [],
  };
  for (let p = 0; p < PAGES; p++) {
    const bytes = pageFill(h.domid, p);
    h.memory.write(p * 4096, bytes);
    d.pages.push(bytes.slice());
    d.mfns.push(cfg.kind === 'pv' ? h.frameOf(p * 4096) : h.xen.p2m!.get(p)!.mfn);
  }
  mapGrantTable(h, 1);
  m.doms.set(h.domid, d);
  m.slots[slot] = h.domid;
  r.handles.set(h.domid, h);
}

function setup(cfgs: DomConfig[]): () => { model: Model; real: Real } {
  return () => {
    const model: Model = {
      slots: [null, null, null],
      doms: new Map(),
      pins: new Map(),
      nextDomid: 0,
      gone: [],
    };
    const real: Real = { host: new Host({ memoryMiB: 8 }), handles: new Map() };
    cfgs.forEach((cfg, i) => {
      createDomain(model, real, i, cfg);
    });
    return { model, real };
  };
}

/** Everything the model knows, compared with the hypervisor's state. */
function checkAll(m: Model, r: Real, what: string): void {
  const hv = r.host.hypervisor;
  assert.deepEqual(r.host.checkInvariants(), [], `${what}: invariants`);
  assert.deepEqual(
    [...hv.domains.keys()].sort((x, y) => x - y),
    [...m.doms.keys()].sort((x, y) => x - y),
    `${what}: the domains Xen still holds (alive and zombie)`,
  );
  for (const d of m.doms.values()) {
    const xd = hv.domains.get(d.domid)!;
    assert.equal(xd.isDying, !d.alive, `${what}: d${d.domid} dying`);
    assert.equal(xd.gt.version, d.version, `${what}: d${d.domid} version`);
    assert.equal(xd.gt.nrGrantFrames, d.nrFrames, `${what}: d${d.domid} frames`);
    const gt = xd.gt;
    for (const k of m.pins.keys()) {
      const [g, ref] = k.split(':').map(Number) as [number, number];
      if (g === d.domid) assert.ok(ref < gt.nrActive, `${what}: model pin ${k} beyond the active table`);
    }
    for (let ref = 0; ref < gt.nrActive; ref++) {
      const p = m.pins.get(key(d.domid, ref));
      const want = p === undefined ? 0 : p.hstw | (p.hstr << 8);
      if (gt.activeEntry(ref).pin !== want)
        assert.fail(
          `${what}: d${d.domid} ref ${ref} pin ${gt.activeEntry(ref).pin.toString(16)}, model ${want.toString(16)}`,
        );
      if (p !== undefined)
        assert.equal(gt.activeEntry(ref).domid, p.grantee, `${what}: d${d.domid} ref ${ref} pinned by`);
    }
    if (!d.alive) continue;
    // Live handles: exactly the model's, naming the same grants.
    const mt = xd.gt.maptrack;
    assert.equal(mt.limit, d.mt.limit, `${what}: d${d.domid} maptrack limit`);
    let live = 0;
    for (let h = 0; h < mt.limit; h++) {
      if (mt.flags(h) === 0) continue;
      live++;
      const hd = d.handles.get(h);
      assert.ok(hd !== undefined, `${what}: d${d.domid} handle ${h} live but not in the model`);
      assert.equal(mt.domid(h), hd.granter);
      assert.equal(mt.ref(h), hd.ref);
      assert.equal(mt.flags(h), GNTMAP_host_map | (hd.readonly ? GNTMAP_readonly : 0));
    }
    assert.equal(live, d.handles.size, `${what}: d${d.domid} live handles`);
    // The guest's view of its own entries: what it granted, with Xen's status bits
    // matching the pins (v1 in the flags, v2 in the status word).
    const dom = r.handles.get(d.domid)!;
    const n = entries(d);
    for (const ref of new Set([...PROBE_REFS, ...d.grants.keys()])) {
      if (ref >= n) continue;
      const a = entryAddr(d.version, ref);
      const flags = dom.memory.readU16(a);
      const gr = d.grants.get(ref);
      const p = m.pins.get(key(d.domid, ref));
      const bits = p === undefined ? 0 : GTF_reading | (p.hstw > 0 ? GTF_writing : 0);
      const st = d.version === 1 ? flags : dom.memory.readU16(statusWordAddr(2, ref));
      assert.equal(st & (GTF_reading | GTF_writing), bits, `${what}: d${d.domid} ref ${ref} status bits`);
      if (gr === undefined) {
        assert.equal(flags & ~(GTF_reading | GTF_writing), 0, `${what}: d${d.domid} ref ${ref} flags`);
        continue;
      }
      assert.equal(
        flags & ~(GTF_reading | GTF_writing),
        GTF_permit_access | (gr.readonly ? GTF_readonly : 0),
      );
      assert.equal(dom.memory.readU16(a + 2), gr.grantee, `${what}: d${d.domid} ref ${ref} domid`);
      const frame = d.version === 1 ? dom.memory.readU32(a + 4) : Number(dom.memory.readU64(a + 8));
      assert.equal(
        frame,
        d.cfg.kind === 'pv' ? d.mfns[gr.page] : gr.page,
        `${what}: d${d.domid} ref ${ref} frame`,
      );
    }
    // Page contents: the granter's own view of its pages.
    for (let p = 0; p < PAGES; p++) {
      if (Buffer.compare(dom.memory.read(p * 4096, 4096), d.pages[p]!) !== 0)
        assert.fail(`${what}: d${d.domid} page ${p} differs from the model`);
    }
  }
}

// ---- commands ----------------------------------------------------------------------------------

type Cmd = fc.Command<Model, Real>;

/** Outcome counts, printed with GNTTAB_MODEL_STATS=1 to see which paths the runs reach. */
const stats = new Map<string, number>();
function seen(what: string): void {
  stats.set(what, (stats.get(what) ?? 0) + 1);
}

/** Slots 0..2 name a slot; a larger selector prefers a live granter that has pinned grants. */
function busyDom(m: Model, sel: number): MDom | undefined {
  if (sel >= NSLOTS) {
    const busy = aliveDoms(m).filter((d) => [...m.pins.keys()].some((k) => k.startsWith(`${d.domid}:`)));
    if (busy.length > 0) return busy[sel % busy.length];
  }
  return liveDom(m, sel);
}

/** The domain in a slot, or in the next live slot when that one is empty. */
function liveDom(m: Model, slot: number): MDom | undefined {
  for (let i = 0; i < NSLOTS; i++) {
    const id = m.slots[(slot + i) % NSLOTS];
    if (id !== null && id !== undefined) return m.doms.get(id);
  }
  return undefined;
}

/** Granter choices for a map or copy: live slots, zombies, a gone domain, DOMID_SELF. */
function granterCandidates(m: Model): number[] {
  const out = [...m.doms.keys()];
  if (m.gone.length > 0) out.push(m.gone[m.gone.length - 1]!);
  out.push(DOMID_SELF);
  return out;
}

/** Mostly a grant made out to `g` (so that deep paths are reached), else any granter and ref. */
function pickGrant(m: Model, g: MDom, granterSel: number, refSel: number): { a: number; ref: number } {
  const mine: [number, number][] = [];
  for (const d of m.doms.values())
    for (const [ref, gr] of d.grants) if (gr.grantee === g.domid) mine.push([d.domid, ref]);
  mine.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  if (mine.length > 0 && granterSel % 5 !== 0) {
    const [a, ref] = mine[refSel % mine.length]!;
    return { a, ref };
  }
  const cands = granterCandidates(m);
  const a = cands[granterSel % cands.length]!;
  return { a, ref: pickRef(m, a, refSel) };
}

function pickRef(m: Model, granter: number, sel: number): number {
  const d = m.doms.get(granter);
  const granted = d === undefined ? [] : [...d.grants.keys()].sort((x, y) => x - y);
  if (granted.length > 0 && sel % 3 !== 0) return granted[sel % granted.length]!;
  return PROBE_REFS[sel % PROBE_REFS.length]!;
}

/** The guest grants `target` access to one of its pages through entry `ref` (flags last). */
class GrantCmd implements Cmd {
  readonly slot: number;
  readonly refSel: number;
  readonly targetSel: number;
  readonly page: number;
  readonly ro: boolean;
  constructor(slot: number, refSel: number, targetSel: number, page: number, ro: boolean) {
    this.slot = slot;
    this.refSel = refSel;
    this.targetSel = targetSel;
    this.page = page;
    this.ro = ro;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = liveDom(m, this.slot);
    if (d === undefined) return;
    const ref = REF_POOL[this.refSel % REF_POOL.length]!;
    // Linux never rewrites an entry that is in use; a ref beyond the table would need growing first.
    if (ref >= entries(d) || m.pins.has(key(d.domid, ref))) return;
    // Mostly another live domain; sometimes itself or a domain that does not exist.
    const others = m.slots.filter((x): x is number => x !== null && x !== d.domid);
    const t = this.targetSel % 10;
    const grantee = t === 0 || others.length === 0 ? d.domid : t === 1 ? 0x7000 : others[t % others.length]!;
    const dom = r.handles.get(d.domid)!;
    const a = entryAddr(d.version, ref);
    dom.memory.writeU16(a + 2, grantee);
    if (d.version === 1) dom.memory.writeU32(a + 4, d.cfg.kind === 'pv' ? d.mfns[this.page]! : this.page);
    else {
      dom.memory.writeU32(a + 4, 0);
      dom.memory.writeU64(a + 8, d.cfg.kind === 'pv' ? d.mfns[this.page]! : this.page);
    }
    dom.memory.writeU16(a, GTF_permit_access | (this.ro ? GTF_readonly : 0));
    d.grants.set(ref, { grantee, page: this.page, readonly: this.ro });
    checkAll(m, r, this.toString());
  }
  toString = () =>
    `Grant(slot ${this.slot}, refSel ${this.refSel}, target ${this.targetSel}, page ${this.page}, ${this.ro ? 'ro' : 'rw'})`;
}

/**
 * The guest ends access to one of its grants (§14, end_foreign_access_ref):
 * v1 reads the flags and clears them only with reading/writing clear (the
 * model must agree on "in use"); v2 clears the flags, then reads the status.
 */
class EndAccessCmd implements Cmd {
  readonly slot: number;
  readonly sel: number;
  constructor(slot: number, sel: number) {
    this.slot = slot;
    this.sel = sel;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = liveDom(m, this.slot);
    if (d === undefined || d.grants.size === 0) return;
    const refs = [...d.grants.keys()].sort((x, y) => x - y);
    const ref = refs[this.sel % refs.length]!;
    const pin = m.pins.get(key(d.domid, ref));
    const dom = r.handles.get(d.domid)!;
    const a = entryAddr(d.version, ref);
    const expectBits = pin === undefined ? 0 : GTF_reading | (pin.hstw > 0 ? GTF_writing : 0);
    seen(`end_access v${d.version} ${pin === undefined ? 'revoked' : 'in use'}`);
    if (d.version === 1) {
      const flags = dom.memory.readU16(a);
      assert.equal(flags & (GTF_reading | GTF_writing), expectBits, `${this}: v1 flags show the pin`);
      if (pin === undefined) {
        dom.memory.writeU16(a, 0);
        d.grants.delete(ref);
      }
    } else if (pin === undefined) {
      dom.memory.writeU16(a, 0);
      assert.equal(dom.memory.readU16(statusWordAddr(2, ref)) & (GTF_reading | GTF_writing), 0, `${this}`);
      d.grants.delete(ref);
    } else {
      // In use: a v2 guest that saw the status bits would not have revoked yet.
      const st = dom.memory.readU16(statusWordAddr(2, ref));
      assert.equal(st & (GTF_reading | GTF_writing), expectBits, `${this}: v2 status shows the pin`);
    }
    checkAll(m, r, this.toString());
  }
  toString = () => `EndAccess(slot ${this.slot}, sel ${this.sel})`;
}

/** GNTTABOP_map_grant_ref of `n` host mappings of one grant in one hypercall (§6.1). */
class MapCmd implements Cmd {
  readonly slot: number;
  readonly granterSel: number;
  readonly refSel: number;
  readonly ro: boolean;
  readonly vcpu: number;
  readonly n: number;
  constructor(slot: number, granterSel: number, refSel: number, ro: boolean, vcpu: number, n: number) {
    this.slot = slot;
    this.granterSel = granterSel;
    this.refSel = refSel;
    this.ro = ro;
    this.vcpu = vcpu;
    this.n = n;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const g = liveDom(m, this.slot);
    if (g === undefined) return;
    const { a, ref } = pickGrant(m, g, this.granterSel, this.refSel);
    const vcpu = this.vcpu % g.cfg.vcpus;
    const ops: Partial<StructValue<keyof typeof gnttab_map_grant_ref.fields>>[] = [];
    const expected: { status: number; handle: number; slot: number }[] = [];
    for (let i = 0; i < this.n; i++) {
      const slot = freeSlot(g);
      ops.push({
        host_addr: addrOf(slot),
        flags: GNTMAP_host_map | (this.ro ? GNTMAP_readonly : 0),
        ref,
        dom: a,
        handle: 0xdeadbeef,
        dev_bus_addr: 0x1234,
      });
      expected.push({ ...modelMap(m, g, a, ref, this.ro, vcpu, slot), slot });
    }
    const dom = r.handles.get(g.domid)!;
    dom.xen.currentVcpu = vcpu;
    const res = hypercallOps(dom, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, ops);
    assert.equal(res.rc, 0, `${this}: rc`);
    res.out.forEach((o, i) => {
      const e = expected[i]!;
      const msg = `${this} [d${g.domid} maps d${a} ref ${ref}] element ${i}`;
      seen(`map ${gntstName(e.status)}${m.doms.get(a)?.alive === false ? ' (zombie granter)' : ''}`);
      if (this.n === 1) seen(`single map ${gntstName(e.status)}`);
      assert.equal(gntstName(o.status), gntstName(e.status), `${msg}: status`);
      if (e.status !== GNTST_okay) {
        // On failure handle and dev_bus_addr are the caller's own (§3.2 copy-back).
        assert.equal(o.handle, 0xdeadbeef, msg);
        assert.equal(o.dev_bus_addr, 0x1234, msg);
        return;
      }
      assert.equal(o.handle, e.handle, `${msg}: handle (§4.3)`);
      const granter = m.doms.get(a)!;
      const page = g.handles.get(e.handle)!.page;
      // Quirk §15.3: dev_bus_addr = mfn << 12 even for host-only maps.
      assert.equal(o.dev_bus_addr, granter.mfns[page]! * 4096, `${msg}: dev_bus_addr`);
      if (Buffer.compare(dom.memory.read(addrOf(e.slot), 4096), granter.pages[page]!) !== 0)
        assert.fail(`${msg}: the mapping does not show the granted page`);
    });
    checkAll(m, r, this.toString());
  }
  toString = () =>
    `Map(slot ${this.slot}, granter ${this.granterSel}, ref ${this.refSel}, ${this.ro ? 'ro' : 'rw'}, vcpu ${this.vcpu}, x${this.n})`;
}

type UnmapKind = 'live' | 'bogus' | 'wrongAddr' | 'zeroAddr' | 'all';

/** GNTTABOP_unmap_grant_ref (§6.2): okay, bad_handle, a wrong address, a no-op, or every handle at once. */
class UnmapCmd implements Cmd {
  readonly slot: number;
  readonly sel: number;
  readonly kind: UnmapKind;
  constructor(slot: number, sel: number, kind: UnmapKind) {
    this.slot = slot;
    this.sel = sel;
    this.kind = kind;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const g = liveDom(m, this.slot);
    if (g === undefined) return;
    const live = [...g.handles.keys()].sort((x, y) => x - y);
    const ops: { handle: number; host_addr: number }[] = [];
    if (this.kind === 'bogus') {
      const cands = [0, 1, 254, 255, 256, 511, 1000, 0x7fffffff, 0xffffffff].filter((h) => !g.handles.has(h));
      ops.push({ handle: cands[this.sel % cands.length]!, host_addr: addrOf(0) });
    } else if (live.length === 0) {
      return;
    } else if (this.kind === 'all') {
      // Live handles in a rotated order, with a stale one in the middle.
      const k = this.sel % live.length;
      const order = [...live.slice(k), ...live.slice(0, k)];
      for (const h of order) ops.push({ handle: h, host_addr: addrOf(g.handles.get(h)!.slot) });
      ops.splice(Math.floor(ops.length / 2), 0, { handle: 0xffff, host_addr: addrOf(0) });
    } else {
      const h = live[this.sel % live.length]!;
      const slotAddr = addrOf(g.handles.get(h)!.slot);
      const host_addr = this.kind === 'live' ? slotAddr : this.kind === 'zeroAddr' ? 0 : MAP_VA - 4096;
      ops.push({ handle: h, host_addr });
    }
    const slots = ops.map((o) => g.handles.get(o.handle)?.slot);
    const expected = ops.map((o) => modelUnmap(m, g, o.handle, o.host_addr));
    collectZombies(m);
    const dom = r.handles.get(g.domid)!;
    const res = hypercallOps(
      dom,
      GNTTABOP_unmap_grant_ref,
      gnttab_unmap_grant_ref,
      ops.map((o) => ({ ...o, dev_bus_addr: 0 })),
    );
    assert.equal(res.rc, 0, `${this}: rc`);
    res.out.forEach((o, i) => {
      seen(`unmap ${gntstName(expected[i]!)}`);
      assert.equal(
        gntstName(o.status),
        gntstName(expected[i]!),
        `${this} element ${i} (handle ${ops[i]!.handle})`,
      );
      const s = slots[i];
      if (s !== undefined && !g.usedSlots.has(s))
        assert.throws(
          () => dom.memory.read(addrOf(s), 1),
          GuestFault,
          `${this}: unmapped address still mapped`,
        );
    });
    checkAll(m, r, this.toString());
  }
  toString = () => `Unmap(slot ${this.slot}, sel ${this.sel}, ${this.kind})`;
}

/**
 * GNTTABOP_copy (§6.7) between a grant and one of the caller's own pages, in
 * either direction; `badSelf` names the caller's own numeric domid on the gmfn
 * side, which must be DOMID_SELF (quirk §15.2).
 */
class CopyCmd implements Cmd {
  readonly slot: number;
  readonly granterSel: number;
  readonly refSel: number;
  readonly toGrant: boolean;
  readonly page: number;
  readonly srcOff: number;
  readonly dstOff: number;
  readonly len: number;
  readonly variant: number;
  constructor(
    slot: number,
    granterSel: number,
    refSel: number,
    toGrant: boolean,
    page: number,
    srcOff: number,
    dstOff: number,
    len: number,
    variant: number,
  ) {
    this.slot = slot;
    this.granterSel = granterSel;
    this.refSel = refSel;
    this.toGrant = toGrant;
    this.page = page;
    this.srcOff = srcOff;
    this.dstOff = dstOff;
    this.len = len;
    this.variant = variant;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const c = liveDom(m, this.slot);
    if (c === undefined) return;
    const { a, ref } = pickGrant(m, c, this.granterSel, this.refSel);
    // variant 0: numeric domid for the gref side; 1: DOMID_SELF when it is the caller; 2: bad gmfn domid.
    const grefDomid = this.variant === 1 && a === c.domid ? DOMID_SELF : a;
    const gmfnDomid = this.variant === 2 ? c.domid : DOMID_SELF;
    const expected = this.predict(m, c, ref, grefDomid, gmfnDomid);
    const dom = r.handles.get(c.domid)!;
    const gmfn = c.cfg.kind === 'pv' ? c.mfns[this.page]! : this.page;
    const grefSide = { u: ref, domid: grefDomid };
    const gmfnSide = { u: gmfn, domid: gmfnDomid };
    const src = this.toGrant ? gmfnSide : grefSide;
    const dst = this.toGrant ? grefSide : gmfnSide;
    const res = hypercallOps(dom, GNTTABOP_copy, gnttab_copy, [
      {
        source_u: src.u,
        source_domid: src.domid,
        source_offset: this.srcOff,
        dest_u: dst.u,
        dest_domid: dst.domid,
        dest_offset: this.dstOff,
        len: this.len,
        flags: this.toGrant ? GNTCOPY_dest_gref : GNTCOPY_source_gref,
        status: 0x5555,
      },
    ]);
    assert.equal(res.rc, 0, `${this}: rc`);
    seen(
      `copy ${this.toGrant ? 'to' : 'from'} ${gntstName(expected)}${m.doms.get(a)?.alive === false ? ' (zombie granter)' : ''}`,
    );
    assert.equal(
      gntstName(res.out[0]!.status),
      gntstName(expected),
      `${this} [d${c.domid} copies ${this.toGrant ? 'to' : 'from'} d${a} ref ${ref}]`,
    );
    checkAll(m, r, this.toString());
  }

  private predict(m: Model, c: MDom, ref: number, grefDomid: number, gmfnDomid: number): number {
    // §6.7 step 1: a zero-length copy succeeds with no checks at all.
    if (this.len === 0) return GNTST_okay;
    // Step 2: lock source, then destination (gmfn side: exactly DOMID_SELF).
    const lockGref = (): MDom | number => {
      const d = grefDomid === DOMID_SELF ? c : m.doms.get(grefDomid);
      return d ?? GNTST_bad_domain;
    };
    let rd: MDom | number;
    if (this.toGrant) {
      if (gmfnDomid !== DOMID_SELF) return GNTST_permission_denied;
      rd = lockGref();
    } else {
      rd = lockGref();
      if (typeof rd !== 'number' && gmfnDomid !== DOMID_SELF) return GNTST_permission_denied;
    }
    if (typeof rd === 'number') return rd;
    // §6.7.1: acquire the grant (the gmfn side, the caller's own RAM page, always succeeds).
    const readonly = !this.toGrant;
    if (ref >= entries(rd)) return GNTST_bad_gntref;
    const k = key(rd.domid, ref);
    const pin = m.pins.get(k);
    if (pin !== undefined && (pin.grantee !== c.domid || (readonly ? pin.hstr : pin.hstw) >= 128))
      return GNTST_general_error;
    const e = rd.grants.get(ref);
    let page: number;
    if (pin === undefined || (!readonly && pin.hstw === 0)) {
      if (pin === undefined && (e === undefined || e.grantee !== c.domid)) return GNTST_general_error;
      if (!readonly && e?.readonly === true) return GNTST_general_error;
      // The frame is looked up afresh (also for a writable upgrade): a dying granter has none.
      if (!rd.alive) return GNTST_bad_page;
      page = pin?.page ?? e!.page;
    } else {
      // Fast path: the page must still be the live granter's (XSA-236).
      if (!rd.alive) return GNTST_bad_domain;
      page = pin.page;
    }
    if (this.srcOff + this.len > 4096 || this.dstOff + this.len > 4096) return GNTST_bad_copy_arg;
    const from = this.toGrant ? c.pages[this.page]! : rd.pages[page]!;
    const to = this.toGrant ? rd.pages[page]! : c.pages[this.page]!;
    to.set(from.slice(this.srcOff, this.srcOff + this.len), this.dstOff);
    return GNTST_okay;
  }
  toString = () =>
    `Copy(slot ${this.slot}, granter ${this.granterSel}, ref ${this.refSel}, ${this.toGrant ? 'to' : 'from'} grant, page ${this.page}, src+${this.srcOff}, dst+${this.dstOff}, len ${this.len}, variant ${this.variant})`;
}

/** The grantee writes through one of its mappings: a fault when read-only, else the granter sees it. */
class PokeCmd implements Cmd {
  readonly slot: number;
  readonly sel: number;
  readonly off: number;
  readonly value: number;
  constructor(slot: number, sel: number, off: number, value: number) {
    this.slot = slot;
    this.sel = sel;
    this.off = off;
    this.value = value;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const g = liveDom(m, this.slot);
    if (g === undefined || g.handles.size === 0) return;
    const live = [...g.handles.keys()].sort((x, y) => x - y);
    const hd = g.handles.get(live[this.sel % live.length]!)!;
    const dom = r.handles.get(g.domid)!;
    const bytes = Uint8Array.of(this.value, this.value ^ 0xff, 7, this.off & 0xff);
    const addr = addrOf(hd.slot) + this.off;
    seen(`poke ${hd.readonly ? 'ro' : 'rw'}`);
    if (hd.readonly) {
      assert.throws(
        () => dom.memory.write(addr, bytes),
        GuestFault,
        `${this}: a read-only mapping took a write`,
      );
    } else {
      dom.memory.write(addr, bytes);
      m.doms.get(hd.granter)!.pages[hd.page]!.set(bytes, this.off);
    }
    if (Buffer.compare(dom.memory.read(addrOf(hd.slot), 4096), m.doms.get(hd.granter)!.pages[hd.page]!) !== 0)
      assert.fail(`${this}: the mapping does not show the model's page`);
    checkAll(m, r, this.toString());
  }
  toString = () => `Poke(slot ${this.slot}, sel ${this.sel}, +${this.off}, ${this.value})`;
}

/** GNTTABOP_set_version (§6.9, §7). */
class SetVersionCmd implements Cmd {
  readonly slot: number;
  readonly version: number;
  constructor(slot: number, version: number) {
    this.slot = slot;
    this.version = version;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = busyDom(m, this.slot);
    if (d === undefined) return;
    const v = this.version;
    let rc = 0;
    if (v !== 1 && v !== 2) rc = -XEN_EINVAL;
    else if (v === 2 && d.cfg.maxVersion === 1) rc = -XEN_ENOSYS;
    else if (v === d.version) rc = 0;
    else {
      for (const [k, p] of m.pins) {
        const [g, ref] = k.split(':').map(Number) as [number, number];
        if (g === d.domid && ref >= 8 && p.hstr + p.hstw > 0) rc = -XEN_EBUSY;
      }
    }
    const dom = r.handles.get(d.domid)!;
    const statusFrames = Math.ceil(d.nrFrames / 8);
    // A PV guest gives up its own mappings of the status frames first (XSA-255: otherwise -EBUSY).
    if (d.cfg.kind === 'pv' && d.version === 2 && v === 1) {
      for (let i = 0; i < statusFrames; i++)
        assert.equal(dom.hypercall(__HYPERVISOR_update_va_mapping, STATUS_VA + i * 4096, 0, 0), 0);
    }
    const res = hypercallOps(dom, GNTTABOP_set_version, gnttab_set_version, [{ version: v }]);
    seen(`set_version ${rc}`);
    assert.equal(res.rc, rc, `${this}: rc`);
    const changed = rc === 0 && (v === 1 || v === 2) && v !== d.version;
    if (changed) {
      d.version = v;
      // Quirk §15.12: every entry from ref 8 up is zeroed; refs 0-7 are converted.
      for (const ref of [...d.grants.keys()]) if (ref >= 8) d.grants.delete(ref);
    }
    assert.equal(res.out[0]!.version, d.version, `${this}: the version in effect is written back`);
    mapGrantTable(dom, d.nrFrames);
    if (changed) {
      // Quirk §15.12: nothing is left of the old entries from ref 8 up (16 bytes per v2 entry, 8 per v1).
      const from = d.version === 1 ? 64 : 128;
      const table = dom.memory.read(GNTTAB_VA, d.nrFrames * 4096);
      assert.ok(
        table.subarray(from).every((b) => b === 0),
        `${this}: entries from ref 8 up are not all zero`,
      );
    }
    checkAll(m, r, this.toString());
  }
  toString = () => `SetVersion(slot ${this.slot}, ${this.version})`;
}

/** GNTTABOP_setup_table (§6.4): grow to n frames (up to max; beyond it general_error). */
class GrowCmd implements Cmd {
  readonly slot: number;
  readonly n: number;
  constructor(slot: number, n: number) {
    this.slot = slot;
    this.n = n;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = liveDom(m, this.slot);
    if (d === undefined) return;
    const n = this.n;
    const dom = r.handles.get(d.domid)!;
    const list = scratch(dom, 4);
    dom.memory.write(list, new Uint8Array(8 * 8).fill(0xaa));
    const res = hypercallOps(dom, GNTTABOP_setup_table, gnttab_setup_table, [
      { dom: DOMID_SELF, nr_frames: n, frame_list: list },
    ]);
    assert.equal(res.rc, 0);
    const placed = d.nrFrames;
    seen(`grow ${n > d.cfg.maxFrames ? 'beyond max' : n > d.nrFrames ? 'grows' : 'no change'}`);
    if (n > d.cfg.maxFrames) {
      assert.equal(gntstName(res.out[0]!.status), gntstName(GNTST_general_error), `${this}`);
      assert.equal(dom.memory.readU64(list), 0xaaaaaaaaaaaaaaaan, `${this}: nothing written`);
    } else {
      assert.equal(gntstName(res.out[0]!.status), gntstName(GNTST_okay), `${this}`);
      d.nrFrames = Math.max(d.nrFrames, n);
      for (let i = 0; i < n; i++) {
        const f = dom.memory.readU64(list + i * 8);
        if (d.cfg.kind === 'hvm') {
          // Translated: the GFN the frame is placed at, or INVALID_GFN if not placed yet.
          const want = i < placed ? BigInt(GNTTAB_VA / 4096 + i) : 0xffffffffffffffffn;
          assert.equal(f, want, `${this}: frame_list[${i}]`);
        } else {
          const known: number | undefined = d.sharedMfns[i];
          if (known === undefined) {
            assert.ok(!d.sharedMfns.includes(Number(f)), `${this}: frame_list[${i}] repeats a frame`);
            d.sharedMfns[i] = Number(f);
          } else assert.equal(Number(f), known, `${this}: frame_list[${i}] changed`);
        }
      }
      assert.equal(dom.memory.readU64(list + n * 8), 0xaaaaaaaaaaaaaaaan, `${this}: wrote past nr_frames`);
    }
    mapGrantTable(dom, d.nrFrames);
    checkAll(m, r, this.toString());
  }
  toString = () => `Grow(slot ${this.slot}, ${this.n})`;
}

/** GNTTABOP_swap_grant_ref (§6.12). */
class SwapCmd implements Cmd {
  readonly slot: number;
  readonly aSel: number;
  readonly bSel: number;
  constructor(slot: number, aSel: number, bSel: number) {
    this.slot = slot;
    this.aSel = aSel;
    this.bSel = bSel;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = busyDom(m, this.slot);
    if (d === undefined) return;
    const a = pickRef(m, d.domid, this.aSel);
    const b = this.bSel % 4 === 0 ? a : pickRef(m, d.domid, this.bSel);
    const n = entries(d);
    const pinned = (ref: number) => m.pins.has(key(d.domid, ref));
    let expected: number;
    if (a >= n || b >= n) expected = GNTST_bad_gntref;
    else if (a === b) expected = GNTST_okay;
    else if (pinned(a) || pinned(b)) expected = GNTST_eagain;
    else {
      expected = GNTST_okay;
      const ga = d.grants.get(a);
      const gb = d.grants.get(b);
      d.grants.delete(a);
      d.grants.delete(b);
      if (gb !== undefined) d.grants.set(a, gb);
      if (ga !== undefined) d.grants.set(b, ga);
    }
    const dom = r.handles.get(d.domid)!;
    const res = hypercallOps(dom, GNTTABOP_swap_grant_ref, gnttab_swap_grant_ref, [{ ref_a: a, ref_b: b }]);
    assert.equal(res.rc, 0);
    seen(`swap ${gntstName(expected)}`);
    assert.equal(gntstName(res.out[0]!.status), gntstName(expected), `${this} [refs ${a}, ${b}]`);
    checkAll(m, r, this.toString());
  }
  toString = () => `Swap(slot ${this.slot}, ${this.aSel}, ${this.bSel})`;
}

/** host.destroyDomain (§12): the model drops the domain's handles; its grants die with it. */
class DestroyCmd implements Cmd {
  readonly slot: number;
  constructor(slot: number) {
    this.slot = slot;
  }
  check = () => true;
  run(m: Model, r: Real): void {
    const d = liveDom(m, this.slot);
    if (d === undefined) return;
    for (const hd of d.handles.values()) dropPin(m, hd.granter, hd.ref, hd.readonly);
    seen(`destroy ${d.handles.size > 0 ? 'a grantee with mappings' : 'a domain without mappings'}`);
    d.handles.clear();
    d.usedSlots.clear();
    d.alive = false;
    m.slots[m.slots.indexOf(d.domid)] = null;
    collectZombies(m);
    if (m.doms.has(d.domid)) seen('destroy leaves a zombie');
    r.host.destroyDomain(d.domid);
    checkAll(m, r, this.toString());
  }
  toString = () => `Destroy(slot ${this.slot})`;
}

class CreateCmd implements Cmd {
  readonly slot: number;
  readonly cfg: DomConfig;
  constructor(slot: number, cfg: DomConfig) {
    this.slot = slot;
    this.cfg = cfg;
  }
  check = (m: Readonly<Model>) => m.slots[this.slot % NSLOTS] === null;
  run(m: Model, r: Real): void {
    createDomain(m, r, this.slot % NSLOTS, this.cfg);
    checkAll(m, r, this.toString());
  }
  toString = () => `Create(slot ${this.slot}, ${JSON.stringify(this.cfg)})`;
}

const cfgArb: fc.Arbitrary<DomConfig> = fc.record({
  kind: fc.constantFrom<Kind>('pv', 'hvm'),
  maxVersion: fc.constantFrom<1 | 2>(2, 2, 1),
  maxFrames: fc.integer({ min: 1, max: 4 }),
  maptrackFrames: fc.constantFrom(1, 1, 1, 1, 2, 2, 4, 4, 4, 0),
  vcpus: fc.integer({ min: 1, max: 2 }),
});

const slotArb = fc.nat({ max: NSLOTS - 1 });
const selArb = fc.nat({ max: 1000 });

const grantArb: fc.Arbitrary<Cmd> = fc
  .tuple(slotArb, selArb, selArb, fc.nat({ max: PAGES - 1 }), fc.boolean())
  .map(([s, r, t, p, ro]) => new GrantCmd(s, r, t, p, ro));
const endArb: fc.Arbitrary<Cmd> = fc.tuple(slotArb, selArb).map(([s, x]) => new EndAccessCmd(s, x));
const mapArb: fc.Arbitrary<Cmd> = fc
  .tuple(
    slotArb,
    selArb,
    selArb,
    fc.boolean(),
    fc.nat({ max: 1 }),
    fc.oneof(
      { weight: 6, arbitrary: fc.constant(1) },
      { weight: 1, arbitrary: fc.integer({ min: 2, max: 140 }) },
    ),
  )
  .map(([s, a, ref, ro, v, n]) => new MapCmd(s, a, ref, ro, v, n));
const unmapArb: fc.Arbitrary<Cmd> = fc
  .tuple(
    slotArb,
    selArb,
    fc.constantFrom<UnmapKind>('live', 'live', 'live', 'bogus', 'wrongAddr', 'zeroAddr', 'all'),
  )
  .map(([s, x, k]) => new UnmapCmd(s, x, k));
const copyArb: fc.Arbitrary<Cmd> = fc
  .tuple(
    slotArb,
    selArb,
    selArb,
    fc.boolean(),
    fc.nat({ max: PAGES - 1 }),
    fc.oneof(fc.constantFrom(0, 4095), fc.nat({ max: 4095 })),
    fc.oneof(fc.constantFrom(0, 4095), fc.nat({ max: 4095 })),
    fc.oneof(fc.constantFrom(0, 1, 4096, 65535), fc.nat({ max: 4100 })),
    fc.constantFrom(0, 0, 1, 2),
  )
  .map(([s, a, ref, to, p, so, dso, len, v]) => new CopyCmd(s, a, ref, to, p, so, dso, len, v));
const pokeArb: fc.Arbitrary<Cmd> = fc
  .tuple(slotArb, selArb, fc.nat({ max: 4092 }), fc.nat({ max: 255 }))
  .map(([s, x, off, v]) => new PokeCmd(s, x, off, v));
const setVersionArb: fc.Arbitrary<Cmd> = fc
  .tuple(fc.nat({ max: 5 }), fc.constantFrom(1, 2, 1, 2, 1, 2, 0, 3))
  .map(([s, v]) => new SetVersionCmd(s, v));
const growArb: fc.Arbitrary<Cmd> = fc
  .tuple(slotArb, fc.integer({ min: 0, max: 5 }))
  .map(([s, n]) => new GrowCmd(s, n));
const swapArb: fc.Arbitrary<Cmd> = fc
  .tuple(fc.nat({ max: 5 }), selArb, selArb)
  .map(([s, a, b]) => new SwapCmd(s, a, b));
const destroyArb: fc.Arbitrary<Cmd> = fc.tuple(slotArb).map(([s]) => new DestroyCmd(s));
const createArb: fc.Arbitrary<Cmd> = fc.tuple(slotArb, cfgArb).map(([s, c]) => new CreateCmd(s, c));

// Granting, mapping and copying are what most sequences need to reach deep paths.
const commandArbs: fc.Arbitrary<Cmd>[] = [
  grantArb,
  grantArb,
  grantArb,
  endArb,
  mapArb,
  mapArb,
  mapArb,
  mapArb,
  unmapArb,
  unmapArb,
  copyArb,
  copyArb,
  pokeArb,
  setVersionArb,
  growArb,
  swapArb,
  destroyArb,
  createArb,
];

describe('model: grant-table operations against a reference model', () => {
  it('random op sequences on 3 domains (reference §6, §7, §12): statuses, handles, pins, bytes and invariants match the model', () => {
    fc.assert(
      fc.property(
        fc.array(cfgArb, { minLength: NSLOTS, maxLength: NSLOTS }),
        fc.commands(commandArbs, { maxCommands: 40, size: 'max' }),
        (cfgs, cmds) => {
          fc.modelRun(setup(cfgs), cmds);
        },
      ),
      { numRuns: 150 },
    );
    if (process.env.GNTTAB_MODEL_STATS)
      console.log(
        [...stats]
          .sort()
          .map(([k, v]) => `${k}: ${v}`)
          .join('\n'),
      );
  });
});

// ---- the maptrack allocator alone (reference §4.3) ----------------------------------------------

interface MtModel {
  m: MaptrackModel;
  /** Live handles in the order they were handed out. */
  live: number[];
}

interface MtReal {
  mt: Maptrack;
}

type MtCmd = fc.Command<MtModel, MtReal>;

function checkMaptrack(model: MtModel, real: MtReal, what: string): void {
  const { m } = model;
  const { mt } = real;
  assert.equal(mt.limit, m.limit, `${what}: limit`);
  assert.ok(mt.limit <= mt.maxFrames * PER_PAGE, `${what}: limit beyond max_maptrack_frames`);
  assert.equal(new Set(model.live).size, model.live.length, `${what}: a handle is live twice`);
  let free = 0;
  for (let v = 0; v < mt.vcpus; v++) {
    const n = mt.freeListLength(v);
    assert.equal(n, m.lists[v]!.length, `${what}: vCPU ${v} free list length`);
    free += n;
  }
  // Every handle below the limit is either live or on exactly one free list.
  assert.equal(free + model.live.length, mt.limit, `${what}: handles lost or duplicated`);
}

class MtGet implements MtCmd {
  readonly vcpu: number;
  readonly n: number;
  constructor(vcpu: number, n: number) {
    this.vcpu = vcpu;
    this.n = n;
  }
  check = () => true;
  run(model: MtModel, real: MtReal): void {
    const v = this.vcpu % real.mt.vcpus;
    for (let i = 0; i < this.n; i++) {
      const want = model.m.get(v);
      const got = real.mt.get(v);
      assert.equal(got, want, `${this} #${i}: handle`);
      if (got === -1) {
        // -1 only when no page can be added and every list is down to its sentinel.
        assert.equal(real.mt.nrFrames, real.mt.maxFrames, `${this}: -1 with frames to spare`);
        for (let u = 0; u < real.mt.vcpus; u++)
          assert.ok(real.mt.freeListLength(u) <= 1, `${this}: -1 while vCPU ${u} has spare handles`);
        continue;
      }
      assert.ok(got >= 0 && got < real.mt.limit, `${this}: handle ${got} beyond the limit`);
      assert.ok(!model.live.includes(got), `${this}: handle ${got} handed out twice`);
      model.live.push(got);
    }
    checkMaptrack(model, real, this.toString());
  }
  toString = () => `Get(vcpu ${this.vcpu}, x${this.n})`;
}

class MtPut implements MtCmd {
  readonly sel: number;
  readonly n: number;
  constructor(sel: number, n: number) {
    this.sel = sel;
    this.n = n;
  }
  check = () => true;
  run(model: MtModel, real: MtReal): void {
    for (let i = 0; i < this.n && model.live.length > 0; i++) {
      const [h] = model.live.splice((this.sel + i * 7) % model.live.length, 1);
      model.m.put(h!);
      real.mt.put(h!);
    }
    checkMaptrack(model, real, this.toString());
  }
  toString = () => `Put(sel ${this.sel}, x${this.n})`;
}

describe('model: maptrack handle allocation (reference §4.3)', () => {
  it('first maps on vCPU 0 come out 0..254, then 256.., with 255 kept as the sentinel; freed handles are reused FIFO', () => {
    const mt = Maptrack.create(2, 1, () => 0);
    const got: number[] = [];
    for (let i = 0; i < 256; i++) got.push(mt.get(0));
    assert.deepEqual(
      got.slice(0, 255),
      Array.from({ length: 255 }, (_, i) => i),
    );
    assert.equal(got[255], 256);
    for (const h of [7, 3, 9]) mt.put(h);
    // The list still holds 257..511 ahead of the sentinel 255 and then 7, 3, 9.
    for (let h = 257; h <= 511; h++) assert.equal(mt.get(0), h);
    assert.equal(mt.get(0), 255);
    assert.equal(mt.get(0), 7);
    assert.equal(mt.get(0), 3);
    // 9 is now the sentinel and no page can be added: nothing left.
    assert.equal(mt.get(0), -1);
    assert.equal(mt.freeListLength(0), 1);
  });

  it('random get/put sequences over several vCPUs match the §4.3 model exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 0x7fffffff }),
        fc.commands(
          [
            fc
              .tuple(
                fc.nat({ max: 3 }),
                fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 100, max: 300 })),
              )
              .map(([v, n]) => new MtGet(v, n)),
            fc
              .tuple(
                fc.nat({ max: 1000 }),
                fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 50, max: 300 })),
              )
              .map(([s, n]) => new MtPut(s, n)),
          ],
          { maxCommands: 50, size: 'max' },
        ),
        (maxFrames, vcpus, seed, cmds) => {
          fc.modelRun(
            () => ({
              model: { m: new MaptrackModel(maxFrames, vcpus, xorshift(seed)), live: [] },
              real: { mt: Maptrack.create(maxFrames, vcpus, xorshift(seed)) },
            }),
            cmds,
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});
