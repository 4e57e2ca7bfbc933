// What the advisory catalogue (`gnttab xsa`) holds and what a scenario run
// reports: the setup, each hypercall with its status, the expectation from the
// advisory's fix, the checks made against it, races and the invariant check.

/** Which side of Xen the advisory is about. */
export type XsaSide = 'hypervisor' | 'guest';

/** One hypercall (or guest action) of a scenario, as it happened. */
export interface XsaStep {
  /** The actor: "A", "B", "A vCPU1", "host". */
  who: string;
  /** The operation: "map_grant_ref", "set_version", "write entry". */
  op: string;
  /** Its arguments, readable. */
  args: string;
  /** Its outcome: a GNTST name, "rc 0", "-EBUSY", "done". */
  status: string;
}

/** One expectation checked against what happened. */
export interface XsaCheck {
  what: string;
  ok: boolean;
}

/** How a race was run: on worker threads until the window was hit, or as a fixed interleaving. */
export interface XsaRace {
  mode: 'threads' | 'interleaving';
  /** The window, in words: what counts as a hit. */
  window: string;
  /** Hits wanted (threads) or steps forced (interleaving). */
  target: number;
  /** Hits counted. */
  hits: number;
  /** Attempts made to get them. */
  attempts: number;
  /** Checks made on every attempt failed this many times (0 when safe). */
  violations: number;
  /**
   * Threads only: set when this host cannot reach the window (why, and what it
   * needs). The harness still ran its bounded attempts and checks, but hits
   * stay 0: they cannot be told from a queued hypercall.
   */
  needs?: string;
}

/** What a scenario run reports. */
export interface XsaResult {
  id: number;
  title: string;
  /** The starting state, line by line. */
  setup: string[];
  steps: XsaStep[];
  /** What a fixed Xen (or guest) must show, from the advisory's fix. */
  expectation: string[];
  checks: XsaCheck[];
  races: XsaRace[];
  /** Violations of the cross-cutting invariants at the end (empty: all hold). */
  invariants: string[];
  /** safe: every check passed and every invariant holds. */
  outcome: 'safe' | 'unsafe';
}

/** What runXsa takes: how long a thread race runs, or none at all. */
export interface XsaRunOptions {
  /** Thread races: hits of the window wanted before the race stops (default 20). */
  hits?: number;
  /** Thread races: attempts at most (default 200000). */
  maxAttempts?: number;
  /** Skip the worker-thread half of races (the fixed interleaving still runs). */
  threads?: boolean;
}

/** One advisory of the catalogue. */
export interface XsaEntry {
  id: number;
  year: number;
  title: string;
  /** The operation it attacks ("GNTTABOP_swap_grant_ref", "gnttab_end_foreign_access"). */
  op: string;
  side: XsaSide;
  /** Runs the scenario on a fresh host; absent when notApplicable is set. */
  run?: (options?: XsaRunOptions) => Promise<XsaResult>;
  /** Why gnttab's model cannot express this advisory. */
  notApplicable?: string;
  /** Races it runs (threads and a fixed interleaving). */
  race?: boolean;
  /**
   * A race whose worker-thread half cannot hit its window on today's host:
   * what it needs (two hypercalls inside Xen at once: the SMP hypervisor of
   * issue 8; a domain with two vCPU threads).
   */
  threadsNeed?: string;
}
