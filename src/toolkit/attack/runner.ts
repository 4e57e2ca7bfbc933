// attack(): a victim module and the adversary on either side of one
// connection, each domain in its own worker thread, then the verdict: did the
// victim stay alive (or throw, or hang), did it expose memory it never wrote,
// and what did it still hold once the attacker was dead and the toolstack
// had said "closed" (grants, mappings, ports, xenstore keys and watches).
import { GTF_type_mask } from '../../abi/flags.ts';
import { GuestCrash, type ThreadDomain, WorkerHost } from '../../host/worker-host.ts';
import type { XsClient } from '../../io/xenstore/api.ts';
import type { HarnessArgs, HarnessResult } from './harness.ts';
import { type AttackLogEntry, parseConsole } from './log.ts';
import type { AttackerArgs } from './peer.ts';
import { AttackRng } from './rng.ts';
import { type AttackProtocol, type AttackRole, KEY_STATE, STATE_CLOSED, type VictimArgs } from './victim.ts';

/** What attack() takes: the victim module, the side to attack from, the protocol, moves, time and seed. */
export interface AttackOptions {
  /** The victim module (a path or file URL): see victim.ts for its contract. */
  victim: string | URL;
  /** The attacker's side; the victim plays the other. */
  as: AttackRole;
  /** What the two speak over the connection (default 'ring'). */
  protocol?: AttackProtocol;
  /** Seed of the attacker's choices (default 1). */
  seed?: number;
  /**
   * Wall-clock budget of the attack in ms from the attacker's first move
   * (default 10 000). Without `moves` the attacker is killed at a moment the
   * seed picks in the second half of it.
   */
  timeMs?: number;
  /**
   * The attacker dies by itself at a move the seed picks between moves/2 and
   * moves (reproducible whatever the machine's speed); `timeMs` still bounds it.
   */
  moves?: number;
  /** How long the victim has to release everything and return after "closed" (default 5000 ms). */
  graceMs?: number;
  /** Kind of the victim's domain (default hvm; the attacker's kind comes from the seed). */
  victimKind?: 'pv' | 'hvm';
  /** The grant-table layout the victim is asked to use (default 1). */
  gnttabVersion?: 1 | 2;
  /** Fill the victim's RAM with the canary before it runs (default true). */
  poison?: boolean;
  /** Called about every 100 ms while the attack runs. */
  onProgress?: (p: { elapsedMs: number; moves: number }) => void;
}

export type FindingKind =
  | 'threw'
  | 'hung'
  | 'exposed'
  | 'leaked-grants'
  | 'leaked-mappings'
  | 'leaked-ports'
  | 'leaked-xenstore'
  | 'invariant';

/** One thing the attacker caught the victim at (a crash, a leak, a broken invariant, ...). */
export interface AttackFinding {
  kind: FindingKind;
  message: string;
}

/** What attack() found: the run's parameters (seed and options, to run it again) and its findings. */
export interface AttackReport {
  victim: string;
  as: AttackRole;
  protocol: AttackProtocol;
  seed: number;
  /** The options that shape the run (give them again, with the seed, for the same moves). */
  options: {
    moves: number | null;
    timeMs: number;
    graceMs: number;
    victimKind: 'pv' | 'hvm';
    gnttabVersion: 1 | 2;
  };
  /** No finding. */
  ok: boolean;
  findings: AttackFinding[];
  attacker: {
    domid: number;
    kind: 'pv' | 'hvm';
    gnttabVersion: 1 | 2;
    /** died: at the move its seed chose; killed: by the runner; crashed: a bug of the attacker (see error). */
    end: 'died' | 'killed' | 'crashed';
    dieAt: number | null;
    /** The number of its last move. */
    moves: number;
    error?: string;
  };
  victimOutcome: {
    domid: number;
    kind: 'pv' | 'hvm';
    status: 'returned' | 'threw' | 'hung';
    result?: unknown;
    error?: string;
    console: readonly string[];
  };
  /** The attacker's moves, in order. */
  log: AttackLogEntry[];
  elapsedMs: number;
}

function ownUrl(name: string): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./${name}.${ext}`, import.meta.url);
}

const BUILT_IN: Record<string, AttackProtocol> = { ring: 'ring', vchan: 'vchan' };

/** The built-in victims (gnttab's own ring and vchan drivers, both sides), by name. */
export function builtInVictim(name: string): { url: URL; protocol: AttackProtocol } | null {
  const protocol = BUILT_IN[name];
  return protocol === undefined ? null : { url: ownUrl(`victims/${name}`), protocol };
}

function moduleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  const b = builtInVictim(m);
  if (b !== null) return b.url.href;
  return m.startsWith('file:') ? m : new URL(m, `file://${process.cwd()}/`).href;
}

/** Every node at and below `path` with its owner. */
async function tree(
  xs: XsClient,
  path: string,
  out = new Map<string, number>(),
): Promise<Map<string, number>> {
  try {
    const perms = await xs.getPerms(path);
    out.set(path, perms[0]?.domid ?? -1);
    for (const c of await xs.directory(path)) await tree(xs, `${path}/${c}`, out);
  } catch {
    // removed while we looked
  }
  return out;
}

/** Longest wait for the attacker's thread to make its first move. */
const STARTUP_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs a malicious peer against a victim frontend or backend module (`gnttab
 * attack`): random hostile moves over the protocol, then a check for crashes,
 * leaked grants, mappings, ports and xenstore keys, and broken invariants.
 */
export async function attack(o: AttackOptions): Promise<AttackReport> {
  const t0 = performance.now();
  const seed = o.seed ?? 1;
  const timeMs = o.timeMs ?? 10_000;
  const graceMs = o.graceMs ?? 5000;
  const builtIn = typeof o.victim === 'string' ? builtInVictim(o.victim) : null;
  const protocol = o.protocol ?? builtIn?.protocol ?? 'ring';
  const rng = new AttackRng((seed ^ 0x5eed_a77a) >>> 0);
  const attackerKind = rng.pick(['pv', 'hvm'] as const);
  const attackerVersion = rng.pick([1, 2] as const);
  const dieAt = o.moves !== undefined ? rng.range(Math.ceil(o.moves / 2), Math.max(1, o.moves)) : null;
  const killAt = timeMs * (0.5 + 0.5 * (rng.u32() / 0x1_0000_0000));
  const victimKind = o.victimKind ?? 'hvm';

  const wh = await WorkerHost.start({ memoryMiB: 64, xenstore: true });
  try {
    // dom0 is the toolstack's: privileged, it runs no code, so neither side is.
    await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const victim: ThreadDomain = await wh.createDomain({ kind: victimKind, memoryKiB: 4096 });
    const att: ThreadDomain = await wh.createDomain({ kind: attackerKind, memoryKiB: 4096 });
    const fe = o.as === 'frontend' ? att : victim;
    const be = o.as === 'frontend' ? victim : att;
    const xs = wh.xenstore!;
    // The connection's directory is the toolstack's (dom0's), so that it stays
    // readable for the victim once the attacker, and its permissions, are gone.
    const path = `/local/domain/0/attack/${fe.domid}-${be.domid}`;
    await xs.write(path, '');
    await xs.setPerms(path, [
      { domid: 0, perm: 'n' },
      { domid: fe.domid, perm: 'b' },
      { domid: be.domid, perm: 'b' },
    ]);
    const home = `/local/domain/${victim.domid}`;
    const baseline = await tree(xs, home);

    const victimArgs: VictimArgs = {
      role: o.as === 'frontend' ? 'backend' : 'frontend',
      protocol,
      peer: att.domid,
      path,
      gnttabVersion: o.gnttabVersion ?? 1,
    };
    const harnessArgs: HarnessArgs = {
      module: moduleUrl(o.victim),
      victim: victimArgs,
      poison: o.poison ?? true,
    };
    const attackerArgs: AttackerArgs = {
      role: o.as,
      protocol,
      peer: victim.domid,
      path,
      seed,
      dieAt: dieAt ?? 0,
      gnttabVersion: attackerVersion,
      connectMs: Math.min(5000, timeMs / 2),
    };

    type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
    let victimDone: Settled<HarnessResult> | null = null;
    let attackerDone: Settled<unknown> | null = null;
    const victimP = wh.spawn<HarnessResult>(victim, ownUrl('harness'), harnessArgs).then(
      (value) => {
        victimDone = { ok: true, value };
      },
      (error: unknown) => {
        victimDone = { ok: false, error };
      },
    );
    const attackerP = wh.spawn(att, ownUrl('attacker'), attackerArgs).then(
      (value) => {
        attackerDone = { ok: true, value };
      },
      (error: unknown) => {
        attackerDone = { ok: false, error };
      },
    );
    const moves = () => parseConsole(wh.consoleOf(att.domid)).log.length;
    const elapsed = () => performance.now() - t0;
    // The budget counts from the attacker's first move, not from the threads'
    // start (loading a module takes seconds on a busy machine).
    const limit = dieAt !== null ? timeMs : killAt;
    const spawned = performance.now();
    let started: number | null = null;
    while (attackerDone === null && victimDone === null) {
      if (started === null && wh.consoleOf(att.domid).length > 0) started = performance.now();
      const since = started ?? spawned;
      if (performance.now() - since >= (started === null ? STARTUP_MS : limit)) break;
      await sleep(50);
      o.onProgress?.({ elapsedMs: elapsed(), moves: moves() });
    }
    let end: AttackReport['attacker']['end'] = 'killed';
    let attackerError: string | undefined;
    if (attackerDone === null) {
      await wh.destroyDomain(att.domid);
      await attackerP;
    } else {
      const d = attackerDone as Settled<unknown>;
      const msg = d.ok ? 'returned' : d.error instanceof Error ? d.error.message : String(d.error);
      if (/AttackerDeath|the attacker dies at move/.test(msg)) end = 'died';
      else {
        end = 'crashed';
        attackerError = msg;
      }
    }
    // The toolstack tells the victim its peer is gone.
    await xs.write(`${path}/${KEY_STATE}`, STATE_CLOSED);
    const graceEnd = performance.now() + graceMs;
    while (victimDone === null && performance.now() < graceEnd) await sleep(20);

    const findings: AttackFinding[] = [];
    const outcome: AttackReport['victimOutcome'] = {
      domid: victim.domid,
      kind: victimKind,
      status: 'returned',
      console: [],
    };
    const done = victimDone as Settled<HarnessResult> | null;
    if (done === null) {
      outcome.status = 'hung';
      findings.push({
        kind: 'hung',
        message: `d${victim.domid} had not returned ${graceMs} ms after ${path}/state said closed`,
      });
      await wh.destroyDomain(victim.domid);
      await victimP;
    } else if (!done.ok) {
      outcome.status = 'threw';
      const err = done.error;
      outcome.error = err instanceof GuestCrash || err instanceof Error ? err.message : String(err);
      findings.push({ kind: 'threw', message: outcome.error.split('\n').slice(0, 3).join('\n') });
    } else {
      outcome.result = done.value.result;
      // Everything the victim still holds now is a leak: its peer is dead and it has returned.
      const t = (await wh.snapshot()).find((s) => s.domid === victim.domid);
      const used = t?.entries.filter((e) => e.ref >= 8 && (e.flags & GTF_type_mask) !== 0) ?? [];
      if (used.length > 0)
        findings.push({
          kind: 'leaked-grants',
          message: `${used.length} grant entr${used.length === 1 ? 'y' : 'ies'} still in use (refs ${used
            .slice(0, 8)
            .map((e) => e.ref)
            .join(' ')})`,
        });
      const maps = t?.mappings ?? [];
      if (maps.length > 0)
        findings.push({
          kind: 'leaked-mappings',
          message: `${maps.length} foreign mapping(s) still held (${maps
            .slice(0, 4)
            .map((m) => `ref ${m.ref} of d${m.granter}`)
            .join(', ')})`,
        });
      if (done.value.openPorts.length > 0)
        findings.push({
          kind: 'leaked-ports',
          message: `event channel port(s) ${done.value.openPorts.join(' ')} still open`,
        });
      const after = await tree(xs, home);
      for (const [n, owner] of await tree(xs, path)) after.set(n, owner);
      const keys = [...after]
        .filter(([n, owner]) => !baseline.has(n) && owner === victim.domid)
        .map(([n]) => n);
      if (keys.length > 0)
        findings.push({
          kind: 'leaked-xenstore',
          message: `xenstore node(s) it wrote still there: ${keys.slice(0, 4).join(' ')}`,
        });
      const conn = (await wh.xenstoreStats()).connections.find((c) => c.domid === victim.domid);
      if (conn !== undefined && (conn.watches > 0 || conn.transactions > 0))
        findings.push({
          kind: 'leaked-xenstore',
          message: `${conn.watches} xenstore watch(es) and ${conn.transactions} transaction(s) left open`,
        });
      await wh.destroyDomain(victim.domid);
    }
    outcome.console = wh.consoleOf(victim.domid);
    const { log, sightings } = parseConsole(wh.consoleOf(att.domid));
    for (const s of sightings) findings.push({ kind: 'exposed', message: s.detail });
    for (const v of await wh.checkInvariants()) findings.push({ kind: 'invariant', message: v });
    const attacker: AttackReport['attacker'] = {
      domid: att.domid,
      kind: attackerKind,
      gnttabVersion: attackerVersion,
      end,
      dieAt,
      moves: log.reduce((m, e) => Math.max(m, e.step), 0),
    };
    if (attackerError !== undefined) attacker.error = attackerError;
    return {
      victim: typeof o.victim === 'string' ? o.victim : o.victim.href,
      as: o.as,
      protocol,
      seed,
      options: {
        moves: o.moves ?? null,
        timeMs,
        graceMs,
        victimKind,
        gnttabVersion: victimArgs.gnttabVersion,
      },
      ok: findings.length === 0,
      findings,
      attacker,
      victimOutcome: outcome,
      log,
      elapsedMs: performance.now() - t0,
    };
  } finally {
    await wh.shutdown();
  }
}
