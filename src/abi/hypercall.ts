// Hypercall numbers, sub-op numbers and the errno values hypercalls return
// (xen/include/public/xen.h, grant_table.h, memory.h, event_channel.h, errno.h).

/** __HYPERVISOR_memory_op, as in xen/include/public/xen.h. */
export const __HYPERVISOR_memory_op = 12;
/** __HYPERVISOR_update_va_mapping, as in xen/include/public/xen.h. */
export const __HYPERVISOR_update_va_mapping = 14;
/** __HYPERVISOR_grant_table_op, as in xen/include/public/xen.h. */
export const __HYPERVISOR_grant_table_op = 20;
/** __HYPERVISOR_update_va_mapping_otherdomain, as in xen/include/public/xen.h. */
export const __HYPERVISOR_update_va_mapping_otherdomain = 22;
/** __HYPERVISOR_event_channel_op, as in xen/include/public/xen.h. */
export const __HYPERVISOR_event_channel_op = 32;

/** GNTTABOP_map_grant_ref, as in xen/include/public/grant_table.h. */
export const GNTTABOP_map_grant_ref = 0;
/** GNTTABOP_unmap_grant_ref, as in xen/include/public/grant_table.h. */
export const GNTTABOP_unmap_grant_ref = 1;
/** GNTTABOP_setup_table, as in xen/include/public/grant_table.h. */
export const GNTTABOP_setup_table = 2;
/** GNTTABOP_dump_table, as in xen/include/public/grant_table.h. */
export const GNTTABOP_dump_table = 3;
/** GNTTABOP_transfer, as in xen/include/public/grant_table.h. */
export const GNTTABOP_transfer = 4;
/** GNTTABOP_copy, as in xen/include/public/grant_table.h. */
export const GNTTABOP_copy = 5;
/** GNTTABOP_query_size, as in xen/include/public/grant_table.h. */
export const GNTTABOP_query_size = 6;
/** GNTTABOP_unmap_and_replace, as in xen/include/public/grant_table.h. */
export const GNTTABOP_unmap_and_replace = 7;
/** GNTTABOP_set_version, as in xen/include/public/grant_table.h. */
export const GNTTABOP_set_version = 8;
/** GNTTABOP_get_status_frames, as in xen/include/public/grant_table.h. */
export const GNTTABOP_get_status_frames = 9;
/** GNTTABOP_get_version, as in xen/include/public/grant_table.h. */
export const GNTTABOP_get_version = 10;
/** GNTTABOP_swap_grant_ref, as in xen/include/public/grant_table.h. */
export const GNTTABOP_swap_grant_ref = 11;
/** GNTTABOP_cache_flush, as in xen/include/public/grant_table.h. */
export const GNTTABOP_cache_flush = 12;

/** Low 12 bits of `cmd` carry the op; the bits above are continuation state (cache_flush only). */
export const GNTTABOP_CMD_MASK = 0xfff;
/** GNTTABOP_CONTINUATION_ARG_SHIFT, as in xen/include/public/grant_table.h. */
export const GNTTABOP_CONTINUATION_ARG_SHIFT = 12;

/** GNTTABOP_NAMES, as in xen/include/public/grant_table.h. */
export const GNTTABOP_NAMES: readonly string[] = [
  'map_grant_ref',
  'unmap_grant_ref',
  'setup_table',
  'dump_table',
  'transfer',
  'copy',
  'query_size',
  'unmap_and_replace',
  'set_version',
  'get_status_frames',
  'get_version',
  'swap_grant_ref',
  'cache_flush',
];

/** memory_op's cmd: the sub-op in the low 6 bits, a continuation's start extent above. */
export const MEMOP_EXTENT_SHIFT = 6;
/** MEMOP_CMD_MASK, as in xen/include/public/memory.h. */
export const MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1;

/** XENMEM_add_to_physmap, as in xen/include/public/memory.h. */
export const XENMEM_add_to_physmap = 7;
/** XENMEM_remove_from_physmap, as in xen/include/public/memory.h. */
export const XENMEM_remove_from_physmap = 15;
/** XENMEM_acquire_resource, as in xen/include/public/memory.h. */
export const XENMEM_acquire_resource = 28;
/** XENMEM_acquire_resource type: ioreq server pages (xen/include/public/memory.h). */
export const XENMEM_resource_ioreq_server = 0;
/** XENMEM_acquire_resource type: grant table frames (xen/include/public/memory.h). */
export const XENMEM_resource_grant_table = 1;
/** XENMEM_acquire_resource type: vmtrace buffers (xen/include/public/memory.h). */
export const XENMEM_resource_vmtrace_buf = 2;
/** XENMEM_resource_grant_table id: the shared frames (xen/include/public/memory.h). */
export const XENMEM_resource_grant_table_id_shared = 0;
/** XENMEM_resource_grant_table id: the v2 status frames (xen/include/public/memory.h). */
export const XENMEM_resource_grant_table_id_status = 1;
/** The domain's shared-info page (idx 0 only). */
export const XENMAPSPACE_shared_info = 0;
/** XENMAPSPACE_grant_table, as in xen/include/public/memory.h. */
export const XENMAPSPACE_grant_table = 1;
/** ORed into `idx` of add_to_physmap to select a status frame instead of a shared frame. */
export const XENMAPIDX_grant_table_status = 0x80000000;

/** update_va_mapping flags (UVMF_*): the TLB-flush selector; our model flushes nothing. */
export const UVMF_NONE = 0;
/** UVMF_TLB_FLUSH, as in xen/include/public/xen.h. */
export const UVMF_TLB_FLUSH = 1;
/** UVMF_INVLPG, as in xen/include/public/xen.h. */
export const UVMF_INVLPG = 2;

/** x86 PTE bits used by update_va_mapping and grant host mappings (the low 12 bits of a PTE). */
export const _PAGE_PRESENT = 0x1;
/** _PAGE_RW, as in the x86 page-table entry bits. */
export const _PAGE_RW = 0x2;
/** _PAGE_USER, as in the x86 page-table entry bits. */
export const _PAGE_USER = 0x4;
/** _PAGE_PWT, as in the x86 page-table entry bits. */
export const _PAGE_PWT = 0x8;
/** _PAGE_PCD, as in the x86 page-table entry bits. */
export const _PAGE_PCD = 0x10;
/** _PAGE_ACCESSED, as in the x86 page-table entry bits. */
export const _PAGE_ACCESSED = 0x20;
/** _PAGE_DIRTY, as in the x86 page-table entry bits. */
export const _PAGE_DIRTY = 0x40;
/** _PAGE_PAT, as in the x86 page-table entry bits. */
export const _PAGE_PAT = 0x80;
/** _PAGE_GLOBAL, as in the x86 page-table entry bits. */
export const _PAGE_GLOBAL = 0x100;
/** The software-available bits 9-11 (_PAGE_AVAIL0..2); GNTMAP_guest_avail bits land here. */
export const _PAGE_AVAIL0 = 0x200;
/** _PAGE_AVAIL, as in the x86 page-table entry bits. */
export const _PAGE_AVAIL = 0xe00;
/** The PTE's cache-attribute bits (PAT, PCD, PWT), as x86 defines them. */
export const PAGE_CACHE_ATTRS = _PAGE_PAT | _PAGE_PCD | _PAGE_PWT;
// Xen handles PTE flags as 24 bits (get_pte_flags): bits 0-11 of the PTE, and
// PTE bits 52-63 as bits 12-23. The frame is PTE bits 12-51.
/** PTE bits 52-62, free for software. */
export const _PAGE_AVAIL_HIGH = 0x7ff << 12;
/** PTE bit 63, no-execute. */
export const _PAGE_NX_BIT = 1 << 23;
/** PTE bit 62: Xen's mark on a grant PTE, in debug builds only (0 when NDEBUG). */
export const _PAGE_GNTTAB = 1 << 22;

/** Xen errno values (xen/include/public/errno.h); hypercalls return their negation. */
export const XEN_EPERM = 1;
/** XEN_ENOENT, as in xen/include/public/errno.h. */
export const XEN_ENOENT = 2;
/** XEN_ESRCH, as in xen/include/public/errno.h. */
export const XEN_ESRCH = 3;
/** XEN_EIO, as in xen/include/public/errno.h. */
export const XEN_EIO = 5;
/** XEN_ENXIO, as in xen/include/public/errno.h. */
export const XEN_ENXIO = 6;
/** XEN_EAGAIN, as in xen/include/public/errno.h. */
export const XEN_EAGAIN = 11;
/** XEN_ENOMEM, as in xen/include/public/errno.h. */
export const XEN_ENOMEM = 12;
/** XEN_EACCES, as in xen/include/public/errno.h. */
export const XEN_EACCES = 13;
/** XEN_EFAULT, as in xen/include/public/errno.h. */
export const XEN_EFAULT = 14;
/** XEN_EBUSY, as in xen/include/public/errno.h. */
export const XEN_EBUSY = 16;
/** XEN_EEXIST, as in xen/include/public/errno.h. */
export const XEN_EEXIST = 17;
/** XEN_EINVAL, as in xen/include/public/errno.h. */
export const XEN_EINVAL = 22;
/** XEN_ENOSPC, as in xen/include/public/errno.h. */
export const XEN_ENOSPC = 28;
/** XEN_ERANGE, as in xen/include/public/errno.h. */
export const XEN_ERANGE = 34;
/** XEN_ENOSYS, as in xen/include/public/errno.h. */
export const XEN_ENOSYS = 38;
/** XEN_EILSEQ, as in xen/include/public/errno.h. */
export const XEN_EILSEQ = 84;
/** XEN_EOPNOTSUPP, as in xen/include/public/errno.h. */
export const XEN_EOPNOTSUPP = 95;

/** XEN_ERRNO_NAMES, as in xen/include/public/errno.h. */
export const XEN_ERRNO_NAMES: Readonly<Record<number, string>> = {
  [XEN_EPERM]: 'EPERM',
  [XEN_ENOENT]: 'ENOENT',
  [XEN_ESRCH]: 'ESRCH',
  [XEN_EIO]: 'EIO',
  [XEN_ENXIO]: 'ENXIO',
  [XEN_EAGAIN]: 'EAGAIN',
  [XEN_ENOMEM]: 'ENOMEM',
  [XEN_EACCES]: 'EACCES',
  [XEN_EFAULT]: 'EFAULT',
  [XEN_EBUSY]: 'EBUSY',
  [XEN_EEXIST]: 'EEXIST',
  [XEN_EINVAL]: 'EINVAL',
  [XEN_ENOSPC]: 'ENOSPC',
  [XEN_ERANGE]: 'ERANGE',
  [XEN_ENOSYS]: 'ENOSYS',
  [XEN_EILSEQ]: 'EILSEQ',
  [XEN_EOPNOTSUPP]: 'EOPNOTSUPP',
};

/** "-EINVAL" style name of a hypercall return value. */
export function errnoName(ret: number): string {
  if (ret === 0) return '0';
  const name = XEN_ERRNO_NAMES[-ret];
  return name === undefined ? String(ret) : `-${name}`;
}
