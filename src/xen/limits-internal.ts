// Internal bounds of the hypervisor model.

/** Unmap and unmap_and_replace work in sub-batches of this many elements (GNTTAB_UNMAP_BATCH_SIZE). */
export const GNTTAB_UNMAP_BATCH_SIZE = 32;
