// XSA-134 (2015): swap_grant_ref on a table that was not set up yet.
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'swap used before the table was set up';

export const xsa134: XsaEntry = {
  id: 134,
  year: 2015,
  title,
  op: 'GNTTABOP_swap_grant_ref',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(134, title);
    const a = lab.domain('A', { kind: 'pv', mapTable: false });
    lab.note('A is freshly created and has made no grant hypercall');
    const gt = a.dom.xen.gt;
    lab.expect(
      gt.version === 1 && gt.nrGrantFrames === 1,
      'the table starts at v1 with one frame (1237659523)',
    );
    const r = a.swap(8, 9);
    lab.expect(r.rc === 0 && r.status === GNTST_okay, 'swap(8, 9): okay (two empty v1 entries)');
    return lab.finish([
      'every table starts at v1 with one frame: there is no un-set-up state',
      'swap(8, 9) on a fresh domain is okay',
    ]);
  },
};
