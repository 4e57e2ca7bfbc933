import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GuestCrash, WorkerHost } from '../../src/host/worker-host.ts';

const guest = new URL('../fixtures/echo-guest.ts', import.meta.url);

describe('domains in worker threads', () => {
  let host: WorkerHost;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 32 });
  });
  after(async () => {
    await host.shutdown();
  });

  it('guest code in a worker makes hypercalls that complete synchronously', async () => {
    const d = await host.createDomain({ kind: 'pv', memoryKiB: 512, maxGrantFrames: 7 });
    const r = await host.spawn(d, guest, { mode: 'ok' });
    assert.deepEqual(r, { rc: 0, nr: 1, max: 7, status: 0, domid: d.domid });
    assert.deepEqual(host.consoleOf(d.domid), ['query_size rc=0']);
    assert.deepEqual(await host.checkInvariants(), []);
  });

  it('a guest that throws crashes only its own domain', async () => {
    const bad = await host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    const good = await host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    await assert.rejects(
      host.spawn(bad, guest, { mode: 'throw' }),
      (e: unknown) => e instanceof GuestCrash && e.domid === bad.domid && /guest bug/.test(e.message),
    );
    const r = (await host.spawn(good, guest, { mode: 'ok' })) as { rc: number };
    assert.equal(r.rc, 0);
    await assert.rejects(host.spawn(bad, guest, { mode: 'ok' }), /not a live domain/);
    assert.deepEqual(await host.checkInvariants(), []);
  });

  it('a guest thread that exits crashes its domain; the host destroys it', async () => {
    const d = await host.createDomain({ kind: 'pv', memoryKiB: 512 });
    await assert.rejects(
      host.spawn(d, guest, { mode: 'exit' }),
      (e: unknown) => e instanceof GuestCrash && /exited with code 3/.test(e.message),
    );
    const s = await host.stats();
    assert.ok(s.domains >= 1);
    assert.deepEqual(await host.checkInvariants(), []);
  });
});

/** `p`, or a failure naming `what` if it has not settled after 60 s (a hang is the failure). */
async function within<T>(what: string, p: Promise<T>, state: () => string = () => ''): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after 60 s ${state()}`)), 60_000);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

describe('stopping a domain thread (the stop handshake, thread-slots.ts)', () => {
  it('a guest destroyed while it makes hypercalls back to back is stopped outside Xen: the lock stays usable', async () => {
    const host = await WorkerHost.start({ memoryMiB: 32 });
    try {
      for (let round = 0; round < 8; round++) {
        const spinner = await host.createDomain({ kind: round % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 256 });
        let settled: unknown = null;
        const spinning = host.spawn(spinner, guest, { mode: 'spin' }).then(
          (v) => {
            settled = { returned: v };
            return v;
          },
          (e: unknown) => {
            settled = e;
            return e;
          },
        );
        while (!host.consoleOf(spinner.domid).includes('spinning') && settled === null)
          await new Promise((r) => setTimeout(r, 2));
        assert.equal(settled, null, `the spinning guest ended before it spun: ${String(settled)}`);
        await within(
          `round ${round}: destroying the spinning d${spinner.domid}`,
          host.destroyDomain(spinner.domid),
          () => {
            const h = host as unknown as {
              share: { poolSab: SharedArrayBuffer; globals: number };
              slots: { i32: Int32Array };
            };
            const g = new Int32Array(h.share.poolSab, h.share.globals * 4096, 16);
            return JSON.stringify({ globals: [...g], slots: [...h.slots.i32.subarray(0, 32)] });
          },
        );
        assert.ok((await within(`round ${round}: the spinner's end`, spinning)) instanceof GuestCrash);
        // Were the thread ended holding the hypercall lock, this domain's first hypercall would never return.
        const d = await within(
          `round ${round}: a new domain`,
          host.createDomain({ kind: 'pv', memoryKiB: 256 }),
        );
        const r = (await within(`round ${round}: its hypercall`, host.spawn(d, guest, { mode: 'ok' }))) as {
          rc: number;
        };
        assert.equal(r.rc, 0);
        await within(`round ${round}: destroying d${d.domid}`, host.destroyDomain(d.domid));
      }
      assert.deepEqual(await host.checkInvariants(), []);
      assert.equal((await host.stats()).domains, 0);
    } finally {
      await host.shutdown();
    }
  });
});

describe('worker host shutdown', () => {
  it('leaves no worker thread or message port behind', async () => {
    const before = process
      .getActiveResourcesInfo()
      .filter((r) => r === 'MessagePort' || r === 'Worker').length;
    const h = await WorkerHost.start({ memoryMiB: 16 });
    const d = await h.createDomain({ kind: 'pv', memoryKiB: 256 });
    await h.spawn(d, guest, { mode: 'ok' });
    // A guest still running at shutdown is stopped too.
    const forever = await h.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const running = h.spawn(forever, guest, { mode: 'hang' }).catch(() => 'stopped');
    await new Promise((r) => setTimeout(r, 100));
    await h.shutdown();
    assert.equal(await running, 'stopped');
    // Handles close asynchronously after terminate(): give them up to 2 s to go.
    const count = () =>
      process.getActiveResourcesInfo().filter((r) => r === 'MessagePort' || r === 'Worker').length;
    for (let i = 0; i < 200 && count() > before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(count(), before);
  });
});
