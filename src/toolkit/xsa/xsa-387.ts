// XSA-387 (2021): status pages reachable after being freed ("take two").
import { XENMAPIDX_grant_table_status } from '../../abi/hypercall.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';
import { GFN_X, GFN_Y, gfnsOf } from './xsa-379.ts';

const title = 'status pages reachable after being freed ("take two")';

export const xsa387: XsaEntry = {
  id: 387,
  year: 2021,
  title,
  op: 'XENMEM_add_to_physmap (P2M removal)',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(387, title);
    const a = lab.domain('A', { kind: 'hvm', version: 2 });
    const gt = a.dom.xen.gt;
    const status = gt.status.get(0);
    const grant0 = gt.shared.get(0);
    a.addToPhysmap(XENMAPIDX_grant_table_status, GFN_X, `status idx 0 at X = 0x${GFN_X.toString(16)}`);
    lab.note('A places its status frame at X, then its grant frame 0 over X');
    a.addToPhysmap(0, GFN_X, 'grant idx 0 at X (over the status frame)');
    lab.expect(
      gfnsOf(a, grant0).join() === `${GFN_X}` && gfnsOf(a, status).length === 0,
      'X holds grant frame 0 now, the status frame is nowhere',
    );
    a.addToPhysmap(XENMAPIDX_grant_table_status, GFN_Y, `status idx 0 at Y = 0x${GFN_Y.toString(16)}`);
    lab.expect(
      gfnsOf(a, grant0).join() === `${GFN_X}`,
      "removing the status frame's old place left X alone: X holds another MFN",
    );
    lab.expect(gfnsOf(a, status).join() === `${GFN_Y}`, 'the status frame is at Y only');
    lab.expect(
      a.setVersion(1) === 0 && gfnsOf(a, status).length === 0,
      'set_version(1): no GFN refers to the freed status page',
    );
    return lab.finish([
      'the same as XSA-379: the status page at no more than one GFN, none after set_version(1)',
      'removing "MFN m at GFN g" does nothing when g holds some other MFN',
    ]);
  },
};
