// Xen's shared producer/consumer ring (`xen/include/public/io/ring.h`): the
// byte layout of the shared ring page(s) and the FRONT_/BACK_/RING_ macros, as
// objects. Reference: guest-side.md §7.1-§7.3 (and §8 item 1: u32 arithmetic).
//
// Both ends work on the same page(s), each through its own address space: the
// frontend on its own RAM, the backend on its mapping of the frontend's grants.
// A ring spans an area of one or more pages that are contiguous in the address
// space of the end using it (N granted pages mapped one after another).
//
// The four indices in the header (req_prod, req_event, rsp_prod, rsp_event)
// are shared words: every access goes through GuestMemory's load32/store32,
// with a fence() where ring.h has a barrier. Entries are plain bytes, written
// before the producer index that publishes them and copied out whole
// (RING_COPY_*) before a consumer validates them.
//
// The macros do no flow control and no locking, as in C: a frontend must not
// put more than `size` requests in flight (freeRequests() tells it), and each
// end must be used by one thread at a time.
import type { GuestMemory } from '../machine/guest-memory.ts';

/** A ring index (RING_IDX): an unsigned 32-bit number; all index arithmetic is modulo 2^32. */
export type RingIdx = number;

// ---- layout (§7.1) ------------------------------------------------------------------------------

/** `struct <name>_sring` field offsets. */
export const SRING_REQ_PROD = 0;
export const SRING_REQ_EVENT = 4;
export const SRING_RSP_PROD = 8;
export const SRING_RSP_EVENT = 12;
/** `pvt` union (netif.smartpoll_active, tapif_user.msg, pvt_pad[4]). */
export const SRING_PVT = 16;
export const SRING_PVT_SIZE = 4;
/** `__pad[44]`. */
export const SRING_PAD = 20;
export const SRING_PAD_SIZE = 44;
/** `ring[]`: the entries start here (offsetof(struct <name>_sring, ring)). */
export const SRING_RING = 64;
/** Bytes of header before the entries. */
export const SRING_HEADER_SIZE = SRING_RING;

/**
 * `__RD32`: rounds an unsigned 32-bit value down to the nearest power of two
 * (0 stays 0).
 */
export function roundDownPow2(x: number): number {
  const v = x >>> 0;
  return v === 0 ? 0 : 2 ** (31 - Math.clz32(v));
}

/**
 * Size of one ring slot for the given request and response sizes: a slot holds
 * the union of the two, so its size is the larger one rounded up to the
 * union's alignment (the strictest alignment of a member; 1 if unknown).
 */
export function ringEntrySize(requestSize: number, responseSize: number, align = 1): number {
  for (const [name, v] of [
    ['requestSize', requestSize],
    ['responseSize', responseSize],
    ['align', align],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer`);
  }
  const max = Math.max(requestSize, responseSize);
  return Math.ceil(max / align) * align;
}

/**
 * `__RING_SIZE`: the number of entries of a ring whose shared area (header and
 * entries) is `areaBytes` long: (areaBytes − 64) / entrySize, rounded down to
 * a power of two, so that indices are masked with (size − 1).
 */
export function ringSize(areaBytes: number, entrySize: number): number {
  if (!Number.isSafeInteger(entrySize) || entrySize < 1)
    throw new RangeError(`entry size must be a positive integer, not ${entrySize}`);
  if (!Number.isSafeInteger(areaBytes) || areaBytes < SRING_HEADER_SIZE || areaBytes > 0xffff_ffff)
    throw new RangeError(`ring area must be 64 bytes to 4 GiB, not ${areaBytes}`);
  return roundDownPow2(Math.floor((areaBytes - SRING_HEADER_SIZE) / entrySize));
}

/** Offset of the slot for index `idx` from the start of the shared ring. */
export function slotOffset(idx: RingIdx, size: number, entrySize: number): number {
  return SRING_RING + ((idx >>> 0) & (size - 1)) * entrySize;
}

// ---- the shared page --------------------------------------------------------------------------

/**
 * The shared header as one end sees it: accessors over the four shared words
 * (atomic loads and stores through GuestMemory) and the pvt bytes.
 */
export class SharedRing {
  readonly mem: GuestMemory;
  readonly base: number;

  constructor(mem: GuestMemory, base: number) {
    if (!Number.isSafeInteger(base) || base < 0 || base % 4 !== 0)
      throw new RangeError(`shared ring base must be a 4-aligned address, not ${base}`);
    this.mem = mem;
    this.base = base;
  }

  get reqProd(): RingIdx {
    return this.mem.load32(this.base + SRING_REQ_PROD);
  }
  set reqProd(v: RingIdx) {
    this.mem.store32(this.base + SRING_REQ_PROD, v >>> 0);
  }
  get reqEvent(): RingIdx {
    return this.mem.load32(this.base + SRING_REQ_EVENT);
  }
  set reqEvent(v: RingIdx) {
    this.mem.store32(this.base + SRING_REQ_EVENT, v >>> 0);
  }
  get rspProd(): RingIdx {
    return this.mem.load32(this.base + SRING_RSP_PROD);
  }
  set rspProd(v: RingIdx) {
    this.mem.store32(this.base + SRING_RSP_PROD, v >>> 0);
  }
  get rspEvent(): RingIdx {
    return this.mem.load32(this.base + SRING_RSP_EVENT);
  }
  set rspEvent(v: RingIdx) {
    this.mem.store32(this.base + SRING_RSP_EVENT, v >>> 0);
  }

  /** The 4 bytes of the `pvt` union (protocol-private: netif smartpoll, tapif msg). */
  pvt(): Uint8Array {
    return this.mem.read(this.base + SRING_PVT, SRING_PVT_SIZE);
  }
  setPvt(bytes: Uint8Array): void {
    if (bytes.length > SRING_PVT_SIZE) throw new RangeError('pvt is 4 bytes');
    this.mem.write(this.base + SRING_PVT, bytes);
  }

  /**
   * SHARED_RING_INIT: both producers 0, both events 1, pvt and pad zeroed.
   * Only the frontend initialises the shared ring, before it grants the page.
   */
  init(): void {
    this.rspProd = 0;
    this.reqProd = 0;
    this.rspEvent = 1;
    this.reqEvent = 1;
    this.mem.fill(this.base + SRING_PVT, SRING_PVT_SIZE, 0);
    this.mem.fill(this.base + SRING_PAD, SRING_PAD_SIZE, 0);
  }
}

/** SHARED_RING_INIT on the ring at `base`. */
export function sharedRingInit(mem: GuestMemory, base: number): void {
  new SharedRing(mem, base).init();
}

// ---- the two ends -----------------------------------------------------------------------------

/** The shape of a ring's entries. */
export interface RingLayout {
  /** Bytes of one slot: sizeof(union { request; response }) (see ringEntrySize). */
  entrySize: number;
  /** Bytes RING_COPY_REQUEST copies (sizeof the request type); default entrySize. */
  requestSize?: number;
  /** Bytes RING_COPY_RESPONSE copies (sizeof the response type); default entrySize. */
  responseSize?: number;
}

/** What both ends share: the shared ring, its size, and slot addressing. */
abstract class RingEnd {
  readonly mem: GuestMemory;
  /** Start of the shared ring in this end's address space. */
  readonly base: number;
  /** Bytes of the shared area (header and entries). */
  readonly areaBytes: number;
  readonly sring: SharedRing;
  /** RING_SIZE (nr_ents): a power of two. */
  readonly size: number;
  readonly entrySize: number;
  readonly requestSize: number;
  readonly responseSize: number;

  constructor(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout) {
    const entrySize = layout.entrySize;
    const size = ringSize(areaBytes, entrySize);
    if (size === 0)
      throw new RangeError(`a ${areaBytes}-byte area has no room for one ${entrySize}-byte entry`);
    const requestSize = layout.requestSize ?? entrySize;
    const responseSize = layout.responseSize ?? entrySize;
    for (const [name, v] of [
      ['requestSize', requestSize],
      ['responseSize', responseSize],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1 || v > entrySize)
        throw new RangeError(`${name} must be 1..entrySize (${entrySize}), not ${v}`);
    }
    this.mem = mem;
    this.sring = new SharedRing(mem, base);
    this.base = base;
    this.areaBytes = areaBytes;
    this.size = size;
    this.entrySize = entrySize;
    this.requestSize = requestSize;
    this.responseSize = responseSize;
  }

  /** RING_GET_REQUEST: address of the slot holding request `idx` (slot idx & (size − 1)). */
  requestAddr(idx: RingIdx): number {
    return this.base + slotOffset(idx, this.size, this.entrySize);
  }

  /** RING_GET_RESPONSE: address of the slot holding response `idx`. */
  responseAddr(idx: RingIdx): number {
    return this.base + slotOffset(idx, this.size, this.entrySize);
  }

  /**
   * RING_COPY_REQUEST: one read of the whole request into a private buffer.
   * Validate and use the copy, never the shared slot: the peer may change the
   * slot at any time (double-fetch defence).
   */
  copyRequest(idx: RingIdx): Uint8Array {
    return this.mem.read(this.requestAddr(idx), this.requestSize);
  }

  /** RING_COPY_RESPONSE: one read of the whole response into a private buffer. */
  copyResponse(idx: RingIdx): Uint8Array {
    return this.mem.read(this.responseAddr(idx), this.responseSize);
  }

  protected writeSlot(addr: number, bytes: Uint8Array, max: number, what: string): void {
    if (bytes.length > max) throw new RangeError(`a ${what} is at most ${max} bytes, not ${bytes.length}`);
    this.mem.write(addr, bytes);
  }
}

/**
 * The frontend's half (`<name>_front_ring`): it puts requests on the ring and
 * takes responses off it. Private indices: reqProdPvt (next request slot to
 * fill) and rspCons (next response to consume).
 */
export class FrontRing extends RingEnd {
  private reqProdPvtValue = 0;
  private rspConsValue = 0;

  /**
   * FRONT_RING_ATTACH(ring, sring, start, areaBytes): req_prod_pvt = rsp_cons =
   * start. The shared ring is left as it is (attach to a ring in use); with
   * start 0 this is FRONT_RING_INIT.
   */
  constructor(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout, start: RingIdx = 0) {
    super(mem, base, areaBytes, layout);
    this.reqProdPvtValue = start >>> 0;
    this.rspConsValue = start >>> 0;
  }

  /** FRONT_RING_ATTACH: the private indices at `start`; the shared ring as it is. */
  static attach(
    mem: GuestMemory,
    base: number,
    areaBytes: number,
    layout: RingLayout,
    start: RingIdx,
  ): FrontRing {
    return new FrontRing(mem, base, areaBytes, layout, start);
  }

  /** FRONT_RING_INIT: attach at index 0 (does not touch the shared ring). */
  static init(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout): FrontRing {
    return new FrontRing(mem, base, areaBytes, layout, 0);
  }

  /** XEN_FRONT_RING_INIT: SHARED_RING_INIT, then FRONT_RING_INIT. */
  static xenInit(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout): FrontRing {
    const ring = new FrontRing(mem, base, areaBytes, layout, 0);
    ring.sring.init();
    return ring;
  }

  get reqProdPvt(): RingIdx {
    return this.reqProdPvtValue;
  }
  set reqProdPvt(v: RingIdx) {
    this.reqProdPvtValue = v >>> 0;
  }
  get rspCons(): RingIdx {
    return this.rspConsValue;
  }
  set rspCons(v: RingIdx) {
    this.rspConsValue = v >>> 0;
  }

  /** RING_FREE_REQUESTS: size − (req_prod_pvt − rsp_cons). */
  freeRequests(): number {
    return (this.size - ((this.reqProdPvtValue - this.rspConsValue) >>> 0)) >>> 0;
  }

  /** RING_FULL: no free request slot. */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** XEN_RING_NR_UNCONSUMED_RESPONSES: sring.rsp_prod − rsp_cons (the backend's word, unchecked). */
  unconsumedResponses(): number {
    return (this.sring.rspProd - this.rspConsValue) >>> 0;
  }

  /** RING_HAS_UNCONSUMED_RESPONSES as a boolean. */
  hasUnconsumedResponses(): boolean {
    return this.unconsumedResponses() !== 0;
  }

  /** Writes request bytes into the slot of index `idx` (plain stores; published by a push). */
  writeRequest(idx: RingIdx, bytes: Uint8Array): void {
    this.writeSlot(this.requestAddr(idx), bytes, this.entrySize, 'request');
  }

  /**
   * RING_RESPONSE_PROD_OVERFLOW: (prod − rsp_cons) > size — a backend
   * claiming more responses than there can be (an ill-behaved backend).
   */
  responseProdOverflow(prod: RingIdx): boolean {
    return (prod - this.rspConsValue) >>> 0 > this.size;
  }

  /** RING_PUSH_REQUESTS: write barrier, then sring.req_prod = req_prod_pvt. */
  pushRequests(): void {
    this.mem.fence();
    this.sring.reqProd = this.reqProdPvtValue;
  }

  /**
   * RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes req_prod_pvt and returns
   * whether the backend asked to be notified of one of the requests just
   * published: (new − req_event) < (new − old), all u32.
   */
  pushRequestsAndCheckNotify(): boolean {
    const old = this.sring.reqProd;
    const now = this.reqProdPvtValue;
    this.mem.fence(); // the backend sees the requests before the index
    this.sring.reqProd = now;
    this.mem.fence(); // the backend sees the index before we read req_event
    const event = this.sring.reqEvent;
    return shouldNotify(old, now, event);
  }

  /**
   * RING_FINAL_CHECK_FOR_RESPONSES: before sleeping. True if responses are
   * waiting; otherwise asks to be notified at the next one (rsp_event =
   * rsp_cons + 1), full barrier, and checks again (closing the race with a
   * backend that pushed in between).
   */
  finalCheckForResponses(): boolean {
    if (this.hasUnconsumedResponses()) return true;
    this.sring.rspEvent = this.rspConsValue + 1;
    this.mem.fence();
    return this.hasUnconsumedResponses();
  }
}

/**
 * The backend's half (`<name>_back_ring`): it takes requests off the ring and
 * puts responses on it. Private indices: reqCons (next request to consume) and
 * rspProdPvt (next response slot to fill).
 */
export class BackRing extends RingEnd {
  private rspProdPvtValue = 0;
  private reqConsValue = 0;

  /**
   * BACK_RING_ATTACH(ring, sring, start, areaBytes): rsp_prod_pvt = req_cons =
   * start; with start 0 this is BACK_RING_INIT. The backend never initialises
   * the shared ring.
   */
  constructor(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout, start: RingIdx = 0) {
    super(mem, base, areaBytes, layout);
    this.rspProdPvtValue = start >>> 0;
    this.reqConsValue = start >>> 0;
  }

  /** BACK_RING_ATTACH: the private indices at `start`. */
  static attach(
    mem: GuestMemory,
    base: number,
    areaBytes: number,
    layout: RingLayout,
    start: RingIdx,
  ): BackRing {
    return new BackRing(mem, base, areaBytes, layout, start);
  }

  /** BACK_RING_INIT: attach at index 0. */
  static init(mem: GuestMemory, base: number, areaBytes: number, layout: RingLayout): BackRing {
    return new BackRing(mem, base, areaBytes, layout, 0);
  }

  get rspProdPvt(): RingIdx {
    return this.rspProdPvtValue;
  }
  set rspProdPvt(v: RingIdx) {
    this.rspProdPvtValue = v >>> 0;
  }
  get reqCons(): RingIdx {
    return this.reqConsValue;
  }
  set reqCons(v: RingIdx) {
    this.reqConsValue = v >>> 0;
  }

  /**
   * XEN_RING_NR_UNCONSUMED_REQUESTS: min(sring.req_prod − req_cons,
   * size − (req_cons − rsp_prod_pvt)). The second term caps what a malicious
   * frontend can claim at the number of response slots still free.
   */
  unconsumedRequests(): number {
    const req = (this.sring.reqProd - this.reqConsValue) >>> 0;
    const rsp = (this.size - ((this.reqConsValue - this.rspProdPvtValue) >>> 0)) >>> 0;
    return Math.min(req, rsp);
  }

  /** RING_HAS_UNCONSUMED_REQUESTS as a boolean. */
  hasUnconsumedRequests(): boolean {
    return this.unconsumedRequests() !== 0;
  }

  /** Writes response bytes into the slot of index `idx` (plain stores; published by a push). */
  writeResponse(idx: RingIdx, bytes: Uint8Array): void {
    this.writeSlot(this.responseAddr(idx), bytes, this.entrySize, 'response');
  }

  /**
   * RING_REQUEST_CONS_OVERFLOW: (cons − rsp_prod_pvt) ≥ size — consuming
   * request `cons` would overwrite a slot whose response is not yet produced
   * (the loop-termination check of a backend).
   */
  requestConsOverflow(cons: RingIdx): boolean {
    return (cons - this.rspProdPvtValue) >>> 0 >= this.size;
  }

  /**
   * RING_REQUEST_PROD_OVERFLOW: (prod − rsp_prod_pvt) > size — a frontend
   * claiming more requests than there can be (an ill-behaved frontend).
   */
  requestProdOverflow(prod: RingIdx): boolean {
    return (prod - this.rspProdPvtValue) >>> 0 > this.size;
  }

  /** RING_PUSH_RESPONSES: write barrier, then sring.rsp_prod = rsp_prod_pvt. */
  pushResponses(): void {
    this.mem.fence();
    this.sring.rspProd = this.rspProdPvtValue;
  }

  /**
   * RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publishes rsp_prod_pvt and returns
   * whether the frontend asked to be notified of one of the responses just
   * published: (new − rsp_event) < (new − old), all u32.
   */
  pushResponsesAndCheckNotify(): boolean {
    const old = this.sring.rspProd;
    const now = this.rspProdPvtValue;
    this.mem.fence(); // the frontend sees the responses before the index
    this.sring.rspProd = now;
    this.mem.fence(); // the frontend sees the index before we read rsp_event
    const event = this.sring.rspEvent;
    return shouldNotify(old, now, event);
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS: before sleeping. True if requests are
   * waiting; otherwise req_event = req_cons + 1, full barrier, check again.
   */
  finalCheckForRequests(): boolean {
    if (this.hasUnconsumedRequests()) return true;
    this.sring.reqEvent = this.reqConsValue + 1;
    this.mem.fence();
    return this.hasUnconsumedRequests();
  }
}

/**
 * The notification decision of RING_PUSH_*_AND_CHECK_NOTIFY after moving the
 * producer index from `old` to `now` with the consumer's event index `event`:
 * (now − event) < (now − old) as u32, i.e. event lies in (old, now].
 */
export function shouldNotify(old: RingIdx, now: RingIdx, event: RingIdx): boolean {
  return (now - event) >>> 0 < (now - old) >>> 0;
}
