// Reserved domain ids (xen/include/public/xen.h). Reference §2.6.

/** DOMID_FIRST_RESERVED, as in xen/include/public/xen.h. */
export const DOMID_FIRST_RESERVED = 0x7ff0;
/** DOMID_SELF, as in xen/include/public/xen.h. */
export const DOMID_SELF = 0x7ff0;
/** DOMID_IO, as in xen/include/public/xen.h. */
export const DOMID_IO = 0x7ff1;
/** DOMID_XEN, as in xen/include/public/xen.h. */
export const DOMID_XEN = 0x7ff2;
/** DOMID_COW, as in xen/include/public/xen.h. */
export const DOMID_COW = 0x7ff3;
/** DOMID_INVALID, as in xen/include/public/xen.h. */
export const DOMID_INVALID = 0x7ff4;
/** DOMID_ANY, as in xen/include/public/xen.h. */
export const DOMID_ANY = 0x7ff5;
/** DOMID_IDLE, as in xen/include/public/xen.h. */
export const DOMID_IDLE = 0x7fff;
/** DOMID_MASK, as in xen/include/public/xen.h. */
export const DOMID_MASK = 0x7fff;
