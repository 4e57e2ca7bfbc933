// What a scenario module for the schedule explorer looks like: the domains to
// create, a guest program for each that runs (in a worker thread of its own,
// one at a time, switched at every shared-word step), and a check of the end
// state. Its default export is a Scenario, or a function of parameters that
// returns one (evaluated the same way in the explorer and in every worker).
import type { GuestContext } from '../../guest/context.ts';
import type { DomainOptions, GuestOutcome, Host, HostOptions } from '../../host/host.ts';
import { importUserModule } from '../../host/user-module.ts';
import type { InvariantOptions } from '../../xen/invariants.ts';

/** Words on the board: a scenario's own handshake (a stand-in for xenstore), shared by all its guests. */
export const BOARD_WORDS = 16;

/**
 * Numbered words every guest of a scenario shares, outside machine memory.
 * Each get and set is a step the explorer can switch at, as a shared word is.
 */
export interface Board {
  get(i: number): number;
  /** Sets the word and wakes guests waiting on it. */
  set(i: number, v: number): void;
  /**
   * Waits until `pred` holds for word i (checked at once, then each time the
   * word is set), or `ms` of virtual time pass: the value, or null on timeout.
   */
  until(i: number, pred: (v: number) => boolean, ms?: number): Promise<number | null>;
}

/** What each guest program receives besides its context. */
export interface ExploreArgs<P = unknown> {
  /** Every domain of the scenario by name. */
  domids: Readonly<Record<string, number>>;
  params: P;
  board: Board;
}

export type ScenarioGuest<P = unknown> = (ctx: GuestContext, args: ExploreArgs<P>) => unknown;

/** One run of a scenario as its check() sees it: each guest's result or crash, the board. */
export interface ScenarioRun {
  /** Each guest's result or crash, by name. */
  outcomes: Readonly<Record<string, GuestOutcome>>;
  domids: Readonly<Record<string, number>>;
  /** The board's words at the end. */
  board: readonly number[];
}

/** A check's verdict: nothing (or an empty list) when all is well, else what went wrong. Throwing counts too. */
// biome-ignore lint/suspicious/noConfusingVoidType: a check that returns nothing passes
export type CheckResult = void | string | readonly string[];

/** A scenario for explore(): its domains, guest programs, parameters and the check of each run. */
export interface Scenario<P = unknown> {
  name?: string;
  description?: string;
  /** Host options for every schedule (default { memoryMiB: 4 }). */
  host?: HostOptions;
  /** Domains to create, in this order (the first is dom0). */
  domains: Readonly<Record<string, DomainOptions>>;
  /** The guest program run in each named domain; domains without one stay idle. */
  guests: Readonly<Record<string, ScenarioGuest<P>>>;
  /** Looks at the end state of a schedule in which every guest finished. */
  check?: (host: Host, run: ScenarioRun) => CheckResult | Promise<CheckResult>;
  /** host.checkInvariants options after every schedule; false skips the invariant check. */
  invariants?: InvariantOptions | false;
}

export type ScenarioExport<P = unknown> = Scenario<P> | ((params: P) => Scenario<P>);

/** Identity, for type inference in scenario modules. */
export function defineScenario<P = unknown>(s: ScenarioExport<P>): ScenarioExport<P> {
  return s;
}

/** The scenario a module's default export gives for these parameters. */
export async function loadScenario(url: string, params: unknown): Promise<Scenario> {
  const mod = (await importUserModule(url)) as { default?: unknown };
  const d = mod.default;
  const s = typeof d === 'function' ? (d as (p: unknown) => unknown)(params) : d;
  if (s === null || typeof s !== 'object' || !('guests' in s) || !('domains' in s))
    throw new TypeError(
      `${url}: the default export must be a scenario { domains, guests, check? } or a function of params returning one`,
    );
  return s as Scenario;
}
