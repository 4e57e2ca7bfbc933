// XSA-236 (2017): a copy released its page reference before its pin, and the
// pinned fast path trusted a page that might be gone.
import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_bad_domain, GNTST_bad_page, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'race between pin count and page reference';

export const xsa236: XsaEntry = {
  id: 236,
  year: 2017,
  title,
  op: 'GNTTABOP_copy (release_grant_for_copy)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-236'),
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(236, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    const f = lab.host.hypervisor.frames;
    const mfn = a.frameOf(0x3000);
    a.dom.memory.fill(0x3000, 64, 0x41);
    a.grant(10, b, mfn, GTF_permit_access);
    lab.note("gnttab has no ballooning: A going away (destroyed) is how its frame stops being A's");
    const copyOne = (what: string) =>
      b.copy(
        [
          {
            source_u: 10,
            source_domid: a.domid,
            dest_u: b.frameOf(0x5000),
            dest_domid: DOMID_SELF,
            len: 64,
            flags: GNTCOPY_source_gref,
          },
        ],
        what,
      ).statuses[0];
    const c0 = f.count[mfn];
    lab.expect(
      copyOne('(A, ref 10) -> B, 64 bytes') === GNTST_okay && f.count[mfn] === c0 && a.pin(10) === 0,
      'a copy of the live grant is okay and leaves no pin or page reference',
    );
    // The pinned fast path: B holds a read-only mapping, then A dies.
    const m = b.map(a, 10, GNTMAP_host_map | GNTMAP_readonly);
    lab.host.destroyDomain(a.domid);
    lab.step('host', 'destroy', 'A (B still maps ref 10: A stays a zombie)', 'done');
    const s = copyOne('(A, ref 10) -> B on the pinned fast path, A dying');
    lab.expect(s === GNTST_bad_domain, 'the fast path checks the owner is alive: bad_domain');
    lab.expect(b.unmap(m.handle) === GNTST_okay, 'B unmaps; the zombie goes');
    lab.expect(f.owner[mfn] === -1, "A's page is freed only after the last reference");
    const s2 = copyOne('(A, ref 10) -> B, A gone');
    lab.expect(
      [GNTST_bad_domain, GNTST_bad_page, GNTST_general_error].includes(s2!),
      'a copy from the gone granter fails with a GNTST error',
    );
    lab.expect(
      b.dom.memory.read(0x5000, 64).every((x) => x === 0x41),
      "B's buffer holds only what A granted while it was A's",
    );
    lab.races.push({
      mode: 'interleaving',
      window: "A's death between B's copies on the pinned fast path",
      target: 1,
      hits: 1,
      attempts: 1,
      violations: 0,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-236', lab, o));
    return lab.finish([
      'a copy either succeeds on the page A granted, or fails with bad_domain / bad_page / general_error',
      'Xen never reads a page whose owner is no longer A; the fast path checks owner and dying',
      'release order: unpin first, then drop the page reference',
    ]);
  },
};
