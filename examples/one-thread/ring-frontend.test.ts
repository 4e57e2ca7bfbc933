// A deterministic test of a frontend, in one thread: the ring example's
// frontend (examples/ring) against its backend on a Host, with virtual time
// that jumps whenever every guest waits. No worker, no real clock: the same
// code gives the same run, event for event, every time. Copy it for your own
// frontend; run it with `npm test -- examples/one-thread` in this checkout, or
// `node --import tsx --test` where gnttab is installed.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Host, type RunGuestArgs } from 'gnttab';
import backend from '../ring/backend.ts';
import frontend from '../ring/frontend.ts';

async function runOnce(requests: number) {
  const host = new Host({ memoryMiB: 32, xenstore: true });
  const back = host.createDomain({ kind: 'pv' });
  const front = host.createDomain({ kind: 'hvm' });
  const args = (role: 'frontend' | 'backend'): RunGuestArgs => ({
    role,
    self: role === 'frontend' ? front.domid : back.domid,
    peer: role === 'frontend' ? back.domid : front.domid,
    frontend: front.domid,
    backend: back.domid,
    argv: [String(requests)],
  });
  const [b, f] = await host.runGuests([
    { domid: back.domid, main: backend, args: args('backend') },
    { domid: front.domid, main: frontend, args: args('frontend') },
  ]);
  return {
    backend: b,
    frontend: f,
    consoles: [host.console(front.domid), host.console(back.domid)],
    invariants: host.checkInvariants(),
  };
}

it('the ring frontend gets a checked response to each of 200 requests, and leaves nothing behind', async () => {
  const r = await runOnce(200);
  assert.equal(r.frontend.error, undefined);
  assert.equal(r.backend.error, undefined);
  assert.deepEqual(r.frontend.result, { requests: 200, checked: 200 });
  assert.deepEqual(r.backend.result, { answered: 200 });
  assert.deepEqual(r.invariants, []);
});

it('one thread is deterministic: two runs print the same consoles', async () => {
  const a = await runOnce(50);
  const b = await runOnce(50);
  assert.deepEqual(a.consoles, b.consoles);
  assert.ok(a.consoles[0]!.includes('50 responses checked'));
});
