// Xen's lock-order checker (locks.ts, debug mode) around a scenario: on for
// the run, and the nested lock classes seen, for XSA-73 and XSA-411.
import { heldLocks, lockDebugEnabled, lockOrderSeen, setLockDebug } from '../../xen/locks.ts';

/** Runs fn with the checker on; restores the previous mode. */
export async function withLockChecker<T>(fn: () => Promise<T> | T): Promise<T> {
  const was = lockDebugEnabled();
  setLockDebug(true);
  try {
    return await fn();
  } finally {
    setLockDebug(was);
  }
}

/** The (outer>inner) class pairs this thread nested so far. */
export function nestedPairs(): string[] {
  return lockOrderSeen();
}

/** The locks held right now, outermost first. */
export function held(): string[] {
  return heldLocks();
}
