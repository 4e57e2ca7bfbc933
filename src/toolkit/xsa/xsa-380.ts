// XSA-380 (2021): grant-table loops that walked the whole maptrack table.
import { GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access, GTF_readonly } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab, MAP_VA } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'grant-table loops that ran too long';
const REFS = 8;
const MAPS = 800;

export const xsa380: XsaEntry = {
  id: 380,
  year: 2021,
  title,
  op: 'gnttab_release_mappings (domain teardown)',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(380, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', maxMaptrackFrames: 8, memoryKiB: 4096 });
    lab.note(`B fills its maptrack with ${MAPS} mappings of A's grants, then is destroyed`);
    lab.note(
      'gnttab has no IOMMU radix tree, its teardown runs in one step, and no time is measured: the run checks the end state',
    );
    const f = lab.host.hypervisor.frames;
    const mfns: number[] = [];
    for (let r = 0; r < REFS; r++) {
      mfns.push(a.frameOf(0x3000 + r * 4096));
      a.grant(10 + r, b, mfns[r]!, GTF_permit_access | GTF_readonly);
    }
    const counts = mfns.map((m) => f.count[m]);
    let ok = 0;
    const n = lab.steps.length;
    for (let i = 0; i < MAPS; i++)
      if (
        b.map(a, 10 + (i % REFS), GNTMAP_host_map | GNTMAP_readonly, MAP_VA + i * 4096).status === GNTST_okay
      )
        ok++;
    lab.steps.length = n;
    lab.step('B', 'map_grant_ref', `x${MAPS} (readonly, ${REFS} refs of A)`, `${ok} okay`);
    lab.expect(ok === MAPS && b.dom.xen.gt.maptrack.liveCount() === MAPS, `${MAPS} live handles`);
    lab.host.destroyDomain(b.domid);
    lab.step('host', 'destroy', 'B, with every mapping live', 'done');
    lab.expect(
      mfns.every((_, r) => a.pin(10 + r) === 0),
      "every pin on A's entries is released",
    );
    lab.expect(
      mfns.every((_, r) => a.statusBits(10 + r) === 0),
      'every status bit is cleared',
    );
    lab.expect(
      mfns.every((m, i) => f.count[m] === counts[i]),
      "A's pages are back to their own references",
    );
    lab.expect(lab.host.domain(b.domid) === undefined, 'B is gone');
    return lab.finish([
      "teardown releases every pin on the granters' entries and clears every status bit",
      '(map and unmap cost not growing with maptrack size, and teardown in restartable steps, are not modelled)',
    ]);
  },
};
