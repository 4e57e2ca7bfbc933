// XSA-217 (2017): transfer took pages from HVM guests, defeating TLB flushing.
import { GTF_accept_transfer } from '../../abi/flags.ts';
import { XEN_ENOSYS } from '../../abi/hypercall.ts';
import { GNTST_bad_page } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'taking pages from HVM guests (transfer) defeats TLB flushing';

export const xsa217: XsaEntry = {
  id: 217,
  year: 2017,
  title,
  op: 'GNTTABOP_transfer',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(217, title);
    const a = lab.domain('A', { kind: 'hvm' });
    const b = lab.domain('B', { kind: 'pv', maxMemoryKiB: 1024 });
    const p = lab.domain('P', { kind: 'pv' });
    const f = lab.host.hypervisor.frames;
    b.grant(12, a, 0, GTF_accept_transfer, ' (accept_transfer for A)');
    b.grant(13, p, 0, GTF_accept_transfer, ' (accept_transfer for P)');
    lab.note('Xen HEAD refuses transfer from a translated caller in hvm_grant_table_op, before steal_page');
    const gfn = 5;
    const mfnA = a.dom.xen.p2m!.get(gfn)!.mfn;
    const s = a.transfer(gfn, b, 12);
    lab.expect(s === -XEN_ENOSYS, 'HVM A: transfer is -ENOSYS');
    lab.expect(f.owner[mfnA] === a.domid, "the page stays A's");
    // The related invariant: a page mapped elsewhere (here: P's own page table) has extra references.
    const mfnP = p.frameOf(0x5000);
    const s2 = p.transfer(mfnP, b, 13);
    lab.expect(
      s2 === GNTST_bad_page && f.owner[mfnP] === p.domid,
      'a page still mapped elsewhere: bad_page, it stays put',
    );
    return lab.finish([
      "a transfer from HVM A is refused and the page stays A's",
      'transfer needs exactly the allocation reference plus the temporary one: a mapped page gives bad_page',
    ]);
  },
};
