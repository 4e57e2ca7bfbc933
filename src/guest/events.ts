// The guest's event-channel client (2-level ABI), in the manner of Linux's
// drivers/xen/events (events_base.c, events_2l.c): it maps the shared-info
// page, makes the EVTCHNOP_ hypercalls, and dispatches pending ports to
// handlers. All state hangs off one object built from a GuestContext; every
// access to a word Xen also writes is an atomic through ctx.mem.
//
// Delivery, as Linux's upcall handler does it: clear evtchn_upcall_pending,
// then take the vCPU's selector (an exchange with 0), then for each selected
// word the pending-and-unmasked ports, clearing each port's pending bit before
// running its handler. Ports start masked (Linux masks every port at boot);
// bind() unmasks through EVTCHNOP_unmask, which re-raises a port that became
// pending meanwhile, so nothing sent before bind() is lost.
//
// This client serves one vCPU (vCPU 0 unless told otherwise): ports Xen
// notifies on another vCPU raise that vCPU's selector, not ours.

import { DOMID_SELF } from '../abi/domid.ts';
import {
  BITS_PER_EVTCHN_WORD,
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_send,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_pirq,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_send,
  evtchn_status,
  evtchn_status_irq,
  evtchn_unmask,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  VCPU_INFO_PENDING_SEL,
  VCPU_INFO_UPCALL_PENDING,
  vcpuInfoOffset,
  XEN_LEGACY_MAX_VCPUS,
} from '../abi/event-channel.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
} from '../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import { xen_add_to_physmap } from '../abi/memory-op.ts';
import { decodeStruct, encodeStruct, type StructDef, type StructValue } from '../abi/struct.ts';
import { abortable, isAborted } from './abort.ts';
import type { GuestContext } from './context.ts';
import { hypercallArgArea, SHARED_INFO_VA } from './layout.ts';

export type EventHandler = (port: number) => void;

export interface EventChannelOptions {
  /** The vCPU whose vcpu_info this client serves (default 0). */
  vcpu?: number;
  /** Where hypercall argument structs go (default: the last page of the hypercall argument area). */
  argAddr?: number;
  /** Where the shared-info page is mapped (default SHARED_INFO_VA). */
  sharedInfoVa?: number;
}

/** EVTCHNOP_status as the guest reads it. */
export interface EventChannelStatus {
  /** 0, or the negative errno of the hypercall (the other fields are then 0). */
  rc: number;
  /** EVTCHNSTAT_* */
  status: number;
  vcpu: number;
  /** unbound: the domain that may bind; interdomain: the peer domain. */
  remoteDom?: number;
  /** interdomain: the peer's port. */
  remotePort?: number;
  /** virq / pirq: the IRQ. */
  irq?: number;
}

/** Error thrown when the shared-info page cannot be mapped. */
export class EventChannelError extends Error {
  readonly rc: number;
  constructor(message: string, rc: number) {
    super(message);
    this.name = 'EventChannelError';
    this.rc = rc;
  }
}

/** Rounds of the upcall loop in one poll before it leaves the rest to the next. */
const MAX_ROUNDS = 64;
const WORDS = EVTCHN_2L_NR_CHANNELS / BITS_PER_EVTCHN_WORD;

/**
 * A domain's event-channel client (2-level ABI), as Linux's events_base.c
 * and events_2l.c: maps the shared-info page, makes the EVTCHNOP_ hypercalls
 * (each returns the port or a negative errno, as the hypercall does) and
 * runs the handler bound to each port that fires (poll, wait). One per
 * domain; share it, and its EventWaiter, with everything else the domain runs.
 *
 * ```ts
 * const ev = EventChannels.open(ctx);
 * const port = ev.allocUnbound(peer);
 * ev.bind(port, (p) => console.log('event on', p));
 * await ev.wait(Infinity, signal);
 * ```
 */
export class EventChannels {
  readonly ctx: GuestContext;
  readonly vcpu: number;
  /** Where the shared-info page is mapped in the guest. */
  readonly sharedInfo: number;
  /** Pending, unmasked ports found with no handler bound (cleared and dropped). */
  stray = 0;
  private readonly argAddr: number;
  private readonly handlers = new Map<number, EventHandler>();

  /**
   * Maps the shared-info page (PV: update_va_mapping of start.sharedInfoFrame;
   * HVM: add_to_physmap XENMAPSPACE_shared_info idx 0) and masks every port.
   */
  static open(ctx: GuestContext, options: EventChannelOptions = {}): EventChannels {
    return new EventChannels(ctx, options);
  }

  private constructor(ctx: GuestContext, o: EventChannelOptions) {
    this.ctx = ctx;
    this.vcpu = o.vcpu ?? 0;
    if (!Number.isInteger(this.vcpu) || this.vcpu < 0 || this.vcpu >= XEN_LEGACY_MAX_VCPUS)
      throw new RangeError(`vcpu must be 0..${XEN_LEGACY_MAX_VCPUS - 1} (a vcpu_info in shared_info)`);
    this.argAddr = o.argAddr ?? hypercallArgArea(ctx.start.ramBytes) + 3 * XEN_PAGE_SIZE;
    this.sharedInfo = o.sharedInfoVa ?? SHARED_INFO_VA;
    this.mapSharedInfo();
    // No port is live yet (Linux's xen_init_IRQ masks them all).
    for (let a = 0; a < EVTCHN_2L_NR_CHANNELS / 8; a += 4)
      this.ctx.mem.store32(this.sharedInfo + SHARED_INFO_EVTCHN_MASK + a, 0xffffffff);
  }

  private mapSharedInfo(): void {
    const { start } = this.ctx;
    let rc: number;
    if (start.kind === 'pv') {
      if (!(start.sharedInfoFrame >= 0))
        throw new EventChannelError(`d${start.domid}: no shared-info frame in start info`, 0);
      rc = this.ctx.hypercall(
        __HYPERVISOR_update_va_mapping,
        this.sharedInfo,
        start.sharedInfoFrame * XEN_PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW),
        0,
      );
    } else {
      this.ctx.mem.write(
        this.argAddr,
        encodeStruct(xen_add_to_physmap, {
          domid: DOMID_SELF,
          space: XENMAPSPACE_shared_info,
          idx: 0,
          gpfn: this.sharedInfo / XEN_PAGE_SIZE,
        }),
      );
      rc = this.ctx.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, this.argAddr);
    }
    if (rc !== 0) throw new EventChannelError(`d${start.domid}: cannot map the shared-info page (${rc})`, rc);
  }

  // ---- hypercalls ---------------------------------------------------------------------------------

  private op<F extends string>(
    cmd: number,
    def: StructDef<F>,
    value: Partial<StructValue<F>>,
  ): { rc: number; out: StructValue<F> } {
    this.ctx.mem.write(this.argAddr, encodeStruct(def, value));
    const rc = this.ctx.hypercall(__HYPERVISOR_event_channel_op, cmd, this.argAddr);
    return { rc, out: decodeStruct(def, this.ctx.mem.read(this.argAddr, def.size)) };
  }

  /** A fresh port of ours that `remoteDom` may bind (DOMID_SELF: ourselves); the port or -errno. */
  allocUnbound(remoteDom: number): number {
    const r = this.op(EVTCHNOP_alloc_unbound, evtchn_alloc_unbound, {
      dom: DOMID_SELF,
      remote_dom: remoteDom,
    });
    return r.rc < 0 ? r.rc : r.out.port;
  }

  /** Connects a fresh port of ours to <remoteDom, remotePort>; the local port or -errno. */
  bindInterdomain(remoteDom: number, remotePort: number): number {
    const r = this.op(EVTCHNOP_bind_interdomain, evtchn_bind_interdomain, {
      remote_dom: remoteDom,
      remote_port: remotePort,
    });
    return r.rc < 0 ? r.rc : r.out.local_port;
  }

  /** EVTCHNOP_bind_virq: a fresh port of ours for VIRQ `virq` on `vcpu`; the port or -errno. */
  bindVirq(virq: number, vcpu = 0): number {
    const r = this.op(EVTCHNOP_bind_virq, evtchn_bind_virq, { virq, vcpu });
    return r.rc < 0 ? r.rc : r.out.port;
  }

  /** Notifies the other end of `port`: 0 or -errno. */
  send(port: number): number {
    return this.op(EVTCHNOP_send, evtchn_send, { port }).rc;
  }

  /** Unbinds any handler, masks the port and closes it: 0 or -errno. */
  close(port: number): number {
    this.handlers.delete(port);
    if (this.validPort(port)) this.mask(port);
    return this.op(EVTCHNOP_close, evtchn_close, { port }).rc;
  }

  /** EVTCHNOP_status of <dom, port> (dom: DOMID_SELF by default). */
  status(port: number, dom: number = DOMID_SELF): EventChannelStatus {
    const r = this.op(EVTCHNOP_status, evtchn_status, { dom, port });
    if (r.rc < 0) return { rc: r.rc, status: 0, vcpu: 0 };
    const s: EventChannelStatus = { rc: 0, status: r.out.status, vcpu: r.out.vcpu };
    if (s.status === EVTCHNSTAT_unbound || s.status === EVTCHNSTAT_interdomain) s.remoteDom = r.out.u_dom;
    if (s.status === EVTCHNSTAT_interdomain) s.remotePort = r.out.u_port;
    if (s.status === EVTCHNSTAT_virq || s.status === EVTCHNSTAT_pirq)
      s.irq = decodeStruct(evtchn_status_irq, this.ctx.mem.read(this.argAddr, evtchn_status_irq.size)).u_irq;
    return s;
  }

  /** EVTCHNOP_unmask: Xen clears the mask bit and re-raises the port if it is pending. */
  unmask(port: number): number {
    return this.op(EVTCHNOP_unmask, evtchn_unmask, { port }).rc;
  }

  // ---- handlers and the shared-info bits -----------------------------------------------------------

  /** Runs `handler` for events on `port` (from poll/wait), and unmasks the port: 0 or -errno. */
  bind(port: number, handler: EventHandler): number {
    if (!this.validPort(port)) return this.unmask(port);
    this.handlers.set(port, handler);
    const rc = this.unmask(port);
    if (rc !== 0) this.handlers.delete(port);
    return rc;
  }

  /** Masks the port and forgets its handler (the port stays open). */
  unbind(port: number): void {
    this.handlers.delete(port);
    if (this.validPort(port)) this.mask(port);
  }

  /** Sets the port's mask bit: events still mark it pending, but raise nothing. */
  mask(port: number): void {
    this.bitOp(SHARED_INFO_EVTCHN_MASK, port, true);
  }

  isMasked(port: number): boolean {
    return this.testBit(SHARED_INFO_EVTCHN_MASK, port);
  }

  isPending(port: number): boolean {
    return this.testBit(SHARED_INFO_EVTCHN_PENDING, port);
  }

  /** evtchn_upcall_pending of our vCPU. */
  get upcallPending(): boolean {
    return (this.ctx.mem.load16(this.upcallAddr) & 0xff) !== 0;
  }

  /** Ports with a handler bound. */
  get boundPorts(): number[] {
    return [...this.handlers.keys()].sort((a, b) => a - b);
  }

  /**
   * Delivers pending events, as the upcall handler does: returns how many
   * handlers ran. Masked ports stay pending; unmasked ports with no handler are
   * cleared and counted in `stray`.
   */
  poll(): number {
    const mem = this.ctx.mem;
    let handled = 0;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (!this.upcallPending) break;
      // 1. The master flag, before the selector (it keeps the mask byte beside it).
      mem.and16(this.upcallAddr, 0xff00);
      // 2. The selector: exchanged with 0, one 32-bit half at a time.
      const selAddr = this.vcpuInfo + VCPU_INFO_PENDING_SEL;
      const sel = [this.exchangeZero(selAddr), this.exchangeZero(selAddr + 4)];
      // 3. Each selected word: its pending, unmasked ports, lowest first.
      for (let word = 0; word < WORDS; word++) {
        if (((sel[word >>> 5]! >>> (word & 31)) & 1) === 0) continue;
        for (let half = 0; half < 2; half++) {
          const off = word * 8 + half * 4;
          let bits =
            (mem.load32(this.sharedInfo + SHARED_INFO_EVTCHN_PENDING + off) &
              ~mem.load32(this.sharedInfo + SHARED_INFO_EVTCHN_MASK + off)) >>>
            0;
          while (bits !== 0) {
            const bit = 31 - Math.clz32(bits & -bits);
            bits = (bits & ~(1 << bit)) >>> 0;
            const port = word * BITS_PER_EVTCHN_WORD + half * 32 + bit;
            // The port's pending bit is cleared before its handler runs (Linux acks first).
            this.bitOp(SHARED_INFO_EVTCHN_PENDING, port, false);
            const h = this.handlers.get(port);
            if (h === undefined) {
              this.stray++;
              continue;
            }
            handled++;
            try {
              h(port);
            } catch (err) {
              this.ctx.log(
                `evtchn: handler of port ${port} threw: ${err instanceof Error ? err.message : err}`,
              );
            }
          }
        }
      }
    }
    return handled;
  }

  /**
   * Waits up to `ms` (Infinity: no limit) for events, sleeping on the word that
   * holds evtchn_upcall_pending while it is 0, then delivers them. Returns how
   * many handlers ran (0: timed out). Pending events are delivered at once.
   * If `signal` aborts first, it rejects with the signal's reason.
   */
  async wait(ms: number, signal?: AbortSignal): Promise<number> {
    const clock = this.ctx.clock;
    const deadline = clock.now() + ms;
    for (;;) {
      const n = this.poll();
      if (n > 0) return n;
      if (isAborted(signal)) throw signal?.reason;
      const word = this.ctx.mem.load32(this.upcallAddr);
      if ((word & 0xff) !== 0) continue; // raised since the poll looked
      const left = deadline - clock.now();
      if (!(left > 0)) return 0;
      const r = await this.ctx.wait(this.upcallAddr, word, left, signal);
      if (isAborted(signal)) {
        const late = this.poll();
        if (late > 0) return late;
        throw signal?.reason;
      }
      if (r === 'timed-out') return this.poll();
    }
  }

  // ---- helpers ----------------------------------------------------------------------------------

  private get vcpuInfo(): number {
    return this.sharedInfo + vcpuInfoOffset(this.vcpu);
  }

  /** The Int32 word whose low byte is evtchn_upcall_pending (the next byte is the mask). */
  private get upcallAddr(): number {
    return this.vcpuInfo + VCPU_INFO_UPCALL_PENDING;
  }

  private validPort(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < EVTCHN_2L_NR_CHANNELS;
  }

  /** Atomically reads a 32-bit word and leaves 0 in it (xchg). */
  private exchangeZero(addr: number): number {
    const mem = this.ctx.mem;
    let seen = mem.load32(addr);
    for (;;) {
      if (seen === 0) return 0;
      const found = mem.cmpxchg32(addr, seen, 0);
      if (found === seen) return seen;
      seen = found;
    }
  }

  private testBit(base: number, port: number): boolean {
    if (!this.validPort(port)) return false;
    return (this.ctx.mem.load16(this.sharedInfo + base + (port >>> 4) * 2) & (1 << (port & 15))) !== 0;
  }

  /** Sets or clears the port's bit in the bitmap at `base` (sync_set_bit / sync_clear_bit). */
  private bitOp(base: number, port: number, set: boolean): void {
    const a = this.sharedInfo + base + (port >>> 4) * 2;
    const m = 1 << (port & 15);
    if (set) this.ctx.mem.or16(a, m);
    else this.ctx.mem.and16(a, ~m & 0xffff);
  }
}

/**
 * One waiter for the domain's event channels, shared by everything in the
 * domain that sleeps on events (the role of the evtchn device's read()): at
 * most one EventChannels.wait is in flight, and every sleeper re-checks its
 * own condition whenever it returns. Without it, two sleepers would each run
 * the upcall loop and one could clear the upcall flag for an event whose
 * handler then runs for the other, leaving the first asleep.
 */
export class EventWaiter {
  readonly events: EventChannels;
  private inFlight: Promise<number> | null = null;
  /** Ends the in-flight wait when its last sleeper gave up (aborted). */
  private stop: AbortController | null = null;
  private sleepers = 0;

  constructor(events: EventChannels) {
    this.events = events;
  }

  /**
   * Sleeps (no spinning) until `ready()` holds; handlers run as events are
   * delivered. If `signal` aborts first, it rejects with the signal's reason;
   * the shared wait goes on for the other sleepers, and ends when none is left.
   */
  async until(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    while (!ready()) {
      if (isAborted(signal)) throw signal?.reason;
      let p = this.inFlight;
      if (p === null) {
        const stop = new AbortController();
        // An aborted shared wait answers 0: every sleeper re-checks its own condition.
        p = this.events.wait(Number.POSITIVE_INFINITY, stop.signal).catch(() => 0);
        this.inFlight = p;
        this.stop = stop;
        const mine = p;
        const clear = () => {
          if (this.inFlight === mine) {
            this.inFlight = null;
            this.stop = null;
          }
        };
        p.then(clear, clear);
      }
      const mine = p;
      this.sleepers++;
      try {
        await abortable(p, signal);
      } finally {
        this.sleepers--;
        if (this.sleepers === 0 && this.inFlight === mine) this.stop?.abort();
      }
    }
  }
}
