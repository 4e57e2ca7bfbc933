// XSA-295 (2019): unbounded atomics on guest-shared words; every retry loop bounded.
import { GNTMAP_host_map, GTF_permit_access } from '../../abi/flags.ts';
import { GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import { Lab } from './lab.ts';
import { threadRace } from './race.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'unlimited atomics on Arm, and bounded guest-memory updates';
/** An unrelated flag bit A keeps toggling. */
const NOISE = 0x200;

export const xsa295: XsaEntry = {
  id: 295,
  year: 2019,
  title,
  op: 'GNTTABOP_map_grant_ref (v1 pin CMPXCHG)',
  side: 'hypervisor',
  race: true,
  run: async (o: XsaRunOptions = {}) => {
    const lab = new Lab(295, title);
    const a = lab.domain('A', { kind: 'pv' });
    const b = lab.domain('B', { kind: 'pv' });
    a.grant(10, b, a.frameOf(0x3000), GTF_permit_access);
    const sha = lab.shaAddr(a, 10);
    const u16 = lab.host.hypervisor.machine.words.u16;
    lab.note(
      "fixed interleaving: A's other vCPU toggles an unrelated flag bit of ref 10 before Xen's CMPXCHGs",
    );
    const flipper = (times: number) => {
      const s = { attempts: 0 };
      return {
        s,
        at: (op: string, addr: number) => {
          if (op !== 'cmpxchg32' || addr !== sha) return;
          s.attempts++;
          if (s.attempts <= times) Atomics.xor(u16, sha >>> 1, NOISE);
        },
      };
    };
    const always = flipper(Number.POSITIVE_INFINITY);
    const m1 = lab.interleave(always.at, () => b.map(a, 10));
    lab.expect(m1.status === GNTST_general_error, 'flipped before every CMPXCHG: general_error');
    lab.expect(always.s.attempts === 5, `Xen gave up after exactly 5 attempts (${always.s.attempts})`);
    lab.expect(a.pin(10) === 0 && a.statusBits(10) === 0, 'nothing pinned, no status bit left');
    const four = flipper(4);
    const m2 = lab.interleave(four.at, () => b.map(a, 10, GNTMAP_host_map));
    lab.expect(
      m2.status === GNTST_okay && four.s.attempts === 5,
      'four flips, then quiet: the 5th attempt maps',
    );
    const u = lab.interleave(always.at, () => b.unmap(m2.handle));
    lab.expect(
      u === GNTST_okay && a.statusBits(10) === 0,
      'the unmap clears the status bits with one atomic AND, flips or not',
    );
    lab.races.push({
      mode: 'interleaving',
      window: "A's write to ref 10's flags between Xen's read and its CMPXCHG",
      target: 9,
      hits: always.s.attempts + Math.min(four.s.attempts, 4),
      attempts: 2,
      violations: lab.checks.filter((c) => !c.ok).length,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-295', lab, o));
    return lab.finish(
      [
        'the map succeeds (one of 5 CMPXCHG attempts got through) or fails with general_error after the 5th',
        'Xen never spins more than a bounded number of times',
        'clearing status bits on unmap always completes (an atomic AND, never a loop)',
      ],
      { statusBits: false },
    );
  },
};
