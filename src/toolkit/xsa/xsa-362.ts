// XSA-362 (2021) and XSA-367 (2021): backends treated grant-map errors as bugs
// (BUG_ON), and netback's TX path still ignored one.
import { GTF_permit_access, GTF_readonly } from '../../abi/flags.ts';
import { GNTST_bad_gntref, GNTST_general_error, GNTST_no_space, GNTST_okay } from '../../abi/status.ts';
import { mapForeignRefs, unmapForeignRefs } from '../../guest/gnttab/backend.ts';
import { PageAllocator } from '../../guest/pages.ts';
import { Lab, st } from './lab.ts';
import type { XsaEntry, XsaResult } from './types.ts';

async function mapErrors(id: number, title: string): Promise<XsaResult> {
  const lab = new Lab(id, title);
  const a = lab.domain('A', { kind: 'pv' });
  const b = lab.domain('B', { kind: 'pv', mapTable: false, maxMaptrackFrames: 1, memoryKiB: 2048 });
  lab.note(
    "A (frontend) supplies refs; B (backend, the guest library) maps each request's refs in one batch",
  );
  lab.note('B has one maptrack frame, so it can run out of handles');
  for (let i = 0; i < 8; i++)
    a.grant(10 + i, b, a.frameOf(0x3000 + i * 4096), GTF_permit_access | GTF_readonly);
  const ctx = lab.host.context(b.domid);
  const pages = new PageAllocator(ctx);
  const request = async (what: string, refs: number[]) => {
    const r = await mapForeignRefs(ctx, pages, a.domid, refs, true);
    const s = r.status.find((x) => x !== GNTST_okay) ?? GNTST_okay;
    lab.step(
      'B',
      'map_grant_ref',
      `${what}: ${refs.length} refs`,
      r.status.every((x) => x === 0) ? 'okay' : `failed (${st(s)})`,
    );
    return r;
  };
  // Packets of 4 refs; the third has a bad element: only that packet fails.
  const packets = [
    [10, 11, 12, 13],
    [14, 15, 16, 17],
    [10, 5000, 12, 13],
    [14, 15, 16, 17],
  ];
  const done = [];
  for (const [i, p] of packets.entries()) done.push(await request(`request ${i}`, p));
  lab.expect(
    done.map((r) => r.mapping !== null).join() === 'true,true,false,true',
    'only the request with the bad ref failed',
  );
  lab.expect(done[2]!.status[1] === GNTST_bad_gntref, 'its element got bad_gntref');
  const ungranted = await request('a ref not granted to B', [30]);
  lab.expect(
    ungranted.status[0] === GNTST_general_error && ungranted.mapping === null,
    'an ungranted ref: general_error, the request fails',
  );
  // Exhaust the maptrack: the next request gets no_space, and B keeps running.
  const held = done.filter((r) => r.mapping !== null).map((r) => r.mapping!);
  let last = await request(
    'filling the maptrack',
    Array.from({ length: 64 }, (_, i) => 10 + (i % 8)),
  );
  let rounds = 0;
  while (last.mapping !== null && rounds < 8) {
    held.push(last.mapping);
    last = await request(
      'filling the maptrack',
      Array.from({ length: 64 }, (_, i) => 10 + (i % 8)),
    );
    rounds++;
  }
  lab.expect(
    last.status.includes(GNTST_no_space),
    'out of handles: no_space for the request that did not fit',
  );
  lab.expect(b.dom.alive, 'B keeps running after every failed request');
  for (const m of held) unmapForeignRefs(ctx, pages, m);
  lab.expect(b.dom.xen.gt.maptrack.liveCount() === 0, 'after the good requests are done, no handle is left');
  return lab.finish([
    'a ref that fails to map (bad_gntref, general_error, no_space) fails that request only',
    'the backend keeps running and leaks no handle',
  ]);
}

export const xsa362: XsaEntry = {
  id: 362,
  year: 2021,
  title: 'Linux backends treated grant-map errors as bugs',
  op: 'gnttab_map_refs (guest backend)',
  side: 'guest',
  run: () => mapErrors(362, 'Linux backends treated grant-map errors as bugs'),
};

export const xsa367: XsaEntry = {
  id: 367,
  year: 2021,
  title: 'netback still ignored a map error',
  op: 'gnttab_map_refs (guest backend, TX path)',
  side: 'guest',
  run: () => mapErrors(367, 'netback still ignored a map error'),
};
