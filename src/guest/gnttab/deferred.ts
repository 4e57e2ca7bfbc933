// The deferred end-access list (guest-side.md §3.6, after XSA-396 and the 2023
// reclaim speed-up): grants whose access could not be ended because the peer
// still has them mapped. A timer retries every second, up to
// free_per_iteration entries a run; the entry keeps a reference on the granted
// page, so the page cannot be reused until the grant is really over.
import type { GuestContext } from '../context.ts';

/** Retry period (HZ). */
export const DEFERRED_PERIOD_MS = 1000;
/** Failed attempts before an entry is reported as still pending. */
export const DEFERRED_WARN_DELAY = 60;

export interface DeferredEntry {
  readonly ref: number;
  /** The page whose reference the entry holds (null only if none could be found). */
  readonly page: number | null;
  /** u16, counts failed attempts down to the warning; wraps. */
  warnDelay: number;
}

export interface DeferredHooks {
  /** The version's end_foreign_access_ref. */
  endAccess(ref: number): boolean;
  /** put_free_entry (runs the free callbacks). */
  putFreeEntry(ref: number): void;
  /** put_page. */
  putPage(page: number): void;
}

export class DeferredList {
  /** free_per_iteration: entries tried per timer run; 0 = no limit. */
  freePerIteration = 10;
  /** Entries queued and not yet freed. */
  deferredCount = 0;
  /** Grants given up on (Linux: when the entry could not be allocated; never here). */
  leakedCount = 0;
  private readonly ctx: GuestContext;
  private readonly hooks: DeferredHooks;
  private readonly list: DeferredEntry[] = [];
  private timerPending = false;

  constructor(ctx: GuestContext, hooks: DeferredHooks) {
    this.ctx = ctx;
    this.hooks = hooks;
  }

  /** The entries waiting, oldest first. */
  get entries(): readonly DeferredEntry[] {
    return this.list;
  }

  /** gnttab_add_deferred: the caller already holds `page`'s reference for the entry. */
  add(ref: number, page: number | null): void {
    this.list.push({ ref, page, warnDelay: DEFERRED_WARN_DELAY });
    this.armTimer();
    this.deferredCount++;
  }

  private armTimer(): void {
    if (this.timerPending) return;
    this.timerPending = true;
    this.ctx.clock.setTimer(DEFERRED_PERIOD_MS, () => this.handle());
  }

  /** gnttab_handle_deferred: one timer run. */
  private handle(): void {
    this.timerPending = false;
    let nr = this.freePerIteration;
    const ignoreLimit = nr === 0;
    let first: DeferredEntry | null = null;
    while ((ignoreLimit || nr-- > 0) && this.list.length > 0) {
      const entry = this.list[0]!;
      if (entry === first) break;
      this.list.shift();
      if (this.hooks.endAccess(entry.ref)) {
        this.deferredCount--;
        this.hooks.putFreeEntry(entry.ref);
        if (entry.page !== null) this.hooks.putPage(entry.page);
      } else {
        entry.warnDelay = (entry.warnDelay - 1) & 0xffff;
        if (entry.warnDelay === 0) this.ctx.log(`g.e. 0x${entry.ref.toString(16)} still pending`);
        if (first === null) first = entry;
        this.list.push(entry);
      }
    }
    if (this.list.length === 0) {
      if (this.deferredCount !== 0)
        this.ctx.log(`WARNING: deferred list empty but ${this.deferredCount} entries counted`);
    } else {
      this.armTimer();
    }
  }
}
