import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Host } from '../../src/index.ts';
import echo from '../fixtures/echo-guest.ts';

describe('guest code in one thread (deterministic)', () => {
  it('the worker fixture runs unchanged against host.context, with virtual time', async () => {
    const host = new Host({ memoryMiB: 16 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 512, maxGrantFrames: 5 });
    const [o] = await host.runGuests([
      { domid: d.domid, main: echo as (c: unknown, a: unknown) => unknown, args: { mode: 'ok' } },
    ]);
    assert.deepEqual(o?.result, { rc: 0, nr: 1, max: 5, status: 0, domid: d.domid });
    assert.equal(host.clock.now(), 1); // the guest slept 1 ms of virtual time
    assert.deepEqual(host.console(d.domid), ['query_size rc=0']);
  });

  it('a guest that throws crashes only its domain', async () => {
    const host = new Host({ memoryMiB: 16 });
    const a = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    const b = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    const main = echo as (c: unknown, a: unknown) => unknown;
    const out = await host.runGuests([
      { domid: a.domid, main, args: { mode: 'throw' } },
      { domid: b.domid, main, args: { mode: 'ok' } },
    ]);
    assert.match(String(out[0]?.error?.message), /guest bug/);
    assert.equal(a.alive, false);
    assert.equal(out[1]?.ok, true);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('timers fire in virtual-time order, the same way on every run; a deadlock is reported', async () => {
    const trace = async () => {
      const host = new Host({ memoryMiB: 16 });
      const doms = [0, 1, 2].map(() => host.createDomain({ kind: 'pv', memoryKiB: 256 }));
      const seen: string[] = [];
      await host.runGuests(
        doms.map((d, i) => ({
          domid: d.domid,
          main: async (ctx: { clock: { sleep(ms: number): Promise<void>; now(): number } }) => {
            for (let k = 0; k < 3; k++) {
              await ctx.clock.sleep(10 * (i + 1));
              seen.push(`d${d.domid}@${ctx.clock.now()}`);
            }
          },
        })) as never,
      );
      return seen;
    };
    const first = await trace();
    assert.deepEqual(first, await trace());
    // Equal times fire in the order the timers were set: d1's 20 ms timer predates d0's second one.
    assert.deepEqual(first.slice(0, 4), ['d0@10', 'd1@20', 'd0@20', 'd2@30']);
    const host = new Host({ memoryMiB: 16 });
    const d = host.createDomain({ kind: 'pv', memoryKiB: 256 });
    await assert.rejects(
      host.runGuests([{ domid: d.domid, main: (ctx) => ctx.wait(0x1000, 0, Number.POSITIVE_INFINITY) }]),
      /deadlock: d0/,
    );
  });
});
