// The malicious peer (src/toolkit/attack): gnttab's own split drivers (the
// grant-table driver, ring.h rings, event channels and the xenstore client
// over the 'ring' protocol, and libxenvchan) survive it from both sides with
// nothing left behind, and deliberately broken victims are reported for what
// they do wrong: a mapping kept, memory exposed, a throw, a hang, grants,
// ports and xenstore keys left. Each run is real worker threads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AttackOptions, type AttackReport, attack } from '../../src/toolkit/attack/index.ts';

const fixture = (name: string) => new URL(`../fixtures/attack/${name}.ts`, import.meta.url);
const MOVES = Number(process.env.GNTTAB_ATTACK_MOVES ?? 80);

function explain(r: AttackReport): string {
  return [
    `findings: ${JSON.stringify(r.findings)}`,
    `attacker: ${JSON.stringify(r.attacker)}`,
    `victim: ${JSON.stringify({ ...r.victimOutcome, console: r.victimOutcome.console.slice(-5) })}`,
    `last moves: ${r.log
      .slice(-6)
      .map((e) => `${e.step} ${e.action} ${e.detail}`)
      .join(' | ')}`,
  ].join('\n');
}

async function run(o: AttackOptions): Promise<AttackReport> {
  return attack({ moves: MOVES, timeMs: 60_000, ...o });
}

describe('gnttab attack: gnttab’s own drivers as victims', () => {
  const cases = [
    { victim: 'ring', as: 'frontend', victimKind: 'hvm', gnttabVersion: 1, seed: 1 },
    { victim: 'ring', as: 'backend', victimKind: 'pv', gnttabVersion: 2, seed: 2 },
    { victim: 'vchan', as: 'frontend', victimKind: 'pv', gnttabVersion: 1, seed: 3 },
    { victim: 'vchan', as: 'backend', victimKind: 'hvm', gnttabVersion: 2, seed: 4 },
  ] as const;
  for (const c of cases) {
    const victimSide = c.as === 'frontend' ? 'backend' : 'frontend';
    it(`the ${c.victim} ${victimSide} (${c.victimKind}, v${c.gnttabVersion}) survives an attacker ${c.as} (seed ${c.seed}): no throw, no hang, nothing left`, async () => {
      const r = await run(c);
      assert.deepEqual(r.findings, [], explain(r));
      assert.equal(r.victimOutcome.status, 'returned');
      // The attacker really attacked, connected, and died at the move its seed chose.
      assert.equal(r.attacker.end, 'died', explain(r));
      assert.equal(r.attacker.moves, r.attacker.dieAt);
      const actions = new Set(r.log.map((e) => e.action));
      for (const a of ['start', 'connect', 'die'])
        assert.ok(actions.has(a), `no ${a} move in ${[...actions].join(' ')}`);
      assert.ok(actions.size >= 8, `only ${[...actions].join(' ')}`);
      const connect = r.log.find((e) => e.action === 'connect');
      assert.doesNotMatch(connect?.detail ?? '', /did not map|blind/, explain(r));
    });
  }

  it('the same seed makes the same sequence of moves', async () => {
    const a = await run({ victim: 'ring', as: 'frontend', seed: 7, moves: 40 });
    const b = await run({ victim: 'ring', as: 'frontend', seed: 7, moves: 40 });
    assert.equal(a.attacker.dieAt, b.attacker.dieAt);
    assert.deepEqual(
      a.log.map((e) => e.action),
      b.log.map((e) => e.action),
    );
  });
});

describe('gnttab attack: broken victims are reported', () => {
  it('a backend that keeps the ring mapped after closed: leaked-mappings (examples/attack/leaky-backend.ts)', async () => {
    const r = await run({
      victim: new URL('../../examples/attack/leaky-backend.ts', import.meta.url),
      as: 'frontend',
      seed: 3,
    });
    assert.deepEqual(
      r.findings.map((f) => f.kind),
      ['leaked-mappings'],
      explain(r),
    );
    assert.match(r.findings[0]!.message, /1 foreign mapping/);
  });

  it('a frontend that grants a page it never cleared: exposed', async () => {
    const r = await run({ victim: fixture('exposing-frontend'), as: 'backend', seed: 5 });
    assert.ok(r.findings.length > 0, explain(r));
    assert.ok(
      r.findings.every((f) => f.kind === 'exposed'),
      explain(r),
    );
    assert.match(
      r.findings[0]!.message,
      /the ring page \(ref \d+\), offset 0: memory of d\d+ it never wrote/,
    );
    // Without the canary the same bug shows nothing: the finding is the canary's doing.
    const clean = await run({ victim: fixture('exposing-frontend'), as: 'backend', seed: 5, poison: false });
    assert.deepEqual(clean.findings, [], explain(clean));
  });

  it('a frontend that throws on a response id it never issued: threw', async () => {
    const r = await run({ victim: fixture('throwing-frontend'), as: 'backend', seed: 6 });
    assert.deepEqual(
      r.findings.map((f) => f.kind),
      ['threw'],
      explain(r),
    );
    assert.match(r.findings[0]!.message, /never requested/);
    assert.equal(r.victimOutcome.status, 'threw');
  });

  it('a backend that never returns after closed: hung', async () => {
    const r = await run({
      victim: fixture('hanging-backend'),
      as: 'frontend',
      seed: 8,
      timeMs: 4000,
      graceMs: 1000,
    });
    assert.deepEqual(
      r.findings.map((f) => f.kind),
      ['hung'],
      explain(r),
    );
    assert.equal(r.victimOutcome.status, 'hung');
  });

  it('a frontend that returns holding its grant, port, keys and a watch: each reported', async () => {
    const r = await run({ victim: fixture('sloppy-frontend'), as: 'backend', seed: 9 });
    const kinds = r.findings.map((f) => f.kind);
    assert.deepEqual(
      [...new Set(kinds)].sort(),
      ['leaked-grants', 'leaked-ports', 'leaked-xenstore'],
      explain(r),
    );
    const text = r.findings.map((f) => f.message).join('\n');
    assert.match(text, /1 grant entry still in use/);
    assert.match(text, /ring-ref/);
    assert.match(text, /1 xenstore watch/);
  });
});
