// XSA-318 (2020): a copy retried at its first element returned success with
// no status written.
import { GTF_transitive } from '../../abi/flags.ts';
import { isGntst } from '../../abi/status.ts';
import { threadRace, threadsNeedOf } from './race.ts';
import { copyFrom, T, transitiveWorld } from './transitive.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'wrong continuation handling in copy';
const SENTINEL = 0x7777;

export const xsa318: XsaEntry = {
  id: 318,
  year: 2020,
  title,
  op: 'GNTTABOP_copy (continuation)',
  side: 'hypervisor',
  race: true,
  ...threadsNeedOf('xsa-318'),
  run: async (o: XsaRunOptions = {}) => {
    const { lab, b, c } = transitiveWorld(318, title);
    lab.note(`C's batch of 3 copies through (B, t), each status preset to 0x${SENTINEL.toString(16)}`);
    lab.note('fixed interleaving: B rewrites t when Xen first reads it in element 0');
    lab.note(
      "Xen restarts an element when t's pin changed while B's lock was dropped; one thread cannot place a second copier there, so B's rewrite is what this run forces",
    );
    const tAddr = lab.shaAddr(b, T);
    const u16 = lab.host.hypervisor.machine.words.u16;
    let hit = 0;
    const at = (_op: string, addr: number) => {
      if (addr !== tAddr || hit > 0) return;
      hit++;
      Atomics.and(u16, tAddr >>> 1, ~GTF_transitive & 0xffff);
    };
    const ops = [0, 1, 2].map(() => copyFrom(b, T, c, 16, SENTINEL));
    const r = lab.interleave(at, () => c.copy(ops, '3 copies from (B, t), t unset under element 0'));
    lab.expect(
      r.statuses.every((s) => s !== SENTINEL),
      'at return no status is the sentinel',
    );
    lab.expect(
      r.statuses.every((s) => isGntst(s)),
      'every status is a valid GNTST value',
    );
    lab.expect(r.rc === 0, 'the hypercall returns 0 only with every element processed');
    lab.races.push({
      mode: 'interleaving',
      window: "B's rewrite of t under element 0",
      target: 1,
      hits: hit,
      attempts: 1,
      violations: 0,
    });
    if (o.threads !== false) lab.races.push(await threadRace('xsa-318', lab, o));
    return lab.finish(
      [
        'the hypercall does not return until every element has been processed',
        'at return every status is a valid GNTST value, never the sentinel',
      ],
      { statusBits: false },
    );
  },
};
