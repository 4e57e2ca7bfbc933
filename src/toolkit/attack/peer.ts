// What both sides of the adversary share: the seeded choices, the log, raw
// grant entries it writes behind its own driver's back, raw maps, unmaps and
// copies, the canary scan, layout switches, event floods and garbage in
// xenstore. The role files (frontend.ts, backend.ts) choose the moves.

import { GTF_reading, GTF_writing } from '../../abi/flags.ts';
import {
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  gntstName,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
} from '../../abi/index.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { GuestContext } from '../../guest/context.ts';
import { grantTableOp, setVersion } from '../../guest/hypercall.ts';
import { FOREIGN_MAP_VA, GNTTAB_SHARED_VA, GNTTAB_STATUS_VA } from '../../guest/layout.ts';
import { connectVchanServices, type VchanServices } from '../../io/vchan/services.ts';
import { findCanary } from './canary.ts';
import { type AttackLogEntry, logLine, sightingLine } from './log.ts';
import { AttackRng } from './rng.ts';
import { type AttackProtocol, type AttackRole, KEY_STATE, STATE_CLOSED } from './victim.ts';

/** What the runner gives the attacker's guest program. */
export interface AttackerArgs {
  /** The attacker's side. */
  role: AttackRole;
  protocol: AttackProtocol;
  /** The victim's domid. */
  peer: number;
  path: string;
  seed: number;
  /** The move at which the attacker dies (its thread throws, the host destroys it); 0: never by itself. */
  dieAt: number;
  /** Its own grant-table layout at the start. */
  gnttabVersion: 1 | 2;
  /** Milliseconds to wait for the victim's keys before attacking blind. */
  connectMs: number;
}

/** The attacker's chosen death (not a bug of its own). */
export class AttackerDeath extends Error {
  constructor(step: number) {
    super(`the attacker dies at move ${step}, as its seed says`);
    this.name = 'AttackerDeath';
  }
}

/** A mapping the attacker made (it unmaps few of them). */
export interface HeldMapping {
  handle: number;
  addr: number;
  ref: number;
  readonly: boolean;
  live: boolean;
}

export class Peer {
  readonly ctx: GuestContext;
  readonly a: AttackerArgs;
  /** Details of each move (values, targets); they may follow what the victim did. */
  readonly rng: AttackRng;
  /**
   * Which move comes next: a stream of its own, so the sequence of moves is
   * the same for a seed whatever the victim's timing did to the details.
   */
  readonly moveRng: AttackRng;
  readonly svc: VchanServices;
  step = 0;
  /** The layout of its own table as it last set it. */
  version: 1 | 2;
  readonly mappings: HeldMapping[] = [];
  private readonly seen = new Set<string>();

  constructor(ctx: GuestContext, a: AttackerArgs) {
    this.ctx = ctx;
    this.a = a;
    this.rng = new AttackRng((a.seed ^ 0x9e37_79b9) >>> 0);
    this.moveRng = new AttackRng(a.seed);
    this.svc = connectVchanServices(ctx, { gnttabOptions: { version: a.gnttabVersion } });
    this.version = a.gnttabVersion;
  }

  get peer(): number {
    return this.a.peer;
  }

  log(action: string, detail: string, result?: string | number): void {
    const e: AttackLogEntry = { step: this.step, action, detail };
    if (result !== undefined) e.result = String(result);
    this.ctx.log(logLine(e));
  }

  /** A pause of 0..max ms: moves land at random moments of the victim's work. */
  async pace(max = 2): Promise<void> {
    await this.ctx.clock.sleep(this.rng.int(max + 1));
  }

  // ---- grant entries, written raw (a hostile granter ignores its own driver) --------------------

  entryAddr(ref: number): number {
    return GNTTAB_SHARED_VA + ref * (this.version === 1 ? 8 : 16);
  }

  /** A full-page entry: domid, frame, then flags last. */
  writeEntry(ref: number, domid: number, frame: number, flags: number): void {
    const e = this.entryAddr(ref);
    this.ctx.mem.writeU16(e + 2, domid & 0xffff);
    if (this.version === 1) this.ctx.mem.writeU32(e + 4, frame >>> 0);
    else this.ctx.mem.writeU64(e + 8, frame);
    this.ctx.mem.fence();
    this.ctx.mem.store16(e, flags & 0xffff);
  }

  /** v2: a sub-page window. */
  writeSubPage(ref: number, domid: number, frame: number, flags: number, off: number, len: number): void {
    const e = this.entryAddr(ref);
    this.ctx.mem.writeU16(e + 2, domid & 0xffff);
    this.ctx.mem.writeU16(e + 4, off & 0xffff);
    this.ctx.mem.writeU16(e + 6, len & 0xffff);
    this.ctx.mem.writeU64(e + 8, frame);
    this.ctx.mem.fence();
    this.ctx.mem.store16(e, flags & 0xffff);
  }

  /** v2: a transitive entry naming <transDomid, gref>. */
  writeTransitive(ref: number, domid: number, flags: number, transDomid: number, gref: number): void {
    const e = this.entryAddr(ref);
    this.ctx.mem.writeU16(e + 2, domid & 0xffff);
    this.ctx.mem.writeU16(e + 4, transDomid & 0xffff);
    this.ctx.mem.writeU32(e + 8, gref >>> 0);
    this.ctx.mem.fence();
    this.ctx.mem.store16(e, flags & 0xffff);
  }

  flagsOf(ref: number): number {
    return this.ctx.mem.load16(this.entryAddr(ref));
  }

  /** GTF_reading | GTF_writing as Xen shows them for one of its refs (v2: in the status frame). */
  inUse(ref: number): boolean {
    try {
      const w = this.version === 1 ? this.flagsOf(ref) : this.ctx.mem.load16(GNTTAB_STATUS_VA + ref * 2);
      return (w & (GTF_reading | GTF_writing)) !== 0;
    } catch {
      return false; // no status frame where the driver put it (after a switch)
    }
  }

  /** Waits until the victim maps `ref` (it has connected), at most connectMs; false if it never did. */
  async waitMapped(ref: number): Promise<boolean> {
    const deadline = this.ctx.clock.now() + this.a.connectMs;
    while (!this.inUse(ref)) {
      if (this.ctx.clock.now() > deadline) return false;
      await this.ctx.clock.sleep(2);
    }
    return true;
  }

  /** A domid worth trying: the victim, itself, dom0, a free one, DOMID_SELF, DOMID_INVALID. */
  oddDomid(): number {
    return this.rng.pick([this.peer, this.ctx.start.domid, 0, 0x7ef0, 0x7ff0, 0x7ff4, 0xffff]);
  }

  // ---- raw grant ops ----------------------------------------------------------------------------

  /** One map_grant_ref of <dom, ref> at a fresh page of foreign space; the status. */
  mapRef(dom: number, ref: number, readonly: boolean): { status: number; mapping: HeldMapping | null } {
    const addr = this.svc.pages.allocUnpopulated(1);
    if (addr < 0) return { status: -1, mapping: null };
    const flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0);
    const r = grantTableOp(this.ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: addr, flags, ref, dom },
    ]);
    const st = r.rc !== 0 ? r.rc : r.out[0]!.status;
    if (st !== GNTST_okay) {
      this.svc.pages.freeUnpopulated(addr, 1);
      return { status: st, mapping: null };
    }
    const m: HeldMapping = { handle: r.out[0]!.handle, addr, ref, readonly, live: true };
    this.mappings.push(m);
    return { status: st, mapping: m };
  }

  /** One unmap_grant_ref; the status (a stale or wrong handle is the point, sometimes). */
  unmap(addr: number, handle: number): number {
    const r = grantTableOp(this.ctx, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
      { host_addr: addr, dev_bus_addr: 0, handle },
    ]);
    return r.rc !== 0 ? r.rc : r.out[0]!.status;
  }

  /** grant copy of <dom, ref, off, len> into a page of its own; the status. */
  copyFrom(dom: number, ref: number, off: number, len: number, dest: number): number {
    const r = grantTableOp(this.ctx, GNTTABOP_copy, gnttab_copy, [
      {
        source_u: ref,
        source_domid: dom,
        source_offset: off,
        dest_u: this.svc.pages.gfnOf(dest),
        dest_domid: this.ctx.start.domid,
        dest_offset: 0,
        len,
        flags: GNTCOPY_source_gref,
      },
    ]);
    return r.rc !== 0 ? r.rc : r.out[0]!.status;
  }

  statusName(st: number): string {
    return st <= 0 && st >= -13 ? gntstName(st) : String(st);
  }

  // ---- moves either side makes ------------------------------------------------------------------

  /** GNTTABOP_set_version to the other layout: -EBUSY while any grant of its own is in use. */
  switchVersion(): void {
    const want = this.version === 1 ? 2 : 1;
    const r = setVersion(this.ctx, want);
    if (r.rc === 0) this.version = r.version === 2 ? 2 : 1;
    this.log('switch-version', `GNTTABOP_set_version(${want}) on its own table`, r.rc);
  }

  /** A burst of notifications on one port. */
  flood(port: number): void {
    const n = this.rng.range(16, 256);
    let fails = 0;
    for (let i = 0; i < n; i++) if (this.svc.events.send(port) !== 0) fails++;
    this.log('flood-events', `${n} sends on port ${port}`, fails === 0 ? 'all sent' : `${fails} failed`);
  }

  /** Garbage into one of the connection's keys. */
  async xsGarbage(keys: readonly string[]): Promise<void> {
    const key = this.rng.pick(keys);
    const value = this.rng.pick([
      '-1',
      'abc',
      '',
      '4294967296',
      '99999999999999999999',
      String(this.rng.u32()),
      String(this.rng.int(64)),
      ' 8',
      '0x10',
    ]);
    try {
      await this.svc.xs.write(`${this.a.path}/${key}`, value);
      this.log('xenstore-garbage', `${key} = ${JSON.stringify(value)}`, 'written');
    } catch (e) {
      this.log('xenstore-garbage', `${key} = ${JSON.stringify(value)}`, (e as Error).message);
    }
  }

  /** Reports the canary once per place it is seen. */
  scan(addr: number, len: number, where: string): void {
    let bytes: Uint8Array;
    try {
      bytes = this.ctx.mem.read(addr, len);
    } catch {
      return; // the page went away under it (a revoke, a switch): nothing to see
    }
    const at = findCanary(bytes);
    if (at < 0 || this.seen.has(where)) return;
    this.seen.add(where);
    const detail = `${where}, offset ${at}: memory of d${this.peer} it never wrote`;
    this.log('exposed', detail);
    this.ctx.log(sightingLine({ kind: 'exposed', detail }));
  }

  /** Scans every page it still maps. */
  scanMappings(): void {
    for (const m of this.mappings)
      if (m.live) this.scan(m.addr, XEN_PAGE_SIZE, `ref ${m.ref} of d${this.peer}, mapped`);
  }

  /** Unmaps one of its mappings now and then; far more often it keeps them (the point). */
  staleHandle(): void {
    const live = this.mappings.filter((m) => m.live);
    const dead = this.mappings.filter((m) => !m.live);
    const kind = this.rng.weighted({
      unmapTwice: 2,
      deadHandle: dead.length > 0 ? 3 : 0,
      wrongAddr: 2,
      random: 1,
    });
    if (kind === 'unmapTwice' && live.length > 0) {
      const m = this.rng.pick(live);
      const st1 = this.unmap(m.addr, m.handle);
      if (st1 === GNTST_okay) m.live = false;
      const st2 = this.unmap(m.addr, m.handle);
      this.log(
        'stale-handle',
        `unmap handle ${m.handle} (ref ${m.ref}) twice`,
        `${this.statusName(st1)}, then ${this.statusName(st2)}`,
      );
    } else if (kind === 'deadHandle' && dead.length > 0) {
      const m = this.rng.pick(dead);
      const st = this.unmap(m.addr, m.handle);
      this.log('stale-handle', `unmap the dead handle ${m.handle} (ref ${m.ref}) again`, this.statusName(st));
    } else if (kind === 'wrongAddr' && live.length > 0) {
      const m = this.rng.pick(live);
      const st = this.unmap(m.addr + XEN_PAGE_SIZE * this.rng.range(1, 8), m.handle);
      this.log('stale-handle', `unmap handle ${m.handle} at the wrong address`, this.statusName(st));
    } else {
      const h = this.rng.u32();
      const st = this.unmap(FOREIGN_MAP_VA, h);
      this.log('stale-handle', `unmap a made-up handle ${h}`, this.statusName(st));
    }
  }

  /** True once the toolstack wrote closed (the attacker keeps going anyway, a little). */
  async closed(): Promise<boolean> {
    try {
      return (await this.svc.xs.read(`${this.a.path}/${KEY_STATE}`)) === STATE_CLOSED;
    } catch {
      return false;
    }
  }

  /** Waits for `keys` under the path, decimal u32 values; null when they never came. */
  async waitKeys(keys: readonly string[]): Promise<number[] | null> {
    const deadline = this.ctx.clock.now() + this.a.connectMs;
    for (;;) {
      const vals: number[] = [];
      for (const k of keys) {
        try {
          const v = await this.svc.xs.read(`${this.a.path}/${k}`);
          if (/^\d{1,10}$/.test(v)) vals.push(Number(v));
        } catch {
          // not there yet
        }
      }
      if (vals.length === keys.length) return vals;
      if (this.ctx.clock.now() > deadline) return null;
      await this.ctx.clock.sleep(2);
    }
  }

  /** The death the runner chose for this seed. */
  maybeDie(): void {
    if (this.a.dieAt > 0 && this.step >= this.a.dieAt) {
      this.log('die', 'the attacker dies here (its domain is destroyed mid-connection)');
      throw new AttackerDeath(this.step);
    }
  }
}
