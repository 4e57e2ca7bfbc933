// The guest's event-channel client (src/guest/events.ts) in single-thread mode,
// built from host.context(domid): the shared-info page mapped as a guest maps it
// (PV update_va_mapping, HVM XENMAPSPACE_shared_info), ports offered, bound,
// sent to and closed through the raw hypercall, events delivered by poll() in
// the order of Linux's upcall handler (upcall flag, selector, each port's bit)
// and by wait(), which sleeps on the Int32 word of evtchn_upcall_pending until
// Xen's notify (host.clock is virtual: timeouts fire only on advance).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { GuestContext } from '../../src/guest/context.ts';
import { EventChannelError, EventChannels } from '../../src/guest/events.ts';
import { SHARED_INFO_VA } from '../../src/guest/layout.ts';
import {
  __HYPERVISOR_event_channel_op,
  DOMID_SELF,
  type DomainHandle,
  EVTCHNOP_bind_virq,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  encodeStruct,
  evtchn_bind_virq,
  Host,
  SHARED_INFO_EVTCHN_MASK,
  SHARED_INFO_EVTCHN_PENDING,
  VIRQ_CON_RING,
  XEN_EBUSY,
  XEN_EINVAL,
  XEN_ENOENT,
} from '../../src/index.ts';
import type { SharedOp } from '../../src/machine/shared-words.ts';

const PAIRS = [
  ['pv', 'pv'],
  ['hvm', 'hvm'],
  ['pv', 'hvm'],
  ['hvm', 'pv'],
] as const;

interface Side {
  dom: DomainHandle;
  ctx: GuestContext;
  ev: EventChannels;
  got: number[];
}

function side(host: Host, kind: 'pv' | 'hvm', vcpus = 1): Side {
  const dom = host.createDomain({ kind, memoryKiB: 256, vcpus });
  const ctx = host.context(dom.domid);
  return { dom, ctx, ev: EventChannels.open(ctx), got: [] };
}

/** a offers a port to b, b binds it; both bind handlers that record the ports they see. */
function channel(a: Side, b: Side): { pa: number; pb: number } {
  const pa = a.ev.allocUnbound(b.dom.domid);
  assert.ok(pa > 0, `alloc_unbound ${pa}`);
  const pb = b.ev.bindInterdomain(a.dom.domid, pa);
  assert.ok(pb > 0, `bind_interdomain ${pb}`);
  assert.equal(
    a.ev.bind(pa, (p) => a.got.push(p)),
    0,
  );
  assert.equal(
    b.ev.bind(pb, (p) => b.got.push(p)),
    0,
  );
  return { pa, pb };
}

/** Lets every promise job run (resolved waits, awaiting code). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The guest's own view of its shared-info words. */
function sel(s: Side): bigint {
  return s.dom.memory.readU64(SHARED_INFO_VA + 8);
}
function upcallByte(s: Side): number {
  return s.dom.memory.readU8(SHARED_INFO_VA);
}

describe('EventChannels: open, bind, send, poll', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} -> ${kb}: the peer's handler runs from poll(); every bit it used is cleared`, () => {
      const host = new Host({ memoryMiB: 16 });
      const a = side(host, ka);
      const b = side(host, kb);
      const { pa, pb } = channel(a, b);
      // Xen marks the binder's port pending at bind time; b sees that first.
      assert.equal(b.ev.poll(), 1);
      assert.deepEqual(b.got, [pb]);
      assert.equal(b.ev.poll(), 0, 'nothing more');
      assert.equal(a.ev.send(pa), 0);
      assert.equal(b.ev.upcallPending, true);
      assert.equal(b.ev.isPending(pb), true);
      assert.equal(b.ev.poll(), 1);
      assert.deepEqual(b.got, [pb, pb]);
      assert.equal(b.ev.isPending(pb), false);
      assert.equal(sel(b), 0n);
      assert.equal(upcallByte(b), 0);
      // And back.
      assert.equal(b.ev.send(pb), 0);
      assert.equal(a.ev.poll(), 1);
      assert.deepEqual(a.got, [pa]);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('the shared-info page is mapped where layout.ts says; every port starts masked', () => {
    const host = new Host({ memoryMiB: 16 });
    for (const kind of ['pv', 'hvm'] as const) {
      const s = side(host, kind);
      assert.ok(s.dom.memory.mapped(SHARED_INFO_VA, true));
      if (kind === 'hvm') assert.equal(s.dom.xen.sharedInfoGfn, SHARED_INFO_VA / 4096);
      else assert.equal(s.dom.xen.translatePage(SHARED_INFO_VA, true), s.dom.xen.sharedInfoMfn * 4096);
      for (const at of [0, 8, 504])
        assert.equal(s.dom.memory.readU64(SHARED_INFO_VA + SHARED_INFO_EVTCHN_MASK + at), 2n ** 64n - 1n);
      assert.equal(s.ev.isMasked(1), true);
      assert.equal(s.ev.isMasked(4095), true);
    }
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('an event sent before bind() is not lost: the masked port stays pending, unmask re-raises it', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'hvm');
    const pb = b.ev.allocUnbound(a.dom.domid);
    const pa = a.ev.bindInterdomain(b.dom.domid, pb);
    assert.equal(a.ev.send(pa), 0);
    assert.equal(b.ev.isPending(pb), true);
    assert.equal(b.ev.upcallPending, false, 'masked: no upcall');
    assert.equal(b.ev.poll(), 0);
    assert.equal(
      b.ev.bind(pb, (p) => b.got.push(p)),
      0,
    );
    assert.equal(b.ev.upcallPending, true, 'EVTCHNOP_unmask re-raised it');
    assert.equal(b.ev.poll(), 1);
    assert.deepEqual(b.got, [pb]);
  });

  it('a masked port is skipped even when its word is selected by another port', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'hvm');
    const x = channel(a, b);
    const y = channel(a, b);
    b.ev.poll();
    b.got.length = 0;
    b.ev.mask(x.pb);
    a.ev.send(x.pa); // pending, masked: no selector bit
    a.ev.send(y.pa); // selects word 0
    assert.equal(b.ev.poll(), 1);
    assert.deepEqual(b.got, [y.pb]);
    assert.equal(b.ev.isPending(x.pb), true, 'left pending for when it is unmasked');
    assert.equal(b.ev.unmask(x.pb), 0);
    assert.equal(b.ev.poll(), 1);
    assert.deepEqual(b.got, [y.pb, x.pb]);
  });

  it('ports in different selector words, delivered lowest word first', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'hvm');
    const b = side(host, 'pv');
    const ports: number[] = [];
    for (let i = 0; i < 70; i++) ports.push(b.ev.allocUnbound(a.dom.domid));
    assert.equal(ports.at(-1), 70);
    const pa69 = a.ev.bindInterdomain(b.dom.domid, 69);
    const pa3 = a.ev.bindInterdomain(b.dom.domid, 3);
    for (const p of [3, 69]) b.ev.bind(p, (q) => b.got.push(q));
    a.ev.poll();
    a.ev.send(pa69);
    a.ev.send(pa3);
    assert.equal(sel(b), 0b11n, 'port 3 in word 0, port 69 in word 1');
    assert.equal(b.ev.poll(), 2);
    assert.deepEqual(b.got, [3, 69]);
  });

  it('clears the upcall flag, then the selector, then each port bit (Linux/Xen order)', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'pv');
    const { pa } = channel(a, b);
    b.ev.poll();
    a.ev.send(pa);
    const base = b.dom.xen.sharedInfoMfn * 4096;
    const log: string[] = [];
    const words = host.hypervisor.machine.words;
    words.interpose = (op: SharedOp, addr: number) => {
      if (addr < base || addr >= base + 4096) return;
      const off = addr - base;
      if (op === 'and16' && off === 0) log.push('clear upcall');
      else if (op === 'cmpxchg32' && (off === 8 || off === 12)) log.push('take selector');
      else if (op === 'and16' && off >= SHARED_INFO_EVTCHN_PENDING && off < SHARED_INFO_EVTCHN_MASK)
        log.push('clear port');
    };
    try {
      assert.equal(b.ev.poll(), 1);
    } finally {
      words.interpose = null;
    }
    assert.deepEqual(log, ['clear upcall', 'take selector', 'clear port']);
  });

  it('a handler that sends on a loopback channel is served in the same poll (upcall loop)', () => {
    const host = new Host({ memoryMiB: 16 });
    const s = side(host, 'hvm');
    const p1 = s.ev.allocUnbound(DOMID_SELF);
    const p2 = s.ev.bindInterdomain(DOMID_SELF, p1);
    let pings = 0;
    let pongs = 0;
    s.ev.bind(p1, () => {
      pings++;
      if (pings < 5) s.ev.send(p1); // to p2
    });
    s.ev.bind(p2, () => {
      pongs++;
      s.ev.send(p2); // to p1
    });
    // p2's bind-time event starts a rally of 5 pongs and 5 pings, all in one poll().
    assert.equal(s.ev.poll(), 10);
    assert.deepEqual([pings, pongs], [5, 5]);
    assert.equal(s.ev.upcallPending, false);
    assert.equal(s.ev.isPending(p1) || s.ev.isPending(p2), false);
  });

  it('stray and throwing handlers: an unmasked port with no handler is cleared and counted; a throw is logged', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'hvm');
    const { pa, pb } = channel(a, b);
    b.ev.poll();
    b.ev.unbind(pb);
    assert.equal(b.ev.isMasked(pb), true);
    assert.equal(b.ev.unmask(pb), 0);
    a.ev.send(pa);
    assert.equal(b.ev.poll(), 0);
    assert.equal(b.ev.stray, 1);
    assert.equal(b.ev.isPending(pb), false);
    b.ev.bind(pb, () => {
      throw new Error('boom');
    });
    a.ev.send(pa);
    assert.equal(b.ev.poll(), 1);
    assert.match(host.console(b.dom.domid).join('\n'), new RegExp(`handler of port ${pb} threw: boom`));
  });
});

describe('EventChannels.wait', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} -> ${kb}: await wait() is resolved by Xen's notify, with no time passing`, async () => {
      const host = new Host({ memoryMiB: 16 });
      const a = side(host, ka);
      const b = side(host, kb);
      const { pa, pb } = channel(a, b);
      assert.equal(await b.ev.wait(1000), 1, 'the bind-time event is delivered at once');
      let done: number | undefined;
      const w = b.ev.wait(1000).then((n) => {
        done = n;
        return n;
      });
      await settle();
      assert.equal(done, undefined);
      assert.equal(host.waiters, 1, 'asleep on the word, not spinning');
      assert.equal(a.ev.send(pa), 0);
      assert.equal(await w, 1);
      assert.deepEqual(b.got, [pb, pb]);
      assert.equal(host.clock.now(), 0);
      assert.equal(host.waiters, 0);
      assert.equal(host.clock.pendingTimers, 0, 'the timeout timer was cancelled');
    });
  }

  it('times out only when the virtual clock reaches the deadline', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'hvm');
    channel(a, b);
    await b.ev.wait(0);
    let done: number | undefined;
    const w = b.ev.wait(50).then((n) => {
      done = n;
      return n;
    });
    await settle();
    host.clock.advance(49);
    await settle();
    assert.equal(done, undefined);
    host.clock.advance(1);
    assert.equal(await w, 0);
    assert.equal(host.waiters, 0);
    assert.equal(await b.ev.wait(0), 0, 'ms 0: a poll, no sleep');
  });

  it('wait(Infinity) sleeps with no timer until the notify', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'hvm');
    const b = side(host, 'hvm');
    const { pa, pb } = channel(a, b);
    b.ev.poll();
    const w = b.ev.wait(Number.POSITIVE_INFINITY);
    await settle();
    assert.equal(host.clock.pendingTimers, 0);
    assert.equal(host.waiters, 1);
    a.ev.send(pa);
    assert.equal(await w, 1);
    assert.deepEqual(b.got, [pb, pb]);
  });

  it('a masked port does not wake the waiter; unmasking it does', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'pv');
    const { pa, pb } = channel(a, b);
    b.ev.poll();
    b.ev.mask(pb);
    let done: number | undefined;
    const w = b.ev.wait(100).then((n) => {
      done = n;
      return n;
    });
    await settle();
    a.ev.send(pa);
    await settle();
    assert.equal(done, undefined, 'masked: no upcall, no wake-up');
    assert.equal(b.ev.isPending(pb), true);
    // Another vCPU of the guest (a test here) unmasks it through Xen.
    assert.equal(b.ev.unmask(pb), 0);
    assert.equal(await w, 1);
    assert.deepEqual(b.got, [pb, pb]);
  });

  it('two guests ping-pong under runGuests, deterministically', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    let offered = -1;
    const rounds = 20;
    const out = await host.runGuests([
      {
        // b starts first and sleeps until a has offered a port.
        domid: b.domid,
        main: async (ctx) => {
          const ev = EventChannels.open(ctx);
          while (offered < 0) await ctx.clock.sleep(1);
          const port = ev.bindInterdomain(a.domid, offered);
          let got = 0;
          ev.bind(port, () => {
            got++;
          });
          assert.equal(await ev.wait(0), 1, 'the bind-time event');
          got = 0;
          ev.send(port); // hello
          for (let i = 1; i <= rounds; i++) {
            while (got < i) if ((await ev.wait(1000)) === 0) throw new Error('b timed out');
            ev.send(port); // pong
          }
          return got;
        },
      },
      {
        domid: a.domid,
        main: async (ctx) => {
          const ev = EventChannels.open(ctx);
          let got = 0;
          offered = ev.allocUnbound(b.domid);
          ev.bind(offered, () => {
            got++;
          });
          while (got < 1) if ((await ev.wait(1000)) === 0) throw new Error('no hello');
          for (let i = 0; i < rounds; i++) {
            const want = got + 1;
            ev.send(offered); // ping
            while (got < want) if ((await ev.wait(1000)) === 0) throw new Error('a timed out');
          }
          return got - 1;
        },
      },
    ]);
    assert.deepEqual(
      out.map((o) => [o.ok, o.result, o.error?.message]),
      [
        [true, rounds, undefined],
        [true, rounds, undefined],
      ],
    );
    assert.equal(host.clock.now(), 1, 'one virtual millisecond: b slept once for the offer');
    assert.equal(host.waiters, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('EventChannels: close, destroy, status, bad ports', () => {
  for (const [ka, kb] of PAIRS) {
    it(`${ka} closes: the ${kb} peer's port is unbound again, offered to the closer`, () => {
      const host = new Host({ memoryMiB: 16 });
      const a = side(host, ka);
      const b = side(host, kb);
      const { pa, pb } = channel(a, b);
      b.ev.poll();
      assert.equal(a.ev.close(pa), 0);
      assert.deepEqual(a.ev.boundPorts, []);
      assert.equal(a.ev.isMasked(pa), true);
      const s = b.ev.status(pb);
      assert.deepEqual(
        [s.rc, s.status, s.remoteDom, s.remotePort],
        [0, EVTCHNSTAT_unbound, a.dom.domid, undefined],
      );
      assert.equal(a.ev.status(pa).status, EVTCHNSTAT_closed);
      assert.equal(a.ev.send(pa), -XEN_EINVAL);
      assert.equal(b.ev.send(pb), 0, 'unbound: dropped');
      assert.equal(a.ev.poll(), 0);
      // a connects again to the same port of b.
      const again = a.ev.bindInterdomain(b.dom.domid, pb);
      assert.equal(again, pa);
      assert.equal(
        a.ev.bind(again, (p) => a.got.push(p)),
        0,
      );
      b.ev.send(pb);
      assert.equal(a.ev.poll(), 1);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('destroying a domain closes its ports: the survivor sees its port unbound, sends are dropped', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'hvm');
    const b = side(host, 'pv');
    const { pb } = channel(a, b);
    b.ev.poll();
    host.destroyDomain(a.dom.domid);
    const s = b.ev.status(pb);
    assert.deepEqual([s.status, s.remoteDom], [EVTCHNSTAT_unbound, a.dom.domid]);
    assert.equal(b.ev.send(pb), 0);
    assert.equal(await b.ev.wait(0), 0);
    assert.equal(a.dom.xen.evtchn.inUse, 0);
    assert.equal(b.dom.xen.evtchn.inUse, 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('status for every state it can see: closed, unbound, interdomain, virq; another domain: -EPERM', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const b = side(host, 'hvm');
    const pu = a.ev.allocUnbound(b.dom.domid);
    const { pa, pb } = channel(a, b);
    const addr = a.ctx.start.ramBytes - 2 * 4096;
    a.dom.memory.write(addr, encodeStruct(evtchn_bind_virq, { virq: VIRQ_CON_RING, vcpu: 0 }));
    assert.equal(a.dom.hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, addr), 0);
    const pv = a.dom.memory.readU32(addr + 8);
    assert.deepEqual(a.ev.status(0), { rc: 0, status: EVTCHNSTAT_closed, vcpu: 0 });
    assert.deepEqual(a.ev.status(pu), { rc: 0, status: EVTCHNSTAT_unbound, vcpu: 0, remoteDom: b.dom.domid });
    assert.deepEqual(a.ev.status(pa), {
      rc: 0,
      status: EVTCHNSTAT_interdomain,
      vcpu: 0,
      remoteDom: b.dom.domid,
      remotePort: pb,
    });
    assert.deepEqual(a.ev.status(pv), { rc: 0, status: EVTCHNSTAT_virq, vcpu: 0, irq: VIRQ_CON_RING });
    // dom0 (a) may look at b's ports; b may not look at a's.
    assert.equal(a.ev.status(pb, b.dom.domid).status, EVTCHNSTAT_interdomain);
    assert.deepEqual(b.ev.status(pa, a.dom.domid), { rc: -1, status: 0, vcpu: 0 });
  });

  it('bad ports answer -EINVAL and leave no handler behind', () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'hvm');
    for (const port of [0, 5, 64, 4095, 4096, 70_000]) {
      assert.equal(a.ev.send(port), -XEN_EINVAL, `send ${port}`);
      assert.equal(a.ev.close(port), -XEN_EINVAL, `close ${port}`);
    }
    assert.equal(
      a.ev.bind(4096, () => {}),
      -XEN_EINVAL,
    );
    assert.equal(
      a.ev.bind(70_000, () => {}),
      -XEN_EINVAL,
    );
    assert.equal(a.ev.status(64).rc, -XEN_EINVAL);
    assert.deepEqual(a.ev.boundPorts, []);
    assert.equal(a.ev.bindInterdomain(a.dom.domid, 1), -XEN_EINVAL);
    assert.equal(a.ev.allocUnbound(DOMID_SELF), 1);
    assert.equal(a.dom.xen.evtchn.inUse, 1);
  });

  it('vCPU 1 client: serves vCPU 1 selector and upcall word', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = side(host, 'pv');
    const dom = host.createDomain({ kind: 'hvm', memoryKiB: 256, vcpus: 2 });
    const ctx = host.context(dom.domid);
    const ev0 = EventChannels.open(ctx);
    const ev1 = EventChannels.open(ctx, { vcpu: 1 });
    const pb = ev0.allocUnbound(a.dom.domid);
    const pa = a.ev.bindInterdomain(dom.domid, pb);
    const got: number[] = [];
    ev1.bind(pb, (p) => got.push(p));
    // EVTCHNOP_bind_vcpu through the raw interface.
    const addr = ctx.start.ramBytes - 2 * 4096;
    dom.memory.writeU32(addr, pb);
    dom.memory.writeU32(addr + 4, 1);
    assert.equal(dom.hypercall(__HYPERVISOR_event_channel_op, 8, addr), 0);
    dom.memory.writeU32(addr + 4, 2);
    assert.equal(dom.hypercall(__HYPERVISOR_event_channel_op, 8, addr), -XEN_ENOENT);
    const w = ev1.wait(10);
    await settle();
    a.ev.send(pa);
    assert.equal(await w, 1);
    assert.deepEqual(got, [pb]);
    assert.equal(ev0.poll(), 0, 'vCPU 0 saw nothing');
    assert.throws(() => EventChannels.open(ctx, { vcpu: 32 }), RangeError);
  });

  it('a PV context without a shared-info frame cannot open', () => {
    const host = new Host({ memoryMiB: 16 });
    const dom = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const ctx = host.context(dom.domid);
    const bad: GuestContext = { ...ctx, start: { ...ctx.start, sharedInfoFrame: -1 } };
    assert.throws(() => EventChannels.open(bad), EventChannelError);
    // And an MFN that is not the domain's: update_va_mapping could not pin it (get_page_from_l1e).
    const other = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const wrong: GuestContext = { ...ctx, start: { ...ctx.start, sharedInfoFrame: other.xen.sharedInfoMfn } };
    assert.throws(
      () => EventChannels.open(wrong),
      (e: unknown) => e instanceof EventChannelError && e.rc === -XEN_EBUSY,
    );
  });

  it('guest code imports only abi, machine and guest modules (layering)', () => {
    const src = readFileSync(new URL('../../src/guest/events.ts', import.meta.url), 'utf8');
    const imports = [...src.matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
    assert.ok(imports.length > 0);
    for (const i of imports) assert.match(i, /^\.\.\/(abi|machine)\/|^\.\/[a-z-]+\.ts$/, i);
  });
});
