// Watches (watch.c): XS_WATCH and XS_UNWATCH, and fire_watches, which tells
// each watching connection that may read a changed node.
import type { Watch, XsConnection } from '../connection.ts';
import { canonicalize, isChildPath, parentPath, type XsNode } from '../nodes.ts';
import { sendEvent, sendReply } from '../output.ts';
import { atoi, permFor, XS_PERM_READ, type XsPermEntry } from '../permissions.ts';
import {
  splitStrings,
  XENSTORE_SERVER_FEATURE_WATCHDEPTH,
  XS_UNWATCH,
  XS_WATCH,
  type XsMessage,
} from '../wire.ts';
import { watchesQuotaExceeded } from './quota.ts';
import { ACK, type Ctx, type Result, type Store } from './store.ts';

export function doWatch(c: Ctx, msg: XsMessage): Result | null {
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
  if (watchesQuotaExceeded(conn)) return 'E2BIG';
  const w: Watch = { node, token, prefixLen: relative ? conn.home.length + 1 : 0, depth };
  conn.watches.push(w);
  sendReply(conn, msg, { type: XS_WATCH, payload: ACK });
  // We fire once up front: simplifies clients and restart.
  sendEvent(conn, node.slice(w.prefixLen), token);
  return null;
}

export function doUnwatch(c: Ctx, p: Uint8Array): Result {
  const strs = splitStrings(p);
  if (strs.length !== 2) return 'EINVAL';
  const node = canonicalize(c.conn, strs[0]!, true);
  if (node === null) return 'EINVAL';
  const i = c.conn.watches.findIndex((w) => w.node === node && w.token === strs[1]);
  if (i < 0) return 'ENOENT';
  c.conn.watches.splice(i, 1);
  return { type: XS_UNWATCH, payload: ACK };
}

/**
 * fire_watches: in a transaction, queued until commit; otherwise an event
 * for each watch at or above `name` (exact: on `name` itself) of each
 * connection that may read the node (with `oldPerms`, its permissions before
 * the change) or its parent.
 */
export function fireWatches(
  s: Store,
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
  for (const i of s.conns) {
    if (i.ignored || i.watches.length === 0) continue;
    if (!watchPermitted(s, i, name, node, oldPerms)) continue;
    for (const w of i.watches) {
      if (exact ? w.node === name : isChildPath(name, w.node, w.depth))
        sendEvent(i, name.slice(w.prefixLen), w.token);
    }
  }
}

/** watch_permitted: the node (old or new permissions) or its parent readable by the watcher. */
function watchPermitted(
  s: Store,
  conn: XsConnection,
  name: string,
  node: XsNode | null,
  oldPerms: readonly XsPermEntry[] | null,
): boolean {
  if (oldPerms !== null && (permFor(conn, oldPerms) & XS_PERM_READ) !== 0) return true;
  const n = node ?? s.nodes.get(name);
  if (n === undefined) return false;
  if ((permFor(conn, n.perms) & XS_PERM_READ) !== 0) return true;
  const parent = s.nodes.get(parentPath(name));
  return parent !== undefined && (permFor(conn, parent.perms) & XS_PERM_READ) !== 0;
}

/** The special watches, @introduceDomain and @releaseDomain. */
export function fireSpecial(s: Store, name: string): void {
  const node = s.nodes.get(name);
  if (node !== undefined) fireWatches(s, null, name, node, true, null);
}
