// XSA-18 (2012): swap_grant_ref used the guest's refs without a bounds check.
import { GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_gntref, GNTST_eagain, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'swap_grant_ref did not check its references';

export const xsa18: XsaEntry = {
  id: 18,
  year: 2012,
  title,
  op: 'GNTTABOP_swap_grant_ref',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(18, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    lab.note('A has a v1 table of 1 frame (512 refs); ref 9 grants a page to B, ref 10 is empty');
    a.grant(9, b, a.frameOf(0x3000), GTF_permit_access);
    const e9 = () => a.dom.memory.read(a.entryAddr(9), 8).join(',');
    const before = e9();
    // gnttab_swap_grant_ref: ref_a, then ref_b, checked against nr_grant_entries.
    const r1 = a.swap(5000, 9);
    lab.expect(r1.rc === 0 && r1.status === GNTST_bad_gntref, 'swap(5000, 9): rc 0, bad_gntref');
    const r2 = a.swap(9, 0xffffffff);
    lab.expect(r2.rc === 0 && r2.status === GNTST_bad_gntref, 'swap(9, 0xFFFFFFFF): rc 0, bad_gntref');
    lab.expect(e9() === before, 'entry 9 unchanged by the refused swaps');
    const r3 = a.swap(9, 9);
    lab.expect(r3.status === GNTST_okay && e9() === before, 'swap(9, 9): okay, nothing changes');
    const m = b.map(a, 9);
    const pinned = e9();
    const r4 = a.swap(9, 10);
    lab.expect(
      r4.status === GNTST_eagain && e9() === pinned,
      'swap of a pinned entry: eagain, nothing changes',
    );
    b.unmap(m.handle);
    return lab.finish([
      'both out-of-range swaps return bad_gntref, the hypercall returns 0, neither entry changes',
      'swap with ref_a == ref_b is okay and changes nothing',
      'swap where an entry is pinned returns eagain',
    ]);
  },
};
