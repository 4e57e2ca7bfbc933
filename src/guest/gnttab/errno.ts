// The Linux errno values the grant-table driver returns (negated, as the
// kernel does). On x86 they coincide with Xen's (src/abi/hypercall.ts).

export const EPERM = 1;
export const ENOENT = 2;
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOTTY = 25;
export const ENOSPC = 28;
export const EPIPE = 32;
export const ENOSYS = 38;
export const ENOTCONN = 107;
export const EOPNOTSUPP = 95;
export const EMSGSIZE = 90;
