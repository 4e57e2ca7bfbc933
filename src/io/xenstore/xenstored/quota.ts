// The quotas of unprivileged domains (domain.c's domain_max_chk and
// quota_nb_entry_per_domain): privileged connections have none.
import type { XsConnection } from '../connection.ts';
import { NODE_HDR_SIZE, XS_PERMISSIONS_SIZE, XS_QUOTA, type XsNode } from '../nodes.ts';
import { toBytes } from '../wire.ts';
import type { Ctx, Store } from './store.ts';

/** The node-size quota of unprivileged domains (domain_max_chk ACC_NODESZ). */
export function nodeTooBig(c: Ctx, node: XsNode): boolean {
  if (!c.conn.unprivileged) return false;
  let childlen = 0;
  for (const ch of node.children) childlen += toBytes(ch).length + 1;
  const size = NODE_HDR_SIZE + node.perms.length * XS_PERMISSIONS_SIZE + node.value.length + childlen;
  return size > XS_QUOTA.nodeSize;
}

/** quota_nb_entry_per_domain: creating `more` nodes takes an unprivileged domain beyond XS_QUOTA.nodes. */
export function nodesQuotaExceeded(s: Store, c: Ctx, more: number): boolean {
  return c.conn.unprivileged && ownedNodes(s, c, c.conn.domid) + more > XS_QUOTA.nodes;
}

/** Nodes owned by `domid` as this request sees the tree (with its transaction's changes). */
function ownedNodes(s: Store, c: Ctx, domid: number): number {
  const tx = c.tx;
  let n = 0;
  for (const [name, node] of s.nodes) {
    const a = tx?.accessed.get(name);
    const cur = a?.modified ? a.node : node;
    if (cur !== null && cur.perms[0]?.id === domid) n++;
  }
  if (tx !== null) {
    for (const [name, a] of tx.accessed) {
      if (a.modified && a.node !== null && !s.nodes.has(name) && a.node.perms[0]?.id === domid) n++;
    }
  }
  return n;
}

/** The watch quota (ACC_WATCH): checked before a new watch is added. */
export function watchesQuotaExceeded(conn: XsConnection): boolean {
  return conn.unprivileged && conn.watches.length > XS_QUOTA.watches;
}

/** The transaction quota (ACC_TRANS): checked before a new transaction starts. */
export function transactionsQuotaExceeded(conn: XsConnection): boolean {
  return conn.unprivileged && conn.transactions.size > XS_QUOTA.transactions;
}

/** The permissions quota (ACC_NPERM): entries one XS_SET_PERMS may give a node. */
export function permsQuotaExceeded(conn: XsConnection, entries: number): boolean {
  return conn.unprivileged && entries > XS_QUOTA.nodePerms;
}
