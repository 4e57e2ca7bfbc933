// Names for trace records: the hypercall and its sub-op as Xen spells them
// (do_grant_table_op's GNTTABOP_*, do_event_channel_op's EVTCHNOP_*, ...), and
// a negative return as its errno name.
import { EVTCHNOP_NAMES } from '../abi/event-channel.ts';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  GNTTABOP_CMD_MASK,
  GNTTABOP_NAMES,
  XEN_EACCES,
  XEN_EAGAIN,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EILSEQ,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOMEM,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_ENXIO,
  XEN_EOPNOTSUPP,
  XEN_EPERM,
  XEN_ERANGE,
  XEN_ESRCH,
  XENMEM_add_to_physmap,
} from '../abi/hypercall.ts';

const ERRNO: Record<number, string> = {
  [XEN_EPERM]: 'EPERM',
  [XEN_ENOENT]: 'ENOENT',
  [XEN_ESRCH]: 'ESRCH',
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

/** "grant_table_op/map_grant_ref", "event_channel_op/send", "memory_op/add_to_physmap", ... */
export function hypercallName(nr: number, cmd: number): string {
  switch (nr) {
    case __HYPERVISOR_grant_table_op:
      return `grant_table_op/${GNTTABOP_NAMES[cmd & GNTTABOP_CMD_MASK] ?? `cmd ${cmd}`}`;
    case __HYPERVISOR_event_channel_op:
      return `event_channel_op/${EVTCHNOP_NAMES[cmd] ?? `cmd ${cmd}`}`;
    case __HYPERVISOR_memory_op:
      return `memory_op/${cmd === XENMEM_add_to_physmap ? 'add_to_physmap' : `cmd ${cmd}`}`;
    case __HYPERVISOR_update_va_mapping:
      return 'update_va_mapping';
    default:
      return `hypercall ${nr}`;
  }
}

/** "0", "-EINVAL", "-22" for an errno without a name here. */
export function returnName(rc: number): string {
  if (rc >= 0) return String(rc);
  return `-${ERRNO[-rc] ?? String(-rc)}`;
}
