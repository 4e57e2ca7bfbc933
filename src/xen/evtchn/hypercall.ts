// The hypercall (do_event_channel_op): copies each argument struct in, runs
// the operation, and copies the struct back.
import {
  EVTCHNOP_alloc_unbound,
  EVTCHNOP_bind_interdomain,
  EVTCHNOP_bind_ipi,
  EVTCHNOP_bind_pirq,
  EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_expand_array,
  EVTCHNOP_init_control,
  EVTCHNOP_reset,
  EVTCHNOP_reset_cont,
  EVTCHNOP_send,
  EVTCHNOP_set_priority,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  evtchn_bind_ipi,
  evtchn_bind_pirq,
  evtchn_bind_vcpu,
  evtchn_bind_virq,
  evtchn_close,
  evtchn_expand_array,
  evtchn_init_control,
  evtchn_reset,
  evtchn_send,
  evtchn_set_priority,
  evtchn_status,
  evtchn_status_irq,
  evtchn_unmask,
} from '../../abi/event-channel.ts';
import { XEN_EFAULT, XEN_EINVAL, XEN_ENOSYS, XEN_EOPNOTSUPP } from '../../abi/hypercall.ts';
import { decodeStruct, type StructDef, type StructValue, setField } from '../../abi/struct.ts';
import type { Domain } from '../domain.ts';
import type { Hypervisor } from '../hypervisor.ts';
import { allocUnbound, bindInterdomain, bindIpi, bindVcpu, bindVirq } from './bind.ts';
import { closePort, resetDomain } from './close.ts';
import { send, unmaskPort } from './notify.ts';
import { portStatus } from './status.ts';

/** An argument struct copied in (copy_from_guest), edited, and copied back whole. */
class Arg<F extends string> {
  readonly bytes: Uint8Array;
  readonly v: StructValue<F>;
  private readonly def: StructDef<F>;
  private readonly view: DataView;

  constructor(def: StructDef<F>, bytes: Uint8Array) {
    this.def = def;
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.v = decodeStruct(def, bytes);
  }

  set(field: F, value: number): void {
    setField(this.view, 0, this.def.fields[field], value);
  }
}

function copyIn<F extends string>(hv: Hypervisor, d: Domain, addr: number, def: StructDef<F>): Arg<F> | null {
  const bytes = hv.copyFromGuest(d, addr, def.size);
  return bytes === null ? null : new Arg(def, bytes);
}

/** __copy_to_guest of the whole struct: -EFAULT when it faults (the operation stays done). */
function copyBack<F extends string>(hv: Hypervisor, d: Domain, addr: number, a: Arg<F>): number {
  return hv.copyToGuest(d, addr, a.bytes) ? 0 : -XEN_EFAULT;
}

/** event_channel_op(cmd, arg): returns 0 or a negative errno. */
export function eventChannelOp(hv: Hypervisor, d: Domain, cmd: number, arg: number): number {
  switch (cmd) {
    case EVTCHNOP_alloc_unbound: {
      const a = copyIn(hv, d, arg, evtchn_alloc_unbound);
      if (a === null) return -XEN_EFAULT;
      const port = allocUnbound(hv, d, a.v.dom, a.v.remote_dom);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_interdomain: {
      const a = copyIn(hv, d, arg, evtchn_bind_interdomain);
      if (a === null) return -XEN_EFAULT;
      const port = bindInterdomain(hv, d, a.v.remote_dom, a.v.remote_port);
      if (port < 0) return port;
      a.set('local_port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_virq: {
      const a = copyIn(hv, d, arg, evtchn_bind_virq);
      if (a === null) return -XEN_EFAULT;
      const port = bindVirq(hv, d, a.v.virq, a.v.vcpu);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_ipi: {
      const a = copyIn(hv, d, arg, evtchn_bind_ipi);
      if (a === null) return -XEN_EFAULT;
      const port = bindIpi(hv, d, a.v.vcpu);
      if (port < 0) return port;
      a.set('port', port);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_pirq:
      // Physical IRQs are not modelled.
      if (copyIn(hv, d, arg, evtchn_bind_pirq) === null) return -XEN_EFAULT;
      return -XEN_ENOSYS;
    case EVTCHNOP_close: {
      const a = copyIn(hv, d, arg, evtchn_close);
      if (a === null) return -XEN_EFAULT;
      return closePort(hv, d, a.v.port);
    }
    case EVTCHNOP_send: {
      const a = copyIn(hv, d, arg, evtchn_send);
      if (a === null) return -XEN_EFAULT;
      return send(hv, d, a.v.port);
    }
    case EVTCHNOP_status: {
      const a = copyIn(hv, d, arg, evtchn_status);
      if (a === null) return -XEN_EFAULT;
      const s = portStatus(hv, d, a.v.dom, a.v.port);
      if (typeof s === 'number') return s;
      a.set('status', s.status);
      a.set('vcpu', s.vcpu);
      // Only the union member of the state is written; the rest keeps the caller's bytes.
      if (s.dom !== undefined) a.set('u_dom', s.dom);
      if (s.port !== undefined) a.set('u_port', s.port);
      if (s.irq !== undefined)
        setField(new DataView(a.bytes.buffer), 0, evtchn_status_irq.fields.u_irq, s.irq);
      return copyBack(hv, d, arg, a);
    }
    case EVTCHNOP_bind_vcpu: {
      const a = copyIn(hv, d, arg, evtchn_bind_vcpu);
      if (a === null) return -XEN_EFAULT;
      return bindVcpu(hv, d, a.v.port, a.v.vcpu);
    }
    case EVTCHNOP_unmask: {
      const a = copyIn(hv, d, arg, evtchn_unmask);
      if (a === null) return -XEN_EFAULT;
      return unmaskPort(hv, d, a.v.port);
    }
    case EVTCHNOP_reset:
    case EVTCHNOP_reset_cont: {
      const a = copyIn(hv, d, arg, evtchn_reset);
      if (a === null) return -XEN_EFAULT;
      return resetDomain(hv, d, a.v.dom, cmd === EVTCHNOP_reset_cont);
    }
    case EVTCHNOP_init_control:
      // The FIFO ABI is not modelled: guests stay on the 2-level ABI.
      if (copyIn(hv, d, arg, evtchn_init_control) === null) return -XEN_EFAULT;
      return -XEN_ENOSYS;
    case EVTCHNOP_expand_array:
      if (copyIn(hv, d, arg, evtchn_expand_array) === null) return -XEN_EFAULT;
      // evtchn_fifo_expand_array without a FIFO control block.
      return -XEN_EOPNOTSUPP;
    case EVTCHNOP_set_priority: {
      const a = copyIn(hv, d, arg, evtchn_set_priority);
      if (a === null) return -XEN_EFAULT;
      const chn = d.evtchn.get(a.v.port);
      if (chn === undefined) return -XEN_EINVAL;
      // evtchn_set_priority: under the channel's read lock, the 2-level ABI
      // has no priorities (evtchn_port_set_priority: no op).
      chn.lock.readLock();
      chn.lock.readUnlock();
      return -XEN_ENOSYS;
    }
    default:
      return -XEN_ENOSYS;
  }
}
