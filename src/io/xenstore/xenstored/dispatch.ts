// process_message (core.c): one whole request, checked (known type,
// privilege, transaction id), handed to its operation, and its reply or
// error queued on the connection.
import type { Transaction, XsConnection } from '../connection.ts';
import { domainPath } from '../nodes.ts';
import { flush, sendError, sendReply } from '../output.ts';
import { atoi, DOMID_SELF } from '../permissions.ts';
import {
  nulStrings,
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
  type XsMessage,
} from '../wire.ts';
import {
  doDirectory,
  doDirectoryPart,
  doGetFeature,
  doGetPerms,
  doRead,
  doRm,
  doSetPerms,
  doWrite,
  mkdir,
  oneArg,
} from './operations.ts';
import { ACK, type Ctx, type Result, type Store } from './store.ts';
import { doTransactionEnd, doTransactionStart } from './transactions.ts';
import { doUnwatch, doWatch } from './watches.ts';

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

/**
 * process_message: one whole request of `conn`; the reply (and any watch
 * events) are queued on the connections concerned.
 */
export function handleMessage(s: Store, conn: XsConnection, msg: XsMessage): void {
  if (conn.closed || conn.ignored) return;
  const r = process(s, conn, msg);
  if (typeof r === 'string') sendError(conn, msg, r);
  else if (r !== null) sendReply(conn, msg, r);
  flush(conn);
}

function process(s: Store, conn: XsConnection, msg: XsMessage): Result | null {
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
      return doDirectory(s, c, p);
    case XS_DIRECTORY_PART:
      return doDirectoryPart(s, c, p);
    case XS_READ:
      return doRead(s, c, p);
    case XS_GET_PERMS:
      return doGetPerms(s, c, p);
    case XS_WATCH:
      return doWatch(c, msg);
    case XS_UNWATCH:
      return doUnwatch(c, p);
    case XS_TRANSACTION_START:
      return doTransactionStart(c);
    case XS_TRANSACTION_END:
      return doTransactionEnd(s, c, p);
    case XS_GET_DOMAIN_PATH: {
      const a = oneArg(p);
      if (a === null) return 'EINVAL';
      return { type: XS_GET_DOMAIN_PATH, payload: nulStrings(domainPath(atoi(a))) };
    }
    case XS_WRITE:
      return doWrite(s, c, p);
    case XS_MKDIR: {
      const r = mkdir(s, c, oneArg(p));
      return typeof r === 'string' ? r : { type: XS_MKDIR, payload: ACK };
    }
    case XS_RM:
      return doRm(s, c, p);
    case XS_SET_PERMS:
      return doSetPerms(s, c, p);
    case XS_IS_DOMAIN_INTRODUCED: {
      const a = oneArg(p);
      if (a === null) return 'EINVAL';
      const id = atoi(a);
      const yes = id === DOMID_SELF || s.domains.has(id >>> 0);
      return { type: XS_IS_DOMAIN_INTRODUCED, payload: nulStrings(yes ? 'T' : 'F') };
    }
    case XS_GET_FEATURE:
      return doGetFeature(s, c, p);
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
