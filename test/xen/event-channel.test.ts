// Event channels through the raw hypercall (event_channel_op, 32): every
// EVTCHNOP_ the model serves, its error codes in Xen's order
// (xen/common/event_channel.c), delivery into the shared-info page in the
// order of event_2l.c, the shared-info page itself (PV update_va_mapping, HVM
// XENMAPSPACE_shared_info) and what destroying a domain does to its ports.
// Structs are written by hand into guest memory; shared-info bits are read back
// from machine memory (Xen's view) unless a test maps the page in the guest.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_INVALID,
  DOMID_SELF,
  type DomainHandle,
  type DomainOptions,
  decodeStruct,
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
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  encodeStruct,
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
  GNTMAP_host_map,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  gnttab_map_grant_ref,
  Host,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  type StructDef,
  type StructValue,
  VIRQ_CON_RING,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  vcpuInfoOffset,
  XEN_EACCES,
  XEN_EBUSY,
  XEN_EEXIST,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOENT,
  XEN_ENOSPC,
  XEN_ENOSYS,
  XEN_EOPNOTSUPP,
  XEN_EPERM,
  XEN_ESRCH,
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
  xen_add_to_physmap,
} from '../../src/index.ts';
import { ECS_UNBOUND, EVTCHNS_PER_BUCKET } from '../../src/xen/event-channel.ts';
import { OWNER_NONE, PGC_xen_heap } from '../../src/xen/frame-table.ts';
import { gnttabOp, grantAccess, MAP_VA, mapGrantTable, one, scratch } from '../helpers/guest.ts';

// ---- plumbing --------------------------------------------------------------------------------

function newHost(): Host {
  return new Host({ memoryMiB: 32 });
}

function mk(host: Host, kind: 'pv' | 'hvm', o: Partial<DomainOptions> = {}): DomainHandle {
  return host.createDomain({ kind, memoryKiB: 256, ...o });
}

/** Writes the struct at the domain's scratch page 3, makes the hypercall, reads the struct back. */
function op<F extends string>(
  dom: DomainHandle,
  cmd: number,
  def: StructDef<F>,
  value: Partial<StructValue<F>>,
  addr = scratch(dom, 3),
): { rc: number; out: StructValue<F> } {
  dom.memory.write(addr, encodeStruct(def, value));
  const rc = dom.hypercall(__HYPERVISOR_event_channel_op, cmd, addr);
  return { rc, out: dom.alive ? decodeStruct(def, dom.memory.read(addr, def.size)) : ({} as StructValue<F>) };
}

/** alloc_unbound in `dom` (default: the caller) for `remote`: the port, or -errno. */
function alloc(caller: DomainHandle, remote: number, dom: number = DOMID_SELF): number {
  const r = op(caller, EVTCHNOP_alloc_unbound, evtchn_alloc_unbound, { dom, remote_dom: remote });
  return r.rc < 0 ? r.rc : r.out.port;
}

function bind(caller: DomainHandle, rdom: number, rport: number): number {
  const r = op(caller, EVTCHNOP_bind_interdomain, evtchn_bind_interdomain, {
    remote_dom: rdom,
    remote_port: rport,
  });
  return r.rc < 0 ? r.rc : r.out.local_port;
}

const send = (d: DomainHandle, port: number) => op(d, EVTCHNOP_send, evtchn_send, { port }).rc;
const close = (d: DomainHandle, port: number) => op(d, EVTCHNOP_close, evtchn_close, { port }).rc;
const unmask = (d: DomainHandle, port: number) => op(d, EVTCHNOP_unmask, evtchn_unmask, { port }).rc;

function status(caller: DomainHandle, port: number, dom: number = DOMID_SELF) {
  return op(caller, EVTCHNOP_status, evtchn_status, { dom, port });
}

/** An interdomain channel: a offers a port to b, b binds it. */
function connect(a: DomainHandle, b: DomainHandle): { pa: number; pb: number } {
  const pa = alloc(a, b.domid);
  assert.ok(pa > 0, `alloc_unbound: ${pa}`);
  const pb = bind(b, a.domid, pa);
  assert.ok(pb > 0, `bind_interdomain: ${pb}`);
  return { pa, pb };
}

// Xen's view of a domain's shared-info page, read from machine memory.
function siBase(d: DomainHandle): number {
  return d.xen.sharedInfoMfn * 4096;
}
function bitAt(host: Host, addr: number, bit: number): number {
  return (host.hypervisor.machine.u8[addr + (bit >>> 3)]! >>> (bit & 7)) & 1;
}
function pending(host: Host, d: DomainHandle, port: number): number {
  return bitAt(host, siBase(d) + SHARED_INFO_EVTCHN_PENDING, port);
}
function masked(host: Host, d: DomainHandle, port: number): number {
  return bitAt(host, siBase(d) + SHARED_INFO_EVTCHN_MASK, port);
}
function sel(host: Host, d: DomainHandle, vcpu = 0): bigint {
  return host.hypervisor.machine.view.getBigUint64(siBase(d) + vcpuInfoOffset(vcpu) + 8, true);
}
function upcall(host: Host, d: DomainHandle, vcpu = 0): number {
  return host.hypervisor.machine.u8[siBase(d) + vcpuInfoOffset(vcpu)]!;
}
/** Sets a mask bit as the guest would (it owns the mask bitmap). */
function setMask(host: Host, d: DomainHandle, port: number): void {
  host.hypervisor.machine.words.or16(
    siBase(d) + SHARED_INFO_EVTCHN_MASK + (port >>> 4) * 2,
    1 << (port & 15),
  );
}
/** Clears the vCPU's selector and upcall flag, as the guest's upcall handler does. */
function ack(host: Host, d: DomainHandle, vcpu = 0): void {
  const v = host.hypervisor.machine.view;
  v.setUint8(siBase(d) + vcpuInfoOffset(vcpu), 0);
  v.setBigUint64(siBase(d) + vcpuInfoOffset(vcpu) + 8, 0n, true);
}

/** Records the machine addresses Xen notifies (wakes sleepers on). */
function watchNotify(host: Host): number[] {
  const seen: number[] = [];
  const words = host.hypervisor.machine.words;
  const prev = words.onNotify;
  words.onNotify = (a) => {
    seen.push(a);
    prev?.(a);
  };
  return seen;
}

const SI_VA = 0xb000_0000;

/** Maps the shared-info page into the guest at SI_VA (PV: update_va_mapping; HVM: add_to_physmap space 0). */
function mapSharedInfo(d: DomainHandle, gpfn = SI_VA / 4096): number {
  if (d.kind === 'pv')
    return d.hypercall(__HYPERVISOR_update_va_mapping, gpfn * 4096, d.xen.sharedInfoMfn * 4096 + 3, 0);
  return physmap(d, XENMAPSPACE_shared_info, 0, gpfn);
}

function physmap(d: DomainHandle, space: number, idx: number, gpfn: number, domid = DOMID_SELF): number {
  const addr = scratch(d, 4);
  d.memory.write(addr, encodeStruct(xen_add_to_physmap, { domid, space, idx, gpfn }));
  return d.hypercall(__HYPERVISOR_memory_op, XENMEM_add_to_physmap, addr);
}

const KINDS = ['pv', 'hvm'] as const;
const PAIRS = [
  ['pv', 'pv'],
  ['hvm', 'hvm'],
  ['pv', 'hvm'],
  ['hvm', 'pv'],
] as const;

// ---- tests ------------------------------------------------------------------------------------

describe('EVTCHNOP_alloc_unbound (evtchn_alloc_unbound)', () => {
  for (const kind of KINDS) {
    it(`${kind}: ports from 1 upwards, written back; status unbound names the remote`, () => {
      const host = newHost();
      const a = mk(host, kind);
      const b = mk(host, kind);
      const r = op(a, EVTCHNOP_alloc_unbound, evtchn_alloc_unbound, { dom: DOMID_SELF, remote_dom: b.domid });
      assert.equal(r.rc, 0);
      assert.equal(r.out.port, 1, 'port 0 is reserved (evtchn_init)');
      assert.equal(r.out.dom, DOMID_SELF, 'IN fields come back as given');
      assert.equal(alloc(a, b.domid), 2);
      assert.equal(alloc(a, b.domid), 3);
      const s = status(a, 2).out;
      assert.equal(s.status, EVTCHNSTAT_unbound);
      assert.equal(s.u_dom, b.domid);
      assert.equal(s.vcpu, 0);
      assert.equal(a.xen.evtchn.inUse, 3);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('remote_dom DOMID_SELF records the caller: dom0 allocating in a domU offers it to dom0', () => {
    const host = newHost();
    const d0 = mk(host, 'pv');
    const a = mk(host, 'hvm');
    assert.equal(status(a, alloc(a, DOMID_SELF)).out.u_dom, a.domid);
    const p = alloc(d0, DOMID_SELF, a.domid);
    assert.equal(p, 2);
    const s = status(a, p).out;
    assert.equal(s.status, EVTCHNSTAT_unbound);
    assert.equal(s.u_dom, d0.domid, 'current->domain, not the target');
    // dom0 binds it.
    const p0 = bind(d0, a.domid, p);
    assert.ok(p0 > 0);
    assert.equal(status(a, p).out.status, EVTCHNSTAT_interdomain);
  });

  it('a domU naming another dom: -EPERM (XSM_TARGET after get_free_port), the port stays free', () => {
    const host = newHost();
    const d0 = mk(host, 'pv');
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    assert.equal(alloc(a, a.domid, b.domid), -XEN_EPERM);
    assert.equal(b.xen.evtchn.inUse, 0);
    assert.equal(alloc(b, a.domid), 1, 'b still hands out port 1');
    assert.equal(alloc(d0, a.domid, b.domid), 2, 'the control domain may');
    assert.equal(status(b, 2).out.u_dom, a.domid);
  });

  it('-ESRCH for an unknown dom and for reserved ids other than DOMID_SELF', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    assert.equal(alloc(a, 0, 77), -XEN_ESRCH);
    assert.equal(alloc(a, 0, DOMID_INVALID), -XEN_ESRCH);
    assert.equal(a.xen.evtchn.inUse, 0);
  });

  it('remote_dom is not looked up: an unknown id is recorded, and no one can bind it', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'pv');
    const p = alloc(a, 1234);
    assert.equal(p, 1);
    const s = status(a, p).out;
    assert.equal(s.status, EVTCHNSTAT_unbound);
    assert.equal(s.u_dom, 1234);
    assert.equal(bind(b, a.domid, p), -XEN_EINVAL);
  });

  it('argument faults: -EFAULT reading; a read-only struct is served, then -EFAULT on write-back', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const rc = a.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, 0x9000_0000);
    assert.equal(rc, -XEN_EFAULT);
    assert.equal(a.xen.evtchn.inUse, 0);
    // Map one of its RAM pages read-only at 0xa0000000 and put the struct there.
    const page = scratch(a, 5);
    a.memory.write(page, encodeStruct(evtchn_alloc_unbound, { dom: DOMID_SELF, remote_dom: 0 }));
    const ro = 0xa000_0000;
    assert.equal(
      a.hypercall(__HYPERVISOR_update_va_mapping, ro, a.frameOf(page) * 4096 + _PAGE_PRESENT, 0),
      0,
    );
    assert.equal(a.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_alloc_unbound, ro), -XEN_EFAULT);
    // "Cleaning up here would be a mess!": the port was allocated all the same.
    assert.equal(status(a, 1).out.status, EVTCHNSTAT_unbound);
    assert.equal(decodeStruct(evtchn_alloc_unbound, a.memory.read(page, 8)).port, 0, 'nothing written');
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('EVTCHNOP_bind_interdomain (evtchn_bind_interdomain)', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} offers, ${kb} binds: both interdomain, linked both ways; the binder's port is pending at once`, () => {
      const host = newHost();
      const a = mk(host, ka);
      const b = mk(host, kb);
      const notes = watchNotify(host);
      alloc(b, a.domid); // b's port 1 is taken, so b's port numbers differ from a's
      const pa = alloc(a, b.domid);
      const pb = bind(b, a.domid, pa);
      assert.deepEqual([pa, pb], [1, 2]);
      const sa = status(a, pa).out;
      assert.deepEqual([sa.status, sa.u_dom, sa.u_port], [EVTCHNSTAT_interdomain, b.domid, pb]);
      const sb = status(b, pb).out;
      assert.deepEqual([sb.status, sb.u_dom, sb.u_port], [EVTCHNSTAT_interdomain, a.domid, pa]);
      // "We may have lost notifications on the remote unbound port": the local port is set pending.
      assert.equal(pending(host, b, pb), 1);
      assert.equal(sel(host, b), 1n);
      assert.equal(upcall(host, b), 1);
      assert.deepEqual(notes, [siBase(b) + vcpuInfoOffset(0)]);
      assert.equal(pending(host, a, pa), 0);
      assert.equal(upcall(host, a), 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('errors in Xen order: -ESRCH, then the local port (-ENOSPC), then the remote port (-EINVAL)', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm', { maxEvtchnPort: 2 });
    const pa = alloc(a, b.domid);
    assert.equal(bind(b, 99, pa), -XEN_ESRCH);
    assert.equal(bind(b, DOMID_INVALID, pa), -XEN_ESRCH);
    alloc(b, a.domid);
    alloc(b, a.domid);
    assert.equal(bind(b, a.domid, 4000), -XEN_ENOSPC, 'get_free_port(ld) comes before the remote port');
    assert.equal(bind(b, a.domid, pa), -XEN_ENOSPC);
  });

  it('-EINVAL: port beyond the table, port 0, a free port, offered to another domain, already bound', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'pv');
    const c = mk(host, 'hvm');
    const toC = alloc(a, c.domid);
    const { pa } = connect(a, b);
    const before = b.xen.evtchn.inUse;
    for (const rport of [EVTCHNS_PER_BUCKET, 4095, 4096, 0xffff_ffff, 0, 10, toC, pa]) {
      assert.equal(bind(b, a.domid, rport), -XEN_EINVAL, `remote port ${rport}`);
    }
    assert.equal(b.xen.evtchn.inUse, before, 'a failed bind leaves no port behind (check_free_port)');
    assert.equal(alloc(b, a.domid), before + 1, 'the next port is the lowest free one');
    assert.deepEqual(host.checkInvariants(), []);
  });

  for (const kind of KINDS) {
    it(`${kind}: DOMID_SELF as remote_dom: a loopback channel inside one domain`, () => {
      const host = newHost();
      const a = mk(host, kind);
      const p1 = alloc(a, DOMID_SELF);
      const p2 = bind(a, DOMID_SELF, p1);
      assert.deepEqual([p1, p2], [1, 2]);
      assert.deepEqual([status(a, p1).out.u_dom, status(a, p1).out.u_port], [a.domid, p2]);
      ack(host, a);
      op(a, EVTCHNOP_send, evtchn_send, { port: p2 });
      assert.equal(pending(host, a, p1), 1);
      assert.equal(close(a, p2), 0);
      const s = status(a, p1).out;
      assert.deepEqual([s.status, s.u_dom], [EVTCHNSTAT_unbound, a.domid]);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }
});

describe('EVTCHNOP_send (evtchn_send, evtchn_2l_set_pending)', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} -> ${kb}: pending bit, selector bit, upcall flag, one wake-up; a second send adds nothing`, () => {
      const host = newHost();
      const a = mk(host, ka);
      const b = mk(host, kb);
      const { pa, pb } = connect(a, b);
      // b handles the bind-time notification first, as its upcall handler would.
      host.hypervisor.machine.view.setUint8(siBase(b) + SHARED_INFO_EVTCHN_PENDING, 0);
      ack(host, b);
      const notes = watchNotify(host);
      assert.equal(send(a, pa), 0);
      assert.equal(pending(host, b, pb), 1);
      assert.equal(sel(host, b), 1n, 'port 2 lies in word 0');
      assert.equal(upcall(host, b), 1);
      assert.deepEqual(notes, [siBase(b)], 'notify32 on the Int32 holding evtchn_upcall_pending');
      // Already pending: test_and_set_bit finds it set and stops there.
      ack(host, b);
      assert.equal(send(a, pa), 0);
      assert.equal(sel(host, b), 0n);
      assert.equal(upcall(host, b), 0);
      assert.equal(notes.length, 1);
      // The sender's side is untouched.
      assert.equal(pending(host, a, pa), 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('the selector bit is port / 64; an upcall already pending is not kicked again', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    for (let i = 1; i < 70; i++) alloc(b, a.domid); // b's ports 1..69
    const pa = alloc(a, b.domid);
    const pb = bind(b, a.domid, pa);
    assert.equal(pb, 70);
    assert.equal(sel(host, b), 2n, 'the bind-time notification: word 1');
    const notes = watchNotify(host);
    const p2 = bind(b, a.domid, alloc(a, b.domid)); // port 71: same word, selector already set
    assert.equal(p2, 71);
    assert.equal(pending(host, b, 71), 1);
    assert.deepEqual(notes, [], 'selector bit already set: no upcall, no wake-up');
    ack(host, b);
    const lo = bind(b, a.domid, alloc(a, b.domid));
    assert.equal(lo, 72);
    ack(host, b);
    host.hypervisor.machine.view.setBigUint64(siBase(b) + SHARED_INFO_EVTCHN_PENDING + 8, 0n, true);
    // Upcall flag set by someone else (not yet handled): the selector is set, no second kick.
    host.hypervisor.machine.view.setUint8(siBase(b), 1);
    assert.equal(send(a, pa), 0);
    assert.equal(sel(host, b), 2n);
    assert.deepEqual(notes, [siBase(b)], 'only the bind-time 0 -> 1 transition of port 72 woke anyone');
  });

  it('a masked port: pending is set, nothing else (the edge is lost until unmask)', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'pv');
    const { pa, pb } = connect(a, b);
    host.hypervisor.machine.view.setUint8(siBase(b) + SHARED_INFO_EVTCHN_PENDING, 0);
    ack(host, b);
    setMask(host, b, pb);
    const notes = watchNotify(host);
    assert.equal(send(a, pa), 0);
    assert.equal(pending(host, b, pb), 1);
    assert.equal(sel(host, b), 0n);
    assert.equal(upcall(host, b), 0);
    assert.deepEqual(notes, []);
  });

  it('unbound: dropped silently (0); free, reserved, beyond the table, VIRQ: -EINVAL', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'pv');
    const pu = alloc(a, b.domid);
    const notes = watchNotify(host);
    assert.equal(send(a, pu), 0, 'ECS_UNBOUND: "silently drop the notification"');
    assert.equal(pending(host, a, pu), 0);
    assert.deepEqual(notes, []);
    const pv = op(a, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq: VIRQ_TIMER, vcpu: 0 }).out.port;
    for (const port of [0, 5, EVTCHNS_PER_BUCKET, 0xffff_ffff, pv])
      assert.equal(send(a, port), -XEN_EINVAL, `port ${port}`);
  });

  it('IPI: sending marks our own port pending on the vCPU it is bound to', () => {
    const host = newHost();
    const a = mk(host, 'hvm', { vcpus: 2 });
    const r = op(a, EVTCHNOP_bind_ipi, evtchn_bind_ipi, { vcpu: 1 });
    assert.equal(r.rc, 0);
    const notes = watchNotify(host);
    assert.equal(send(a, r.out.port), 0);
    assert.equal(pending(host, a, r.out.port), 1);
    assert.deepEqual([sel(host, a, 0), sel(host, a, 1)], [0n, 1n]);
    assert.deepEqual([upcall(host, a, 0), upcall(host, a, 1)], [0, 1]);
    assert.deepEqual(notes, [siBase(a) + 64]);
    const s = status(a, r.out.port).out;
    assert.deepEqual([s.status, s.vcpu], [EVTCHNSTAT_ipi, 1]);
  });
});

describe('EVTCHNOP_close (evtchn_close)', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} closes its end to ${kb}: the peer goes back to unbound, offered to the closer`, () => {
      const host = newHost();
      const a = mk(host, ka);
      const b = mk(host, kb);
      const { pa, pb } = connect(a, b);
      assert.equal(send(b, pb), 0);
      assert.equal(pending(host, a, pa), 1);
      assert.equal(close(a, pa), 0);
      assert.equal(pending(host, a, pa), 0, 'evtchn_free clears the pending bit');
      assert.equal(status(a, pa).out.status, EVTCHNSTAT_closed);
      const s = status(b, pb).out;
      assert.deepEqual([s.status, s.u_dom], [EVTCHNSTAT_unbound, a.domid]);
      assert.equal(send(b, pb), 0, 'now unbound: dropped');
      assert.equal(send(a, pa), -XEN_EINVAL);
      // The closer can connect again, to the same peer port; it gets its lowest free port back.
      assert.equal(bind(a, b.domid, pb), pa);
      assert.equal(status(b, pb).out.u_port, pa);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('unbound closes; free, reserved, beyond the table and a second close: -EINVAL', () => {
    const host = newHost();
    const a = mk(host, 'hvm');
    const p = alloc(a, 0);
    assert.equal(close(a, p), 0);
    assert.equal(a.xen.evtchn.inUse, 0);
    for (const port of [p, 0, 7, EVTCHNS_PER_BUCKET, 0x8000_0000]) assert.equal(close(a, port), -XEN_EINVAL);
  });

  it('closing a VIRQ frees the VIRQ for binding again', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const bv = (virq: number, vcpu = 0) => op(a, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq, vcpu });
    const p = bv(VIRQ_CON_RING).out.port;
    assert.equal(bv(VIRQ_CON_RING).rc, -XEN_EEXIST);
    assert.equal(close(a, p), 0);
    assert.equal(bv(VIRQ_CON_RING).rc, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('EVTCHNOP_status (evtchn_status)', () => {
  it('every state: closed (free and reserved), unbound, interdomain, virq, ipi; the rest of the union untouched', () => {
    const host = newHost();
    const a = mk(host, 'pv', { vcpus: 2 });
    const b = mk(host, 'hvm');
    const pu = alloc(a, b.domid);
    const { pa, pb } = connect(a, b);
    const pv = op(a, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq: VIRQ_DEBUG, vcpu: 1 }).out.port;
    const pi = op(a, EVTCHNOP_bind_ipi, evtchn_bind_ipi, { vcpu: 1 }).out.port;
    const addr = scratch(a, 3);
    const ask = (port: number) => {
      a.memory.write(addr, new Uint8Array(24).fill(0xee));
      a.memory.writeU16(addr, DOMID_SELF);
      a.memory.writeU32(addr + 4, port);
      const rc = a.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_status, addr);
      return { rc, bytes: a.memory.read(addr, 24) };
    };
    const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer).getUint32(at, true);
    const u16 = (b: Uint8Array, at: number) => new DataView(b.buffer).getUint16(at, true);
    for (const port of [0, 9]) {
      const r = ask(port);
      assert.equal(r.rc, 0);
      assert.deepEqual([u32(r.bytes, 8), u32(r.bytes, 12)], [EVTCHNSTAT_closed, 0]);
      assert.deepEqual([u32(r.bytes, 16), u32(r.bytes, 20)], [0xeeeeeeee, 0xeeeeeeee], 'u untouched');
    }
    let r = ask(pu);
    assert.deepEqual([u32(r.bytes, 8), u16(r.bytes, 16)], [EVTCHNSTAT_unbound, b.domid]);
    assert.deepEqual(
      [u16(r.bytes, 18), u32(r.bytes, 20)],
      [0xeeee, 0xeeeeeeee],
      'only u.unbound.dom written',
    );
    r = ask(pa);
    assert.deepEqual(
      [u32(r.bytes, 8), u16(r.bytes, 16), u32(r.bytes, 20)],
      [EVTCHNSTAT_interdomain, b.domid, pb],
    );
    r = ask(pv);
    assert.deepEqual([u32(r.bytes, 8), u32(r.bytes, 12)], [EVTCHNSTAT_virq, 1]);
    assert.equal(decodeStruct(evtchn_status_irq, r.bytes).u_irq, VIRQ_DEBUG);
    r = ask(pi);
    assert.deepEqual([u32(r.bytes, 8), u32(r.bytes, 12), u32(r.bytes, 16)], [EVTCHNSTAT_ipi, 1, 0xeeeeeeee]);
    assert.equal(u16(r.bytes, 2), 0xeeee, 'padding of the IN part comes back as it was');
  });

  it("another domain's ports: -EPERM for a domU, allowed to dom0; -ESRCH and -EINVAL first", () => {
    const host = newHost();
    const d0 = mk(host, 'pv');
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    const p = alloc(b, a.domid);
    assert.equal(status(a, p, b.domid).rc, -XEN_EPERM);
    const s = status(d0, p, b.domid);
    assert.equal(s.rc, 0);
    assert.deepEqual([s.out.status, s.out.u_dom], [EVTCHNSTAT_unbound, a.domid]);
    assert.equal(status(a, 1, 42).rc, -XEN_ESRCH);
    assert.equal(status(a, EVTCHNS_PER_BUCKET, b.domid).rc, -XEN_EINVAL, 'the port is checked before XSM');
    assert.equal(status(a, 0xffff_ffff).rc, -XEN_EINVAL);
  });
});

describe('EVTCHNOP_unmask (evtchn_unmask, evtchn_2l_unmask)', () => {
  it('masked and pending: clearing the mask raises selector and upcall, with a wake-up', () => {
    const host = newHost();
    const a = mk(host, 'hvm');
    const b = mk(host, 'pv');
    const { pa, pb } = connect(a, b);
    ack(host, b);
    host.hypervisor.machine.view.setUint8(siBase(b) + SHARED_INFO_EVTCHN_PENDING, 0);
    setMask(host, b, pb);
    send(a, pa);
    assert.deepEqual([pending(host, b, pb), sel(host, b), upcall(host, b)], [1, 0n, 0]);
    const notes = watchNotify(host);
    assert.equal(unmask(b, pb), 0);
    assert.equal(masked(host, b, pb), 0);
    assert.deepEqual([sel(host, b), upcall(host, b)], [1n, 1]);
    assert.deepEqual(notes, [siBase(b)]);
    // Unmasking again: the mask bit was clear, so nothing is raised.
    ack(host, b);
    assert.equal(unmask(b, pb), 0);
    assert.deepEqual([sel(host, b), upcall(host, b)], [0n, 0]);
    // Masked but not pending: only the mask clears.
    setMask(host, b, pb);
    host.hypervisor.machine.view.setUint8(siBase(b) + SHARED_INFO_EVTCHN_PENDING, 0);
    assert.equal(unmask(b, pb), 0);
    assert.deepEqual([masked(host, b, pb), sel(host, b), upcall(host, b)], [0, 0n, 0]);
    assert.equal(notes.length, 1);
  });

  it('beyond the table: -EINVAL; a free or reserved port: 0, and its mask stays set', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    assert.equal(unmask(a, EVTCHNS_PER_BUCKET), -XEN_EINVAL);
    assert.equal(unmask(a, 0xffff_ffff), -XEN_EINVAL);
    setMask(host, a, 5);
    setMask(host, a, 0);
    assert.equal(unmask(a, 5), 0);
    assert.equal(unmask(a, 0), 0);
    assert.deepEqual([masked(host, a, 5), masked(host, a, 0)], [1, 1], 'evtchn_usable: nothing done');
  });
});

describe('EVTCHNOP_bind_virq, bind_ipi, bind_vcpu', () => {
  it('bind_virq: -EINVAL (range, global VIRQ off vCPU 0), -ENOENT (vCPU), -EEXIST; per-vCPU VIRQs once per vCPU', () => {
    const host = newHost();
    const a = mk(host, 'pv', { vcpus: 2 });
    const bv = (virq: number, vcpu: number) => op(a, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq, vcpu });
    assert.equal(bv(24, 0).rc, -XEN_EINVAL);
    assert.equal(bv(0xffff_ffff, 0).rc, -XEN_EINVAL);
    assert.equal(bv(VIRQ_CON_RING, 1).rc, -XEN_EINVAL, 'global VIRQs bind on vCPU 0');
    assert.equal(bv(VIRQ_CON_RING, 5).rc, -XEN_EINVAL, 'the global check comes before the vCPU lookup');
    assert.equal(bv(VIRQ_TIMER, 2).rc, -XEN_ENOENT);
    const t0 = bv(VIRQ_TIMER, 0);
    const t1 = bv(VIRQ_TIMER, 1);
    assert.deepEqual([t0.rc, t0.out.port, t1.rc, t1.out.port], [0, 1, 0, 2]);
    assert.equal(bv(VIRQ_TIMER, 1).rc, -XEN_EEXIST);
    assert.equal(status(a, 2).out.vcpu, 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('bind_ipi: -ENOENT past the last vCPU', () => {
    const host = newHost();
    const a = mk(host, 'hvm');
    assert.equal(op(a, EVTCHNOP_bind_ipi, evtchn_bind_ipi, { vcpu: 1 }).rc, -XEN_ENOENT);
    assert.equal(a.xen.evtchn.inUse, 0);
  });

  it('bind_vcpu: moves unbound, interdomain and global VIRQ ports; refuses per-vCPU VIRQs and IPIs', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm', { vcpus: 2 });
    const { pa, pb } = connect(a, b);
    ack(host, b);
    host.hypervisor.machine.view.setUint8(siBase(b) + SHARED_INFO_EVTCHN_PENDING, 0);
    const bvc = (port: number, vcpu: number) =>
      op(b, EVTCHNOP_bind_vcpu, evtchn_bind_vcpu, { port, vcpu }).rc;
    assert.equal(bvc(pb, 2), -XEN_ENOENT);
    assert.equal(bvc(EVTCHNS_PER_BUCKET, 2), -XEN_ENOENT, 'the vCPU is checked first');
    assert.equal(bvc(EVTCHNS_PER_BUCKET, 1), -XEN_EINVAL);
    assert.equal(bvc(0, 1), -XEN_EINVAL);
    assert.equal(bvc(pb, 1), 0);
    assert.equal(status(b, pb).out.vcpu, 1);
    const notes = watchNotify(host);
    send(a, pa);
    assert.deepEqual(
      [sel(host, b, 0), sel(host, b, 1), upcall(host, b, 0), upcall(host, b, 1)],
      [0n, 1n, 0, 1],
    );
    assert.deepEqual(notes, [siBase(b) + 64]);
    const pu = alloc(b, a.domid);
    assert.equal(bvc(pu, 1), 0);
    const timer = op(b, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq: VIRQ_TIMER, vcpu: 0 }).out.port;
    const con = op(b, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq: VIRQ_CON_RING, vcpu: 0 }).out.port;
    const ipi = op(b, EVTCHNOP_bind_ipi, evtchn_bind_ipi, { vcpu: 0 }).out.port;
    assert.equal(bvc(timer, 1), -XEN_EINVAL);
    assert.equal(bvc(con, 1), 0);
    assert.equal(bvc(ipi, 1), -XEN_EINVAL);
    // Freed ports go back to vCPU 0.
    assert.equal(close(b, pu), 0);
    assert.equal(status(b, pu).out.vcpu, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('port table limits (get_free_port, evtchn_allocate_port)', () => {
  it('default max_evtchn_port 1023: ports 1..1023, then -ENOSPC; a closed port is handed out again', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    for (let i = 1; i <= 1023; i++) assert.equal(alloc(a, 0), i);
    assert.equal(alloc(a, 0), -XEN_ENOSPC);
    assert.equal(a.xen.evtchn.inUse, 1023);
    assert.equal(a.xen.evtchn.validPorts, 1024);
    assert.equal(close(a, 500), 0);
    assert.equal(alloc(a, 0), 500, 'the lowest free port');
    assert.equal(alloc(a, 0), -XEN_ENOSPC);
  });

  it('the 2-level ABI stops at port 4095 whatever max_evtchn_port says; max 0 gives none', () => {
    const host = new Host({ memoryMiB: 32 });
    const a = mk(host, 'hvm', { maxEvtchnPort: 100_000 });
    let last = 0;
    for (let p = alloc(a, 0); p > 0; p = alloc(a, 0)) last = p;
    assert.equal(last, 4095);
    assert.equal(alloc(a, 0), -XEN_ENOSPC);
    const b = mk(host, 'pv', { maxEvtchnPort: 0 });
    assert.equal(alloc(b, 0), -XEN_ENOSPC);
    assert.throws(() => mk(host, 'pv', { maxEvtchnPort: -1 }), RangeError);
  });

  it(`ports are valid in buckets of ${EVTCHNS_PER_BUCKET}: beyond them -EINVAL, a free one inside reads as closed`, () => {
    const host = newHost();
    const a = mk(host, 'pv');
    assert.equal(status(a, EVTCHNS_PER_BUCKET - 1).out.status, EVTCHNSTAT_closed);
    assert.equal(status(a, EVTCHNS_PER_BUCKET).rc, -XEN_EINVAL);
    for (let i = 1; i <= EVTCHNS_PER_BUCKET; i++) alloc(a, 0);
    assert.equal(status(a, EVTCHNS_PER_BUCKET).out.status, EVTCHNSTAT_unbound);
    assert.equal(status(a, 2 * EVTCHNS_PER_BUCKET - 1).out.status, EVTCHNSTAT_closed);
    assert.equal(status(a, 2 * EVTCHNS_PER_BUCKET).rc, -XEN_EINVAL);
  });
});

describe('EVTCHNOP_reset, FIFO ops, bind_pirq, unknown commands, faults', () => {
  it('reset of itself closes every port; interdomain peers go back to unbound', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    const { pa, pb } = connect(a, b);
    alloc(a, b.domid);
    op(a, EVTCHNOP_bind_virq, evtchn_bind_virq, { virq: VIRQ_TIMER, vcpu: 0 });
    assert.equal(op(a, EVTCHNOP_reset, evtchn_reset, { dom: DOMID_SELF }).rc, 0);
    assert.equal(a.xen.evtchn.inUse, 0);
    assert.equal(status(a, pa).out.status, EVTCHNSTAT_closed);
    assert.deepEqual([status(b, pb).out.status, status(b, pb).out.u_dom], [EVTCHNSTAT_unbound, a.domid]);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('reset of another domain: -ESRCH, -EPERM (domU), -EINVAL (dom0: not paused); reset_cont: -EBUSY', () => {
    const host = newHost();
    const d0 = mk(host, 'pv');
    const a = mk(host, 'pv');
    alloc(a, 0);
    assert.equal(op(a, EVTCHNOP_reset, evtchn_reset, { dom: 77 }).rc, -XEN_ESRCH);
    assert.equal(op(a, EVTCHNOP_reset, evtchn_reset, { dom: d0.domid }).rc, -XEN_EPERM);
    assert.equal(op(d0, EVTCHNOP_reset, evtchn_reset, { dom: a.domid }).rc, -XEN_EINVAL);
    assert.equal(op(a, EVTCHNOP_reset_cont, evtchn_reset, { dom: DOMID_SELF }).rc, -XEN_EBUSY);
    assert.equal(a.xen.evtchn.inUse, 1);
  });

  it('2-level only: init_control -ENOSYS, expand_array -EOPNOTSUPP, set_priority -EINVAL / -ENOSYS', () => {
    const host = newHost();
    const a = mk(host, 'hvm');
    const p = alloc(a, 0);
    assert.equal(op(a, EVTCHNOP_init_control, evtchn_init_control, { control_gfn: 0x100 }).rc, -XEN_ENOSYS);
    assert.equal(op(a, EVTCHNOP_expand_array, evtchn_expand_array, { array_gfn: 0x101 }).rc, -XEN_EOPNOTSUPP);
    assert.equal(
      op(a, EVTCHNOP_set_priority, evtchn_set_priority, { port: 999, priority: 7 }).rc,
      -XEN_EINVAL,
    );
    assert.equal(op(a, EVTCHNOP_set_priority, evtchn_set_priority, { port: p, priority: 7 }).rc, -XEN_ENOSYS);
  });

  it('bind_pirq (not modelled) and unknown commands: -ENOSYS', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    assert.equal(op(a, EVTCHNOP_bind_pirq, evtchn_bind_pirq, { pirq: 1 }).rc, -XEN_ENOSYS);
    for (const cmd of [15, 99, 0xffff_ffff, -1])
      assert.equal(a.hypercall(__HYPERVISOR_event_channel_op, cmd, scratch(a, 3)), -XEN_ENOSYS, `cmd ${cmd}`);
    assert.equal(a.xen.evtchn.inUse, 0);
  });

  it('every command with an unmapped argument: -EFAULT', () => {
    const host = newHost();
    const a = mk(host, 'hvm');
    for (let cmd = 0; cmd <= 14; cmd++)
      assert.equal(a.hypercall(__HYPERVISOR_event_channel_op, cmd, 0xf000_0000), -XEN_EFAULT, `cmd ${cmd}`);
    // A struct running off the end of RAM faults too.
    assert.equal(a.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_status, a.ramBytes - 8), -XEN_EFAULT);
    assert.equal(a.xen.evtchn.inUse, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('the shared-info page', () => {
  for (const kind of KINDS) {
    it(`${kind}: a zeroed Xen-heap frame of the domain; StartInfo names it; freed at final destruction`, () => {
      const host = newHost();
      const a = mk(host, kind);
      const mfn = a.xen.sharedInfoMfn;
      const f = host.hypervisor.frames;
      assert.ok(mfn > 0);
      assert.equal(f.owner[mfn], a.domid);
      assert.equal(f.flags[mfn]! & PGC_xen_heap, PGC_xen_heap);
      assert.deepEqual([f.count[mfn], f.typeCount[mfn]], [1, 1]);
      assert.ok(host.hypervisor.machine.frame(mfn).every((b) => b === 0));
      assert.ok(!a.xen.owned.has(mfn), 'not counted in tot_pages');
      assert.equal(host.context(a.domid).start.sharedInfoFrame, kind === 'pv' ? mfn : 0);
      assert.deepEqual(host.checkInvariants(), []);
      host.destroyDomain(a.domid);
      assert.equal(f.owner[mfn], OWNER_NONE);
      assert.equal(host.hypervisor.domains.size, 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('pv: update_va_mapping maps it read-write; the guest sees what Xen writes there', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'pv');
    const { pa, pb } = connect(a, b);
    const mfn = b.xen.sharedInfoMfn;
    assert.equal(
      b.hypercall(__HYPERVISOR_update_va_mapping, SI_VA, mfn * 4096 + (_PAGE_PRESENT | _PAGE_RW), 0),
      0,
    );
    assert.deepEqual([host.hypervisor.frames.count[mfn], host.hypervisor.frames.typeCount[mfn]], [2, 2]);
    assert.deepEqual(host.checkInvariants(), []);
    assert.equal(b.memory.readU8(SI_VA), 1, 'upcall pending from the bind');
    b.memory.writeU8(SI_VA, 0);
    b.memory.writeU64(SI_VA + 8, 0n);
    b.memory.writeU64(SI_VA + SHARED_INFO_EVTCHN_PENDING, 0n);
    send(a, pa);
    assert.equal(b.memory.readU64(SI_VA + SHARED_INFO_EVTCHN_PENDING), 1n << BigInt(pb));
    assert.equal(b.memory.readU8(SI_VA), 1);
    // Another domain cannot map it (not its page: get_page_from_l1e could not pin it).
    assert.equal(a.hypercall(__HYPERVISOR_update_va_mapping, SI_VA, mfn * 4096 + 3, 0), -XEN_EBUSY);
    // Unmapping gives the references back; destruction with it mapped is clean too.
    assert.equal(b.hypercall(__HYPERVISOR_update_va_mapping, SI_VA, 0, 0), 0);
    assert.deepEqual([host.hypervisor.frames.count[mfn], host.hypervisor.frames.typeCount[mfn]], [1, 1]);
    mapSharedInfo(b);
    host.destroyDomain(b.domid);
    assert.equal(host.hypervisor.frames.owner[mfn], OWNER_NONE);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: add_to_physmap XENMAPSPACE_shared_info idx 0 places it; another gpfn moves it; idx 1: -EINVAL', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    const { pa, pb } = connect(a, b);
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 1, SI_VA / 4096), -XEN_EINVAL);
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 0, SI_VA / 4096), 0);
    assert.equal(b.xen.sharedInfoGfn, SI_VA / 4096);
    assert.equal(b.memory.readU8(SI_VA), 1);
    b.memory.writeU64(SI_VA + SHARED_INFO_EVTCHN_PENDING, 0n);
    send(a, pa);
    assert.equal(b.memory.readU64(SI_VA + SHARED_INFO_EVTCHN_PENDING), 1n << BigInt(pb));
    assert.deepEqual(host.checkInvariants(), []);
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 0, SI_VA / 4096 + 1), 0);
    assert.ok(!b.memory.mapped(SI_VA), 'unmapped from the old GFN');
    assert.equal(b.memory.readU64(SI_VA + 4096 + SHARED_INFO_EVTCHN_PENDING), 1n << BigInt(pb));
    assert.deepEqual(host.checkInvariants(), []);
    // A PV domain has no P2M: -EACCES.
    assert.equal(physmap(a, XENMAPSPACE_shared_info, 0, SI_VA / 4096), -XEN_EACCES);
  });

  it('hvm: placed over RAM, the RAM page is freed; over a grant frame, that frame is unhooked (and back)', () => {
    const host = newHost();
    const b = mk(host, 'hvm');
    const tot = b.xen.totPages;
    const ramMfn = b.xen.translatePage(0x5000, false) / 4096;
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 0, 5), 0);
    assert.equal(b.xen.totPages, tot - 1);
    assert.equal(host.hypervisor.frames.owner[ramMfn], OWNER_NONE);
    assert.equal(b.xen.translatePage(0x5000, false) / 4096, b.xen.sharedInfoMfn);
    assert.deepEqual(host.checkInvariants(), []);
    // A grant frame placed over it unhooks the shared-info page (a special page is not freed).
    assert.equal(physmap(b, XENMAPSPACE_grant_table, 0, 5), 0);
    assert.equal(b.xen.sharedInfoGfn, -1);
    assert.equal(host.hypervisor.frames.owner[b.xen.sharedInfoMfn], b.domid);
    assert.deepEqual(host.checkInvariants(), []);
    // And the other way round.
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 0, 5), 0);
    assert.equal(b.xen.gt.sharedGfn.get(0), -1);
    assert.equal(b.xen.sharedInfoGfn, 5);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('hvm: a grant mapped over the shared-info GFN unhooks it', () => {
    const host = newHost();
    const a = mk(host, 'pv');
    const b = mk(host, 'hvm');
    mapGrantTable(a);
    grantAccess(a, 9, b.domid, a.frameOf(0x3000));
    assert.equal(physmap(b, XENMAPSPACE_shared_info, 0, MAP_VA / 4096), 0);
    const m = one(
      gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 9, dom: a.domid },
      ]),
    );
    assert.equal(m.status, GNTST_okay);
    assert.equal(b.xen.sharedInfoGfn, -1);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('destroying a domain closes its ports (evtchn_destroy)', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} survives ${kb}: its connected port goes back to unbound, offered to the dead domain's id`, () => {
      const host = newHost();
      const a = mk(host, ka);
      const b = mk(host, kb);
      const { pa } = connect(a, b);
      const { pb: pa2 } = connect(b, a); // a's second port, bound to b's unbound port
      const pu = alloc(a, b.domid);
      const l1 = alloc(b, DOMID_SELF);
      bind(b, DOMID_SELF, l1);
      const bid = b.domid;
      const bInfo = b.xen.sharedInfoMfn;
      host.destroyDomain(bid);
      assert.equal(b.xen.evtchn.inUse, 0);
      assert.equal(host.hypervisor.domains.has(bid), false);
      assert.equal(host.hypervisor.frames.owner[bInfo], OWNER_NONE);
      for (const p of [pa, pa2, pu]) {
        const s = status(a, p).out;
        assert.deepEqual([s.status, s.u_dom], [EVTCHNSTAT_unbound, bid], `port ${p}`);
      }
      assert.equal(a.xen.evtchn.inUse, 3);
      assert.equal(send(a, pa), 0, 'dropped');
      assert.equal(a.xen.evtchn.ports[pa]!.state, ECS_UNBOUND);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('a dying domain kept as a zombie: no new ports (-EINVAL), its old ports cannot be bound', () => {
    const host = newHost();
    const d0 = mk(host, 'pv');
    const z = mk(host, 'pv');
    const c = mk(host, 'hvm');
    const pz = alloc(z, d0.domid);
    // c maps a page of z, so z stays a zombie once destroyed.
    mapGrantTable(z);
    grantAccess(z, 8, c.domid, z.frameOf(0x4000));
    const m = one(
      gnttabOp(c, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
        { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 8, dom: z.domid },
      ]),
    );
    assert.equal(m.status, GNTST_okay);
    host.destroyDomain(z.domid);
    assert.ok(host.hypervisor.domains.has(z.domid), 'zombie');
    assert.equal(z.xen.evtchn.inUse, 0);
    assert.equal(alloc(d0, d0.domid, z.domid), -XEN_EINVAL, 'get_free_port of a dying domain');
    assert.equal(bind(d0, z.domid, pz), -XEN_EINVAL);
    assert.equal(status(d0, pz, z.domid).out.status, EVTCHNSTAT_closed);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
