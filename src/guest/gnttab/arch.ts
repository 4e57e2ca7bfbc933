// Where the grant table lives in the guest's address space (Linux's
// arch/x86/xen/grant-table.c and the auto-translated branch of gnttab_map):
// PV maps the frames Xen names with update_va_mapping at GNTTAB_SHARED_VA and
// GNTTAB_STATUS_VA; HVM asks Xen to place them there with add_to_physmap.

import { DOMID_SELF } from '../../abi/domid.ts';
import {
  _PAGE_PRESENT,
  _PAGE_RW,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
} from '../../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import type { GuestContext } from '../context.ts';
import { addToPhysmap, updateVaMapping } from '../hypercall.ts';
import { GNTTAB_SHARED_VA, GNTTAB_STATUS_VA } from '../layout.ts';

/** Address of grant entry `ref` of `entrySize` bytes (frames lie back to back). */
export function entryAddr(ref: number, entrySize: number): number {
  return GNTTAB_SHARED_VA + ref * entrySize;
}

/** Address of the v2 status word of `ref`. */
export function statusAddr(ref: number): number {
  return GNTTAB_STATUS_VA + ref * 2;
}

function mapAt(ctx: GuestContext, va: number, frames: readonly number[], writable: boolean): number {
  for (let i = 0; i < frames.length; i++) {
    const pte = frames[i]! * XEN_PAGE_SIZE + _PAGE_PRESENT + (writable ? _PAGE_RW : 0);
    const rc = updateVaMapping(ctx, va + i * XEN_PAGE_SIZE, pte);
    if (rc !== 0) return rc;
  }
  return 0;
}

/** arch_gnttab_map_shared (PV): the shared frames, writable, from GNTTAB_SHARED_VA. */
export function archMapShared(ctx: GuestContext, frames: readonly number[]): number {
  return mapAt(ctx, GNTTAB_SHARED_VA, frames, true);
}

/** arch_gnttab_map_status (PV): the status frames, read-only (the guest only reads them). */
export function archMapStatus(ctx: GuestContext, frames: readonly number[]): number {
  return mapAt(ctx, GNTTAB_STATUS_VA, frames, false);
}

/** arch_gnttab_unmap (PV): zero PTEs for n frames from va. */
export function archUnmap(ctx: GuestContext, va: number, n: number): void {
  for (let i = 0; i < n; i++) updateVaMapping(ctx, va + i * XEN_PAGE_SIZE, 0);
}

/**
 * The auto-translated branch of gnttab_map: add_to_physmap of grant frames
 * end..start, highest first so Xen grows its table once; then (v2, which Linux
 * does not do on HVM but we do so that v2 works there) the status frames
 * statusEnd..statusStart the same way. Stops at the first error and returns it.
 */
export function autoXlatMap(
  ctx: GuestContext,
  start: number,
  end: number,
  statusStart: number,
  statusEnd: number,
): number {
  for (let i = end; i >= start; i--) {
    const rc = addToPhysmap(
      ctx,
      DOMID_SELF,
      XENMAPSPACE_grant_table,
      i,
      GNTTAB_SHARED_VA / XEN_PAGE_SIZE + i,
    );
    if (rc !== 0) {
      ctx.log(`grant table add_to_physmap failed, err=${rc}`);
      return rc;
    }
  }
  for (let i = statusEnd; i >= statusStart; i--) {
    const rc = addToPhysmap(
      ctx,
      DOMID_SELF,
      XENMAPSPACE_grant_table,
      XENMAPIDX_grant_table_status + i,
      GNTTAB_STATUS_VA / XEN_PAGE_SIZE + i,
    );
    if (rc !== 0) {
      ctx.log(`grant table add_to_physmap(status) failed, err=${rc}`);
      return rc;
    }
  }
  return 0;
}
