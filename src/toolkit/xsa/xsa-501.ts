// XSA-501 (2026): a version change racing operations that drop and retake the grant lock.
import { GTF_accept_transfer, GTF_transitive } from '../../abi/flags.ts';
import { gnttab_set_version } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_set_version, XEN_EAGAIN } from '../../abi/hypercall.ts';
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { copyFrom, G1, PAYLOAD, transitiveWorld } from './transitive.ts';
import type { XsaEntry } from './types.ts';

const title = 'version change racing with other operations';

export const xsa501: XsaEntry = {
  id: 501,
  year: 2026,
  title,
  op: 'GNTTABOP_set_version / copy / transfer',
  side: 'hypervisor',
  race: true,
  run: async () => {
    // Test 1: B switches to v1 while C's copy through B's transitive entry is in flight.
    const { lab, a, b, c } = transitiveWorld(501, title);
    lab.note('no worker-thread run yet: only the fixed interleavings');
    lab.note("test 1: B's other vCPU calls set_version(1) when Xen, with B's lock dropped, reads A's g1");
    b.grantTransitive(2, c, a, G1, GTF_transitive);
    const inner = lab.shaAddr(a, G1);
    let during: number | null = null;
    let inFlight = -1;
    const r = lab.interleave(
      (_op, addr) => {
        if (during !== null || addr !== inner) return;
        inFlight = b.dom.xen.gt.nrV2Ops;
        during = b.op(GNTTABOP_set_version, gnttab_set_version, [{ version: 1 }]).rc;
        lab.step(
          'B vCPU1',
          'set_version',
          '1, during the copy',
          during === 0 ? 'rc 0' : `-${during === -XEN_EAGAIN ? 'EAGAIN' : -during}`,
        );
      },
      () => c.copy([copyFrom(b, 2, c)], '(B, reserved ref 2, transitive) -> C'),
    );
    lab.expect(inFlight === 1 && during === -XEN_EAGAIN, 'set_version(1) sees one v2 op in flight: -EAGAIN');
    lab.expect(
      r.statuses[0] === GNTST_okay && c.dom.memory.readU8(0x8000) === PAYLOAD,
      "the copy completes with A's bytes",
    );
    lab.expect(
      b.dom.xen.gt.version === 2 && b.dom.xen.gt.nrV2Ops === 0,
      'B stays in v2; nothing left in flight',
    );
    // Test 2: the receiver of a transfer switches version between Xen's read of it and the commit.
    const lab2 = new Lab(501, title);
    const s = lab2.domain('S', { kind: 'pv' });
    const rcv = lab2.domain('R', { kind: 'pv', maxMemoryKiB: 1024, mapTable: false });
    rcv.mapOwnTable();
    rcv.grant(5, s, 0, GTF_accept_transfer, ' (reserved ref 5, accept_transfer)');
    const mfn = s.frameOf(0x5000);
    s.unmapOwnPage(0x5000);
    const sha = lab2.shaAddr(rcv, 5);
    let switched = -1;
    const st2 = lab2.interleave(
      (op, addr) => {
        if (switched !== -1 || op !== 'cmpxchg32' || addr !== sha) return;
        switched = rcv.setVersion(2);
      },
      () => s.transfer(mfn, rcv, 5),
    );
    lab.note(
      "test 2 (second host): R switches to v2 between Xen's read of its version and the commit of ref 5",
    );
    lab.steps.push(...lab2.steps.slice(-3));
    lab.expect(switched === 0 && st2 === GNTST_general_error, 'the transfer fails with general_error');
    lab.expect(lab2.host.hypervisor.frames.owner[mfn] !== rcv.domid, 'the page is not given to R');
    lab.expect(lab2.host.checkInvariants().length === 0, 'the invariants hold on that host');
    lab.races.push({
      mode: 'interleaving',
      window: 'a version switch inside a copy and inside a transfer',
      target: 2,
      hits: (during !== null ? 1 : 0) + (switched !== -1 ? 1 : 0),
      attempts: 2,
      violations: 0,
    });
    lab.note('test 3 (a late map failure on a reserved ref while switching) is not run');
    return lab.finish(
      [
        'set_version(1) during a v2 op in flight returns -EAGAIN; the table stays v2; no status word is written after status frames are freed',
        'a transfer whose receiver switched version fails with general_error, and Xen writes nothing into the entry after the switch',
      ],
      { statusBits: false },
    );
  },
};
