// GNTTABOP_copy (reference §6.7, §9): copy bytes between grant references and
// the caller's own frames without mapping anything. Buffers stay claimed (the
// grant pinned, the page referenced) across elements naming the same ones.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_dest_gref, GNTCOPY_source_gref } from '../../abi/flags.ts';
import { gnttab_copy } from '../../abi/gnttab-ops.ts';
import { XEN_EFAULT } from '../../abi/hypercall.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import {
  GNTST_bad_copy_arg,
  GNTST_bad_domain,
  GNTST_general_error,
  GNTST_okay,
  GNTST_permission_denied,
} from '../../abi/status.ts';
import type { StructValue } from '../../abi/struct.ts';
import type { Domain } from '../domain.ts';
import { copyStructFromGuestInto, putFieldToGuest } from '../guest-io.ts';
import { getPagedMfn } from '../helpers.ts';
import type { Hypervisor } from '../hypervisor.ts';
import {
  acquireGrantForCopy,
  type CopyGrant,
  ERESTART,
  releaseGrantForCopy,
} from './acquire-grant-for-copy.ts';

/**
 * How many times one element may ask for a restart (a transitive grant changed
 * while its lock was dropped) before it fails. Xen restarts through a
 * continuation without a bound; a single-threaded model cannot wait for the
 * guest to change its mind, so it gives up with general_error instead.
 */
const MAX_RESTARTS = 16;

class CopyBuf {
  readonly readonly: boolean;
  domain: Domain | null = null;
  /** The domid as the op named it (DOMID_SELF or a number): the lock cache key. */
  domid = -1;
  /** The claimed ref or gmfn, or -1. */
  ptr = -1;
  haveGrant = false;
  haveType = false;
  /** Page referenced (-1: none). */
  mfn = -1;
  mapped = false;
  offset = 0;
  len = 0;
  /** acquireGrantForCopy's answer, reused for every claim (no allocation per element). */
  private readonly grant: CopyGrant = { status: GNTST_okay, mfn: -1, start: 0, length: 0 };

  constructor(readonly: boolean) {
    this.readonly = readonly;
  }

  /** As new, for the next hypercall (the buffer holds nothing: release ran). */
  reset(): void {
    this.domain = null;
    this.domid = -1;
    this.ptr = -1;
  }

  release(hv: Hypervisor): void {
    this.mapped = false;
    // The grant is released before the page reference goes (XSA-236).
    if (this.haveGrant) {
      releaseGrantForCopy(hv, this.domain!, this.ptr, this.readonly);
      this.haveGrant = false;
    }
    if (this.haveType) {
      hv.putPageType(this.mfn);
      this.haveType = false;
    }
    if (this.mfn >= 0) {
      hv.putPage(this.mfn);
      this.mfn = -1;
    }
  }

  valid(ptr: number, hasGref: boolean): boolean {
    if (!this.mapped) return false;
    if (hasGref) return this.haveGrant && ptr === this.ptr;
    return !this.haveGrant && ptr === this.ptr;
  }

  claim(hv: Hypervisor, ld: Domain, ptr: number, isGref: boolean): number {
    if (isGref) {
      const ref = ptr;
      const g = this.grant;
      const rc = acquireGrantForCopy(hv, this.domain!, ref, ld.domid, this.readonly, hv.opts.transitive, g);
      if (rc !== GNTST_okay) return rc;
      this.mfn = g.mfn;
      this.offset = g.start;
      this.len = g.length;
      this.ptr = ref;
      this.haveGrant = true;
    } else {
      const pf = getPagedMfn(hv, this.domain!, ptr);
      if (pf < 0) return pf;
      this.mfn = pf;
      this.ptr = ptr;
      this.offset = 0;
      this.len = XEN_PAGE_SIZE;
    }
    if (!this.readonly) {
      if (!hv.getPageTypeWritable(this.mfn)) return GNTST_general_error;
      this.haveType = true;
    }
    this.mapped = true;
    return GNTST_okay;
  }
}

/** The checks of gnttab_copy_lock_domain: a GMFN side must name exactly DOMID_SELF. */
function lockDomain(hv: Hypervisor, ld: Domain, domid: number, isGref: boolean, buf: CopyBuf): number {
  if (domid !== DOMID_SELF && !isGref) return GNTST_permission_denied;
  const d = hv.domainByAnyId(domid, ld);
  if (d === undefined) return GNTST_bad_domain;
  buf.domain = d;
  buf.domid = domid;
  return GNTST_okay;
}

type CopyOp = StructValue<keyof typeof gnttab_copy.fields>;

function copyOne(hv: Hypervisor, ld: Domain, op: CopyOp, src: CopyBuf, dest: CopyBuf): number {
  // A zero-length copy succeeds with no checks at all (a4a790f432, after XSA-448).
  if (op.len === 0) return GNTST_okay;
  const srcGref = (op.flags & GNTCOPY_source_gref) !== 0;
  const destGref = (op.flags & GNTCOPY_dest_gref) !== 0;
  if (
    src.domain === null ||
    op.source_domid !== src.domid ||
    dest.domain === null ||
    op.dest_domid !== dest.domid
  ) {
    src.release(hv);
    dest.release(hv);
    src.domain = null;
    dest.domain = null;
    let rc = lockDomain(hv, ld, op.source_domid, srcGref, src);
    if (rc === GNTST_okay) rc = lockDomain(hv, ld, op.dest_domid, destGref, dest);
    // XSM grant_copy: allowed by the default policy.
    if (rc !== GNTST_okay) {
      src.domain = null;
      dest.domain = null;
      return rc;
    }
  } else {
    // Reference §16.1: the GMFN-needs-DOMID_SELF rule holds for every element,
    // not only when the domain pair is (re)locked.
    if (!srcGref && op.source_domid !== DOMID_SELF) return GNTST_permission_denied;
    if (!destGref && op.dest_domid !== DOMID_SELF) return GNTST_permission_denied;
  }
  // A gref is the u32 at the start of the union; a gmfn is the whole xen_pfn_t.
  // (>>> 0 is the value modulo 2^32, exactly, for any integer double.)
  const srcPtr = srcGref ? op.source_u >>> 0 : op.source_u;
  const destPtr = destGref ? op.dest_u >>> 0 : op.dest_u;
  if (!src.valid(srcPtr, srcGref)) {
    src.release(hv);
    const rc = src.claim(hv, ld, srcPtr, srcGref);
    if (rc !== GNTST_okay) return rc;
  }
  if (!dest.valid(destPtr, destGref)) {
    dest.release(hv);
    const rc = dest.claim(hv, ld, destPtr, destGref);
    if (rc !== GNTST_okay) return rc;
  }
  if (op.source_offset + op.len > XEN_PAGE_SIZE || op.dest_offset + op.len > XEN_PAGE_SIZE)
    return GNTST_bad_copy_arg;
  if (op.source_offset < src.offset || op.source_offset + op.len > src.offset + src.len)
    return GNTST_general_error;
  if (op.dest_offset < dest.offset || op.dest_offset + op.len > dest.offset + dest.len)
    return GNTST_general_error;
  const u8 = hv.machine.u8;
  const from = src.mfn * XEN_PAGE_SIZE + op.source_offset;
  const to = dest.mfn * XEN_PAGE_SIZE + op.dest_offset;
  // copyWithin has memmove semantics, so overlapping ranges of one page are well defined.
  u8.copyWithin(to, from, from + op.len);
  return GNTST_okay;
}

/** What one batch works with: both buffers and the op record every element is decoded into. */
class CopyScratch {
  readonly src = new CopyBuf(true);
  readonly dest = new CopyBuf(false);
  readonly op: CopyOp = gnttab_copy.decode(new DataView(new ArrayBuffer(gnttab_copy.size)), 0);
}

/**
 * This thread's scratch (module state is per thread), lent to one batch at a
 * time: a batch that starts while another is running (a test hook re-entering
 * the hypervisor) makes its own.
 */
let spare: CopyScratch | null = null;

const STATUS = gnttab_copy.at.status;

export function grantCopy(hv: Hypervisor, ld: Domain, uop: number, count: number): number {
  const s = spare ?? new CopyScratch();
  spare = null;
  const { src, dest, op } = s;
  let rc = 0;
  try {
    for (let i = 0; i < count; i++) {
      const addr = uop + i * gnttab_copy.size;
      if (!copyStructFromGuestInto(hv, ld, addr, gnttab_copy, op)) {
        rc = -XEN_EFAULT;
        break;
      }
      let status = copyOne(hv, ld, op, src, dest);
      // A restart re-runs the element, as Xen's continuation would.
      for (let restarts = 0; status === ERESTART; restarts++) {
        src.release(hv);
        dest.release(hv);
        status = restarts < MAX_RESTARTS ? copyOne(hv, ld, op, src, dest) : GNTST_general_error;
      }
      if (status !== GNTST_okay) {
        src.release(hv);
        dest.release(hv);
      }
      if (!putFieldToGuest(hv, ld, addr, STATUS, status)) {
        rc = -XEN_EFAULT;
        break;
      }
    }
  } finally {
    src.release(hv);
    dest.release(hv);
    // No domain stays referenced from the scratch between hypercalls.
    src.reset();
    dest.reset();
    spare = s;
  }
  return rc;
}
