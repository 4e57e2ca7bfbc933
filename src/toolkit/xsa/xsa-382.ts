// XSA-382 (2021): get_status_frames bounded by grant frames instead of status frames.
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab, UNWRITTEN } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'wrong unit in the get_status_frames bounds check';

export const xsa382: XsaEntry = {
  id: 382,
  year: 2021,
  title,
  op: 'GNTTABOP_get_status_frames',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(382, title);
    const a = lab.domain('A', { kind: 'pv', version: 2 });
    a.setupTable(8);
    lab.note('A is v2 with 8 grant frames, so 1 status frame');
    for (const nr of [2, 8]) {
      const r = a.getStatusFrames(nr);
      lab.expect(r.rc === 0 && r.status === GNTST_general_error, `nr_frames ${nr}: general_error`);
      lab.expect(a.dom.memory.readU64(r.list) === UNWRITTEN, `nr_frames ${nr}: nothing written to the array`);
    }
    const r = a.getStatusFrames(1);
    lab.expect(r.status === GNTST_okay, 'nr_frames 1: okay');
    lab.expect(
      a.dom.memory.readU64(r.list) !== UNWRITTEN && a.dom.memory.readU64(r.list + 8) === UNWRITTEN,
      'nr_frames 1: exactly one entry written',
    );
    return lab.finish([
      'nr_frames 2 and 8 give general_error and write nothing',
      'nr_frames 1 returns okay and writes exactly one entry',
    ]);
  },
};
