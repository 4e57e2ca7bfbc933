// XSA-24 (2012): the 32-bit compat get_status_frames looped forever on one element.

import { XEN_EINVAL } from '../../abi/hypercall.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab, UNWRITTEN } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'infinite loop in the 32-bit compat handler for a v2 op';

export const xsa24: XsaEntry = {
  id: 24,
  year: 2012,
  title,
  op: 'GNTTABOP_get_status_frames',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(24, title);
    const a = lab.domain('A', { kind: 'pv', version: 2 });
    lab.note('gnttab models the x86_64 ABI only: this runs the native path that the compat handler wraps');
    const one = a.getStatusFrames(1, 1);
    const frame = a.dom.memory.readU64(one.list);
    lab.expect(one.rc === 0 && one.status === GNTST_okay, 'count 1: completes once with status okay');
    lab.expect(
      frame !== UNWRITTEN && Number(frame) === a.dom.xen.gt.status.get(0),
      'count 1: the status frame is written to the list',
    );
    const two = a.getStatusFrames(1, 2);
    lab.expect(two.rc === -XEN_EINVAL, 'count 2: -EINVAL (gnttab_get_status_frames takes one element)');
    lab.expect(a.dom.memory.readU64(two.list) === UNWRITTEN, 'count 2: nothing written');
    return lab.finish([
      'count 1 completes once, the frames written and status okay',
      'count != 1 returns -EINVAL; no element is run forever',
    ]);
  },
};
