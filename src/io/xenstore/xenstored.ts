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
import type { XsClientCore } from './client.ts';
import { Transaction, type Watch, XsConnection, type XsConnectionKind } from './connection.ts';
import {
  baseName,
  canonicalize,
  childPath,
  domainPath,
  isChildPath,
  NO_GENERATION,
  NODE_HDR_SIZE,
  parentPath,
  XENSTORED_FEATURES,
  XS_PERMISSIONS_SIZE,
  XS_QUOTA,
  type XsNode,
} from './nodes.ts';
import { flush, type Reply, sendError, sendEvent, sendReply } from './output.ts';
import {
  atoi,
  DOMID_SELF,
  parsePerm,
  permFor,
  permToString,
  XS_PERM_NONE,
  XS_PERM_OWNER,
  XS_PERM_READ,
  XS_PERM_WRITE,
  type XsPermEntry,
} from './permissions.ts';
import { ToolClient } from './tool-client.ts';
import {
  concatBytes,
  fromBytes,
  nulStrings,
  splitStrings,
  toBytes,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_SERVER_FEATURE_WATCHDEPTH,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WRITE,
  type XsErrno,
  type XsMessage,
} from './wire.ts';

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

/** Handling context of one request: the connection and its transaction. */
interface Ctx {
  readonly conn: XsConnection;
  readonly tx: Transaction | null;
}

type Result = Reply | XsErrno;

const ACK = nulStrings('OK');

export interface XenStoreOptions {
  /**
   * Whether a domain exists (an XS_SET_PERMS owner must; other entries for
   * missing domains are ignored). Default: dom0 and the introduced domains.
   */
  domainExists?: (domid: number) => boolean;
}

export interface XsStats {
  nodes: number;
  connections: {
    domid: number;
    kind: XsConnectionKind;
    watches: number;
    transactions: number;
    ignored: boolean;
  }[];
  watches: number;
  transactions: number;
}

export class XenStore {
  private readonly nodes = new Map<string, XsNode>();
  private generation = 0;
  /** Connections in creation order (watch events go out in this order). */
  private readonly conns: XsConnection[] = [];
  /** Introduced domains and their connections. */
  private readonly domains = new Map<number, XsConnection>();
  /** The store's own privileged context for what the toolstack does (home trees, cleanup). */
  private readonly internal: Ctx = { conn: new XsConnection(0, 'tool'), tx: null };
  private readonly domainExists: (domid: number) => boolean;

  constructor(o: XenStoreOptions = {}) {
    this.domainExists = o.domainExists ?? ((id) => id === 0 || this.domains.has(id));
    // setup_structure: the root, /tool/xenstored and the special nodes, all owned by dom0, "n0".
    const n0: XsPermEntry[] = [{ id: 0, perms: XS_PERM_NONE }];
    const mk = (children: string[]): XsNode => ({
      value: new Uint8Array(0),
      perms: n0,
      children,
      generation: ++this.generation,
    });
    this.nodes.set('/', mk(['tool']));
    this.nodes.set('/tool', mk(['xenstored']));
    this.nodes.set('/tool/xenstored', mk([]));
    this.nodes.set('@releaseDomain', mk([]));
    this.nodes.set('@introduceDomain', mk([]));
  }

  // ---- connections ---------------------------------------------------------------------------

  /**
   * Introduces a domain (what XS_INTRODUCE does, done by the host at domain
   * creation): its connection (dom0's is privileged), and its home
   * /local/domain/<domid>, owned by it, holding "domid"; @introduceDomain fires
   * for every domain but dom0.
   */
  introduceDomain(domid: number): XsConnection {
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_SELF)
      throw new RangeError(`bad domain id ${domid}`);
    if (this.domains.has(domid)) throw new Error(`d${domid} is already introduced`);
    const conn = new XsConnection(domid, 'domain');
    this.conns.push(conn);
    this.domains.set(domid, conn);
    const home = domainPath(domid);
    const c = this.internal;
    this.check(this.mkdir(c, home), `mkdir ${home}`);
    this.check(this.setPermsOf(c, home, [{ id: domid, perms: XS_PERM_NONE }]), `set_perms ${home}`);
    this.check(this.writeValue(c, `${home}/domid`, toBytes(String(domid))), `write ${home}/domid`);
    if (domid !== 0) this.fireSpecial('@introduceDomain');
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
    const conn = this.domains.get(domid);
    if (conn === undefined) return;
    this.domains.delete(domid);
    this.disconnect(conn);
    const c = this.internal;
    const home = domainPath(domid);
    if (this.nodes.has(home)) this.rmNode(c, home);
    // dom0 owns the tree's frame (/, /local, /local/domain): its nodes stay.
    if (domid !== 0) this.removeOwnedBy(domid);
    this.fireSpecial('@releaseDomain');
  }

  /** A toolstack connection (a socket connection to xenstored): privileged, id 0. */
  connectTool(): XsConnection {
    const conn = new XsConnection(0, 'tool');
    this.conns.push(conn);
    return conn;
  }

  /** Drops a connection: its watches, transactions and queued output go. */
  disconnect(conn: XsConnection): void {
    if (conn.closed) return;
    conn.closed = true;
    this.resetConnection(conn);
    const i = this.conns.indexOf(conn);
    if (i >= 0) this.conns.splice(i, 1);
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
    return this.domains.get(domid);
  }

  get connections(): readonly XsConnection[] {
    return this.conns;
  }

  /** An in-process client over a new tool connection (replies delivered asynchronously). */
  openToolClient(): XsClientCore {
    return new ToolClient(this);
  }

  // ---- inspection --------------------------------------------------------------------------------

  /** A node as stored (not through any transaction), or undefined. */
  node(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  /** Every node path (specials included), sorted. */
  paths(): string[] {
    return [...this.nodes.keys()].sort();
  }

  stats(): XsStats {
    let watches = 0;
    let transactions = 0;
    const connections = this.conns.map((c) => {
      watches += c.watches.length;
      transactions += c.transactions.size;
      return {
        domid: c.domid,
        kind: c.kind,
        watches: c.watches.length,
        transactions: c.transactions.size,
        ignored: c.ignored,
      };
    });
    return { nodes: this.nodes.size, connections, watches, transactions };
  }

  /**
   * The store's own consistency: every listed child exists and every node but
   * the root and the special ones is listed by its existing parent, once;
   * permissions are non-empty; closed connections are gone; domain
   * connections belong to introduced domains (and, given `live`, live ones).
   */
  checkInvariants(live?: (domid: number) => boolean): string[] {
    const out: string[] = [];
    for (const [name, node] of this.nodes) {
      if (node.perms.length === 0) out.push(`xenstore: ${name} has no permissions`);
      const seen = new Set<string>();
      for (const ch of node.children) {
        if (seen.has(ch)) out.push(`xenstore: ${name} lists ${ch} twice`);
        seen.add(ch);
        if (!this.nodes.has(childPath(name, ch))) out.push(`xenstore: ${name} lists missing child ${ch}`);
      }
      if (name === '/' || name.startsWith('@')) continue;
      const parent = this.nodes.get(parentPath(name));
      if (parent === undefined) out.push(`xenstore: ${name} has no parent`);
      else if (!parent.children.includes(baseName(name)))
        out.push(`xenstore: ${name} is not listed by its parent`);
    }
    for (const c of this.conns) {
      if (c.closed) out.push(`xenstore: closed connection of d${c.domid} still listed`);
      if (c.kind === 'domain' && this.domains.get(c.domid) !== c)
        out.push(`xenstore: connection of d${c.domid} for a domain not introduced`);
      if (c.kind === 'domain' && live !== undefined && !live(c.domid))
        out.push(`xenstore: connection, ${c.watches.length} watches of dead d${c.domid}`);
    }
    return out;
  }

  // ---- requests --------------------------------------------------------------------------------

  /**
   * process_message: one whole request of `conn`; the reply (and any watch
   * events) are queued on the connections concerned.
   */
  handle(conn: XsConnection, msg: XsMessage): void {
    if (conn.closed || conn.ignored) return;
    const r = this.process(conn, msg);
    if (typeof r === 'string') sendError(conn, msg, r);
    else if (r !== null) sendReply(conn, msg, r);
    flush(conn);
  }

  private process(conn: XsConnection, msg: XsMessage): Result | null {
    const type = msg.type;
    const priv =
      type === XS_CONTROL ||
      type === XS_INTRODUCE ||
      type === XS_RELEASE ||
      type === XS_IS_DOMAIN_INTRODUCED ||
      type === XS_RESUME ||
      type === XS_SET_TARGET;
    const known = priv || OPS.has(type);
    if (!known) return 'ENOSYS';
    if (priv && conn.unprivileged) return 'EACCES';
    // XS_WATCH and XS_UNWATCH ignore the transaction id (XS_FLAG_NOTID).
    let tx: Transaction | null = null;
    if (type !== XS_WATCH && type !== XS_UNWATCH && msg.txId !== 0) {
      tx = conn.transactions.get(msg.txId) ?? null;
      if (tx === null) return 'ENOENT';
    }
    const c: Ctx = { conn, tx };
    const p = msg.payload;
    switch (type) {
      case XS_DIRECTORY:
        return this.doDirectory(c, p);
      case XS_DIRECTORY_PART:
        return this.doDirectoryPart(c, p);
      case XS_READ:
        return this.doRead(c, p);
      case XS_GET_PERMS:
        return this.doGetPerms(c, p);
      case XS_WATCH:
        return this.doWatch(c, msg);
      case XS_UNWATCH:
        return this.doUnwatch(c, p);
      case XS_TRANSACTION_START:
        return this.doTransactionStart(c);
      case XS_TRANSACTION_END:
        return this.doTransactionEnd(c, p);
      case XS_GET_DOMAIN_PATH: {
        const a = oneArg(p);
        if (a === null) return 'EINVAL';
        return { type: XS_GET_DOMAIN_PATH, payload: nulStrings(domainPath(atoi(a))) };
      }
      case XS_WRITE:
        return this.doWrite(c, p);
      case XS_MKDIR: {
        const r = this.mkdir(c, oneArg(p));
        return typeof r === 'string' ? r : { type: XS_MKDIR, payload: ACK };
      }
      case XS_RM:
        return this.doRm(c, p);
      case XS_SET_PERMS:
        return this.doSetPerms(c, p);
      case XS_IS_DOMAIN_INTRODUCED: {
        const a = oneArg(p);
        if (a === null) return 'EINVAL';
        const id = atoi(a);
        const yes = id === DOMID_SELF || this.domains.has(id >>> 0);
        return { type: XS_IS_DOMAIN_INTRODUCED, payload: nulStrings(yes ? 'T' : 'F') };
      }
      case XS_GET_FEATURE:
        return this.doGetFeature(c, p);
      case XS_RESET_WATCHES:
        conn.watches.length = 0;
        conn.transactions.clear();
        return { type: XS_RESET_WATCHES, payload: ACK };
      default:
        // XS_CONTROL, XS_INTRODUCE, XS_RELEASE, XS_RESUME, XS_SET_TARGET: the
        // host introduces and releases domains itself.
        return 'ENOSYS';
    }
  }

  // ---- the operations (core.c, watch.c, transaction.c) -------------------------------------------

  private doRead(c: Ctx, p: Uint8Array): Result {
    const g = this.getNode(c, oneArg(p), XS_PERM_READ, false);
    if (typeof g === 'string') return g;
    return { type: XS_READ, payload: g.node.value };
  }

  private doDirectory(c: Ctx, p: Uint8Array): Result {
    const g = this.getNode(c, oneArg(p), XS_PERM_READ, false);
    if (typeof g === 'string') return g;
    return { type: XS_DIRECTORY, payload: nulStrings(...g.node.children) };
  }

  /** send_directory_part: "<generation>\0" then child names from the byte offset, "" closing the list. */
  private doDirectoryPart(c: Ctx, p: Uint8Array): Result {
    const strs = splitStrings(p);
    if (strs.length !== 2) return 'EINVAL';
    const g = this.getNode(c, strs[0]!, XS_PERM_READ, false);
    if (typeof g === 'string') return g;
    const off = atoi(strs[1]!) >>> 0;
    const children = nulStrings(...g.node.children);
    const gen = toBytes(`${g.node.generation}\0`);
    if (off >= children.length)
      return { type: XS_DIRECTORY_PART, payload: concatBytes(gen, new Uint8Array(1)) };
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    for (;;) {
      let end = off + len;
      while (children[end] !== 0) end++;
      const l = end - (off + len);
      if (!(len + l < maxlen)) break;
      len += l + 1;
      if (off + len === children.length) break;
    }
    const part = children.subarray(off, off + len);
    const closing = off + len === children.length ? new Uint8Array(1) : new Uint8Array(0);
    return { type: XS_DIRECTORY_PART, payload: concatBytes(gen, part, closing) };
  }

  private doGetPerms(c: Ctx, p: Uint8Array): Result {
    const g = this.getNode(c, oneArg(p), XS_PERM_READ, true);
    if (typeof g === 'string') return g;
    return { type: XS_GET_PERMS, payload: nulStrings(...g.node.perms.map(permToString)) };
  }

  /** do_write: "path\0" then the value (anything, nuls included). */
  private doWrite(c: Ctx, p: Uint8Array): Result {
    const nul = p.indexOf(0);
    if (nul < 0) return 'EINVAL';
    const r = this.writeValue(c, fromBytes(p.subarray(0, nul)), p.slice(nul + 1));
    return typeof r === 'string' ? r : { type: XS_WRITE, payload: ACK };
  }

  private writeValue(c: Ctx, path: string, value: Uint8Array): XsErrno | undefined {
    const g = this.getNode(c, path, XS_PERM_WRITE, false);
    let name: string;
    let node: XsNode;
    if (typeof g === 'string') {
      // No permissions, invalid input?
      if (g !== 'ENOENT') return g;
      name = canonicalize(c.conn, path, false)!;
      const made = this.createNode(c, name, value);
      if (typeof made === 'string') return made;
      node = made;
    } else {
      name = g.name;
      node = { ...g.node, value };
      const e = this.writeNode(c, name, node);
      if (e !== undefined) return e;
    }
    this.fireWatches(c, name, node, false, null);
    return undefined;
  }

  /** do_mkdir: an existing node is fine; a new one is empty. */
  private mkdir(c: Ctx, path: string | null): XsErrno | undefined {
    const g = this.getNode(c, path, XS_PERM_WRITE, false);
    if (typeof g !== 'string') return undefined;
    if (g !== 'ENOENT') return g;
    const name = canonicalize(c.conn, path, false)!;
    const made = this.createNode(c, name, new Uint8Array(0));
    if (typeof made === 'string') return made;
    this.fireWatches(c, name, made, false, null);
    return undefined;
  }

  /** do_rm: a missing node is fine if its parent exists; the root cannot go. */
  private doRm(c: Ctx, p: Uint8Array): Result {
    const path = oneArg(p);
    const g = this.getNode(c, path, XS_PERM_WRITE, false);
    if (typeof g === 'string') {
      if (g !== 'ENOENT') return g;
      const name = canonicalize(c.conn, path, false)!;
      return this.readNode(c, parentPath(name)) !== undefined ? { type: XS_RM, payload: ACK } : 'ENOENT';
    }
    if (g.name === '/') return 'EINVAL';
    const e = this.rmNode(c, g.name);
    return e !== undefined ? e : { type: XS_RM, payload: ACK };
  }

  /** do_set_perms: "path\0perm\0perm\0...", by the owner (or a privileged caller). */
  private doSetPerms(c: Ctx, p: Uint8Array): Result {
    const strs = splitStrings(p);
    if (strs.length < 2) return 'EINVAL';
    if (c.conn.unprivileged && strs.length - 1 > XS_QUOTA.nodePerms) return 'ENOSPC';
    const perms: XsPermEntry[] = [];
    for (const s of strs.slice(1)) {
      const e = parsePerm(s);
      if (e === null) return 'EINVAL';
      perms.push(e);
    }
    const e = this.setPermsOf(c, strs[0]!, perms);
    return e !== undefined ? e : { type: XS_SET_PERMS, payload: ACK };
  }

  private setPermsOf(c: Ctx, path: string, given: readonly XsPermEntry[]): XsErrno | undefined {
    // domain_alloc_permrefs: entries for domains that do not exist are ignored; the owner must exist.
    const perms = given.map((e) => (this.domainExists(e.id) ? e : { ...e, ignore: true }));
    if (perms[0]!.ignore === true) return 'ENOENT';
    const g = this.getNode(c, path, XS_PERM_WRITE | XS_PERM_OWNER, true);
    if (typeof g === 'string') return g;
    // Unprivileged domains may not change the owner.
    if (c.conn.unprivileged && perms[0]!.id !== g.node.perms[0]!.id) return 'EPERM';
    const old = g.node.perms;
    const node: XsNode = { ...g.node, perms };
    const err = this.writeNode(c, g.name, node);
    if (err !== undefined) return err;
    this.fireWatches(c, g.name, node, false, old);
    return undefined;
  }

  private doWatch(c: Ctx, msg: XsMessage): Result | null {
    const conn = c.conn;
    const strs = splitStrings(msg.payload);
    // do_watch: a third string is the depth, where the feature is on.
    let depth = -1;
    if (strs.length === 3 && (conn.features & XENSTORE_SERVER_FEATURE_WATCHDEPTH) !== 0) {
      depth = atoi(strs[2]!);
      if (depth < 0) return 'EINVAL';
    } else if (strs.length !== 2) return 'EINVAL';
    const [path, token] = strs as [string, string];
    const relative = !path.startsWith('/') && !path.startsWith('@');
    const node = canonicalize(conn, path, true);
    if (node === null) return 'EINVAL';
    if (conn.watches.some((w) => w.node === node && w.token === token)) return 'EEXIST';
    if (conn.unprivileged && conn.watches.length > XS_QUOTA.watches) return 'E2BIG';
    const w: Watch = { node, token, prefixLen: relative ? conn.home.length + 1 : 0, depth };
    conn.watches.push(w);
    sendReply(conn, msg, { type: XS_WATCH, payload: ACK });
    // We fire once up front: simplifies clients and restart.
    sendEvent(conn, node.slice(w.prefixLen), token);
    return null;
  }

  /**
   * do_get_feature: no argument, the caller's own features; a domid (not for
   * unprivileged callers: EACCES), that domain's.
   */
  private doGetFeature(c: Ctx, p: Uint8Array): Result {
    const strs = splitStrings(p);
    let features = c.conn.features;
    if (strs.length > 0) {
      if (c.conn.unprivileged) return 'EACCES';
      if (strs.length > 1) return 'EINVAL';
      const id = atoi(strs[0]!) >>> 0;
      if (!this.domainExists(id)) return 'ENOENT';
      features = XENSTORED_FEATURES;
    }
    return { type: XS_GET_FEATURE, payload: nulStrings(String(features)) };
  }

  private doUnwatch(c: Ctx, p: Uint8Array): Result {
    const strs = splitStrings(p);
    if (strs.length !== 2) return 'EINVAL';
    const node = canonicalize(c.conn, strs[0]!, true);
    if (node === null) return 'EINVAL';
    const i = c.conn.watches.findIndex((w) => w.node === node && w.token === strs[1]);
    if (i < 0) return 'ENOENT';
    c.conn.watches.splice(i, 1);
    return { type: XS_UNWATCH, payload: ACK };
  }

  private doTransactionStart(c: Ctx): Result {
    const conn = c.conn;
    // No nested transactions.
    if (c.tx !== null) return 'EBUSY';
    if (conn.unprivileged && conn.transactions.size > XS_QUOTA.transactions) return 'ENOSPC';
    let id = conn.nextTxId;
    while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
    conn.nextTxId = (id + 1) >>> 0;
    conn.transactions.set(id, new Transaction(id));
    return { type: XS_TRANSACTION_START, payload: nulStrings(String(id)) };
  }

  private doTransactionEnd(c: Ctx, p: Uint8Array): Result {
    const arg = oneArg(p);
    if (arg !== 'T' && arg !== 'F') return 'EINVAL';
    const tx = c.tx;
    if (tx === null) return 'ENOENT';
    c.conn.transactions.delete(tx.id);
    if (arg === 'T') {
      if (tx.fail) return 'ENOMEM';
      const e = this.finalize(tx);
      if (e !== undefined) return e;
    }
    return { type: XS_TRANSACTION_END, payload: ACK };
  }

  /**
   * finalize_transaction: EAGAIN if any node the transaction read changed
   * since; otherwise its changes become global (each a new generation) and
   * their queued watch events fire.
   */
  private finalize(tx: Transaction): XsErrno | undefined {
    for (const [name, a] of tx.accessed) {
      if (!a.check) continue;
      const cur = this.nodes.get(name);
      if ((cur?.generation ?? NO_GENERATION) !== a.generation) return 'EAGAIN';
    }
    for (const [name, a] of tx.accessed) {
      if (a.modified) {
        if (a.node !== null) this.nodes.set(name, { ...a.node, generation: ++this.generation });
        else this.nodes.delete(name);
      }
      if (a.fireWatch) this.fireWatches(null, name, null, a.watchExact, a.oldPerms);
    }
    return undefined;
  }

  // ---- node access -------------------------------------------------------------------------------

  /** perm_for_conn. */
  permFor(conn: XsConnection, perms: readonly XsPermEntry[]): number {
    return permFor(conn, perms);
  }

  /**
   * get_node: the node at a path argument if the connection has `perm` on it;
   * otherwise EINVAL (bad path), EACCES or ENOENT, where ENOENT is told only to
   * those who may `perm` the closest existing ancestor (errno_from_parents).
   */
  private getNode(
    c: Ctx,
    path: string | null,
    perm: number,
    allowSpecial: boolean,
  ): { name: string; node: XsNode } | XsErrno {
    const name = canonicalize(c.conn, path, allowSpecial);
    if (name === null) return 'EINVAL';
    const node = this.readNode(c, name);
    let err: XsErrno;
    if (node === undefined) err = 'ENOENT';
    else if ((permFor(c.conn, node.perms) & perm) !== perm) err = 'EACCES';
    else return { name, node };
    // ask_parents: what does the closest existing ancestor say?
    let anc: XsNode | undefined;
    let p = name;
    do {
      p = parentPath(p);
      anc = this.readNode(c, p);
    } while (anc === undefined && p !== '/');
    const parentPerm = anc === undefined ? XS_PERM_NONE : permFor(c.conn, anc.perms);
    return (parentPerm & perm) !== 0 ? err : 'EACCES';
  }

  /** read_node: through the transaction when there is one (recording the access). */
  private readNode(c: Ctx, name: string): XsNode | undefined {
    const tx = c.tx;
    if (tx === null) return this.nodes.get(name);
    let a = tx.accessed.get(name);
    if (a === undefined) {
      const live = this.nodes.get(name) ?? null;
      a = {
        generation: live?.generation ?? NO_GENERATION,
        check: true,
        modified: false,
        node: live,
        oldPerms: live?.perms ?? null,
        fireWatch: false,
        watchExact: false,
      };
      tx.accessed.set(name, a);
    }
    return a.node ?? undefined;
  }

  /** The node-size quota of unprivileged domains (domain_max_chk ACC_NODESZ). */
  private nodeTooBig(c: Ctx, node: XsNode): boolean {
    if (!c.conn.unprivileged) return false;
    let childlen = 0;
    for (const ch of node.children) childlen += toBytes(ch).length + 1;
    const size = NODE_HDR_SIZE + node.perms.length * XS_PERMISSIONS_SIZE + node.value.length + childlen;
    return size > XS_QUOTA.nodeSize;
  }

  /** write_node: stores `node` (globally, or in the transaction) with a new generation. */
  private writeNode(c: Ctx, name: string, node: XsNode, quota = true): XsErrno | undefined {
    if (quota && this.nodeTooBig(c, node)) return 'ENOSPC';
    const n: XsNode = { ...node, generation: ++this.generation };
    const tx = c.tx;
    if (tx === null) {
      this.nodes.set(name, n);
      return undefined;
    }
    let a = tx.accessed.get(name);
    if (a === undefined) {
      a = {
        generation: NO_GENERATION,
        check: false,
        modified: false,
        node: null,
        oldPerms: null,
        fireWatch: false,
        watchExact: false,
      };
      tx.accessed.set(name, a);
    }
    a.node = n;
    a.modified = true;
    return undefined;
  }

  private deleteNode(c: Ctx, name: string): void {
    this.generation++;
    const tx = c.tx;
    if (tx === null) {
      this.nodes.delete(name);
      return;
    }
    const a = tx.accessed.get(name);
    if (a === undefined) return; // never read in this transaction: nothing to delete
    a.node = null;
    a.modified = true;
  }

  /**
   * create_node / construct_node: the node and any missing ancestors, each
   * inheriting its parent's permissions, owned by an unprivileged creator.
   */
  private createNode(c: Ctx, name: string, value: Uint8Array): XsNode | XsErrno {
    const names: string[] = [];
    let parentName = name;
    let parent: XsNode | undefined;
    do {
      names.push(parentName);
      parentName = parentPath(parentName);
      parent = this.readNode(c, parentName);
    } while (parent === undefined && parentName !== '/');
    if (parent === undefined) return 'EINVAL';
    // quota_nb_entry_per_domain: an unprivileged domain owns at most XS_QUOTA.nodes nodes.
    if (c.conn.unprivileged && this.ownedNodes(c, c.conn.domid) + names.length > XS_QUOTA.nodes)
      return 'ENOSPC';
    // Walk back down, constructing the missing nodes.
    const writes: [string, XsNode][] = [];
    let pName = parentName;
    let p: XsNode = parent;
    for (let i = names.length - 1; i >= 0; i--) {
      const n = names[i]!;
      const updatedParent: XsNode = { ...p, children: [...p.children, baseName(n)] };
      writes.push([pName, updatedParent]);
      const perms = p.perms.map((e) => ({ ...e }));
      if (c.conn.unprivileged) perms[0] = { ...perms[0]!, id: c.conn.domid };
      const node: XsNode = {
        value: i === 0 ? value : new Uint8Array(0),
        perms,
        children: [],
        generation: NO_GENERATION,
      };
      pName = n;
      p = node;
    }
    writes.push([pName, p]);
    // Each write replaces its parent's record: keep the last one per name.
    const finals = new Map<string, XsNode>();
    for (const [n, node] of writes) finals.set(n, node);
    for (const node of finals.values()) if (this.nodeTooBig(c, node)) return 'ENOSPC';
    // Bottom up, as create_node writes them.
    for (const [n, node] of [...finals].reverse()) this.writeNode(c, n, node, false);
    return finals.get(name)!;
  }

  /** Nodes owned by `domid` as this request sees the tree (with its transaction's changes). */
  private ownedNodes(c: Ctx, domid: number): number {
    const tx = c.tx;
    let n = 0;
    for (const [name, node] of this.nodes) {
      const a = tx?.accessed.get(name);
      const cur = a?.modified ? a.node : node;
      if (cur !== null && cur.perms[0]?.id === domid) n++;
    }
    if (tx !== null) {
      for (const [name, a] of tx.accessed) {
        if (a.modified && a.node !== null && !this.nodes.has(name) && a.node.perms[0]?.id === domid) n++;
      }
    }
    return n;
  }

  /**
   * rm_node: removes the subtree (children first), firing each removed node's
   * watches (exactly, the root as a change of the tree), then drops the entry
   * from the parent.
   */
  private rmNode(c: Ctx, name: string): XsErrno | undefined {
    const pname = parentPath(name);
    const parent = this.readNode(c, pname);
    if (parent === undefined) return 'EINVAL';
    const walk = (n: string): void => {
      const node = this.readNode(c, n);
      if (node === undefined) return;
      for (const ch of node.children) walk(childPath(n, ch));
      this.deleteNode(c, n);
      this.fireWatches(c, n, node, n !== name, null);
    };
    walk(name);
    const base = baseName(name);
    const fresh = this.readNode(c, pname)!;
    if (!fresh.children.includes(base)) return 'EIO';
    return this.writeNode(c, pname, { ...fresh, children: fresh.children.filter((x) => x !== base) }, false);
  }

  /** domain_tree_remove: every node still owned by a dead domain goes (with its subtree). */
  private removeOwnedBy(domid: number): void {
    const c = this.internal;
    const visit = (n: string): void => {
      const node = this.nodes.get(n);
      if (node === undefined) return;
      if (n !== '/' && node.perms[0]!.id === domid) {
        this.rmNode(c, n);
        return;
      }
      for (const ch of [...node.children]) visit(childPath(n, ch));
    };
    visit('/');
  }

  // ---- watches -----------------------------------------------------------------------------------

  /**
   * fire_watches: in a transaction, queued until commit; otherwise an event
   * for each watch at or above `name` (exact: on `name` itself) of each
   * connection that may read the node (with `oldPerms`, its permissions before
   * the change) or its parent.
   */
  private fireWatches(
    c: Ctx | null,
    name: string,
    node: XsNode | null,
    exact: boolean,
    oldPerms: readonly XsPermEntry[] | null,
  ): void {
    if (c?.tx) {
      const a = c.tx.accessed.get(name);
      if (a === undefined) {
        c.tx.fail = true;
        return;
      }
      if (!a.fireWatch) {
        a.fireWatch = true;
        a.watchExact = exact;
      } else if (!exact) a.watchExact = false;
      return;
    }
    for (const i of this.conns) {
      if (i.ignored || i.watches.length === 0) continue;
      if (!this.watchPermitted(i, name, node, oldPerms)) continue;
      for (const w of i.watches) {
        if (exact ? w.node === name : isChildPath(name, w.node, w.depth))
          sendEvent(i, name.slice(w.prefixLen), w.token);
      }
    }
  }

  /** watch_permitted: the node (old or new permissions) or its parent readable by the watcher. */
  private watchPermitted(
    conn: XsConnection,
    name: string,
    node: XsNode | null,
    oldPerms: readonly XsPermEntry[] | null,
  ): boolean {
    if (oldPerms !== null && (permFor(conn, oldPerms) & XS_PERM_READ) !== 0) return true;
    const n = node ?? this.nodes.get(name);
    if (n === undefined) return false;
    if ((permFor(conn, n.perms) & XS_PERM_READ) !== 0) return true;
    const parent = this.nodes.get(parentPath(name));
    return parent !== undefined && (permFor(conn, parent.perms) & XS_PERM_READ) !== 0;
  }

  private fireSpecial(name: string): void {
    const node = this.nodes.get(name);
    if (node !== undefined) this.fireWatches(null, name, node, true, null);
  }

  private check(e: XsErrno | undefined, what: string): void {
    if (e !== undefined) throw new Error(`xenstore ${what}: ${e}`);
  }
}

/** The request types handled here besides the privileged ones. */
const OPS = new Set([
  XS_DIRECTORY,
  XS_READ,
  XS_GET_PERMS,
  XS_WATCH,
  XS_UNWATCH,
  XS_TRANSACTION_START,
  XS_TRANSACTION_END,
  XS_GET_DOMAIN_PATH,
  XS_WRITE,
  XS_MKDIR,
  XS_RM,
  XS_SET_PERMS,
  XS_RESET_WATCHES,
  XS_DIRECTORY_PART,
  XS_GET_FEATURE,
]);

/** onearg: the payload is exactly one nul-terminated string. */
function oneArg(p: Uint8Array): string | null {
  if (p.length === 0 || p.indexOf(0) !== p.length - 1) return null;
  return fromBytes(p.subarray(0, p.length - 1));
}
