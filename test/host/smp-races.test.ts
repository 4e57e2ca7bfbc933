// Races between domains on REAL worker threads (issue 8, DESIGN.md
// "Concurrency"). Each race runs a fixed number of rounds and checks what
// really happened: the statuses Xen gave, counted; page reference counts and
// pins back where they were; no maptrack handle left live; the host's
// invariant check passing at the end and at moments sampled while the
// workers run. Nothing here relies on hypercalls being served one at a time:
// every check holds as well when each domain's thread enters Xen itself.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { XEN_EINVAL, XEN_ENOENT } from '../../src/abi/hypercall.ts';
import type { PageInfo } from '../../src/host/introspect.ts';
import { GuestCrash, type ThreadDomain, WorkerHost } from '../../src/host/worker-host.ts';
import * as acquireGrowth from '../fixtures/smp-races/acquire-growth.ts';
import * as copyRevoke from '../fixtures/smp-races/copy-revoke.ts';
import * as create from '../fixtures/smp-races/create.ts';
import * as destroy from '../fixtures/smp-races/destroy.ts';
import * as evtchnBindClose from '../fixtures/smp-races/evtchn-bind-close.ts';
import * as foreignMap from '../fixtures/smp-races/foreign-map.ts';
import * as growth from '../fixtures/smp-races/growth.ts';
import { gntstTallies, MAX_SIDES, rcTallies, S, SMP_WORDS } from '../fixtures/smp-races/harness.ts';
import * as implicitUnmap from '../fixtures/smp-races/implicit-unmap.ts';
import * as many from '../fixtures/smp-races/many.ts';
import * as physmap from '../fixtures/smp-races/physmap.ts';
import * as sameGrant from '../fixtures/smp-races/same-grant.ts';
import * as setVersion from '../fixtures/smp-races/set-version.ts';
import * as unmapReplace from '../fixtures/smp-races/unmap-replace.ts';

const fixture = (name: string) => new URL(`../fixtures/smp-races/${name}.ts`, import.meta.url);

/**
 * Waits for the harness word to reach `n` (progress of the workers, never a
 * time); throws if one of `workers` fails first, rather than wait for ever.
 */
async function waitWord(
  w: Int32Array,
  index: number,
  n: number,
  ...workers: Promise<unknown>[]
): Promise<void> {
  let failed: { error: unknown } | null = null;
  for (const p of workers)
    p.catch((error: unknown) => {
      failed ??= { error };
    });
  while (Atomics.load(w, index) < n) {
    if (failed !== null) throw (failed as { error: unknown }).error;
    await sleep(1);
  }
}

/**
 * Runs the invariant check over and over until `work` settles: every sample
 * must come back empty. The check runs where Xen's state is consistent (in
 * Xen, as its debug keys do), so a sample taken in the middle of the race is
 * as binding as the one at the end.
 */
async function sampled<T>(host: WorkerHost, work: Promise<T>): Promise<{ result: T; samples: number }> {
  let running = true;
  const failures: string[][] = [];
  let samples = 0;
  const sampler = (async () => {
    do {
      const v = await host.checkInvariants();
      samples++;
      if (v.length > 0) failures.push(v);
      await sleep(2);
    } while (running);
  })();
  try {
    const result = await work;
    return { result, samples };
  } finally {
    running = false;
    await sampler;
    assert.deepEqual(failures, [], 'the invariant check failed at a sampled moment of the race');
  }
}

/** Page count and type count of a frame, the fields a race must leave as it found them. */
function counts(p: PageInfo): { owner: PageInfo['owner']; count: number; typeCount: number } {
  return { owner: p.owner, count: p.count, typeCount: p.typeCount };
}

async function liveMappings(host: WorkerHost, domid: number): Promise<number> {
  const t = (await host.snapshot()).find((s) => s.domid === domid);
  assert.ok(t !== undefined, `d${domid} is not on the host`);
  return t.mappings.length;
}

async function pinOf(host: WorkerHost, domid: number, ref: number): Promise<{ pin: number; status: number }> {
  const t = (await host.snapshot()).find((s) => s.domid === domid);
  const e = t?.entries.find((x) => x.ref === ref);
  return { pin: e?.active?.pin ?? 0, status: e?.status ?? 0 };
}

/**
 * Race 9 on `host` (implicit-unmap.ts): U zaps its grant PTEs with
 * update_va_mapping while the granter revokes and C maps the same page. In a
 * debug build each zap also injects #GP into U (put_page_from_l1e's
 * "attempt to implicitly unmap", quirk §15.19), from U's shared hypercall.
 */
async function implicitUnmapRace(host: WorkerHost, debugBuild: boolean): Promise<void> {
  const ROUNDS = 100;
  const free0 = await host.freeFrames;
  const g = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  const u = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
  const c = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
  const sab = new SharedArrayBuffer(SMP_WORDS * 4);
  const w = new Int32Array(sab);
  const common = { sab, granter: g.domid, user: u.domid, other: c.domid, rounds: ROUNDS };
  const fx = fixture('implicit-unmap');
  const granter = host.spawn<{ ended: boolean; endedC: boolean }>(g, fx, { ...common, role: 'granter' });
  const user = host.spawn(u, fx, { ...common, role: 'user' });
  const other = host.spawn<number>(c, fx, { ...common, role: 'other' });
  await waitWord(w, S.ready, 3, granter, user, other);
  const mfn = await g.machineFrameOf(Atomics.load(w, S.page));
  assert.ok(mfn !== null);
  const before = counts(await host.pageInfo(mfn));
  Atomics.store(w, implicitUnmap.GO, 1);
  const refU = Atomics.load(w, S.ref);
  const { result } = await sampled(
    host,
    (async () => {
      await user;
      Atomics.store(w, S.stop, 1);
      return await other;
    })(),
  );
  const otherRounds = result;
  assert.deepEqual(gntstTallies(w, implicitUnmap.U_MAP), { okay: ROUNDS }, "U's maps");
  assert.deepEqual(rcTallies(w, implicitUnmap.ZAP), { 0: ROUNDS }, "U's zaps of its grant PTEs");
  // The PTE is gone, so it is not the grant's: replace_grant_pv_mapping fails, the handle stays.
  assert.deepEqual(
    gntstTallies(w, implicitUnmap.U_UNMAP),
    { general_error: ROUNDS },
    "U's unmaps after the zap",
  );
  assert.deepEqual(gntstTallies(w, implicitUnmap.C_MAP), { okay: otherRounds }, "C's maps");
  assert.deepEqual(gntstTallies(w, implicitUnmap.C_UNMAP), { okay: otherRounds }, "C's unmaps");
  const revokes = rcTallies(w, implicitUnmap.REVOKE);
  assert.deepEqual(
    Object.keys(revokes),
    ['0'],
    `the revoke succeeded under U's pins: ${JSON.stringify(revokes)}`,
  );
  assert.equal(Atomics.load(w, S.violations), 0, 'a mapping showed another page');
  // Each zap dropped its mapping's reference and type reference (put_page_and_type),
  // while the grant side keeps its maptrack handle and its pin.
  assert.deepEqual(
    counts(await host.pageInfo(mfn)),
    before,
    "the zaps did not drop the mappings' references",
  );
  assert.equal(await liveMappings(host, u.domid), ROUNDS);
  assert.equal((await pinOf(host, g.domid, refU)).pin, ROUNDS, 'one host-writable pin per handle');
  const faults = await u.injectedFaults;
  assert.deepEqual(
    faults,
    debugBuild
      ? Array.from({ length: ROUNDS }, () => ({
          vector: 13,
          reason: 'attempt to implicitly unmap a grant PTE',
        }))
      : [],
    'faults injected into U',
  );
  assert.deepEqual(await host.checkInvariants(), []);
  // U's death releases its handles' pins (gnttab_release_mappings); its PTEs hold nothing of the page.
  await host.destroyDomain(u.domid);
  assert.deepEqual(await pinOf(host, g.domid, refU), { pin: 0, status: 0 });
  Atomics.store(w, S.phase, 1);
  assert.deepEqual(await granter, { ended: true, endedC: true });
  assert.deepEqual(counts(await host.pageInfo(mfn)), before, 'the page counts did not come back');
  assert.deepEqual(await host.checkInvariants(), []);
  for (const d of [g, c]) await host.destroyDomain(d.domid);
  assert.deepEqual(await host.checkInvariants(), []);
  assert.equal(await host.freeFrames, free0, 'frames leaked');
}

describe('SMP races on worker threads', () => {
  let host: WorkerHost;
  let dom0: ThreadDomain;
  before(async () => {
    host = await WorkerHost.start({ memoryMiB: 64 });
    // dom0: the races are between domUs, but for dom0's privileged foreign mappings (race 7).
    dom0 = await host.createDomain({ kind: 'pv', memoryKiB: 512 });
  });
  after(async () => {
    await host.shutdown();
  });

  async function destroyAll(doms: readonly ThreadDomain[]): Promise<void> {
    for (const d of doms) await host.destroyDomain(d.domid);
  }

  for (const version of [1, 2] as const) {
    it(`two grantees map and unmap the same page at once, v${version} (map_grant_ref, unmap_common)`, async () => {
      const ROUNDS = 600;
      const free0 = await host.freeFrames;
      const g = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const b = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const c = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
      const sab = new SharedArrayBuffer(SMP_WORDS * 4);
      const w = new Int32Array(sab);
      const common = { sab, version, granter: g.domid, grantees: [b.domid, c.domid], rounds: ROUNDS };
      const granter = host.spawn<{ endedB: boolean; endedC: boolean }>(g, fixture('same-grant'), {
        ...common,
        role: 'granter',
        index: 0,
      });
      await waitWord(w, S.ready, 1, granter);
      const mfn = await g.machineFrameOf(Atomics.load(w, S.page));
      assert.ok(mfn !== null);
      const before = counts(await host.pageInfo(mfn));
      const { samples } = await sampled(
        host,
        Promise.all([
          host.spawn(b, fixture('same-grant'), { ...common, role: 'grantee', index: 0 }),
          host.spawn(c, fixture('same-grant'), { ...common, role: 'grantee', index: 1 }),
        ]),
      );
      for (const i of [0, 1]) {
        assert.deepEqual(gntstTallies(w, sameGrant.OWN_MAP + i), { okay: ROUNDS }, `grantee ${i}: own maps`);
        assert.deepEqual(gntstTallies(w, sameGrant.OWN_UNMAP + i), { okay: ROUNDS }, `grantee ${i}: unmaps`);
        assert.deepEqual(
          gntstTallies(w, sameGrant.OTHER_MAP + i),
          { general_error: ROUNDS },
          `grantee ${i}: maps of the other grantee's ref`,
        );
      }
      assert.equal(
        Atomics.load(w, S.violations),
        0,
        'a mapping showed the wrong page, or an intruder mapped',
      );
      assert.ok(samples > 0);
      assert.deepEqual(counts(await host.pageInfo(mfn)), before, 'the page counts did not come back');
      assert.equal(await liveMappings(host, b.domid), 0);
      assert.equal(await liveMappings(host, c.domid), 0);
      for (const ref of [Atomics.load(w, S.ref), Atomics.load(w, S.ref2)])
        assert.deepEqual(await pinOf(host, g.domid, ref), { pin: 0, status: 0 }, `ref ${ref} still pinned`);
      Atomics.store(w, S.stop, 1);
      assert.deepEqual(await granter, { endedB: true, endedC: true });
      assert.deepEqual(await host.checkInvariants(), []);
      await destroyAll([g, b, c]);
      assert.deepEqual(await host.checkInvariants(), []);
      assert.equal(await host.freeFrames, free0, 'frames leaked');
    });
  }
  it('event channels: a bind racing the close of the port it binds, in two domains (evtchn_bind_interdomain, evtchn_close)', async () => {
    const ROUNDS = 2000;
    const free0 = await host.freeFrames;
    const ports0 = (await host.ports()).length;
    const a = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const b = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const { result, samples } = await sampled(
      host,
      Promise.all([
        host.spawn(a, fixture('evtchn-bind-close'), {
          sab,
          role: 'allocator',
          peer: b.domid,
          rounds: ROUNDS,
        }),
        host.spawn<{ attempts: number }>(b, fixture('evtchn-bind-close'), {
          sab,
          role: 'binder',
          peer: a.domid,
          rounds: ROUNDS,
        }),
      ]),
    );
    const attempts = result[1].attempts;
    assert.deepEqual(rcTallies(w, evtchnBindClose.A_ALLOC), { 0: ROUNDS }, "A's allocs");
    assert.deepEqual(rcTallies(w, evtchnBindClose.A_CLOSE), { 0: ROUNDS }, "A's closes");
    const binds = rcTallies(w, evtchnBindClose.B_BIND);
    const einval = String(-XEN_EINVAL);
    assert.deepEqual(
      Object.keys(binds).filter((k) => k !== '0' && k !== einval),
      [],
      `B's binds: ${JSON.stringify(binds)}`,
    );
    assert.equal((binds['0'] ?? 0) + (binds[einval] ?? 0), attempts, 'every bind is counted');
    // Each even round's bind came before A's close of that port.
    assert.ok((binds['0'] ?? 0) >= ROUNDS / 2, `B bound ${binds['0'] ?? 0} times`);
    assert.deepEqual(rcTallies(w, evtchnBindClose.B_SEND), { 0: binds['0'] }, "B's sends");
    assert.deepEqual(rcTallies(w, evtchnBindClose.B_CLOSE), { 0: binds['0'] }, "B's closes");
    assert.ok(samples > 0);
    // Every port either side made is closed again: only each domain's own (xenstore's, if any) remain.
    const left = (await host.ports()).filter((p) => (p.domid === a.domid || p.domid === b.domid) && !p.xen);
    assert.deepEqual(left, [], 'ports left open');
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([a, b]);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal((await host.ports()).length, ports0, 'ports leaked');
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it('set_version racing a map: -EBUSY while mapped, never a torn table (gnttab_set_version)', async () => {
    const ROUNDS = 240;
    const free0 = await host.freeFrames;
    const g = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const m = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const common = { sab, granter: g.domid, mapper: m.domid, rounds: ROUNDS };
    const mapper = host.spawn<number>(m, fixture('set-version'), { ...common, role: 'mapper' });
    const { result } = await sampled(
      host,
      host.spawn<{ ended: boolean; version: number }>(g, fixture('set-version'), {
        ...common,
        role: 'granter',
      }),
    );
    await mapper;
    const EBUSY = '-16';
    // Rounds 4k+1 hold a mapping, 4k+3 hold none, the others race.
    assert.deepEqual(rcTallies(w, setVersion.HOLD_RC), { [EBUSY]: ROUNDS / 4 }, 'set_version while mapped');
    assert.deepEqual(
      rcTallies(w, setVersion.QUIET_RC),
      { '0': ROUNDS / 4 },
      'set_version with nothing mapped',
    );
    const free = rcTallies(w, setVersion.FREE_RC);
    assert.deepEqual(
      Object.keys(free).filter((k) => k !== '0' && k !== EBUSY),
      [],
      `set_version answered only 0 or -EBUSY: ${JSON.stringify(free)}`,
    );
    assert.equal(
      Atomics.load(w, S.violations),
      0,
      'set_version succeeded under a live mapping, or a map showed the wrong page',
    );
    assert.equal(Atomics.load(w, S.torn), 0, 'the version Xen reported was not the one in effect');
    const maps = gntstTallies(w, setVersion.MAP);
    // A map between a switch (which clears the entry) and the grant again: the entry is not permit_access.
    assert.deepEqual(
      Object.keys(maps).filter((k) => k !== 'okay' && k !== 'general_error'),
      [],
      JSON.stringify(maps),
    );
    assert.deepEqual(gntstTallies(w, setVersion.UNMAP), { okay: maps.okay }, 'every mapping unmapped');
    assert.equal(result.ended, true, 'the grant could not be revoked after the mapper was done');
    assert.equal(await liveMappings(host, m.domid), 0);
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([g, m]);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  for (const version of [1, 2] as const) {
    it(`GNTTABOP_copy racing a revoke, v${version}: never the bytes of a revoked page (acquire_grant_for_copy)`, async (t) => {
      const ROUNDS = 500;
      const free0 = await host.freeFrames;
      const g = await host.createDomain({ kind: version === 1 ? 'pv' : 'hvm', memoryKiB: 1024 });
      const c = await host.createDomain({ kind: version === 1 ? 'hvm' : 'pv', memoryKiB: 1024 });
      const sab = new SharedArrayBuffer(SMP_WORDS * 4);
      const w = new Int32Array(sab);
      const common = { sab, version, granter: g.domid, copier: c.domid, rounds: ROUNDS };
      const copier = host.spawn<number>(c, fixture('copy-revoke'), { ...common, role: 'copier' });
      await sampled(host, host.spawn(g, fixture('copy-revoke'), { ...common, role: 'granter' }));
      await copier;
      const copies = gntstTallies(w, copyRevoke.COPY);
      t.diagnostic(`copies ${JSON.stringify(copies)}, refused revokes ${Atomics.load(w, S.count)}`);
      assert.equal(
        Atomics.load(w, S.violations),
        0,
        'a copy returned bytes of a revoked or half-written page',
      );
      // A copy of a revoked ref finds no permit_access entry (_set_status): general_error.
      assert.deepEqual(
        Object.keys(copies).filter((k) => k !== 'okay' && k !== 'general_error'),
        [],
        JSON.stringify(copies),
      );
      assert.ok((copies.okay ?? 0) > 0, 'no copy ever succeeded: the race was not run');
      assert.deepEqual(await host.checkInvariants(), []);
      await destroyAll([g, c]);
      assert.deepEqual(await host.checkInvariants(), []);
      assert.equal(await host.freeFrames, free0, 'frames leaked');
    });
  }
  for (const kind of ['pv', 'hvm'] as const) {
    const how = kind === 'pv' ? 'setup_table' : 'add_to_physmap';
    it(`growth racing a map: a ${kind} granter grows its table by ${how} (gnttab_grow_table)`, async (t) => {
      const FRAMES = 24;
      const free0 = await host.freeFrames;
      const g = await host.createDomain({ kind, memoryKiB: 1024, maxGrantFrames: FRAMES });
      const m = await host.createDomain({ kind: kind === 'pv' ? 'hvm' : 'pv', memoryKiB: 1024 });
      const sab = new SharedArrayBuffer(SMP_WORDS * 4);
      const w = new Int32Array(sab);
      const common = { sab, granter: g.domid, mapper: m.domid };
      const mapper = host.spawn<number>(m, fixture('growth'), { ...common, role: 'mapper' });
      const { result } = await sampled(
        host,
        host.spawn<{ frames: number; refs: number; ended: number; perFrame: number }>(g, fixture('growth'), {
          ...common,
          role: 'granter',
        }),
      );
      const rounds = await mapper;
      const probes = gntstTallies(w, growth.PROBE);
      t.diagnostic(
        `${rounds} mapper rounds, ${Atomics.load(w, S.count)} growths, probes ${JSON.stringify(probes)}`,
      );
      // Grown one frame at a time from 1 to the maximum, every ref but the 8 reserved granted.
      assert.equal(result.frames, FRAMES);
      assert.equal(Atomics.load(w, S.count), FRAMES - 1);
      assert.equal(result.refs, FRAMES * result.perFrame - 8);
      assert.equal(result.ended, result.refs, 'a ref could not be revoked after the mapper was done');
      assert.deepEqual(gntstTallies(w, growth.REF0), { okay: rounds }, 'ref 0 of frame 0 during growth');
      assert.deepEqual(gntstTallies(w, growth.NEWEST), { okay: rounds }, 'the newest published ref');
      assert.deepEqual(
        Object.keys(probes).filter((k) => k !== 'okay' && k !== 'bad_gntref' && k !== 'general_error'),
        [],
        JSON.stringify(probes),
      );
      assert.ok((probes.bad_gntref ?? 0) > 0, 'no probe past the table: the race was not run');
      const maps = rounds * 2 + (probes.okay ?? 0);
      assert.deepEqual(gntstTallies(w, growth.UNMAP), { okay: maps }, 'every mapping unmapped');
      assert.equal(Atomics.load(w, S.violations), 0, 'a mapping showed another page than the granted one');
      assert.equal(await liveMappings(host, m.domid), 0);
      assert.deepEqual(await host.checkInvariants(), []);
      await destroyAll([g, m]);
      assert.deepEqual(await host.checkInvariants(), []);
      assert.equal(await host.freeFrames, free0, 'frames leaked');
    });
  }
  it('a granter destroyed while another thread makes hypercalls on its table (domain_kill, §12)', async (t) => {
    const ROUNDS = 5;
    const free0 = await host.freeFrames;
    const u = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const user = host.spawn<number>(u, fixture('destroy'), { sab, role: 'user', user: u.domid });
    const gone: number[] = [];
    await sampled(
      host,
      (async () => {
        for (let round = 0; round < ROUNDS; round++) {
          const g = await host.createDomain({ kind: round % 2 === 0 ? 'hvm' : 'pv', memoryKiB: 1024 });
          // Its guest never returns: the destroy ends it (spawn rejects with GuestCrash).
          const granter = host.spawn(g, fixture('destroy'), { sab, role: 'granter', user: u.domid }).then(
            () => null,
            (e: unknown) => e,
          );
          await waitWord(w, S.ready, round + 1, user);
          Atomics.store(w, S.dom, g.domid);
          const p0 = Atomics.load(w, S.progress);
          Atomics.store(w, S.phase, 2 * round + 1);
          // The user is at it: destroy the granter under its hypercalls.
          await waitWord(w, S.progress, p0 + 20 + round * 7, user);
          await host.destroyDomain(g.domid);
          Atomics.store(w, S.phase, 2 * round + 2);
          assert.ok((await granter) instanceof GuestCrash);
          await waitWord(w, S.count, round + 1, user);
          gone.push(g.domid);
          const live = (await host.snapshot()).map((s) => s.domid);
          assert.ok(!live.includes(g.domid), `destroyed d${g.domid} is still on the host`);
          assert.equal(
            await liveMappings(host, u.domid),
            0,
            'the user holds a mapping of a destroyed domain',
          );
        }
      })(),
    );
    Atomics.store(w, S.stop, 1);
    assert.equal(await user, ROUNDS);
    const live = { map: gntstTallies(w, destroy.MAP_LIVE), copy: gntstTallies(w, destroy.COPY_LIVE) };
    t.diagnostic(`destroyed ${gone.join(', ')}; while live ${JSON.stringify(live)}`);
    // Before the destroy every map and copy succeeds; around it, a dying granter refuses them:
    // bad_domain once it is gone, general_error, or, while it is a zombie the user's mappings
    // keep, bad_page (get_paged_frame: its pages are relinquished, none is rd's any more).
    const refusals = ['okay', 'bad_domain', 'general_error', 'bad_page'];
    for (const [what, tallies] of Object.entries(live))
      assert.deepEqual(
        Object.keys(tallies).filter((k) => !refusals.includes(k)),
        [],
        `${what} while the granter lived: ${JSON.stringify(tallies)}`,
      );
    assert.ok((live.map.okay ?? 0) > 0 && (live.copy.okay ?? 0) > 0);
    assert.deepEqual(gntstTallies(w, destroy.MAP_GONE), { bad_domain: ROUNDS * destroy.AFTER });
    assert.deepEqual(gntstTallies(w, destroy.COPY_GONE), { bad_domain: ROUNDS * destroy.AFTER });
    assert.deepEqual(gntstTallies(w, destroy.UNMAP), { okay: live.map.okay }, 'every mapping unmapped');
    assert.equal(Atomics.load(w, S.violations), 0, 'a mapping of a destroyed domain, or of the wrong page');
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([u]);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it('domains created while another thread copies from them: each is found whole or not at all (domain_create)', async (t) => {
    const K = 12;
    const free0 = await host.freeFrames;
    // The allocator hands out the id after the last one it gave (domid_alloc):
    // a domain made and destroyed first tells which ids the next K get.
    const probe = await host.createDomain({ kind: 'pv', memoryKiB: 256 });
    await host.destroyDomain(probe.domid);
    const base = probe.domid + 1;
    const p = await host.createDomain({ kind: 'hvm', memoryKiB: 256 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    Atomics.store(w, S.dom, base + 1);
    const prober = host.spawn<number>(p, fixture('create'), { sab });
    await waitWord(w, S.ready, 1, prober);
    const made: number[] = [];
    for (let k = 0; k < K; k++) {
      Atomics.store(w, S.dom, base + 1 + k);
      const d = await host.createDomain({ kind: k % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 256 });
      made.push(d.domid);
      // Probed alive at least once before it goes.
      await waitWord(w, S.progress, Atomics.load(w, S.progress) + 16, prober);
      await host.destroyDomain(d.domid);
    }
    Atomics.store(w, S.stop, 1);
    const n = await prober;
    const probes = gntstTallies(w, create.PROBE);
    t.diagnostic(`${n} probes: ${JSON.stringify(probes)}`);
    assert.deepEqual(
      made,
      Array.from({ length: K }, (_, k) => base + 1 + k),
      'the ids domid_alloc gives',
    );
    assert.deepEqual(
      Object.keys(probes).filter((k) => k !== 'bad_domain' && k !== 'general_error'),
      [],
      `a probe found a domain not yet built: ${JSON.stringify(probes)}`,
    );
    assert.ok((probes.general_error ?? 0) >= K, 'a created domain was never probed while it lived');
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([p]);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it("six domains map each other's pages at once, the invariant check consistent throughout", async (t) => {
    const N = 6;
    const ROUNDS = 150;
    const free0 = await host.freeFrames;
    const doms: ThreadDomain[] = [];
    for (let i = 0; i < N; i++)
      doms.push(await host.createDomain({ kind: i % 2 === 0 ? 'pv' : 'hvm', memoryKiB: 1024 }));
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const domids = doms.map((d) => d.domid);
    const runs = doms.map((d, index) =>
      host.spawn<{ ended: number; page: number }>(d, fixture('many'), {
        sab,
        domids,
        index,
        version: index % 3 === 2 ? 2 : 1,
        rounds: ROUNDS,
      }),
    );
    await waitWord(w, S.ready, N, ...runs);
    const mfns: number[] = [];
    const before: ReturnType<typeof counts>[] = [];
    for (let i = 0; i < N; i++) {
      const mfn = await doms[i]!.machineFrameOf(Atomics.load(w, S.refs + i * MAX_SIDES + i));
      assert.ok(mfn !== null);
      mfns.push(mfn);
      before.push(counts(await host.pageInfo(mfn)));
    }
    Atomics.store(w, S.phase, 1);
    const { result, samples } = await sampled(host, Promise.all(runs));
    t.diagnostic(`${samples} invariant samples during the run`);
    const total = N * (N - 1) * ROUNDS;
    assert.deepEqual(gntstTallies(w, many.MAP), { okay: total });
    assert.deepEqual(gntstTallies(w, many.UNMAP), { okay: total });
    assert.equal(Atomics.load(w, S.violations), 0, 'a mapping showed another page than the granted one');
    assert.deepEqual(
      result.map((r) => r.ended),
      Array(N).fill(N - 1),
      'a grant could not be revoked once every domain was done',
    );
    for (let i = 0; i < N; i++) {
      // Back to the granter's own references (allocation; PV: its own writable PTE), none from a mapping.
      assert.deepEqual(counts(await host.pageInfo(mfns[i]!)), before[i], `d${domids[i]}'s page counts`);
      assert.equal(await liveMappings(host, domids[i]!), 0);
    }
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll(doms);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it('an HVM domain moves its grant frame between GFNs and out of its P2M (add_to_physmap, remove_from_physmap), dom0 too, while its grants are mapped and copied (gnttab_map_frame, get_paged_frame)', async (t) => {
    const ROUNDS = 300;
    const free0 = await host.freeFrames;
    const a = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const b = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const c = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const common = { sab, placer: a.domid, mapper: b.domid, copier: c.domid, rounds: ROUNDS };
    const placer = host.spawn<{ ended: number; k: number; frames: number }>(a, fixture('physmap'), {
      ...common,
      role: 'placer',
    });
    await waitWord(w, S.frames, 1, placer);
    const mfn = (await a.machineFrameOf(Atomics.load(w, S.page)))!;
    const before = counts(await host.pageInfo(mfn));
    const { result, samples } = await sampled(
      host,
      Promise.all([
        placer,
        host.spawn<number>(dom0, fixture('physmap'), { ...common, role: 'dom0' }),
        host.spawn<number>(b, fixture('physmap'), { ...common, role: 'mapper' }),
        host.spawn<number>(c, fixture('physmap'), { ...common, role: 'copier' }),
      ]),
    );
    const [end, dom0Rounds, mapperRounds, copierRounds] = result;
    const copies = gntstTallies(w, physmap.COPY);
    t.diagnostic(
      `dom0 ${dom0Rounds} rounds, mapper ${mapperRounds}, copier ${copierRounds} (${JSON.stringify(copies)}); ` +
        `remove Y ${JSON.stringify(rcTallies(w, physmap.REMOVE_Y))}, remove Z ${JSON.stringify(rcTallies(w, physmap.REMOVE_Z))}, ` +
        `${samples} invariant samples`,
    );
    const ENOENT = String(-XEN_ENOENT);
    // Every placement succeeds, wherever the frame was (XSA-379: it leaves the old GFN).
    assert.deepEqual(rcTallies(w, physmap.PLACE_X), { 0: ROUNDS });
    assert.deepEqual(rcTallies(w, physmap.PLACE_Y), { 0: ROUNDS });
    assert.deepEqual(rcTallies(w, physmap.PLACE_Z), { 0: dom0Rounds });
    // A removal finds nothing only where the other side had moved the frame away.
    for (const [block, what] of [
      [physmap.REMOVE_Y, 'remove Y'],
      [physmap.REMOVE_Z, 'remove Z'],
    ] as const) {
      const got = rcTallies(w, block);
      assert.deepEqual(
        Object.keys(got).filter((k) => k !== '0' && k !== ENOENT),
        [],
        `${what}: ${JSON.stringify(got)}`,
      );
    }
    // The granted page never moves: every map succeeds and shows its bytes.
    assert.deepEqual(gntstTallies(w, physmap.MAP), { okay: mapperRounds });
    assert.deepEqual(gntstTallies(w, physmap.UNMAP), { okay: mapperRounds });
    assert.equal(Atomics.load(w, S.violations), 0, 'a mapping showed another page than the granted one');
    // Through Y: the frame's bytes while it is there, bad_page while nothing is.
    assert.deepEqual(
      Object.keys(copies).filter((k) => k !== 'okay' && k !== 'bad_page'),
      [],
      JSON.stringify(copies),
    );
    assert.equal((copies.okay ?? 0) + (copies.bad_page ?? 0), copierRounds);
    assert.ok((copies.okay ?? 0) > 0, 'no copy found the frame at Y: the race was not run');
    assert.equal(Atomics.load(w, S.torn), 0, "a copy through Y returned other bytes than the frame's");
    assert.ok(samples > 0);
    // The first placement grew the table by the one frame; both refs revoke.
    assert.deepEqual(end, { ended: 2, k: end.k, frames: end.k + 1 });
    assert.deepEqual(counts(await host.pageInfo(mfn)), before, 'the page counts did not come back');
    assert.equal(await liveMappings(host, b.domid), 0);
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([a, b, c]);
    assert.deepEqual(await host.checkInvariants(), []);
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it("dom0 acquires a domU's grant frames (XENMEM_acquire_resource) while the domU grows its table and a third domain maps its newest grants (gnttab_acquire_resource, gnttab_grow_table)", async (t) => {
    const FRAMES = 12;
    const free0 = await host.freeFrames;
    const g = await host.createDomain({ kind: 'pv', memoryKiB: 1024, maxGrantFrames: FRAMES });
    const m = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const common = { sab, granter: g.domid, mapper: m.domid, frames: FRAMES };
    const { result, samples } = await sampled(
      host,
      Promise.all([
        host.spawn<{ refs: number; ended: number; frames: number; perFrame: number }>(
          g,
          fixture('acquire-growth'),
          {
            ...common,
            role: 'granter',
          },
        ),
        host.spawn<{ rounds: number; checked: number }>(dom0, fixture('acquire-growth'), {
          ...common,
          role: 'dom0',
        }),
        host.spawn<number>(m, fixture('acquire-growth'), { ...common, role: 'mapper' }),
      ]),
    );
    const [end, d0, mapperRounds] = result;
    t.diagnostic(
      `dom0 ${d0.rounds} rounds (${d0.checked} entries read), mapper ${mapperRounds}, ${samples} invariant samples`,
    );
    // Every frame index is below the maximum: each acquire succeeds (growing the table if need be),
    // each acquired frame maps, each PTE is zapped.
    assert.deepEqual(rcTallies(w, acquireGrowth.ACQ), { 0: d0.rounds });
    assert.deepEqual(rcTallies(w, acquireGrowth.FMAP), { 0: d0.rounds });
    assert.deepEqual(rcTallies(w, acquireGrowth.ZAP), { 0: d0.rounds });
    assert.ok(d0.checked > 0);
    assert.equal(
      Atomics.load(w, S.violations),
      0,
      "an entry read through an acquired frame was not G's grant, or a map showed another page",
    );
    assert.deepEqual(gntstTallies(w, acquireGrowth.MAP), { okay: mapperRounds });
    assert.deepEqual(gntstTallies(w, acquireGrowth.UNMAP), { okay: mapperRounds });
    // The table reached its maximum, whoever grew it; every ref but the 8 reserved was granted and revokes.
    assert.equal(end.frames, FRAMES);
    assert.equal(end.refs, FRAMES * end.perFrame - 8);
    assert.equal(end.ended, end.refs);
    assert.ok(samples > 0);
    assert.equal(await liveMappings(host, m.domid), 0);
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([g, m]);
    assert.deepEqual(await host.checkInvariants(), []);
    // dom0 zapped every PTE of G's frames: nothing keeps G a zombie.
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  it("dom0 maps a domU's page and status frame by update_va_mapping_otherdomain while the domU switches versions and a third domain maps the page (mod_l1_entry, get_page_from_l1e, gnttab_unpopulate_status_frames)", async (t) => {
    const ROUNDS = 240;
    const free0 = await host.freeFrames;
    const g = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const m = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const sab = new SharedArrayBuffer(SMP_WORDS * 4);
    const w = new Int32Array(sab);
    const common = { sab, granter: g.domid, mapper: m.domid, rounds: ROUNDS };
    const granter = host.spawn<{ back: number; ended: boolean }>(g, fixture('foreign-map'), {
      ...common,
      role: 'granter',
    });
    await waitWord(w, S.ready, 1, granter);
    const mfn = Atomics.load(w, S.ref2);
    assert.equal(await g.machineFrameOf(Atomics.load(w, S.page)), mfn);
    const before = counts(await host.pageInfo(mfn));
    const { result, samples } = await sampled(
      host,
      Promise.all([
        granter,
        host.spawn<{ rounds: number; pZaps: number }>(dom0, fixture('foreign-map'), {
          ...common,
          role: 'dom0',
        }),
        host.spawn<number>(m, fixture('foreign-map'), { ...common, role: 'mapper' }),
      ]),
    );
    const [end, { rounds: dom0Rounds, pZaps }, mapperRounds] = result;
    t.diagnostic(
      `dom0 ${dom0Rounds} rounds, mapper ${mapperRounds}; set_version ${JSON.stringify(rcTallies(w, foreignMap.SETVER))}, ` +
        `status maps ${JSON.stringify(rcTallies(w, foreignMap.STATUS_MAP))}, acquires ${JSON.stringify(rcTallies(w, foreignMap.ACQ))}`,
    );
    const EBUSY = '-16';
    const EINVAL = String(-XEN_EINVAL);
    const holds = Array.from({ length: ROUNDS }, (_, r) => r).filter(foreignMap.isHoldRound).length;
    // While dom0 maps the status frame, its reference is more than the allocation's: PV gets -EBUSY.
    assert.deepEqual(
      rcTallies(w, foreignMap.HOLD_RC),
      { [EBUSY]: holds },
      'set_version(1) under a status mapping',
    );
    const onlyKeys = (block: number, allowed: string[], what: string) => {
      const got = rcTallies(w, block);
      assert.deepEqual(
        Object.keys(got).filter((k) => !allowed.includes(k)),
        [],
        `${what}: ${JSON.stringify(got)}`,
      );
      return got;
    };
    // Free rounds: a switch is refused only while one of dom0's status mappings is live.
    onlyKeys(foreignMap.SETVER, ['0', EBUSY], 'set_version');
    // The page never goes: every foreign map of it succeeds, and shows its bytes.
    assert.deepEqual(rcTallies(w, foreignMap.OTHER_MAP), { 0: dom0Rounds - holds }, 'maps of the page');
    // The status frame exists in v2 only; one freed after its MFN was read could not pin (-EBUSY).
    const acq = onlyKeys(foreignMap.ACQ, ['0', EINVAL], 'acquire_resource of the status frame');
    const smaps = onlyKeys(foreignMap.STATUS_MAP, ['0', EBUSY], 'maps of the status frame');
    assert.equal(
      (smaps['0'] ?? 0) + (smaps[EBUSY] ?? 0),
      acq['0'] ?? 0,
      'every acquired frame was mapped or refused',
    );
    // Every zap of a PTE succeeds: each status mapping's, each hold round's, the page's.
    assert.deepEqual(rcTallies(w, foreignMap.ZAP), { 0: (smaps['0'] ?? 0) + holds + pZaps }, 'zaps');
    assert.deepEqual(
      gntstTallies(w, foreignMap.M_MAP),
      { okay: mapperRounds },
      "the third domain's maps of ref 7",
    );
    assert.deepEqual(gntstTallies(w, foreignMap.M_UNMAP), { okay: mapperRounds }, 'and its unmaps');
    assert.equal(
      Atomics.load(w, S.violations),
      0,
      'a mapping showed another page, or a hold-round map failed',
    );
    assert.equal(Atomics.load(w, S.torn), 0, 'the version Xen reported was not the one in effect');
    assert.deepEqual(
      end,
      { back: 0, ended: true },
      'back to v1 and the revoke of ref 7, once the others were done',
    );
    assert.ok(samples > 0);
    assert.deepEqual(counts(await host.pageInfo(mfn)), before, 'the page counts did not come back');
    assert.equal(await liveMappings(host, m.domid), 0);
    assert.deepEqual(await pinOf(host, g.domid, foreignMap.REF), { pin: 0, status: 0 });
    assert.deepEqual(await host.checkInvariants(), []);
    await destroyAll([g, m]);
    assert.deepEqual(await host.checkInvariants(), []);
    // dom0 zapped every PTE of G's frames: nothing keeps G a zombie.
    assert.equal(await host.freeFrames, free0, 'frames leaked');
  });
  for (const version of [1, 2] as const) {
    it(`unmap_and_replace racing the granter's revoke and another mapper of the page, v${version} (replace_grant_pv_mapping, steal_linear_address, unmap_common)`, async (t) => {
      const ROUNDS = 400;
      const free0 = await host.freeFrames;
      const g = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const u = await host.createDomain({ kind: 'pv', memoryKiB: 1024 });
      const c = await host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
      const sab = new SharedArrayBuffer(SMP_WORDS * 4);
      const w = new Int32Array(sab);
      const common = { sab, version, granter: g.domid, user: u.domid, other: c.domid, rounds: ROUNDS };
      const granter = host.spawn<{ endedC: boolean }>(g, fixture('unmap-replace'), {
        ...common,
        role: 'granter',
      });
      const user = host.spawn<number>(u, fixture('unmap-replace'), { ...common, role: 'user' });
      const other = host.spawn<number>(c, fixture('unmap-replace'), { ...common, role: 'other' });
      await waitWord(w, S.ready, 3, granter, user, other);
      const pMfn = await g.machineFrameOf(Atomics.load(w, S.page));
      const qMfn = await u.machineFrameOf(Atomics.load(w, S.dom));
      assert.ok(pMfn !== null && qMfn !== null);
      const pBefore = counts(await host.pageInfo(pMfn));
      const qBefore = counts(await host.pageInfo(qMfn));
      Atomics.store(w, unmapReplace.GO, 1);
      const { result, samples } = await sampled(host, Promise.all([granter, user, other]));
      const [end, , otherRounds] = result;
      const maps = gntstTallies(w, unmapReplace.U_MAP);
      t.diagnostic(
        `U's maps ${JSON.stringify(maps)}, refused revokes ${Atomics.load(w, S.count)}, C ${otherRounds} rounds`,
      );
      // A map of a ref revoked since U read it finds no permit_access entry (_set_status): general_error.
      assert.deepEqual(
        Object.keys(maps).filter((k) => k !== 'okay' && k !== 'general_error'),
        [],
        JSON.stringify(maps),
      );
      const ok = maps.okay ?? 0;
      assert.ok(ok > 0, 'no map ever succeeded: the race was not run');
      // Only U unmaps its handles, and the granter cannot take a pinned mapping away: every replace is okay.
      assert.deepEqual(gntstTallies(w, unmapReplace.REPLACE), { okay: ok }, 'unmap_and_replace');
      // The handle was freed in phase 1 of the first (XSA-218): the same handle again is bad_handle.
      assert.deepEqual(gntstTallies(w, unmapReplace.AGAIN), { bad_handle: ok }, 'the same handle again');
      assert.deepEqual(
        rcTallies(w, unmapReplace.RESTORE),
        { 0: 2 * ok },
        "Q's PTE back, the grant's address zapped",
      );
      assert.deepEqual(gntstTallies(w, unmapReplace.C_MAP), { okay: otherRounds }, "C's maps");
      assert.deepEqual(gntstTallies(w, unmapReplace.C_UNMAP), { okay: otherRounds }, "C's unmaps");
      assert.equal(
        Atomics.load(w, S.violations),
        0,
        "a mapping showed the wrong page, or the replaced PTE did not hold Q's frame",
      );
      assert.deepEqual(end, { endedC: true });
      assert.ok(samples > 0);
      assert.deepEqual(
        counts(await host.pageInfo(pMfn)),
        pBefore,
        "the granted page's counts did not come back",
      );
      assert.deepEqual(counts(await host.pageInfo(qMfn)), qBefore, "Q's counts did not come back");
      assert.equal(await liveMappings(host, u.domid), 0);
      assert.equal(await liveMappings(host, c.domid), 0);
      assert.deepEqual(await host.checkInvariants(), []);
      await destroyAll([g, u, c]);
      assert.deepEqual(await host.checkInvariants(), []);
      assert.equal(await host.freeFrames, free0, 'frames leaked');
    });
  }
  it('update_va_mapping zapping grant PTEs while the granter revokes and another domain maps the page: the grant side keeps its handles and pins (mod_l1_entry, put_page_from_l1e, replace_grant_pv_mapping)', async () => {
    await implicitUnmapRace(host, false);
  });
  it('the same in a debug build: each zap injects #GP into the zapping domain from its own thread (put_page_from_l1e, quirk §15.19)', async () => {
    const debugHost = await WorkerHost.start({ memoryMiB: 32, gnttab: { debugBuild: true } });
    try {
      await debugHost.createDomain({ kind: 'pv', memoryKiB: 512 });
      await implicitUnmapRace(debugHost, true);
    } finally {
      await debugHost.shutdown();
    }
  });
});
