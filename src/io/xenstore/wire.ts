// Xen's xenstore wire protocol (xen/include/public/io/xs_wire.h): the message
// types and their numbers, the error names as xenstored sends them, struct
// xsd_sockmsg (the 16-byte header before every payload), and struct
// xenstore_domain_interface (the ring page shared by a domain and xenstored).
// Used by the guest client and by the service alike; imports nothing.

// ---- enum xsd_sockmsg_type ---------------------------------------------------------------------

export const XS_CONTROL = 0;
/** The old name of XS_CONTROL. */
export const XS_DEBUG = XS_CONTROL;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
/* XS_RESTRICT (20) has been removed. */
export const XS_RESET_WATCHES = 21;
export const XS_DIRECTORY_PART = 22;
export const XS_GET_FEATURE = 23;
export const XS_SET_FEATURE = 24;
export const XS_GET_QUOTA = 25;
export const XS_SET_QUOTA = 26;
/** Number of valid types. */
export const XS_TYPE_COUNT = 27;
/** Guaranteed to remain an invalid type. */
export const XS_INVALID = 0xffff;

/** struct xsd_errors, in xs_wire.h's order (new errors are only ever appended). */
export const XSD_ERRORS = [
  'EINVAL',
  'EACCES',
  'EEXIST',
  'EISDIR',
  'ENOENT',
  'ENOMEM',
  'ENOSPC',
  'EIO',
  'ENOTEMPTY',
  'ENOSYS',
  'EROFS',
  'EBUSY',
  'EAGAIN',
  'EISCONN',
  'E2BIG',
  'EPERM',
] as const;
export type XsErrno = (typeof XSD_ERRORS)[number];

// ---- struct xsd_sockmsg ------------------------------------------------------------------------

/** sizeof(struct xsd_sockmsg): type, req_id, tx_id, len, each a little-endian uint32_t. */
export const XSD_SOCKMSG_SIZE = 16;

/** Violating this is very bad (docs/misc/xenstore.txt): xenstored drops the connection. */
export const XENSTORE_PAYLOAD_MAX = 4096;
/** Violating these just gets you an error back. */
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** One message: a request, a reply, or a watch event. */
export interface XsMessage {
  type: number;
  /** Echoed in the daemon's reply; 0 in watch events. */
  reqId: number;
  /** The transaction (0: none). */
  txId: number;
  payload: Uint8Array;
}

/** Header and payload in wire form. */
export function encodeMessage(m: XsMessage): Uint8Array {
  const out = new Uint8Array(XSD_SOCKMSG_SIZE + m.payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, m.type >>> 0, true);
  v.setUint32(4, m.reqId >>> 0, true);
  v.setUint32(8, m.txId >>> 0, true);
  v.setUint32(12, m.payload.length, true);
  out.set(m.payload, XSD_SOCKMSG_SIZE);
  return out;
}

export interface XsHeader {
  type: number;
  reqId: number;
  txId: number;
  len: number;
}

export function decodeHeader(b: Uint8Array): XsHeader {
  const v = new DataView(b.buffer, b.byteOffset, XSD_SOCKMSG_SIZE);
  return {
    type: v.getUint32(0, true),
    reqId: v.getUint32(4, true),
    txId: v.getUint32(8, true),
    len: v.getUint32(12, true),
  };
}

/** A whole message in wire form (header then payload) back to its parts; null if it is cut short. */
export function decodeMessage(b: Uint8Array): XsMessage | null {
  if (b.length < XSD_SOCKMSG_SIZE) return null;
  const h = decodeHeader(b);
  if (b.length < XSD_SOCKMSG_SIZE + h.len) return null;
  return {
    type: h.type,
    reqId: h.reqId,
    txId: h.txId,
    payload: b.slice(XSD_SOCKMSG_SIZE, XSD_SOCKMSG_SIZE + h.len),
  };
}

// ---- payload strings ---------------------------------------------------------------------------

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

export function toBytes(s: string): Uint8Array {
  return utf8.encode(s);
}

export function fromBytes(b: Uint8Array): string {
  return utf8d.decode(b);
}

/** Each string followed by a nul, as requests carry paths, tokens and permissions. */
export function nulStrings(...parts: string[]): Uint8Array {
  const enc = parts.map((p) => utf8.encode(p));
  const out = new Uint8Array(enc.reduce((n, e) => n + e.length + 1, 0));
  let off = 0;
  for (const e of enc) {
    out.set(e, off);
    off += e.length + 1;
  }
  return out;
}

/** Byte arrays one after another (XS_WRITE: "path\0" then the raw value). */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * The nul-terminated strings at the start of a payload (xenstored's
 * get_strings): bytes after the last nul are not a string.
 */
export function splitStrings(b: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0) {
      out.push(utf8d.decode(b.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

// ---- struct xenstore_domain_interface (the ring page) -------------------------------------------

export const XENSTORE_RING_SIZE = 1024;
/** MASK_XENSTORE_IDX. */
export function maskXenstoreIdx(idx: number): number {
  return idx & (XENSTORE_RING_SIZE - 1);
}
/** char req[XENSTORE_RING_SIZE]: requests to the daemon. */
export const XS_RING_REQ = 0;
/** char rsp[XENSTORE_RING_SIZE]: replies and watch events. */
export const XS_RING_RSP = 1024;
/** XENSTORE_RING_IDX (uint32_t) req_cons, req_prod, rsp_cons, rsp_prod. */
export const XS_RING_REQ_CONS = 2048;
export const XS_RING_REQ_PROD = 2052;
export const XS_RING_RSP_CONS = 2056;
export const XS_RING_RSP_PROD = 2060;
/** uint32_t server_features: bitmap of features the server supports. */
export const XS_RING_SERVER_FEATURES = 2064;
/** uint32_t connection: XENSTORE_CONNECTED or XENSTORE_RECONNECT. */
export const XS_RING_CONNECTION = 2068;
/** uint32_t error (with XENSTORE_SERVER_FEATURE_ERROR): why the server stopped talking. */
export const XS_RING_ERROR = 2072;

/** The ability to reconnect a ring. */
export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
/** The presence of the "error" field in the ring page. */
export const XENSTORE_SERVER_FEATURE_ERROR = 2;
/** XS_WATCH takes a <depth> parameter (xenstore.txt WATCH; xs_watch_depth). */
export const XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4;

export const XENSTORE_CONNECTED = 0;
export const XENSTORE_RECONNECT = 1;

export const XENSTORE_ERROR_NONE = 0;
/** Communication problem. */
export const XENSTORE_ERROR_COMM = 1;
/** Invalid ring index. */
export const XENSTORE_ERROR_RINGIDX = 2;
/** Protocol violation (payload too long). */
export const XENSTORE_ERROR_PROTO = 3;

/** check_indexes: a producer more than a ring ahead of its consumer is corrupt. */
export function ringIndexesValid(cons: number, prod: number): boolean {
  return (prod - cons) >>> 0 <= XENSTORE_RING_SIZE;
}
