// GTF_* entry flags, GNTMAP_* map flags, GNTCOPY_* and cache-flush flags
// (xen/include/public/grant_table.h). Reference §2.2–§2.4.

/** GTF_invalid, as in xen/include/public/grant_table.h. */
export const GTF_invalid = 0;
/** GTF_permit_access, as in xen/include/public/grant_table.h. */
export const GTF_permit_access = 1;
/** GTF_accept_transfer, as in xen/include/public/grant_table.h. */
export const GTF_accept_transfer = 2;
/** v2 only: copy through (trans_domid, gref). */
export const GTF_transitive = 3;
/** GTF_type_mask, as in xen/include/public/grant_table.h. */
export const GTF_type_mask = 3;

/** GTF_readonly, as in xen/include/public/grant_table.h. */
export const GTF_readonly = 1 << 2;
/** Written by Xen: entry pinned (v1 in flags, v2 in the status word). */
export const GTF_reading = 1 << 3;
/** Written by Xen: entry pinned writable. */
export const GTF_writing = 1 << 4;
/** GTF_PWT, as in xen/include/public/grant_table.h. */
export const GTF_PWT = 1 << 5;
/** GTF_PCD, as in xen/include/public/grant_table.h. */
export const GTF_PCD = 1 << 6;
/** GTF_PAT, as in xen/include/public/grant_table.h. */
export const GTF_PAT = 1 << 7;
/** GTF_sub_page, as in xen/include/public/grant_table.h. */
export const GTF_sub_page = 1 << 8;
/** accept_transfer: Xen committed to a transfer (same bit as GTF_readonly). */
export const GTF_transfer_committed = 1 << 2;
/** accept_transfer: transfer done, frame holds the new frame (same bit as GTF_reading). */
export const GTF_transfer_completed = 1 << 3;

/** GNTMAP_device_map, as in xen/include/public/grant_table.h. */
export const GNTMAP_device_map = 1 << 0;
/** GNTMAP_host_map, as in xen/include/public/grant_table.h. */
export const GNTMAP_host_map = 1 << 1;
/** GNTMAP_readonly, as in xen/include/public/grant_table.h. */
export const GNTMAP_readonly = 1 << 2;
/** GNTMAP_application_map, as in xen/include/public/grant_table.h. */
export const GNTMAP_application_map = 1 << 3;
/** GNTMAP_contains_pte, as in xen/include/public/grant_table.h. */
export const GNTMAP_contains_pte = 1 << 4;
/** _GNTMAP_guest_avail0, as in xen/include/public/grant_table.h. */
export const _GNTMAP_guest_avail0 = 16;
/** GNTMAP_guest_avail_mask, as in xen/include/public/grant_table.h. */
export const GNTMAP_guest_avail_mask = 0xffff0000;

/** GNTCOPY_source_gref, as in xen/include/public/grant_table.h. */
export const GNTCOPY_source_gref = 1 << 0;
/** GNTCOPY_dest_gref, as in xen/include/public/grant_table.h. */
export const GNTCOPY_dest_gref = 1 << 1;

/** GNTTAB_CACHE_CLEAN, as in xen/include/public/grant_table.h. */
export const GNTTAB_CACHE_CLEAN = 1 << 0;
/** GNTTAB_CACHE_INVAL, as in xen/include/public/grant_table.h. */
export const GNTTAB_CACHE_INVAL = 1 << 1;
/** GNTTAB_CACHE_SOURCE_GREF, as in xen/include/public/grant_table.h. */
export const GNTTAB_CACHE_SOURCE_GREF = 0x80000000;
