// Where a guest kernel puts things in its own address space (PV: virtual
// addresses; HVM: guest-physical). RAM sits at 0..ramBytes; everything else
// lives in the unpopulated space above it, as Linux uses its unpopulated
// ranges. All guest code agrees on these.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';

/** Pages at the top of RAM kept for hypercall argument structs. */
export const HYPERCALL_ARG_PAGES = 4;

/** Start of the hypercall argument area for a domain with `ramBytes` of RAM. */
export function hypercallArgArea(ramBytes: number): number {
  return ramBytes - HYPERCALL_ARG_PAGES * XEN_PAGE_SIZE;
}

/** The shared-info page (event channel pending and mask bits). */
export const SHARED_INFO_VA = 0xb000_0000;
/**
 * The xenstore ring page (struct xenstore_domain_interface), the page after
 * shared info: an HVM domain finds it here, placed by the host (its GFN is
 * StartInfo.storeFrame, as HVM_PARAM_STORE_PFN); a PV domain maps the MFN in
 * StartInfo.storeFrame here.
 */
export const XENSTORE_RING_VA = 0xb000_1000;
/** Grant-table shared frames, one after another (up to 64 frames: 256 KiB). */
export const GNTTAB_SHARED_VA = 0xc000_0000;
/** Grant-table status frames (v2). */
export const GNTTAB_STATUS_VA = 0xd000_0000;
/** Unpopulated space for mapping foreign grants, up to the 4 GiB limit. */
export const FOREIGN_MAP_VA = 0xe000_0000;
export const FOREIGN_MAP_END = 0x1_0000_0000;
