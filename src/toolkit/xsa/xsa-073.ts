// XSA-73 (2013): transfer took the receiver's page-allocation lock and the
// grant-table lock in the opposite order to other paths.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GTF_accept_transfer, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { held, nestedPairs, withLockChecker } from './lock-order.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'lock-order inversion in transfer';

/** Whether a page_alloc_lock is held outside a grant-table lock in `locks` (outermost first). */
function inverted(locks: string[]): boolean {
  const pa = locks.findIndex((l) => l.startsWith('page_alloc_lock'));
  return (
    pa >= 0 && locks.slice(pa + 1).some((l) => l.startsWith('grant_table') || l.startsWith('active_entry'))
  );
}

export const xsa73: XsaEntry = {
  id: 73,
  year: 2013,
  title,
  op: 'GNTTABOP_transfer',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-73'),
  run: (o: XsaRunOptions = {}) =>
    withLockChecker(async () => {
      const lab = new Lab(73, title);
      const a = lab.domain('A', { kind: 'pv' });
      const b = lab.domain('B', { kind: 'pv', maxMemoryKiB: 1024, vcpus: 2 });
      lab.note("Xen's lock-order checker is on: a grant lock under page_alloc_lock is refused");
      lab.note(
        "fixed interleaving: at each of the transfer's steps on B's entry, B's other vCPU copies from A's grant",
      );
      b.grant(12, a, 0, GTF_accept_transfer, ' (accept_transfer for A)');
      a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
      const mfn = a.frameOf(0x5000);
      a.unmapOwnPage(0x5000);
      const sha = lab.shaAddr(b, 12);
      let seenBad = 0;
      let locksSeen = 0;
      let copies = 0;
      let copyOk = 0;
      let inside = false;
      const st = lab.interleave(
        (_op, addr) => {
          const h = held();
          locksSeen += h.length;
          if (inverted(h)) seenBad++;
          if (inside || addr !== sha) return;
          inside = true;
          b.dom.xen.currentVcpu = 1;
          const c = b.copy(
            [
              {
                source_u: 10,
                source_domid: a.domid,
                dest_u: b.frameOf(0x6000),
                dest_domid: DOMID_SELF,
                len: 8,
                flags: GNTCOPY_source_gref,
              },
            ],
            'vCPU1: (A, ref 10) -> B, during the transfer',
          );
          b.dom.xen.currentVcpu = 0;
          copies++;
          if (c.statuses[0] === GNTST_okay) copyOk++;
          inside = false;
        },
        () => a.transfer(mfn, b, 12),
      );
      lab.expect(
        st === GNTST_okay && lab.host.hypervisor.frames.owner[mfn] === b.domid,
        "the transfer completes: the page is B's",
      );
      lab.expect(copies > 0 && copyOk === copies, `B's ${copies} copies during it completed`);
      lab.expect(seenBad === 0, 'at no step was page_alloc_lock held outside a grant lock');
      lab.expect(
        !nestedPairs().some(
          (p) => p.startsWith('page_alloc_lock>grant') || p.startsWith('page_alloc_lock>active'),
        ),
        'the checker never saw a grant lock taken under page_alloc_lock',
      );
      lab.expect(lab.host.hypervisor.internalErrors.length === 0, 'no lock-order error inside Xen');
      if (locksSeen === 0 && nestedPairs().length === 0)
        lab.note(
          "the lock checks hold vacuously today: the hypervisor's ops take none of Xen's locks yet (xen/locks.ts; they come with the SMP hypervisor, issue 8)",
        );
      lab.races.push({
        mode: 'interleaving',
        window: "B's copy at the transfer's steps on B's entry",
        target: copies,
        hits: copies,
        attempts: 1,
        violations: seenBad,
      });
      if (o.threads !== false) lab.races.push(await threadRace('xsa-73', lab, o));
      return lab.finish([
        'no deadlock',
        'the page-allocation lock is never held while a grant-table lock is taken',
      ]);
    }),
};
