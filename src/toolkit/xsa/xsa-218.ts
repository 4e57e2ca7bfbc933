// XSA-218 (2017): races in unmap: pins and status bits in different critical
// sections, and a maptrack slot freed twice by concurrent partial unmaps.
import { GNTMAP_device_map, GNTMAP_host_map, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_handle, GNTST_okay } from '../../abi/status.ts';
import { Lab, MAP_VA } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'races in unmap';

export const xsa218: XsaEntry = {
  id: 218,
  year: 2017,
  title,
  op: 'GNTTABOP_unmap_grant_ref',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-218'),
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(218, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', vcpus: 2 });
    lab.note(
      'the race is between two vCPUs of B; gnttab runs one thread per domain, so it runs as fixed interleavings in one thread',
    );
    a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
    const st = lab.statusAddr(a, 10);
    const u16 = lab.host.hypervisor.machine.words.u16;
    let steps = 0;
    let bad = 0;
    // A looks at its flags at every one of Xen's shared-word steps: never clear while pinned.
    const watch = () => {
      steps++;
      if ((Atomics.load(u16, st >>> 1) & 0x18) === 0 && a.pin(10) !== 0) bad++;
    };
    for (const order of [
      [0, 1],
      [1, 0],
    ] as const) {
      const h = [b.map(a, 10, GNTMAP_host_map, MAP_VA), b.map(a, 10, GNTMAP_host_map, MAP_VA + 4096)];
      const [first, second] = order;
      b.dom.xen.currentVcpu = 0;
      const u1 = lab.interleave(watch, () => b.unmap(h[first]!.handle, MAP_VA + first * 4096));
      lab.expect(
        u1 === GNTST_okay && a.statusBits(10) !== 0,
        `vCPU0 unmaps h${first + 1}: the bits stay while h${second + 1} is mapped`,
      );
      b.dom.xen.currentVcpu = 1;
      const u2 = lab.interleave(watch, () => b.unmap(h[second]!.handle, MAP_VA + second * 4096));
      lab.expect(
        u2 === GNTST_okay && a.statusBits(10) === 0 && a.pin(10) === 0,
        `vCPU1 unmaps h${second + 1}: only now both bits clear`,
      );
      b.dom.xen.currentVcpu = 0;
    }
    lab.expect(bad === 0, `at none of Xen's ${steps} shared-word steps were the flags clear while pinned`);
    lab.races.push({
      mode: 'interleaving',
      window: "A reading its flags at each of Xen's steps of both unmaps",
      target: steps,
      hits: steps,
      attempts: 2,
      violations: bad,
    });
    // Second test: one host|device handle, its halves unmapped from the two vCPUs.
    const m = b.map(a, 10, GNTMAP_host_map | GNTMAP_device_map, MAP_VA);
    b.dom.xen.currentVcpu = 0;
    const h1 = b.unmap(m.handle, MAP_VA, 0);
    b.dom.xen.currentVcpu = 1;
    const h2 = b.unmap(m.handle, 0, m.devBusAddr);
    b.dom.xen.currentVcpu = 0;
    lab.expect(
      h1 === GNTST_okay && h2 === GNTST_okay,
      'host-only and device-only unmaps of one handle: both okay',
    );
    lab.expect(
      b.unmap(m.handle, MAP_VA, m.devBusAddr) === GNTST_bad_handle,
      'a third unmap of h is bad_handle',
    );
    const n1 = b.map(a, 10, GNTMAP_host_map, MAP_VA);
    const n2 = b.map(a, 10, GNTMAP_host_map, MAP_VA + 4096);
    lab.expect(
      n1.handle !== n2.handle && b.dom.xen.gt.maptrack.liveCount() === 2,
      'h was freed once: the next two maps get distinct handles',
    );
    b.unmap(n1.handle, MAP_VA);
    b.unmap(n2.handle, MAP_VA + 4096);
    if (o.threads !== false) lab.races.push(await threadRace('xsa-218', lab, o));
    return lab.finish([
      "A's GTF_reading/GTF_writing clear only after both unmaps complete",
      'at no observable point are the flags clear while act.pin != 0',
      'concurrent host-only and device-only unmaps of one handle both succeed; h is freed exactly once; a third unmap is bad_handle',
    ]);
  },
};
