// The one small interface all guest code (src/guest, src/io) is written against:
// its memory, its hypercall, its clock, and a way to sleep on a shared word. The
// same guest code runs unchanged in one thread (deterministic: a virtual clock,
// in-thread waiters) or in a worker thread per domain (real time, Atomics.wait).
import type { GuestMemory } from '../machine/guest-memory.ts';
import type { Spinner } from '../machine/wait-policy.ts';

/** A PV guest (its own page tables, MFNs in grants) or an HVM guest (a P2M, GFNs in grants). */
export type DomainKind = 'pv' | 'hvm';

/** Time as the guest sees it; virtual (deterministic) in single-thread mode. */
export interface GuestClock {
  /** Milliseconds since the host started. */
  now(): number;
  /** Runs fn after ms milliseconds; returns a function that cancels it. */
  setTimer(ms: number, fn: () => void): () => void;
  /** Resolves after ms milliseconds. */
  sleep(ms: number): Promise<void>;
}

/** What the toolstack tells a domain at start (Xen's start_info, in spirit). */
export interface StartInfo {
  domid: number;
  kind: DomainKind;
  /** Bytes of RAM, mapped at 0..ramBytes. */
  ramBytes: number;
  /**
   * The domain's shared-info page (event channels). PV: its MFN, to map with
   * update_va_mapping. HVM: 0, the idx to place with add_to_physmap
   * (XENMAPSPACE_shared_info). -1 when the host gives none.
   */
  sharedInfoFrame: number;
  /**
   * The xenstore ring page (xs_wire.h struct xenstore_domain_interface). PV:
   * its MFN (start_info.store_mfn), to map with update_va_mapping. HVM: its GFN
   * (HVM_PARAM_STORE_PFN), already in the P2M. -1 when the host runs no xenstore.
   */
  storeFrame: number;
  /** The event channel to xenstore (start_info.store_evtchn, HVM_PARAM_STORE_EVTCHN); 0 when none. */
  storePort: number;
}

/** How GuestContext.wait ended: notified, the word did not hold `expected`, or the time ran out. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/**
 * What guest code runs on: its start info, its memory, Xen's raw hypercall,
 * a clock and a sleep on a shared word. Host.context(domid) gives one in the
 * test thread; a worker guest's default export receives one.
 */
export interface GuestContext {
  readonly start: StartInfo;
  /** The domain's own address space, as its CPU sees it. */
  readonly mem: GuestMemory;
  /** Xen's raw hypercall: returns 0 or a negative errno. */
  hypercall(nr: number | bigint, ...args: (number | bigint)[]): number;
  readonly clock: GuestClock;
  /**
   * Sleeps while the Int32 at `addr` (own address space) holds `expected`, until
   * someone notifies that word (SharedWords.notify32) or `ms` pass (Infinity: no limit).
   * An abort of `signal` ends the sleep early, as a timeout does ('timed-out').
   */
  wait(addr: number, expected: number, ms: number, signal?: AbortSignal): Promise<WaitResult>;
  /** A line on the domain's console. */
  log(line: string): void;
  /**
   * The host's wait policy as guests may use it (spin briefly on a ring index
   * while cores are spare); absent where waiting never spins (single-thread mode).
   */
  readonly spinner?: Spinner;
}
