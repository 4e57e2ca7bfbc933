// libxenvchan (Xen tools/libs/vchan/init.c and io.c): a bidirectional byte
// channel between two domains over one shared control page, two
// single-producer/single-consumer byte rings, one event channel and two
// xenstore keys. Reference: guest-side.md §6 (all of it), §5.5 (the unmap
// notification that tells a side its peer died), §8 item 9.
//
// Memory discipline. Every field of the control page that both sides touch is
// a shared word and goes through GuestMemory's atomics:
// - the four ring indices: load32 / store32, with fence() where io.c has
//   xen_mb / xen_rmb / xen_wmb (JavaScript atomics are sequentially
//   consistent, so a fence is at least as strong as each of them);
// - the u8 fields. There are no 8-bit atomics in the shared-words module, so a
//   u8 is reached through the aligned little-endian u16 that contains it, and
//   only its own 8 bits are ever changed: cli_live/srv_live are the low/high
//   byte of the u16 at 20, cli_notify/srv_notify the low/high byte of the u16
//   at 22. __sync_or_and_fetch(byte, bit) becomes or16(word, bit << shift);
//   __sync_fetch_and_and(byte, ~bit) becomes and16(word, ~(bit << shift)) (the
//   other byte is ANDed with 0xff: unchanged), returning the old word, from
//   which the old byte is shifted out. A plain byte store (cli_live = 1) is a
//   compare-exchange loop on the u16 that replaces only that byte, so a
//   concurrent change of the neighbouring byte by the peer (its live byte, its
//   notify bits) is never lost;
// - the orders (u16) and grants[] (u32): store16/store32 by the server before
//   the page is published, load16/load32 once by the client at setup. Each
//   side then keeps its own copy and never trusts the page's orders again.
// Ring data are plain bytes, written before the producer index that publishes
// them and read after the index that covers them was loaded.
//
// Indices are free-running u32 values (`>>> 0` after every addition or
// subtraction); positions are index & (size − 1), so no index a peer writes
// can make a copy leave the ring. A peer whose indices claim more data (or
// space) than the ring holds is clamped to 0: the ring locks up instead of
// being trusted (raw_get_data_ready / raw_get_buffer_space).
//
// Waiting. `wait()` is libxenvchan_wait: it sleeps on the domain's event
// channels (EventWaiter, no spinning) until this vchan's port fires. Blocking
// calls wait between attempts as io.c does; non-blocking calls never wait.
// Unlike io.c, a blocking call sets a notify bit only as it is about to wait:
// first it spins on the peer's index (VchanServices.spinner, the wait
// policy: bounded, and only with spare cores), then it asks, looks again, and
// takes the bit back when it found what it wanted. io.c asks whenever a read
// finds less than its buffer (or a write less room than its data), which
// makes the peer signal on nearly every call. Non-blocking calls ask as io.c
// does: their caller sleeps on the event itself. The bytes on the page are
// libxenvchan's either way; a libxenvchan peer reads them as its own.
//
// Errors. Where io.c returns −1 (errno unset), the calls throw XenError:
// EPIPE on a closed channel, EMSGSIZE for a packet that can never fit, the
// errno of EVTCHNOP_send when a notification fails. Waits take an AbortSignal.
//
// Deviations, all in corners the C leaves undefined: `blocking` starts false
// (libxenvchan leaves it uninitialised; the caller must set it); a failed
// notification inside a blocking write throws (the C adds −1 to its
// position and goes on); a closed vchan throws EPIPE / answers 0 instead of
// being freed memory; the server falls back to the connection's own domid
// when the relative key `domid` is missing.

import type { Duplex } from 'node:stream';
import { XEN_PAGE_SHIFT, XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { EINVAL, EMSGSIZE, ENOENT, EPIPE } from '../../guest/gnttab/errno.ts';
import { Xengntshr, type XengntshrShare } from '../../guest/gnttab/xengntshr.ts';
import { Xengnttab, type XengnttabMapping } from '../../guest/gnttab/xengnttab.ts';
import { XenError } from '../../guest/xen-error.ts';
import type { GuestMemory } from '../../machine/guest-memory.ts';
import { XsError, type XsPerm } from '../xenstore/api.ts';
import {
  inPageOffset,
  ringPages,
  serverOrders,
  VCHAN_CLI_LIVE,
  VCHAN_CLIENT_CONNECTED,
  VCHAN_CLIENT_NOT_CONNECTED,
  VCHAN_GRANTS,
  VCHAN_LEFT_CONS,
  VCHAN_LEFT_ORDER,
  VCHAN_LEFT_PROD,
  VCHAN_LIVE_WORD,
  VCHAN_NOTIFY_READ,
  VCHAN_NOTIFY_WORD,
  VCHAN_NOTIFY_WRITE,
  VCHAN_RIGHT_CONS,
  VCHAN_RIGHT_ORDER,
  VCHAN_RIGHT_PROD,
  VCHAN_SRV_LIVE,
  VCHAN_SRV_NOTIFY,
  validateOrders,
} from './layout.ts';
import type { VchanServices } from './services.ts';
import { type VchanStreamOptions, vchanStream } from './stream.ts';

/** Options of the calls of a vchan that may wait. */
export interface VchanIoOptions {
  /** Rejects a wait with the signal's reason (an AbortError) when it aborts. */
  signal?: AbortSignal;
}

/** Options of Vchan.chunks. */
export interface VchanChunkOptions extends VchanIoOptions {
  /** Largest chunk (default: the size of the ring this side reads). */
  chunkSize?: number;
}

/** One direction as this side sees it (`struct libxenvchan_ring`). */
interface RingView {
  /** log2 of the size; 0 before setup. */
  order: number;
  /** Offsets of this ring's cons and prod in the control page. */
  consOff: number;
  prodOff: number;
  /** Base address of each 4 KiB piece of the buffer, or one base for an in-page ring. */
  pages: number[];
  /**
   * The buffer as runs of pages contiguous in this domain's address space
   * (ring offset, address, bytes): one run when the pages lie one after
   * another, as a client's mapping always does, so a copy is one access.
   */
  runs: RingRun[];
  /** Server: the shared pages of a multi-page ring. */
  share: XengntshrShare | null;
  /** Client: the mapping of a multi-page ring. */
  mapped: XengnttabMapping | null;
}

interface RingRun {
  start: number;
  addr: number;
  len: number;
}

function ringView(consOff: number, prodOff: number): RingView {
  return { order: 0, consOff, prodOff, pages: [], runs: [], share: null, mapped: null };
}

/** The runs of a ring of `size` bytes over `pages` (one page base each, or one base for an in-page ring). */
function ringRuns(pages: readonly number[], size: number): RingRun[] {
  if (pages.length === 1) return [{ start: 0, addr: pages[0]!, len: size }];
  const runs: RingRun[] = [];
  pages.forEach((addr, i) => {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.addr + last.len === addr) last.len += XEN_PAGE_SIZE;
    else runs.push({ start: i * XEN_PAGE_SIZE, addr, len: XEN_PAGE_SIZE });
  });
  return runs;
}

/** The XenError of a failed setup step: the libxenvchan call, the step's errno, why (and the step's error as cause). */
function setupError(op: string, what: string, e: unknown): XenError {
  if (e instanceof XenError) return new XenError(op, e.errno, `${what}: ${e.message}`, { cause: e });
  return new XenError(op, EINVAL, `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

/** C's atoi: optional blanks and sign, then digits; 0 when there are none. */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  if (m === null) return 0;
  return Number.parseInt(m[1]!, 10) | 0;
}

/**
 * libxenvchan: a byte channel between two domains over one shared control
 * page, two rings, one event channel and two xenstore keys. The server calls
 * serverInit, the client clientInit; then read/write (a stream, partial),
 * recv/send (packets, all or nothing), wait, isOpen, dataReady, bufferSpace,
 * close. Failures throw XenError; `blocking` picks io.c's blocking mode.
 * It is an async iterator of chunks, stream() gives a node:stream Duplex,
 * and `await using` closes it.
 *
 * A Vchan is not itself a Duplex because it keeps libxenvchan's names, and
 * read and write are Duplex methods with other contracts: libxenvchan's
 * `read(buf)` fills `buf` from the ring and resolves to a byte count, where
 * `Duplex.read(size)` returns what the stream already buffered, at once;
 * `write(data)` resolves when the ring has taken the bytes, where
 * `Duplex.write(chunk)` queues and returns a backpressure boolean. So
 * stream() wraps the vchan in a Duplex of its own, for stream.pipeline and
 * everything else that takes a Node stream.
 *
 * ```ts
 * await using v = await Vchan.clientInit(svc, serverDomid, '/local/domain/1/data/vchan');
 * v.blocking = true;
 * await v.write(new TextEncoder().encode('hello'));
 * for await (const chunk of v) process(chunk);
 * ```
 */
export class Vchan {
  readonly svc: VchanServices;
  readonly isServer: boolean;
  /** The peer domain. */
  readonly peer: number;
  /** Blocking mode for send/recv/read/write; caller-set (libxenvchan leaves it uninitialised). */
  blocking = false;
  /** Server only: report the channel open whatever cli_live says. */
  serverPersist = false;
  /** The vchan's own view of its read ring and write ring (orders copied at setup). */
  private readonly rd: RingView;
  private readonly wr: RingView;
  /** The control page in this domain's address space, or -1. */
  private ring = -1;
  /** The grant ref of the control page (server: the one published; client: the one mapped). */
  private ringRef = -1;
  private ctrlShare: XengntshrShare | null = null;
  private ctrlMap: XengnttabMapping | null = null;
  private port = -1;
  private fired = false;
  /**
   * Events delivered so far. A blocking call notes it before it looks at the
   * ring and sleeps until it changes, so a stream's read and write, blocked at
   * once, both wake on an event (`fired` alone would be taken by the first).
   */
  private events = 0;
  private gntshr: Xengntshr | null = null;
  private gnttab: Xengnttab | null = null;
  private xsPath: string | null = null;
  private closed = false;

  private constructor(svc: VchanServices, isServer: boolean, peer: number) {
    this.svc = svc;
    this.isServer = isServer;
    this.peer = peer;
    // The server reads the left ring and writes the right one; the client the reverse.
    const left = ringView(VCHAN_LEFT_CONS, VCHAN_LEFT_PROD);
    const right = ringView(VCHAN_RIGHT_CONS, VCHAN_RIGHT_PROD);
    this.rd = isServer ? left : right;
    this.wr = isServer ? right : left;
  }

  private get mem(): GuestMemory {
    return this.svc.ctx.mem;
  }

  // ---- setup (init.c) ---------------------------------------------------------------------------

  /**
   * libxenvchan_server_init: offers a channel to `domid` under `xsPath`, with a
   * receive (left) ring of at least leftMin bytes and a send (right) ring of
   * at least rightMin bytes (§6.2). On any failure everything is undone and
   * it throws XenError (op libxenvchan_server_init) with the failed step's
   * errno and reason.
   */
  static async serverInit(
    svc: VchanServices,
    domid: number,
    xsPath: string,
    leftMin: number,
    rightMin: number,
  ): Promise<Vchan> {
    const op = 'libxenvchan_server_init';
    const orders = serverOrders(leftMin, rightMin);
    if (orders === null)
      throw new XenError(op, EINVAL, `ring sizes ${leftMin} and ${rightMin}: each at most ${1 << 20} bytes`);
    const v = new Vchan(svc, true, domid);
    v.rd.order = orders.left;
    v.wr.order = orders.right;
    v.gntshr = new Xengntshr(svc.gntalloc);
    let step = 'an unbound event channel';
    try {
      v.initEvtSrv();
      step = 'sharing the ring pages';
      v.initGntSrv();
      step = `publishing ${xsPath}`;
      await v.initXsSrv(xsPath);
    } catch (e) {
      await v.close();
      throw setupError(op, step, e);
    }
    return v;
  }

  /**
   * libxenvchan_client_init: connects to the channel `domid` offers under
   * `xsPath` (§6.3). On any failure everything is undone and it throws
   * XenError (op libxenvchan_client_init): ENOENT when the server's keys are
   * not there (yet), EACCES when they are not readable, the failed step's
   * errno otherwise.
   */
  static async clientInit(svc: VchanServices, domid: number, xsPath: string): Promise<Vchan> {
    const op = 'libxenvchan_client_init';
    const v = new Vchan(svc, false, domid);
    let ringRef: number;
    let port: number;
    try {
      ringRef = atoi(await svc.xs.read(`${xsPath}/ring-ref`));
      port = ringRef === 0 ? 0 : atoi(await svc.xs.read(`${xsPath}/event-channel`));
    } catch (e) {
      // A missing or unreadable key, or a broken connection: the client fails.
      await v.close();
      throw setupError(op, `reading ${xsPath}`, e);
    }
    // ref 0 is reserved (never a vchan page), port 0 is never a channel.
    if (ringRef === 0 || port === 0) {
      await v.close();
      throw new XenError(op, ENOENT, `${xsPath}: ring-ref ${ringRef}, event-channel ${port}: not a vchan`);
    }
    v.gnttab = new Xengnttab(svc.gntdev);
    let step = `binding to d${domid} port ${port}`;
    try {
      v.initEvtCli(port);
      step = `mapping d${domid} ref ${ringRef}`;
      await v.initGntCli(ringRef);
    } catch (e) {
      await v.close();
      throw setupError(op, step, e);
    }
    v.storeByte(VCHAN_CLI_LIVE, VCHAN_CLIENT_CONNECTED);
    v.storeByte(VCHAN_SRV_NOTIFY, VCHAN_NOTIFY_WRITE);
    // Wake the server (§6.5 event 1).
    svc.events.send(v.port);
    return v;
  }

  private bindPort(port: number): void {
    this.port = port;
    // xenevtchn_unmask; the handler is what the evtchn device's read() would report.
    const rc = this.svc.events.bind(port, () => {
      this.fired = true;
      this.events++;
    });
    if (rc === 0) return;
    this.svc.events.close(port);
    this.port = -1;
    throw new XenError('xenevtchn_unmask', rc, `port ${port}`);
  }

  /** init_evt_srv: an unbound port for the peer, unmasked. */
  private initEvtSrv(): void {
    const port = this.svc.events.allocUnbound(this.peer);
    if (port < 0) throw new XenError('xenevtchn_bind_unbound_port', port, `a port for d${this.peer}`);
    this.bindPort(port);
  }

  /** init_evt_cli: bound to the server's port, unmasked. */
  private initEvtCli(remotePort: number): void {
    const port = this.svc.events.bindInterdomain(this.peer, remotePort);
    if (port < 0) throw new XenError('xenevtchn_bind_interdomain', port, `d${this.peer} port ${remotePort}`);
    this.bindPort(port);
  }

  /** init_gnt_srv: the control page (with the unmap notification on srv_live), then the rings. */
  private initGntSrv(): void {
    const shr = this.gntshr!;
    const pagesLeft = ringPages(this.rd.order);
    const pagesRight = ringPages(this.wr.order);
    const ctrl = shr.sharePageNotify(this.peer, true, VCHAN_SRV_LIVE, this.port);
    const ring = ctrl.addr;
    const mem = this.mem;
    mem.fill(ring, XEN_PAGE_SIZE, 0);
    this.ring = ring;
    this.ringRef = ctrl.refs[0]!;
    this.ctrlShare = ctrl;
    mem.store16(ring + VCHAN_LEFT_ORDER, this.rd.order);
    mem.store16(ring + VCHAN_RIGHT_ORDER, this.wr.order);
    // cli_live = 2 (not yet connected), srv_live = 1; cli_notify = WRITE (tell me when you write).
    mem.store16(ring + VCHAN_LIVE_WORD, VCHAN_CLIENT_NOT_CONNECTED | (1 << 8));
    mem.store16(ring + VCHAN_NOTIFY_WORD, VCHAN_NOTIFY_WRITE);
    const place = (r: RingView, pages: number, firstGrant: number): void => {
      const off = inPageOffset(r.order);
      if (off >= 0) {
        r.pages = [ring + off];
        r.runs = ringRuns(r.pages, this.size(r));
        return;
      }
      const s = shr.sharePages(this.peer, pages, true);
      s.refs.forEach((ref, i) => {
        mem.store32(ring + VCHAN_GRANTS + (firstGrant + i) * 4, ref);
      });
      r.share = s;
      r.pages = [...s.addrs];
      r.runs = ringRuns(r.pages, this.size(r));
    };
    try {
      place(this.rd, pagesLeft, 0);
      place(this.wr, pagesRight, pagesLeft);
    } catch (e) {
      if (this.rd.share !== null) shr.unshare(this.rd.share);
      this.rd.share = null;
      shr.unshare(ctrl);
      this.ctrlShare = null;
      this.ring = -1;
      this.ringRef = -1;
      this.rd.order = 0;
      this.wr.order = 0;
      this.rd.pages = [];
      this.rd.runs = [];
      this.wr.pages = [];
      this.wr.runs = [];
      throw e;
    }
  }

  /**
   * init_xs_srv: ring-ref and event-channel under xsPath in one transaction,
   * each readable by the peer only (owner: this domain, others: none).
   */
  private async initXsSrv(xsPath: string): Promise<void> {
    const xs = this.svc.xs;
    this.xsPath = xsPath;
    let own: number;
    try {
      own = atoi(await xs.read('domid'));
    } catch (e) {
      if (!(e instanceof XsError) || e.code !== 'ENOENT') throw e;
      own = xs.domid;
    }
    const perms: XsPerm[] = [
      { domid: own, perm: 'n' },
      { domid: this.peer, perm: 'r' },
    ];
    const ref = String(this.ringRef);
    const port = String(this.port);
    await xs.transaction(async (tx) => {
      await tx.write(`${xsPath}/ring-ref`, ref);
      await tx.setPerms(`${xsPath}/ring-ref`, perms);
      await tx.write(`${xsPath}/event-channel`, port);
      await tx.setPerms(`${xsPath}/event-channel`, perms);
    });
  }

  /**
   * init_gnt_cli: maps the control page (unmap notification on cli_live),
   * validates the orders, maps the write (left) ring read/write, then the
   * read (right) ring read-only.
   */
  private async initGntCli(ringRef: number): Promise<void> {
    const gt = this.gnttab!;
    const ctrl = await gt.mapGrantRefNotify(this.peer, ringRef, true, VCHAN_CLI_LIVE, this.port);
    const ring = ctrl.addr;
    const mem = this.mem;
    this.ring = ring;
    this.ringRef = ringRef;
    this.ctrlMap = ctrl;
    this.wr.order = mem.load16(ring + VCHAN_LEFT_ORDER);
    this.rd.order = mem.load16(ring + VCHAN_RIGHT_ORDER);
    let grant = 0;
    const place = async (r: RingView, writable: boolean): Promise<void> => {
      const off = inPageOffset(r.order);
      if (off >= 0) {
        r.pages = [ring + off];
        r.runs = ringRuns(r.pages, this.size(r));
        return;
      }
      const n = ringPages(r.order);
      const refs: number[] = [];
      for (let i = 0; i < n; i++) refs.push(mem.load32(ring + VCHAN_GRANTS + (grant + i) * 4));
      grant += n;
      const m = await gt.mapDomainGrantRefs(this.peer, refs, writable);
      r.mapped = m;
      r.pages = refs.map((_, i) => m.addr + i * XEN_PAGE_SIZE);
      r.runs = ringRuns(r.pages, this.size(r));
    };
    try {
      const bad = validateOrders({ left: this.wr.order, right: this.rd.order });
      if (bad !== null)
        throw new XenError('libxenvchan_client_init', EINVAL, `the server's ring orders: ${bad}`);
      await place(this.wr, true);
      await place(this.rd, false);
    } catch (e) {
      if (this.wr.mapped !== null) this.wr.mapped.unmap();
      this.wr.mapped = null;
      // out_unmap_ring: the unmap notification clears cli_live and signals the server.
      ctrl.unmap();
      this.ctrlMap = null;
      this.ring = -1;
      this.wr.order = 0;
      this.rd.order = 0;
      this.wr.pages = [];
      this.wr.runs = [];
      this.rd.pages = [];
      this.rd.runs = [];
      throw e;
    }
  }

  // ---- the u8 fields, through their u16 words --------------------------------------------------

  private loadByte(off: number): number {
    return (this.mem.load16(this.ring + (off & ~1)) >>> ((off & 1) * 8)) & 0xff;
  }

  /** A store of one byte that leaves the other byte of its u16 as the peer has it. */
  private storeByte(off: number, v: number): void {
    const word = this.ring + (off & ~1);
    const shift = (off & 1) * 8;
    const mem = this.mem;
    let old = mem.load16(word);
    for (;;) {
      const next = (old & ~(0xff << shift) & 0xffff) | ((v & 0xff) << shift);
      const found = mem.cmpxchg16(word, old, next);
      if (found === old) return;
      old = found;
    }
  }

  // ---- notifications (io.c) --------------------------------------------------------------------

  /**
   * request_notify: OR `bit` into the peer's check byte (server: cli_notify,
   * the low byte; client: srv_notify, the high byte), then a full barrier so
   * the request is visible before the indexes are read again.
   */
  private requestNotify(bit: number): void {
    this.mem.or16(this.ring + VCHAN_NOTIFY_WORD, bit << (this.isServer ? 0 : 8));
    this.mem.fence();
  }

  /**
   * Takes back a request this side made and no longer needs (it found what it
   * wanted on the second look and will not sleep), so the peer does not send
   * an event nobody waits for. The peer may have taken the bit meanwhile and
   * signalled: that event stays pending and costs one look at the ring.
   */
  private withdrawNotify(bit: number): void {
    this.mem.and16(this.ring + VCHAN_NOTIFY_WORD, ~(bit << (this.isServer ? 0 : 8)) & 0xffff);
  }

  /**
   * send_notify: a full barrier (our index update first), then fetch-and-clear
   * `bit` in our own check byte (server: srv_notify, the high byte; client:
   * cli_notify, the low byte); signal the port iff the peer had set it.
   * 0, or the negative errno of EVTCHNOP_send.
   */
  private sendNotify(bit: number): number {
    const mem = this.mem;
    mem.fence();
    const shift = this.isServer ? 8 : 0;
    const prev = mem.and16(this.ring + VCHAN_NOTIFY_WORD, ~(bit << shift) & 0xffff);
    if (((prev >>> shift) & bit) !== 0) return this.svc.events.send(this.port);
    return 0;
  }

  // ---- indexes -----------------------------------------------------------------------------------

  private size(r: RingView): number {
    return 2 ** r.order;
  }

  /** raw_get_data_ready: rd.prod − rd.cons, 0 when it exceeds the ring (a corrupt peer). */
  private rawDataReady(): number {
    const mem = this.mem;
    const ready = (mem.load32(this.ring + this.rd.prodOff) - mem.load32(this.ring + this.rd.consOff)) >>> 0;
    mem.fence();
    return ready > this.size(this.rd) ? 0 : ready;
  }

  /** raw_get_buffer_space: size − (wr.prod − wr.cons), 0 when it exceeds the ring. */
  private rawBufferSpace(): number {
    const mem = this.mem;
    const size = this.size(this.wr);
    const used = (mem.load32(this.ring + this.wr.prodOff) - mem.load32(this.ring + this.wr.consOff)) >>> 0;
    const space = (size - used) >>> 0;
    mem.fence();
    return space > size ? 0 : space;
  }

  /** fast_get_data_ready: enough, or ask for a WRITE notification and look again. */
  private fastDataReady(request: number): number {
    const ready = this.rawDataReady();
    if (ready >= request) return ready;
    this.requestNotify(VCHAN_NOTIFY_WRITE);
    return this.rawDataReady();
  }

  /** fast_get_buffer_space: enough, or ask for a READ notification and look again. */
  private fastBufferSpace(request: number): number {
    const space = this.rawBufferSpace();
    if (space >= request) return space;
    this.requestNotify(VCHAN_NOTIFY_READ);
    return this.rawBufferSpace();
  }

  /**
   * A blocking call's look for `want` bytes to read. It asks for a WRITE
   * notification only as it is about to sleep: first it spins on the peer's
   * index (while the wait policy sees a spare core, for a bounded time), then
   * asks, looks again, and takes the request back if it is not going to
   * sleep. Less than `want` returned means: asked, and nothing came since.
   */
  private blockingDataReady(want: number): number {
    let ready = this.rawDataReady();
    if (ready >= want) return ready;
    const spin = this.svc.spinner;
    if (spin !== null) {
      // One load a round: prod is the peer's; cons is ours and stays put.
      const mem = this.mem;
      const prodAddr = this.ring + this.rd.prodOff;
      const cons = mem.load32(this.ring + this.rd.consOff);
      if (spin.spinUntil(() => (mem.load32(prodAddr) - cons) >>> 0 >= want)) {
        ready = this.rawDataReady();
        if (ready >= want) return ready;
      }
    }
    this.requestNotify(VCHAN_NOTIFY_WRITE);
    ready = this.rawDataReady();
    if (ready >= want) this.withdrawNotify(VCHAN_NOTIFY_WRITE);
    return ready;
  }

  /** blockingDataReady's counterpart for room to write (spins on cons, asks for READ). */
  private blockingBufferSpace(want: number): number {
    let space = this.rawBufferSpace();
    if (space >= want) return space;
    const spin = this.svc.spinner;
    if (spin !== null) {
      const mem = this.mem;
      const consAddr = this.ring + this.wr.consOff;
      const prod = mem.load32(this.ring + this.wr.prodOff);
      const most = this.size(this.wr) - want;
      if (spin.spinUntil(() => (prod - mem.load32(consAddr)) >>> 0 <= most)) {
        space = this.rawBufferSpace();
        if (space >= want) return space;
      }
    }
    this.requestNotify(VCHAN_NOTIFY_READ);
    space = this.rawBufferSpace();
    if (space >= want) this.withdrawNotify(VCHAN_NOTIFY_READ);
    return space;
  }

  /** libxenvchan_data_ready: bytes readable now; always asks to hear of more. */
  dataReady(): number {
    if (this.ring === -1) return 0;
    this.requestNotify(VCHAN_NOTIFY_WRITE);
    return this.rawDataReady();
  }

  /** libxenvchan_buffer_space: bytes writable now; always asks to hear of more room. */
  bufferSpace(): number {
    if (this.ring === -1) return 0;
    this.requestNotify(VCHAN_NOTIFY_READ);
    return this.rawBufferSpace();
  }

  // ---- copying -----------------------------------------------------------------------------------

  /** Copies data[from, from+len) into ring r at byte offset off (off + len <= size): one write a run. */
  private copyIn(r: RingView, off: number, data: Uint8Array, from: number, len: number): void {
    const mem = this.mem;
    for (const run of r.runs) {
      if (len === 0) return;
      const end = run.start + run.len;
      if (off >= end) continue;
      const n = Math.min(len, end - off);
      mem.write(run.addr + (off - run.start), data.subarray(from, from + n));
      off += n;
      from += n;
      len -= n;
    }
  }

  /** Copies len bytes of ring r from byte offset off into out[from, from+len): one read a run. */
  private copyOut(r: RingView, off: number, out: Uint8Array, from: number, len: number): void {
    const mem = this.mem;
    for (const run of r.runs) {
      if (len === 0) return;
      const end = run.start + run.len;
      if (off >= end) continue;
      const n = Math.min(len, end - off);
      mem.readInto(run.addr + (off - run.start), out.subarray(from, from + n));
      off += n;
      from += n;
      len -= n;
    }
  }

  /** do_send: the caller checked for space. n; XenError when the notification fails. */
  private doSend(op: string, data: Uint8Array, from: number, n: number): number {
    const mem = this.mem;
    const size = this.size(this.wr);
    const prodAddr = this.ring + this.wr.prodOff;
    const idx = mem.load32(prodAddr) & (size - 1);
    const contig = Math.min(size - idx, n);
    mem.fence(); // read indexes, then write data
    this.copyIn(this.wr, idx, data, from, contig);
    if (contig < n) this.copyIn(this.wr, 0, data, from + contig, n - contig); // wrapped
    mem.fence(); // write data, then publish (xen_wmb)
    mem.store32(prodAddr, (mem.load32(prodAddr) + n) >>> 0);
    this.checkNotify(op, this.sendNotify(VCHAN_NOTIFY_WRITE));
    return n;
  }

  /** do_recv: the caller checked for data. n; XenError when the notification fails. */
  private doRecv(op: string, out: Uint8Array, from: number, n: number): number {
    const mem = this.mem;
    const size = this.size(this.rd);
    const consAddr = this.ring + this.rd.consOff;
    const idx = mem.load32(consAddr) & (size - 1);
    const contig = Math.min(size - idx, n);
    mem.fence(); // data reads after the cons read (xen_rmb)
    this.copyOut(this.rd, idx, out, from, contig);
    if (contig < n) this.copyOut(this.rd, 0, out, from + contig, n - contig); // wrapped
    mem.fence(); // consume, then notify
    mem.store32(consAddr, (mem.load32(consAddr) + n) >>> 0);
    this.checkNotify(op, this.sendNotify(VCHAN_NOTIFY_READ));
    return n;
  }

  private checkNotify(op: string, rc: number): void {
    if (rc < 0) throw new XenError(op, rc, `notifying d${this.peer} on port ${this.port} failed`);
  }

  /** The error of a call on a channel that is closed (by this side, or the peer). */
  private closedError(op: string): XenError {
    return new XenError(
      op,
      EPIPE,
      this.ring === -1 ? 'this side closed the channel' : `d${this.peer} closed the channel`,
    );
  }

  // ---- the public calls (io.c) -------------------------------------------------------------------
  //
  // Where io.c returns -1, these throw XenError: EPIPE when the channel is
  // closed, EMSGSIZE for a packet that can never fit the ring, the errno of
  // EVTCHNOP_send when a notification fails; an aborted signal rejects with
  // its reason. 0 keeps its meaning: nothing could be done now (non-blocking).

  /**
   * libxenvchan_send: the whole packet or nothing. n; 0 when it does not fit
   * now (non-blocking). Blocking, it waits for room; a packet larger than the
   * ring throws EMSGSIZE at once.
   */
  send(data: Uint8Array, options: VchanIoOptions = {}): Promise<number> {
    return this.sendIn('libxenvchan_send', data, this.blocking, options.signal);
  }

  private async sendIn(
    op: string,
    data: Uint8Array,
    blocking: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    const n = data.length;
    for (;;) {
      if (!this.isOpen()) throw this.closedError(op);
      const seen = this.events;
      // A packet larger than the ring is refused below, without a spin first.
      const avail =
        blocking && n <= this.size(this.wr) ? this.blockingBufferSpace(n) : this.fastBufferSpace(n);
      if (n <= avail) return this.doSend(op, data, 0, n);
      if (!blocking) return 0;
      if (n > this.size(this.wr))
        throw new XenError(op, EMSGSIZE, `a ${n}-byte packet never fits the ${this.size(this.wr)}-byte ring`);
      await this.waitIn(op, signal, seen);
    }
  }

  /**
   * libxenvchan_write: a stream. Blocking: all of data (in chunks as room
   * appears; EPIPE if the channel closes first). Non-blocking: as much as
   * fits now (0 when nothing does).
   */
  write(data: Uint8Array, options: VchanIoOptions = {}): Promise<number> {
    return this.writevIn('libxenvchan_write', [data], this.blocking, options.signal);
  }

  /**
   * writev: the buffers one after another as one stream write (write's
   * semantics for their total length); the bytes written.
   */
  writev(buffers: readonly Uint8Array[], options: VchanIoOptions = {}): Promise<number> {
    return this.writevIn('libxenvchan_writev', buffers, this.blocking, options.signal);
  }

  private async writevIn(
    op: string,
    buffers: readonly Uint8Array[],
    blocking: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    const total = buffers.reduce((t, b) => t + b.length, 0);
    if (!this.isOpen()) throw this.closedError(op);
    let done = 0;
    let bi = 0;
    let off = 0;
    for (;;) {
      const seen = this.events;
      // Blocking: any room will do (the rest waits for more); non-blocking asks as io.c does.
      const space =
        done === total ? 0 : blocking ? this.blockingBufferSpace(1) : this.fastBufferSpace(total - done);
      let avail = Math.min(space, total - done);
      const wrote = avail > 0;
      while (avail > 0) {
        const b = buffers[bi]!;
        const n = Math.min(avail, b.length - off);
        if (n > 0) this.doSend(op, b, off, n);
        off += n;
        done += n;
        avail -= n;
        if (off === b.length) {
          bi++;
          off = 0;
        }
      }
      while (bi < buffers.length && buffers[bi]!.length === off) {
        bi++;
        off = 0;
      }
      if (done === total || !blocking) return done;
      // Blocking, a part written: look again; a READ request stands only once no room was found.
      if (!this.isOpen()) throw this.closedError(op);
      if (wrote) continue;
      await this.waitIn(op, signal, seen);
      if (!this.isOpen()) throw this.closedError(op);
    }
  }

  /**
   * libxenvchan_recv: exactly buf.length bytes or nothing. Data already queued
   * is delivered even after the peer closed (the open check comes after the
   * availability check). 0 when not enough is there (non-blocking); EPIPE
   * when closed and short; EMSGSIZE (blocking) when it can never fit.
   */
  recv(buf: Uint8Array, options: VchanIoOptions = {}): Promise<number> {
    return this.recvIn('libxenvchan_recv', buf, this.blocking, options.signal);
  }

  private async recvIn(
    op: string,
    buf: Uint8Array,
    blocking: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    const n = buf.length;
    for (;;) {
      const seen = this.events;
      const avail = blocking && n <= this.size(this.rd) ? this.blockingDataReady(n) : this.fastDataReady(n);
      if (n <= avail) return this.doRecv(op, buf, 0, n);
      if (!this.isOpen()) throw this.closedError(op);
      if (!blocking) return 0;
      if (n > this.size(this.rd))
        throw new XenError(op, EMSGSIZE, `a ${n}-byte packet never fits the ${this.size(this.rd)}-byte ring`);
      await this.waitIn(op, signal, seen);
    }
  }

  /**
   * libxenvchan_read: a stream; up to buf.length bytes, whatever is there.
   * 0 when nothing is there (non-blocking); EPIPE once the channel is closed
   * and drained (the end of the stream).
   */
  read(buf: Uint8Array, options: VchanIoOptions = {}): Promise<number> {
    return this.readIn('libxenvchan_read', buf, this.blocking, options.signal);
  }

  private async readIn(
    op: string,
    buf: Uint8Array,
    blocking: boolean,
    signal?: AbortSignal,
  ): Promise<number> {
    let size = buf.length;
    for (;;) {
      const seen = this.events;
      // Blocking: whatever is there will do; non-blocking asks for more as io.c does.
      const avail = blocking ? this.blockingDataReady(1) : this.fastDataReady(size);
      if (avail > 0 && size > avail) size = avail;
      if (avail > 0) return this.doRecv(op, buf, 0, size);
      if (!this.isOpen()) throw this.closedError(op);
      if (!blocking) return 0;
      await this.waitIn(op, signal, seen);
    }
  }

  /**
   * libxenvchan_wait: sleeps until the event channel fires (returns at once
   * if it fired since the last wait), then re-arms it. XenError EPIPE when
   * there is no channel (closed); an aborted signal rejects with its reason.
   */
  wait(options: VchanIoOptions = {}): Promise<void> {
    return this.waitIn('libxenvchan_wait', options.signal);
  }

  /**
   * libxenvchan_wait; `seen` (a blocking call's count of events when it last
   * looked at the ring): wake on any event after that, not only on an unconsumed one.
   */
  private async waitIn(op: string, signal?: AbortSignal, seen?: number): Promise<void> {
    if (this.port < 0) throw this.closedError(op);
    const woken = seen === undefined ? () => this.fired : () => this.events !== seen;
    await this.svc.waiter.until(() => woken() || this.port < 0, signal);
    if (this.port < 0) throw this.closedError(op);
    this.fired = false;
  }

  /**
   * The bytes as they arrive, each chunk a fresh Uint8Array of at most
   * `chunkSize` bytes (default the read ring's size): `for await (const b of
   * v.chunks({ signal }))`. Blocking whatever `blocking` says; ends when the
   * channel is closed and drained.
   */
  async *chunks(options: VchanChunkOptions = {}): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      const buf = new Uint8Array(options.chunkSize ?? Math.max(1, this.readSize));
      let n: number;
      try {
        n = await this.readIn('libxenvchan_read', buf, true, options.signal);
      } catch (e) {
        if (e instanceof XenError && e.code === 'EPIPE') return;
        throw e;
      }
      yield buf.subarray(0, n);
    }
  }

  /** `for await (const chunk of vchan)`: chunks() with no signal. */
  [Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    return this.chunks();
  }

  /**
   * The channel as a node:stream Duplex (Buffers in and out; writes block
   * until the ring takes them, reads end when the peer closes). The stream
   * owns the vchan: destroying or ending both sides closes it. A separate
   * object, not the Vchan itself, because libxenvchan's read(buf) and
   * write(data) (promises of byte counts) would clash with Duplex's read(size)
   * and write(chunk) (synchronous, buffered); see the class.
   *
   * ```ts
   * import { Transform } from 'node:stream';
   * import { pipeline } from 'node:stream/promises';
   * // A server that sends back upper-cased whatever its client writes, until the client closes.
   * const stream = (await Vchan.serverInit(svc, clientDomid, path, 4096, 4096)).stream();
   * const upper = new Transform({
   *   transform: (chunk: Buffer, _encoding, done) => done(null, chunk.toString().toUpperCase()),
   * });
   * await pipeline(stream, upper, stream);
   * // A file into a vchan: await pipeline(createReadStream(file), vchan.stream());
   * ```
   */
  stream(options: VchanStreamOptions = {}): Duplex {
    return vchanStream(this, options, {
      read: (buf) => this.readIn('libxenvchan_read', buf, true),
      write: (data) => this.writevIn('libxenvchan_write', [data], true),
      writev: (bufs) => this.writevIn('libxenvchan_writev', bufs, true),
    });
  }

  /** `await using v = await Vchan.clientInit(...)`: closes the channel. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** True when an event arrived that wait() has not consumed (the fd is readable). */
  get eventPending(): boolean {
    return this.port >= 0 && (this.fired || this.svc.events.isPending(this.port));
  }

  /**
   * libxenvchan_is_open. Server: 1 with serverPersist, else cli_live (2 before
   * the client connects, which counts as open). Client: srv_live. 0 once this
   * side is closed.
   */
  isOpen(): number {
    if (this.ring === -1) return 0;
    if (this.isServer) return this.serverPersist ? 1 : this.loadByte(VCHAN_CLI_LIVE);
    return this.loadByte(VCHAN_SRV_LIVE);
  }

  /**
   * libxenvchan_close: the multi-page rings go, then the control page (after
   * our live byte is cleared; the unmap notification clears it again and
   * signals), then an explicit notify and the port is closed, then the
   * device handles; the server removes its xenstore tree. Grants the peer
   * still maps end when it lets go (the grant driver's deferred list).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.teardown(false);
    if (this.isServer && this.xsPath !== null) {
      const path = this.xsPath;
      this.xsPath = null;
      try {
        await this.svc.xs.rm(path);
      } catch (e) {
        // close_xs_srv ignores the outcome; the rest of the teardown is done already.
        this.svc.ctx.log(`vchan: cannot remove ${path}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /**
   * What the kernel does when the process dies without calling close: its
   * mappings go (the unmap notification clears our live byte and signals the
   * peer), then its device handles and event-channel ports. Nothing else:
   * no explicit notify, and the server's xenstore keys stay.
   */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    this.teardown(true);
  }

  private teardown(crash: boolean): void {
    for (const r of [this.rd, this.wr]) {
      if (r.order >= XEN_PAGE_SHIFT) {
        if (r.share?.shared) r.share.unshare();
        if (r.mapped?.mapped) r.mapped.unmap();
      }
      r.share = null;
      r.mapped = null;
      r.pages = [];
      r.runs = [];
    }
    const hadRing = this.ring !== -1;
    if (hadRing) {
      if (this.isServer) {
        if (!crash) this.storeByte(VCHAN_SRV_LIVE, 0);
        if (this.ctrlShare?.shared) this.ctrlShare.unshare();
        this.ctrlShare = null;
      } else {
        if (!crash) this.storeByte(VCHAN_CLI_LIVE, 0);
        if (this.ctrlMap?.mapped) this.ctrlMap.unmap();
        this.ctrlMap = null;
      }
      this.ring = -1;
    }
    if (this.port >= 0) {
      if (hadRing && !crash) this.svc.events.send(this.port);
      this.svc.events.close(this.port);
      this.port = -1;
    }
    this.gntshr?.close();
    this.gntshr = null;
    this.gnttab?.close();
    this.gnttab = null;
  }

  // ---- introspection -------------------------------------------------------------------------------

  /** Size in bytes of the ring this side reads (0 when closed). */
  get readSize(): number {
    return this.ring === -1 ? 0 : this.size(this.rd);
  }

  /** Size in bytes of the ring this side writes (0 when closed). */
  get writeSize(): number {
    return this.ring === -1 ? 0 : this.size(this.wr);
  }

  /** The orders this side copied at setup: left (client writes) and right (server writes). */
  get orders(): { left: number; right: number } {
    return this.isServer
      ? { left: this.rd.order, right: this.wr.order }
      : { left: this.wr.order, right: this.rd.order };
  }

  /** The local event-channel port (-1 when closed). */
  get localPort(): number {
    return this.port;
  }

  /** The control page's address in this domain (-1 when closed). */
  get controlPage(): number {
    return this.ring;
  }

  /** The control page's grant ref (server: published; client: mapped). */
  get controlRef(): number {
    return this.ringRef;
  }

  /** Where each 4 KiB piece of a ring lives in this domain ('read' or 'write' ring). */
  ringPagesOf(which: 'read' | 'write'): readonly number[] {
    return [...(which === 'read' ? this.rd : this.wr).pages];
  }

  /** The server's xenstore path while it is published. */
  get path(): string | null {
    return this.xsPath;
  }
}
