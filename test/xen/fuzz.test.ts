// Hypercall fuzzing: at least 100,000 hypercalls with a seeded PRNG against a
// host of several domains (pv and hvm, v1 and v2, some with tiny grant and
// maptrack limits). Each step picks a hypercall (mostly grant_table_op, some
// memory_op, update_va_mapping and random numbers), a command, a count and an
// argument address, and writes argument structs into guest memory first: some
// fully random bytes, some plausible (real domids, refs in range, real frames,
// live handles, host addresses in the map area) so that deep paths are
// reached. Between calls guests scribble on their own grant entries and status
// words, switch versions, page memory out, and get destroyed and recreated.
//
// The rules checked are DESIGN.md's "bad input never harms the host" and the
// cross-cutting invariants of security-advisories.md: a hypercall never
// throws, returns 0 or a negative Xen errno, every status Xen writes is in
// {0..-13} (invariant 7), internalErrors stays empty, and checkInvariants is
// empty every 1,000 calls and at the end (statusBits off: a v1 guest may
// scribble on its own flags words).
//
// GNTTAB_FUZZ_SEED and GNTTAB_FUZZ_COUNT override the seed and the number of calls.
// To chase a failure: GNTTAB_FUZZ_CHECK_EVERY=1 checks the invariants after every
// call, GNTTAB_FUZZ_TRACE=1 prints every call, GNTTAB_FUZZ_STATS=1 the statuses seen.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_ACCESSED,
  _PAGE_DIRTY,
  _PAGE_GNTTAB,
  _PAGE_PRESENT,
  _PAGE_RW,
  _PAGE_USER,
  DOMID_INVALID,
  DOMID_IO,
  DOMID_SELF,
  DOMID_XEN,
  type DomainHandle,
  type DomainOptions,
  decodeStruct,
  encodeStruct,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTMAP_application_map,
  GNTMAP_contains_pte,
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_general_error,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  type GnttabOptions,
  GTF_accept_transfer,
  GTF_PAT,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  GuestFault,
  gnttab_cache_flush,
  gnttab_copy,
  gnttab_dump_table,
  gnttab_get_status_frames,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  gnttab_transfer,
  gnttab_unmap_and_replace,
  gnttab_unmap_grant_ref,
  Host,
  type StructDef,
  XEN_ERRNO_NAMES,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
  XENMEM_add_to_physmap,
  xen_add_to_physmap,
} from '../../src/index.ts';
import { OWNER_NONE, PGC_xen_heap } from '../../src/xen/frame-table.ts';
import { envInt, Rng } from '../helpers/fuzz.ts';
import { mapGrantTable, setVersion } from '../helpers/guest.ts';

// ---- layout of every fuzzed domain --------------------------------------------------------------

const PAGE = 4096;
const RAM_PAGES = 64;
const RAM_END = RAM_PAGES * PAGE;
/** Pages 0..15: what grants point at, copies read and write, transfers give away. */
const DATA_PAGES = 16;
/** Pages 16..19: frame lists of setup_table and get_status_frames. */
const LIST_VA = 16 * PAGE;
/** Pages 48..63 (the end of RAM): the argument structs. */
const ARENA_VA = 48 * PAGE;
const ARENA_PAGES = 16;
const GNTTAB_VA = 0xc000_0000;
const STATUS_VA = 0xd000_0000;
const MAP_VA = 0xe000_0000;
const TWO32 = 0x1_0000_0000;
const SENTINEL = 0x7ff7;
const XEN_ERRNOS = new Set(Object.keys(XEN_ERRNO_NAMES).map(Number));

interface OpInfo {
  def: StructDef;
  /** Offset of the int16 status, if the op has one. */
  status?: number;
  /** Xen processes every element of the array (otherwise only with count == 1). */
  batched: boolean;
}

const OPS: Record<number, OpInfo> = {
  0: { def: gnttab_map_grant_ref, status: 18, batched: true },
  1: { def: gnttab_unmap_grant_ref, status: 20, batched: true },
  2: { def: gnttab_setup_table, status: 8, batched: false },
  3: { def: gnttab_dump_table, batched: false },
  4: { def: gnttab_transfer, status: 16, batched: true },
  5: { def: gnttab_copy, status: 36, batched: true },
  6: { def: gnttab_query_size, status: 12, batched: false },
  7: { def: gnttab_unmap_and_replace, status: 20, batched: true },
  8: { def: gnttab_set_version, batched: false },
  9: { def: gnttab_get_status_frames, status: 6, batched: false },
  10: { def: gnttab_get_version, batched: false },
  11: { def: gnttab_swap_grant_ref, status: 8, batched: true },
  12: { def: gnttab_cache_flush, batched: true },
};

interface SlotConfig {
  opts: DomainOptions;
  version: 1 | 2;
}

const CONFIGS: SlotConfig[] = [
  { opts: { kind: 'pv', maxGrantFrames: 4, maxMaptrackFrames: 2, vcpus: 2 }, version: 1 },
  { opts: { kind: 'hvm', maxGrantFrames: 4, maxMaptrackFrames: 2, vcpus: 2 }, version: 1 },
  { opts: { kind: 'pv', maxGrantFrames: 3, maxMaptrackFrames: 1 }, version: 2 },
  { opts: { kind: 'hvm', maxGrantFrames: 3, maxMaptrackFrames: 1 }, version: 2 },
  // Tiny limits: one grant frame, one maptrack frame shared by three vCPUs (stealing).
  { opts: { kind: 'pv', maxGrantFrames: 1, maxMaptrackFrames: 1, vcpus: 3 }, version: 1 },
  // No maptrack at all, v1 only.
  { opts: { kind: 'hvm', maxGrantFrames: 1, maxMaptrackFrames: 0, maxGrantVersion: 1 }, version: 1 },
];

interface Slot {
  cfg: SlotConfig;
  dom: DomainHandle;
  /** Machine frames of the arena pages, and what their reference counts are when nothing else holds them. */
  arenaMfns: number[];
  baseCount: number;
  /** The frame numbers this domain writes into grant entries for its data pages (PV: MFN, HVM: GFN). */
  dataFrames: number[];
  /** Machine frames of the data pages. */
  dataMfns: number[];
}

interface Grant {
  granter: number;
  ref: number;
  grantee: number;
  /** GTF_permit_access, GTF_accept_transfer or GTF_transitive. */
  type: number;
}

// ---- the fuzzer ---------------------------------------------------------------------------------

class Fuzzer {
  readonly host: Host;
  readonly rng: Rng;
  /** The host's gnttab= options (Xen's command line), chosen by the seed. */
  readonly gnttab: GnttabOptions;
  readonly slots: Slot[] = [];
  readonly dead: number[] = [];
  /** Entries the guests wrote recently, so that maps and copies can name them. */
  readonly grants: Grant[] = [];
  calls = 0;
  checkedStatuses = 0;
  crashes = new Map<string, number>();
  outcomes = new Map<string, number>();
  /** The call in progress, for failure messages. */
  last = '';

  constructor(seed: number) {
    this.rng = new Rng(seed);
    const r = this.rng.int(10);
    this.gnttab =
      r < 6
        ? {}
        : r === 6
          ? { debugBuild: true }
          : r === 7
            ? { maxVersion: 1 }
            : r === 8
              ? { transitive: false }
              : { transfer: false };
    this.host = new Host({ memoryMiB: 24, seed: 7, gnttab: this.gnttab });
    for (const cfg of CONFIGS) this.slots.push(this.create(cfg));
  }

  get hv() {
    return this.host.hypervisor;
  }

  create(cfg: SlotConfig): Slot {
    // Room to receive pages by GNTTAB_transfer.
    const dom = this.host.createDomain({
      ...cfg.opts,
      memoryKiB: RAM_PAGES * 4,
      maxMemoryKiB: RAM_PAGES * 4 + 256,
    });
    const frameOfPage = (p: number) =>
      dom.kind === 'pv' ? dom.frameOf(p * PAGE) : dom.xen.translatePage(p * PAGE, false) / PAGE;
    const slot: Slot = {
      cfg,
      dom,
      arenaMfns: Array.from({ length: ARENA_PAGES }, (_, i) => frameOfPage(48 + i)),
      baseCount: 0,
      dataFrames: Array.from({ length: DATA_PAGES }, (_, p) => dom.frameOf(p * PAGE)),
      dataMfns: Array.from({ length: DATA_PAGES }, (_, p) => frameOfPage(p)),
    };
    slot.baseCount = this.hv.frames.count[slot.arenaMfns[0]!]!;
    for (let p = 0; p < DATA_PAGES; p++) dom.memory.write(p * PAGE, this.rng.bytes(PAGE));
    // With gnttab=max-ver:1 the guest asks for v2, gets -ENOSYS and carries on with v1 (§7).
    if (cfg.version === 2) assert.equal(setVersion(dom, 2).rc, this.gnttab.maxVersion === 1 ? -38 : 0);
    // A fresh guest maps its grant (and status) frames as a kernel does.
    mapGrantTable(dom);
    return slot;
  }

  alive(): Slot[] {
    return this.slots.filter((s) => s.dom.alive);
  }

  /** Replaces a dead (crashed or destroyed) domain by a fresh one with the same configuration. */
  revive(i: number): void {
    const s = this.slots[i]!;
    if (s.dom.alive) return;
    this.dead.push(s.dom.domid);
    this.slots[i] = this.create(s.cfg);
  }

  /** A test-side hypercall outside the fuzzing (set-up work); its errors are ignored. */
  rawGnttab(s: Slot, cmd: number, def: StructDef, value: Record<string, number>): number {
    const addr = ARENA_VA;
    try {
      s.dom.memory.write(addr, encodeStruct(def, value));
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      return -14;
    }
    return this.call(s, __HYPERVISOR_grant_table_op, [cmd, addr, 1], null);
  }

  /** Maps the guest's grant and status frames at GNTTAB_VA / STATUS_VA, as a guest kernel does. */
  mapTable(s: Slot): void {
    try {
      this.mapTableOnce(s);
    } catch (e) {
      // The guest may have unmapped its own list or arena pages: then it just goes without.
      if (!(e instanceof GuestFault)) throw e;
    }
  }

  private mapTableOnce(s: Slot): void {
    const d = s.dom;
    if (!d.alive) return;
    const gt = d.xen.gt;
    const n = gt.nrGrantFrames;
    if (d.kind === 'pv') {
      this.rawGnttab(s, GNTTABOP_setup_table, gnttab_setup_table, {
        dom: DOMID_SELF,
        nr_frames: n,
        frame_list: LIST_VA,
      });
      for (let i = 0; i < n && d.alive; i++) {
        const mfn = Number(d.memory.readU64(LIST_VA + i * 8));
        this.call(s, __HYPERVISOR_update_va_mapping, [GNTTAB_VA + i * PAGE, mfn * PAGE + 3, 0], null);
      }
      if (gt.version === 2 && d.alive) {
        const ns = Math.ceil(n / 8);
        try {
          d.memory.write(
            ARENA_VA,
            encodeStruct(gnttab_get_status_frames, { nr_frames: ns, dom: DOMID_SELF, frame_list: LIST_VA }),
          );
        } catch (e) {
          if (!(e instanceof GuestFault)) throw e;
          return;
        }
        this.call(s, __HYPERVISOR_grant_table_op, [9, ARENA_VA, 1], null);
        for (let i = 0; i < ns && d.alive; i++) {
          const mfn = Number(d.memory.readU64(LIST_VA + i * 8));
          this.call(s, __HYPERVISOR_update_va_mapping, [STATUS_VA + i * PAGE, mfn * PAGE + 3, 0], null);
        }
      }
      return;
    }
    const place = (idx: number, gpfn: number) => {
      try {
        d.memory.write(
          ARENA_VA,
          encodeStruct(xen_add_to_physmap, { domid: DOMID_SELF, space: XENMAPSPACE_grant_table, idx, gpfn }),
        );
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        return;
      }
      this.call(s, __HYPERVISOR_memory_op, [XENMEM_add_to_physmap, ARENA_VA], null);
    };
    for (let i = n - 1; i >= 0 && d.alive; i--) place(i, GNTTAB_VA / PAGE + i);
    if (gt.version === 2)
      for (let i = Math.ceil(n / 8) - 1; i >= 0 && d.alive; i--)
        place(XENMAPIDX_grant_table_status + i, STATUS_VA / PAGE + i);
  }

  // ---- plausible values ----

  domid(caller: Slot): number {
    const r = this.rng.int(100);
    const live = this.alive();
    if (r < 45) return this.rng.pick(live).dom.domid;
    if (r < 60) return caller.dom.domid;
    if (r < 78) return DOMID_SELF;
    if (r < 86 && this.dead.length > 0) return this.rng.pick(this.dead);
    if (r < 93) return this.rng.pick([DOMID_INVALID, DOMID_IO, DOMID_XEN, 0x7ff5, 0x7fff, 0xffff]);
    return this.rng.int(0x10000);
  }

  /** A grant made out to `grantee` (so that the call gets far), or null for a ref near the interesting bounds. */
  grantFor(grantee: number): { domid: number; ref: number } | null {
    if (this.grants.length === 0 || this.rng.chance(0.2)) return null;
    const mine = this.grants.filter((g) => g.grantee === grantee);
    const g = mine.length > 0 && this.rng.chance(0.9) ? this.rng.pick(mine) : this.rng.pick(this.grants);
    return { domid: g.granter, ref: g.ref };
  }

  ref(domid?: number): number {
    const d = domid === undefined ? undefined : this.hv.domains.get(domid);
    const n = d === undefined ? 512 : d.gt.nrGrantEntries();
    const r = this.rng.int(100);
    if (r < 50) return this.rng.int(24);
    if (r < 70) return this.rng.pick([n - 1, n, n + 1, 255, 256, 511, 512, 1023, 1024, 2047, 2048]);
    if (r < 90) return this.rng.int(Math.max(1, n));
    return this.rng.pick([this.rng.u32(), 0x7fffffff, 0xffffffff, 0x80000000]);
  }

  ownFrame(s: Slot): number {
    const r = this.rng.int(100);
    if (r < 75) return this.rng.pick(s.dataFrames);
    if (r < 85) {
      // One of its own grant frames (PV: the MFN; HVM: where it placed them).
      const gt = s.dom.xen.gt;
      return s.dom.kind === 'pv'
        ? (this.rng.pick(gt.shared.toArray()) ?? 0)
        : GNTTAB_VA / PAGE + this.rng.int(gt.nrGrantFrames + 1);
    }
    if (r < 92) return this.rng.int(RAM_PAGES + 64);
    return this.rng.pick([this.rng.u32(), this.rng.u64(), 0xffffffff, 2 ** 52]);
  }

  handle(s: Slot): number {
    const mt = s.dom.xen.gt.maptrack;
    if (mt.limit > 0 && this.rng.chance(0.7)) {
      const start = this.rng.int(mt.limit);
      for (let i = 0; i < Math.min(mt.limit, 64); i++) {
        const h = (start + i) % mt.limit;
        if (mt.flags(h) !== 0) return h;
      }
    }
    return this.rng.pick([0, 1, 254, 255, 256, mt.limit - 1, mt.limit, this.rng.int(1024), this.rng.u32()]);
  }

  hostAddr(): number {
    const r = this.rng.int(100);
    if (r < 70) return MAP_VA + this.rng.int(64) * PAGE;
    if (r < 75) return 0;
    if (r < 80) return this.rng.int(DATA_PAGES) * PAGE;
    if (r < 84) return MAP_VA + this.rng.int(64) * PAGE + this.rng.range(1, 4095);
    if (r < 88) return GNTTAB_VA + this.rng.int(4) * PAGE;
    if (r < 90) return ARENA_VA + this.rng.int(ARENA_PAGES) * PAGE;
    if (r < 94) return this.rng.pick([TWO32 - PAGE, TWO32, 2 ** 40, 2 ** 52]);
    return this.rng.u64();
  }

  mapFlags(caller: Slot): number {
    const r = this.rng.int(100);
    let f: number;
    if (r < 45) f = GNTMAP_host_map;
    else if (r < 70) f = GNTMAP_host_map | GNTMAP_readonly;
    else if (r < 76) f = GNTMAP_device_map | (this.rng.chance(0.5) ? GNTMAP_readonly : 0);
    else if (r < 84) f = GNTMAP_host_map | GNTMAP_device_map | (this.rng.chance(0.5) ? GNTMAP_readonly : 0);
    else if (r < 87) f = 0;
    else if (r < 93)
      f = GNTMAP_host_map | this.rng.pick([GNTMAP_application_map, GNTMAP_contains_pte, GNTMAP_readonly]);
    else f = this.rng.u32();
    if (this.rng.chance(0.05)) f = (f | (this.rng.u32() & 0xffff0000)) >>> 0;
    return caller.dom.kind === 'hvm' && this.rng.chance(0.5) ? f & ~GNTMAP_device_map : f;
  }

  offset(): number {
    return this.rng.pick([0, 0, 0, this.rng.int(PAGE), PAGE - 1, PAGE, 0xffff, this.rng.int(0x10000)]);
  }

  len(): number {
    return this.rng.pick([0, 1, 8, this.rng.int(PAGE), this.rng.int(PAGE), PAGE, PAGE + 1, 0xffff]);
  }

  /** A plausible argument struct for grant_table_op `op` from `caller`. */
  plausible(op: number, s: Slot): Record<string, number> {
    const me = s.dom.domid;
    switch (op) {
      case 0: {
        const g = this.grantFor(me);
        const dom = g?.domid ?? this.domid(s);
        return {
          host_addr: this.hostAddr(),
          flags: this.mapFlags(s),
          ref: g?.ref ?? this.ref(dom),
          dom,
          handle: this.rng.u32(),
          dev_bus_addr: this.rng.u64(),
        };
      }
      case 1: {
        const mt = s.dom.xen.gt.maptrack;
        const h = this.handle(s);
        const rd = h < mt.limit ? this.hv.domains.get(mt.domid(h)) : undefined;
        const act = rd?.gt.activeEntryIfAny(mt.ref(h));
        return {
          host_addr: this.rng.chance(0.85) ? this.hostAddr() : 0,
          dev_bus_addr: this.rng.pick([0, 0, (act?.mfn ?? 0) * PAGE, this.rng.u64()]),
          handle: h,
        };
      }
      case 2:
      case 9: {
        const dom = this.rng.chance(0.8) ? DOMID_SELF : this.domid(s);
        const nr = this.rng.pick([0, 1, 1, 2, 3, 4, 5, 9, 64, this.rng.u32()]);
        const fl = this.rng.pick([
          LIST_VA,
          LIST_VA,
          LIST_VA + 4,
          RAM_END - 8,
          RAM_END + PAGE,
          this.rng.u64(),
        ]);
        return op === 2 ? { dom, nr_frames: nr, frame_list: fl } : { nr_frames: nr, dom, frame_list: fl };
      }
      case 4: {
        const slots = this.grants.filter((x) => x.type === GTF_accept_transfer && x.grantee === me);
        const t = slots.length > 0 && this.rng.chance(0.7) ? this.rng.pick(slots) : undefined;
        const g = t !== undefined ? { domid: t.granter, ref: t.ref } : (this.grantFor(me) ?? undefined);
        // A page the guest has taken out of its own page table, as a PV sender must.
        const free = s.dataMfns.filter(
          (mfn, p) => this.hv.frames.owner[mfn] === me && s.dom.xen.translatePage(p * PAGE, false) < 0,
        );
        return {
          mfn:
            s.dom.kind === 'pv' && free.length > 0 && this.rng.chance(0.7)
              ? this.rng.pick(free)
              : this.ownFrame(s),
          domid: g?.domid ?? this.domid(s),
          ref: g?.ref ?? this.ref(),
        };
      }
      case 5: {
        const flags = this.rng.chance(0.9) ? this.rng.int(4) : this.rng.int(0x10000);
        const side = (gref: boolean) => {
          if (gref) {
            const g = this.grantFor(me);
            const domid = g?.domid ?? this.domid(s);
            return { u: g?.ref ?? this.ref(domid), domid: g !== null && g.domid === me ? DOMID_SELF : domid };
          }
          return { u: this.ownFrame(s), domid: this.rng.chance(0.9) ? DOMID_SELF : this.domid(s) };
        };
        const src = side((flags & GNTCOPY_source_gref) !== 0);
        const dst = side((flags & GNTCOPY_dest_gref) !== 0);
        return {
          source_u: src.u,
          source_domid: src.domid,
          source_offset: this.offset(),
          dest_u: dst.u,
          dest_domid: dst.domid,
          dest_offset: this.offset(),
          len: this.len(),
          flags,
        };
      }
      case 6:
      case 10:
        return { dom: this.domid(s), nr_frames: this.rng.u32(), max_nr_frames: this.rng.u32(), version: 77 };
      case 7:
        return {
          host_addr: this.hostAddr(),
          new_addr: this.rng.chance(0.5) ? 0 : this.hostAddr(),
          handle: this.handle(s),
        };
      case 8:
        return { version: this.rng.pick([1, 2, 1, 2, 0, 3, this.rng.u32()]) };
      case 11:
        return { ref_a: this.ref(me), ref_b: this.ref(me) };
      default:
        return {};
    }
  }

  /** The bytes of `n` argument structs: plausible, fully random, or plausible with a few bytes flipped. */
  structs(op: number, s: Slot, n: number): Uint8Array {
    const info = OPS[op];
    const size = info?.def.size ?? 16;
    const out = new Uint8Array(size * n);
    for (let i = 0; i < n; i++) {
      const r = this.rng.int(100);
      let b: Uint8Array;
      if (info === undefined || r < 15) b = this.rng.bytes(size);
      else {
        const v = this.plausible(op, s);
        const known: Record<string, number> = {};
        for (const key of Object.keys(v)) if (key in info.def.fields) known[key] = v[key]!;
        b = encodeStruct(info.def, known);
        if (r < 25) for (let k = this.rng.range(1, 3); k > 0; k--) b[this.rng.int(size)] = this.rng.int(256);
      }
      out.set(b, i * size);
    }
    return out;
  }

  // ---- guest actions between calls ----

  /** The guest rewrites some of its own grant entries (and, in v2, status words), flags last. */
  scribble(s: Slot): void {
    const d = s.dom;
    const gt = d.xen.gt;
    const v = gt.version;
    const n = gt.nrGrantEntries();
    for (let k = this.rng.range(1, 6); k > 0; k--) {
      const ref = this.rng.chance(0.8) ? this.rng.int(Math.min(n, 24)) : this.rng.int(n);
      const a = GNTTAB_VA + (v === 1 ? ref * 8 : ref * 16);
      const others = this.alive().filter((o) => o !== s);
      const grantee =
        this.rng.chance(0.85) && others.length > 0 ? this.rng.pick(others).dom.domid : this.domid(s);
      const r = this.rng.int(100);
      let flags: number;
      if (r < 55) flags = GTF_permit_access;
      else if (r < 70) flags = GTF_permit_access | GTF_readonly;
      else if (r < 76) flags = GTF_accept_transfer;
      else if (r < 82) flags = GTF_permit_access | GTF_sub_page;
      else if (r < 88) flags = GTF_transitive;
      else if (r < 92) flags = 0;
      else if (r < 95) flags = GTF_permit_access | GTF_PAT;
      else flags = this.rng.int(0x10000);
      if (this.rng.chance(0.05)) flags |= GTF_reading | GTF_writing;
      try {
        if (v === 1) {
          d.memory.writeU16(a + 2, grantee);
          d.memory.writeU32(a + 4, this.ownFrame(s) % TWO32);
          d.memory.writeU16(a, flags);
        } else {
          d.memory.writeU16(a + 2, grantee);
          if ((flags & 3) === GTF_transitive) {
            // Through a grant someone made out to this domain: the chain the copy code follows (§8).
            const inner = this.grantFor(d.domid);
            d.memory.writeU16(a + 4, inner?.domid ?? this.domid(s));
            d.memory.writeU16(a + 6, 0);
            d.memory.writeU32(a + 8, inner?.ref ?? this.ref());
            d.memory.writeU32(a + 12, 0);
          } else {
            d.memory.writeU16(a + 4, this.rng.pick([0, 16, this.rng.int(PAGE), 0x8000 + this.rng.int(PAGE)]));
            d.memory.writeU16(a + 6, this.rng.pick([PAGE, 1, this.rng.int(PAGE), 0xffff]));
            d.memory.writeU64(a + 8, this.ownFrame(s));
          }
          d.memory.writeU16(a, flags);
          if (this.rng.chance(0.2)) {
            const st = STATUS_VA + ref * 2;
            d.memory.writeU16(
              st,
              this.rng.pick([0, GTF_reading, GTF_reading | GTF_writing, this.rng.int(0x10000)]),
            );
          }
        }
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        return;
      }
      if ((flags & 3) !== 0) {
        this.grants.push({ granter: d.domid, ref, grantee, type: flags & 3 });
        if (this.grants.length > 256) this.grants.splice(0, 128);
      }
    }
  }

  /** Meta actions: version switches, destruction and re-creation, paging out (HVM), re-mapping tables. */
  meta(): void {
    const r = this.rng.int(1000);
    const i = this.rng.int(this.slots.length);
    const s = this.slots[i]!;
    if (!s.dom.alive) {
      this.revive(i);
      return;
    }
    if (r < 3) {
      if (TRACE) console.log(`destroy d${s.dom.domid}`);
      this.host.destroyDomain(s.dom.domid);
      this.revive(i);
    } else if (r < 12) {
      if (TRACE) console.log(`set_version d${s.dom.domid}`);
      this.rawGnttab(s, GNTTABOP_set_version, gnttab_set_version, { version: this.rng.range(1, 2) });
      this.mapTable(s);
    } else if (r < 30) {
      this.mapTable(s);
    } else if (r < 40 && s.dom.kind === 'hvm') {
      const addr = this.rng.int(DATA_PAGES) * PAGE;
      try {
        if (this.rng.chance(0.5)) s.dom.pageOut(addr);
        else s.dom.pageIn(addr);
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
      }
    } else if (r < 200 && s.dom.kind === 'pv') {
      // A PV guest takes one of its data pages out of its page table, as a netfront
      // does before giving the page away with GNTTABOP_transfer.
      this.last = `meta: d${s.dom.domid} unmaps a data page`;
      this.call(s, __HYPERVISOR_update_va_mapping, [this.rng.int(DATA_PAGES) * PAGE, 0, 0], null);
    } else if (r < 300) {
      const vcpus = s.dom.xen.vcpus;
      s.dom.xen.currentVcpu = this.rng.int(vcpus);
    }
  }

  // ---- one hypercall, with every check ----

  /**
   * Calls hypercall `nr` for slot `s` and checks the result; `statuses` (the
   * status fields placed in the arena, with the sentinel) are checked afterwards.
   */
  call(s: Slot, nr: number, args: (number | bigint)[], statuses: StatusCheck | null): number {
    if (TRACE) console.log(`${this.last} args ${args.map((a) => a.toString(16)).join(' ')}`);
    let rc: number;
    try {
      rc = s.dom.hypercall(nr, ...args);
    } catch (e) {
      throw new Error(`${this.last}: the hypercall threw`, { cause: e });
    }
    if (!Number.isInteger(rc) || (rc !== 0 && !XEN_ERRNOS.has(-rc)))
      throw new Error(`${this.last}: returned ${rc}, not 0 or a negative Xen errno`);
    if (this.hv.internalErrors.length > 0)
      throw new Error(`${this.last}: hypervisor internal error`, { cause: this.hv.internalErrors[0] });
    if (!s.dom.alive) {
      const why = `${s.dom.kind}: ${(s.dom.xen.crashed ?? 'destroyed').replace(/0x[0-9a-f]+|\d+/g, 'N')}`;
      this.crashes.set(why, (this.crashes.get(why) ?? 0) + 1);
    } else if (statuses !== null) this.checkStatuses(s, statuses, rc);
    return rc;
  }

  checkStatuses(s: Slot, c: StatusCheck, rc: number): void {
    const f = this.hv.frames;
    const u8 = this.hv.machine.u8;
    // The arena must still be this domain's (a transfer or a crash would have freed it).
    for (const mfn of s.arenaMfns) if (f.owner[mfn] !== s.dom.domid) return;
    for (let i = 0; i < c.addrs.length; i++) {
      const va = c.addrs[i]!;
      // Byte by byte: a status field may straddle two pages.
      const byte = (a: number) => u8[s.arenaMfns[Math.floor((a - ARENA_VA) / PAGE)]! * PAGE + (a % PAGE)]!;
      const v = ((byte(va) | (byte(va + 1) << 8)) << 16) >> 16;
      this.checkedStatuses++;
      if (v === SENTINEL) {
        // Statuses Xen did not write: fine, unless the call succeeded and was meant to process this one.
        if (rc === 0 && i < c.mustWrite)
          throw new Error(`${this.last}: returned 0 but element ${i} has no status (XSA-318)`);
        continue;
      }
      if (v > 0 || v < -13) throw new Error(`${this.last}: element ${i} got status ${v}, not in {0..-13}`);
      const k = `${c.op}:${v}`;
      this.outcomes.set(k, (this.outcomes.get(k) ?? 0) + 1);
    }
  }

  /** Whether the arena pages are the domain's own RAM with nothing else holding them. */
  arenaPlain(s: Slot): boolean {
    const f = this.hv.frames;
    const d = s.dom.xen;
    for (let i = 0; i < ARENA_PAGES; i++) {
      const mfn = s.arenaMfns[i]!;
      if (d.translatePage(ARENA_VA + i * PAGE, true) !== mfn * PAGE) return false;
      if (f.owner[mfn] !== d.domid || (f.flags[mfn]! & PGC_xen_heap) !== 0 || f.count[mfn] !== s.baseCount)
        return false;
    }
    return true;
  }

  /**
   * Whether Xen could legitimately write into the arena other than through the
   * status fields (a copy into it, a frame list over it, a mapping replacing
   * it, a transfer taking it), in which case the statuses are not checked.
   */
  mayAlias(op: number, s: Slot, bytes: Uint8Array, n: number): boolean {
    const info = OPS[op]!;
    const size = info.def.size;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const u64 = (at: number) => view.getUint32(at, true) + view.getUint32(at + 4, true) * TWO32;
    const inArena = (a: number, len = 1) => a < RAM_END && a + len > ARENA_VA;
    const me = s.dom.xen;
    const f = this.hv.frames;
    for (let i = 0; i < n; i++) {
      const b = i * size;
      switch (op) {
        case 0:
        case 1:
          if (inArena(u64(b))) return true;
          break;
        case 7:
          if (inArena(u64(b)) || inArena(u64(b + 8))) return true;
          break;
        case 2:
          if (inArena(u64(b + 16), 8 * Math.min(view.getUint32(b + 4, true), 4096))) return true;
          break;
        case 9:
          if (inArena(u64(b + 8), 8 * Math.min(view.getUint32(b, true), 4096))) return true;
          break;
        case 4: {
          const mfn = u64(b);
          if (view.getUint16(b + 8, true) === me.domid || s.arenaMfns.includes(mfn)) return true;
          break;
        }
        case 5: {
          const flags = view.getUint16(b + 34, true);
          const u = u64(b + 16);
          const domid = view.getUint16(b + 24, true);
          if ((flags & GNTCOPY_dest_gref) === 0) {
            const mfn = me.translated ? me.translatePage((u % 2 ** 20) * PAGE, false) / PAGE : u;
            if (s.arenaMfns.includes(mfn) || (f.isValid(mfn) && (f.flags[mfn]! & PGC_xen_heap) !== 0))
              return true;
          } else {
            const rd = domid === DOMID_SELF ? me : this.hv.domains.get(domid);
            if (rd === undefined) break;
            if (rd === me) return true;
            const ref = u % TWO32;
            if (ref >= rd.gt.nrGrantEntries()) break;
            const sha = rd.gt.shaAddr(ref);
            const w = this.hv.machine.words;
            if (rd.gt.version === 2 && (w.load16(sha) & 3) === GTF_transitive) return true;
            const act = rd.gt.activeEntryIfAny(ref);
            const gfn =
              rd.gt.version === 1 ? w.load32(sha + 4) : w.load32(sha + 8) + w.load32(sha + 12) * TWO32;
            const mfns = [act !== undefined && act.pin !== 0 ? act.mfn : -1];
            if (rd.translated) {
              const t = gfn < 2 ** 20 ? rd.translatePage(gfn * PAGE, false) : -1;
              mfns.push(t < 0 ? -1 : t / PAGE);
            } else mfns.push(gfn);
            for (const m of mfns)
              if (f.isValid(m) && ((f.flags[m]! & PGC_xen_heap) !== 0 || f.owner[m] === me.domid))
                return true;
          }
          break;
        }
      }
    }
    return false;
  }

  // ---- the fuzz step ----

  step(): void {
    const rng = this.rng;
    if (rng.chance(0.08)) {
      const s = this.rng.pick(this.alive());
      this.scribble(s);
    }
    if (rng.chance(0.03)) this.meta();
    const idx = rng.int(this.slots.length);
    if (!this.slots[idx]!.dom.alive) this.revive(idx);
    const s = this.slots[idx]!;

    // The hypercall number.
    const r = rng.int(100);
    const nr =
      r < 82
        ? __HYPERVISOR_grant_table_op
        : r < 89
          ? __HYPERVISOR_memory_op
          : r < 96
            ? __HYPERVISOR_update_va_mapping
            : rng.pick([0, 1, 13, 19, 21, 32, 64, rng.u32()]);
    if (nr === __HYPERVISOR_update_va_mapping) {
      this.updateVaMapping(s);
      return;
    }
    if (nr === __HYPERVISOR_memory_op) {
      this.memoryOp(s);
      return;
    }
    if (nr !== __HYPERVISOR_grant_table_op) {
      this.last = `step ${this.calls}: d${s.dom.domid} hypercall ${nr}`;
      this.calls++;
      this.call(s, nr, [rng.u32(), rng.u64(), rng.u32()], null);
      return;
    }

    // The command: mostly 0..13, sometimes with continuation bits or anything at all.
    const c = rng.int(100);
    let cmd = c < 94 ? rng.int(14) : c < 98 ? (rng.int(14) | (rng.range(1, 0xfffff) << 12)) >>> 0 : rng.u32();
    // Bias towards the ops with deep paths.
    if (c < 40) cmd = rng.pick([0, 0, 0, 1, 1, 5, 5, 5, 11, 2, 4, 7]);
    const op = cmd & 0xfff;
    const info = OPS[op];
    const size = info?.def.size ?? 16;

    // The count: 0, 1, small, big, huge, negative as u32.
    const k = rng.int(100);
    const count =
      k < 5
        ? 0
        : k < 55
          ? 1
          : k < 85
            ? rng.range(2, 8)
            : k < 93
              ? rng.range(9, 80)
              : rng.pick([0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 4096, rng.u32()]);

    // The address of the argument array.
    const a = rng.int(100);
    let uop: number | bigint;
    let inArena = false;
    if (a < 78) {
      inArena = true;
      const p = rng.int(100);
      if (p < 60) uop = ARENA_VA + rng.int(4) * 8;
      else if (p < 80) uop = ARENA_VA + rng.range(1, ARENA_PAGES - 1) * PAGE - rng.range(1, size - 1);
      else uop = RAM_END - rng.range(1, 4) * size + rng.pick([0, 0, rng.int(size)]);
      if (uop < ARENA_VA) uop = ARENA_VA;
    } else if (a < 84) uop = RAM_END + rng.int(0xc000_0000 - RAM_END);
    else if (a < 88) uop = TWO32 - rng.int(2 * PAGE) + rng.pick([0, 0, PAGE]);
    else if (a < 91)
      uop = rng.pick<number | bigint>([2 ** 53, 0xffff_ffff_ffff_fff0n, BigInt(rng.u64()) << 11n, -1]);
    else if (a < 95) uop = rng.pick([GNTTAB_VA, STATUS_VA, MAP_VA]) + rng.int(4) * 8;
    else uop = rng.int(DATA_PAGES * PAGE - 64);

    // Place the structs.
    let check: StatusCheck | null = null;
    const u = Number(uop);
    if (inArena) {
      const fit = Math.floor((RAM_END - u) / size);
      const n = Math.min(count, fit, 256);
      const bytes = this.structs(op, s, n);
      const st = info?.status;
      const wantCheck =
        st !== undefined &&
        n > 0 &&
        (info!.batched || count === 1) &&
        this.arenaPlain(s) &&
        !this.mayAlias(op, s, bytes, info!.batched ? n : 1);
      const addrs: number[] = [];
      if (wantCheck) {
        const view = new DataView(bytes.buffer);
        for (let i = 0; i < (info!.batched ? n : 1); i++) {
          view.setInt16(i * size + st, SENTINEL, true);
          addrs.push(u + i * size + st);
        }
        // rc == 0 means every element up to count had its status written.
        check = { op, addrs, mustWrite: info!.batched ? (n === count ? n : 0) : 1 };
      }
      try {
        s.dom.memory.write(u, bytes);
        // Whatever follows up to the end of RAM: random, as a guest's leftovers would be.
        const tail = RAM_END - (u + bytes.length);
        if (tail > 0 && tail < size) s.dom.memory.write(u + bytes.length, rng.bytes(tail));
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
        check = null;
      }
    } else if (u >= GNTTAB_VA || u < DATA_PAGES * PAGE) {
      try {
        s.dom.memory.write(u, this.structs(op, s, Math.min(count, 4)));
      } catch (e) {
        if (!(e instanceof GuestFault)) throw e;
      }
    }
    this.last = `step ${this.calls}: d${s.dom.domid} (${s.dom.kind}, v${s.dom.xen.gt.version}) grant_table_op(cmd ${cmd}, uop 0x${uop.toString(16)}, count ${count})`;
    this.calls++;
    this.call(s, __HYPERVISOR_grant_table_op, [cmd, uop, count], check);
  }

  updateVaMapping(s: Slot): void {
    const rng = this.rng;
    const r = rng.int(100);
    let va: number;
    if (r < 35) va = MAP_VA + rng.int(64) * PAGE;
    else if (r < 55) va = GNTTAB_VA + rng.int(4) * PAGE;
    else if (r < 65) va = STATUS_VA;
    else if (r < 75) va = rng.int(DATA_PAGES) * PAGE;
    else if (r < 85) va = RAM_END + rng.int(64) * PAGE;
    else va = rng.pick([rng.u32(), rng.u64(), TWO32 - PAGE, TWO32]);
    const p = rng.int(100);
    let pte: number | bigint;
    const gt = s.dom.xen.gt;
    if (p < 25) pte = 0;
    else if (p < 50) pte = rng.pick(s.dataMfns) * PAGE + rng.pick([_PAGE_PRESENT, _PAGE_PRESENT | _PAGE_RW]);
    else if (p < 65) pte = (rng.pick([...gt.shared, ...gt.status]) ?? 0) * PAGE + _PAGE_PRESENT + _PAGE_RW;
    else if (p < 75) pte = rng.pick(this.alive()).dataMfns[0]! * PAGE + _PAGE_PRESENT + _PAGE_RW;
    else if (p < 80)
      // Xen's grant mark, PTE bit 62 (24-bit flag form bit 22): refused by a debug build only.
      pte =
        BigInt(rng.pick(s.dataMfns) * PAGE + _PAGE_PRESENT + _PAGE_RW + _PAGE_USER) |
        (BigInt(_PAGE_GNTTAB) << 40n);
    else if (p < 90) {
      // The PTE already there with whitelisted bits changed (mod_l1_entry's fast path), grant PTEs included.
      const cur = s.dom.xen.pt?.get(Math.floor(va / PAGE)) ?? 0;
      pte = cur - (cur % PAGE) + ((cur % PAGE) ^ rng.pick([_PAGE_USER, _PAGE_ACCESSED | _PAGE_DIRTY, 0xe00]));
      if (rng.chance(0.3)) pte = BigInt(pte) | (1n << 63n);
    } else pte = rng.u64();
    this.last = `step ${this.calls}: d${s.dom.domid} (${s.dom.kind}) update_va_mapping(0x${va.toString(16)}, 0x${pte.toString(16)})`;
    this.calls++;
    this.call(s, __HYPERVISOR_update_va_mapping, [va, pte, rng.int(4)], null);
  }

  memoryOp(s: Slot): void {
    const rng = this.rng;
    const gt = s.dom.xen.gt;
    const r = rng.int(100);
    let gpfn: number;
    if (r < 40) gpfn = GNTTAB_VA / PAGE + rng.int(5);
    else if (r < 55) gpfn = STATUS_VA / PAGE + rng.int(2);
    else if (r < 65) gpfn = MAP_VA / PAGE + rng.int(64);
    else if (r < 70) gpfn = rng.int(DATA_PAGES);
    else if (r < 80) gpfn = RAM_PAGES + rng.int(64);
    else gpfn = rng.pick([rng.u32(), rng.u64(), 2 ** 20, 2 ** 20 - 1]);
    let idx = rng.chance(0.8) ? rng.int(gt.maxGrantFrames + 2) : rng.u32();
    if (rng.chance(0.25)) idx = (XENMAPIDX_grant_table_status + rng.int(2)) >>> 0;
    const value = {
      domid: rng.chance(0.85) ? DOMID_SELF : this.domid(s),
      size: rng.int(0x10000),
      space: rng.chance(0.85) ? XENMAPSPACE_grant_table : rng.pick([0, 2, 3, 4, 5, rng.u32()]),
      idx,
      gpfn,
    };
    const bytes = rng.chance(0.1) ? rng.bytes(24) : encodeStruct(xen_add_to_physmap, value);
    const arg = rng.chance(0.9) ? ARENA_VA + rng.int(8) * 8 : rng.pick([RAM_END - 8, rng.u64(), TWO32 - 8]);
    try {
      s.dom.memory.write(arg, bytes);
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
    }
    const cmd = rng.chance(0.85)
      ? XENMEM_add_to_physmap
      : rng.pick([rng.int(64), XENMEM_add_to_physmap | (rng.int(4096) << 6), rng.u32()]);
    this.last = `step ${this.calls}: d${s.dom.domid} (${s.dom.kind}) memory_op(${cmd}, ${JSON.stringify(value)})`;
    this.calls++;
    this.call(s, __HYPERVISOR_memory_op, [cmd, arg], null);
  }

  invariants(): void {
    const bad = this.host.checkInvariants({ statusBits: false });
    if (bad.length > 0)
      throw new Error(`after ${this.last}: invariants violated:\n${bad.slice(0, 20).join('\n')}`);
  }
}

interface StatusCheck {
  op: number;
  /** Guest addresses (in the arena) of the status fields, each preset to SENTINEL. */
  addrs: number[];
  /** With rc 0, the first `mustWrite` statuses must have been written. */
  mustWrite: number;
}

const TRACE = process.env.GNTTAB_FUZZ_TRACE === '1';
const SEED = envInt('GNTTAB_FUZZ_SEED', 0x5eed_0001) >>> 0;
const COUNT = envInt('GNTTAB_FUZZ_COUNT', 100_000);
/** How often the invariants are checked (GNTTAB_FUZZ_CHECK_EVERY=1 to find the exact call that broke one). */
const CHECK_EVERY = Math.max(1, envInt('GNTTAB_FUZZ_CHECK_EVERY', 1000));

describe('fuzz: random hypercalls never harm the host', () => {
  it(`${COUNT} hypercalls, seed ${SEED}: no throw, Xen errnos only, statuses in {0..-13}, invariants hold`, () => {
    const t0 = performance.now();
    const fz = new Fuzzer(SEED);
    console.log(
      `gnttab fuzz: seed ${SEED} (GNTTAB_FUZZ_SEED), ${COUNT} calls (GNTTAB_FUZZ_COUNT), gnttab options ${JSON.stringify(fz.gnttab)}`,
    );
    try {
      while (fz.calls < COUNT) {
        const before = fz.calls;
        fz.step();
        if (Math.floor(fz.calls / CHECK_EVERY) !== Math.floor(before / CHECK_EVERY)) fz.invariants();
      }
      fz.invariants();
    } catch (e) {
      console.log(`gnttab fuzz: FAILED with seed ${SEED}; rerun with GNTTAB_FUZZ_SEED=${SEED}`);
      throw e;
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `gnttab fuzz: ${fz.calls} calls in ${secs.toFixed(1)} s (${Math.round(fz.calls / secs)} calls/s); ` +
        `${fz.checkedStatuses} statuses checked; domains crashed by Xen: ${JSON.stringify([...fz.crashes])}`,
    );
    if (process.env.GNTTAB_FUZZ_STATS)
      console.log(
        [...fz.outcomes]
          .sort()
          .map(([k, v]) => `${k}: ${v}`)
          .join('\n'),
      );
    assert.ok(fz.calls >= COUNT);
    assert.ok(fz.checkedStatuses > COUNT / 10, 'too few statuses were checked for the run to mean much');
    // The run reached the deep paths: successful maps and copies happened.
    if (COUNT >= 100_000) {
      assert.ok((fz.outcomes.get('0:0') ?? 0) > 100, 'few successful maps');
      assert.ok((fz.outcomes.get('5:0') ?? 0) > 100, 'few successful copies');
      assert.ok((fz.outcomes.get('1:0') ?? 0) > 100, 'few successful unmaps');
    }
  });
});

// ---- regressions: bugs the fuzzer found, each reduced to its few calls ------------------------------

function gntOp(
  dom: DomainHandle,
  cmd: number,
  def: StructDef,
  value: Record<string, number>,
): Record<string, number> {
  dom.memory.write(ARENA_VA, encodeStruct(def, value));
  assert.equal(dom.hypercall(__HYPERVISOR_grant_table_op, cmd, ARENA_VA, 1), 0);
  return decodeStruct(def, dom.memory.read(ARENA_VA, def.size));
}

/** The guest maps its own grant frames at GNTTAB_VA: PV by setup_table + update_va_mapping, HVM by add_to_physmap. */
function placeTable(dom: DomainHandle): void {
  if (dom.kind === 'pv') {
    const st = gntOp(dom, GNTTABOP_setup_table, gnttab_setup_table, {
      dom: DOMID_SELF,
      nr_frames: 1,
      frame_list: LIST_VA,
    });
    assert.equal(st.status, 0);
    const mfn = Number(dom.memory.readU64(LIST_VA));
    assert.equal(dom.hypercall(__HYPERVISOR_update_va_mapping, GNTTAB_VA, mfn * PAGE + 3, 0), 0);
    return;
  }
  dom.memory.write(
    ARENA_VA,
    encodeStruct(xen_add_to_physmap, {
      domid: DOMID_SELF,
      space: XENMAPSPACE_grant_table,
      idx: 0,
      gpfn: GNTTAB_VA / PAGE,
    }),
  );
  assert.equal(dom.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, ARENA_VA), 0);
}

/** A v1 entry written as a guest does: domid and frame first, flags last. */
function writeEntry(dom: DomainHandle, ref: number, flags: number, domid: number, frame: number): void {
  dom.memory.writeU16(GNTTAB_VA + ref * 8 + 2, domid);
  dom.memory.writeU32(GNTTAB_VA + ref * 8 + 4, frame);
  dom.memory.writeU16(GNTTAB_VA + ref * 8, flags);
}

function mapOne(dom: DomainHandle, granter: number, ref: number, hostAddr: number, flags = GNTMAP_host_map) {
  return gntOp(dom, 0, gnttab_map_grant_ref, { host_addr: hostAddr, flags, ref, dom: granter });
}

function unmapOne(dom: DomainHandle, handle: number, hostAddr: number): number {
  return gntOp(dom, 1, gnttab_unmap_grant_ref, { host_addr: hostAddr, handle }).status!;
}

describe('fuzz regressions', () => {
  it('§12: a dying granter whose grant frame another domain still maps stays a zombie until that mapping goes', () => {
    // Found by the fuzzer (seed 1592590337): the granter was finalised while a
    // grantee still mapped one of its grant-table frames; the frame was left
    // owned by a domain that no longer existed, and the grantee's later unmap
    // crashed it (quirk §15.5, which §16.3 says must be unreachable). In Xen,
    // share_xen_page_with_guest takes a domain reference for such frames.
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    placeTable(a);
    // a grants b its own grant-table frame (the GFN it placed it at), read-only.
    writeEntry(a, 10, GTF_permit_access | GTF_readonly, b.domid, GNTTAB_VA / PAGE);
    const m = mapOne(b, a.domid, 10, MAP_VA, GNTMAP_host_map | GNTMAP_readonly);
    assert.equal(m.status, 0);
    const frame = a.xen.gt.shared.get(0);
    assert.equal(m.dev_bus_addr, frame * PAGE);
    host.destroyDomain(a.domid);
    assert.ok(host.hypervisor.domains.has(a.domid), 'the granter stays while its frame is mapped');
    assert.equal(host.hypervisor.frames.owner[frame], a.domid);
    assert.deepEqual(host.checkInvariants(), []);
    // b still reads the frame (entry 10 as a wrote it) and can unmap cleanly.
    assert.equal(b.memory.readU16(MAP_VA + 10 * 8 + 2), b.domid);
    assert.equal(unmapOne(b, m.handle!, MAP_VA), 0);
    assert.ok(b.alive, 'the grantee was not crashed');
    assert.ok(!host.hypervisor.domains.has(a.domid), 'the granter is finalised with the last reference');
    assert.equal(host.hypervisor.frames.owner[frame], OWNER_NONE);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('§10/§11: a transfer into the GFN where an HVM receiver placed a grant frame unhooks that frame', () => {
    // Found by the fuzzer (seed 1592590337): the receiver's P2M entry was
    // overwritten but the table still recorded the grant frame at that GFN.
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const e = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxMemoryKiB: 512 });
    placeTable(e);
    writeEntry(e, 12, GTF_accept_transfer, a.domid, GNTTAB_VA / PAGE);
    const mfn = a.frameOf(0x5000);
    assert.equal(a.hypercall(__HYPERVISOR_update_va_mapping, 0x5000, 0, 0), 0);
    const t = gntOp(a, 4, gnttab_transfer, { mfn, domid: e.domid, ref: 12 });
    assert.equal(t.status, 0);
    // The transferred page is at that GFN now; the grant frame is placed nowhere.
    assert.equal(e.xen.translatePage(GNTTAB_VA, false), mfn * PAGE);
    assert.equal(e.xen.gt.sharedGfn.get(0), -1);
    assert.deepEqual(host.checkInvariants(), []);
    // Placing the grant frame again works and is recorded where it goes.
    placeTable(e);
    assert.equal(e.xen.gt.sharedGfn.get(0), GNTTAB_VA / PAGE);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('quirk §15.19: a stale handle whose frame was given away cannot tear down a mapping of that frame from someone else', () => {
    // Found by the fuzzer (seed 24): after an implicit unmap (§15.19) the handle
    // keeps its pin and cached MFN but no page reference, so the granter may give
    // the page away. Once the page belonged to another domain and the grantee
    // mapped it from there at the same address, unmapping the stale handle passed
    // the PTE check (same frame, same RW bit) and dropped references by the stale
    // grant's rules: a type reference the PTE never held, then a type count
    // underflow. The unmap now fails with general_error, as §15.19 says it does.
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const c = host.createDomain({ kind: 'hvm', memoryKiB: 256, maxMemoryKiB: 512 });
    placeTable(a);
    placeTable(c);
    const mfn = a.frameOf(0x5000);
    writeEntry(a, 10, GTF_permit_access, b.domid, mfn);
    const h1 = mapOne(b, a.domid, 10, MAP_VA);
    assert.equal(h1.status, 0);
    // b zaps its grant PTE with an ordinary update: the reference goes, the pin
    // stays (a release build: no #GP).
    assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, MAP_VA, 0, 0), 0);
    assert.deepEqual(b.xen.injected, []);
    assert.equal(a.xen.gt.activeEntry(10).pin, 1);
    // a gives the page to c (GNTTABOP_transfer), which grants it to b; b maps it at the same address.
    assert.equal(a.hypercall(__HYPERVISOR_update_va_mapping, 0x5000, 0, 0), 0);
    writeEntry(c, 12, GTF_accept_transfer, a.domid, 0x30);
    assert.equal(gntOp(a, 4, gnttab_transfer, { mfn, domid: c.domid, ref: 12 }).status, 0);
    writeEntry(c, 13, GTF_permit_access, b.domid, 0x30);
    const h2 = mapOne(b, c.domid, 13, MAP_VA);
    assert.equal(h2.status, 0);
    assert.equal(h2.dev_bus_addr, mfn * PAGE);
    assert.deepEqual(host.checkInvariants(), []);
    // The stale handle does not match this mapping.
    assert.equal(unmapOne(b, h1.handle!, MAP_VA), GNTST_general_error);
    assert.deepEqual(host.hypervisor.internalErrors, []);
    assert.deepEqual(host.checkInvariants(), []);
    // The real one does.
    assert.equal(unmapOne(b, h2.handle!, MAP_VA), 0);
    assert.equal(c.xen.gt.activeEntry(13).pin, 0);
    assert.deepEqual(host.checkInvariants(), []);
    assert.ok(b.alive && c.alive);
  });
});
