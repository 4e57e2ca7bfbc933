// XSA-365 (2021): blkback dropped map errors and left half-updated state.
import { GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { mapForeignRefs } from '../../guest/gnttab/backend.ts';
import { PageAllocator } from '../../guest/pages.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'blkback grant-map error handling';
const SEGMENTS = 11;
const BAD = new Set([3, 7, 10]);

export const xsa365: XsaEntry = {
  id: 365,
  year: 2021,
  title,
  op: 'gnttab_map_refs (guest backend)',
  side: 'guest',
  run: async () => {
    const lab = new Lab(365, title);
    const b = lab.domain('B', { kind: 'pv', mapTable: false });
    const a = lab.domain('A', { kind: 'pv' });
    lab.note(
      `a block request of ${SEGMENTS} segments from A (frontend); segments ${[...BAD].join(', ')} are not granted`,
    );
    lab.note("gnttab has no blkback: the guest library's batch map stands for its segment mapping");
    const refs: number[] = [];
    for (let i = 0; i < SEGMENTS; i++) {
      if (!BAD.has(i)) a.grant(10 + i, b, a.frameOf(0x3000 + i * 4096), GTF_permit_access);
      refs.push(10 + i);
    }
    const ctx = lab.host.context(b.domid);
    const r = await mapForeignRefs(ctx, new PageAllocator(ctx), a.domid, refs);
    lab.step(
      'B',
      'map_grant_ref',
      `${SEGMENTS} segments`,
      `${r.status.filter((s) => s === GNTST_okay).length} okay, then undone`,
    );
    lab.expect(r.mapping === null && r.rc !== 0, 'the request fails as a whole');
    lab.expect(
      r.status.every((s, i) => (s === GNTST_okay) === !BAD.has(i)),
      'exactly the granted segments mapped',
    );
    lab.expect(
      !r.leaked && b.dom.xen.gt.maptrack.liveCount() === 0,
      "every segment that mapped is unmapped: B's maptrack is empty",
    );
    lab.host.destroyDomain(a.domid);
    lab.step('host', 'destroy', 'A, the frontend', 'done');
    lab.expect(lab.host.hypervisor.domains.get(a.domid) === undefined, 'A disappears completely: no zombie');
    return lab.finish([
      'the request fails as a whole; every segment that mapped successfully is unmapped',
      "no mapping leaks: the backend's maptrack is empty",
      'after the frontend is destroyed it disappears completely instead of staying a zombie',
    ]);
  },
};
