// XSA-501 (2026): a version change racing operations that drop and retake the grant lock.
import {
  GNTMAP_host_map,
  GTF_accept_transfer,
  GTF_permit_access,
  GTF_reading,
  GTF_transfer_completed,
  GTF_transitive,
  GTF_writing,
} from '../../abi/flags.ts';
import { gnttab_set_version } from '../../abi/gnttab-ops.ts';
import { GNTTABOP_set_version, XEN_EAGAIN, XEN_EBUSY } from '../../abi/hypercall.ts';
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import { copyFrom, G1, PAYLOAD, transitiveWorld } from './transitive.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'version change racing with other operations';
/** A host_addr no PV address space has (4 GiB): the host mapping fails after the pin. */
const BAD_HOST_ADDR = 0x1_0000_0000;

/**
 * Test 3, three times on a host of its own: B maps A's ref (host_map at a bad
 * address) and, where Xen has dropped A's grant lock after the pin, A
 * switches version. Returns how many times the switch ran in that window.
 */
function lateMapFailure(lab: Lab): number {
  const l3 = new Lab(501, title);
  const a = l3.domain('A', { kind: 'pv' });
  const b = l3.domain('B', { kind: 'pv' });
  const hv = l3.host.hypervisor;
  const w = hv.machine.words;
  const bits = (ref: number) => w.load16(a.dom.xen.gt.statusAddr(ref)) & (GTF_reading | GTF_writing);
  let hits = 0;
  const run = (ref: number, to: 1 | 2, what: string) => {
    let rc: number | null = null;
    let freed: number[] = [];
    let lateWrites = 0;
    const status = a.dom.xen.gt.status.toArray();
    hv.grantLockDropped = (_op, rd, r) => {
      if (rc !== null || rd !== a.dom.xen || r !== ref) return;
      rc = a.setVersion(to);
      l3.steps.at(-1)!.who = 'A vCPU1';
      l3.steps.at(-1)!.args += `, during B's map of ref ${ref}`;
      if (rc === 0 && to === 1) freed = status;
    };
    const m = l3.interleave(
      (_op, addr) => {
        if (freed.some((mfn) => Math.floor(addr / 4096) === mfn)) lateWrites++;
      },
      () => b.map(a, ref, GNTMAP_host_map, BAD_HOST_ADDR),
    );
    hv.grantLockDropped = null;
    if (rc !== null) hits++;
    lab.expect(m.status === GNTST_general_error, `${what}: the map fails late with general_error`);
    return { rc, lateWrites };
  };
  l3.note("test 3 (third host): B maps A's ref at host_addr 4 GiB, which fails after the pin");
  // v1 -> v2 with reserved ref 3 pinned: allowed; the bits are cleared in the v2 status word.
  a.grant(3, b, a.frameOf(0x3000), GTF_permit_access, ' (reserved ref 3)');
  const r1 = run(3, 2, 'ref 3, A switched to v2');
  lab.expect(r1.rc === 0 && a.dom.xen.gt.version === 2, 'ref 3: set_version(2) during the map succeeds');
  lab.expect(
    a.pin(3) === 0 && bits(3) === 0,
    'ref 3: pin 0 and the bits clear in the v2 status word (the current location)',
  );
  const e1 = a.dom.xen.gt.shaAddr(1);
  lab.expect(
    w.load32(e1) === 0 && w.load32(e1 + 8) === 0,
    "the old v1 location of ref 3's flags (inside v2 entry 1) is not written",
  );
  // v2 -> v1: the status frame is freed; the bits are cleared in the v1 flags, nothing is written to it.
  const r2 = run(3, 1, 'ref 3, A switched to v1');
  lab.expect(r2.rc === 0 && a.dom.xen.gt.version === 1, 'ref 3: set_version(1) during the map succeeds');
  lab.expect(a.pin(3) === 0 && bits(3) === 0, 'ref 3: pin 0 and the bits clear in the v1 flags');
  lab.expect(r2.lateWrites === 0, 'no shared-word step touches the freed status frame after the switch');
  // A ref from 8 up: the switch is refused while it is pinned.
  a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
  const r3 = run(10, 2, 'ref 10');
  lab.expect(
    r3.rc === -XEN_EBUSY && a.dom.xen.gt.version === 1,
    'ref 10: set_version(2) during the map is refused (-EBUSY); A stays in v1',
  );
  lab.expect(a.pin(10) === 0 && bits(10) === 0, 'ref 10: pin 0 and the bits clear');
  lab.expect(l3.host.checkInvariants().length === 0, 'the invariants hold on that host');
  lab.steps.push(...l3.steps);
  return hits;
}

export const xsa501: XsaEntry = {
  id: 501,
  year: 2026,
  title,
  op: 'GNTTABOP_set_version / copy / transfer',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-501'),
  run: async (o: XsaRunOptions = {}) => {
    // Test 1: B switches to v1 while C's copy through B's transitive entry is in flight.
    const { lab, a, b, c } = transitiveWorld(501, title);
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
    // Test 2: the receiver of a transfer switches version between gnttab_prepare_for_transfer
    // (which read the version under R's lock) and the final entry update (which takes it again).
    const lab2 = new Lab(501, title);
    const s = lab2.domain('S', { kind: 'pv' });
    const rcv = lab2.domain('R', { kind: 'pv', maxMemoryKiB: 1024, mapTable: false });
    rcv.mapOwnTable();
    rcv.grant(5, s, 0, GTF_accept_transfer, ' (reserved ref 5, accept_transfer)');
    const mfn = s.frameOf(0x5000);
    s.unmapOwnPage(0x5000);
    const hv2 = lab2.host.hypervisor;
    let switched = -1;
    hv2.grantLockDropped = (op, rd, r) => {
      if (switched !== -1 || op !== 'gnttab_transfer' || rd !== rcv.dom.xen || r !== 5) return;
      switched = rcv.setVersion(2);
      lab2.steps.at(-1)!.who = 'R vCPU1';
      lab2.steps.at(-1)!.args += ", during S's transfer into ref 5";
    };
    let st2: number;
    try {
      st2 = s.transfer(mfn, rcv, 5);
    } finally {
      hv2.grantLockDropped = null;
    }
    lab.note(
      "test 2 (second host): R switches to v2 after Xen committed its ref 5 (gnttab_prepare_for_transfer) and gave it the page (assign_pages), before the entry's final update",
    );
    lab.steps.push(...lab2.steps.slice(-3));
    lab.expect(
      switched === 0 && st2 === GNTST_general_error,
      'the transfer fails with general_error (-EILSEQ)',
    );
    const w2 = hv2.machine.words;
    const v2sha = rcv.dom.xen.gt.shaAddr(5);
    lab.expect(
      (w2.load16(v2sha) & GTF_transfer_completed) === 0 && w2.load32(v2sha + 8) === 0,
      "nothing is written into R's switched table: ref 5 (kept as a reserved entry) is committed, never completed, and names no frame",
    );
    lab.expect(
      hv2.frames.owner[mfn] === rcv.dom.xen.domid && rcv.dom.xen.owned.has(mfn),
      "the page is R's, as assign_pages left it (Xen does not take it back)",
    );
    lab.expect(lab2.host.checkInvariants().length === 0, 'the invariants hold on that host');
    // Test 3: A switches version while B's map of A's reserved ref 3 is between its pin and its
    // failure (a bad host_addr), where Xen runs without A's grant lock.
    const t3 = lateMapFailure(lab);
    lab.races.push({
      mode: 'interleaving',
      window: 'a version switch inside a copy, inside a transfer, and inside a map that fails late',
      target: 5,
      hits: (during !== null ? 1 : 0) + (switched !== -1 ? 1 : 0) + t3,
      attempts: 5,
      violations: 0,
    });
    if (o.threads !== false) {
      lab.note(
        "threads, test 1: B copies from A's sub-page ref 20 in batches while A switches to v1 and back",
      );
      lab.races.push(await threadRace('xsa-501', lab, o));
      lab.note("threads, test 3: B maps A's reserved ref 3 at a bad host_addr while A switches v1 <-> v2");
      lab.races.push(await threadRace('xsa-501-map', lab, o));
      lab.note(
        "test 2 (a switch between a transfer's commit and its completion) runs only as the fixed interleaving",
      );
    }
    return lab.finish(
      [
        'set_version(1) during a v2 op in flight returns -EAGAIN; the table stays v2; no status word is written after status frames are freed',
        'a transfer whose receiver switched version fails with general_error, and Xen writes nothing into the entry after the switch',
        "a map that fails late clears the status bits in the current version's location for refs 0-7 (nothing is written to freed status frames); for a ref from 8 up the switch is refused while it is pinned",
      ],
      { statusBits: false },
    );
  },
};
