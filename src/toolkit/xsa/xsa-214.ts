// XSA-214 (2017): a transferred page arrived with stale type information.
import { GTF_accept_transfer, GTF_transfer_completed } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'a transferred page kept stale type information';

export const xsa214: XsaEntry = {
  id: 214,
  year: 2017,
  title,
  op: 'GNTTABOP_transfer',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(214, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', maxMemoryKiB: 1024 });
    const f = lab.host.hypervisor.frames;
    const page = 0x5000;
    const mfn = a.frameOf(page);
    lab.note(
      `A's page at 0x${page.toString(16)} (MFN 0x${mfn.toString(16)}) was mapped writable: it held a type reference`,
    );
    lab.note('gnttab models writable page types only (no descriptor or page-table types)');
    const typedBefore = f.typeCount[mfn]!;
    a.unmapOwnPage(page);
    b.grant(12, a, 0, GTF_accept_transfer, ' (accept_transfer)');
    const s = a.transfer(mfn, b, 12);
    lab.expect(typedBefore > 0, 'the page had a type reference while A mapped it writable');
    lab.expect(s === GNTST_okay && f.owner[mfn] === b.domid, "transfer okay: the page is B's");
    lab.expect(f.typeCount[mfn] === 0, 'it arrives with no type reference (type none, typecount 0)');
    lab.expect(f.count[mfn] === 1, 'and only its allocation reference');
    lab.expect(
      (b.dom.memory.readU16(b.entryAddr(12)) & GTF_transfer_completed) !== 0,
      "B's entry says transfer_completed",
    );
    return lab.finish([
      'the page reaches B with no type and no validation flag',
      'after transfer: type = none and typecount = 0',
    ]);
  },
};
