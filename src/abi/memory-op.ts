// memory_op arguments (xen/include/public/memory.h).
import { defineStruct } from './struct.ts';

/** xen_add_to_physmap, as in xen/include/public/memory.h. */
export const xen_add_to_physmap = defineStruct('xen_add_to_physmap', 24, {
  domid: [0, 'u16'],
  size: [2, 'u16'],
  space: [4, 'u32'],
  idx: [8, 'u64'],
  gpfn: [16, 'u64'],
});

/** XENMEM_remove_from_physmap: the entry at gpfn leaves domid's physical map (xen/include/public/memory.h). */
export const xen_remove_from_physmap = defineStruct('xen_remove_from_physmap', 16, {
  domid: [0, 'u16'],
  gpfn: [8, 'u64'],
});

/**
 * XENMEM_acquire_resource: nr_frames frames of resource (type, id) of domid,
 * from frame on. A null frame_list with nr_frames 0 asks for the resource's
 * size, written back into nr_frames. frame_list receives MFNs (PV caller) or
 * holds the GFNs to place them at (translated caller).
 */
export const xen_mem_acquire_resource = defineStruct('xen_mem_acquire_resource', 32, {
  domid: [0, 'u16'],
  type: [2, 'u16'],
  id: [4, 'u32'],
  nr_frames: [8, 'u32'],
  pad: [12, 'u32'],
  frame: [16, 'u64'],
  frame_list: [24, 'u64'],
});
