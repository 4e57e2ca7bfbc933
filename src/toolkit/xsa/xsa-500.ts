// XSA-500 (2026): a write copy onto a read-only pinned grant re-looked up the frame.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_dest_gref, GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'type confusion in grant copy';
const F1_VA = 0x3000;
const F2_VA = 0x4000;

export const xsa500: XsaEntry = {
  id: 500,
  year: 2026,
  title,
  op: 'GNTTABOP_copy (acquire_grant_for_copy)',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(500, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    const f = lab.host.hypervisor.frames;
    const f1 = a.frameOf(F1_VA);
    const f2 = a.frameOf(F2_VA);
    a.dom.memory.fill(F1_VA, 4096, 0x11);
    a.dom.memory.fill(F2_VA, 4096, 0x22);
    a.grant(10, b, f1, GTF_permit_access);
    const m = b.map(a, 10, GNTMAP_host_map | GNTMAP_readonly);
    lab.note('A grants ref 10 (frame F1) writable to B; B maps it read-only, so act.mfn = F1');
    lab.note("gnttab has no page-table types: F2 is simply another page of A's");
    const types = [f.typeCount[f1], f.typeCount[f2]].join();
    a.writeFrame(10, f2);
    b.dom.memory.fill(0x6000, 64, 0x99);
    const c = b.copy(
      [
        {
          source_u: b.frameOf(0x6000),
          source_domid: DOMID_SELF,
          dest_u: 10,
          dest_domid: a.domid,
          len: 64,
          flags: GNTCOPY_dest_gref,
        },
      ],
      "B's page -> (A, ref 10), 64 bytes",
    );
    lab.expect(
      c.statuses[0] === GNTST_general_error,
      'the copy fails with general_error: the frame looked up again is not act.mfn',
    );
    lab.expect(
      a.dom.memory.read(F1_VA, 64).every((x) => x === 0x11),
      'F1 is not written',
    );
    lab.expect(
      a.dom.memory.read(F2_VA, 64).every((x) => x === 0x22),
      'F2 is not written',
    );
    lab.expect([f.typeCount[f1], f.typeCount[f2]].join() === types, 'no type reference is left behind');
    lab.expect(b.unmap(m.handle) === GNTST_okay, 'the read-only mapping unmaps');
    return lab.finish(
      [
        'the copy fails with general_error because the frame looked up again does not match the active entry',
        'neither F1 nor F2 is written, and no type reference is left behind',
      ],
      { statusBits: false },
    );
  },
};
