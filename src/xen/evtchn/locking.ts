// The two-of-a-kind lock orders of event_channel.c (xen-locking.md §2.2):
// two domains' event_locks, as evtchn_bind_interdomain takes them, and two
// channels' locks (double_evtchn_lock). Each orders by its lock's key, the
// model's address of the struct (Xen compares pointers), so any two threads
// that need the same pair take it in the same order.
import type { Domain } from '../domain.ts';
import type { RwLock } from '../locks.ts';
import type { EvtchnPort } from './port-table.ts';

/** Write-locks both domains' event_locks, lower key first (one lock when ld is rd). */
export function doubleEventLock(ld: Domain, rd: Domain): void {
  if (ld === rd) {
    ld.eventLock.writeLock();
    return;
  }
  writeLockOrdered(ld.eventLock, rd.eventLock);
}

export function doubleEventUnlock(ld: Domain, rd: Domain): void {
  ld.eventLock.writeUnlock();
  if (ld !== rd) rd.eventLock.writeUnlock();
}

/**
 * double_evtchn_lock: both channels' locks for writing, lower key first. The
 * two are always distinct ports (a loopback channel is two ports of one
 * domain; Xen ASSERTs it).
 */
export function doubleEvtchnLock(a: EvtchnPort, b: EvtchnPort): void {
  if (a === b || a.lock.sameLock(b.lock)) throw new Error(`double_evtchn_lock of port ${a.port} with itself`);
  writeLockOrdered(a.lock, b.lock);
}

/** Write-locks two distinct rwlocks, lower key first; neither is held if this throws. */
function writeLockOrdered(x: RwLock, y: RwLock): void {
  const [first, second] = x.key < y.key ? [x, y] : [y, x];
  first.writeLock();
  try {
    second.writeLock();
  } catch (err) {
    first.writeUnlock();
    throw err;
  }
}

export function doubleEvtchnUnlock(a: EvtchnPort, b: EvtchnPort): void {
  a.lock.writeUnlock();
  b.lock.writeUnlock();
}
