// XSA-411 (2022): the transitive copy retry path released the inner grant
// while holding the intermediate domain's lock.
import { GTF_permit_access, GTF_transitive } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { held, nestedPairs, withLockChecker } from './lock-order.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import { copyFrom } from './transitive.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'lock-order inversion on the transitive copy error path';

export const xsa411: XsaEntry = {
  id: 411,
  year: 2022,
  title,
  op: 'GNTTABOP_copy (transitive retry)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-411'),
  run: (o: XsaRunOptions = {}) =>
    withLockChecker(async () => {
      const lab = new Lab(411, title);
      const a = lab.domain('A', { kind: 'pv', version: 2 });
      const b = lab.domain('B', { kind: 'pv', version: 2 });
      const c = lab.domain('C', { kind: 'pv' });
      const d = lab.domain('D', { kind: 'pv' });
      lab.note("Xen's lock-order checker is on: a second grant-table lock, or an inversion, is refused");
      a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
      b.grantTransitive(20, c, a, 10, GTF_transitive);
      b.grant(11, a, b.frameOf(0x3000), GTF_permit_access);
      a.grantTransitive(21, d, b, 11, GTF_transitive);
      lab.note(
        "A's g1 (ref 10) to B, B's t (ref 20) for C onto it; B's ref 11 to A, A's ref 21 for D onto it",
      );
      const shas = new Set([lab.shaAddr(a, 10), lab.shaAddr(b, 20), lab.shaAddr(b, 11), lab.shaAddr(a, 21)]);
      const u32 = lab.host.hypervisor.machine.words.u32;
      let twoGrantLocks = 0;
      let locksSeen = 0;
      let rewrites = 0;
      // At each of Xen's steps on these entries: look at the locks held; the intermediates rewrite
      // their transitive entry's target now and then to push Xen onto its error paths.
      const at = (_op: string, addr: number) => {
        const h = held();
        locksSeen += h.length;
        if (h.filter((l) => l.startsWith('grant_table')).length > 1) twoGrantLocks++;
        if (!shas.has(addr)) return;
        rewrites++;
        const t = rewrites % 3 === 0 ? lab.shaAddr(b, 20) : rewrites % 3 === 1 ? lab.shaAddr(a, 21) : -1;
        if (t >= 0) Atomics.xor(u32, (t + 8) >>> 2, 0x40);
      };
      let okC = 0;
      let okD = 0;
      for (let i = 0; i < 20; i++) {
        const rc = lab.interleave(at, () => c.copy([copyFrom(b, 20, c)], `(B, t) -> C, round ${i}`));
        const rd = lab.interleave(at, () => d.copy([copyFrom(a, 21, d)], `(A, 21) -> D, round ${i}`));
        if (rc.statuses[0] === GNTST_okay) okC++;
        if (rd.statuses[0] === GNTST_okay) okD++;
      }
      const inverted = nestedPairs().filter((p) => p === 'grant_table>grant_table');
      lab.expect(twoGrantLocks === 0, 'at no step were two grant-table locks held');
      lab.expect(inverted.length === 0, 'the checker never saw a grant lock taken under another');
      lab.expect(lab.host.hypervisor.internalErrors.length === 0, 'no lock-order error inside Xen');
      lab.expect(
        okC > 0 && okD > 0,
        `copies finish: ${okC} of C's, ${okD} of D's went through, the rest failed with a status`,
      );
      if (locksSeen === 0 && nestedPairs().length === 0)
        lab.note(
          "the lock checks hold vacuously today: the hypervisor's ops take none of Xen's locks yet (xen/locks.ts; they come with the SMP hypervisor, issue 8)",
        );
      lab.races.push({
        mode: 'interleaving',
        window: "an intermediate rewrites its transitive entry at Xen's steps on it",
        target: rewrites,
        hits: rewrites,
        attempts: 40,
        violations: twoGrantLocks,
      });
      if (o.threads !== false) lab.races.push(await threadRace('xsa-411', lab, o));
      return lab.finish(
        [
          'no deadlock: every copy finishes or is retried',
          'the lock checker never sees a grant lock for domain X held while one for domain Y is taken',
        ],
        { statusBits: false },
      );
    }),
};
