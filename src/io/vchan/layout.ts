// libxenvchan's shared control page (`struct vchan_interface` in Xen's
// xen/include/public/io/libxenvchan.h) and the placement and size rules of its
// two byte rings (tools/libs/vchan/init.c). Reference: guest-side.md §6.1,
// §6.2 step 2 (the server's choice of orders) and §6.3 step 4 (the client's
// validation).
//
// Left ring: the client writes, the server reads. Right ring: the server
// writes, the client reads. Each ring is 2^order bytes: order 10 lives inside
// the control page at offset 1024, order 11 at offset 2048, orders 12..20 are
// 2^(order-12) separately granted pages whose refs are listed in grants[]
// (the left ring's pages first, then the right ring's).
import { XEN_PAGE_SHIFT } from '../../abi/limits.ts';

/** `struct ring_shared left`: cons, prod (u32 each). */
export const VCHAN_LEFT_CONS = 0;
export const VCHAN_LEFT_PROD = 4;
/** `struct ring_shared right`. */
export const VCHAN_RIGHT_CONS = 8;
export const VCHAN_RIGHT_PROD = 12;
/** u16 each: log2 of the ring sizes in bytes. */
export const VCHAN_LEFT_ORDER = 16;
export const VCHAN_RIGHT_ORDER = 18;
/** u8: 0 client exited, 1 connected, 2 not yet connected. */
export const VCHAN_CLI_LIVE = 20;
/** u8: 0 server exited, 1 alive. */
export const VCHAN_SRV_LIVE = 21;
/** u8: the bits the client checks when it acts (set by the server). */
export const VCHAN_CLI_NOTIFY = 22;
/** u8: the bits the server checks when it acts (set by the client). */
export const VCHAN_SRV_NOTIFY = 23;
/** u32 grants[]: refs of the multi-page rings, left's first. */
export const VCHAN_GRANTS = 24;

/**
 * The aligned 16-bit shared words that hold the u8 fields. JavaScript has no
 * 8-bit atomics on the shared words module, so each byte is reached through
 * the little-endian u16 that contains it: cli_live is the low byte and
 * srv_live the high byte of the word at 20; cli_notify the low byte and
 * srv_notify the high byte of the word at 22.
 */
export const VCHAN_LIVE_WORD = 20;
export const VCHAN_NOTIFY_WORD = 22;

/** VCHAN_NOTIFY_WRITE: "signal me when you write data". */
export const VCHAN_NOTIFY_WRITE = 0x1;
/** VCHAN_NOTIFY_READ: "signal me when you consume data". */
export const VCHAN_NOTIFY_READ = 0x2;

/** cli_live values. */
export const VCHAN_CLIENT_EXITED = 0;
export const VCHAN_CLIENT_CONNECTED = 1;
export const VCHAN_CLIENT_NOT_CONNECTED = 2;

/** SMALL_RING_SHIFT: a 1 KiB ring inside the control page. */
export const SMALL_RING_SHIFT = 10;
/** LARGE_RING_SHIFT: a 2 KiB ring inside the control page. */
export const LARGE_RING_SHIFT = 11;
export const MAX_SMALL_RING = 1 << SMALL_RING_SHIFT;
export const SMALL_RING_OFFSET = 1024;
export const MAX_LARGE_RING = 1 << LARGE_RING_SHIFT;
export const LARGE_RING_OFFSET = 2048;
/** MAX_RING_SHIFT: beyond it the grant list would not fit the control page. */
export const MAX_RING_SHIFT = 20;
export const MAX_RING_SIZE = 1 << MAX_RING_SHIFT;

export interface VchanOrders {
  /** The left ring (client writes, server reads). */
  left: number;
  /** The right ring (server writes, client reads). */
  right: number;
}

/** init.c min_order: the smallest n >= 12 with 2^n >= size. */
export function minOrder(size: number): number {
  let rv = XEN_PAGE_SHIFT;
  while (size > 2 ** rv) rv++;
  return rv;
}

/**
 * The server's choice of orders (libxenvchan_server_init, §6.2 step 2) for a
 * receive (left) ring of at least leftMin bytes and a send (right) ring of at
 * least rightMin bytes; null when either exceeds MAX_RING_SIZE. In-page rings
 * are preferred; an order-10 ring only occurs when both rings are in-page,
 * which keeps grants[] (from byte 24) clear of a ring at offset 1024.
 */
export function serverOrders(leftMin: number, rightMin: number): VchanOrders | null {
  if (!(leftMin >= 0 && rightMin >= 0) || leftMin > MAX_RING_SIZE || rightMin > MAX_RING_SIZE) return null;
  let left = minOrder(leftMin);
  let right = minOrder(rightMin);
  if (leftMin <= MAX_SMALL_RING && rightMin <= MAX_LARGE_RING) {
    left = SMALL_RING_SHIFT;
    right = LARGE_RING_SHIFT;
  } else if (leftMin <= MAX_LARGE_RING && rightMin <= MAX_SMALL_RING) {
    left = LARGE_RING_SHIFT;
    right = SMALL_RING_SHIFT;
  } else if (leftMin <= MAX_LARGE_RING) {
    left = LARGE_RING_SHIFT;
  } else if (rightMin <= MAX_LARGE_RING) {
    right = LARGE_RING_SHIFT;
  }
  return { left, right };
}

/**
 * The client's check of the orders it reads from the page (init_gnt_cli,
 * §6.3 step 4): each in 10..20, and not both the same in-page order (two rings
 * cannot share one offset). Returns a reason when they are refused.
 */
export function validateOrders(o: VchanOrders): string | null {
  for (const [name, v] of [
    ['left', o.left],
    ['right', o.right],
  ] as const) {
    if (v < SMALL_RING_SHIFT || v > MAX_RING_SHIFT)
      return `${name} order ${v} outside ${SMALL_RING_SHIFT}..${MAX_RING_SHIFT}`;
  }
  if (o.left === o.right && o.left < XEN_PAGE_SHIFT)
    return `both rings in-page at the same offset (order ${o.left})`;
  return null;
}

/** Offset of an in-page ring in the control page (order 10 or 11), or -1 for a multi-page ring. */
export function inPageOffset(order: number): number {
  if (order === SMALL_RING_SHIFT) return SMALL_RING_OFFSET;
  if (order === LARGE_RING_SHIFT) return LARGE_RING_OFFSET;
  return -1;
}

/** Granted pages a ring of this order takes (0 for an in-page ring). */
export function ringPages(order: number): number {
  return order >= XEN_PAGE_SHIFT ? 1 << (order - XEN_PAGE_SHIFT) : 0;
}
