// XSA-396 (2022): Linux frontends exposed to backends through grant
// revocation races. The guest driver here (Gnttab, as Linux's grant-table.c)
// ends access with one CMPXCHG (v1) or the flags/status barrier handshake (v2).
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { Lab } from './lab.ts';
import { threadRace } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'Linux frontends exposed to backends through grant revocation races';

export const xsa396: XsaEntry = {
  id: 396,
  year: 2022,
  title,
  op: 'gnttab_end_foreign_access (guest)',
  side: 'guest',
  race: true,
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(396, title);
    const b = lab.domain('B', { kind: 'pv' });
    let wins = 0;
    for (const version of [1, 2] as const) {
      const a = lab.domain(`A${version}`, { kind: 'hvm', mapTable: false });
      const gt = new Gnttab(lab.host.context(a.domid), { version });
      if (gt.init() !== 0) throw new Error('gnttab init failed');
      lab.note(`A${version} = the frontend, the real guest driver in v${version}; B = the backend`);
      for (const revokeFirst of [true, false]) {
        const page = gt.pages.alloc();
        const ref = gt.grantForeignAccess(b.domid, gt.pages.gfnOf(page), false);
        lab.step(a.name, 'gnttab_grant_foreign_access', `page to B: ref ${ref}`, 'done');
        const sha = lab.shaAddr(a, ref);
        let ended: boolean | null = null;
        let inside = false;
        // A decides to revoke at Xen's first step on the entry (before its CMPXCHG or status write).
        const at = (_op: string, addr: number) => {
          if (inside || ended !== null || !revokeFirst || addr !== sha) return;
          inside = true;
          ended = gt.tryEndForeignAccess(ref);
          inside = false;
        };
        const m = lab.interleave(at, () => b.map(a, ref));
        if (!revokeFirst) ended = gt.tryEndForeignAccess(ref);
        lab.step(
          a.name,
          'gnttab_try_end_foreign_access',
          `ref ${ref}${revokeFirst ? ", during B's map" : ', after it'}`,
          ended ? 'ended' : 'in use',
        );
        const mapped = m.status === GNTST_okay;
        lab.expect(
          mapped !== (ended === true),
          `v${version}, revoke ${revokeFirst ? 'inside' : 'after'} the map: exactly one of map and revoke won`,
        );
        if (revokeFirst) {
          wins++;
          lab.expect(
            m.status === GNTST_general_error && a.pin(ref) === 0,
            `v${version}: the revoke won, B's map failed with general_error and left no pin`,
          );
        } else {
          // The end failed: the driver keeps the page until B lets go (the deferred end).
          gt.endForeignAccess(ref, page);
          lab.expect(
            gt.deferredCount === 1 && gt.pages.count(page) === 1,
            `v${version}: the refused end is deferred; A keeps a reference on the page`,
          );
          b.unmap(m.handle);
          lab.host.clock.advance(5000);
          await new Promise<void>((r) => setImmediate(r));
          lab.expect(gt.deferredCount === 0, `v${version}: once B unmapped, the deferred end completes`);
        }
      }
    }
    lab.expect(!('queryForeignAccess' in Gnttab.prototype), 'the driver has no "query, then end" call');
    lab.races.push({
      mode: 'interleaving',
      window: "A's revoke between Xen's read of the entry and its pin",
      target: 2,
      hits: wins,
      attempts: 4,
      violations: lab.checks.filter((c) => !c.ok).length,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-396', lab, o));
    return lab.finish([
      "v1: A's revocation and B's pin are decided by one CMPXCHG: either the revoke succeeds and B's map fails with general_error, or B pins and the revoke reports in use",
      'v2: either B sees flags 0 after its barrier (map fails, status rolled back), or A sees GTF_reading (revoke fails)',
      'when the revocation fails A does not free or reuse the page; it retries later',
      'no "query then end" sequence in the guest API; a failed revoke never crashes the frontend',
    ]);
  },
};
