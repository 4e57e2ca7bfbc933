// GNTST_* per-element status codes and Xen's message table (GNTTABOP_error_msgs,
// indexed by -status). Reference §2.5.

/** GNTST_okay, as in xen/include/public/grant_table.h. */
export const GNTST_okay = 0;
/** GNTST_general_error, as in xen/include/public/grant_table.h. */
export const GNTST_general_error = -1;
/** GNTST_bad_domain, as in xen/include/public/grant_table.h. */
export const GNTST_bad_domain = -2;
/** GNTST_bad_gntref, as in xen/include/public/grant_table.h. */
export const GNTST_bad_gntref = -3;
/** GNTST_bad_handle, as in xen/include/public/grant_table.h. */
export const GNTST_bad_handle = -4;
/** GNTST_bad_virt_addr, as in xen/include/public/grant_table.h. */
export const GNTST_bad_virt_addr = -5;
/** GNTST_bad_dev_addr, as in xen/include/public/grant_table.h. */
export const GNTST_bad_dev_addr = -6;
/** GNTST_no_device_space, as in xen/include/public/grant_table.h. */
export const GNTST_no_device_space = -7;
/** GNTST_permission_denied, as in xen/include/public/grant_table.h. */
export const GNTST_permission_denied = -8;
/** GNTST_bad_page, as in xen/include/public/grant_table.h. */
export const GNTST_bad_page = -9;
/** GNTST_bad_copy_arg, as in xen/include/public/grant_table.h. */
export const GNTST_bad_copy_arg = -10;
/** GNTST_address_too_big, as in xen/include/public/grant_table.h. */
export const GNTST_address_too_big = -11;
/** GNTST_eagain, as in xen/include/public/grant_table.h. */
export const GNTST_eagain = -12;
/** GNTST_no_space, as in xen/include/public/grant_table.h. */
export const GNTST_no_space = -13;

/** GNTTABOP_error_msgs, as in xen/include/public/grant_table.h. */
export const GNTTABOP_error_msgs: readonly string[] = [
  'okay',
  'undefined error',
  'unrecognised domain id',
  'invalid grant reference',
  'invalid mapping handle',
  'invalid virtual address',
  'invalid device address',
  'no spare translation slot in the I/O MMU',
  'permission denied',
  'bad page',
  'copy arguments cross page boundary',
  'page address size too large',
  'operation not done; try again',
  'out of space',
];

/** GNTST_NAMES, as in xen/include/public/grant_table.h. */
export const GNTST_NAMES: readonly string[] = [
  'okay',
  'general_error',
  'bad_domain',
  'bad_gntref',
  'bad_handle',
  'bad_virt_addr',
  'bad_dev_addr',
  'no_device_space',
  'permission_denied',
  'bad_page',
  'bad_copy_arg',
  'address_too_big',
  'eagain',
  'no_space',
];

/** True for every value Xen may write into a `status` field. */
export function isGntst(status: number): boolean {
  return Number.isInteger(status) && status <= 0 && status >= -13;
}

/** Xen's message for a status, as GNTTABOP_error_msgs gives it. */
export function gntstMessage(status: number): string {
  return GNTTABOP_error_msgs[-status] ?? `unknown status ${status}`;
}

/** "GNTST_bad_gntref" style name of a status. */
export function gntstName(status: number): string {
  const n = GNTST_NAMES[-status];
  return n === undefined ? `GNTST_(${status})` : `GNTST_${n}`;
}
