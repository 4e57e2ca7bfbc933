// A small xenstored: the tree, per-node permissions, watches and transactions,
// answering xs_wire.h messages as Xen's C xenstored (tools/xenstored/core.c,
// watch.c, transaction.c, domain.c) does, down to its error choices. It knows
// nothing of rings, event channels or the hypervisor: a transport hands it
// whole request messages (handle) and writes out what it queues on each
// connection (XsConnection.out, announced through onOutput). The host's
// xenstore service (src/host/xenstore-service.ts) is the ring transport; the
// tool connection below is the in-process one.
//
// Modelled: hierarchical nodes with a value, an ordered child list and
// permissions (owner first; the owner and privileged connections -- dom0 and
// the toolstack -- get everything; others get their own entry or the owner
// entry's default); canonical and relative paths; new nodes inherit their
// parent's permissions, owned by the unprivileged domain that creates them;
// errors that do not reveal what a caller may not read (errno_from_parents);
// watches firing on changes at or below their path (each removed node of a
// subtree exactly, the removed root as a change), only for connections that
// may read the node or its parent, once on registration, and the special
// @introduceDomain / @releaseDomain watches; transactions with xenstored's
// per-node generation check (EAGAIN on conflict), their watch events fired at
// commit; quotas on nodes owned, watches, transactions, node size, permissions
// and path length for unprivileged domains; duplicate pending watch events dropped.
// When a domain goes, its connection, watches and transactions go, its home
// tree and every node it owns are removed, and @releaseDomain fires.
//
// Not modelled: XS_INTRODUCE / XS_RELEASE / XS_RESUME / XS_SET_TARGET and
// XS_CONTROL (privileged; the host introduces domains itself, so they answer
// ENOSYS), the memory quotas, write rate limiting, permission
// entries of domains gone since (domain ids are never reused here).
//
// The daemon is in xenstored/, one concept per file: the store's state
// (store.ts), the node tree (tree.ts), the quotas (quota.ts), watches,
// transactions, the operations on nodes (operations.ts), the request
// dispatch (dispatch.ts) and inspection. This module is its one entry: the
// XenStore class, with the connections and domains (domain.c's introduce and
// release) and what the transport and the host call.
import type { XsClientCore } from './client.ts';
import { XsConnection } from './connection.ts';
import { domainPath, type XsNode } from './nodes.ts';
import { DOMID_SELF, permFor, XS_PERM_NONE, type XsPermEntry } from './permissions.ts';
import { ToolClient } from './tool-client.ts';
import { toBytes, type XsErrno, type XsMessage } from './wire.ts';
import { handleMessage } from './xenstored/dispatch.ts';
import { checkStore, stats, type XsStats } from './xenstored/inspect.ts';
import { mkdir, setPermsOf, writeValue } from './xenstored/operations.ts';
import { Store, type XenStoreOptions } from './xenstored/store.ts';
import { removeOwnedBy, rmNode } from './xenstored/tree.ts';
import { fireSpecial } from './xenstored/watches.ts';

// The store's parts, one concept per file, under the names they always had here.
export { XsConnection, type XsConnectionKind, type XsOutMessage } from './connection.ts';
export {
  domainPath,
  isChildPath,
  parentPath,
  XENSTORED_FEATURES,
  XS_QUOTA,
  type XsNode,
} from './nodes.ts';
export {
  parsePerm,
  permToString,
  XS_PERM_NONE,
  XS_PERM_OWNER,
  XS_PERM_READ,
  XS_PERM_WRITE,
  type XsPermEntry,
} from './permissions.ts';
export type { XsStats } from './xenstored/inspect.ts';
export type { XenStoreOptions } from './xenstored/store.ts';

export class XenStore {
  private readonly s: Store;

  constructor(o: XenStoreOptions = {}) {
    this.s = new Store(o);
  }

  // ---- connections ---------------------------------------------------------------------------

  /**
   * Introduces a domain (what XS_INTRODUCE does, done by the host at domain
   * creation): its connection (dom0's is privileged), and its home
   * /local/domain/<domid>, owned by it, holding "domid"; @introduceDomain fires
   * for every domain but dom0.
   */
  introduceDomain(domid: number): XsConnection {
    const s = this.s;
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_SELF)
      throw new RangeError(`bad domain id ${domid}`);
    if (s.domains.has(domid)) throw new Error(`d${domid} is already introduced`);
    const conn = new XsConnection(domid, 'domain');
    s.conns.push(conn);
    s.domains.set(domid, conn);
    const home = domainPath(domid);
    const c = s.internal;
    this.check(mkdir(s, c, home), `mkdir ${home}`);
    this.check(setPermsOf(s, c, home, [{ id: domid, perms: XS_PERM_NONE }]), `set_perms ${home}`);
    this.check(writeValue(s, c, `${home}/domid`, toBytes(String(domid))), `write ${home}/domid`);
    if (domid !== 0) fireSpecial(s, '@introduceDomain');
    return conn;
  }

  /**
   * The domain is gone: its connection, watches and transactions go (first, so
   * its own nodes' removal fires nothing at it), its home tree is removed (as
   * the toolstack does), then every node it still owns (xenstored's
   * domain_tree_remove; but dom0's, the privileged domain's, stay), and
   * @releaseDomain fires.
   */
  releaseDomain(domid: number): void {
    const s = this.s;
    const conn = s.domains.get(domid);
    if (conn === undefined) return;
    s.domains.delete(domid);
    this.disconnect(conn);
    const c = s.internal;
    const home = domainPath(domid);
    if (s.nodes.has(home)) rmNode(s, c, home);
    // dom0 owns the tree's frame (/, /local, /local/domain): its nodes stay.
    if (domid !== 0) removeOwnedBy(s, domid);
    fireSpecial(s, '@releaseDomain');
  }

  /** A toolstack connection (a socket connection to xenstored): privileged, id 0. */
  connectTool(): XsConnection {
    const conn = new XsConnection(0, 'tool');
    this.s.conns.push(conn);
    return conn;
  }

  /** Drops a connection: its watches, transactions and queued output go. */
  disconnect(conn: XsConnection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.resetConnection(conn);
    const i = this.s.conns.indexOf(conn);
    if (i >= 0) this.s.conns.splice(i, 1);
  }

  /**
   * ignore_connection: the transport found the client misbehaving (bad ring
   * indexes, an over-long payload): no more requests are read nor replies
   * written; its watches, transactions and queued output go.
   */
  ignoreConnection(conn: XsConnection): void {
    conn.ignored = true;
    this.resetConnection(conn);
  }

  private resetConnection(conn: XsConnection): void {
    conn.watches.length = 0;
    conn.transactions.clear();
    conn.out.length = 0;
  }

  /** The connection of an introduced domain. */
  domainConnection(domid: number): XsConnection | undefined {
    return this.s.domains.get(domid);
  }

  get connections(): readonly XsConnection[] {
    return this.s.conns;
  }

  /** An in-process client over a new tool connection (replies delivered asynchronously). */
  openToolClient(): XsClientCore {
    return new ToolClient(this);
  }

  // ---- inspection --------------------------------------------------------------------------------

  /** A node as stored (not through any transaction), or undefined. */
  node(path: string): XsNode | undefined {
    return this.s.nodes.get(path);
  }

  /** Every node path (specials included), sorted. */
  paths(): string[] {
    return [...this.s.nodes.keys()].sort();
  }

  stats(): XsStats {
    return stats(this.s);
  }

  /**
   * The store's own consistency: every listed child exists and every node but
   * the root and the special ones is listed by its existing parent, once;
   * permissions are non-empty; closed connections are gone; domain
   * connections belong to introduced domains (and, given `live`, live ones).
   */
  checkInvariants(live?: (domid: number) => boolean): string[] {
    return checkStore(this.s, live);
  }

  // ---- requests --------------------------------------------------------------------------------

  /**
   * process_message: one whole request of `conn`; the reply (and any watch
   * events) are queued on the connections concerned.
   */
  handle(conn: XsConnection, msg: XsMessage): void {
    handleMessage(this.s, conn, msg);
  }

  /** perm_for_conn. */
  permFor(conn: XsConnection, perms: readonly XsPermEntry[]): number {
    return permFor(conn, perms);
  }

  private check(e: XsErrno | undefined, what: string): void {
    if (e !== undefined) throw new Error(`xenstore ${what}: ${e}`);
  }
}
