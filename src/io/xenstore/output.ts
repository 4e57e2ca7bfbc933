// Output to a connection (xenstored's send_reply, send_error, send_event):
// messages queued in wire form for the transport to write out.
import type { XsConnection } from './connection.ts';
import { bytesEqual } from './nodes.ts';
import {
  encodeMessage,
  nulStrings,
  XENSTORE_PAYLOAD_MAX,
  XS_ERROR,
  XS_WATCH_EVENT,
  type XsErrno,
  type XsMessage,
} from './wire.ts';

/** A reply: its type and payload. */
export type Reply = { type: number; payload: Uint8Array };

export function queue(conn: XsConnection, m: XsMessage, event: boolean): void {
  if (conn.closed || conn.ignored) return;
  conn.out.push({ bytes: encodeMessage(m), used: 0, event });
}

/** send_reply: the request's req_id and tx_id echoed; over-long replies become E2BIG. */
export function sendReply(conn: XsConnection, req: XsMessage, r: Reply): void {
  if (r.payload.length > XENSTORE_PAYLOAD_MAX) {
    sendError(conn, req, 'E2BIG');
    return;
  }
  queue(conn, { type: r.type, reqId: req.reqId, txId: req.txId, payload: r.payload }, false);
}

export function sendError(conn: XsConnection, req: XsMessage, errno: XsErrno): void {
  queue(conn, { type: XS_ERROR, reqId: req.reqId, txId: req.txId, payload: nulStrings(errno) }, false);
}

/** send_event: "path\0token\0"; over-long events are not sent, duplicates of a pending one dropped. */
export function sendEvent(conn: XsConnection, path: string, token: string): void {
  const payload = nulStrings(path, token);
  if (payload.length > XENSTORE_PAYLOAD_MAX) return;
  if (!path.startsWith('@')) {
    const bytes = encodeMessage({ type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload });
    if (conn.out.some((m) => m.event && m.used === 0 && bytesEqual(m.bytes, bytes))) return;
  }
  queue(conn, { type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload }, true);
  flush(conn);
}

export function flush(conn: XsConnection): void {
  if (conn.out.length > 0 && conn.onOutput !== null) conn.onOutput();
}
