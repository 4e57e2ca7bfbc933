// XSA-394 (2022): a partial unmap underflowed the per-MFN counter added for XSA-380.
import { GNTMAP_device_map, GNTMAP_host_map, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_handle, GNTST_okay } from '../../abi/status.ts';
import { Lab, MAP_VA } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'a partial unmap could underflow the new per-MFN counter';
const EMPTY_UNMAPS = 5;

export const xsa394: XsaEntry = {
  id: 394,
  year: 2022,
  title,
  op: 'GNTTABOP_unmap_grant_ref',
  side: 'hypervisor',
  run: async () => {
    const lab = new Lab(394, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    const mfn = a.frameOf(0x3000);
    const count = () => lab.host.hypervisor.frames.count[mfn]!;
    lab.note("gnttab has no IOMMU: the page's reference count stands for the per-MFN counter");
    a.grant(10, b, mfn, GTF_permit_access);
    const c0 = count();
    const m = b.map(a, 10, GNTMAP_host_map | GNTMAP_device_map);
    lab.expect(
      m.status === GNTST_okay && count() === c0 + 2,
      'host|device map: one handle, two page references',
    );
    let ok = true;
    for (let i = 0; i < EMPTY_UNMAPS; i++) ok &&= b.unmap(m.handle, 0, 0) === GNTST_okay;
    lab.expect(ok, `${EMPTY_UNMAPS} unmaps with host_addr 0 and dev_bus_addr 0: all okay`);
    lab.expect(
      count() === c0 + 2 && b.dom.xen.gt.maptrack.liveCount() === 1,
      'they drop nothing: the handle and both references stay',
    );
    lab.expect(
      b.unmap(m.handle, MAP_VA, 0) === GNTST_okay && count() === c0 + 1,
      'host half: okay, one reference goes',
    );
    lab.expect(
      b.unmap(m.handle, 0, m.devBusAddr) === GNTST_okay && count() === c0,
      'device half: okay, the last goes',
    );
    lab.expect(
      b.unmap(m.handle, MAP_VA, m.devBusAddr) === GNTST_bad_handle,
      'the handle is released: a further unmap is bad_handle',
    );
    return lab.finish([
      'all partial unmaps return okay',
      'the counter drops exactly once per half, when that half is finally released',
    ]);
  },
};
