// A connection to the store, with its watches, transactions and queued output
// (xenstored's struct connection, struct watch, struct transaction).
import { domainPath, XENSTORED_FEATURES, type XsNode } from './nodes.ts';
import type { XsPermEntry } from './permissions.ts';

export interface Watch {
  /** Canonical path (or special name). */
  readonly node: string;
  readonly token: string;
  /** Length of the home prefix to strip from event paths (relative watches). */
  readonly prefixLen: number;
  /** Levels below node that match (-1: no limit; XS_WATCH's optional <depth>). */
  readonly depth: number;
}

/** A node touched by a transaction (transaction.c struct accessed_node). */
export interface Accessed {
  /** Generation when first read, NO_GENERATION when it did not exist. */
  generation: number;
  /** Conflict check needed (first access was a read). */
  check: boolean;
  modified: boolean;
  /** The transaction's view of the node (null: absent). */
  node: XsNode | null;
  /** Permissions before the transaction (for watch events of removed nodes). */
  oldPerms: readonly XsPermEntry[] | null;
  fireWatch: boolean;
  watchExact: boolean;
}

export class Transaction {
  readonly id: number;
  readonly accessed = new Map<string, Accessed>();
  fail = false;
  constructor(id: number) {
    this.id = id;
  }
}

/** A message queued for the client, written out by the transport. */
export interface XsOutMessage {
  /** Header and payload in wire form. */
  readonly bytes: Uint8Array;
  /** Bytes already written. */
  used: number;
  /** A watch event (not a reply). */
  readonly event: boolean;
}

export type XsConnectionKind = 'domain' | 'tool';

export class XsConnection {
  /** conn->id: the domain, 0 for the toolstack. */
  readonly domid: number;
  readonly kind: XsConnectionKind;
  /** Neither dom0 nor the toolstack: permission checks and quotas apply. */
  readonly unprivileged: boolean;
  /** get_implicit_path: where relative paths start. */
  readonly home: string;
  readonly watches: Watch[] = [];
  readonly transactions = new Map<number, Transaction>();
  /** Messages for the client, oldest first; the transport takes them from the front. */
  readonly out: XsOutMessage[] = [];
  /** Called whenever messages are queued. */
  onOutput: (() => void) | null = null;
  /** Set when the transport found the client misbehaving: no more requests or replies. */
  ignored = false;
  /** Gone from the store (its domain died, or the tool connection closed). */
  closed = false;
  nextTxId = 1;
  /** domain->features: what the store offers this connection (XENSTORED_FEATURES). */
  readonly features = XENSTORED_FEATURES;

  constructor(domid: number, kind: XsConnectionKind) {
    this.domid = domid;
    this.kind = kind;
    this.unprivileged = kind === 'domain' && domid !== 0;
    this.home = domainPath(kind === 'domain' ? domid : 0);
  }

  /** Replies queued and not yet written (xenstored's outstanding requests). */
  get pendingReplies(): number {
    let n = 0;
    for (const m of this.out) if (!m.event) n++;
    return n;
  }
}
