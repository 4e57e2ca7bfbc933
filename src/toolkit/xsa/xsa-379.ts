// XSA-379 (2021): a v2 status page placed at more than one GFN.
import { XENMAPIDX_grant_table_status } from '../../abi/hypercall.ts';
import { Lab, type LabDomain } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'v2 status pages mapped at more than one GFN';
export const GFN_X = 0xd0010;
export const GFN_Y = 0xd0020;
const ROUNDS = 8;

/** GFNs of d's P2M that hold `mfn`. */
export function gfnsOf(d: LabDomain, mfn: number): number[] {
  const out: number[] = [];
  for (const [gfn, e] of d.dom.xen.p2m!.entries()) if (Math.floor(e / 8) === mfn) out.push(gfn);
  return out;
}

export const xsa379: XsaEntry = {
  id: 379,
  year: 2021,
  title,
  op: 'XENMEM_add_to_physmap (XENMAPSPACE_grant_table)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-379'),
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(379, title);
    const a = lab.domain('A', { kind: 'hvm', version: 2, vcpus: 2 });
    const status = a.dom.xen.gt.status.get(0);
    lab.note(
      `A's status frame 0 is MFN 0x${status.toString(16)}; GFNs X = 0x${GFN_X.toString(16)}, Y = 0x${GFN_Y.toString(16)}`,
    );
    lab.note('fixed interleaving: vCPU0 and vCPU1 alternate their requests, one at a time');
    let atMostOne = true;
    let moved = true;
    for (let i = 0; i < ROUNDS; i++) {
      const [gfn, other] = i % 2 === 0 ? [GFN_X, GFN_Y] : [GFN_Y, GFN_X];
      a.dom.xen.currentVcpu = i % 2;
      const rc = a.addToPhysmap(
        XENMAPIDX_grant_table_status,
        gfn,
        `vCPU${i % 2}: status idx 0 at 0x${gfn.toString(16)}`,
      );
      const at = gfnsOf(a, status);
      atMostOne &&= rc === 0 && at.length === 1 && at[0] === gfn;
      moved &&= a.dom.xen.p2m!.get(other) === undefined;
    }
    a.dom.xen.currentVcpu = 0;
    lab.expect(atMostOne, 'after every request the status page is at exactly one GFN, the latest');
    lab.expect(moved, 'the later request moves it: the old GFN becomes empty');
    const rc = a.setVersion(1);
    lab.expect(rc === 0, 'set_version(1) succeeds');
    lab.expect(gfnsOf(a, status).length === 0, 'after it no GFN of A refers to the freed status page');
    lab.races.push({
      mode: 'interleaving',
      window: "vCPU0's and vCPU1's requests for the same status frame, in turn",
      target: ROUNDS,
      hits: ROUNDS,
      attempts: ROUNDS,
      violations: atMostOne && moved ? 0 : 1,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-379', lab, o));
    return lab.finish([
      'at any moment the status page appears at no more than one GFN; the later request moves it',
      "after set_version(1) no GFN in A's P2M refers to a freed page",
    ]);
  },
};
