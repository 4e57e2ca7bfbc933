// libxenevtchn and libxenstore across threads: two guest programs
// (test/fixtures/xen-libs-guest.ts) in their own worker threads ping-pong over
// an event channel one of them published in xenstore, the other found through
// a watch iterator with a depth; then the same programs in one thread
// (Host.runGuests). Waits given an aborted signal reject with AbortError.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Host, WorkerHost } from 'gnttab';
import xenLibsGuest, { type XenLibsArgs, type XenLibsResult } from '../fixtures/xen-libs-guest.ts';

const guestUrl = new URL('../fixtures/xen-libs-guest.ts', import.meta.url);
const ROUNDS = 200;

function check(srv: XenLibsResult, cli: XenLibsResult): void {
  assert.equal(srv.answered, ROUNDS);
  assert.equal(cli.answered, ROUNDS);
  assert.equal(cli.port, srv.port, 'the client bound the port the server published');
  assert.deepEqual(srv.aborted, ['AbortError']);
  assert.deepEqual(cli.aborted, ['AbortError', 'AbortError']);
  assert.equal(cli.events[0], 'data', 'the watch fires once on registration');
  assert.equal(srv.boundAfterClose, 0);
  assert.equal(cli.boundAfterClose, 0);
}

describe('libxenevtchn and libxenstore in worker threads', () => {
  let host: WorkerHost;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 32, xenstore: true });
  });
  after(async () => {
    await host.shutdown();
  });

  for (const [ks, kc] of [
    ['pv', 'hvm'],
    ['hvm', 'pv'],
  ] as const) {
    it(`a ${ks} server and an ${kc} client ping-pong ${ROUNDS} times through xenevtchn_pending/unmask/notify`, {
      timeout: 120_000,
    }, async () => {
      const s = await host.createDomain({ kind: ks, memoryKiB: 512 });
      const c = await host.createDomain({ kind: kc, memoryKiB: 512 });
      const [srv, cli] = await Promise.all([
        host.spawn<XenLibsResult>(s, guestUrl, {
          role: 'server',
          peer: c.domid,
          rounds: ROUNDS,
        } satisfies XenLibsArgs),
        host.spawn<XenLibsResult>(c, guestUrl, {
          role: 'client',
          peer: s.domid,
          rounds: ROUNDS,
        } satisfies XenLibsArgs),
      ]);
      check(srv, cli);
      assert.deepEqual(await host.checkInvariants(), []);
      await host.destroyDomain(c.domid);
      await host.destroyDomain(s.domid);
    });
  }
});

describe('the same programs in one thread (Host.runGuests)', () => {
  it('a pv server and an hvm client', async () => {
    const host = new Host({ memoryMiB: 32, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const s = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const c = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    const [so, co] = await host.runGuests([
      { domid: s.domid, main: xenLibsGuest, args: { role: 'server', peer: c.domid, rounds: ROUNDS } },
      { domid: c.domid, main: xenLibsGuest, args: { role: 'client', peer: s.domid, rounds: ROUNDS } },
    ]);
    assert.equal(so.error, undefined, String(so.error?.stack));
    assert.equal(co.error, undefined, String(co.error?.stack));
    check(so.result!, co.result!);
    // Left: each domain's xenstore channel only (its store port and the Xen-attached end).
    assert.equal(s.xen.evtchn.inUse, 2);
    assert.equal(c.xen.evtchn.inUse, 2);
    assert.equal(host.waiters, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
