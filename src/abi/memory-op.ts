// XENMEM_add_to_physmap's argument (xen/include/public/memory.h).
import { defineStruct } from './struct.ts';

/** xen_add_to_physmap, as in xen/include/public/memory.h. */
export const xen_add_to_physmap = defineStruct('xen_add_to_physmap', 24, {
  domid: [0, 'u16'],
  size: [2, 'u16'],
  space: [4, 'u32'],
  idx: [8, 'u64'],
  gpfn: [16, 'u64'],
});
