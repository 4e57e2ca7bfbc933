// libxengnttab and libxengntshr (tools/libs/gnttab linux.c over Linux's
// gntdev.c / gntalloc.c), libxenevtchn (tools/libs/evtchn over Linux's
// evtchn.c): the calls by their C names, typed errors with the errno,
// disposal that releases mappings, shares and ports, grant copy, pending()
// with an AbortSignal.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  EventChannels,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTST_bad_gntref,
  GNTST_okay,
  Gntalloc,
  Gntdev,
  Host,
  PageAllocator,
  VIRQ_TIMER,
  XenError,
  Xenevtchn,
  Xengntshr,
  Xengnttab,
} from 'gnttab';
import { world } from './gnttab-world.ts';

const PAGE = 4096;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function setup() {
  const w = world({ kind: 'pv', version: 1, backKind: 'hvm' });
  const bctx = w.host.context(w.back.domid);
  const bpages = new PageAllocator(bctx);
  const dev = new Gntdev(bctx, bpages);
  const grant = (text: string, readonly = false) => {
    const p = w.gt.pages.alloc();
    w.ctx.mem.write(p, enc(text));
    return { page: p, ref: w.gt.grantForeignAccess(w.back.domid, w.gt.pages.gfnOf(p), readonly) };
  };
  const pins = () => w.back.xen.gt.maptrack.liveCount();
  return { w, bctx, bpages, dev, grant, pins };
}

describe('libxengnttab', () => {
  it('map_grant_ref, map_grant_refs (a domid per ref), map_domain_grant_refs; unmap and dispose', async () => {
    const { w, bctx, dev, grant, pins } = setup();
    const a = grant('alpha');
    const b = grant('bravo');
    {
      using xgt = Xengnttab.open(dev);
      const one = await xgt.mapGrantRef(w.dom.domid, a.ref, false);
      assert.equal(dec(bctx.mem.read(one.addr, 5)), 'alpha');
      const two = await xgt.mapGrantRefs([w.dom.domid, w.dom.domid], [b.ref, a.ref], true);
      assert.equal(two.count, 2);
      assert.equal(dec(bctx.mem.read(two.addr, 5)), 'bravo');
      assert.equal(dec(bctx.mem.read(two.addr + PAGE, 5)), 'alpha');
      assert.equal(pins(), 3);
      {
        using three = await xgt.mapDomainGrantRefs(w.dom.domid, [a.ref], false);
        assert.equal(three.mapped, true);
        assert.equal(pins(), 4);
      }
      assert.equal(pins(), 3, 'disposing the mapping unmapped it');
      one.unmap();
      assert.throws(
        () => one.unmap(),
        (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      );
      await assert.rejects(
        xgt.mapGrantRefs([w.dom.domid], [a.ref, b.ref], false),
        (e: unknown) => e instanceof XenError && e.op === 'xengnttab_map_grant_refs' && e.errno === 22,
      );
      await assert.rejects(
        xgt.mapGrantRef(w.dom.domid, 999, false),
        (e: unknown) => e instanceof XenError && e.status?.[0] === GNTST_bad_gntref,
      );
      xgt.setMaxGrants(10); // Linux has no such ioctl (ENOTTY), which libxengnttab ignores
      assert.equal(pins(), 2);
    }
    assert.equal(pins(), 0, 'disposing the handle unmapped everything');
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('grant_copy: to and from grants, split at page boundaries of the local address, per-segment status', async () => {
    const { w, bctx, bpages, dev, grant } = setup();
    const a = grant('0123456789');
    using xgt = Xengnttab.open(dev);
    const local = bpages.allocPages(2) as number[];
    assert.equal(local[1], local[0]! + PAGE, 'two consecutive pages');
    bctx.mem.write(local[0]! + PAGE - 3, enc('XYZUVW'));
    const segs = [
      // 6 bytes from a page boundary-crossing local address into the grant at offset 100: two ops.
      {
        source: { virt: local[0]! + PAGE - 3 },
        dest: { foreign: { ref: a.ref, offset: 100, domid: w.dom.domid } },
        len: 6,
        flags: GNTCOPY_dest_gref,
      },
      {
        source: { foreign: { ref: a.ref, offset: 2, domid: w.dom.domid } },
        dest: { virt: local[1]! + 10 },
        len: 4,
        flags: GNTCOPY_source_gref,
      },
      {
        source: { foreign: { ref: 4000, offset: 0, domid: w.dom.domid } },
        dest: { virt: local[1]! },
        len: 1,
        flags: GNTCOPY_source_gref,
      },
    ];
    assert.deepEqual(await xgt.grantCopy(segs), [GNTST_okay, GNTST_okay, GNTST_bad_gntref]);
    assert.equal(dec(w.ctx.mem.read(a.page + 100, 6)), 'XYZUVW');
    assert.equal(dec(bctx.mem.read(local[1]! + 10, 4)), '2345');
    await assert.rejects(
      xgt.grantCopy([{ source: { virt: local[0]! }, dest: { virt: local[1]! }, len: 1, flags: 0 }]),
      (e: unknown) => e instanceof XenError && e.op === 'xengnttab_grant_copy' && e.code === 'EINVAL',
    );
    await assert.rejects(
      xgt.grantCopy([
        {
          source: { foreign: { ref: a.ref, offset: 4090, domid: w.dom.domid } },
          dest: { virt: local[0]! },
          len: 10,
          flags: GNTCOPY_source_gref,
        },
      ]),
      (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      'a grant end must stay in its page',
    );
    await assert.rejects(
      xgt.grantCopy([
        {
          source: { foreign: { ref: a.ref, offset: 0, domid: w.dom.domid } },
          dest: { virt: 0x9000_0000 },
          len: 1,
          flags: GNTCOPY_source_gref,
        },
      ]),
      (e: unknown) => e instanceof XenError && e.code === 'EFAULT',
    );
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('libxengntshr', () => {
  it('share_pages, share_page_notify, unshare(addr, count); typed errors; dispose releases the share', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'pv' });
    const ports: number[] = [];
    const dev = new Gntalloc(w.gt, { limit: 3, notify: (p) => ports.push(p) });
    const free = w.gt.freeCount;
    {
      using xgs = Xengntshr.open(dev);
      const s = xgs.sharePages(w.back.domid, 2, true);
      assert.equal(s.refs.length, 2);
      assert.equal(w.gt.freeCount, free - 2);
      assert.throws(
        () => xgs.sharePages(w.back.domid, 2, false),
        (e: unknown) => e instanceof XenError && e.op === 'xengntshr_share_pages' && e.code === 'ENOSPC',
      );
      assert.throws(
        () => xgs.unshare(s.addr, 1),
        (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      );
      xgs.unshare(s.addr, 2);
      assert.equal(s.shared, false);
      assert.equal(w.gt.freeCount, free);
      const n = xgs.sharePageNotify(w.back.domid, true, 8, 5);
      w.ctx.mem.writeU8(n.addr + 8, 1);
      assert.equal(n.shared, true);
    }
    assert.deepEqual(ports, [5], 'disposing the handle unshared: the notification ran');
    assert.equal(w.gt.freeCount, free);
    assert.equal(dev.grefSize, 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('libxenevtchn', () => {
  const isXen = (op: string, code: string) => (e: unknown) =>
    e instanceof XenError && e.op === op && e.code === code;

  function pair() {
    const host = new Host({});
    const a = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const ea = EventChannels.open(host.context(a.domid));
    const eb = EventChannels.open(host.context(b.domid));
    return { host, a, b, ea, eb };
  }

  it('bind_unbound_port, bind_interdomain, notify; pending masks the port until unmask (evtchn.c evtchn_interrupt)', async () => {
    const { host, a, b, ea, eb } = pair();
    const xa = Xenevtchn.open(ea);
    using xb = Xenevtchn.open(eb);
    const pa = xa.bindUnboundPort(b.domid);
    assert.equal(ea.status(pa).status, EVTCHNSTAT_unbound);
    const pb = xb.bindInterdomain(a.domid, pa);
    assert.equal(ea.status(pa).status, EVTCHNSTAT_interdomain);
    assert.deepEqual(xa.boundPorts, [pa]);
    // evtchn_bind_interdomain marks the new local port pending (events sent to an unbound port were dropped).
    assert.equal(await xb.pending(), pb);
    xb.unmask(pb);

    xb.notify(pb);
    assert.equal(await xa.pending(), pa);
    assert.equal(ea.isMasked(pa), true, 'a fired port is masked until unmask');
    xb.notify(pb);
    xb.notify(pb);
    await assert.rejects(xa.pending({ block: false }), isXen('xenevtchn_pending', 'EAGAIN'));
    xa.unmask(pa); // EVTCHNOP_unmask re-raises the port that became pending while masked
    assert.equal(await xa.pending(), pa);
    await assert.rejects(xa.pending({ block: false }), isXen('xenevtchn_pending', 'EAGAIN'));
    xa.unmask(pa);

    // A sleeping pending() is woken by the peer's notify.
    const waiting = xa.pending();
    xb.notify(pb);
    assert.equal(await waiting, pa);
    xa.unmask(pa);

    xa.close();
    assert.equal(ea.status(pa).status, EVTCHNSTAT_closed, 'closing the handle unbound its ports');
    assert.equal(eb.status(pb).status, EVTCHNSTAT_unbound, "the peer's port is offered again");
    assert.throws(() => xa.notify(pa), isXen('xenevtchn_notify', 'EBADF'));
    assert.equal(host.waiters, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it("failures carry Xen's errno: evtchn_bind_interdomain EINVAL, evtchn_bind_virq EEXIST, evtchn_send EINVAL on a VIRQ; the device's EINVAL and ENOTCONN", () => {
    const { host, a, b, ea, eb } = pair();
    using xa = Xenevtchn.open(ea);
    using xb = Xenevtchn.open(eb);
    assert.throws(() => xb.bindInterdomain(a.domid, 999), isXen('xenevtchn_bind_interdomain', 'EINVAL'));
    const v = xa.bindVirq(VIRQ_TIMER);
    const st = ea.status(v);
    assert.equal(st.status, EVTCHNSTAT_virq);
    assert.equal(st.irq, VIRQ_TIMER);
    assert.throws(
      () => xa.bindVirq(VIRQ_TIMER),
      (e: unknown) => isXen('xenevtchn_bind_virq', 'EEXIST')(e) && (e as XenError).errno === 17,
    );
    assert.throws(() => xa.notify(v), isXen('xenevtchn_notify', 'EINVAL'));
    assert.throws(() => xa.notify(1 << 20), isXen('xenevtchn_notify', 'EINVAL'));
    const pa = xa.bindUnboundPort(b.domid);
    assert.throws(() => xb.notify(pa), isXen('xenevtchn_notify', 'ENOTCONN'), 'not bound by this handle');
    assert.throws(() => xb.unbind(pa), isXen('xenevtchn_unbind', 'ENOTCONN'));
    xb.unmask(pa); // the device's write() ignores ports that are not the handle's
    xa.unbind(pa);
    assert.equal(ea.status(pa).status, EVTCHNSTAT_closed);
    assert.throws(() => xa.unbind(pa), isXen('xenevtchn_unbind', 'ENOTCONN'));
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('pending() and the port iterator take an AbortSignal: reject with its reason (AbortError), leave no waiter', async () => {
    const { host, a, b, ea, eb } = pair();
    using xa = Xenevtchn.open(ea);
    using xb = Xenevtchn.open(eb);
    const pa = xa.bindUnboundPort(b.domid);
    const pb = xb.bindInterdomain(a.domid, pa);
    xb.unmask(await xb.pending());

    const ac = new AbortController();
    const p = xa.pending({ signal: ac.signal });
    assert.equal(host.waiters, 1);
    ac.abort();
    await assert.rejects(p, (e: unknown) => e instanceof Error && e.name === 'AbortError');
    assert.equal(host.waiters, 0, 'the aborted wait left nothing behind');
    await assert.rejects(
      xa.pending({ signal: AbortSignal.abort(new Error('mine')) }),
      (e: unknown) => e instanceof Error && e.message === 'mine',
      "the signal's own reason",
    );

    // The iterator unmasks each port when the loop asks for the next one.
    const seen: number[] = [];
    const stop = new AbortController();
    xb.notify(pb);
    await assert.rejects(
      (async () => {
        for await (const port of xa.ports({ signal: stop.signal })) {
          seen.push(port);
          assert.equal(ea.isMasked(port), true);
          if (seen.length === 3) stop.abort();
          else xb.notify(pb);
        }
      })(),
      (e: unknown) => e instanceof Error && e.name === 'AbortError',
    );
    assert.deepEqual(seen, [pa, pa, pa]);
    assert.equal(host.waiters, 0);

    // Closing the handle ends a sleeping pending() with EBADF.
    const q = xa.pending();
    xa.close();
    await assert.rejects(q, isXen('xenevtchn_pending', 'EBADF'));
    assert.equal(host.waiters, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
