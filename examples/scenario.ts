// An example scenario for `gnttab dump`: a PV backend and an HVM frontend; the
// frontend grants two pages to the backend, which maps one of them read-only.
// The dump then shows the pinned entry and the backend's mapping.
//   gnttab dump examples/scenario.ts
import {
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTTABOP_map_grant_ref,
  Gnttab,
  gnttab_map_grant_ref,
  guestHypercall,
  type Host,
  layout,
} from 'gnttab';

export default function scenario(host: Host): void {
  const back = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const front = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  const gt = new Gnttab(host.context(front.domid), { version: 2 });
  if (gt.init() !== 0) throw new Error('frontend grant table setup failed');
  const a = gt.pages.alloc();
  const b = gt.pages.alloc();
  const refA = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(a), false);
  gt.grantForeignAccess(back.domid, gt.pages.gfnOf(b), true);
  const m = guestHypercall.grantTableOp(
    host.context(back.domid),
    GNTTABOP_map_grant_ref,
    gnttab_map_grant_ref,
    [
      {
        host_addr: layout.FOREIGN_MAP_VA,
        flags: GNTMAP_host_map | GNTMAP_readonly,
        ref: refA,
        dom: front.domid,
      },
    ],
  );
  if (m.out[0]?.status !== 0) throw new Error(`map failed: ${m.out[0]?.status}`);
}
