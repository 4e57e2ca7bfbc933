// XSA-26 (2012): status pages freed on v2 -> v1 without unlinking them; grow error paths.
import { GNTST_general_error } from '../../abi/status.ts';
import { PGC_xen_heap } from '../../xen/frame-table.ts';
import { Lab, type LabDomain } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'status pages not properly released on a v2 -> v1 switch';
const ROUNDS = 8;

/** Xen-heap pages shared with `d`, its shared-info page left out. */
function xenHeapPages(lab: Lab, d: LabDomain): number {
  const f = lab.host.hypervisor.frames;
  let n = 0;
  for (let mfn = 0; mfn < f.nrFrames; mfn++)
    if (f.owner[mfn] === d.domid && (f.flags[mfn]! & PGC_xen_heap) !== 0 && mfn !== d.dom.xen.sharedInfoMfn)
      n++;
  return n;
}

export const xsa26: XsaEntry = {
  id: 26,
  year: 2012,
  title,
  op: 'GNTTABOP_set_version',
  side: 'hypervisor',
  run: async () => {
    // 1 MiB of machine memory, most of it A's RAM: growing to the maximum must fail.
    const lab = new Lab(26, title, { memoryMiB: 1 });
    const a = lab.domain('A', { kind: 'pv', memoryKiB: 800, version: 2, mapTable: false });
    a.setupTable(2);
    lab.note('A is v2 with 2 grant frames, so 1 status frame; no status mapping is outstanding');
    lab.note("the machine has 1 MiB, 800 KiB of it A's RAM");
    const gt = a.dom.xen.gt;
    let v1ok = true;
    let v2ok = true;
    for (let i = 0; i < ROUNDS; i++) {
      const r1 = a.setVersion(1);
      v1ok &&= r1 === 0 && gt.status.length === 0 && xenHeapPages(lab, a) === gt.nrGrantFrames;
      const r2 = a.setVersion(2);
      v2ok &&=
        r2 === 0 &&
        gt.status.length === Math.ceil(gt.nrGrantFrames / 8) &&
        xenHeapPages(lab, a) === gt.nrGrantFrames + gt.status.length;
    }
    lab.expect(v1ok, `${ROUNDS} switches to v1: rc 0, nr_grant_frames Xen-heap pages, 0 status pages`);
    lab.expect(v2ok, `${ROUNDS} switches to v2: rc 0, ceil(n/8) status pages`);
    const free = lab.host.hypervisor.frames.freeFrames;
    const frames = gt.nrGrantFrames;
    const g = a.setupTable(64);
    lab.expect(
      g.rc === 0 && g.status === GNTST_general_error,
      'growing to 64 frames without memory: general_error',
    );
    lab.expect(gt.nrGrantFrames === frames, 'the failed grow leaves nr_grant_frames unchanged');
    lab.expect(
      lab.host.hypervisor.frames.freeFrames === free && xenHeapPages(lab, a) === frames + gt.status.length,
      "no half-allocated page is left behind (free frames and A's Xen-heap pages as before)",
    );
    return lab.finish([
      'every switch returns 0',
      'after each v1 switch A owns exactly nr_grant_frames shared Xen-heap pages and no status page',
      'after each v2 switch it owns ceil(n/8) status pages',
      'a failed grow leaves nr_grant_frames unchanged and no half-allocated page',
    ]);
  },
};
