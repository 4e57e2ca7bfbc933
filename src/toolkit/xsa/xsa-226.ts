// XSA-226 (2017): several problems with transitive grants (pin balance, a
// missing release on retry, set_version with transitive entries, no bound).
import { GTF_permit_access, GTF_transitive } from '../../abi/flags.ts';
import { GNTST_general_error, GNTST_okay, isGntst } from '../../abi/status.ts';
import { threadRace } from './race.ts';
import { copyFrom, G1, PAYLOAD, T, transitiveWorld } from './transitive.ts';
import type { XsaEntry, XsaRunOptions } from './types.ts';

const title = 'several problems with transitive grants';
const BATCH = 100;

export const xsa226: XsaEntry = {
  id: 226,
  year: 2017,
  title,
  op: 'GNTTABOP_copy (transitive grants)',
  side: 'hypervisor',
  race: true,
  run: async (o: XsaRunOptions = {}) => {
    const { lab, a, b, c } = transitiveWorld(226, title);
    a.grant(G1 + 1, b, a.frameOf(0x4000), GTF_permit_access);
    lab.note(
      "fixed interleaving: at Xen's first read of t in each element, B's other vCPU rewrites t (target ref, type)",
    );
    const tAddr = lab.shaAddr(b, T);
    const u16 = lab.host.hypervisor.machine.words.u16;
    const u32 = lab.host.hypervisor.machine.words.u32;
    let rewrites = 0;
    let steps = 0;
    const rewrite = (_op: string, addr: number) => {
      steps++;
      if (addr !== tAddr) return;
      rewrites++;
      // Alternately: point t at g1 + 1, back at g1, and toggle its type off and on.
      const k = rewrites % 4;
      if (k === 1) Atomics.store(u32, (tAddr + 8) >>> 2, G1 + 1);
      else if (k === 2) Atomics.store(u32, (tAddr + 8) >>> 2, G1);
      else if (k === 3) Atomics.and(u16, tAddr >>> 1, ~GTF_transitive & 0xffff);
      else Atomics.or(u16, tAddr >>> 1, GTF_transitive);
    };
    const ops = Array.from({ length: BATCH }, () => copyFrom(b, T, c));
    const r = lab.interleave(rewrite, () =>
      c.copy(ops, `${BATCH} copies from (B, t), t rewritten throughout`),
    );
    lab.expect(
      r.rc === 0 && r.statuses.every((s) => isGntst(s)),
      `every one of the ${BATCH} copies completed or failed with a GNTST status`,
    );
    lab.expect(
      r.statuses.some((s) => s === GNTST_okay),
      'some copies went through',
    );
    lab.expect(
      steps < BATCH * 64,
      `Xen's work stayed bounded: ${steps} shared-word steps for ${BATCH} elements`,
    );
    lab.expect(
      a.pin(G1) === 0 && a.pin(G1 + 1) === 0 && b.pin(T) === 0,
      "after the batch: A's g1 and B's t have pin 0",
    );
    lab.expect(a.statusBits(G1) === 0 && b.statusBits(T) === 0, 'and their reading/writing bits are clear');
    lab.expect(b.dom.xen.gt.nrV2Ops === 0, 'nothing left in flight (nr_v2_ops 0)');
    lab.races.push({
      mode: 'interleaving',
      window: 'B rewrites t each time Xen reads it (Xen reads t again whenever it pins it anew)',
      target: rewrites,
      hits: rewrites,
      attempts: BATCH,
      violations: 0,
    });
    // Restore t; then a transitive whose target is transitive, and one naming B itself.
    b.grantTransitive(T, c, a, G1, GTF_transitive);
    a.grantTransitive(12, b, b, G1, GTF_transitive);
    b.grantTransitive(21, c, a, 12, GTF_transitive);
    b.grantTransitive(22, c, b, T, GTF_transitive);
    const nested = c.copy([copyFrom(b, 21, c)], "(B, 21) -> C: B's 21 onto A's 12, itself transitive");
    lab.expect(
      nested.statuses[0] === GNTST_general_error,
      'a transitive entry whose target is transitive: general_error',
    );
    const self = c.copy([copyFrom(b, 22, c)], '(B, 22) -> C: trans_domid is B itself');
    lab.expect(
      self.statuses[0] === GNTST_general_error,
      'a transitive entry naming its own domain: general_error',
    );
    const good = c.copy([copyFrom(b, T, c)], '(B, t) -> C, t as first set');
    lab.expect(
      good.statuses[0] === GNTST_okay && c.dom.memory.readU8(0x8000) === PAYLOAD,
      "through t, C reads A's page",
    );
    // gnttab=no-transitive.
    const off = transitiveWorld(226, title, { gnttab: { transitive: false } });
    const n = off.c.copy([copyFrom(off.b, T, off.c)], '(B, t) -> C with gnttab=no-transitive');
    lab.note('second host: gnttab=no-transitive');
    lab.steps.push(...off.lab.steps.filter((s) => s.op === 'copy'));
    lab.expect(
      n.statuses[0] === GNTST_general_error,
      'with gnttab=no-transitive, copies through t give general_error',
    );
    lab.expect(off.lab.host.checkInvariants().length === 0, 'the invariants hold on that host too');
    // On worker threads: B's thread rewrites t while C's batches run; a batch whose elements saw t
    // in more than one state is a hit, and every element must still be sound.
    if (o.threads !== false) lab.races.push(await threadRace('xsa-226', lab, o));
    return lab.finish(
      [
        'every copy either completes or fails with a GNTST error; a nested or self-referencing transitive gives general_error',
        "when the batch ends, A's g1 and B's t have pin 0 and their reading/writing bits are clear",
        'with gnttab=no-transitive, copies through t give general_error',
      ],
      { statusBits: false },
    );
  },
};
