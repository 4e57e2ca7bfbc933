// XSA-287 (2019): steal_page left pages in inconsistent states for a
// concurrent reference taker.
import { GNTMAP_host_map, GTF_accept_transfer, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_page, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'steal_page broke the page-state rules';

export const xsa287: XsaEntry = {
  id: 287,
  year: 2019,
  title,
  op: 'GNTTABOP_transfer (steal_page)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-287'),
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(287, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', maxMemoryKiB: 1024 });
    const c = lab.domain('C', { kind: 'pv' });
    const f = lab.host.hypervisor.frames;
    const page = 0x5000;
    const mfn = a.frameOf(page);
    a.unmapOwnPage(page);
    a.grant(10, c, mfn, GTF_permit_access);
    b.grant(12, a, 0, GTF_accept_transfer, ' (accept_transfer)');
    b.grant(13, a, 0, GTF_accept_transfer, ' (accept_transfer)');
    lab.note(
      "fixed interleaving at hypercall steps: C takes a reference through A's grant, then A transfers; and the other way round",
    );
    // C's reference first: the transfer must fail and leave every count intact.
    const m = c.map(a, 10);
    const counts = [f.count[mfn], f.typeCount[mfn]].join();
    const s1 = a.transfer(mfn, b, 12);
    lab.expect(
      m.status === GNTST_okay && s1 === GNTST_bad_page,
      'C holds a mapping: the transfer is bad_page',
    );
    lab.expect(
      f.owner[mfn] === a.domid && [f.count[mfn], f.typeCount[mfn]].join() === counts,
      "the page stays A's with every count intact",
    );
    c.unmap(m.handle);
    // The transfer first: C's later reference attempt fails.
    const s2 = a.transfer(mfn, b, 13);
    lab.expect(
      s2 === GNTST_okay && f.owner[mfn] === b.domid && f.count[mfn] === 1,
      'now the transfer goes through: B owns it with one reference',
    );
    const m2 = c.map(a, 10, GNTMAP_host_map);
    lab.expect(m2.status !== GNTST_okay, "C's map through A's grant now fails: A no longer owns the frame");
    lab.races.push({
      mode: 'interleaving',
      window: "C's reference and A's transfer of the same page, in both orders",
      target: 2,
      hits: 2,
      attempts: 2,
      violations: 0,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-287', lab, o));
    return lab.finish([
      "either the transfer fails (bad_page, the page stays A's with every count intact) or the other reference attempt fails; never both succeed",
      'refcount > 0 implies an owner, at every step',
    ]);
  },
};
