// `gnttab run <frontend> <backend>`, run as a user runs it (a subprocess through
// bin/gnttab.mjs): the user's guest modules as two domains in worker threads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RunReport } from 'gnttab';
import { gnttab } from '../helpers/cli.ts';
import { tsGuestFolder } from '../helpers/ts-guest-folder.ts';

const fx = (name: string) => `test/fixtures/run/${name}.mjs`;

function json(args: string[]): { code: number | null; r: RunReport; err: string } {
  const res = gnttab(['run', '--json', ...args]);
  return { code: res.code, r: JSON.parse(res.out) as RunReport, err: res.err };
}

describe('gnttab run', () => {
  it('runs the ring example (.ts guests): consoles, both tables while they ran, nothing left behind', () => {
    const t = gnttab(['run', 'examples/ring/frontend.ts', 'examples/ring/backend.ts', '--', '100']);
    assert.equal(t.code, 0, t.out + t.err);
    assert.match(t.out, /^d1 frontend\| 100 responses checked$/m);
    assert.match(t.out, /^d0 backend \| 100 requests answered; closing$/m);
    assert.match(t.out, /returned\s+\{"requests":100,"checked":100\}/);
    assert.match(t.out, /^grant table of d1 \(hvm\)/m);
    assert.match(t.out, /^grant table of d0 \(pv\)/m);
    assert.match(t.out, /^left behind: nothing \(no grant, mapping, port or xenstore key\)$/m);
    assert.match(t.out, /^invariants: all hold$/m);
    for (const line of t.out.split('\n')) assert.ok(line.length <= 80, `wider than 80 columns: ${line}`);
  });

  it('hands each guest its role, both domids and the words after --; --json', () => {
    const { code, r } = json([fx('idle'), fx('idle'), '--', 'a', '-b']);
    assert.equal(code, 0);
    assert.equal(r.ok, true);
    assert.deepEqual(r.frontend.result, { role: 'frontend', self: 1, peer: 0, argv: ['a', '-b'] });
    assert.deepEqual(r.backend.result, { role: 'backend', self: 0, peer: 1, argv: ['a', '-b'] });
    assert.deepEqual(r.frontend.console, ['d1 (frontend) idles; argv ["a","-b"]']);
    assert.deepEqual(r.leftovers, []);
    assert.deepEqual(r.invariants, []);
  });

  it('a guest that leaves a grant, a port and a xenstore key behind is a leak: exit 1, each one listed', () => {
    const { code, r } = json([fx('leaky'), fx('idle')]);
    assert.equal(code, 1);
    assert.equal(r.ok, false);
    assert.equal(r.frontend.outcome, 'returned');
    const left = r.frontend.leftBehind!;
    assert.deepEqual(left.grants, [8]);
    assert.deepEqual(
      left.ports.map((p) => [p.state, p.remote?.domid]),
      [['unbound', 0]],
    );
    assert.deepEqual(left.xenstoreKeys, ['/local/domain/1/data/leak']);
    assert.deepEqual(r.backend.leftBehind, { grants: [], mappings: [], ports: [], xenstoreKeys: [] });
    assert.equal(r.leftovers.length, 3);
    // Destroying the domains releases it all, as Xen does.
    assert.deepEqual(r.invariants, []);
    const t = gnttab(['run', fx('leaky'), fx('idle')]);
    assert.equal(t.code, 1);
    assert.match(t.out, /^ {2}d1 \(frontend\): grant ref 8 still granted$/m);
    assert.match(t.out, /^ {2}d1 \(frontend\): port \d+ \(unbound, for d0\) still bound$/m);
    assert.match(t.out, /^ {2}d1 \(frontend\): xenstore key \/local\/domain\/1\/data\/leak left$/m);
  });

  it('a guest that throws crashes its domain: exit 1; a peer still waiting is stopped', () => {
    const { code, r } = json([fx('crash'), fx('hang')]);
    assert.equal(code, 1);
    assert.equal(r.frontend.outcome, 'crashed');
    assert.match(r.frontend.error ?? '', /the guest gave up/);
    assert.deepEqual(r.frontend.console, ['about to give up']);
    assert.equal(r.backend.outcome, 'stopped');
    assert.deepEqual(r.invariants, []);
  });

  it('guests still running at --timeout are stopped: exit 1', () => {
    const t = gnttab(['run', '--timeout', '0.5', fx('hang'), fx('hang')]);
    assert.equal(t.code, 1);
    assert.match(t.out, /d1 \(frontend, [^)]*\) was still running at the timeout and\s+was stopped/);
    assert.match(t.out, /^invariants: all hold$/m);
  });

  // Without their ESM hook (src/host/user-module.ts), Node 20 failed these with
  // ERR_REQUIRE_CYCLE_MODULE and Node 22/24 with a SyntaxError or no default export.
  for (const packageType of ['none', 'commonjs'] as const) {
    it(`runs .ts guests and dumps a .ts scenario in a folder without "type": "module" (package.json: ${packageType})`, () => {
      const f = tsGuestFolder(packageType);
      try {
        const { code, r, err } = json([f.guest, f.guest]);
        assert.equal(code, 0, err);
        assert.equal(r.frontend.outcome, 'returned', r.frontend.error);
        assert.equal(r.backend.outcome, 'returned', r.backend.error);
        assert.deepEqual(r.frontend.result, { greeting: 2, role: 'frontend' });
        assert.deepEqual(r.backend.result, { greeting: 2, role: 'backend' });
        assert.deepEqual(r.frontend.console, ['hello from frontend']);
        const dump = gnttab(['dump', f.scenario]);
        assert.equal(dump.code, 0, dump.err);
        assert.match(dump.out, /^grant table of d1 \(pv\)/m);
        assert.match(dump.out, /^invariants: all hold$/m);
      } finally {
        f.remove();
      }
    });
  }

  it('usage errors exit 2 and say what was wrong', () => {
    const none = gnttab(['run']);
    assert.equal(none.code, 2);
    assert.match(none.err, /missing required argument 'frontend'/);
    const missing = gnttab(['run', 'no-such-front.mjs', fx('idle')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /no such guest module: no-such-front\.mjs/);
    const timeout = gnttab(['run', '--timeout', '0', fx('idle'), fx('idle')]);
    assert.equal(timeout.code, 2);
    assert.match(timeout.err, /--timeout/);
    const kind = gnttab(['run', '--frontend-kind', 'arm', fx('idle'), fx('idle')]);
    assert.equal(kind.code, 2);
  });
});

describe('gnttab explore', () => {
  it('usage errors exit 2, as for the other commands', () => {
    assert.equal(gnttab(['explore']).code, 2);
    assert.equal(gnttab(['explore', 'revoke', '--schedules', 'x']).code, 2);
    assert.equal(gnttab(['explore', 'revoke', '--layout', '3']).code, 2);
  });
});
