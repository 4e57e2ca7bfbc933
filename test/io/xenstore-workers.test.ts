// The xenstore service in worker mode: it runs in the hypervisor thread,
// woken by the guests' EVTCHNOP_send on their store ports; the guests run the
// same client code (src/io/xenstore/client.ts) in their own worker threads over
// their ring pages (test/fixtures/xenstore-guest.ts); the host talks to it with
// WorkerHost.xenstore. One guest writes, another watches and reads (issue 4).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { XENSTORE_RING_VA } from '../../src/guest/layout.ts';
import { WorkerHost } from '../../src/host/worker-host.ts';
import { XsError } from '../../src/io/xenstore/api.ts';
import type { WatcherResult, WriterResult } from '../fixtures/xenstore-guest.ts';

const guest = new URL('../fixtures/xenstore-guest.ts', import.meta.url);

/** Lets the host thread take the messages the hypervisor thread posted. */
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 20));

describe('xenstore in worker mode', () => {
  let host: WorkerHost;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 32, xenstore: true });
  });
  after(async () => {
    await host.shutdown();
  });

  for (const [kw, kr] of [
    ['pv', 'hvm'],
    ['hvm', 'pv'],
  ] as const) {
    it(`a ${kw} guest writes, an ${kr} guest watches and reads, each in its own thread`, {
      timeout: 60_000,
    }, async () => {
      const xs = host.xenstore!;
      const stats0 = await host.xenstoreStats();
      const w = await host.createDomain({ kind: kw, memoryKiB: 512 });
      const r = await host.createDomain({ kind: kr, memoryKiB: 512 });
      for (const d of [w, r]) {
        assert.equal(d.start.storePort, 1);
        if (d.kind === 'hvm') assert.equal(d.start.storeFrame, XENSTORE_RING_VA / 4096);
        else assert.ok(d.start.storeFrame > 0);
      }
      const W = `/local/domain/${w.domid}`;
      const R = `/local/domain/${r.domid}`;
      assert.deepEqual(await xs.directory(W), ['domid']);
      // The toolstack pre-writes a key for the writer, and watches the watcher's state.
      await xs.write(`${W}/config`, 'rounds=25');
      const hostSeen: string[] = [];
      await xs.watch(`${R}/data/state`, 'host', (p) => hostSeen.push(p));
      const rounds = 25;
      const [wres, rres] = (await Promise.all([
        host.spawn(w, guest, { role: 'writer', peer: r.domid, rounds }),
        host.spawn(r, guest, { role: 'watcher', peer: w.domid, rounds }),
      ])) as [WriterResult, WatcherResult];
      assert.equal(wres.config, 'rounds=25');
      assert.equal(wres.acks.at(-1), `got hello ${rounds}`);
      assert.ok(wres.acks.includes('watching'));
      assert.ok(wres.attempts >= rounds, 'one commit per round, retries on EAGAIN');
      assert.equal(rres.values.at(-1), `hello ${rounds}`);
      // The watcher reads the latest value after each event: rounds in order, none invented.
      const nums = rres.values.filter((v) => v.startsWith('hello ')).map((v) => Number(v.slice(6)));
      assert.deepEqual(
        nums,
        [...nums].sort((a, b) => a - b),
      );
      for (const v of rres.values) assert.match(v, /^(hello \d+|!ENOENT|!EACCES)$/);
      assert.ok(rres.events >= 2, 'the first event, and at least one change');
      assert.deepEqual(rres.refused, ['write-msg:EACCES', 'read-home:EACCES', 'rm-data:EACCES']);
      assert.equal(rres.seq, String(rounds));
      assert.equal(await xs.read(`${W}/data/msg`), `hello ${rounds}`, 'the forged write changed nothing');
      await tick();
      assert.ok(hostSeen.length >= 3, `host watch events: ${hostSeen.length}`);
      assert.ok(hostSeen.every((p) => p === `${R}/data/state`));
      // The writer closed its client; the watcher's watch is still there.
      const mid = await host.xenstoreStats();
      const conn = (id: number) => mid.connections.find((c) => c.kind === 'domain' && c.domid === id);
      assert.equal(conn(w.domid)?.watches, 0);
      assert.equal(conn(r.domid)?.watches, 1);
      assert.deepEqual(await host.checkInvariants(), []);
      // Destroyed: connections, watches and homes go.
      await host.destroyDomain(w.domid);
      await host.destroyDomain(r.domid);
      await xs.unwatch(`${R}/data/state`, 'host');
      const end = await host.xenstoreStats();
      assert.ok(
        !end.connections.some((c) => c.kind === 'domain' && (c.domid === w.domid || c.domid === r.domid)),
      );
      assert.deepEqual(end.rings, stats0.rings);
      assert.equal(end.watches, stats0.watches);
      assert.deepEqual(await xs.directory('/local/domain'), [], 'both homes removed');
      await assert.rejects(
        xs.read(`${W}/config`),
        (e: unknown) => e instanceof XsError && e.code === 'ENOENT',
      );
      assert.deepEqual(await host.checkInvariants(), []);
    });
  }
});
