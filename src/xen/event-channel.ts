// Event channels, 2-level ABI: Xen's xen/common/event_channel.c and event_2l.c.
// Each domain has a table of ports (port 0 reserved, ports handed out lowest
// free first, in buckets); each port is free, unbound (offered to one remote
// domain), interdomain (connected to a peer port), a virtual IRQ or an IPI.
// Delivery writes the domain's shared-info page (a Xen-heap frame it owns and
// may map): the port's pending bit, then, when the port is not masked, the
// vCPU's selector bit and evtchn_upcall_pending, and wakes whoever sleeps on
// the Int32 word holding evtchn_upcall_pending. Every shared-info access is an
// atomic through SharedWords, in Xen's order.
//
// Xen-attached ports (xen_consumer): a port Xen itself consumes. When its
// interdomain peer sends, Xen calls the consumer's notification function
// instead of marking the port pending; the guest may not send on it, close it,
// or re-bind its vCPU (-EINVAL); Xen signals the peer with
// notify_via_xen_event_channel. The one consumer here is the host's xenstore
// service (src/host/xenstore-service.ts), which runs where the hypervisor runs.
//
// Not modelled: physical IRQs (bind_pirq answers -ENOSYS), the FIFO ABI
// (init_control answers -ENOSYS so guests stay on 2-level, as Linux does when
// it fails), SCHEDOP_poll, controller pausing (so a reset of another domain
// answers -EINVAL, as for an unpaused domain).
//
// The implementation is in evtchn/, one concept per file: the port table and
// allocation, the 2-level bit operations, bind, close, notify (send, unmask),
// status, the hypercall, and the invariants. This module is their one entry.
export {
  allocUnbound,
  bindInterdomain,
  bindIpi,
  bindVcpu,
  bindVirq,
  bindXenConsumer,
} from './evtchn/bind.ts';
export { closePort, destroyEventChannels, resetDomain } from './evtchn/close.ts';
export { eventChannelOp } from './evtchn/hypercall.ts';
export { checkEventChannels } from './evtchn/invariants.ts';
export { notifyViaXenEventChannel, send, unmaskPort } from './evtchn/notify.ts';
export {
  DEFAULT_MAX_EVTCHN_PORT,
  ECS_FREE,
  ECS_INTERDOMAIN,
  ECS_IPI,
  ECS_PIRQ,
  ECS_RESERVED,
  ECS_UNBOUND,
  ECS_VIRQ,
  EVTCHNS_PER_BUCKET,
  EventChannelTable,
  EvtchnPort,
  type XenConsumer,
} from './evtchn/port-table.ts';
export { type PortStatus, portStatus } from './evtchn/status.ts';
export { upcallWordAddr } from './evtchn/two-level.ts';
