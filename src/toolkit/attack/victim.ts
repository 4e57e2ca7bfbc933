// The contract between `gnttab attack` and the module it attacks (the victim).
//
// A victim module is a guest program, as every module WorkerHost.spawn runs:
// its default export is `(ctx: GuestContext, args: VictimArgs) => unknown`,
// called in the victim domain's own worker thread. The attacker is the other
// end of one split-driver connection, found through xenstore under
// `args.path`, a directory the toolstack made that both domains may write:
//
// - the frontend (the side that grants) publishes `ring-ref` (a grant ref of
//   its ring page, decimal) and `event-channel` (a port it allocated unbound
//   for the peer, decimal); with protocol 'vchan' it is libxenvchan's server
//   and those are the keys libxenvchan writes;
// - the backend (the side that maps) reads them, maps the ring, binds the port;
// - protocol 'ring' speaks ATTACK_RING below over a one-page ring.h ring; with
//   'vchan' it is libxenvchan's control page and rings.
//
// When the peer is gone the toolstack writes `<path>/state` = "closed". The
// victim then releases everything it holds (ends its grants, unmaps, closes
// its ports, removes the keys it wrote, unwatches) and returns. What it
// returns is reported; a throw is a finding, and so is not returning within
// the grace period after "closed", or anything it still holds afterwards.
import { DOMID_SELF } from '../../abi/domid.ts';
import { EVTCHNOP_status, EVTCHNSTAT_closed, evtchn_status } from '../../abi/event-channel.ts';
import { __HYPERVISOR_event_channel_op } from '../../abi/hypercall.ts';
import { decodeStruct, encodeStruct } from '../../abi/struct.ts';
import type { GuestContext } from '../../guest/context.ts';
import { argArea } from '../../guest/hypercall.ts';
import type { XsClient } from '../../io/xenstore/api.ts';

/** The side the attacker plays (the victim plays the other). */
export type AttackRole = 'frontend' | 'backend';
/** What attacker and victim speak: a one-page ring.h ring, or a vchan. */
export type AttackProtocol = 'ring' | 'vchan';

/** What a victim module's default export gets as its second argument. */
export interface VictimArgs {
  /** The victim's side of the connection. */
  role: AttackRole;
  protocol: AttackProtocol;
  /** The attacker's domid. */
  peer: number;
  /** The connection's xenstore directory (both domains may read and write it). */
  path: string;
  /** Grant-table layout the victim should ask for (1 or 2). */
  gnttabVersion: 1 | 2;
}

/**
 * The 'ring' protocol: a one-page ring.h ring of 32-byte slots, in the spirit
 * of blkif. A request names a page the frontend granted and a window in it;
 * op READ asks the backend to fill the window (byte i = (id + i) & 0xff), op
 * WRITE to read it. The response carries the request's id and 0, or -1 for a
 * request the backend refused.
 */
export const ATTACK_RING = { entrySize: 32, requestSize: 24, responseSize: 16 } as const;
/** Request: the id, a u64 (below 2^32 in practice). */
export const REQ_ID = 0;
/** Request: the op (OP_READ or OP_WRITE), a u8. */
export const REQ_OP = 8;
/** Request: the grant ref of the frontend's page, a u32. */
export const REQ_GREF = 12;
/** Request: the window's offset in the page, a u16. */
export const REQ_OFFSET = 16;
/** Request: the window's length, a u16. */
export const REQ_LENGTH = 18;
/** Response: the request's id, a u64. */
export const RSP_ID = 0;
/** Response: 0, or -1 for a refused request, an i32. */
export const RSP_STATUS = 8;
/** Op: the backend fills the window. */
export const OP_READ = 0;
/** Op: the backend reads the window. */
export const OP_WRITE = 1;

/** The byte a READ puts at position i of the window of request `id`. */
export function fillByte(id: number, i: number): number {
  return (id + i) & 0xff;
}

/** Key under VictimArgs.path: the ring's grant ref. */
export const KEY_RING_REF = 'ring-ref';
/** Key under VictimArgs.path: the event-channel port to bind. */
export const KEY_EVENT_CHANNEL = 'event-channel';
/** Key under VictimArgs.path: the connection's state. */
export const KEY_STATE = 'state';
/** The state the toolstack writes to end the connection. */
export const STATE_CLOSED = 'closed';

/** True once the toolstack (or anyone) wrote "closed" into `<path>/state`. */
export async function peerClosed(xs: XsClient, path: string): Promise<boolean> {
  try {
    return (await xs.read(`${path}/${KEY_STATE}`)) === STATE_CLOSED;
  } catch {
    return false;
  }
}

/** A decimal u32 as xenstore holds it, or null for anything else (garbage from a peer). */
export function parseU32(s: string): number | null {
  if (!/^\d{1,10}$/.test(s)) return null;
  const n = Number(s);
  return n <= 0xffff_ffff ? n : null;
}

/**
 * Ports of this domain that EVTCHNOP_status does not report closed, apart
 * from the xenstore channel and its Xen-attached end; `skip` are ports still
 * held on purpose. Stops at the first port Xen does not know (-EINVAL).
 */
export function openPorts(ctx: GuestContext, skip: readonly number[] = []): number[] {
  const arg = argArea(ctx);
  const status = (port: number) => {
    ctx.mem.write(arg, encodeStruct(evtchn_status, { dom: DOMID_SELF, port }));
    const rc = ctx.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_status, arg);
    return { rc, out: decodeStruct(evtchn_status, ctx.mem.read(arg, evtchn_status.size)) };
  };
  const store = ctx.start.storePort;
  const keep = new Set(skip);
  if (store !== 0) {
    keep.add(store);
    const s = status(store);
    if (s.rc === 0) keep.add(s.out.u_port);
  }
  const open: number[] = [];
  for (let port = 1; port < 4096; port++) {
    const s = status(port);
    if (s.rc < 0) break;
    if (!keep.has(port) && s.out.status !== EVTCHNSTAT_closed) open.push(port);
  }
  return open;
}
