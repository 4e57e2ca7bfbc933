// gnttab_request_version (guest-side.md §3.5), at init and at resume: ask for
// v2 when told to or when it is needed, then use whatever set_version reports.
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { GuestContext } from '../context.ts';
import { setVersion } from '../hypercall.ts';
import type { GnttabOps } from './ops.ts';
import { GnttabV1Ops } from './ops-v1.ts';
import { GnttabV2Ops } from './ops-v2.ts';

/** Linux's grant_table.version parameter: 1 or 2 forces the layout; 'auto' chooses. */
export type GnttabVersionOption = 1 | 2 | 'auto';

/**
 * gnttab_need_v2: v2 is needed when a frame number may not fit v1's u32
 * frame field. PV Linux asks Xen's CPUID leaf for the machine address width
 * (above 44 bits); others look at the highest possible PFN (2^32 or more).
 * Machine memory and guest RAM here stay below 4 GiB, so neither ever holds.
 */
export function gnttabNeedV2(ctx: GuestContext): boolean {
  const maxPfn = Math.ceil(ctx.start.ramBytes / XEN_PAGE_SIZE) - 1;
  return maxPfn >= 2 ** 32;
}

/** set_version as asked; v2 ops only if the hypercall succeeded and Xen reports version 2. */
export function requestVersion(ctx: GuestContext, option: GnttabVersionOption): GnttabOps {
  const want = option === 'auto' ? (gnttabNeedV2(ctx) ? 2 : 1) : option;
  const r = setVersion(ctx, want);
  const ops: GnttabOps = r.rc === 0 && r.version === 2 ? new GnttabV2Ops(ctx) : new GnttabV1Ops(ctx);
  ctx.log(`Grant tables using version ${ops.version} layout`);
  return ops;
}
