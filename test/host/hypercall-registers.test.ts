// Hypercall registers (src/xen/registers.ts): the number and each argument
// reach Xen as the same 64-bit register from a worker thread as from one
// thread. On x86_64 Xen reads them whole (do_grant_table_op's `unsigned int
// cmd` and `count` are their low halves, `uop` all 64 bits; hvm_hypercall and
// pv_hypercall refuse a number >= NR_hypercalls with -ENOSYS), so a PTE
// argument of update_va_mapping keeps bit 63 (NX) and the high available bits.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  GNTTABOP_query_size,
  Host,
  WorkerHost,
  XEN_EFAULT,
  XEN_EINVAL,
  XEN_ENOSYS,
} from 'gnttab';
import main, {
  ARG,
  MAP_VA,
  PTE,
  type RegisterCase,
  type RegisterReport,
} from '../fixtures/register-guest.ts';

const fixture = new URL('../fixtures/register-guest.ts', import.meta.url);
const G = __HYPERVISOR_grant_table_op;
const Q = GNTTABOP_query_size;

/** Each case with what Xen answers (a number) or the host API's TypeError (a pattern). */
const table: [RegisterCase, number | RegExp][] = [
  [{ nr: G, args: [Q, ARG, 1] }, 0],
  [{ nr: BigInt(G), args: [BigInt(Q), ARG, 1n] }, 0],
  // rax holds 64 bits: a number above NR_hypercalls is no hypercall, whatever its low half.
  [{ nr: 2 ** 32 + G, args: [Q, ARG, 1] }, -XEN_ENOSYS],
  [{ nr: 2n ** 64n - 1n, args: [Q, ARG, 1] }, -XEN_ENOSYS],
  [{ nr: -1, args: [Q, ARG, 1] }, -XEN_ENOSYS],
  // Modulo 2^64, as a C conversion to uint64_t.
  [{ nr: 2n ** 64n + BigInt(G), args: [Q, ARG, 1] }, 0],
  [
    { nr: String(G), args: [Q, ARG, 1] },
    /TypeError: the hypercall number must be an integer .* the string "20"/,
  ],
  [{ nr: G + 0.7, args: [Q, ARG, 1] }, /TypeError: the hypercall number must be an integer .* 20\.7/],
  [{ nr: Number.NaN, args: [Q, ARG, 1] }, /TypeError: the hypercall number .* NaN/],
  [{ nr: null, args: [Q, ARG, 1] }, /TypeError: the hypercall number .* null/],
  // cmd is the low 32 bits: garbage in the high half is ignored by do_grant_table_op.
  [{ nr: G, args: [2 ** 32 + Q, ARG, 1] }, 0],
  [{ nr: G, args: [(1n << 40n) | BigInt(Q), ARG, 1] }, 0],
  // uop is 64 bits: an address above the guest's space faults.
  [{ nr: G, args: [Q, 2 ** 53 + 1, 1] }, -XEN_EFAULT],
  [{ nr: G, args: [Q, 2n ** 64n - 1n, 1] }, -XEN_EFAULT],
  [{ nr: G, args: [Q, -1, 1] }, -XEN_EFAULT],
  [{ nr: G, args: [Q, -1n, 1] }, -XEN_EFAULT],
  // count -1 is 0xffffffff: query_size takes only 1 (-EINVAL), as count >= 2^31 is refused first.
  [{ nr: G, args: [Q, ARG, -1] }, -XEN_EINVAL],
  [{ nr: G, args: [Q, ARG, 2n ** 64n - 1n] }, -XEN_EINVAL],
  [{ nr: G, args: [Q, ARG, '1'] }, /TypeError: hypercall argument 3 must be an integer .* the string "1"/],
  [{ nr: G, args: [Q, ARG, 1.5] }, /TypeError: hypercall argument 3 .* 1\.5/],
  [{ nr: G, args: [Q, ARG, Number.POSITIVE_INFINITY] }, /TypeError: hypercall argument 3 .* Infinity/],
  [{ nr: G, args: [true, ARG, 1] }, /TypeError: hypercall argument 1 .* boolean/],
  [{ nr: G, args: [Q, ARG, 1, 0, 0, 0, 0] }, /TypeError: a hypercall takes at most 6 arguments, got 7/],
  // update_va_mapping's PTE: all 64 bits. -1 sets reserved bits (-EINVAL, get_page_from_l1e);
  // rounded through a double it would be 2^64 and then 0, a zap that succeeds.
  [{ nr: __HYPERVISOR_update_va_mapping, args: [MAP_VA, -1n, 0] }, -XEN_EINVAL],
  [{ nr: __HYPERVISOR_update_va_mapping, args: [MAP_VA, PTE, 0] }, 0],
];

const cases = table.map(([c]) => c);

function check(report: RegisterReport): void {
  assert.equal(report.outcomes.length, table.length);
  report.outcomes.forEach((o, i) => {
    const want = table[i]![1];
    const what = `case ${i}: ${String(table[i]![0].nr)}(${table[i]![0].args.map(String).join(', ')})`;
    if (typeof want === 'number') assert.deepEqual(o, { rc: want }, what);
    else {
      assert.ok('error' in o, `${what}: returned ${JSON.stringify(o)}, wanted a TypeError`);
      assert.match(o.error, want, what);
    }
  });
  // The PTE went in whole: RAM page 0 is readable at MAP_VA (a rounded PTE maps nothing).
  assert.deepEqual(report.mapped, [0xde, 0xad, 0xbe, 0xef]);
}

describe('hypercall registers: the same in one thread and in a worker', () => {
  let oneThread: RegisterReport | undefined;

  it('one thread: every odd value gives Xen’s answer or a TypeError', async () => {
    const host = new Host({ memoryMiB: 16 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const [o] = await host.runGuests([{ domid: d.domid, main, args: { cases } }]);
    assert.equal(o.ok, true, String(o.error));
    check(o.result!);
    oneThread = o.result!;
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('worker thread: the same outcomes, value for value', async () => {
    await using wh = await WorkerHost.start({ memoryMiB: 16 });
    const d = await wh.createDomain({ kind: 'pv', memoryKiB: 512 });
    const r = await wh.spawn<RegisterReport>(d, fixture, { cases });
    check(r);
    if (oneThread !== undefined) assert.deepEqual(r, oneThread);
  });
});
