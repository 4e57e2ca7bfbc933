// The argument structs of the 13 GNTTABOP_ commands, x86_64 layout (reference §3.2).
import { defineStruct } from './struct.ts';

/** gnttab_map_grant_ref, as in xen/include/public/grant_table.h. */
export const gnttab_map_grant_ref = defineStruct('gnttab_map_grant_ref', 32, {
  host_addr: [0, 'u64'],
  flags: [8, 'u32'],
  ref: [12, 'u32'],
  dom: [16, 'u16'],
  status: [18, 'i16'],
  handle: [20, 'u32'],
  dev_bus_addr: [24, 'u64'],
});

/** gnttab_unmap_grant_ref, as in xen/include/public/grant_table.h. */
export const gnttab_unmap_grant_ref = defineStruct('gnttab_unmap_grant_ref', 24, {
  host_addr: [0, 'u64'],
  dev_bus_addr: [8, 'u64'],
  handle: [16, 'u32'],
  status: [20, 'i16'],
});

/** gnttab_setup_table, as in xen/include/public/grant_table.h. */
export const gnttab_setup_table = defineStruct('gnttab_setup_table', 24, {
  dom: [0, 'u16'],
  nr_frames: [4, 'u32'],
  status: [8, 'i16'],
  /** XEN_GUEST_HANDLE(xen_pfn_t): address of an array of u64 */
  frame_list: [16, 'u64'],
});

/** gnttab_dump_table, as in xen/include/public/grant_table.h. */
export const gnttab_dump_table = defineStruct('gnttab_dump_table', 4, {
  dom: [0, 'u16'],
  status: [2, 'i16'],
});

/** gnttab_transfer, as in xen/include/public/grant_table.h. */
export const gnttab_transfer = defineStruct('gnttab_transfer', 24, {
  mfn: [0, 'u64'],
  domid: [8, 'u16'],
  ref: [12, 'u32'],
  status: [16, 'i16'],
});

/** struct gnttab_copy: two gnttab_copy_ptr (16 bytes each), then len, flags, status. */
export const gnttab_copy = defineStruct('gnttab_copy', 40, {
  /** source.u: ref (u32) or gmfn (xen_pfn_t) */
  source_u: [0, 'u64'],
  source_domid: [8, 'u16'],
  source_offset: [10, 'u16'],
  dest_u: [16, 'u64'],
  dest_domid: [24, 'u16'],
  dest_offset: [26, 'u16'],
  len: [32, 'u16'],
  flags: [34, 'u16'],
  status: [36, 'i16'],
});

/** struct gnttab_copy_ptr, the sub-struct of gnttab_copy. */
export const gnttab_copy_ptr = defineStruct('gnttab_copy_ptr', 16, {
  u: [0, 'u64'],
  domid: [8, 'u16'],
  offset: [10, 'u16'],
});

/** gnttab_query_size, as in xen/include/public/grant_table.h. */
export const gnttab_query_size = defineStruct('gnttab_query_size', 16, {
  dom: [0, 'u16'],
  nr_frames: [4, 'u32'],
  max_nr_frames: [8, 'u32'],
  status: [12, 'i16'],
});

/** gnttab_unmap_and_replace, as in xen/include/public/grant_table.h. */
export const gnttab_unmap_and_replace = defineStruct('gnttab_unmap_and_replace', 24, {
  host_addr: [0, 'u64'],
  new_addr: [8, 'u64'],
  handle: [16, 'u32'],
  status: [20, 'i16'],
});

/** gnttab_set_version, as in xen/include/public/grant_table.h. */
export const gnttab_set_version = defineStruct('gnttab_set_version', 4, {
  version: [0, 'u32'],
});

/** gnttab_get_status_frames, as in xen/include/public/grant_table.h. */
export const gnttab_get_status_frames = defineStruct('gnttab_get_status_frames', 16, {
  nr_frames: [0, 'u32'],
  dom: [4, 'u16'],
  status: [6, 'i16'],
  /** XEN_GUEST_HANDLE(uint64_t) */
  frame_list: [8, 'u64'],
});

/** gnttab_get_version, as in xen/include/public/grant_table.h. */
export const gnttab_get_version = defineStruct('gnttab_get_version', 8, {
  dom: [0, 'u16'],
  version: [4, 'u32'],
});

/** gnttab_swap_grant_ref, as in xen/include/public/grant_table.h. */
export const gnttab_swap_grant_ref = defineStruct('gnttab_swap_grant_ref', 12, {
  ref_a: [0, 'u32'],
  ref_b: [4, 'u32'],
  status: [8, 'i16'],
});

/** gnttab_cache_flush, as in xen/include/public/grant_table.h. */
export const gnttab_cache_flush = defineStruct('gnttab_cache_flush', 16, {
  /** union { u64 dev_bus_addr; u32 ref } */
  a: [0, 'u64'],
  offset: [8, 'u16'],
  length: [10, 'u16'],
  op: [12, 'u32'],
});
