// Xen's private shadow of a grant entry in use (reference §4.2). While pin != 0
// the cached fields are authoritative and the shared entry is not read again.
import { XEN_PAGE_SIZE } from '../abi/limits.ts';

export class ActiveEntry {
  /** Four 8-bit counters: hstw | hstr << 8 | devw << 16 | devr << 24 (kept as uint32). */
  pin = 0;
  /** The grantee holding the pins. */
  domid = 0;
  /** The domain whose page is really used (the granter, or the inner granter of a transitive grant). */
  srcDomid = 0;
  transGref = 0;
  /** Window start, stored in 15 bits as Xen does (quirk §15.20). */
  start = 0;
  length = XEN_PAGE_SIZE;
  isSubPage = false;
  mfn = 0;
}
