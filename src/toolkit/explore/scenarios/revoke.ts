// Built-in scenario "revoke": a frontend grants a page to a backend and at
// once tears the device down (ends access, retrying while the backend holds
// it), then reuses the page for a secret; the backend maps the grant as soon
// as it hears of it, waits a while for a request that never comes, reads the
// page and unmaps. Whatever the interleaving, the backend must never read the
// secret: a revoke that reports success while the backend has the page mapped
// (a plain store instead of v1's compare-exchange, say) lets it.
// Params: { version?: 1 | 2 } selects the frontend's grant-table layout.
import type { GuestContext } from '../../../guest/context.ts';
import { mapForeignRefs, unmapForeignRefs } from '../../../guest/gnttab/backend.ts';
import { Gnttab } from '../../../guest/gnttab/grant-table.ts';
import { PageAllocator } from '../../../guest/pages.ts';
import { defineScenario, type ExploreArgs, type Scenario, type ScenarioRun } from '../scenario.ts';

/** Board words of the handshake. */
export const REF_WORD = 0;
export const REQUEST_WORD = 1;
/** What the frontend's page holds while granted, and after it took it back. */
export const PUBLIC_BYTE = 0x5a;
export const SECRET_BYTE = 0xa5;

/** Parameters of the built-in revoke scenario: the grant-table layout (default 1). */
export interface RevokeParams {
  version?: 1 | 2;
}

export interface FrontendResult {
  ref: number;
  /** Revokes refused because the backend held the grant. */
  refused: number;
}

export interface BackendResult {
  mapped: boolean;
  /** The backend read the frontend's secret through the grant. */
  sawSecret: boolean;
}

/**
 * The frontend's side with a given way of ending access: `endAccess` returns
 * true when the grant is revoked (the ref free again), false while it is in use.
 */
export async function revokingFrontend(
  ctx: GuestContext,
  args: ExploreArgs<RevokeParams>,
  endAccess: (gt: Gnttab, ref: number) => boolean,
): Promise<FrontendResult> {
  const gt = new Gnttab(ctx, { version: args.params?.version ?? 1 });
  if (gt.init() !== 0) throw new Error('gnttab init failed');
  const page = gt.pages.alloc();
  ctx.mem.fill(page, 4096, PUBLIC_BYTE);
  const ref = gt.grantForeignAccess(args.domids.backend!, gt.pages.gfnOf(page), false);
  if (ref < 0) throw new Error(`grant failed: ${ref}`);
  args.board.set(REF_WORD, ref);
  let refused = 0;
  while (!endAccess(gt, ref)) {
    refused++;
    if (refused > 1000) throw new Error(`ref ${ref} still in use after 1000 tries`);
    await ctx.clock.sleep(1);
  }
  // The grant is over: the page is ours again, and holds a secret now.
  ctx.mem.fill(page, 4096, SECRET_BYTE);
  return { ref, refused };
}

/** The backend: maps the ref on the board, waits up to 10 ms for a request, reads the page, unmaps. */
export async function mappingBackend(ctx: GuestContext, args: ExploreArgs): Promise<BackendResult> {
  const ref = await args.board.until(REF_WORD, (v) => v !== 0);
  const pages = new PageAllocator(ctx);
  const m = await mapForeignRefs(ctx, pages, args.domids.frontend!, [ref!]);
  if (m.mapping === null) return { mapped: false, sawSecret: false };
  await args.board.until(REQUEST_WORD, (v) => v !== 0, 10);
  const bytes = ctx.mem.read(m.mapping.addr, 64);
  const u = unmapForeignRefs(ctx, pages, m.mapping);
  if (u.rc !== 0) throw new Error(`unmap failed: ${u.rc}`);
  return { mapped: true, sawSecret: bytes.includes(SECRET_BYTE) };
}

/** The verdict of every revoke scenario: the backend never saw the secret. */
export function checkRevoke(_host: unknown, run: ScenarioRun): string[] {
  const back = run.outcomes.backend?.result as BackendResult | undefined;
  if (back?.sawSecret === true)
    return ['the backend read the secret the frontend wrote after its revoke reported success'];
  return [];
}

/** The scenario with a given end of access (the real driver's by default). */
export function revokeScenario(
  endAccess: (gt: Gnttab, ref: number) => boolean = (gt, ref) => gt.tryEndForeignAccess(ref),
  name = 'revoke',
): (params: RevokeParams) => Scenario<RevokeParams> {
  return (params) => ({
    name,
    description: `a frontend (v${params?.version ?? 1}) revokes a grant while a backend maps it`,
    domains: { backend: { kind: 'pv', memoryKiB: 256 }, frontend: { kind: 'hvm', memoryKiB: 256 } },
    guests: {
      backend: (ctx, a) => mappingBackend(ctx, a),
      frontend: (ctx, a) => revokingFrontend(ctx, a as ExploreArgs<RevokeParams>, endAccess),
    },
    check: checkRevoke,
  });
}

export default defineScenario(revokeScenario());
