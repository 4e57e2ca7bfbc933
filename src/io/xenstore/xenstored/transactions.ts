// Transactions (transaction.c): XS_TRANSACTION_START and _END, and
// finalize_transaction's generation check at commit.
import { Transaction } from '../connection.ts';
import { NO_GENERATION } from '../nodes.ts';
import { nulStrings, XS_TRANSACTION_END, XS_TRANSACTION_START, type XsErrno } from '../wire.ts';
import { oneArg } from './operations.ts';
import { transactionsQuotaExceeded } from './quota.ts';
import { ACK, type Ctx, type Result, type Store } from './store.ts';
import { fireWatches } from './watches.ts';

export function doTransactionStart(c: Ctx): Result {
  const conn = c.conn;
  // No nested transactions.
  if (c.tx !== null) return 'EBUSY';
  if (transactionsQuotaExceeded(conn)) return 'ENOSPC';
  let id = conn.nextTxId;
  while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
  conn.nextTxId = (id + 1) >>> 0;
  conn.transactions.set(id, new Transaction(id));
  return { type: XS_TRANSACTION_START, payload: nulStrings(String(id)) };
}

export function doTransactionEnd(s: Store, c: Ctx, p: Uint8Array): Result {
  const arg = oneArg(p);
  if (arg !== 'T' && arg !== 'F') return 'EINVAL';
  const tx = c.tx;
  if (tx === null) return 'ENOENT';
  c.conn.transactions.delete(tx.id);
  if (arg === 'T') {
    if (tx.fail) return 'ENOMEM';
    const e = finalize(s, tx);
    if (e !== undefined) return e;
  }
  return { type: XS_TRANSACTION_END, payload: ACK };
}

/**
 * finalize_transaction: EAGAIN if any node the transaction read changed
 * since; otherwise its changes become global (each a new generation) and
 * their queued watch events fire.
 */
function finalize(s: Store, tx: Transaction): XsErrno | undefined {
  for (const [name, a] of tx.accessed) {
    if (!a.check) continue;
    const cur = s.nodes.get(name);
    if ((cur?.generation ?? NO_GENERATION) !== a.generation) return 'EAGAIN';
  }
  for (const [name, a] of tx.accessed) {
    if (a.modified) {
      if (a.node !== null) s.nodes.set(name, { ...a.node, generation: ++s.generation });
      else s.nodes.delete(name);
    }
    if (a.fireWatch) fireWatches(s, null, name, null, a.watchExact, a.oldPerms);
  }
  return undefined;
}
