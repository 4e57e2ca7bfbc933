// XSA-448 (2024): a zero-length grant copy still acted on its descriptors.
import { GNTCOPY_dest_gref, GNTCOPY_source_gref, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'netback and zero-length fragments; Xen ignores zero-length copies';

export const xsa448: XsaEntry = {
  id: 448,
  year: 2024,
  title,
  op: 'GNTTABOP_copy',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(448, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
    lab.note(
      "gnttab has no netback: the hypervisor half runs (a4a790f432, 'fully ignore zero-size copy requests')",
    );
    const garbage = [
      {
        source_u: 0xffffffff,
        source_domid: 0x7ff0,
        source_offset: 0xffff,
        dest_u: 0xdeadbeef,
        dest_domid: 12345,
        dest_offset: 0xffff,
        len: 0,
        flags: 0xffff,
      },
      {
        source_u: 10,
        source_domid: a.domid,
        source_offset: 0xffff,
        dest_u: 0,
        dest_domid: 0x7ff5,
        dest_offset: 0x8000,
        len: 0,
        flags: GNTCOPY_source_gref | GNTCOPY_dest_gref,
      },
    ];
    const r = b.copy(garbage, '2 copies of len 0 with invalid domids, grefs, offsets and flags');
    lab.expect(r.rc === 0 && r.statuses.every((s) => s === GNTST_okay), 'every len 0 copy returns okay');
    lab.expect(a.pin(10) === 0 && a.statusBits(10) === 0, "A's ref 10 was not pinned: no GTF_reading left");
    lab.expect(a.dom.xen.gt.nrV2Ops === 0, 'nothing left in flight');
    return lab.finish([
      'GNTTABOP_copy with len 0 and garbage in source and destination returns okay',
      'it takes no pin, no page reference and no domain lock',
    ]);
  },
};
