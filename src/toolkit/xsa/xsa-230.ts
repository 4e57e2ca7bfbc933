// XSA-230 (2017): a copy's unpin cleared GTF_reading/writing under a live device mapping.

import { DOMID_SELF } from '../../abi/domid.ts';
import {
  GNTCOPY_dest_gref,
  GNTMAP_device_map,
  GTF_permit_access,
  GTF_reading,
  GTF_writing,
} from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'GTF_writing/GTF_reading cleared too early';

export const xsa230: XsaEntry = {
  id: 230,
  year: 2017,
  title,
  op: 'GNTTABOP_copy',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(230, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
    const m = b.map(a, 10, GNTMAP_device_map, 0);
    lab.note("B maps A's ref 10 with device_map, writable: devw = 1");
    const both = GTF_reading | GTF_writing;
    b.dom.memory.writeU32(0x4000, 0xc0ffee);
    const c = b.copy(
      [
        {
          source_u: b.frameOf(0x4000),
          source_domid: DOMID_SELF,
          dest_u: 10,
          dest_domid: a.domid,
          len: 4,
          flags: GNTCOPY_dest_gref,
        },
      ],
      "B's page -> (A, ref 10), 4 bytes",
    );
    lab.expect(c.statuses[0] === GNTST_okay, 'the copy into (A, 10) is okay');
    lab.expect(a.dom.memory.readU32(0x3000) === 0xc0ffee, "and wrote A's page");
    lab.expect(a.statusBits(10) === both, 'after the copy A still sees GTF_reading|GTF_writing');
    lab.expect(b.unmap(m.handle, 0, m.devBusAddr) === GNTST_okay, 'B unmaps the device mapping');
    lab.expect(a.statusBits(10) === 0 && a.pin(10) === 0, 'only then do both bits clear');
    return lab.finish([
      'after the copy A still sees GTF_reading|GTF_writing',
      'both bits clear only after B unmaps the device mapping',
      'GTF_writing clears only when hstw and devw are 0; GTF_reading only when all four counters are 0',
    ]);
  },
};
