// Event channels (xen/include/public/event_channel.h) and the parts of the
// shared-info page they use (xen/include/public/xen.h, arch-x86/xen.h), x86_64
// layout. The hypercall is __HYPERVISOR_event_channel_op (32, in hypercall.ts):
// event_channel_op(cmd, arg), arg the address of the command's struct.
import { defineStruct } from './struct.ts';

// ---- commands ---------------------------------------------------------------------------------

/** EVTCHNOP_bind_interdomain, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_bind_interdomain = 0;
/** EVTCHNOP_bind_virq, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_bind_virq = 1;
/** EVTCHNOP_bind_pirq, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_bind_pirq = 2;
/** EVTCHNOP_close, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_close = 3;
/** EVTCHNOP_send, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_send = 4;
/** EVTCHNOP_status, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_status = 5;
/** EVTCHNOP_alloc_unbound, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_alloc_unbound = 6;
/** EVTCHNOP_bind_ipi, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_bind_ipi = 7;
/** EVTCHNOP_bind_vcpu, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_bind_vcpu = 8;
/** EVTCHNOP_unmask, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_unmask = 9;
/** EVTCHNOP_reset, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_reset = 10;
/** EVTCHNOP_init_control, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_init_control = 11;
/** EVTCHNOP_expand_array, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_expand_array = 12;
/** EVTCHNOP_set_priority, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_set_priority = 13;
/** Xen-internal (`#ifdef __XEN__`): the continuation of reset; the dispatcher accepts it from guests too. */
export const EVTCHNOP_reset_cont = 14;

/** EVTCHNOP_NAMES, as in xen/include/public/event_channel.h. */
export const EVTCHNOP_NAMES: readonly string[] = [
  'bind_interdomain',
  'bind_virq',
  'bind_pirq',
  'close',
  'send',
  'status',
  'alloc_unbound',
  'bind_ipi',
  'bind_vcpu',
  'unmask',
  'reset',
  'init_control',
  'expand_array',
  'set_priority',
  'reset_cont',
];

// ---- EVTCHNOP_status results ------------------------------------------------------------------

/** Channel is not in use. */
export const EVTCHNSTAT_closed = 0;
/** Channel is waiting for an interdomain connection. */
export const EVTCHNSTAT_unbound = 1;
/** Channel is connected to a remote domain. */
export const EVTCHNSTAT_interdomain = 2;
/** Channel is bound to a physical IRQ line. */
export const EVTCHNSTAT_pirq = 3;
/** Channel is bound to a virtual IRQ line. */
export const EVTCHNSTAT_virq = 4;
/** Channel is bound to a virtual IPI line. */
export const EVTCHNSTAT_ipi = 5;

/** EVTCHNSTAT_NAMES, as in xen/include/public/event_channel.h. */
export const EVTCHNSTAT_NAMES: readonly string[] = [
  'closed',
  'unbound',
  'interdomain',
  'pirq',
  'virq',
  'ipi',
];

/** evtchn_bind_pirq.flags */
export const BIND_PIRQ__WILL_SHARE = 1;

// ---- virtual IRQs (xen.h) ---------------------------------------------------------------------

/** VIRQ_TIMER, as in xen/include/public/xen.h. */
export const VIRQ_TIMER = 0;
/** VIRQ_DEBUG, as in xen/include/public/xen.h. */
export const VIRQ_DEBUG = 1;
/** VIRQ_CONSOLE, as in xen/include/public/xen.h. */
export const VIRQ_CONSOLE = 2;
/** VIRQ_DOM_EXC, as in xen/include/public/xen.h. */
export const VIRQ_DOM_EXC = 3;
/** VIRQ_TBUF, as in xen/include/public/xen.h. */
export const VIRQ_TBUF = 4;
/** VIRQ_DEBUGGER, as in xen/include/public/xen.h. */
export const VIRQ_DEBUGGER = 6;
/** VIRQ_XENOPROF, as in xen/include/public/xen.h. */
export const VIRQ_XENOPROF = 7;
/** VIRQ_CON_RING, as in xen/include/public/xen.h. */
export const VIRQ_CON_RING = 8;
/** VIRQ_PCPU_STATE, as in xen/include/public/xen.h. */
export const VIRQ_PCPU_STATE = 9;
/** VIRQ_MEM_EVENT, as in xen/include/public/xen.h. */
export const VIRQ_MEM_EVENT = 10;
/** VIRQ_ARGO, as in xen/include/public/xen.h. */
export const VIRQ_ARGO = 11;
/** VIRQ_ENOMEM, as in xen/include/public/xen.h. */
export const VIRQ_ENOMEM = 12;
/** VIRQ_XENPMU, as in xen/include/public/xen.h. */
export const VIRQ_XENPMU = 13;
/** VIRQ_ARCH_0, as in xen/include/public/xen.h. */
export const VIRQ_ARCH_0 = 16;
/** VIRQ_ARCH_7, as in xen/include/public/xen.h. */
export const VIRQ_ARCH_7 = 23;
/** NR_VIRQS, as in xen/include/public/xen.h. */
export const NR_VIRQS = 24;

// ---- command structs --------------------------------------------------------------------------

/** EVTCHNOP_alloc_unbound: a fresh port in `dom` that `remote_dom` may bind. */
export const evtchn_alloc_unbound = defineStruct('evtchn_alloc_unbound', 8, {
  dom: [0, 'u16'],
  remote_dom: [2, 'u16'],
  /** OUT */
  port: [4, 'u32'],
});

/** EVTCHNOP_bind_interdomain: connects a fresh local port to <remote_dom, remote_port>. */
export const evtchn_bind_interdomain = defineStruct('evtchn_bind_interdomain', 12, {
  remote_dom: [0, 'u16'],
  remote_port: [4, 'u32'],
  /** OUT */
  local_port: [8, 'u32'],
});

/** evtchn_bind_virq, as in xen/include/public/event_channel.h. */
export const evtchn_bind_virq = defineStruct('evtchn_bind_virq', 12, {
  virq: [0, 'u32'],
  vcpu: [4, 'u32'],
  /** OUT */
  port: [8, 'u32'],
});

/** evtchn_bind_pirq, as in xen/include/public/event_channel.h. */
export const evtchn_bind_pirq = defineStruct('evtchn_bind_pirq', 12, {
  pirq: [0, 'u32'],
  flags: [4, 'u32'],
  /** OUT */
  port: [8, 'u32'],
});

/** evtchn_bind_ipi, as in xen/include/public/event_channel.h. */
export const evtchn_bind_ipi = defineStruct('evtchn_bind_ipi', 8, {
  vcpu: [0, 'u32'],
  /** OUT */
  port: [4, 'u32'],
});

/** evtchn_close, as in xen/include/public/event_channel.h. */
export const evtchn_close = defineStruct('evtchn_close', 4, {
  port: [0, 'u32'],
});

/** evtchn_send, as in xen/include/public/event_channel.h. */
export const evtchn_send = defineStruct('evtchn_send', 4, {
  port: [0, 'u32'],
});

/**
 * EVTCHNOP_status. The union `u` at offset 16 (8 bytes) is `unbound { domid_t dom }`,
 * `interdomain { domid_t dom; evtchn_port_t port }`, or a u32 `pirq` / `virq`: the
 * first two are `u_dom` and `u_port` here, the u32 variants are the struct
 * evtchn_status_irq below (same bytes, read as a u32 at offset 16).
 */
export const evtchn_status = defineStruct('evtchn_status', 24, {
  dom: [0, 'u16'],
  port: [4, 'u32'],
  /** OUT: EVTCHNSTAT_* */
  status: [8, 'u32'],
  /** OUT: the vCPU the channel notifies */
  vcpu: [12, 'u32'],
  /** OUT: u.unbound.dom / u.interdomain.dom */
  u_dom: [16, 'u16'],
  /** OUT: u.interdomain.port */
  u_port: [20, 'u32'],
});

/** evtchn_status read with its union as u.pirq / u.virq (a u32 at offset 16). */
export const evtchn_status_irq = defineStruct('evtchn_status.u.virq', 24, {
  dom: [0, 'u16'],
  port: [4, 'u32'],
  status: [8, 'u32'],
  vcpu: [12, 'u32'],
  /** OUT: u.pirq / u.virq */
  u_irq: [16, 'u32'],
});

/** evtchn_bind_vcpu, as in xen/include/public/event_channel.h. */
export const evtchn_bind_vcpu = defineStruct('evtchn_bind_vcpu', 8, {
  port: [0, 'u32'],
  vcpu: [4, 'u32'],
});

/** evtchn_unmask, as in xen/include/public/event_channel.h. */
export const evtchn_unmask = defineStruct('evtchn_unmask', 4, {
  port: [0, 'u32'],
});

/** evtchn_reset, as in xen/include/public/event_channel.h. */
export const evtchn_reset = defineStruct('evtchn_reset', 2, {
  dom: [0, 'u16'],
});

/** FIFO ABI: EVTCHNOP_init_control. */
export const evtchn_init_control = defineStruct('evtchn_init_control', 24, {
  control_gfn: [0, 'u64'],
  offset: [8, 'u32'],
  vcpu: [12, 'u32'],
  /** OUT */
  link_bits: [16, 'u8'],
});

/** FIFO ABI: EVTCHNOP_expand_array. */
export const evtchn_expand_array = defineStruct('evtchn_expand_array', 8, {
  array_gfn: [0, 'u64'],
});

/** FIFO ABI: EVTCHNOP_set_priority. */
export const evtchn_set_priority = defineStruct('evtchn_set_priority', 8, {
  port: [0, 'u32'],
  priority: [4, 'u32'],
});

// ---- the 2-level ABI and the shared-info page (x86_64) ----------------------------------------

/** Bits in an event word (xen_ulong_t is 64 bits on x86_64). */
export const BITS_PER_EVTCHN_WORD = 64;
/** Ports of the 2-level ABI: 64 selector bits x 64-bit words. */
export const EVTCHN_2L_NR_CHANNELS = BITS_PER_EVTCHN_WORD * BITS_PER_EVTCHN_WORD;
/** vcpu_info slots in shared_info (arch-x86/xen.h); later vCPUs need VCPUOP_register_vcpu_info. */
export const XEN_LEGACY_MAX_VCPUS = 32;

/** struct vcpu_info: 64 bytes on x86. */
export const vcpu_info = defineStruct('vcpu_info', 64, {
  /** Written non-zero by Xen when an event is pending for this vCPU; cleared by the guest. */
  evtchn_upcall_pending: [0, 'u8'],
  /** Guest-owned: non-zero holds back upcalls. */
  evtchn_upcall_mask: [1, 'u8'],
  /** One bit per 64-bit word of evtchn_pending with a newly pending unmasked port. */
  evtchn_pending_sel: [8, 'u64'],
  /** struct arch_vcpu_info (x86_64: cr2, pad) */
  arch_cr2: [16, 'u64'],
  arch_pad: [24, 'u64'],
  /** struct vcpu_time_info (32 bytes) */
  time_version: [32, 'u32'],
  time_pad0: [36, 'u32'],
  tsc_timestamp: [40, 'u64'],
  system_time: [48, 'u64'],
  tsc_to_system_mul: [56, 'u32'],
  tsc_shift: [60, 'u8'],
});

/** VCPU_INFO_SIZE, as in struct vcpu_info, xen/include/public/xen.h. */
export const VCPU_INFO_SIZE = 64;
/** VCPU_INFO_UPCALL_PENDING, as in struct vcpu_info, xen/include/public/xen.h. */
export const VCPU_INFO_UPCALL_PENDING = 0;
/** VCPU_INFO_UPCALL_MASK, as in struct vcpu_info, xen/include/public/xen.h. */
export const VCPU_INFO_UPCALL_MASK = 1;
/** VCPU_INFO_PENDING_SEL, as in struct vcpu_info, xen/include/public/xen.h. */
export const VCPU_INFO_PENDING_SEL = 8;

/** Offsets in struct shared_info (x86_64). */
export const SHARED_INFO_VCPU_INFO = 0;
/** xen_ulong_t evtchn_pending[64]: 512 bytes, a bit per port. */
export const SHARED_INFO_EVTCHN_PENDING = SHARED_INFO_VCPU_INFO + XEN_LEGACY_MAX_VCPUS * VCPU_INFO_SIZE;
/** xen_ulong_t evtchn_mask[64]: 512 bytes, a bit per port (guest-owned). */
export const SHARED_INFO_EVTCHN_MASK = SHARED_INFO_EVTCHN_PENDING + EVTCHN_2L_NR_CHANNELS / 8;
/** SHARED_INFO_WC_VERSION, as in struct shared_info, xen/include/public/xen.h. */
export const SHARED_INFO_WC_VERSION = SHARED_INFO_EVTCHN_MASK + EVTCHN_2L_NR_CHANNELS / 8;
/** SHARED_INFO_WC_SEC, as in struct shared_info, xen/include/public/xen.h. */
export const SHARED_INFO_WC_SEC = SHARED_INFO_WC_VERSION + 4;
/** SHARED_INFO_WC_NSEC, as in struct shared_info, xen/include/public/xen.h. */
export const SHARED_INFO_WC_NSEC = SHARED_INFO_WC_VERSION + 8;
/** SHARED_INFO_WC_SEC_HI, as in struct shared_info, xen/include/public/xen.h. */
export const SHARED_INFO_WC_SEC_HI = SHARED_INFO_WC_VERSION + 12;
/** struct arch_shared_info: max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation. */
export const SHARED_INFO_ARCH = SHARED_INFO_WC_VERSION + 16;
/** SHARED_INFO_SIZE, as in struct shared_info, xen/include/public/xen.h. */
export const SHARED_INFO_SIZE = SHARED_INFO_ARCH + 6 * 8;

/** Byte offset of vCPU `vcpu`'s vcpu_info in the shared-info page. */
export function vcpuInfoOffset(vcpu: number): number {
  return SHARED_INFO_VCPU_INFO + vcpu * VCPU_INFO_SIZE;
}
