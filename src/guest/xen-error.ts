// The typed error of the toolstack-library surface (libxengnttab,
// libxengntshr, libxenevtchn, libxenvchan, xenstore): where the C library
// returns NULL or -1 and leaves the reason in errno, these calls throw a
// XenError that names the call, the errno (number and name) and why.
// The numbers are Linux's on x86, which is what libxen* hands its callers;
// Xen's own errno values (xen/include/public/errno.h) coincide with them.

/** errno names by number: Xen's public errno.h and the Linux ones the devices return. */
const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM',
  2: 'ENOENT',
  3: 'ESRCH',
  5: 'EIO',
  6: 'ENXIO',
  7: 'E2BIG',
  9: 'EBADF',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  17: 'EEXIST',
  19: 'ENODEV',
  21: 'EISDIR',
  22: 'EINVAL',
  25: 'ENOTTY',
  28: 'ENOSPC',
  30: 'EROFS',
  32: 'EPIPE',
  34: 'ERANGE',
  38: 'ENOSYS',
  39: 'ENOTEMPTY',
  84: 'EILSEQ',
  90: 'EMSGSIZE',
  95: 'EOPNOTSUPP',
  106: 'EISCONN',
  107: 'ENOTCONN',
  125: 'ECANCELED',
};

const ERRNO_NUMBERS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(ERRNO_NAMES).map(([n, name]) => [name, Number(n)]),
);

/** "EINVAL" for 22 (or -22); "E<n>" for a number with no name here. */
export function errnoCode(errno: number): string {
  return ERRNO_NAMES[Math.abs(errno)] ?? `E${Math.abs(errno)}`;
}

/** 22 for "EINVAL"; 0 for a name not known here. */
export function errnoNumber(code: string): number {
  return ERRNO_NUMBERS[code] ?? 0;
}

/**
 * A failed toolstack-library call. `op` is the C function's name
 * ("xengnttab_map_grant_refs"), `errno` the positive errno it would leave
 * (22), `code` its name ("EINVAL"), and the message says why.
 *
 * ```ts
 * try { await xgt.mapGrantRef(peer, ref, true); }
 * catch (e) { if (e instanceof XenError && e.code === 'EINVAL') ... }
 * ```
 */
export class XenError extends Error {
  /** The C call that failed, e.g. "xenevtchn_bind_interdomain". */
  readonly op: string;
  /** The errno, positive (22). */
  readonly errno: number;
  /** The errno's name ("EINVAL"), as Node's system errors name theirs. */
  readonly code: string;
  /** Why, in words. */
  readonly reason: string;
  /** Xen's per-element GNTST_ statuses, when the failure came from a batch of grant ops. */
  readonly status: readonly number[] | undefined;

  /** `errno` may be given negated, as hypercalls and the kernel return it. */
  constructor(
    op: string,
    errno: number | string,
    reason: string,
    options: { cause?: unknown; status?: readonly number[] } = {},
  ) {
    const code = typeof errno === 'string' ? errno : errnoCode(errno);
    super(`${op}: ${code}: ${reason}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
    this.name = 'XenError';
    this.op = op;
    this.errno = typeof errno === 'string' ? errnoNumber(errno) : Math.abs(errno);
    this.code = code;
    this.reason = reason;
  }
}

/** Throws XenError(op, rc, reason) when rc is negative; returns rc otherwise. */
export function check(op: string, rc: number, reason: string): number {
  if (rc < 0) throw new XenError(op, rc, reason);
  return rc;
}
