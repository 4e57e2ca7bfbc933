// Sizes, limits and defaults. Reference §2.7.

/** XEN_PAGE_SHIFT, as in xen/include/public/xen.h. */
export const XEN_PAGE_SHIFT = 12;
/** XEN_PAGE_SIZE, as in xen/include/public/xen.h. */
export const XEN_PAGE_SIZE = 4096;

/** GRANT_ENTRY_V1_SIZE, as in xen/include/public/grant_table.h. */
export const GRANT_ENTRY_V1_SIZE = 8;
/** GRANT_ENTRY_V2_SIZE, as in xen/include/public/grant_table.h. */
export const GRANT_ENTRY_V2_SIZE = 16;
/** GRANT_STATUS_SIZE, as in xen/include/public/grant_table.h. */
export const GRANT_STATUS_SIZE = 2;
/** v1 entries per grant frame. */
export const GRANT_PER_FRAME_V1 = XEN_PAGE_SIZE / GRANT_ENTRY_V1_SIZE;
/** v2 entries per grant frame. */
export const GRANT_PER_FRAME_V2 = XEN_PAGE_SIZE / GRANT_ENTRY_V2_SIZE;
/** Status words per status frame. */
export const GRANT_STATUS_PER_FRAME = XEN_PAGE_SIZE / GRANT_STATUS_SIZE;

/** GNTTAB_NR_RESERVED_ENTRIES, as in xen/include/public/grant_table.h. */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
/** GNTTAB_RESERVED_CONSOLE, as in xen/include/public/grant_table.h. */
export const GNTTAB_RESERVED_CONSOLE = 0;
/** GNTTAB_RESERVED_XENSTORE, as in xen/include/public/grant_table.h. */
export const GNTTAB_RESERVED_XENSTORE = 1;

/** INITIAL_NR_GRANT_FRAMES, as in xen/common/grant_table.c. */
export const INITIAL_NR_GRANT_FRAMES = 1;
/** DEFAULT_MAX_GRANT_FRAMES, as in xen/common/grant_table.c. */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
/** DEFAULT_MAX_MAPTRACK_FRAMES, as in xen/common/grant_table.c. */
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;
/** MAPTRACK_ENTRY_SIZE, as in xen/common/grant_table.c. */
export const MAPTRACK_ENTRY_SIZE = 16;
/** MAPTRACK_PER_PAGE, as in xen/common/grant_table.c. */
export const MAPTRACK_PER_PAGE = XEN_PAGE_SIZE / MAPTRACK_ENTRY_SIZE;

/** Bound on CMPXCHG attempts against a guest-controlled entry (v1 pin, transfer prepare). */
export const GNTTAB_CMPXCHG_ATTEMPTS = 5;

/** Pin counters: four 8-bit counters in one u32. */
export const GNTPIN_hstw_shift = 0;
/** GNTPIN_hstr_shift, as in xen/common/grant_table.c. */
export const GNTPIN_hstr_shift = 8;
/** GNTPIN_devw_shift, as in xen/common/grant_table.c. */
export const GNTPIN_devw_shift = 16;
/** GNTPIN_devr_shift, as in xen/common/grant_table.c. */
export const GNTPIN_devr_shift = 24;
/** GNTPIN_hstw_inc, as in xen/common/grant_table.c. */
export const GNTPIN_hstw_inc = 1 << GNTPIN_hstw_shift;
/** GNTPIN_hstr_inc, as in xen/common/grant_table.c. */
export const GNTPIN_hstr_inc = 1 << GNTPIN_hstr_shift;
/** GNTPIN_devw_inc, as in xen/common/grant_table.c. */
export const GNTPIN_devw_inc = 1 << GNTPIN_devw_shift;
/** GNTPIN_devr_inc, as in xen/common/grant_table.c. */
export const GNTPIN_devr_inc = 1 << GNTPIN_devr_shift;
/** GNTPIN_hstw_mask, as in xen/common/grant_table.c. */
export const GNTPIN_hstw_mask = 0xff << GNTPIN_hstw_shift;
/** GNTPIN_hstr_mask, as in xen/common/grant_table.c. */
export const GNTPIN_hstr_mask = 0xff << GNTPIN_hstr_shift;
/** GNTPIN_devw_mask, as in xen/common/grant_table.c. */
export const GNTPIN_devw_mask = 0xff << GNTPIN_devw_shift;
/** Written as a positive number: 0xff << 24 overflows int32. */
export const GNTPIN_devr_mask = 0xff000000;

/** Number of status frames for a given number of grant frames (v2). */
export function statusFramesFor(grantFrames: number): number {
  return Math.ceil((grantFrames * GRANT_PER_FRAME_V2) / GRANT_STATUS_PER_FRAME);
}
