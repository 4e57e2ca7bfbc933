// XSA-361 (2021): Linux backends mishandled a partly failed batch of grant maps.
import { GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_gntref, GNTST_general_error } from '../../abi/status.ts';
import { mapForeignRefs } from '../../guest/gnttab/backend.ts';
import { PageAllocator } from '../../guest/pages.ts';
import { Lab, st } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'Linux grant-map error handling';

export const xsa361: XsaEntry = {
  id: 361,
  year: 2021,
  title,
  op: 'gnttab_map_refs (guest backend)',
  side: 'guest',
  run: async () => {
    const lab = new Lab(361, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', mapTable: false });
    const c = lab.domain('C', { kind: 'pv', mapTable: false });
    lab.note("B is a backend using the guest library's mapForeignRefs (xenbus_map_ring_valloc, gntdev)");
    const refs: number[] = [];
    for (let i = 0; i < 8; i++) {
      const ref = 10 + i;
      // Element 2: granted to C, not B; element 5: beyond the table.
      if (i === 2) a.grant(ref, c, a.frameOf(0x3000 + i * 4096), GTF_permit_access);
      else if (i !== 5) a.grant(ref, b, a.frameOf(0x3000 + i * 4096), GTF_permit_access);
      refs.push(i === 5 ? 5000 : ref);
    }
    const ctx = lab.host.context(b.domid);
    const live0 = b.dom.xen.gt.maptrack.liveCount();
    const r = await mapForeignRefs(ctx, new PageAllocator(ctx), a.domid, refs);
    lab.step('B', 'map_grant_ref', `batch of 8: A refs ${refs.join(', ')}`, r.status.map(st).join(','));
    const want = [0, 0, GNTST_general_error, 0, 0, GNTST_bad_gntref, 0, 0];
    lab.expect(
      r.status.join() === want.join(),
      'statuses {0, 0, err, 0, 0, err, 0, 0}: each element on its own',
    );
    lab.expect(
      r.mapping === null && !r.leaked,
      'the batch fails as a whole; exactly the six good handles were unmapped',
    );
    lab.expect(
      b.dom.xen.gt.maptrack.liveCount() === live0,
      'maptrack in use after recovery equals before the batch',
    );
    lab.expect(
      refs.every((ref) => ref >= 512 || a.pin(ref) === 0),
      "no pin left on A's entries",
    );
    return lab.finish([
      'the backend sees statuses {0, 0, err, 0, 0, err, 0, 0}',
      'it treats exactly elements 2 and 5 as unmapped and unmaps exactly the six good handles',
      'the maptrack in-use count after recovery equals the count before the batch',
    ]);
  },
};
