// XSA-228 (2017): races on the maptrack free list (stealing from another vCPU).
import { GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access, GTF_readonly } from '../../abi/flags.ts';
import { GNTST_no_space, GNTST_okay } from '../../abi/status.ts';
import { Lab, MAP_VA } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'races on the maptrack free list';
const REFS = 8;

export const xsa228: XsaEntry = {
  id: 228,
  year: 2017,
  title,
  op: 'GNTTABOP_map_grant_ref (maptrack steal)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-228'),
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(228, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv', vcpus: 2, maxMaptrackFrames: 1, memoryKiB: 2048 });
    lab.note(
      'the race is between two vCPUs of B; gnttab runs one thread per domain, so it runs as a fixed interleaving in one thread',
    );
    for (let r = 0; r < REFS; r++)
      a.grant(10 + r, b, a.frameOf(0x3000 + r * 4096), GTF_permit_access | GTF_readonly);
    const live = new Map<number, number>(); // handle -> va
    let va = MAP_VA;
    let dup = 0;
    const mapOne = (vcpu: number, quiet = true): number => {
      b.dom.xen.currentVcpu = vcpu;
      const n = lab.steps.length;
      const m = b.map(a, 10 + (live.size % REFS), GNTMAP_host_map | GNTMAP_readonly, va);
      if (quiet && m.status === GNTST_okay) lab.steps.length = n;
      if (m.status === GNTST_okay) {
        if (live.has(m.handle)) dup++;
        live.set(m.handle, va);
        va += 4096;
      }
      return m.status;
    };
    const unmapOne = (vcpu: number): void => {
      b.dom.xen.currentVcpu = vcpu;
      const [h, at] = live.entries().next().value!;
      const n = lab.steps.length;
      if (b.unmap(h, at) === GNTST_okay) {
        live.delete(h);
        lab.steps.length = n;
      }
    };
    // vCPU0 uses up the handles, until the maptrack frame is full.
    let s = GNTST_okay;
    while (s === GNTST_okay) s = mapOne(0, true);
    const capacity = live.size;
    lab.step('B vCPU0', 'map_grant_ref', `x${capacity} (readonly, 8 refs)`, 'okay');
    lab.expect(s === GNTST_no_space, `with no handle left, map returns no_space (after ${capacity} maps)`);
    // vCPU1 maps (stealing vCPU0's freed handles) while vCPU0 unmaps, alternately.
    // steal_maptrack_handle never takes the last entry of a list: vCPU0 frees one ahead.
    unmapOne(0);
    let steals = 0;
    for (let i = 0; i < 64; i++) {
      unmapOne(0);
      if (mapOne(1) === GNTST_okay) steals++;
    }
    lab.step(
      'B vCPU0/vCPU1',
      'unmap/map',
      '64 rounds: vCPU0 unmaps one, vCPU1 maps one',
      `${steals} maps okay`,
    );
    lab.expect(steals === 64, 'every map of vCPU1 found a handle freed by vCPU0');
    lab.expect(dup === 0, 'no handle was ever handed out twice among live mappings');
    while (live.size > 0) unmapOne(live.size % 2);
    lab.expect(b.dom.xen.gt.maptrack.liveCount() === 0, 'every mapping unmapped: no live handle');
    let again = GNTST_okay;
    while (again === GNTST_okay) again = mapOne(live.size % 2);
    lab.expect(
      live.size >= capacity - 1 && dup === 0,
      `the free lists hold every handle once: ${live.size} distinct handles again (of ${capacity}; a list's last entry is not stolen)`,
    );
    while (live.size > 0) unmapOne(0);
    b.dom.xen.currentVcpu = 0;
    lab.races.push({
      mode: 'interleaving',
      window: "vCPU1 takes a handle from vCPU0's free list right after vCPU0 freed it",
      target: 64,
      hits: steals,
      attempts: 64,
      violations: dup,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-228', lab, o));
    return lab.finish([
      'no handle is ever handed out twice; every live handle is unique',
      'once every mapping is unmapped, the free lists hold every allocated handle exactly once',
      'when there really is no handle left, map returns no_space',
    ]);
  },
};
