// Fuzzing the newer surfaces the way test/xen/fuzz.test.ts fuzzes grant
// tables, with the same seeded PRNG:
//
// 1. event_channel_op (hypercall 32): tens of thousands of calls from several
//    pv and hvm domains (some with a tiny max_evtchn_port, one with more vCPUs
//    than shared_info has vcpu_info slots), every command 0..15 and beyond,
//    random and plausible structs (real domids, DOMID_SELF, dead domids, ports
//    in and out of range, ports other domains bound, the xenstore ports),
//    random argument addresses (unmapped, page-crossing, a read-only page, the
//    xenstore ring page), interleaved with domains destroyed and recreated,
//    guests scribbling on their shared-info bits, and grant-table ops (dom0
//    mapping domains' xenstore rings through grant reference 1, as xenstored
//    does, set_version, query_size). Every call is checked against an oracle
//    written from xen/common/event_channel.c (its errno, in Xen's order, from
//    the state before the call) and its effect on the ports and the
//    shared-info bits afterwards.
//    Guests also scribble on their own xenstore rings and notify, so the
//    service reads garbage from inside these hypercalls.
// 2. A malicious xenstore client: a domain that writes random bytes and
//    adversarial-but-plausible xsd_sockmsg messages (huge len, bad types,
//    unterminated strings, bogus req/tx ids, paths it may not touch, indexes
//    that wrap or run ahead, its own reply indexes corrupted, its store port
//    closed, reset and bound again) into its own ring page and notifies its
//    store port, thousands of times, replaced by a fresh attacker whenever
//    xenstored drops it, while another domain uses the real XsRingClient.
//    Checked: no notify does more than a ring's worth of requests (65) or
//    takes long, the attacker never has more replies queued than xenstored's
//    outstanding quota, no store record outside its reach (its home, and the
//    H/inbox node it was given write access to) changes across its attacks,
//    every request it makes on a node it may not read or write is answered
//    with an error, no message it gets carries the honest domain's secret
//    values, its watch events name no node it may not read (but the echo of
//    its own watch), a dead attacker leaves no node behind, and the honest
//    domain's reads, writes, removes, directories, transactions and watch
//    events all match a model of its keys.
//
// The rules are DESIGN.md's "bad input never harms the host": a hypercall
// never throws, returns 0 or a negative Xen errno, internalErrors (and the
// xenstore service's errors) stay empty, checkInvariants is empty every 1,000
// calls (every 200 attacks) and at the end (statusBits off: guests scribble on
// their own pages).
//
// GNTTAB_FUZZ_SEED and GNTTAB_FUZZ_COUNT override the seed and the number of
// event-channel calls (the xenstore attacker makes COUNT / 10 attacks, or
// GNTTAB_FUZZ_XS_COUNT). GNTTAB_FUZZ_CHECK_EVERY=1 checks the invariants after
// every call, GNTTAB_FUZZ_TRACE=1 prints every call, GNTTAB_FUZZ_STATS=1 the
// outcomes seen.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GuestContext } from '../../src/guest/context.ts';
import { XENSTORE_RING_VA } from '../../src/guest/layout.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_INVALID,
  DOMID_IO,
  DOMID_SELF,
  DOMID_XEN,
  type DomainHandle,
  type DomainOptions,
  decodeStruct,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_pirq,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_init_control,
  EVTCHNOP_reset,
  EVTCHNOP_reset_cont,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  encodeStruct,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_unmask,
  GNTMAP_host_map,
  GNTTABOP_get_version,
  GNTTABOP_map_grant_ref,
  GNTTABOP_query_size,
  GNTTABOP_set_version,
  GNTTABOP_transfer,
  GNTTABOP_unmap_grant_ref,
  GTF_accept_transfer,
  GuestFault,
  gnttab_get_version,
  gnttab_map_grant_ref,
  gnttab_query_size,
  gnttab_set_version,
  gnttab_transfer,
  gnttab_unmap_grant_ref,
  Host,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  type StructDef,
  VCPU_INFO_PENDING_SEL,
  VCPU_INFO_UPCALL_PENDING,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  VIRQ_XENOPROF,
  VIRQ_XENPMU,
  vcpuInfoOffset,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
  XEN_EPERM,
  XEN_ERRNO_NAMES,
  XEN_ESRCH,
  XEN_LEGACY_MAX_VCPUS,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
  XsError,
  xen_add_to_physmap,
} from '../../src/index.ts';
import { XsRingClient } from '../../src/io/xenstore/client.ts';
import {
  concatBytes,
  decodeHeader,
  encodeMessage,
  fromBytes,
  maskXenstoreIdx,
  nulStrings,
  ringIndexesValid,
  splitStrings,
  toBytes,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_RING_SIZE,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RING_CONNECTION,
  XS_RING_ERROR,
  XS_RING_REQ,
  XS_RING_REQ_CONS,
  XS_RING_REQ_PROD,
  XS_RING_RSP,
  XS_RING_RSP_CONS,
  XS_RING_RSP_PROD,
  XS_RING_SERVER_FEATURES,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XSD_ERRORS,
  XSD_SOCKMSG_SIZE,
} from '../../src/io/xenstore/wire.ts';
import { permToString, type XenStore, XS_QUOTA, type XsNode } from '../../src/io/xenstore/xenstored.ts';
import type { Domain } from '../../src/xen/domain.ts';
import {
  ECS_FREE,
  ECS_INTERDOMAIN,
  ECS_IPI,
  ECS_RESERVED,
  ECS_UNBOUND,
  ECS_VIRQ,
} from '../../src/xen/event-channel.ts';
import { OWNER_NONE } from '../../src/xen/frame-table.ts';
import { reg, toRegister } from '../../src/xen/registers.ts';
import { envInt, Rng } from '../helpers/fuzz.ts';

const TRACE = process.env.GNTTAB_FUZZ_TRACE === '1';
const STATS = process.env.GNTTAB_FUZZ_STATS === '1';
const SEED = envInt('GNTTAB_FUZZ_SEED', 0x5eed_0032) >>> 0;
const COUNT = envInt('GNTTAB_FUZZ_COUNT', 100_000);
const XS_COUNT = envInt('GNTTAB_FUZZ_XS_COUNT', Math.max(300, Math.round(COUNT / 10)));
const CHECK_EVERY = Math.max(1, envInt('GNTTAB_FUZZ_CHECK_EVERY', 1000));

const PAGE = 4096;
const RAM_PAGES = 64;
const RAM_END = RAM_PAGES * PAGE;
/** Pages 40..47: the argument structs. */
const ARENA_VA = 40 * PAGE;
const ARENA_PAGES = 8;
/** Page 48 of a PV domain: mapped read-only (arguments there are read, then the write-back faults). */
const RO_VA = 48 * PAGE;
/** Where dom0 maps domains' xenstore rings (grant reference 1). */
const MAP_VA = 0xe000_0000;
const MAP_SLOTS = 32;
const TWO32 = 0x1_0000_0000;
const NR_PORTS = EVTCHN_2L_NR_CHANNELS;
const XEN_ERRNOS = new Set(Object.keys(XEN_ERRNO_NAMES).map(Number));

/** The argument struct of each EVTCHNOP_ (what copy_from_guest reads). */
const DEFS: Record<number, StructDef> = {
  [EVTCHNOP_bind_interdomain]: evtchn_bind_interdomain,
  [EVTCHNOP_bind_virq]: evtchn_bind_virq,
  [EVTCHNOP_bind_pirq]: evtchn_bind_pirq,
  [EVTCHNOP_close]: evtchn_close,
  [EVTCHNOP_send]: evtchn_send,
  [EVTCHNOP_status]: evtchn_status,
  [EVTCHNOP_alloc_unbound]: evtchn_alloc_unbound,
  [EVTCHNOP_bind_ipi]: evtchn_bind_ipi,
  [EVTCHNOP_bind_vcpu]: evtchn_bind_vcpu,
  [EVTCHNOP_unmask]: evtchn_unmask,
  [EVTCHNOP_reset]: evtchn_reset,
  [EVTCHNOP_init_control]: evtchn_init_control,
  [EVTCHNOP_expand_array]: evtchn_expand_array,
  [EVTCHNOP_set_priority]: evtchn_set_priority,
  [EVTCHNOP_reset_cont]: evtchn_reset,
};

// ---- the oracle: xen/common/event_channel.c, from the state before the call ---------------------

/** virq_is_global: the per-vCPU VIRQs are TIMER, DEBUG, XENOPROF and XENPMU (x86: the arch VIRQs are global). */
function virqIsGlobal(virq: number): boolean {
  return virq !== VIRQ_TIMER && virq !== VIRQ_DEBUG && virq !== VIRQ_XENOPROF && virq !== VIRQ_XENPMU;
}

/** get_free_port: the lowest free port (evtchn_allocate_port: a port past the buckets is free), or -errno. */
function lowestFree(d: Domain): number {
  if (d.isDying) return -XEN_EINVAL;
  const t = d.evtchn;
  for (let p = 0; p <= t.maxPort && p < NR_PORTS; p++) {
    const c = t.ports[p];
    if (c === undefined || c.state === ECS_FREE) return p;
  }
  return -XEN_ENOSPC;
}

/** evtchn_usable: a guest channel that can carry events (not Xen-attached, neither free nor reserved). */
function usable(d: Domain, port: number): boolean {
  const c = d.evtchn.ports[port];
  return c !== undefined && c.xenConsumer === null && c.state > ECS_RESERVED;
}

/** Whether copy_to_guest of `len` bytes at `addr` succeeds. */
function writable(d: Domain, addr: number, len: number): boolean {
  if (!(addr >= 0) || !Number.isSafeInteger(addr)) return false;
  for (let a = addr; a < addr + len; a = (Math.floor(a / PAGE) + 1) * PAGE)
    if (d.translatePage(a, true) < 0) return false;
  return true;
}

function bitOf(host: Host, d: Domain, base: number, bit: number): boolean {
  if (d.sharedInfoMfn < 0) return false;
  const a = d.sharedInfoMfn * PAGE + base + (bit >>> 4) * 2;
  return (host.hypervisor.machine.words.load16(a) & (1 << (bit & 15))) !== 0;
}

function pendingBit(host: Host, d: Domain, port: number): boolean {
  return bitOf(host, d, SHARED_INFO_EVTCHN_PENDING, port);
}

function maskBit(host: Host, d: Domain, port: number): boolean {
  return bitOf(host, d, SHARED_INFO_EVTCHN_MASK, port);
}

interface Expect {
  /** The rc Xen returns. */
  rc: number;
  /** Checks of the ports, shared-info bits and written-back struct after the call (rc as returned). */
  post?: (rc: number) => void;
}

// ---- part 1: the event-channel fuzzer -------------------------------------------------------------

interface Cfg {
  opts: DomainOptions;
}

const CONFIGS: Cfg[] = [
  // dom0, the control domain: never destroyed.
  { opts: { kind: 'pv', vcpus: 2 } },
  // A bucket and a few ports more.
  { opts: { kind: 'hvm', vcpus: 3, maxEvtchnPort: 70 } },
  // Tiny: the xenstore pair (1, 2) and three more.
  { opts: { kind: 'pv', maxEvtchnPort: 5 } },
  // Nothing beyond the xenstore pair.
  { opts: { kind: 'hvm', vcpus: 2, maxEvtchnPort: 2 } },
  // More vCPUs than shared_info has vcpu_info slots.
  { opts: { kind: 'pv', vcpus: XEN_LEGACY_MAX_VCPUS + 1, maxEvtchnPort: 200 } },
  { opts: { kind: 'hvm' } },
];

interface Slot {
  cfg: Cfg;
  dom: DomainHandle;
  ctx: GuestContext;
}

class EventFuzzer {
  readonly host: Host;
  readonly rng: Rng;
  readonly slots: Slot[] = [];
  readonly dead: number[] = [];
  /** dom0's grant mappings of xenstore rings: map slot -> handle. */
  readonly ringMaps = new Map<number, number>();
  calls = 0;
  checked = 0;
  outcomes = new Map<string, number>();
  grantOps = 0;
  destroyed = 0;
  /** dom0's successful maps of a ring; domains kept as zombies by such a map when destroyed. */
  ringMapsOk = 0;
  zombies = 0;
  /** Requests xenstored took off rings the fuzzer scribbled on. */
  xsHandled = 0;
  last = '';

  constructor(seed: number) {
    this.rng = new Rng(seed);
    this.host = new Host({ memoryMiB: 32, seed: 11, xenstore: true });
    const store = this.host.xenstored!.store;
    const orig = store.handle.bind(store);
    store.handle = (conn, msg) => {
      this.xsHandled++;
      orig(conn, msg);
    };
    for (const cfg of CONFIGS) this.slots.push(this.create(cfg));
  }

  get hv() {
    return this.host.hypervisor;
  }

  create(cfg: Cfg): Slot {
    const dom = this.host.createDomain({ ...cfg.opts, memoryKiB: RAM_PAGES * 4 });
    const ctx = this.host.context(dom.domid);
    const slot = { cfg, dom, ctx };
    if (dom.kind === 'pv') {
      // The guest fills page 48 and maps it read-only.
      dom.memory.write(RO_VA, this.rng.bytes(PAGE));
      const mfn = dom.frameOf(RO_VA);
      assert.equal(ctx.hypercall(__HYPERVISOR_update_va_mapping, RO_VA, mfn * PAGE + _PAGE_PRESENT, 0), 0);
    }
    return slot;
  }

  alive(): Slot[] {
    return this.slots.filter((s) => s.dom.alive);
  }

  /** A domain gone (destroyed by the fuzzer): a fresh one with the same configuration takes its slot. */
  revive(i: number): void {
    const s = this.slots[i]!;
    if (s.dom.alive) return;
    this.dead.push(s.dom.domid);
    this.slots[i] = this.create(s.cfg);
  }

  // ---- plausible values ----

  domid(caller: Slot): number {
    const r = this.rng.int(100);
    if (r < 40) return this.rng.pick(this.alive()).dom.domid;
    if (r < 55) return caller.dom.domid;
    if (r < 75) return DOMID_SELF;
    if (r < 85 && this.dead.length > 0) return this.rng.pick(this.dead);
    if (r < 93) return this.rng.pick([DOMID_INVALID, DOMID_IO, DOMID_XEN, 0x7ff5, 0x7fff, 0xffff, 0]);
    return this.rng.int(0x10000);
  }

  /** The domain's Xen-attached port (the xenstore service's end), or 0. */
  xenPort(d: Domain): number {
    for (const c of d.evtchn.ports) if (c.xenConsumer !== null) return c.port;
    return 0;
  }

  /** A port of `d`: in use, the xenstore ones, near the limits, another domain's number, or anything. */
  port(d: Domain | undefined): number {
    const rng = this.rng;
    const r = rng.int(100);
    if (d !== undefined) {
      const t = d.evtchn;
      if (r < 35) {
        const inUse = t.portsInUse();
        if (inUse.length > 0) return rng.pick(inUse).port;
      }
      if (r < 45) {
        const store = this.host.xenstored!.endpoint(d.domid).storePort;
        return rng.chance(0.5) ? store : this.xenPort(d);
      }
      if (r < 65)
        return rng.pick([
          t.maxPort,
          t.maxPort + 1,
          t.validPorts - 1,
          t.validPorts,
          63,
          64,
          127,
          128,
          1023,
          1024,
          NR_PORTS - 1,
          NR_PORTS,
        ]);
      if (r < 72) return rng.int(t.validPorts + 8);
    }
    if (r < 82) {
      const other = rng.pick(this.alive()).dom.xen.evtchn.portsInUse();
      if (other.length > 0) return rng.pick(other).port;
    }
    if (r < 90) return rng.pick([0, 1, 2, 3]);
    return rng.pick([rng.u32(), 0xffffffff, 0x80000000, 0x7fffffff, 0x10000 + rng.int(64)]);
  }

  vcpu(d: Domain): number {
    const rng = this.rng;
    const r = rng.int(100);
    if (r < 70) return rng.int(d.vcpus);
    if (r < 90) return rng.pick([d.vcpus, d.vcpus - 1, 31, 32, 33, 127, 128]);
    return rng.pick([rng.u32(), 0xffffffff, 0x80000000]);
  }

  /** A domain that offers a port to `me`, and that port: what bind_interdomain needs to succeed. */
  offer(me: Domain): { dom: number; port: number } | null {
    const cands: { dom: number; port: number }[] = [];
    for (const s of this.slots) {
      const d = s.dom.xen;
      for (const c of d.evtchn.ports)
        if (c.state === ECS_UNBOUND && c.unboundRemote === me.domid)
          cands.push({ dom: d === me && this.rng.chance(0.5) ? DOMID_SELF : d.domid, port: c.port });
    }
    return cands.length === 0 ? null : this.rng.pick(cands);
  }

  /** A plausible struct for command `cmd` from `s`, as field values. */
  plausible(cmd: number, s: Slot): Record<string, number> {
    const rng = this.rng;
    const me = s.dom.xen;
    const target = (dom: number) => (dom === DOMID_SELF ? me : this.hv.domains.get(dom));
    switch (cmd) {
      case EVTCHNOP_bind_interdomain: {
        const o = rng.chance(0.6) ? this.offer(me) : null;
        const dom = o?.dom ?? this.domid(s);
        return { remote_dom: dom, remote_port: o?.port ?? this.port(target(dom)), local_port: rng.u32() };
      }
      case EVTCHNOP_bind_virq: {
        const virq = rng.chance(0.85) ? rng.int(24) : rng.pick([24, 31, 255, rng.u32(), 0xffffffff]);
        return { virq, vcpu: rng.chance(0.5) ? 0 : this.vcpu(me), port: rng.u32() };
      }
      case EVTCHNOP_bind_pirq:
        return { pirq: rng.pick([0, 1, 16, rng.u32()]), flags: rng.int(4), port: rng.u32() };
      case EVTCHNOP_close:
      case EVTCHNOP_send:
      case EVTCHNOP_unmask:
        return { port: this.port(me) };
      case EVTCHNOP_status: {
        const dom = rng.chance(0.5) ? DOMID_SELF : this.domid(s);
        return {
          dom,
          port: this.port(target(dom)),
          status: rng.u32(),
          vcpu: rng.u32(),
          u_dom: rng.int(0x10000),
          u_port: rng.u32(),
        };
      }
      case EVTCHNOP_alloc_unbound: {
        const r = rng.int(100);
        const dom = r < 55 ? DOMID_SELF : r < 70 ? me.domid : this.domid(s);
        return { dom, remote_dom: this.domid(s), port: rng.u32() };
      }
      case EVTCHNOP_bind_ipi:
        return { vcpu: this.vcpu(me), port: rng.u32() };
      case EVTCHNOP_bind_vcpu:
        return { port: this.port(me), vcpu: this.vcpu(me) };
      case EVTCHNOP_reset:
      case EVTCHNOP_reset_cont:
        return { dom: rng.chance(0.6) ? DOMID_SELF : this.domid(s) };
      case EVTCHNOP_set_priority:
        return { port: this.port(me), priority: rng.pick([0, 7, 15, 16, rng.u32()]) };
      case EVTCHNOP_init_control:
        return {
          control_gfn: rng.int(RAM_PAGES + 4),
          offset: rng.pick([0, 64, 4032, 4096]),
          vcpu: rng.int(3),
        };
      case EVTCHNOP_expand_array:
        return { array_gfn: rng.int(RAM_PAGES + 4) };
      default:
        return {};
    }
  }

  /** The argument bytes: plausible, fully random, or plausible with a few bytes flipped. */
  argBytes(cmd: number, s: Slot): Uint8Array {
    const def = DEFS[cmd];
    const size = def?.size ?? 24;
    const r = this.rng.int(100);
    if (def === undefined || r < 10) return this.rng.bytes(size);
    const b = encodeStruct(def, this.plausible(cmd, s));
    if (r < 18) for (let k = this.rng.range(1, 3); k > 0; k--) b[this.rng.int(size)] = this.rng.int(256);
    return b;
  }

  /** The argument address: mostly the arena, sometimes crossing into unmapped space, read-only, or absurd. */
  argAddr(s: Slot, size: number): number | bigint {
    const rng = this.rng;
    const a = rng.int(100);
    if (a < 80) return ARENA_VA + rng.int(ARENA_PAGES - 1) * PAGE + rng.pick([0, 8, 64, rng.int(PAGE - 24)]);
    if (a < 84) return ARENA_VA + rng.range(1, ARENA_PAGES - 1) * PAGE - rng.range(1, size - 1);
    if (a < 87) return RAM_END - rng.range(1, size);
    if (a < 90 && s.dom.kind === 'pv') return RO_VA + rng.int(PAGE - size);
    if (a < 93) return XENSTORE_RING_VA + rng.int(PAGE - size);
    if (a < 96) return rng.pick([RAM_END, RAM_END + rng.int(0x1000_0000), 0, TWO32 - rng.int(size), MAP_VA]);
    return rng.pick<number | bigint>([2 ** 53, 0xffff_ffff_ffff_fff0n, -1, rng.u64(), TWO32]);
  }

  /** Places bytes where the guest would have them (a read-only page: written before it was made read-only). */
  place(s: Slot, addr: number, bytes: Uint8Array): void {
    const d = s.dom.xen;
    const m = this.hv.machine.u8;
    if (!(addr >= 0) || !Number.isSafeInteger(addr)) return;
    for (let off = 0; off < bytes.length; ) {
      const a = addr + off;
      const n = Math.min(bytes.length - off, PAGE - (a % PAGE));
      const ro = s.dom.kind === 'pv' && Math.floor(a / PAGE) === RO_VA / PAGE;
      const base = d.translatePage(a, !ro);
      if (base >= 0) m.set(bytes.subarray(off, off + n), base + (a % PAGE));
      off += n;
    }
  }

  // ---- the oracle ----

  predict(s: Slot, cmd: number, addr: number): Expect {
    const host = this.host;
    const hv = this.hv;
    const d = s.dom.xen;
    const def = DEFS[cmd];
    // do_event_channel_op: unknown commands answer -ENOSYS before touching the argument.
    if (def === undefined) return { rc: -XEN_ENOSYS };
    const inBytes = hv.copyFromGuest(d, addr, def.size);
    if (inBytes === null) return { rc: -XEN_EFAULT };
    const v = decodeStruct(def, inBytes) as Record<string, number>;
    const wb = writable(d, addr, def.size);
    const back = (bytes: Uint8Array) => hv.copyFromGuest(d, addr, bytes.length);
    const byDom = (dom: number) => (dom === DOMID_SELF ? d : hv.domains.get(dom));
    /** A struct written back: the input with `set` fields changed, nothing else. */
    const written = (set: (view: DataView) => void) => {
      const want = inBytes.slice();
      set(new DataView(want.buffer));
      const got = back(want);
      assert.deepEqual(got, want, `${this.last}: the struct written back`);
    };
    switch (cmd) {
      case EVTCHNOP_alloc_unbound: {
        const t = byDom(v.dom!);
        if (t === undefined) return { rc: -XEN_ESRCH };
        const port = lowestFree(t);
        if (port < 0) return { rc: port };
        if (!(d === t || d.domid === 0)) return { rc: -XEN_EPERM };
        const remote = v.remote_dom === DOMID_SELF ? d.domid : v.remote_dom!;
        return {
          rc: wb ? 0 : -XEN_EFAULT,
          post: (rc) => {
            const c = t.evtchn.ports[port]!;
            assert.equal(c.state, ECS_UNBOUND, `${this.last}: port ${port} unbound`);
            assert.equal(c.unboundRemote, remote, `${this.last}: offered to d${remote}`);
            assert.equal(c.notifyVcpu, 0);
            if (rc === 0) written((w) => w.setUint32(4, port, true));
          },
        };
      }
      case EVTCHNOP_bind_interdomain: {
        // The newer evtchn_bind_interdomain: DOMID_SELF is the caller, then rcu_lock_domain_by_id.
        const rd = byDom(v.remote_dom!);
        if (rd === undefined) return { rc: -XEN_ESRCH };
        const lport = lowestFree(d);
        if (lport < 0) return { rc: lport };
        const rport = v.remote_port!;
        const rchn = rd.evtchn.ports[rport];
        if (rchn === undefined) return { rc: -XEN_EINVAL };
        if (rchn.state !== ECS_UNBOUND || rchn.unboundRemote !== d.domid) return { rc: -XEN_EINVAL };
        return {
          rc: wb ? 0 : -XEN_EFAULT,
          post: (rc) => {
            const l = d.evtchn.ports[lport]!;
            const r = rd.evtchn.ports[rport]!;
            assert.equal(l.state, ECS_INTERDOMAIN, `${this.last}: local ${lport}`);
            assert.ok(l.remote === rd && l.remotePort === rport, `${this.last}: local links to the remote`);
            assert.equal(r.state, ECS_INTERDOMAIN);
            assert.ok(r.remote === d && r.remotePort === lport, `${this.last}: remote links back`);
            // Lost notifications: the local port is marked pending at once.
            assert.ok(pendingBit(host, d, lport), `${this.last}: local port pending`);
            if (rc === 0) written((w) => w.setUint32(8, lport, true));
          },
        };
      }
      case EVTCHNOP_bind_virq: {
        const virq = v.virq!;
        const vcpu = v.vcpu!;
        // int virq, int vcpu: huge values are negative in C, which the same tests catch.
        if (virq >= 24) return { rc: -XEN_EINVAL };
        if (virqIsGlobal(virq) && vcpu !== 0) return { rc: -XEN_EINVAL };
        if (vcpu >= d.vcpus) return { rc: -XEN_ENOENT };
        if (d.evtchn.virqToEvtchn[vcpu]![virq] !== 0) return { rc: -XEN_EEXIST };
        const port = lowestFree(d);
        if (port < 0) return { rc: port };
        return {
          rc: wb ? 0 : -XEN_EFAULT,
          post: (rc) => {
            const c = d.evtchn.ports[port]!;
            assert.ok(
              c.state === ECS_VIRQ && c.virq === virq && c.notifyVcpu === vcpu,
              `${this.last}: VIRQ port`,
            );
            assert.equal(d.evtchn.virqToEvtchn[vcpu]![virq], port);
            if (rc === 0) written((w) => w.setUint32(8, port, true));
          },
        };
      }
      case EVTCHNOP_bind_ipi: {
        const vcpu = v.vcpu!;
        if (vcpu >= d.vcpus) return { rc: -XEN_ENOENT };
        const port = lowestFree(d);
        if (port < 0) return { rc: port };
        return {
          rc: wb ? 0 : -XEN_EFAULT,
          post: (rc) => {
            const c = d.evtchn.ports[port]!;
            assert.ok(c.state === ECS_IPI && c.notifyVcpu === vcpu, `${this.last}: IPI port`);
            if (rc === 0) written((w) => w.setUint32(4, port, true));
          },
        };
      }
      case EVTCHNOP_bind_pirq:
        // Physical IRQs are not modelled.
        return { rc: -XEN_ENOSYS };
      case EVTCHNOP_close: {
        const port = v.port!;
        const c = d.evtchn.ports[port];
        if (c === undefined || c.xenConsumer !== null) return { rc: -XEN_EINVAL };
        if (c.state === ECS_FREE || c.state === ECS_RESERVED) return { rc: -XEN_EINVAL };
        const { state, remote, remotePort, virq } = c;
        const vcpuOfVirq = virqIsGlobal(virq) ? 0 : c.notifyVcpu;
        return {
          rc: 0,
          post: () => {
            assert.ok(c.state === ECS_FREE && c.notifyVcpu === 0, `${this.last}: port ${port} freed`);
            assert.ok(!pendingBit(host, d, port), `${this.last}: its pending bit cleared`);
            if (state === ECS_INTERDOMAIN) {
              const peer = remote!.evtchn.ports[remotePort]!;
              assert.equal(peer.state, ECS_UNBOUND, `${this.last}: the peer goes back to unbound`);
              assert.equal(peer.unboundRemote, d.domid, `${this.last}: offered to the closer`);
            }
            if (state === ECS_VIRQ) assert.equal(d.evtchn.virqToEvtchn[vcpuOfVirq]![virq], 0);
          },
        };
      }
      case EVTCHNOP_send: {
        const port = v.port!;
        const c = d.evtchn.ports[port];
        if (c === undefined || c.xenConsumer !== null) return { rc: -XEN_EINVAL };
        if (c.state === ECS_UNBOUND) return { rc: 0 };
        if (c.state === ECS_IPI) return { rc: 0, post: () => assert.ok(pendingBit(host, d, port)) };
        if (c.state !== ECS_INTERDOMAIN) return { rc: -XEN_EINVAL };
        const rd = c.remote!;
        const rport = c.remotePort;
        if (rd.evtchn.ports[rport]!.xenConsumer !== null) return { rc: 0 };
        return { rc: 0, post: () => assert.ok(pendingBit(host, rd, rport), `${this.last}: peer pending`) };
      }
      case EVTCHNOP_status: {
        const t = byDom(v.dom!);
        if (t === undefined) return { rc: -XEN_ESRCH };
        const c = t.evtchn.ports[v.port!];
        if (c === undefined) return { rc: -XEN_EINVAL };
        if (!(d === t || d.domid === 0)) return { rc: -XEN_EPERM };
        const { state, notifyVcpu, unboundRemote, remote, remotePort, virq } = c;
        return {
          rc: wb ? 0 : -XEN_EFAULT,
          post: (rc) => {
            if (rc !== 0) return;
            written((w) => {
              const st =
                state === ECS_FREE || state === ECS_RESERVED
                  ? EVTCHNSTAT_closed
                  : state === ECS_UNBOUND
                    ? EVTCHNSTAT_unbound
                    : state === ECS_INTERDOMAIN
                      ? EVTCHNSTAT_interdomain
                      : state === ECS_VIRQ
                        ? EVTCHNSTAT_virq
                        : EVTCHNSTAT_ipi;
              w.setUint32(8, st, true);
              w.setUint32(12, notifyVcpu, true);
              if (state === ECS_UNBOUND) w.setUint16(16, unboundRemote, true);
              if (state === ECS_INTERDOMAIN) {
                w.setUint16(16, remote!.domid, true);
                w.setUint32(20, remotePort, true);
              }
              if (state === ECS_VIRQ) w.setUint32(16, virq, true);
            });
          },
        };
      }
      case EVTCHNOP_bind_vcpu: {
        const vcpu = v.vcpu!;
        if (vcpu >= d.vcpus) return { rc: -XEN_ENOENT };
        const c = d.evtchn.ports[v.port!];
        if (c === undefined || c.xenConsumer !== null) return { rc: -XEN_EINVAL };
        const ok =
          c.state === ECS_UNBOUND ||
          c.state === ECS_INTERDOMAIN ||
          (c.state === ECS_VIRQ && virqIsGlobal(c.virq));
        if (!ok) return { rc: -XEN_EINVAL };
        return { rc: 0, post: () => assert.equal(c.notifyVcpu, vcpu, `${this.last}: re-bound`) };
      }
      case EVTCHNOP_unmask: {
        const port = v.port!;
        const c = d.evtchn.ports[port];
        if (c === undefined) return { rc: -XEN_EINVAL };
        const wasMasked = maskBit(host, d, port);
        const pending = pendingBit(host, d, port);
        const use = usable(d, port);
        const vcpu = c.notifyVcpu;
        const vi = vcpuInfoOffset(vcpu);
        const selBefore =
          vcpu < XEN_LEGACY_MAX_VCPUS && bitOf(host, d, vi + VCPU_INFO_PENDING_SEL, port >>> 6);
        return {
          rc: 0,
          post: () => {
            // evtchn_port_unmask acts on usable channels only (xen/include/xen/event.h).
            if (!use) {
              assert.equal(
                maskBit(host, d, port),
                wasMasked,
                `${this.last}: an unusable port's mask is left alone`,
              );
              return;
            }
            assert.ok(!maskBit(host, d, port), `${this.last}: unmasked`);
            // evtchn_2l_unmask: a masked pending port raises its selector bit, and the upcall if that was clear.
            if (wasMasked && pending && vcpu < XEN_LEGACY_MAX_VCPUS) {
              assert.ok(
                bitOf(host, d, vi + VCPU_INFO_PENDING_SEL, port >>> 6),
                `${this.last}: selector raised`,
              );
              if (!selBefore)
                assert.ok(bitOf(host, d, vi + VCPU_INFO_UPCALL_PENDING, 0), `${this.last}: upcall raised`);
            }
          },
        };
      }
      case EVTCHNOP_reset:
      case EVTCHNOP_reset_cont: {
        const t = byDom(v.dom!);
        if (t === undefined) return { rc: -XEN_ESRCH };
        if (!(d === t || d.domid === 0)) return { rc: -XEN_EPERM };
        // evtchn_reset: another domain must be paused by its controller (never, here).
        if (t !== d) return { rc: -XEN_EINVAL };
        // A continuation with no reset in progress.
        if (cmd === EVTCHNOP_reset_cont) return { rc: -XEN_EBUSY };
        return {
          rc: 0,
          post: () => {
            for (const c of d.evtchn.ports)
              if (c.port !== 0 && c.xenConsumer === null)
                assert.equal(c.state, ECS_FREE, `${this.last}: port ${c.port} closed by the reset`);
          },
        };
      }
      case EVTCHNOP_init_control:
        // The FIFO ABI is not modelled: guests stay on 2-level.
        return { rc: -XEN_ENOSYS };
      case EVTCHNOP_expand_array:
        // evtchn_fifo_expand_array without a FIFO control block.
        return { rc: -XEN_EOPNOTSUPP };
      case EVTCHNOP_set_priority:
        // 2-level: no set_priority op (-ENOSYS) once the port is valid.
        return { rc: d.evtchn.ports[v.port!] === undefined ? -XEN_EINVAL : -XEN_ENOSYS };
      default:
        return { rc: -XEN_ENOSYS };
    }
  }

  // ---- one hypercall, with every check ----

  /** A hypercall of slot `s` that must not throw, must answer 0 or a Xen errno, and must not break Xen. */
  call(s: Slot, nr: number, args: (number | bigint)[]): number {
    if (TRACE) console.log(`${this.last} args ${args.map((a) => a.toString(16)).join(' ')}`);
    let rc: number;
    try {
      rc = s.ctx.hypercall(nr, ...args);
    } catch (e) {
      throw new Error(`${this.last}: the hypercall threw`, { cause: e });
    }
    if (!Number.isInteger(rc) || (rc !== 0 && !XEN_ERRNOS.has(-rc)))
      throw new Error(`${this.last}: returned ${rc}, not 0 or a negative Xen errno`);
    if (this.hv.internalErrors.length > 0)
      throw new Error(`${this.last}: hypervisor internal error`, { cause: this.hv.internalErrors[0] });
    if (this.host.xenstored!.errors.length > 0)
      throw new Error(`${this.last}: xenstore service error`, { cause: this.host.xenstored!.errors[0] });
    return rc;
  }

  step(): void {
    const rng = this.rng;
    if (rng.chance(0.03)) this.meta();
    const idx = rng.int(this.slots.length);
    if (!this.slots[idx]!.dom.alive) this.revive(idx);
    const s = this.slots[idx]!;

    // The command: mostly 0..14 (biased towards the ones that build state), sometimes anything.
    const c = rng.int(100);
    let cmd: number;
    if (c < 35) cmd = rng.pick([6, 6, 6, 0, 0, 0, 3, 3, 4, 4, 5, 9, 7, 1, 8]);
    else if (c < 92) cmd = rng.int(15);
    else if (c < 97) cmd = rng.range(15, 40);
    else cmd = rng.pick([rng.u32(), 0x80000000 + rng.int(15), 0x100 + rng.int(15), 0xffffffff]);
    const size = DEFS[cmd]?.size ?? 24;
    const addrArg = this.argAddr(s, size);
    this.place(s, reg(toRegister(addrArg, 'addr')), this.argBytes(cmd, s));
    // The guest sometimes passes the cmd with garbage in the upper half of the register.
    const cmdArg = rng.chance(0.03) ? cmd + TWO32 * rng.range(1, 255) : cmd;
    this.op(s, cmd, cmdArg, addrArg);
  }

  /** One event_channel_op (its argument placed), checked against the oracle. */
  op(s: Slot, cmd: number, cmdArg: number, addrArg: number | bigint): void {
    const size = DEFS[cmd]?.size ?? 24;
    const addr = reg(toRegister(addrArg, 'addr'));
    this.last = `step ${this.calls}: d${s.dom.domid} (${s.dom.kind}) event_channel_op(${cmd}, 0x${addr.toString(16)})`;
    const want = this.predict(s, cmd, addr);
    const usedBefore = s.dom.xen.evtchn.inUse;
    this.calls++;
    const rc = this.call(s, __HYPERVISOR_event_channel_op, [cmdArg, addrArg]);
    const k = `${cmd < 15 ? cmd : 'other'}:${rc}`;
    this.outcomes.set(k, (this.outcomes.get(k) ?? 0) + 1);
    if (rc !== want.rc)
      throw new Error(
        `${this.last}: returned ${rc}, but Xen answers ${want.rc} (xen/common/event_channel.c)\n` +
          `argument ${Buffer.from(this.hv.copyFromGuest(s.dom.xen, addr, size) ?? []).toString('hex')}`,
      );
    this.checked++;
    if (want.post !== undefined) want.post(rc);
    else if (rc < 0 && cmd !== EVTCHNOP_alloc_unbound)
      // A refused call allocates nothing in the caller (alloc_unbound may target another domain).
      assert.equal(s.dom.xen.evtchn.inUse, usedBefore, `${this.last}: a refused call changed the ports`);
  }

  // ---- between calls ----

  meta(): void {
    const rng = this.rng;
    const r = rng.int(100);
    const i = rng.int(this.slots.length);
    const s = this.slots[i]!;
    if (!s.dom.alive) {
      this.revive(i);
      return;
    }
    if (r < 12 && i !== 0) {
      if (TRACE) console.log(`destroy d${s.dom.domid}`);
      this.host.destroyDomain(s.dom.domid);
      this.destroyed++;
      if (this.hv.domains.has(s.dom.domid)) this.zombies++;
      this.revive(i);
    } else if (r < 40) this.scribble(s);
    else if (r < 60) this.ringScribble(s);
    else if (r < 85) this.ringGrant();
    else this.grantOp(s);
  }

  /**
   * The guest scribbles on its own xenstore ring (as if mapped): requests of random
   * bytes or well-formed ones, req_prod moved over them, sometimes corrupt indexes;
   * its next send on the store port makes xenstored read them.
   */
  ringScribble(s: Slot): void {
    const rng = this.rng;
    const d = s.dom.xen;
    const f = this.host.context(s.dom.domid).start.storeFrame;
    const mfn = d.translated ? d.translatePage(f * PAGE, false) / PAGE : f;
    if (!(mfn >= 0) || this.hv.frames.owner[mfn] !== d.domid) return;
    const base = mfn * PAGE;
    const w = this.hv.machine.words;
    const cons = w.load32(base + XS_RING_REQ_CONS);
    const bytes = rng.chance(0.9)
      ? encodeMessage({
          type: rng.pick([XS_READ, XS_WRITE, XS_DIRECTORY, XS_WATCH, XS_TRANSACTION_START, rng.u32()]),
          reqId: rng.u32(),
          txId: rng.chance(0.8) ? 0 : rng.u32(),
          payload: rng.chance(0.5)
            ? nulStrings(rng.pick(['data', 'domid', '/', '/local/domain/0']))
            : rng.bytes(40),
        })
      : rng.bytes(rng.range(1, 200));
    for (let i = 0; i < bytes.length; i++)
      this.hv.machine.u8[base + XS_RING_REQ + maskXenstoreIdx(cons + i)] = bytes[i]!;
    const r = rng.int(20);
    w.store32(base + XS_RING_REQ_PROD, r < 18 ? cons + bytes.length : r < 19 ? cons + rng.u32() : cons);
    // It reads (discards) the replies, mostly.
    if (rng.chance(0.8)) w.store32(base + XS_RING_RSP_CONS, w.load32(base + XS_RING_RSP_PROD));
    // And it notifies its store port, binding one again first if it closed it (or reset its ports).
    const xen = d.evtchn.ports[this.xenPort(d)];
    if (xen === undefined || this.calls + 2 > COUNT) return;
    if (xen.state === ECS_UNBOUND) {
      this.place(
        s,
        ARENA_VA,
        encodeStruct(evtchn_bind_interdomain, { remote_dom: DOMID_SELF, remote_port: xen.port }),
      );
      this.op(s, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_interdomain, ARENA_VA);
    }
    if (xen.state !== ECS_INTERDOMAIN) return;
    this.place(s, ARENA_VA, encodeStruct(evtchn_send, { port: xen.remotePort }));
    this.op(s, EVTCHNOP_send, EVTCHNOP_send, ARENA_VA);
  }

  /** The guest writes its own shared-info bits: mask and pending bits, selectors, upcall flags. */
  scribble(s: Slot): void {
    const rng = this.rng;
    const d = s.dom.xen;
    const w = this.hv.machine.words;
    const si = d.sharedInfoMfn * PAGE;
    for (let k = rng.range(1, 8); k > 0; k--) {
      const port = this.port(d) % NR_PORTS;
      const base = rng.chance(0.5) ? SHARED_INFO_EVTCHN_MASK : SHARED_INFO_EVTCHN_PENDING;
      const a = si + base + (port >>> 4) * 2;
      const m = 1 << (port & 15);
      if (rng.chance(0.6)) w.or16(a, m);
      else w.and16(a, ~m & 0xffff);
    }
    if (rng.chance(0.3)) {
      const vi = si + vcpuInfoOffset(rng.int(Math.min(d.vcpus, XEN_LEGACY_MAX_VCPUS)));
      w.store32(vi + VCPU_INFO_PENDING_SEL, rng.chance(0.5) ? 0 : rng.u32());
      w.and16(vi + VCPU_INFO_UPCALL_PENDING, 0xff00);
    }
  }

  /** dom0 maps a domain's xenstore ring through grant reference 1 (as xenstored does), or unmaps one. */
  ringGrant(): void {
    const rng = this.rng;
    const d0 = this.slots[0]!;
    const slot = rng.int(MAP_SLOTS);
    const hostAddr = MAP_VA + slot * PAGE;
    const handle = this.ringMaps.get(slot);
    if (handle !== undefined) {
      const st = this.gntOp(d0, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, {
        host_addr: hostAddr,
        handle,
      });
      if (st !== null) {
        assert.ok(st.status! <= 0 && st.status! >= -13, `${this.last}: unmap status ${st.status}`);
        this.ringMaps.delete(slot);
      }
      return;
    }
    const target = rng.pick(this.alive()).dom.domid;
    const st = this.gntOp(d0, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, {
      host_addr: hostAddr,
      flags: GNTMAP_host_map,
      ref: rng.chance(0.9) ? 1 : rng.int(8),
      dom: target,
    });
    if (st === null) return;
    assert.ok(st.status! <= 0 && st.status! >= -13, `${this.last}: map status ${st.status}`);
    if (st.status === 0) {
      this.ringMaps.set(slot, st.handle!);
      this.ringMapsOk++;
    }
  }

  /** A grant-table op of a domain on its own table. */
  grantOp(s: Slot): void {
    const rng = this.rng;
    const r = rng.int(3);
    if (r === 0) this.gntOp(s, GNTTABOP_set_version, gnttab_set_version, { version: rng.range(1, 2) });
    else if (r === 1)
      this.gntOp(s, GNTTABOP_query_size, gnttab_query_size, {
        dom: rng.chance(0.7) ? DOMID_SELF : this.domid(s),
      });
    else this.gntOp(s, GNTTABOP_get_version, gnttab_get_version, { dom: this.domid(s) });
  }

  gntOp(s: Slot, cmd: number, def: StructDef, value: Record<string, number>): Record<string, number> | null {
    if (!s.dom.alive) return null;
    this.grantOps++;
    try {
      s.ctx.mem.write(ARENA_VA, encodeStruct(def, value));
    } catch (e) {
      if (!(e instanceof GuestFault)) throw e;
      return null;
    }
    this.last = `meta: d${s.dom.domid} grant_table_op(${cmd}, ${JSON.stringify(value)})`;
    const rc = this.call(s, __HYPERVISOR_grant_table_op, [cmd, ARENA_VA, 1]);
    if (rc !== 0 || !s.dom.alive) return null;
    return decodeStruct(def, s.ctx.mem.read(ARENA_VA, def.size)) as Record<string, number>;
  }

  invariants(): void {
    const bad = this.host.checkInvariants({ statusBits: false });
    // And the port tables: nothing past max_evtchn_port or the 2-level limit, buckets whole,
    // one Xen-attached port per domain with a ring.
    for (const d of this.hv.domains.values()) {
      const t = d.evtchn;
      if (t.validPorts % 64 !== 0) bad.push(`d${d.domid}: ${t.validPorts} valid ports, not whole buckets`);
      const limit = Math.max(64, Math.ceil((Math.min(t.maxPort, NR_PORTS - 1) + 1) / 64) * 64);
      if (t.validPorts > limit) bad.push(`d${d.domid}: ${t.validPorts} valid ports past max ${t.maxPort}`);
      for (const c of t.portsInUse())
        if (c.port > t.maxPort || c.port >= NR_PORTS) bad.push(`d${d.domid}: port ${c.port} past the limit`);
      if (d.isDying) continue;
      const xen = t.ports.filter((c) => c.xenConsumer !== null);
      if (xen.length !== 1) bad.push(`d${d.domid}: ${xen.length} Xen-attached ports`);
      for (const c of xen) {
        const ok =
          (c.state === ECS_INTERDOMAIN && c.remote === d) ||
          (c.state === ECS_UNBOUND && c.unboundRemote === d.domid);
        if (!ok) bad.push(`d${d.domid}: Xen-attached port ${c.port} in state ${c.state}`);
      }
    }
    if (bad.length > 0)
      throw new Error(`after ${this.last}: invariants violated:\n${bad.slice(0, 20).join('\n')}`);
  }
}

describe('fuzz: random event_channel_op never harms the host', () => {
  it(`${COUNT} event_channel_op calls, seed ${SEED}: no throw, Xen's errno for every call, effects as event_channel.c, invariants hold`, () => {
    const t0 = performance.now();
    const fz = new EventFuzzer(SEED);
    console.log(`evtchn fuzz: seed ${SEED} (GNTTAB_FUZZ_SEED), ${COUNT} calls (GNTTAB_FUZZ_COUNT)`);
    try {
      while (fz.calls < COUNT) {
        const before = fz.calls;
        fz.step();
        if (Math.floor(fz.calls / CHECK_EVERY) !== Math.floor(before / CHECK_EVERY)) fz.invariants();
      }
      fz.invariants();
    } catch (e) {
      console.log(`evtchn fuzz: FAILED with seed ${SEED}; rerun with GNTTAB_FUZZ_SEED=${SEED}`);
      throw e;
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `evtchn fuzz: ${fz.calls} calls in ${secs.toFixed(1)} s (${Math.round(fz.calls / secs)} calls/s); ` +
        `${fz.checked} checked against the oracle; ${fz.grantOps} grant-table ops (${fz.ringMapsOk} rings mapped ` +
        `by dom0); ${fz.destroyed} domains destroyed (${fz.zombies} kept as zombies); ` +
        `${fz.xsHandled} requests xenstored read off scribbled rings`,
    );
    if (STATS)
      console.log(
        [...fz.outcomes]
          .sort()
          .map(([k, v]) => `${k}: ${v}`)
          .join('\n'),
      );
    assert.equal(fz.checked, fz.calls);
    // The run reached the deep paths.
    if (COUNT >= 50_000) {
      for (const [cmd, what] of [
        [EVTCHNOP_alloc_unbound, 'alloc_unbound'],
        [EVTCHNOP_bind_interdomain, 'bind_interdomain'],
        [EVTCHNOP_close, 'close'],
        [EVTCHNOP_send, 'send'],
        [EVTCHNOP_status, 'status'],
        [EVTCHNOP_bind_virq, 'bind_virq'],
        [EVTCHNOP_bind_ipi, 'bind_ipi'],
        [EVTCHNOP_bind_vcpu, 'bind_vcpu'],
        [EVTCHNOP_unmask, 'unmask'],
        [EVTCHNOP_reset, 'reset'],
      ] as const)
        assert.ok((fz.outcomes.get(`${cmd}:0`) ?? 0) > 20, `few successful ${what}`);
      assert.ok(
        (fz.outcomes.get(`${EVTCHNOP_alloc_unbound}:${-XEN_ENOSPC}`) ?? 0) > 20,
        'tables never filled',
      );
      assert.ok(fz.destroyed > 10, 'few domains destroyed');
      assert.ok(fz.ringMapsOk > 10 && fz.zombies > 0, 'dom0 rarely mapped a ring');
      assert.ok(fz.xsHandled > 100, 'xenstored rarely read the scribbled rings');
    }
  });
});

// ---- part 2: a malicious xenstore client --------------------------------------------------------------

/** The attacker's page for its hypercall arguments. */
const XS_ARG_VA = 30 * PAGE;
/** xenstored reads at most a ring of requests per notify: 1024 / 16 whole messages, and one begun before. */
const MAX_HANDLED_PER_NOTIFY = XENSTORE_RING_SIZE / XSD_SOCKMSG_SIZE + 1;
const SECRET_TAG = 'S3CR3T-';

/** The request types xenstored serves (the rest answer an error). */
const SERVED = new Set([
  XS_DIRECTORY,
  XS_READ,
  XS_GET_PERMS,
  XS_WATCH,
  XS_UNWATCH,
  XS_TRANSACTION_START,
  XS_TRANSACTION_END,
  XS_GET_DOMAIN_PATH,
  XS_WRITE,
  XS_MKDIR,
  XS_RM,
  XS_SET_PERMS,
  XS_RESET_WATCHES,
  XS_DIRECTORY_PART,
  // domain.c do_get_feature: any domain may ask for its own features.
  XS_GET_FEATURE,
]);
const READS = new Set([XS_READ, XS_DIRECTORY, XS_DIRECTORY_PART, XS_GET_PERMS]);
const WRITES = new Set([XS_WRITE, XS_MKDIR, XS_RM, XS_SET_PERMS]);

/** A request the attacker sent with a req_id of its own, to check the reply against. */
interface Sent {
  type: number;
  path: string;
}

/** Bytes contain the ASCII string `s`. */
function contains(hay: Uint8Array, s: string): boolean {
  const needle = toBytes(s);
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Fails instead of hanging when a promise never settles (a guest waiting for a reply that never comes). */
async function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms (hung)`)), ms);
  });
  try {
    return await Promise.race([p, stuck]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The attacker's guest side: its ring page and store port, written and read
 * directly (the raw ring and the raw hypercall), with whatever it likes.
 */
class XsAttacker {
  readonly dom: DomainHandle;
  readonly ctx: GuestContext;
  /** The ring page in the attacker's address space. */
  readonly ring: number;
  readonly home: string;
  readonly xenPort: number;
  /** Its store port (0 after it closed it). */
  port: number;
  /** It corrupted its own reply-ring indexes: what comes back can no longer be parsed. */
  broken = false;
  /**
   * A crude attacker also sends what gets it dropped at once (bad indexes, over-long
   * payloads, misaligned bytes); a subtle one stays connected to reach deeper state.
   */
  crude = false;
  /** Request bytes waiting for room in the ring. */
  out: Uint8Array = new Uint8Array(0);
  readonly sent = new Map<number, Sent>();
  readonly txIds: number[] = [];
  /** Absolute paths it asked to watch (their first event echoes them, readable or not). */
  readonly watched = new Set<string>();
  private nextReqId = 0x4000_0000;
  private readonly hdr = new Uint8Array(XSD_SOCKMSG_SIZE);
  private hdrUsed = 0;
  private body: Uint8Array | null = null;
  private bodyUsed = 0;

  constructor(host: Host, kind: 'pv' | 'hvm') {
    this.dom = host.createDomain({ kind, memoryKiB: 256 });
    this.ctx = host.context(this.dom.domid);
    this.home = `/local/domain/${this.dom.domid}`;
    const { storeFrame, storePort } = this.ctx.start;
    this.port = storePort;
    this.xenPort = this.dom.xen.evtchn.ports[storePort]!.remotePort;
    if (kind === 'pv') {
      this.ring = XENSTORE_RING_VA;
      const rc = this.ctx.hypercall(
        __HYPERVISOR_update_va_mapping,
        this.ring,
        storeFrame * PAGE + _PAGE_PRESENT + _PAGE_RW,
        0,
      );
      assert.equal(rc, 0, 'the attacker maps its ring');
    } else this.ring = storeFrame * PAGE;
  }

  get domid(): number {
    return this.dom.domid;
  }

  load(off: number): number {
    return this.ctx.mem.load32(this.ring + off);
  }

  store(off: number, v: number): void {
    this.ctx.mem.store32(this.ring + off, v >>> 0);
  }

  newReqId(): number {
    return this.nextReqId++;
  }

  /** A raw event_channel_op of the attacker. */
  evtchnOp(
    cmd: number,
    def: StructDef,
    value: Record<string, number>,
  ): { rc: number; out: Record<string, number> } {
    this.ctx.mem.write(XS_ARG_VA, encodeStruct(def, value));
    const rc = this.ctx.hypercall(__HYPERVISOR_event_channel_op, cmd, XS_ARG_VA);
    return { rc, out: decodeStruct(def, this.ctx.mem.read(XS_ARG_VA, def.size)) as Record<string, number> };
  }

  /** Writes what fits of the queued request bytes as a producer does (data, then req_prod). */
  produce(): void {
    for (;;) {
      if (this.out.length === 0) return;
      const cons = this.load(XS_RING_REQ_CONS);
      const prod = this.load(XS_RING_REQ_PROD);
      if (!ringIndexesValid(cons, prod)) return;
      const room = XENSTORE_RING_SIZE - ((prod - cons) >>> 0);
      if (room === 0) return;
      const n = Math.min(room, this.out.length, XENSTORE_RING_SIZE - maskXenstoreIdx(prod));
      this.ctx.mem.write(this.ring + XS_RING_REQ + maskXenstoreIdx(prod), this.out.subarray(0, n));
      this.store(XS_RING_REQ_PROD, prod + n);
      this.out = this.out.subarray(n);
    }
  }

  queue(bytes: Uint8Array): void {
    // A guest whose ring never drains stops queueing (xenbus would block).
    if (this.out.length > 16 * XENSTORE_RING_SIZE) return;
    this.out = concatBytes(this.out, bytes);
  }

  /**
   * Reads the reply ring as a consumer does and hands each whole message to
   * `check`; returns whether the ring was full (xenstored may wait for room).
   */
  consume(check: (type: number, reqId: number, txId: number, payload: Uint8Array) => void): boolean {
    let wasFull = false;
    for (;;) {
      const cons = this.load(XS_RING_RSP_CONS);
      const prod = this.load(XS_RING_RSP_PROD);
      // xenstored only moves rsp_prod: the indexes stay valid unless the attacker broke them.
      assert.ok(ringIndexesValid(cons, prod), `d${this.domid}: xenstored left reply indexes ${cons}/${prod}`);
      const avail = (prod - cons) >>> 0;
      if (avail === XENSTORE_RING_SIZE) wasFull = true;
      if (avail === 0) return wasFull;
      const want = this.body === null ? XSD_SOCKMSG_SIZE - this.hdrUsed : this.body.length - this.bodyUsed;
      const n = Math.min(avail, want, XENSTORE_RING_SIZE - maskXenstoreIdx(cons));
      if (n > 0) {
        const chunk = this.ctx.mem.read(this.ring + XS_RING_RSP + maskXenstoreIdx(cons), n);
        if (this.body === null) {
          this.hdr.set(chunk, this.hdrUsed);
          this.hdrUsed += n;
        } else {
          this.body.set(chunk, this.bodyUsed);
          this.bodyUsed += n;
        }
        this.store(XS_RING_RSP_CONS, cons + n);
      }
      if (this.body === null && this.hdrUsed === XSD_SOCKMSG_SIZE) {
        const h = decodeHeader(this.hdr);
        assert.ok(h.len <= XENSTORE_PAYLOAD_MAX, `d${this.domid}: xenstored sent a ${h.len}-byte payload`);
        this.body = new Uint8Array(h.len);
        this.bodyUsed = 0;
      }
      if (this.body !== null && this.bodyUsed === this.body.length) {
        const h = decodeHeader(this.hdr);
        const payload = this.body;
        this.body = null;
        this.hdrUsed = 0;
        check(h.type, h.reqId, h.txId, payload);
      }
    }
  }
}

class XsFuzzer {
  readonly host: Host;
  readonly rng: Rng;
  readonly store: XenStore;
  readonly honest: DomainHandle;
  readonly H: string;
  att!: XsAttacker;
  /** Handled requests of the current notify (store.handle counted). */
  handled = 0;
  notifies = 0;
  maxHandled = 0;
  maxNotifyMs = 0;
  replies = 0;
  refused = 0;
  /** Tracked requests answered without an error, by type. */
  readonly served = new Map<number, number>();
  events = 0;
  attackers = 0;
  readonly ignoredWhy = new Map<number, number>();
  readonly dead: number[] = [];
  /** Values the shared board ever had (the attacker may read it). */
  readonly boards = new Set<string>();
  last = '';

  constructor(seed: number) {
    this.rng = new Rng(seed);
    this.host = new Host({ memoryMiB: 32, seed: 5, xenstore: true });
    this.store = this.host.xenstored!.store;
    const orig = this.store.handle.bind(this.store);
    this.store.handle = (conn, msg) => {
      this.handled++;
      orig(conn, msg);
    };
    this.host.createDomain({ kind: 'pv', memoryKiB: 256 }); // dom0
    this.honest = this.host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    this.H = `/local/domain/${this.honest.domid}`;
  }

  /** A new attacker (alternately pv and hvm), allowed to read H/shared and write H/inbox by the toolstack. */
  async newAttacker(): Promise<void> {
    this.attackers++;
    this.att = new XsAttacker(this.host, this.attackers % 2 === 0 ? 'hvm' : 'pv');
    this.att.crude = this.rng.chance(0.4);
    const xs = this.host.xenstore!;
    const h = this.honest.domid;
    const a = this.att.domid;
    const H = this.H;
    await within(
      xs.setPerms(`${H}/shared`, [
        { domid: h, perm: 'n' },
        { domid: a, perm: 'r' },
      ]),
      'toolstack',
    );
    await within(
      xs.setPerms(`${H}/shared/board`, [
        { domid: h, perm: 'n' },
        { domid: a, perm: 'r' },
      ]),
      'toolstack',
    );
    await within(xs.write(`${H}/inbox`, 'letters'), 'toolstack');
    await within(
      xs.setPerms(`${H}/inbox`, [
        { domid: h, perm: 'n' },
        { domid: a, perm: 'w' },
      ]),
      'toolstack',
    );
  }

  /** The attacker goes (destroyed, as a misbehaving guest is); nothing it owned stays in the store. */
  killAttacker(): void {
    const a = this.att.domid;
    this.host.destroyDomain(a);
    this.dead.push(a);
    assert.equal(this.store.domainConnection(a), undefined, 'its connection went');
    const left = this.store.paths().filter((p) => this.store.node(p)!.perms[0]!.id === a);
    assert.deepEqual(left, [], `nodes of the dead d${a} left in the store`);
  }

  // ---- what the attacker writes ----

  path(): string {
    const rng = this.rng;
    const H = this.H;
    const r = rng.int(100);
    const rel = () =>
      rng.pick(['data', 'data/a', 'data/a/b', 'x', 'device/vif/0/state', `data/${rng.int(8)}`, 'a/b/c/d']);
    if (r < 28) return rel();
    if (r < 36) return `${this.att.home}/${rel()}`;
    if (r < 58)
      return rng.pick([
        H,
        `${H}/data`,
        `${H}/data/secret-0`,
        `${H}/data/secret-1`,
        `${H}/data/k${rng.int(6)}`,
        `${H}/domid`,
        `${H}/newnode`,
        `${H}/data/secret-0/sub`,
      ]);
    if (r < 70)
      return rng.pick([
        `${H}/shared`,
        `${H}/shared/board`,
        `${H}/shared/board/x`,
        `${H}/inbox`,
        `${H}/inbox/m${rng.int(5)}`,
        `${H}/inbox/m1/deep`,
      ]);
    if (r < 78)
      return rng.pick([
        '/',
        '/local',
        '/local/domain',
        '/tool/xenstored',
        '/local/domain/0',
        '/local/domain/0/domid',
        '/newtop',
        `/local/domain/${rng.int(64)}`,
        `/local/domain/${rng.pick(this.dead.length > 0 ? this.dead : [9999])}/data`,
      ]);
    if (r < 84) return rng.pick(['@releaseDomain', '@introduceDomain', '@x', '@', '@releaseDomain/x']);
    if (r < 94)
      return rng.pick([
        '',
        '//',
        '/a//b',
        'a/',
        'bad char',
        'ü',
        'a\tb',
        '/local/domain/..',
        'x'.repeat(2100),
        `${H}/${'y'.repeat(3000)}`,
      ]);
    return Array.from({ length: rng.int(40) }, () => String.fromCharCode(rng.range(33, 126))).join('');
  }

  value(): Uint8Array {
    const rng = this.rng;
    const r = rng.int(10);
    if (r < 4) return toBytes(`v${rng.int(1000)}`);
    if (r < 6) return rng.bytes(rng.int(64));
    if (r < 7) return new Uint8Array(0);
    if (r < 9) return toBytes('z'.repeat(rng.pick([1500, 2100, 3000])));
    return rng.bytes(rng.int(4000));
  }

  perms(): string[] {
    const rng = this.rng;
    const a = this.att.domid;
    const h = this.honest.domid;
    const pool = [
      `n${a}`,
      `r${a}`,
      `b${a}`,
      `w${a}`,
      `n${h}`,
      `r${h}`,
      'b0',
      'n0',
      'x1',
      'r',
      'b0x10',
      'n-1',
    ];
    pool.push('r99999', `n${a} `, 'w0777', `n${h}0`);
    return Array.from({ length: rng.range(0, 7) }, () => rng.pick(pool));
  }

  /** One adversarial-but-plausible message; its req_id is tracked unless it is bogus. */
  message(): Uint8Array {
    const rng = this.rng;
    const att = this.att;
    const type = rng.pick([
      ...[XS_READ, XS_READ, XS_READ, XS_WRITE, XS_WRITE, XS_WRITE, XS_WRITE, XS_MKDIR, XS_RM, XS_RM],
      ...[
        XS_DIRECTORY,
        XS_DIRECTORY,
        XS_DIRECTORY_PART,
        XS_GET_PERMS,
        XS_GET_PERMS,
        XS_SET_PERMS,
        XS_SET_PERMS,
      ],
      ...[XS_WATCH, XS_WATCH, XS_WATCH, XS_UNWATCH, XS_TRANSACTION_START, XS_TRANSACTION_START],
      ...[
        XS_TRANSACTION_END,
        XS_TRANSACTION_END,
        XS_GET_DOMAIN_PATH,
        XS_RESET_WATCHES,
        XS_IS_DOMAIN_INTRODUCED,
      ],
      ...[XS_INTRODUCE, XS_RELEASE, XS_RESUME, XS_SET_TARGET, XS_CONTROL, XS_WATCH_EVENT, XS_ERROR],
      ...[20, 23, 24, 25, 26, 27, 0xffff, rng.u32()],
    ]);
    let path = this.path();
    let payload: Uint8Array;
    switch (type) {
      case XS_WRITE:
        payload = concatBytes(nulStrings(path), this.value());
        break;
      case XS_SET_PERMS:
        // Half of them well formed on its own nodes (the owner first, as it must stay).
        if (rng.chance(0.5)) payload = nulStrings(path, ...this.perms());
        else {
          path = rng.pick(['data', 'data/a', 'x', `${this.H}/inbox/m1`, `${this.H}/inbox`, `${this.H}/data`]);
          const owner = `${rng.pick(['n', 'r', 'b'])}${att.domid}`;
          payload = nulStrings(path, owner, ...this.perms().slice(0, rng.int(4)));
        }
        break;
      case XS_WATCH:
      case XS_UNWATCH:
        payload = nulStrings(path, rng.pick(['t', 'tok', '', 'x'.repeat(50)]));
        if (type === XS_WATCH && path.startsWith('/')) att.watched.add(path);
        break;
      case XS_DIRECTORY_PART:
        payload = nulStrings(path, rng.pick(['0', '1', '5', '-1', '999999', 'abc', '']));
        break;
      case XS_TRANSACTION_START:
      case XS_RESET_WATCHES:
        payload = nulStrings('');
        break;
      case XS_TRANSACTION_END:
        payload = nulStrings(rng.pick(['T', 'T', 'F', 'X', '', 'TT']));
        break;
      case XS_GET_DOMAIN_PATH:
      case XS_IS_DOMAIN_INTRODUCED:
        payload = nulStrings(
          rng.pick([String(this.honest.domid), String(att.domid), '0', '-1', 'abc', '9'.repeat(12)]),
        );
        break;
      case XS_READ:
      case XS_MKDIR:
      case XS_RM:
      case XS_DIRECTORY:
      case XS_GET_PERMS:
        payload = nulStrings(path);
        break;
      default:
        payload = rng.chance(0.5) ? nulStrings(path) : rng.bytes(rng.int(200));
    }
    // Unterminated strings, extra nuls, trailing junk.
    const m = rng.int(100);
    if (m < 8 && payload.length > 0) payload = payload.subarray(0, payload.length - 1);
    else if (m < 12) payload = concatBytes(payload, new Uint8Array(rng.range(1, 3)));
    else if (m < 15) payload = concatBytes(payload, rng.bytes(rng.range(1, 20)));
    if (payload.length > XENSTORE_PAYLOAD_MAX) payload = payload.subarray(0, XENSTORE_PAYLOAD_MAX);
    // Bogus request ids (possibly repeated) are not tracked.
    const bogus = rng.chance(0.1);
    const reqId = bogus ? rng.pick([0, 1, 0xffffffff, rng.u32() & 0x3fffffff]) : att.newReqId();
    if (!bogus) att.sent.set(reqId, { type, path });
    const t = type === XS_TRANSACTION_END && rng.chance(0.8) ? 80 : rng.int(100);
    const txId =
      t < 70
        ? 0
        : t < 90 && att.txIds.length > 0
          ? rng.pick(att.txIds)
          : rng.pick([rng.u32(), 1, 2, 0xffffffff]);
    return encodeMessage({ type, reqId, txId, payload });
  }

  /** Whether a request on `path` (absolute) must be refused: the honest domain's, dom0's, the tree's frame. */
  forbidden(type: number, path: string): boolean {
    const H = this.H;
    const under = (p: string) => path === p || path.startsWith(`${p}/`);
    const frame =
      ['/', '/local', '/local/domain', '/tool', '/local/domain/0'].includes(path) || under('/local/domain/0');
    if (READS.has(type)) {
      if (path === `${H}/shared` || path === `${H}/shared/board`) return false;
      if (path.startsWith(`${H}/inbox/`)) return false;
      return frame || under(H);
    }
    if (WRITES.has(type)) {
      if (path.startsWith(`${H}/inbox/`)) return false;
      if (path === `${H}/inbox` && type !== XS_SET_PERMS) return false;
      return frame || under(H);
    }
    return false;
  }

  /** Every message xenstored sends the attacker: well formed, no secret, nothing it may not read. */
  checkMessage = (type: number, reqId: number, txId: number, payload: Uint8Array): void => {
    const att = this.att;
    this.replies++;
    assert.ok(
      !contains(payload, SECRET_TAG),
      `${this.last}: a secret of d${this.honest.domid} reached the attacker`,
    );
    if (type === XS_WATCH_EVENT) {
      this.events++;
      assert.equal(reqId, 0, 'watch events carry req_id 0');
      const [path] = splitStrings(payload);
      assert.ok(path !== undefined, 'a watch event names a path');
      // The honest domain's private nodes appear only as the echo of the attacker's own watch.
      if (this.forbidden(XS_READ, path) && path !== '/' && path.startsWith(this.H))
        assert.ok(
          att.watched.has(path),
          `${this.last}: watch event for ${path}, which d${att.domid} may not read`,
        );
      return;
    }
    if (type === XS_ERROR) {
      const nul = payload.indexOf(0);
      assert.equal(nul, payload.length - 1, 'error names are nul-terminated');
      const name = fromBytes(payload.subarray(0, nul));
      assert.ok((XSD_ERRORS as readonly string[]).includes(name), `unknown xenstore error ${name}`);
    }
    const sent = att.sent.get(reqId);
    if (sent === undefined) return;
    att.sent.delete(reqId);
    if (!SERVED.has(sent.type))
      assert.equal(type, XS_ERROR, `${this.last}: request type ${sent.type} answered with type ${type}`);
    else
      assert.ok(type === sent.type || type === XS_ERROR, `${this.last}: type ${sent.type} answered ${type}`);
    if (type !== XS_ERROR) this.served.set(type, (this.served.get(type) ?? 0) + 1);
    if (this.forbidden(sent.type, sent.path)) {
      assert.equal(
        type,
        XS_ERROR,
        `${this.last}: d${att.domid}'s request ${sent.type} on ${sent.path} was served`,
      );
      this.refused++;
    }
    if (type === XS_READ && sent.path === `${this.H}/shared/board` && txId === 0)
      assert.ok(this.boards.has(fromBytes(payload)), `${this.last}: the board read back wrong`);
    if (type === XS_TRANSACTION_START) {
      const id = Number(fromBytes(payload.subarray(0, payload.indexOf(0))));
      att.txIds.push(id);
      if (att.txIds.length > 16) att.txIds.shift();
    }
  };

  /** The store's records outside what the attacker may change (its home, H/inbox). */
  snapshot(): Map<string, XsNode> {
    const out = new Map<string, XsNode>();
    const visit = (p: string) => {
      const n = this.store.node(p);
      if (n === undefined) return;
      out.set(p, n);
      if (p === this.att.home || p === `${this.H}/inbox`) return;
      for (const ch of n.children) visit(p === '/' ? `/${ch}` : `${p}/${ch}`);
    };
    visit('/');
    visit('@releaseDomain');
    visit('@introduceDomain');
    return out;
  }

  /** Nothing the attacker may not write changed; H and /local/domain only in the children it may remove. */
  compare(before: Map<string, XsNode>): void {
    const perms = (n: XsNode) => n.perms.map(permToString).join(',');
    const inbox = `${this.H}/inbox`;
    for (const [p, n] of before) {
      if (p === this.att.home) continue;
      const now = this.store.node(p);
      if (p === inbox) {
        if (now !== undefined) assert.equal(perms(now), perms(n), `${this.last}: ${p}'s permissions changed`);
        continue;
      }
      if (now === n) continue;
      assert.ok(now !== undefined, `${this.last}: d${this.att.domid} removed ${p}`);
      const allowed = p === this.H ? 'inbox' : p === '/local/domain' ? String(this.att.domid) : null;
      assert.ok(allowed !== null, `${this.last}: d${this.att.domid} changed ${p}`);
      assert.deepEqual(now.value, n.value, `${this.last}: ${p}'s value changed`);
      assert.equal(perms(now), perms(n), `${this.last}: ${p}'s permissions changed`);
      assert.deepEqual(
        now.children.filter((c) => c !== allowed),
        n.children.filter((c) => c !== allowed),
        `${this.last}: ${p}'s children changed`,
      );
    }
  }

  /** The attacker's notify, with the checks of bounded work. */
  notify(port = this.att.port): number {
    const att = this.att;
    this.handled = 0;
    const t0 = performance.now();
    att.ctx.mem.write(XS_ARG_VA, encodeStruct(evtchn_send, { port }));
    let rc: number;
    try {
      rc = att.ctx.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, XS_ARG_VA);
    } catch (e) {
      throw new Error(`${this.last}: the notify threw`, { cause: e });
    }
    const ms = performance.now() - t0;
    this.notifies++;
    this.maxNotifyMs = Math.max(this.maxNotifyMs, ms);
    this.maxHandled = Math.max(this.maxHandled, this.handled);
    assert.ok(rc === 0 || XEN_ERRNOS.has(-rc), `${this.last}: notify returned ${rc}`);
    assert.ok(this.handled <= MAX_HANDLED_PER_NOTIFY, `${this.last}: ${this.handled} requests in one notify`);
    this.noErrors();
    const conn = this.store.domainConnection(att.domid);
    if (conn !== undefined)
      assert.ok(
        conn.pendingReplies <= XS_QUOTA.outstanding,
        `${this.last}: ${conn.pendingReplies} replies queued`,
      );
    return rc;
  }

  noErrors(): void {
    if (this.host.hypervisor.internalErrors.length > 0)
      throw new Error(`${this.last}: hypervisor internal error`, {
        cause: this.host.hypervisor.internalErrors[0],
      });
    if (this.host.xenstored!.errors.length > 0)
      throw new Error(`${this.last}: xenstore service error`, { cause: this.host.xenstored!.errors[0] });
  }

  /** One attack: write something into the ring (or play with it), notify, maybe read what came back. */
  attack(step: number): void {
    const rng = this.rng;
    const att = this.att;
    let r = rng.int(100);
    if (!att.crude && r >= 76 && r < 84) r = rng.int(70);
    this.last = `xs step ${step}: attacker d${att.domid} (${att.dom.kind}) action ${r}`;
    if (r < 70) {
      for (let k = rng.range(1, 6); k > 0; k--) att.queue(this.message());
    } else if (r < 76) {
      // Well-framed garbage: random types and ids, short random payloads.
      for (let k = rng.range(1, 4); k > 0; k--) {
        const payload = rng.bytes(rng.int(300));
        const hdr = encodeMessage({
          type: rng.u32(),
          reqId: rng.u32() & 0x3fffffff,
          txId: rng.u32(),
          payload,
        });
        att.queue(hdr);
      }
    } else if (r < 77) {
      // Random bytes: whatever header they make.
      att.queue(rng.bytes(rng.range(1, 300)));
    } else if (r < 80) {
      // A header announcing too much (the connection is dropped), or exactly the most (it waits for it all).
      const len = rng.pick([XENSTORE_PAYLOAD_MAX + 1, 0xffffffff, 0x80000000, XENSTORE_PAYLOAD_MAX]);
      const hdr = encodeMessage({
        type: XS_WRITE,
        reqId: att.newReqId(),
        txId: 0,
        payload: new Uint8Array(0),
      });
      new DataView(hdr.buffer).setUint32(12, len, true);
      att.queue(hdr);
      if (len === XENSTORE_PAYLOAD_MAX) att.queue(concatBytes(nulStrings('data/big'), rng.bytes(len - 9)));
    } else if (r < 84) {
      this.indexGames();
    } else if (r < 86) {
      // The fields after the indexes are the guest's to scribble on too.
      att.store(rng.pick([XS_RING_SERVER_FEATURES, XS_RING_CONNECTION, XS_RING_ERROR]), rng.u32());
    } else if (r < 92) {
      this.portGames();
    }
    att.produce();
    for (let k = r >= 95 ? rng.range(2, 5) : 1; k > 0; k--) this.notify();
    if (!att.broken && rng.chance(0.85)) {
      const full = att.consume(this.checkMessage);
      // A reader that freed a full ring tells xenstored.
      if (full) this.notify();
    }
  }

  /** Ring-index attacks: far ahead, behind, wrapping, rewound, and the reply side. */
  indexGames(): void {
    const rng = this.rng;
    const att = this.att;
    const cons = att.load(XS_RING_REQ_CONS);
    const prod = att.load(XS_RING_REQ_PROD);
    switch (rng.int(7)) {
      case 0:
        // req_prod far ahead of req_cons.
        att.store(
          XS_RING_REQ_PROD,
          cons + rng.pick([XENSTORE_RING_SIZE + 1, 0x8000_0000, 0xffff_ffff, rng.u32()]),
        );
        break;
      case 1:
        // req_cons ahead of req_prod.
        att.store(XS_RING_REQ_CONS, prod + rng.range(1, 5000));
        break;
      case 2:
        // Rewound: xenstored reads old bytes again.
        att.store(XS_RING_REQ_CONS, prod - rng.range(1, XENSTORE_RING_SIZE));
        break;
      case 3:
        // Both moved near the 2^32 wrap (valid: an empty ring).
        if (cons === prod) {
          const v = 0x1_0000_0000 - rng.range(1, 3 * XENSTORE_RING_SIZE);
          att.store(XS_RING_REQ_CONS, v);
          att.store(XS_RING_REQ_PROD, v);
        }
        break;
      case 4: {
        // The reply side: rsp_cons past rsp_prod, or so far back the ring looks full.
        const rp = att.load(XS_RING_RSP_PROD);
        att.store(XS_RING_RSP_CONS, rng.chance(0.5) ? rp + rng.range(1, 5000) : rp - XENSTORE_RING_SIZE);
        att.broken = true;
        break;
      }
      case 5:
        // The guest rewrites xenstored's own index.
        att.store(XS_RING_RSP_PROD, rng.u32());
        att.broken = true;
        break;
      default:
        // Random bytes straight into the request ring, then req_prod moved over them.
        att.ctx.mem.write(att.ring + XS_RING_REQ, rng.bytes(XENSTORE_RING_SIZE));
        att.store(XS_RING_REQ_PROD, cons + rng.int(XENSTORE_RING_SIZE + 1));
    }
  }

  /** Its store port: closed, bound again, notified the wrong way; the Xen-attached end poked at. */
  portGames(): void {
    const rng = this.rng;
    const att = this.att;
    switch (rng.int(6)) {
      case 0:
        if (att.port !== 0) {
          assert.equal(att.evtchnOp(EVTCHNOP_close, evtchn_close, { port: att.port }).rc, 0);
          att.port = 0;
        }
        break;
      case 1:
        if (att.port === 0) {
          const r = att.evtchnOp(EVTCHNOP_bind_interdomain, evtchn_bind_interdomain, {
            remote_dom: DOMID_SELF,
            remote_port: att.xenPort,
          });
          assert.equal(r.rc, 0, 'the store port binds again to the Xen-attached port');
          att.port = r.out.local_port!;
        }
        break;
      case 2:
        // A guest cannot send on, close or re-bind the Xen-attached port (event_channel.c).
        assert.equal(this.notify(att.xenPort), -XEN_EINVAL);
        assert.equal(att.evtchnOp(EVTCHNOP_close, evtchn_close, { port: att.xenPort }).rc, -XEN_EINVAL);
        assert.equal(
          att.evtchnOp(EVTCHNOP_bind_vcpu, evtchn_bind_vcpu, { port: att.xenPort, vcpu: 0 }).rc,
          -XEN_EINVAL,
        );
        break;
      case 3:
        this.notify(rng.pick([0, 3, 4095, rng.u32()]));
        break;
      case 4:
        // EVTCHNOP_reset of itself: its store port closes, the Xen-attached one stays.
        assert.equal(att.evtchnOp(EVTCHNOP_reset, evtchn_reset, { dom: DOMID_SELF }).rc, 0);
        att.port = 0;
        assert.equal(att.dom.xen.evtchn.ports[att.xenPort]!.state, ECS_UNBOUND);
        break;
      default:
        assert.equal(att.evtchnOp(EVTCHNOP_unmask, evtchn_unmask, { port: att.xenPort }).rc, 0);
    }
  }

  /** The ring's error field if the service dropped the attacker (XENSTORE_ERROR_*; the attacker may have scribbled on it), else null. */
  dropped(): number | null {
    const conn = this.store.domainConnection(this.att.domid);
    if (conn === undefined || !conn.ignored) return null;
    return this.host.hypervisor.machine.words.load32(this.ringMachineAddr() + XS_RING_ERROR);
  }

  ringMachineAddr(): number {
    const d = this.att.dom;
    const f = this.att.ctx.start.storeFrame;
    return (d.kind === 'pv' ? f : d.xen.p2m!.get(f)!.mfn) * PAGE;
  }
}

/** The honest domain: the real client, a model of its keys, its watch on them. */
class Honest {
  readonly xs: XsRingClient;
  readonly keys = new Map<string, string>();
  readonly secrets = new Map<string, string>();
  /** Watch events on its 'data' watch, by path. */
  readonly events = new Map<string, number>();
  board = '';
  ops = 0;

  constructor(ctx: GuestContext) {
    this.xs = XsRingClient.open(ctx);
  }

  async setup(fz: XsFuzzer): Promise<void> {
    const xs = this.xs;
    for (let i = 0; i < 3; i++) {
      const v = `${SECRET_TAG}${fz.rng.u32().toString(16)}${fz.rng.u32().toString(16)}`;
      this.secrets.set(`data/secret-${i}`, v);
      await within(xs.write(`data/secret-${i}`, v), 'honest write');
    }
    await within(
      xs.watch('data', 'h', (p) => this.events.set(p, (this.events.get(p) ?? 0) + 1)),
      'honest watch',
    );
    await this.setBoard('notice-0', fz);
  }

  async setBoard(v: string, fz: XsFuzzer): Promise<void> {
    fz.boards.add(v);
    await within(this.xs.write('shared/board', v), 'honest board');
    this.board = v;
  }

  /** One operation, checked against the model. */
  async op(fz: XsFuzzer): Promise<void> {
    const rng = fz.rng;
    const xs = this.xs;
    const key = `data/k${rng.int(6)}`;
    const what = `honest op ${this.ops} (${fz.last})`;
    this.ops++;
    const r = rng.int(100);
    if (r < 30) {
      const v = `val-${rng.u32().toString(36)}`;
      const before = this.events.get(key) ?? 0;
      await within(xs.write(key, v), what);
      this.keys.set(key, v);
      // xenstored fires the watch before it acks the write.
      assert.ok((this.events.get(key) ?? 0) > before, `${what}: its watch fired for ${key}`);
    } else if (r < 55) {
      const want = this.keys.get(key);
      if (want === undefined)
        await assert.rejects(
          within(xs.read(key), what),
          (e: unknown) => e instanceof XsError && e.code === 'ENOENT',
        );
      else assert.equal(await within(xs.read(key), what), want, `${what}: read ${key}`);
    } else if (r < 65) {
      await within(xs.rm(key), what);
      this.keys.delete(key);
    } else if (r < 75) {
      const names = (await within(xs.directory('data'), what)).sort();
      const want = [...this.keys.keys(), ...this.secrets.keys()].map((k) => k.slice(5)).sort();
      assert.deepEqual(names, want, `${what}: directory data`);
    } else if (r < 83) {
      const a = `data/k${rng.int(6)}`;
      const v = `tx-${rng.u32().toString(36)}`;
      await within(
        xs.transaction(async (tx) => {
          await tx.write(key, v);
          await tx.write(a, v);
        }),
        what,
      );
      this.keys.set(key, v);
      this.keys.set(a, v);
      assert.equal(await within(xs.read(a), what), v);
    } else if (r < 93) {
      for (const [k, v] of this.secrets)
        assert.equal(await within(xs.read(k), what), v, `${what}: ${k} intact`);
      assert.deepEqual(await within(xs.getPerms('data/secret-0'), what), [
        { domid: fz.honest.domid, perm: 'n' },
      ]);
      assert.equal(await within(xs.read('shared/board'), what), this.board);
    } else await this.setBoard(`notice-${rng.u32().toString(36)}`, fz);
    // Its watch saw nothing but its own data.
    for (const p of this.events.keys())
      assert.ok(p === 'data' || p.startsWith('data/'), `${what}: event ${p}`);
  }
}

describe('fuzz: a malicious xenstore client never harms the service or other domains', () => {
  it(`${XS_COUNT} attacks on its own ring, seed ${SEED}: no throw, bounded work per notify, the honest domain unaffected, no access beyond its permissions`, async () => {
    const t0 = performance.now();
    const fz = new XsFuzzer(SEED ^ 0x5a5a_5a5a);
    const honest = new Honest(fz.host.context(fz.honest.domid));
    await honest.setup(fz);
    await fz.newAttacker();
    console.log(`xenstore fuzz: seed ${SEED} (GNTTAB_FUZZ_SEED), ${XS_COUNT} attacks (GNTTAB_FUZZ_XS_COUNT)`);
    try {
      for (let step = 0; step < XS_COUNT; step++) {
        const why = fz.dropped();
        if (why !== null || fz.att.broken || fz.rng.chance(0.004)) {
          if (why !== null) fz.ignoredWhy.set(why, (fz.ignoredWhy.get(why) ?? 0) + 1);
          fz.killAttacker();
          await fz.newAttacker();
        }
        const before = fz.snapshot();
        fz.attack(step);
        fz.compare(before);
        if (step % 5 === 0) await honest.op(fz);
        if (step % 200 === 0) {
          const bad = fz.host.checkInvariants({ statusBits: false });
          assert.deepEqual(bad, [], `${fz.last}: invariants`);
        }
      }
      // The end: the honest domain still does everything; the invariants hold.
      for (let i = 0; i < 20; i++) await honest.op(fz);
      assert.equal(
        fz.store.domainConnection(fz.honest.domid)!.ignored,
        false,
        'the honest domain was never dropped',
      );
      assert.deepEqual(fz.host.checkInvariants({ statusBits: false }), []);
      fz.killAttacker();
      assert.deepEqual(fz.host.checkInvariants({ statusBits: false }), []);
    } catch (e) {
      console.log(`xenstore fuzz: FAILED with seed ${SEED}; rerun with GNTTAB_FUZZ_SEED=${SEED}`);
      throw e;
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `xenstore fuzz: ${XS_COUNT} attacks, ${fz.notifies} notifies in ${secs.toFixed(1)} s ` +
        `(${Math.round(fz.notifies / secs)} notifies/s); ${fz.replies} messages back checked, ` +
        `${fz.refused} forbidden requests refused, ${fz.events} watch events; ${honest.ops} honest ops; ` +
        `served ${JSON.stringify([...fz.served].sort((a, b) => a[0] - b[0]))}; ${fz.attackers} attackers ` +
        `(dropped for ${JSON.stringify([...fz.ignoredWhy])}); at most ${fz.maxHandled} requests ` +
        `and ${fz.maxNotifyMs.toFixed(1)} ms per notify`,
    );
    if (XS_COUNT >= 5000) {
      assert.ok(fz.refused > 100, 'few forbidden requests reached xenstored');
      assert.ok(fz.replies > 1000, 'few replies came back');
      assert.ok(fz.attackers > 10, 'the attacker was rarely dropped and replaced');
      for (const t of [
        XS_READ,
        XS_WRITE,
        XS_WATCH,
        XS_TRANSACTION_START,
        XS_TRANSACTION_END,
        XS_SET_PERMS,
        XS_RM,
      ])
        assert.ok((fz.served.get(t) ?? 0) > 10, `few requests of type ${t} served`);
      assert.ok(fz.events > 100, 'few watch events reached the attacker');
    }
  });
});

// ---- regressions and focused cases -------------------------------------------------------------------

/** An event_channel_op with its struct at `addr` of the domain's RAM. */
function evop(
  dom: DomainHandle,
  cmd: number,
  def: StructDef,
  value: Record<string, number>,
  addr = ARENA_VA,
) {
  dom.memory.write(addr, encodeStruct(def, value));
  return dom.hypercall(__HYPERVISOR_event_channel_op, cmd, addr);
}

/** Lets every promise job run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('fuzz-events regressions', () => {
  it('EVTCHNOP_unmask of the Xen-attached xenstore port leaves its mask set and raises nothing (xen/event.h evtchn_usable)', () => {
    // Found by the event-channel fuzzer (seed 1592590386, step 2348): the guest
    // set the mask and pending bits of the service's Xen-attached port in its own
    // shared-info page and unmasked it; the model cleared the mask and raised the
    // selector and upcall. Xen's evtchn_port_unmask acts only on evtchn_usable()
    // channels, and a channel with a Xen consumer is not usable by the guest.
    const host = new Host({ memoryMiB: 16, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    for (const kind of ['pv', 'hvm'] as const) {
      const d = host.createDomain({ kind, memoryKiB: 256 });
      const storePort = host.context(d.domid).start.storePort;
      const xenPort = d.xen.evtchn.ports[storePort]!.remotePort;
      assert.ok(d.xen.evtchn.ports[xenPort]!.xenConsumer !== null);
      const w = host.hypervisor.machine.words;
      const si = d.xen.sharedInfoMfn * PAGE;
      const bit = (base: number, port: number) => (w.load16(si + base + (port >>> 4) * 2) >> (port & 15)) & 1;
      for (const port of [xenPort, storePort]) {
        w.or16(si + SHARED_INFO_EVTCHN_MASK + (port >>> 4) * 2, 1 << (port & 15));
        w.or16(si + SHARED_INFO_EVTCHN_PENDING + (port >>> 4) * 2, 1 << (port & 15));
      }
      w.store32(si + VCPU_INFO_PENDING_SEL, 0);
      w.and16(si + VCPU_INFO_UPCALL_PENDING, 0xff00);
      assert.equal(evop(d, EVTCHNOP_unmask, evtchn_unmask, { port: xenPort }), 0, 'a valid port: 0');
      assert.equal(bit(SHARED_INFO_EVTCHN_MASK, xenPort), 1, 'the mask stays');
      assert.equal(w.load32(si + VCPU_INFO_PENDING_SEL), 0, 'no selector bit');
      assert.equal(w.load16(si + VCPU_INFO_UPCALL_PENDING) & 0xff, 0, 'no upcall');
      // The guest's own end of the same channel is unmasked and raised as usual (event_2l.c).
      assert.equal(evop(d, EVTCHNOP_unmask, evtchn_unmask, { port: storePort }), 0);
      assert.equal(bit(SHARED_INFO_EVTCHN_MASK, storePort), 0);
      assert.equal(w.load32(si + VCPU_INFO_PENDING_SEL), 1, 'selector bit of word 0');
      assert.equal(w.load16(si + VCPU_INFO_UPCALL_PENDING) & 0xff, 1, 'upcall pending');
      assert.deepEqual(host.checkInvariants(), []);
    }
  });

  it('a PV guest that gives its ring page away (GNTTABOP_transfer) is dropped; xenstored never writes into the new owner (§10)', async () => {
    const host = new Host({ memoryMiB: 16, xenstore: true });
    const d0 = host.createDomain({ kind: 'pv', memoryKiB: 256, maxMemoryKiB: 512 });
    const g = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const ctx = host.context(g.domid);
    const xs = XsRingClient.open(ctx);
    let fired = 0;
    await within(
      xs.watch('data', 'w', () => {
        fired++;
      }),
      'watch',
    );
    assert.equal(fired, 1);
    const ringMfn = ctx.start.storeFrame;
    // The guest drops its mapping of the ring and transfers the page to dom0, which accepts it in ref 5.
    assert.equal(g.hypercall(__HYPERVISOR_update_va_mapping, XENSTORE_RING_VA, 0, 0), 0);
    const e = d0.xen.gt.shaAddr(5);
    host.hypervisor.machine.view.setUint16(e + 2, g.domid, true);
    host.hypervisor.machine.view.setUint32(e + 4, 0, true);
    host.hypervisor.machine.words.store16(e, GTF_accept_transfer);
    g.memory.write(ARENA_VA, encodeStruct(gnttab_transfer, { mfn: ringMfn, domid: d0.domid, ref: 5 }));
    assert.equal(g.hypercall(__HYPERVISOR_grant_table_op, GNTTABOP_transfer, ARENA_VA, 1), 0);
    assert.equal(decodeStruct(gnttab_transfer, g.memory.read(ARENA_VA, gnttab_transfer.size)).status, 0);
    assert.equal(host.hypervisor.frames.owner[ringMfn], d0.domid, 'the page is dom0s now');
    const page = () => host.hypervisor.machine.u8.slice(ringMfn * PAGE, (ringMfn + 1) * PAGE);
    const before = page();
    // A watch event for g (the toolstack writes under its watch), and g notifying: nothing is written.
    await within(host.xenstore!.write(`/local/domain/${g.domid}/data/x`, '1'), 'toolstack write');
    assert.equal(evop(g, EVTCHNOP_send, evtchn_send, { port: ctx.start.storePort }), 0);
    await settle();
    assert.deepEqual(page(), before, 'xenstored wrote into a page that is no longer the guest ring');
    assert.equal(host.xenstored!.store.domainConnection(g.domid)!.ignored, true, 'the connection is dropped');
    assert.deepEqual(host.hypervisor.internalErrors, []);
    assert.deepEqual(host.checkInvariants(), []);
    host.destroyDomain(g.domid);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('an HVM guest that places its shared-info page over the ring GFN frees the ring; xenstored never touches the freed frame', async () => {
    const host = new Host({ memoryMiB: 16, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const g = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const ctx = host.context(g.domid);
    const xs = XsRingClient.open(ctx);
    await within(
      xs.watch('data', 'w', () => {}),
      'watch',
    );
    const ringGfn = ctx.start.storeFrame;
    const ringMfn = g.xen.p2m!.get(ringGfn)!.mfn;
    g.memory.write(
      ARENA_VA,
      encodeStruct(xen_add_to_physmap, {
        domid: DOMID_SELF,
        space: XENMAPSPACE_shared_info,
        idx: 0,
        gpfn: ringGfn,
      }),
    );
    assert.equal(g.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, ARENA_VA), 0);
    assert.equal(host.hypervisor.frames.owner[ringMfn], OWNER_NONE, 'the ring page was freed');
    const page = () => host.hypervisor.machine.u8.slice(ringMfn * PAGE, (ringMfn + 1) * PAGE);
    const before = page();
    await within(host.xenstore!.write(`/local/domain/${g.domid}/data/x`, '1'), 'toolstack write');
    assert.equal(evop(g, EVTCHNOP_send, evtchn_send, { port: ctx.start.storePort }), 0);
    await settle();
    assert.deepEqual(page(), before, 'xenstored wrote into a freed frame');
    assert.equal(host.xenstored!.store.domainConnection(g.domid)!.ignored, true);
    // The frame goes to the next domain created; its RAM stays its own.
    const other = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    assert.equal(evop(g, EVTCHNOP_send, evtchn_send, { port: ctx.start.storePort }), 0);
    if (host.hypervisor.frames.owner[ringMfn] === other.domid)
      assert.ok(
        page().every((b) => b === 0),
        'the new owner gets its frame zeroed and untouched',
      );
    assert.deepEqual(host.hypervisor.internalErrors, []);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
