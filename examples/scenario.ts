// An example scenario for `gnttab dump`: a PV frontend grants two pages to a
// backend, which maps one of them; the dump then shows the pinned entry.
import { Gnttab } from '../src/guest/gnttab/grant-table.ts';
import { grantTableOp } from '../src/guest/hypercall.ts';
import { FOREIGN_MAP_VA } from '../src/guest/layout.ts';
import {
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTTABOP_map_grant_ref,
  gnttab_map_grant_ref,
  type Host,
} from '../src/index.ts';

export default function scenario(host: Host): void {
  const back = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const front = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  const gt = new Gnttab(host.context(front.domid), { version: 2 });
  if (gt.init() !== 0) throw new Error('frontend grant table setup failed');
  const a = gt.pages.alloc();
  const b = gt.pages.alloc();
  const refA = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(a), false);
  gt.grantForeignAccess(back.domid, gt.pages.gfnOf(b), true);
  const m = grantTableOp(host.context(back.domid), GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
    { host_addr: FOREIGN_MAP_VA, flags: GNTMAP_host_map | GNTMAP_readonly, ref: refA, dom: front.domid },
  ]);
  if (m.out[0]?.status !== 0) throw new Error(`map failed: ${m.out[0]?.status}`);
}
