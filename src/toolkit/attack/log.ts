// The adversary's log: one line per move on the attacker domain's console, so
// that the log survives the attacker's death at any point (the host keeps the
// console of a destroyed domain).

/** One move of the attacker. */
export interface AttackLogEntry {
  /** Move number, from 1 (0: setup). */
  step: number;
  /** What kind of move ("rewrite-entry", "bad-response-id", ...). */
  action: string;
  /** What exactly, in words ("ref 9: domid 2 -> 32752 while mapped"). */
  detail: string;
  /** What came back: a hypercall's rc or status name, or a note. */
  result?: string;
}

/** Console lines of the attacker that carry a log entry start with this. */
export const LOG_PREFIX = 'attack ';

/** What the attacker reports beside its moves (the victim exposed data, say). */
export interface AttackSighting {
  kind: 'exposed';
  detail: string;
}

export function logLine(e: AttackLogEntry): string {
  return `${LOG_PREFIX}${JSON.stringify(e)}`;
}

export const SIGHTING_PREFIX = 'attack-sighting ';

export function sightingLine(s: AttackSighting): string {
  return `${SIGHTING_PREFIX}${JSON.stringify(s)}`;
}

/** The log entries and sightings in a console (other lines are ignored). */
export function parseConsole(lines: readonly string[]): {
  log: AttackLogEntry[];
  sightings: AttackSighting[];
} {
  const log: AttackLogEntry[] = [];
  const sightings: AttackSighting[] = [];
  for (const l of lines) {
    try {
      if (l.startsWith(LOG_PREFIX)) log.push(JSON.parse(l.slice(LOG_PREFIX.length)) as AttackLogEntry);
      else if (l.startsWith(SIGHTING_PREFIX))
        sightings.push(JSON.parse(l.slice(SIGHTING_PREFIX.length)) as AttackSighting);
    } catch {
      // a line cut short by the attacker's death
    }
  }
  return { log, sightings };
}

/** One entry in 80 columns or fewer. */
export function formatEntry(e: AttackLogEntry): string {
  const s = `${String(e.step).padStart(5)}  ${e.action}: ${e.detail}${e.result !== undefined ? ` -> ${e.result}` : ''}`;
  return s.length > 80 ? `${s.slice(0, 79)}…` : s;
}
