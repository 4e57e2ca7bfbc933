// Creating and destroying domains forever takes no memory: neither the host
// nor the hypervisor thread keeps anything of a domain that is gone (Xen's
// domain_destroy frees it all once the last reference goes). Heap growth over
// 1000 create/destroy cycles is bounded, after a collection; the handle of
// each domain used to keep its whole record alive, about 57 KiB a cycle.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Host, WorkerHost } from 'gnttab';

// --expose-gc for this process and the threads it starts from here on.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const CYCLES = 1000;
/** Far below what one domain record per cycle would take (57 MiB), far above noise. */
const BOUND = 2 * 1024 * 1024;

describe('no leak on destroy', () => {
  it('Host: 1000 create/destroy cycles leave the heap as it was, with xenstore too', () => {
    const host = new Host({ memoryMiB: 16, xenstore: true });
    const cycle = (i: number) => {
      const d = host.createDomain({ kind: i % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 256 });
      d.memory.write(0, new Uint8Array([i & 0xff]));
      host.destroyDomain(d.domid);
    };
    for (let i = 0; i < 100; i++) cycle(i); // warm up
    gc();
    const before = process.memoryUsage().heapUsed;
    const free = host.hypervisor.frames.freeFrames;
    for (let i = 0; i < CYCLES; i++) cycle(i);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.ok(grown < BOUND, `the heap grew by ${grown} bytes over ${CYCLES} cycles`);
    assert.equal(host.hypervisor.frames.freeFrames, free);
    assert.equal(host.hypervisor.domains.size, 0);
    assert.deepEqual(host.domains, []);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('WorkerHost: the same for the host thread and the hypervisor thread', async () => {
    await using wh = await WorkerHost.start({ memoryMiB: 16 });
    const cycle = async (i: number) => {
      const d = await wh.createDomain({ kind: i % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 256 });
      await wh.destroyDomain(d.domid);
    };
    for (let i = 0; i < 100; i++) await cycle(i);
    gc();
    const before = process.memoryUsage().heapUsed;
    const hvBefore = await wh.stats();
    for (let i = 0; i < CYCLES; i++) await cycle(i);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    const hvAfter = await wh.stats();
    assert.ok(grown < BOUND, `the host thread's heap grew by ${grown} bytes over ${CYCLES} cycles`);
    const hvGrown = hvAfter.heapUsed - hvBefore.heapUsed;
    assert.ok(hvGrown < BOUND, `the hypervisor thread's heap grew by ${hvGrown} bytes over ${CYCLES} cycles`);
    assert.equal(hvAfter.domains, 0);
    assert.equal(hvAfter.freeFrames, hvBefore.freeFrames);
    assert.deepEqual(await wh.checkInvariants(), []);
  });
});
