// XSA-384 (2021) and XSA-486 (2026): a status page freed by v2 -> v1 while
// XENMEM_add_to_physmap was putting it into the P2M.
import { XEN_EINVAL, XENMAPIDX_grant_table_status } from '../../abi/hypercall.ts';
import { Lab } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaResult, XsaRunOptions } from './types.ts';
import { GFN_X, gfnsOf } from './xsa-379.ts';

async function statusRace(id: number, title: string, o: XsaRunOptions): Promise<XsaResult> {
  const lab = new Lab(id, title);
  const d0 = lab.domain('dom0', { kind: 'pv' });
  const a = lab.domain('A', { kind: 'hvm', version: 2 });
  const gt = a.dom.xen.gt;
  lab.note('fixed interleaving, in both orders: the insertion of status frame 0 and the switch to v1');
  // Insertion first: it completes, and the switch removes it before freeing the page.
  const s0 = gt.status.get(0);
  const rc1 = d0.addToPhysmap(
    XENMAPIDX_grant_table_status,
    GFN_X,
    `A's status idx 0 at X = 0x${GFN_X.toString(16)}`,
    a.domid,
  );
  lab.expect(rc1 === 0 && gfnsOf(a, s0).includes(GFN_X), 'the insertion completes: the status frame is at X');
  const rc2 = a.setVersion(1);
  lab.expect(
    rc2 === 0 && gfnsOf(a, s0).length === 0,
    'set_version(1) removes the mapping before the page is freed',
  );
  lab.expect(
    lab.host.hypervisor.frames.owner[s0] === -1,
    'the status page is freed, and no GFN refers to it',
  );
  // Switch first: the insertion fails afterwards.
  const rc3 = d0.addToPhysmap(
    XENMAPIDX_grant_table_status,
    GFN_X,
    `A's status idx 0 at X, A now in v1`,
    a.domid,
  );
  lab.expect(
    rc3 === -XEN_EINVAL && a.dom.xen.p2m!.get(GFN_X) === undefined,
    'in v1 the status index is invalid: -EINVAL, nothing placed',
  );
  lab.expect(a.setVersion(2) === 0, 'back to v2');
  lab.races.push({
    mode: 'interleaving',
    window: 'set_version(1) right after, and right before, an insertion of the status frame',
    target: 2,
    hits: 2,
    attempts: 2,
    violations: lab.checks.filter((c) => !c.ok).length,
  });
  if (o.threads !== false) lab.races.push(await threadRace('xsa-384', lab, o));
  return lab.finish([
    'whatever the interleaving, no P2M entry refers to a freed page',
    'the insertion either completes before the switch or fails afterwards (-EINVAL: in v1 the status index is invalid)',
    'the frame lookup, the page reference and the P2M insertion are one step with respect to set_version',
  ]);
}

export const xsa384: XsaEntry = {
  id: 384,
  year: 2021,
  title: 'another race in XENMAPSPACE_grant_table',
  op: 'XENMEM_add_to_physmap / GNTTABOP_set_version',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-384'),
  run: (o = {}) => statusRace(384, 'another race in XENMAPSPACE_grant_table', o),
};

export const xsa486: XsaEntry = {
  id: 486,
  year: 2026,
  title: 'v2 race in status page mapping ("take three")',
  op: 'XENMEM_add_to_physmap / GNTTABOP_set_version',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-384'),
  run: (o = {}) => statusRace(486, 'v2 race in status page mapping ("take three")', o),
};
