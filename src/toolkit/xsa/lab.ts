// The bench every advisory scenario runs on: a fresh single-thread Host, its
// domains named as the advisory names them (A, B, C), and raw hypercalls
// placed in each domain's own memory as a guest kernel places them, each one
// recorded as a step with its status. Expectations are checked with `expect`;
// `finish` adds the invariant check and the verdict.
import { DOMID_SELF } from '../../abi/domid.ts';
import {
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GTF_reading,
  GTF_writing,
} from '../../abi/flags.ts';
import {
  gnttab_copy,
  gnttab_get_status_frames,
  gnttab_map_grant_ref,
  gnttab_set_version,
  gnttab_setup_table,
  gnttab_swap_grant_ref,
  gnttab_transfer,
  gnttab_unmap_grant_ref,
} from '../../abi/gnttab-ops.ts';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  GNTTABOP_copy,
  GNTTABOP_get_status_frames,
  GNTTABOP_map_grant_ref,
  GNTTABOP_set_version,
  GNTTABOP_setup_table,
  GNTTABOP_swap_grant_ref,
  GNTTABOP_transfer,
  GNTTABOP_unmap_grant_ref,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
  XENMEM_add_to_physmap,
} from '../../abi/hypercall.ts';
import { GRANT_PER_FRAME_V1, GRANT_PER_FRAME_V2 } from '../../abi/limits.ts';
import { xen_add_to_physmap } from '../../abi/memory-op.ts';
import { gntstName } from '../../abi/status.ts';
import { encodeArray, readStructArray, type StructDef, type StructValue } from '../../abi/struct.ts';
import { errnoCode } from '../../guest/xen-error.ts';
import { type DomainHandle, type DomainOptions, Host, type HostOptions } from '../../host/host.ts';
import type { SharedOp } from '../../machine/shared-words.ts';
import type { InvariantOptions } from '../../xen/invariants.ts';
import type { XsaCheck, XsaRace, XsaResult, XsaStep } from './types.ts';

/** Where each domain places its grant frames, status frames and foreign mappings (above RAM). */
export const GNTTAB_VA = 0xc000_0000;
export const STATUS_VA = 0xd000_0000;
export const MAP_VA = 0xe000_0000;
const PAGE = 4096;
/** What a frame list holds where Xen wrote nothing. */
export const UNWRITTEN = 0xdead_beefn;

/** "0" or "-EBUSY": a hypercall's return. */
export function rcText(rc: number): string {
  return rc === 0 ? 'rc 0' : rc < 0 ? `-${errnoCode(rc)}` : `rc ${rc}`;
}

/** "okay", "bad_gntref": a GNTST status without its prefix. */
export function st(status: number): string {
  return gntstName(status).replace(/^GNTST_/, '');
}

function mapFlagsText(flags: number): string {
  const out: string[] = [];
  if ((flags & GNTMAP_host_map) !== 0) out.push('host_map');
  if ((flags & GNTMAP_device_map) !== 0) out.push('device_map');
  if ((flags & GNTMAP_readonly) !== 0) out.push('readonly');
  return out.join('|') || '0';
}

export interface MapResult {
  status: number;
  handle: number;
  devBusAddr: bigint;
}

/** One domain of a scenario, by the advisory's name for it. */
export class LabDomain {
  readonly name: string;
  readonly dom: DomainHandle;
  private readonly lab: Lab;

  constructor(lab: Lab, name: string, dom: DomainHandle) {
    this.lab = lab;
    this.name = name;
    this.dom = dom;
  }

  get domid(): number {
    return this.dom.domid;
  }

  /** Argument structs go into the last 16 pages of RAM (page 0..15). */
  scratch(page = 0): number {
    return this.dom.ramBytes - (16 - page) * PAGE;
  }

  /** grant_table_op(cmd, ops): the return and every struct as Xen left it. */
  op<F extends string>(
    cmd: number,
    def: StructDef<F>,
    ops: readonly Partial<StructValue<F>>[],
    count = ops.length,
  ) {
    const addr = this.scratch();
    this.dom.memory.write(addr, encodeArray(def, ops));
    const rc = this.dom.hypercall(__HYPERVISOR_grant_table_op, cmd, addr, count);
    const out = this.dom.alive ? readStructArray(this.dom.memory, addr, def, ops.length) : [];
    return { rc, out };
  }

  /** Maps the domain's grant frames (and v2 status frames) as a guest kernel does. */
  mapOwnTable(): void {
    const d = this.dom;
    const frames = d.xen.gt.nrGrantFrames;
    if (d.kind === 'pv') {
      const list = this.scratch(2);
      const r = this.op(GNTTABOP_setup_table, gnttab_setup_table, [
        { dom: DOMID_SELF, nr_frames: frames, frame_list: list },
      ]);
      if (r.rc !== 0 || r.out[0]?.status !== 0) throw new Error(`${this.name}: setup_table failed`);
      for (let i = 0; i < frames; i++) {
        const mfn = Number(d.memory.readU64(list + i * 8));
        this.uva(GNTTAB_VA + i * PAGE, mfn * PAGE + (_PAGE_PRESENT | _PAGE_RW));
      }
      if (d.xen.gt.version === 2) {
        const n = Math.ceil(frames / 8);
        const g = this.op(GNTTABOP_get_status_frames, gnttab_get_status_frames, [
          { dom: DOMID_SELF, nr_frames: n, frame_list: list },
        ]);
        if (g.rc !== 0 || g.out[0]?.status !== 0) throw new Error(`${this.name}: get_status_frames failed`);
        for (let i = 0; i < n; i++) {
          const mfn = Number(d.memory.readU64(list + i * 8));
          this.uva(STATUS_VA + i * PAGE, mfn * PAGE + _PAGE_PRESENT);
        }
      }
      return;
    }
    for (let i = frames - 1; i >= 0; i--) this.rawAddToPhysmap(i, GNTTAB_VA / PAGE + i);
    if (d.xen.gt.version === 2)
      for (let i = Math.ceil(frames / 8) - 1; i >= 0; i--)
        this.rawAddToPhysmap(XENMAPIDX_grant_table_status + i, STATUS_VA / PAGE + i);
  }

  private uva(va: number, pte: number): void {
    const rc = this.dom.hypercall(__HYPERVISOR_update_va_mapping, va, pte, 0);
    if (rc !== 0) throw new Error(`${this.name}: update_va_mapping ${rcText(rc)}`);
  }

  rawAddToPhysmap(idx: number, gpfn: number, domid = DOMID_SELF): number {
    const addr = this.scratch(1);
    this.dom.memory.write(
      addr,
      encodeArray(xen_add_to_physmap, [{ domid, space: XENMAPSPACE_grant_table, idx, gpfn }]),
    );
    return this.dom.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, addr);
  }

  /** Address of entry `ref` in this domain's mapping of its own table. */
  entryAddr(ref: number): number {
    const v = this.dom.xen.gt.version;
    const per = v === 1 ? GRANT_PER_FRAME_V1 : GRANT_PER_FRAME_V2;
    return GNTTAB_VA + Math.floor(ref / per) * PAGE + (ref % per) * (v === 1 ? 8 : 16);
  }

  /** GTF_reading|GTF_writing as this granter sees them (v1 flags, v2 status word). */
  statusBits(ref: number): number {
    const a =
      this.dom.xen.gt.version === 1
        ? this.entryAddr(ref)
        : STATUS_VA + Math.floor(ref / 2048) * PAGE + (ref % 2048) * 2;
    return this.dom.memory.readU16(a) & (GTF_reading | GTF_writing);
  }

  /** The entry's pin counters, as Xen holds them. */
  pin(ref: number): number {
    return this.dom.xen.gt.activeEntryIfAny(ref)?.pin ?? 0;
  }

  /** The frame this domain writes into a grant entry for its page at `addr`. */
  frameOf(addr: number): number {
    return this.dom.frameOf(addr);
  }

  // ---- recorded operations ------------------------------------------------------------------

  /** Writes entry `ref` as Linux does: domid and frame first, the flags last. */
  grant(ref: number, grantee: LabDomain | number, frame: number, flags: number, note = ''): void {
    const gid = typeof grantee === 'number' ? grantee : grantee.domid;
    const a = this.entryAddr(ref);
    this.dom.memory.writeU16(a + 2, gid);
    if (this.dom.xen.gt.version === 1) this.dom.memory.writeU32(a + 4, frame);
    else this.dom.memory.writeU64(a + 8, frame);
    this.dom.memory.writeU16(a, flags);
    const to = typeof grantee === 'number' ? `d${gid}` : grantee.name;
    this.lab.step(
      this.name,
      'write entry',
      `ref ${ref}: flags 0x${flags.toString(16)}, ${to}, frame 0x${frame.toString(16)}${note}`,
      'done',
    );
  }

  /** Rewrites only the frame field of entry `ref` (the flags stay as Xen left them). */
  writeFrame(ref: number, frame: number): void {
    const a = this.entryAddr(ref);
    if (this.dom.xen.gt.version === 1) this.dom.memory.writeU32(a + 4, frame);
    else this.dom.memory.writeU64(a + 8, frame);
    this.lab.step(
      this.name,
      'write entry',
      `ref ${ref}: frame 0x${frame.toString(16)} (flags left alone)`,
      'done',
    );
  }

  /** v2 transitive entry: `ref` lets `grantee` use (transDomid, transRef). */
  grantTransitive(
    ref: number,
    grantee: LabDomain,
    trans: LabDomain | number,
    transRef: number,
    flags: number,
  ): void {
    const tid = typeof trans === 'number' ? trans : trans.domid;
    const a = this.entryAddr(ref);
    // grant_entry_v2.transitive: flags, domid, trans_domid (+4), gref (+8).
    this.dom.memory.writeU16(a + 2, grantee.domid);
    this.dom.memory.writeU16(a + 4, tid);
    this.dom.memory.writeU32(a + 8, transRef);
    this.dom.memory.writeU16(a, flags);
    const tn = typeof trans === 'number' ? `d${tid}` : trans.name;
    this.lab.step(
      this.name,
      'write entry',
      `ref ${ref}: transitive for ${grantee.name} onto (${tn}, ref ${transRef})`,
      'done',
    );
  }

  map(granter: LabDomain, ref: number, flags = GNTMAP_host_map, va = MAP_VA): MapResult {
    const r = this.op(GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: va, flags, ref, dom: granter.domid },
    ]);
    const o = r.out[0];
    const status = r.rc !== 0 ? r.rc : (o?.status ?? 0);
    const res = { status, handle: o?.handle ?? -1, devBusAddr: BigInt(o?.dev_bus_addr ?? 0) };
    this.lab.step(
      this.name,
      'map_grant_ref',
      `${granter.name} ref ${ref} ${mapFlagsText(flags)}`,
      r.rc !== 0 ? rcText(r.rc) : status === 0 ? `okay, handle ${res.handle}` : st(status),
    );
    return res;
  }

  unmap(handle: number, va = MAP_VA, devBusAddr: bigint | number = 0): number {
    const r = this.op(GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
      { host_addr: va, dev_bus_addr: Number(devBusAddr), handle },
    ]);
    const status = r.rc !== 0 ? r.rc : (r.out[0]?.status ?? 0);
    const what = [va !== 0 ? 'host' : '', devBusAddr !== 0 && devBusAddr !== 0n ? 'device' : '']
      .filter((x) => x !== '')
      .join('+');
    this.lab.step(
      this.name,
      'unmap_grant_ref',
      `handle ${handle} ${what || '(neither address)'}`,
      r.rc !== 0 ? rcText(r.rc) : st(status),
    );
    return status;
  }

  /** GNTTABOP_copy of a batch; the statuses (the hypercall's rc when it failed). */
  copy(
    ops: readonly Partial<StructValue<keyof typeof gnttab_copy.fields & string>>[],
    what: string,
  ): { rc: number; statuses: number[] } {
    const r = this.op(GNTTABOP_copy, gnttab_copy, ops);
    const statuses = r.out.map((o) => o.status);
    const uniq = [...new Set(statuses.map(st))];
    this.lab.step(
      this.name,
      'copy',
      what,
      r.rc !== 0 ? rcText(r.rc) : ops.length === 1 ? st(statuses[0]!) : `all ${uniq.join('/')}`,
    );
    return { rc: r.rc, statuses };
  }

  swap(refA: number, refB: number): { rc: number; status: number } {
    const r = this.op(GNTTABOP_swap_grant_ref, gnttab_swap_grant_ref, [{ ref_a: refA, ref_b: refB }]);
    const status = r.out[0]?.status ?? 0;
    this.lab.step(
      this.name,
      'swap_grant_ref',
      `ref_a ${refA >>> 0}, ref_b ${refB >>> 0}`,
      `${rcText(r.rc)}, ${st(status)}`,
    );
    return { rc: r.rc, status };
  }

  setVersion(version: number): number {
    const r = this.op(GNTTABOP_set_version, gnttab_set_version, [{ version }]);
    this.lab.step(this.name, 'set_version', `${version}`, rcText(r.rc));
    return r.rc;
  }

  /** get_status_frames(nr) into a list at scratch page 3; the status and the frames written. */
  getStatusFrames(nr: number, count = 1): { rc: number; status: number; list: number } {
    const list = this.scratch(3);
    for (let i = 0; i < 16; i++) this.dom.memory.writeU64(list + i * 8, UNWRITTEN);
    const ops = Array.from({ length: Math.max(1, count) }, () => ({
      dom: DOMID_SELF,
      nr_frames: nr,
      frame_list: list,
    }));
    const r = this.op(GNTTABOP_get_status_frames, gnttab_get_status_frames, ops, count);
    const status = r.out[0]?.status ?? 0;
    this.lab.step(
      this.name,
      'get_status_frames',
      `nr_frames ${nr}, count ${count}`,
      r.rc !== 0 ? rcText(r.rc) : st(status),
    );
    return { rc: r.rc, status, list };
  }

  setupTable(nr: number, dom = DOMID_SELF): { rc: number; status: number } {
    const r = this.op(GNTTABOP_setup_table, gnttab_setup_table, [
      { dom, nr_frames: nr, frame_list: this.scratch(3) },
    ]);
    const status = r.out[0]?.status ?? 0;
    this.lab.step(
      this.name,
      'setup_table',
      `dom ${dom === DOMID_SELF ? 'SELF' : dom}, nr_frames ${nr}`,
      r.rc !== 0 ? rcText(r.rc) : st(status),
    );
    return { rc: r.rc, status };
  }

  addToPhysmap(idx: number, gpfn: number, what: string, domid = DOMID_SELF): number {
    const rc = this.rawAddToPhysmap(idx, gpfn, domid);
    this.lab.step(this.name, 'add_to_physmap', what, rcText(rc));
    return rc;
  }

  /** GNTTABOP_transfer of one page; the status. */
  transfer(mfn: number, to: LabDomain | number, ref: number): number {
    const tid = typeof to === 'number' ? to : to.domid;
    const r = this.op(GNTTABOP_transfer, gnttab_transfer, [{ mfn, domid: tid, ref }]);
    const status = r.rc !== 0 ? r.rc : (r.out[0]?.status ?? 0);
    this.lab.step(
      this.name,
      'transfer',
      `mfn 0x${mfn.toString(16)} to ${typeof to === 'number' ? `d${tid}` : to.name} ref ${ref}`,
      r.rc !== 0 ? rcText(r.rc) : st(status),
    );
    return status;
  }

  /** Unmaps the page at `addr` from a PV domain's page table, so only its allocation holds it. */
  unmapOwnPage(addr: number): number {
    const rc = this.dom.hypercall(__HYPERVISOR_update_va_mapping, addr, 0, 0);
    this.lab.step(this.name, 'update_va_mapping', `0x${addr.toString(16)} -> none`, rcText(rc));
    return rc;
  }
}

/** A scenario's bench: the host, its named domains, the record of what happened. */
export class Lab {
  readonly host: Host;
  readonly setup: string[] = [];
  readonly steps: XsaStep[] = [];
  readonly checks: XsaCheck[] = [];
  readonly races: XsaRace[] = [];
  private readonly id: number;
  private readonly title: string;

  constructor(id: number, title: string, options: HostOptions = {}) {
    this.id = id;
    this.title = title;
    this.host = new Host({ memoryMiB: 16, ...options });
  }

  /** Creates a domain named as the advisory names it, with its grant table mapped (unless told not to). */
  domain(name: string, options: DomainOptions & { version?: 1 | 2; mapTable?: boolean }): LabDomain {
    const { version, mapTable, ...o } = options;
    const dom = this.host.createDomain({ memoryKiB: 512, ...o });
    const d = new LabDomain(this, name, dom);
    if (version === 2) {
      const rc = d.setVersion(2);
      this.steps.pop();
      if (rc !== 0) throw new Error(`${name}: set_version(2) ${rcText(rc)}`);
    }
    if (mapTable !== false) d.mapOwnTable();
    const extra = [
      o.vcpus !== undefined ? `${o.vcpus} vCPUs` : '',
      o.maxMaptrackFrames !== undefined ? `max_maptrack_frames ${o.maxMaptrackFrames}` : '',
      o.maxGrantFrames !== undefined ? `max_grant_frames ${o.maxGrantFrames}` : '',
    ].filter((x) => x !== '');
    this.note(
      `${name} = d${dom.domid}: ${dom.kind.toUpperCase()}, v${dom.xen.gt.version}, ${dom.xen.gt.nrGrantFrames} grant frame${dom.xen.gt.nrGrantFrames === 1 ? '' : 's'}${extra.length > 0 ? `, ${extra.join(', ')}` : ''}`,
    );
    return d;
  }

  note(line: string): void {
    this.setup.push(line);
  }

  step(who: string, op: string, args: string, status: string): void {
    this.steps.push({ who, op, args, status });
  }

  expect(ok: boolean, what: string): boolean {
    this.checks.push({ what, ok });
    return ok;
  }

  /**
   * Runs `fn` with a party acting at each of Xen's shared-word steps: the
   * fixed interleaving of a race, in one thread.
   */
  interleave<T>(at: (op: SharedOp, addr: number) => void, fn: () => T): T {
    const words = this.host.hypervisor.machine.words;
    const prev = words.interpose;
    words.interpose = at;
    try {
      return fn();
    } finally {
      words.interpose = prev;
    }
  }

  /** Machine address of entry `ref` of `d` (what Xen's shared-word steps name). */
  shaAddr(d: LabDomain, ref: number): number {
    return d.dom.xen.gt.shaAddr(ref);
  }

  statusAddr(d: LabDomain, ref: number): number {
    return d.dom.xen.gt.statusAddr(ref);
  }

  /** The verdict: the invariant check, and safe only when every check and invariant passed. */
  finish(expectation: string[], options?: InvariantOptions): XsaResult {
    const invariants = this.host.checkInvariants(options);
    const ok =
      this.checks.every((c) => c.ok) &&
      invariants.length === 0 &&
      this.races.every((r) => r.violations === 0);
    return {
      id: this.id,
      title: this.title,
      setup: this.setup,
      steps: this.steps,
      expectation,
      checks: this.checks,
      races: this.races,
      invariants,
      outcome: ok ? 'safe' : 'unsafe',
    };
  }
}
