// The victim's guest program under attack: fills the domain's RAM with the
// canary (see canary.ts), runs the user's module, then lists the event
// channels the module left open. A throw from the module propagates, so the
// host sees the crash.
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { GuestContext } from '../../guest/context.ts';
import { HYPERCALL_ARG_PAGES } from '../../guest/layout.ts';
import { importUserModule } from '../../host/user-module.ts';
import { canary } from './canary.ts';
import { openPorts, type VictimArgs } from './victim.ts';

export interface HarnessArgs {
  /** URL of the victim module. */
  module: string;
  victim: VictimArgs;
  /** Fill RAM with the canary first. */
  poison: boolean;
}

export interface HarnessResult {
  /** What the victim's default export returned. */
  result: unknown;
  /** Ports left open (not counting the xenstore channel). */
  openPorts: number[];
}

export default async function harness(ctx: GuestContext, a: HarnessArgs): Promise<HarnessResult> {
  if (a.poison) {
    const mark = canary(ctx.start.domid);
    const page = new Uint8Array(XEN_PAGE_SIZE);
    for (let i = 0; i < XEN_PAGE_SIZE; i += mark.length) page.set(mark, i);
    // The last pages of RAM are the hypercall argument area: scratch, left alone.
    const pages = ctx.start.ramBytes / XEN_PAGE_SIZE - HYPERCALL_ARG_PAGES;
    for (let p = 0; p < pages; p++) ctx.mem.write(p * XEN_PAGE_SIZE, page);
  }
  const mod = (await importUserModule(a.module)) as {
    default?: (ctx: GuestContext, args: VictimArgs) => unknown;
  };
  if (typeof mod.default !== 'function')
    throw new TypeError(
      `${a.module} has no default export function (ctx, args) => result (see gnttab attack --help)`,
    );
  const result = await mod.default(ctx, a.victim);
  let cloneable: unknown = result;
  try {
    structuredClone(result);
  } catch {
    cloneable = String(result);
  }
  return { result: cloneable, openPorts: openPorts(ctx) };
}
