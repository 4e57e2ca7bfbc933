// The xenstore client guest code is written against (XsClient, api.ts), in the
// manner of Linux's xenbus (drivers/xen/xenbus/xenbus_comms.c and xenbus_xs.c):
// requests go out as xs_wire.h messages with a fresh req_id, replies are
// matched to them by req_id whatever arrives in between, and XS_WATCH_EVENT
// messages, which can arrive at any moment, are dispatched to the watch's
// callback by token (and path).
//
// XsClientCore is the protocol over any transport. XsRingClient is the guest's
// transport: the ring page of struct xenstore_domain_interface the toolstack
// gave the domain (StartInfo.storeFrame) and its event channel
// (StartInfo.storePort), written and read with the shared-word atomics in
// Linux's order (data, then the producer index; the consumer index after the
// data is read), notifying the other end after each chunk of a request and
// after freeing room in a full reply ring.
//
// Delivery runs from the domain's event handler: replies and watch events are
// taken off the ring whenever the domain's EventChannels is polled (by a
// pending xenstore request, by XsRingClient.waitFor, or by any other code of
// the domain waiting on its events). Everything hangs off the client object.

import { __HYPERVISOR_update_va_mapping, _PAGE_PRESENT, _PAGE_RW } from '../../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { abortable } from '../../guest/abort.ts';
import type { GuestContext } from '../../guest/context.ts';
import { EventChannels, EventWaiter } from '../../guest/events.ts';
import { EOPNOTSUPP } from '../../guest/gnttab/errno.ts';
import { XENSTORE_RING_VA } from '../../guest/layout.ts';
import { XenError } from '../../guest/xen-error.ts';
import {
  type XsClient,
  XsError,
  type XsPerm,
  type XsTransactionClient,
  type XsWaitOptions,
  type XsWatchCallback,
  type XsWatchEvent,
  type XsWatchEventsOptions,
} from './api.ts';
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
  XENSTORE_SERVER_FEATURE_WATCHDEPTH,
  XS_DIRECTORY,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_MKDIR,
  XS_READ,
  XS_RESET_WATCHES,
  XS_RING_REQ,
  XS_RING_REQ_CONS,
  XS_RING_REQ_PROD,
  XS_RING_RSP,
  XS_RING_RSP_CONS,
  XS_RING_RSP_PROD,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XSD_SOCKMSG_SIZE,
  type XsMessage,
} from './wire.ts';

/** Attempts of transaction() before it gives up on EAGAIN. */
export const XS_TRANSACTION_RETRIES = 100;

/** watch.c is_child: child is parent or below it; everything is below "/". */
function isChild(child: string, parent: string): boolean {
  if (parent === '/') return true;
  if (!child.startsWith(parent)) return false;
  const c = child[parent.length];
  return c === undefined || c === '/';
}

function toXsPerm(s: string): XsPerm {
  const c = s[0];
  const perm = c === 'r' || c === 'w' || c === 'b' ? c : 'n';
  return { domid: Number.parseInt(s.slice(1), 10), perm };
}

interface Pending {
  resolve: (m: XsMessage) => void;
  reject: (e: Error) => void;
}

interface LocalWatch {
  path: string;
  token: string;
  cb: XsWatchCallback;
}

/**
 * The xenstore protocol over a transport: subclasses send whole messages and
 * feed every message they receive to receive().
 */
export abstract class XsClientCore implements XsClient {
  readonly domid: number;
  private nextReqId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, LocalWatch>();
  private closedWith: Error | null = null;
  /** Events of watches registered without a callback, for readWatch(), oldest first. */
  private readonly watchQueue: XsWatchEvent[] = [];
  private nextToken = 1;
  /** Watch events that found no watch (unwatched meanwhile). */
  strayEvents = 0;

  constructor(domid: number) {
    this.domid = domid;
  }

  /** Sends one whole message (header and payload in wire form). */
  protected abstract sendMessage(bytes: Uint8Array): Promise<void>;

  /**
   * Waits until `ready()` holds; incoming messages are received meanwhile. A
   * signal that aborts rejects with its reason and leaves no waker behind.
   */
  protected async waitUntil(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    while (!ready()) {
      let wake = () => {};
      const woken = new Promise<void>((r) => {
        wake = r;
        this.wakers.push(r);
      });
      try {
        await abortable(woken, signal);
      } finally {
        this.wakers = this.wakers.filter((w) => w !== wake);
      }
    }
  }

  /** Releases the transport (after close). */
  protected abstract shutdown(): void;

  private wakers: (() => void)[] = [];

  /** Called by the transport with each message that comes in. */
  protected receive(m: XsMessage): void {
    if (m.type === XS_WATCH_EVENT) this.dispatchWatch(m);
    else {
      const p = this.pending.get(m.reqId);
      if (p !== undefined) {
        this.pending.delete(m.reqId);
        p.resolve(m);
      }
    }
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** The transport failed: every pending and later request rejects with `e`. */
  protected fail(e: Error): void {
    if (this.closedWith === null) this.closedWith = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  protected get failed(): Error | null {
    return this.closedWith;
  }

  private dispatchWatch(m: XsMessage): void {
    const [path, token] = splitStrings(m.payload);
    if (path === undefined || token === undefined) return;
    let hit = false;
    for (const w of [...this.watches.values()]) {
      if (w.token !== token || !isChild(path, w.path)) continue;
      hit = true;
      try {
        w.cb(path, token);
      } catch (err) {
        this.onCallbackError(err);
      }
    }
    if (!hit) this.strayEvents++;
  }

  /** A watch callback threw (default: ignored; the ring client logs it). */
  protected onCallbackError(_err: unknown): void {}

  /** Sends a request and waits for its reply; XS_ERROR replies reject with XsError. */
  async request(type: number, txId: number, payload: Uint8Array, what: string): Promise<XsMessage> {
    if (this.closedWith !== null) throw this.closedWith;
    if (payload.length > XENSTORE_PAYLOAD_MAX) throw new XsError('E2BIG', what);
    const reqId = this.nextReqId;
    this.nextReqId = (this.nextReqId + 1) >>> 0 || 1;
    const box: { reply?: XsMessage; error?: Error } = {};
    this.pending.set(reqId, {
      resolve: (m) => {
        box.reply = m;
      },
      reject: (e) => {
        box.error = e;
      },
    });
    try {
      await this.sendMessage(encodeMessage({ type, reqId, txId, payload }));
    } catch (e) {
      this.pending.delete(reqId);
      throw e;
    }
    await this.waitUntil(() => box.reply !== undefined || box.error !== undefined);
    if (box.error !== undefined) throw box.error;
    const r = box.reply!;
    if (r.type === XS_ERROR) {
      const nul = r.payload.indexOf(0);
      throw new XsError(fromBytes(nul < 0 ? r.payload : r.payload.subarray(0, nul)), what);
    }
    return r;
  }

  // ---- XsClient -------------------------------------------------------------------------------

  async read(path: string): Promise<string> {
    return this.readIn(0, path);
  }

  async write(path: string, value: string): Promise<void> {
    await this.writeIn(0, path, value);
  }

  async mkdir(path: string): Promise<void> {
    await this.request(XS_MKDIR, 0, nulStrings(path), `mkdir ${path}`);
  }

  async rm(path: string): Promise<void> {
    await this.request(XS_RM, 0, nulStrings(path), `rm ${path}`);
  }

  async directory(path: string): Promise<string[]> {
    return this.directoryIn(0, path);
  }

  async getPerms(path: string): Promise<XsPerm[]> {
    return this.getPermsIn(0, path);
  }

  async setPerms(path: string, perms: readonly XsPerm[]): Promise<void> {
    await this.setPermsIn(0, path, perms);
  }

  getPermissions(path: string): Promise<XsPerm[]> {
    return this.getPermsIn(0, path);
  }

  setPermissions(path: string, perms: readonly XsPerm[]): Promise<void> {
    return this.setPermsIn(0, path, perms);
  }

  async watch(path: string, token: string, cb?: XsWatchCallback): Promise<void> {
    await this.addWatch(path, token, null, cb);
  }

  async watchDepth(path: string, token: string, depth: number, cb?: XsWatchCallback): Promise<void> {
    if (!Number.isInteger(depth) || depth < 0)
      throw new XenError('xs_watch_depth', 'EINVAL', `depth ${depth}: 0 or more levels`);
    // xs_watch_depth asks first: a store without the feature refuses a third string (EINVAL).
    if (((await this.getFeaturesSupported()) & XENSTORE_SERVER_FEATURE_WATCHDEPTH) === 0)
      throw new XenError(
        'xs_watch_depth',
        EOPNOTSUPP,
        'xenstored does not offer XENSTORE_SERVER_FEATURE_WATCHDEPTH',
      );
    await this.addWatch(path, token, depth, cb);
  }

  private async addWatch(
    path: string,
    token: string,
    depth: number | null,
    cb: XsWatchCallback | undefined,
  ): Promise<void> {
    const key = `${path}\0${token}`;
    if (this.watches.has(key)) throw new XsError('EEXIST', `watch ${path}`);
    const deliver = cb ?? ((p: string, t: string) => this.watchQueue.push({ path: p, token: t }));
    // Registered before the request: the first event follows the reply at once.
    this.watches.set(key, { path, token, cb: deliver });
    const payload = depth === null ? nulStrings(path, token) : nulStrings(path, token, String(depth));
    try {
      await this.request(XS_WATCH, 0, payload, `watch ${path}`);
    } catch (e) {
      this.watches.delete(key);
      throw e;
    }
  }

  async readWatch(options: XsWaitOptions = {}): Promise<XsWatchEvent> {
    await this.waitUntil(() => this.watchQueue.length > 0 || this.closedWith !== null, options.signal);
    const ev = this.watchQueue.shift();
    if (ev !== undefined) return ev;
    throw this.closedWith ?? new XsError('EINVAL', 'read_watch');
  }

  async *watchEvents(
    path: string,
    options: XsWatchEventsOptions = {},
  ): AsyncGenerator<XsWatchEvent, void, undefined> {
    const token = options.token ?? `gnttab-watch-${this.nextToken++}`;
    const queue: XsWatchEvent[] = [];
    const cb = (p: string, t: string) => queue.push({ path: p, token: t });
    if (options.depth === undefined) await this.watch(path, token, cb);
    else await this.watchDepth(path, token, options.depth, cb);
    try {
      for (;;) {
        await this.waitUntil(() => queue.length > 0 || this.closedWith !== null, options.signal);
        const ev = queue.shift();
        if (ev === undefined) return; // the connection closed
        yield ev;
      }
    } finally {
      if (this.closedWith === null && this.watches.has(`${path}\0${token}`)) await this.unwatch(path, token);
    }
  }

  async getFeaturesSupported(): Promise<number> {
    const r = await this.request(XS_GET_FEATURE, 0, new Uint8Array(0), 'get_features_supported');
    const nul = r.payload.indexOf(0);
    return Number.parseInt(fromBytes(nul < 0 ? r.payload : r.payload.subarray(0, nul)), 10) >>> 0;
  }

  async transactionStart(): Promise<XsTransactionClient> {
    return new XsTransaction(this, await this.startTransaction(0));
  }

  async transactionEnd(tx: XsTransactionClient, abort = false): Promise<void> {
    await this.endTransaction(tx.txId, !abort);
  }

  async unwatch(path: string, token: string): Promise<void> {
    await this.request(XS_UNWATCH, 0, nulStrings(path, token), `unwatch ${path}`);
    this.watches.delete(`${path}\0${token}`);
  }

  async transaction<T>(fn: (tx: XsClient) => Promise<T>): Promise<T> {
    return this.transactionIn(0, fn);
  }

  async getDomainPath(domid: number): Promise<string> {
    return this.domainPathIn(0, domid);
  }

  /** Watches registered here. */
  get watchCount(): number {
    return this.watches.size;
  }

  async close(): Promise<void> {
    if (this.closedWith !== null) return;
    try {
      // Every watch and transaction of the connection goes.
      await this.request(XS_RESET_WATCHES, 0, nulStrings(''), 'reset_watches');
    } finally {
      this.watches.clear();
      this.fail(new Error(`d${this.domid}: the xenstore client is closed`));
      this.shutdown();
    }
  }

  // ---- the operations, in or out of a transaction ------------------------------------------------

  async readIn(txId: number, path: string): Promise<string> {
    const r = await this.request(XS_READ, txId, nulStrings(path), `read ${path}`);
    return fromBytes(r.payload);
  }

  async writeIn(txId: number, path: string, value: string): Promise<void> {
    const payload = concatBytes(nulStrings(path), toBytes(value));
    await this.request(XS_WRITE, txId, payload, `write ${path}`);
  }

  async directoryIn(txId: number, path: string): Promise<string[]> {
    const r = await this.request(XS_DIRECTORY, txId, nulStrings(path), `directory ${path}`);
    return splitStrings(r.payload);
  }

  async getPermsIn(txId: number, path: string): Promise<XsPerm[]> {
    const r = await this.request(XS_GET_PERMS, txId, nulStrings(path), `get_perms ${path}`);
    return splitStrings(r.payload).map(toXsPerm);
  }

  async setPermsIn(txId: number, path: string, perms: readonly XsPerm[]): Promise<void> {
    const payload = nulStrings(path, ...perms.map((p) => `${p.perm}${p.domid}`));
    await this.request(XS_SET_PERMS, txId, payload, `set_perms ${path}`);
  }

  async domainPathIn(txId: number, domid: number): Promise<string> {
    const r = await this.request(XS_GET_DOMAIN_PATH, txId, nulStrings(String(domid)), 'get_domain_path');
    return fromBytes(r.payload.subarray(0, Math.max(0, r.payload.indexOf(0))));
  }

  /** XS_TRANSACTION_START (inside a transaction: EBUSY, as xenstored answers). */
  async startTransaction(txId = 0): Promise<number> {
    const r = await this.request(XS_TRANSACTION_START, txId, nulStrings(''), 'transaction_start');
    return Number.parseInt(fromBytes(r.payload), 10);
  }

  /** XS_TRANSACTION_END: commit ("T"; EAGAIN on conflict) or abort ("F"). */
  async endTransaction(txId: number, commit: boolean): Promise<void> {
    await this.request(XS_TRANSACTION_END, txId, nulStrings(commit ? 'T' : 'F'), 'transaction_end');
  }

  async transactionIn<T>(txId: number, fn: (tx: XsClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const id = await this.startTransaction(txId);
      const tx = new XsTransaction(this, id);
      let result: T;
      try {
        result = await fn(tx);
      } catch (e) {
        try {
          await this.endTransaction(id, false);
        } catch {
          // the transaction is gone either way
        }
        throw e;
      }
      try {
        await this.endTransaction(id, true);
        return result;
      } catch (e) {
        if (!(e instanceof XsError) || e.code !== 'EAGAIN' || attempt >= XS_TRANSACTION_RETRIES) throw e;
      }
    }
  }
}

/** The view of a client inside one transaction: every operation carries its tx_id. */
class XsTransaction implements XsTransactionClient {
  readonly domid: number;
  private readonly core: XsClientCore;
  readonly txId: number;

  constructor(core: XsClientCore, txId: number) {
    this.core = core;
    this.domid = core.domid;
    this.txId = txId;
  }

  read(path: string): Promise<string> {
    return this.core.readIn(this.txId, path);
  }
  write(path: string, value: string): Promise<void> {
    return this.core.writeIn(this.txId, path, value);
  }
  async mkdir(path: string): Promise<void> {
    await this.core.request(XS_MKDIR, this.txId, nulStrings(path), `mkdir ${path}`);
  }
  async rm(path: string): Promise<void> {
    await this.core.request(XS_RM, this.txId, nulStrings(path), `rm ${path}`);
  }
  directory(path: string): Promise<string[]> {
    return this.core.directoryIn(this.txId, path);
  }
  getPerms(path: string): Promise<XsPerm[]> {
    return this.core.getPermsIn(this.txId, path);
  }
  setPerms(path: string, perms: readonly XsPerm[]): Promise<void> {
    return this.core.setPermsIn(this.txId, path, perms);
  }
  getPermissions(path: string): Promise<XsPerm[]> {
    return this.core.getPermsIn(this.txId, path);
  }
  setPermissions(path: string, perms: readonly XsPerm[]): Promise<void> {
    return this.core.setPermsIn(this.txId, path, perms);
  }
  /** Watches are not transactional (xenstored ignores the tx_id). */
  watch(path: string, token: string, cb?: XsWatchCallback): Promise<void> {
    return this.core.watch(path, token, cb);
  }
  watchDepth(path: string, token: string, depth: number, cb?: XsWatchCallback): Promise<void> {
    return this.core.watchDepth(path, token, depth, cb);
  }
  readWatch(options?: XsWaitOptions): Promise<XsWatchEvent> {
    return this.core.readWatch(options);
  }
  watchEvents(path: string, options?: XsWatchEventsOptions): AsyncGenerator<XsWatchEvent, void, undefined> {
    return this.core.watchEvents(path, options);
  }
  unwatch(path: string, token: string): Promise<void> {
    return this.core.unwatch(path, token);
  }
  getFeaturesSupported(): Promise<number> {
    return this.core.getFeaturesSupported();
  }
  /** Nested transactions: xenstored answers EBUSY. */
  async transactionStart(): Promise<XsTransactionClient> {
    return new XsTransaction(this.core, await this.core.startTransaction(this.txId));
  }
  transactionEnd(tx: XsTransactionClient, abort = false): Promise<void> {
    return this.core.endTransaction(tx.txId, !abort);
  }
  /** Nested transactions: xenstored answers EBUSY. */
  transaction<T>(fn: (tx: XsClient) => Promise<T>): Promise<T> {
    return this.core.transactionIn(this.txId, fn);
  }
  getDomainPath(domid: number): Promise<string> {
    return this.core.domainPathIn(this.txId, domid);
  }
  async close(): Promise<void> {
    throw new XsError('EINVAL', 'close inside a transaction');
  }
}

// ---- the guest's ring transport ----------------------------------------------------------------------

export interface XsRingOptions {
  /**
   * The domain's event-channel client (one per domain: a second one would
   * re-mask the ports of the first). Default: a new one.
   */
  events?: EventChannels;
  /**
   * The domain's one waiter on its events, when other code of the domain also
   * sleeps on them (say vchan's EventWaiter.until): at most one
   * EventChannels.wait may be in flight per domain, or one sleeper can take the
   * event another waits for. Default: a waiter of this client's own.
   */
  until?: (ready: () => boolean, signal?: AbortSignal) => Promise<void>;
  /** PV: where to map the ring page (default XENSTORE_RING_VA). */
  ringVa?: number;
}

/** Error thrown when the ring cannot be set up. */
export class XsRingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XsRingError';
  }
}

/**
 * The guest's xenstore connection over its ring page and event channel, as
 * Linux's xenbus_comms.c drives it.
 */
export class XsRingClient extends XsClientCore {
  readonly ctx: GuestContext;
  readonly events: EventChannels;
  /** Where the ring page is in the guest's address space. */
  readonly ring: number;
  /** The event channel to xenstored. */
  readonly port: number;
  private readonly untilFn: (ready: () => boolean, signal?: AbortSignal) => Promise<void>;
  /** Reassembly of the reply being read: its header, then its payload. */
  private readonly hdr = new Uint8Array(XSD_SOCKMSG_SIZE);
  private hdrUsed = 0;
  private body: Uint8Array | null = null;
  private bodyUsed = 0;
  /** Requests are written whole, one after another. */
  private writeLock: Promise<void> = Promise.resolve();

  /**
   * Connects to xenstore: maps the ring (PV: update_va_mapping of the MFN in
   * start.storeFrame; HVM: the page the toolstack placed at GFN storeFrame)
   * and binds a handler to start.storePort.
   */
  static open(ctx: GuestContext, o: XsRingOptions = {}): XsRingClient {
    return new XsRingClient(ctx, o);
  }

  private constructor(ctx: GuestContext, o: XsRingOptions) {
    super(ctx.start.domid);
    this.ctx = ctx;
    const { start } = ctx;
    if (!(start.storeFrame >= 0) || !(start.storePort > 0))
      throw new XsRingError(`d${start.domid}: no xenstore ring in start info`);
    this.port = start.storePort;
    if (start.kind === 'pv') {
      this.ring = o.ringVa ?? XENSTORE_RING_VA;
      const rc = ctx.hypercall(
        __HYPERVISOR_update_va_mapping,
        this.ring,
        start.storeFrame * XEN_PAGE_SIZE + (_PAGE_PRESENT | _PAGE_RW),
        0,
      );
      if (rc !== 0) throw new XsRingError(`d${start.domid}: cannot map the xenstore ring (${rc})`);
    } else {
      this.ring = start.storeFrame * XEN_PAGE_SIZE;
      if (!ctx.mem.mapped(this.ring, true))
        throw new XsRingError(`d${start.domid}: no xenstore ring at GFN ${start.storeFrame}`);
    }
    this.events = o.events ?? EventChannels.open(ctx);
    const waiter = new EventWaiter(this.events);
    this.untilFn = o.until ?? ((ready, signal) => waiter.until(ready, signal));
    const rc = this.events.bind(this.port, () => this.onEvent());
    if (rc !== 0)
      throw new XsRingError(`d${start.domid}: cannot bind the xenstore port ${this.port} (${rc})`);
    // Anything already there (the bind re-raises a pending port, delivered on the next poll).
    this.onEvent();
  }

  protected override onCallbackError(err: unknown): void {
    this.ctx.log(`xenstore: watch callback threw: ${err instanceof Error ? err.message : String(err)}`);
  }

  /** Sleeps until `ready()` holds, delivering the domain's events meanwhile. */
  protected override waitUntil(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    // abortable() too, for an `until` of the caller's that ignores the signal.
    return abortable(
      this.untilFn(() => ready() || this.failed !== null, signal),
      signal,
    );
  }

  /**
   * Delivers xenstore messages (and the domain's other events) until `ready()`
   * holds, sleeping in between: for guest code awaiting a watch with nothing
   * else to wait on. `ready()` is checked each time events are delivered, so
   * it must turn true from the delivery itself (a watch callback counting
   * events, say), not from a promise continuation that runs later: xenbus's
   * way, where the callback notes the event and the waiting code reads the
   * key. Rejects if the connection fails first, or with the signal's reason
   * when it aborts.
   */
  async waitFor(ready: () => boolean, options: XsWaitOptions = {}): Promise<void> {
    await this.waitUntil(ready, options.signal);
    const failed = this.failed;
    if (!ready() && failed !== null) throw failed;
  }

  protected override shutdown(): void {
    this.events.unbind(this.port);
  }

  // ---- the ring ---------------------------------------------------------------------------------

  /** xb_write: the message in chunks as room allows, notifying after each. */
  protected override sendMessage(bytes: Uint8Array): Promise<void> {
    const run = this.writeLock.then(() => this.writeAll(bytes));
    this.writeLock = run.catch(() => {});
    return run;
  }

  private async writeAll(bytes: Uint8Array): Promise<void> {
    const mem = this.ctx.mem;
    let off = 0;
    while (off < bytes.length) {
      const failed = this.failed;
      if (failed !== null) throw failed;
      const cons = mem.load32(this.ring + XS_RING_REQ_CONS);
      const prod = mem.load32(this.ring + XS_RING_REQ_PROD);
      if (!ringIndexesValid(cons, prod)) {
        const e = new XsError('EIO', 'request ring indexes corrupt');
        this.fail(e);
        throw e;
      }
      const used = (prod - cons) >>> 0;
      if (used === XENSTORE_RING_SIZE) {
        // Full: xenstored notifies when it consumes.
        await this.waitUntil(() => this.reqRoom());
        continue;
      }
      const n = Math.min(
        bytes.length - off,
        XENSTORE_RING_SIZE - used,
        XENSTORE_RING_SIZE - maskXenstoreIdx(prod),
      );
      // Data first, then the producer index (virt_wmb in between).
      mem.write(this.ring + XS_RING_REQ + maskXenstoreIdx(prod), bytes.subarray(off, off + n));
      mem.store32(this.ring + XS_RING_REQ_PROD, (prod + n) >>> 0);
      off += n;
      const rc = this.events.send(this.port);
      if (rc !== 0) {
        const e = new XsError('EIO', `notify on port ${this.port} failed (${rc})`);
        this.fail(e);
        throw e;
      }
    }
  }

  private reqRoom(): boolean {
    const mem = this.ctx.mem;
    const cons = mem.load32(this.ring + XS_RING_REQ_CONS);
    const prod = mem.load32(this.ring + XS_RING_REQ_PROD);
    return (prod - cons) >>> 0 !== XENSTORE_RING_SIZE;
  }

  /**
   * The store port's handler (xb_read / process_msg): takes what xenstored
   * wrote off the reply ring and dispatches each whole message.
   */
  private onEvent(): void {
    const mem = this.ctx.mem;
    for (;;) {
      if (this.failed !== null) return;
      const cons = mem.load32(this.ring + XS_RING_RSP_CONS);
      const prod = mem.load32(this.ring + XS_RING_RSP_PROD);
      if (!ringIndexesValid(cons, prod)) {
        this.fail(new XsError('EIO', 'reply ring indexes corrupt'));
        return;
      }
      const avail = (prod - cons) >>> 0;
      if (avail === 0) break;
      const want = this.body === null ? XSD_SOCKMSG_SIZE - this.hdrUsed : this.body.length - this.bodyUsed;
      const n = Math.min(avail, want, XENSTORE_RING_SIZE - maskXenstoreIdx(cons));
      const src = this.ring + XS_RING_RSP + maskXenstoreIdx(cons);
      if (n > 0) {
        const chunk = mem.read(src, n);
        if (this.body === null) {
          this.hdr.set(chunk, this.hdrUsed);
          this.hdrUsed += n;
        } else {
          this.body.set(chunk, this.bodyUsed);
          this.bodyUsed += n;
        }
        // The data is read before the consumer index moves.
        mem.store32(this.ring + XS_RING_RSP_CONS, (cons + n) >>> 0);
        // xenstored may be waiting for room in a ring that was full.
        if ((mem.load32(this.ring + XS_RING_RSP_PROD) - cons) >>> 0 >= XENSTORE_RING_SIZE)
          this.events.send(this.port);
      }
      if (this.body === null && this.hdrUsed === XSD_SOCKMSG_SIZE) {
        const h = decodeHeader(this.hdr);
        if (h.len > XENSTORE_PAYLOAD_MAX) {
          this.fail(new XsError('EIO', `reply of ${h.len} bytes`));
          return;
        }
        this.body = new Uint8Array(h.len);
        this.bodyUsed = 0;
      }
      if (this.body !== null && this.bodyUsed === this.body.length) {
        const h = decodeHeader(this.hdr);
        const m: XsMessage = { type: h.type, reqId: h.reqId, txId: h.txId, payload: this.body };
        this.body = null;
        this.hdrUsed = 0;
        this.receive(m);
      }
    }
  }
}
