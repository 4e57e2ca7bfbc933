// The xenstore service: the store of src/io/xenstore/xenstored.ts served to
// guests over Xen's real transport, from wherever the hypervisor runs (this
// thread in single-thread mode, the toolstack thread in worker mode).
//
// What the toolstack does at domain creation (libxl / xc_dom, and Xen's own
// dom0less builder alloc_xenstore_page / alloc_xenstore_evtchn):
// - the ring: one more page of the domain, zeroed, outside its RAM (the guest's
//   page allocator hands out all of RAM), counted in its pages (max_pages gets
//   a page of slack, as libxl's); an HVM domain finds it at GFN
//   XENSTORE_RING_VA / 4096 (HVM_PARAM_STORE_PFN), a PV domain maps its MFN
//   (start_info.store_mfn). server_features advertises the error field;
//   connection is XENSTORE_CONNECTED from the start.
// - grant reference 1 (GNTTAB_RESERVED_XENSTORE) seeded for dom0 with the
//   ring's frame, as xc_dom_gnttab_seed does, so dom0 can map it as xenstored
//   does;
// - the event channel: a port of the domain offered to itself
//   (start_info.store_evtchn) and bound at once to a Xen-attached port of the
//   same domain whose consumer is this service (event-channel.ts
//   bindXenConsumer). The guest's EVTCHNOP_send on its port runs kick() inside
//   the hypercall; the service answers with notify_via_xen_event_channel.
// - its home, /local/domain/<domid>, owned by it (XenStore.introduceDomain).
//
// kick() reads requests off the ring (through machine memory, index words
// with the shared-word atomics), hands each whole one to the store, and
// writes queued replies and watch events back as room allows, as xenstored's
// domain.c readchn/writechn do; a bad index or an over-long request makes it
// ignore the connection (the ring's error field says why). The ring frame is
// checked to still be the domain's before every access: a guest that gives
// the page away loses its connection, never writes into another's page.
// When Xen destroys a domain (Hypervisor.domainDestroyed), its connection,
// watches and nodes go.
import { GTF_permit_access } from '../abi/flags.ts';
import { GNTTAB_RESERVED_XENSTORE, XEN_PAGE_SIZE } from '../abi/limits.ts';
import { XENSTORE_RING_VA } from '../guest/layout.ts';
import type { XsClient } from '../io/xenstore/api.ts';
import {
  decodeHeader,
  decodeMessage,
  maskXenstoreIdx,
  ringIndexesValid,
  XENSTORE_CONNECTED,
  XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_RING_SIZE,
  XS_RING_CONNECTION,
  XS_RING_ERROR,
  XS_RING_REQ,
  XS_RING_REQ_CONS,
  XS_RING_REQ_PROD,
  XS_RING_RSP,
  XS_RING_RSP_CONS,
  XS_RING_RSP_PROD,
  XS_RING_SERVER_FEATURES,
  XSD_SOCKMSG_SIZE,
} from '../io/xenstore/wire.ts';
import {
  XENSTORED_FEATURES,
  XenStore,
  XS_QUOTA,
  type XsConnection,
  type XsStats,
} from '../io/xenstore/xenstored.ts';
import type { Domain } from '../xen/domain.ts';
import { allocUnbound, bindXenConsumer, closePort, notifyViaXenEventChannel } from '../xen/event-channel.ts';
import { PGC_allocated } from '../xen/frame-table.ts';
import type { CreateDomainOptions, Hypervisor } from '../xen/hypervisor.ts';

/** Where a domain's xenstore is, as StartInfo tells it. */
export interface StoreEndpoint {
  /** PV: the ring's MFN; HVM: its GFN; -1: none. */
  storeFrame: number;
  /** The domain's event channel to xenstore; 0: none. */
  storePort: number;
}

export const NO_STORE: StoreEndpoint = { storeFrame: -1, storePort: 0 };

/** GFN of an HVM domain's ring page (HVM_PARAM_STORE_PFN). */
export const XENSTORE_RING_GFN = XENSTORE_RING_VA / XEN_PAGE_SIZE;

/** A domain's ring as the service sees it. */
interface Ring {
  readonly d: Domain;
  readonly domid: number;
  readonly mfn: number;
  /** Machine address of the ring page. */
  readonly base: number;
  readonly storeFrame: number;
  /** The domain's own port (start_info.store_evtchn). */
  readonly guestPort: number;
  /** The Xen-attached port the service notifies through. */
  readonly xenPort: number;
  readonly conn: XsConnection;
  /** The request being read: its header, then its payload. */
  readonly hdr: Uint8Array;
  hdrUsed: number;
  body: Uint8Array | null;
  bodyUsed: number;
  /** Inside kick(): output queued meanwhile is written by its loop. */
  busy: boolean;
}

export interface XsServiceStats extends XsStats {
  /** Domains with a ring. */
  rings: number[];
}

export class XenstoreService {
  readonly store: XenStore;
  /** Exceptions inside the service (bugs), reported by checkInvariants. */
  readonly errors: unknown[] = [];
  private readonly hv: Hypervisor;
  private readonly rings = new Map<number, Ring>();

  constructor(hv: Hypervisor) {
    this.hv = hv;
    this.store = new XenStore({ domainExists: (id) => this.live(id) });
    hv.domainDestroyed.push((d) => this.release(d));
  }

  /** createDomain options with room for the ring page: max_pages one page up (libxl leaves slack too). */
  static domainOptions<T extends CreateDomainOptions>(o: T): T {
    const kib = o.memoryKiB ?? 4096;
    return { ...o, maxMemoryKiB: (o.maxMemoryKiB ?? kib) + XEN_PAGE_SIZE / 1024 };
  }

  private live(domid: number): boolean {
    const d = this.hv.domainById(domid);
    return d !== undefined && !d.isDying;
  }

  /**
   * The toolstack's part for a new domain: ring page, grant reference 1,
   * event channel, introduction to the store. Throws when the domain has no
   * room for them (the caller destroys it).
   */
  attach(d: Domain): StoreEndpoint {
    if (this.rings.has(d.domid)) throw new Error(`d${d.domid} already has a xenstore ring`);
    const hv = this.hv;
    const mfn = hv.populateSpecialPage(d, XENSTORE_RING_GFN);
    if (mfn < 0)
      throw new RangeError(`d${d.domid}: no room for the xenstore ring page (max_pages or machine memory)`);
    const base = mfn * XEN_PAGE_SIZE;
    const storeFrame = d.translated ? XENSTORE_RING_GFN : mfn;
    const w = hv.machine.words;
    w.store32(base + XS_RING_SERVER_FEATURES, XENSTORED_FEATURES);
    w.store32(base + XS_RING_CONNECTION, XENSTORE_CONNECTED);
    // xc_dom_gnttab_seed: entry GNTTAB_RESERVED_XENSTORE grants the ring to the
    // store domain (dom0), flags written last.
    const gt = d.gt;
    if (gt.version === 1 && gt.nrGrantEntries() > GNTTAB_RESERVED_XENSTORE) {
      const e = gt.shaAddr(GNTTAB_RESERVED_XENSTORE);
      hv.machine.view.setUint16(e + 2, 0, true);
      hv.machine.view.setUint32(e + 4, storeFrame, true);
      w.store16(e, GTF_permit_access);
    }
    const guestPort = allocUnbound(hv, d, d.domid, d.domid);
    if (guestPort < 0) throw new RangeError(`d${d.domid}: no port for xenstore (${guestPort})`);
    const xenPort = bindXenConsumer(hv, d, d, guestPort, (dd) => this.kick(dd.domid));
    if (xenPort < 0) {
      closePort(hv, d, guestPort);
      throw new RangeError(`d${d.domid}: no Xen-attached port for xenstore (${xenPort})`);
    }
    const conn = this.store.introduceDomain(d.domid);
    const r: Ring = {
      d,
      domid: d.domid,
      mfn,
      base,
      storeFrame,
      guestPort,
      xenPort,
      conn,
      hdr: new Uint8Array(XSD_SOCKMSG_SIZE),
      hdrUsed: 0,
      body: null,
      bodyUsed: 0,
      busy: false,
    };
    conn.onOutput = () => this.flushOut(r);
    this.rings.set(d.domid, r);
    return { storeFrame, storePort: guestPort };
  }

  /** Where the domain's xenstore is (NO_STORE when it has none). */
  endpoint(domid: number): StoreEndpoint {
    const r = this.rings.get(domid);
    return r === undefined ? NO_STORE : { storeFrame: r.storeFrame, storePort: r.guestPort };
  }

  /** A domain is gone (Hypervisor.domainDestroyed): its ports and pages are already. */
  private release(d: Domain): void {
    const r = this.rings.get(d.domid);
    if (r === undefined || r.d !== d) return;
    this.rings.delete(d.domid);
    this.store.releaseDomain(d.domid);
  }

  /** The toolstack's client in this thread (a privileged tool connection). */
  toolClient(): XsClient {
    return this.store.openToolClient();
  }

  /**
   * A tool connection whose messages travel elsewhere (worker mode: to the
   * host thread): `deliver` gets each reply and watch event in wire form.
   */
  openToolConnection(deliver: (bytes: Uint8Array) => void): {
    send(bytes: Uint8Array): void;
    close(): void;
  } {
    const conn = this.store.connectTool();
    conn.onOutput = () => {
      for (const m of conn.out.splice(0)) deliver(m.bytes);
    };
    return {
      send: (bytes) => {
        const msg = decodeMessage(bytes);
        if (msg !== null) this.store.handle(conn, msg);
      },
      close: () => this.store.disconnect(conn),
    };
  }

  stats(): XsServiceStats {
    return { ...this.store.stats(), rings: [...this.rings.keys()].sort((a, b) => a - b) };
  }

  /**
   * The store's consistency, no connection or watch left for a domain that is
   * gone, a ring for every introduced domain and none for a dead one, and no
   * exception inside the service.
   */
  checkInvariants(): string[] {
    const out: string[] = [];
    for (const e of this.errors)
      out.push(`xenstore service error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    out.push(...this.store.checkInvariants((id) => this.live(id)));
    for (const [domid, r] of this.rings) {
      if (this.hv.domainById(domid) !== r.d || r.d.isDying) out.push(`xenstore: ring of dead d${domid}`);
      if (this.store.domainConnection(domid) !== r.conn)
        out.push(`xenstore: d${domid}'s ring is not its store connection`);
    }
    for (const c of this.store.connections)
      if (c.kind === 'domain' && !this.rings.has(c.domid))
        out.push(`xenstore: connection of d${c.domid} without a ring`);
    return out;
  }

  // ---- the ring ---------------------------------------------------------------------------------

  /** The Xen-attached port's consumer: the guest notified its store port. */
  private kick(domid: number): void {
    const r = this.rings.get(domid);
    if (r === undefined || r.busy) return;
    const conn = r.conn;
    if (conn.ignored || conn.closed) return;
    r.busy = true;
    let moved = false;
    try {
      for (;;) {
        if (!this.ringOwned(r)) {
          this.store.ignoreConnection(conn);
          break;
        }
        const w = this.writeOut(r);
        if (w < 0) {
          this.bad(r, XENSTORE_ERROR_RINGIDX);
          break;
        }
        const rd = this.readIn(r);
        if (rd < 0) {
          this.bad(r, rd === -2 ? XENSTORE_ERROR_PROTO : XENSTORE_ERROR_RINGIDX);
          break;
        }
        if (w === 0 && rd === 0) break;
        moved = true;
      }
    } catch (e) {
      this.errors.push(e);
      this.store.ignoreConnection(conn);
    } finally {
      r.busy = false;
    }
    if (moved) notifyViaXenEventChannel(this.hv, r.d, r.xenPort);
  }

  /** Output queued for the domain outside its own kick (watch events, say): written now. */
  private flushOut(r: Ring): void {
    if (r.busy || r.conn.ignored || r.conn.closed) return;
    try {
      if (!this.ringOwned(r)) {
        this.store.ignoreConnection(r.conn);
        return;
      }
      const n = this.writeOut(r);
      if (n < 0) this.bad(r, XENSTORE_ERROR_RINGIDX);
      else if (n > 0) notifyViaXenEventChannel(this.hv, r.d, r.xenPort);
    } catch (e) {
      this.errors.push(e);
      this.store.ignoreConnection(r.conn);
    }
  }

  /** The ring frame still belongs to its live domain. */
  private ringOwned(r: Ring): boolean {
    const f = this.hv.frames;
    return !r.d.isDying && f.owner[r.mfn] === r.domid && (f.flags[r.mfn]! & PGC_allocated) !== 0;
  }

  /** ignore_connection: the error field says why (XENSTORE_SERVER_FEATURE_ERROR). */
  private bad(r: Ring, err: number): void {
    this.hv.machine.words.store32(r.base + XS_RING_ERROR, err);
    this.store.ignoreConnection(r.conn);
  }

  /** writechn: queued messages into the reply ring as room allows; bytes written, or -1 (bad indexes). */
  private writeOut(r: Ring): number {
    const w = this.hv.machine.words;
    const u8 = this.hv.machine.u8;
    const out = r.conn.out;
    let total = 0;
    while (out.length > 0 && !r.conn.ignored) {
      const m = out[0]!;
      // The indexes once, before anything else, and verified.
      const cons = w.load32(r.base + XS_RING_RSP_CONS);
      const prod = w.load32(r.base + XS_RING_RSP_PROD);
      if (!ringIndexesValid(cons, prod)) return -1;
      const room = XENSTORE_RING_SIZE - ((prod - cons) >>> 0);
      if (room === 0) break;
      const n = Math.min(room, XENSTORE_RING_SIZE - maskXenstoreIdx(prod), m.bytes.length - m.used);
      u8.set(m.bytes.subarray(m.used, m.used + n), r.base + XS_RING_RSP + maskXenstoreIdx(prod));
      w.store32(r.base + XS_RING_RSP_PROD, (prod + n) >>> 0);
      m.used += n;
      total += n;
      if (m.used === m.bytes.length) out.shift();
    }
    return total;
  }

  /**
   * readchn + handle_input: requests off the ring, each whole one handled;
   * bytes consumed, -1 (bad indexes) or -2 (a payload over XENSTORE_PAYLOAD_MAX).
   */
  private readIn(r: Ring): number {
    const w = this.hv.machine.words;
    const u8 = this.hv.machine.u8;
    const conn = r.conn;
    let total = 0;
    for (;;) {
      if (conn.ignored || conn.closed) break;
      // domain_can_read: an unprivileged domain with too many replies unread waits.
      if (conn.unprivileged && conn.pendingReplies >= XS_QUOTA.outstanding) break;
      const cons = w.load32(r.base + XS_RING_REQ_CONS);
      const prod = w.load32(r.base + XS_RING_REQ_PROD);
      if (!ringIndexesValid(cons, prod)) return -1;
      const avail = (prod - cons) >>> 0;
      if (avail === 0) break;
      const want = r.body === null ? XSD_SOCKMSG_SIZE - r.hdrUsed : r.body.length - r.bodyUsed;
      const n = Math.min(avail, want, XENSTORE_RING_SIZE - maskXenstoreIdx(cons));
      if (n > 0) {
        const src = r.base + XS_RING_REQ + maskXenstoreIdx(cons);
        if (r.body === null) {
          r.hdr.set(u8.subarray(src, src + n), r.hdrUsed);
          r.hdrUsed += n;
        } else {
          r.body.set(u8.subarray(src, src + n), r.bodyUsed);
          r.bodyUsed += n;
        }
        w.store32(r.base + XS_RING_REQ_CONS, (cons + n) >>> 0);
        total += n;
      }
      if (r.body === null && r.hdrUsed === XSD_SOCKMSG_SIZE) {
        const h = decodeHeader(r.hdr);
        if (h.len > XENSTORE_PAYLOAD_MAX) return -2;
        r.body = new Uint8Array(h.len);
        r.bodyUsed = 0;
      }
      if (r.body !== null && r.bodyUsed === r.body.length) {
        const h = decodeHeader(r.hdr);
        const payload = r.body;
        r.body = null;
        r.hdrUsed = 0;
        this.store.handle(conn, { type: h.type, reqId: h.reqId, txId: h.txId, payload });
      }
    }
    return total;
  }
}
