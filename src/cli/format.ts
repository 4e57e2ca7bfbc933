// Plain-text rendering for the CLI: aligned columns that fit the terminal (80
// columns when output is not a terminal), plurals and articles, sizes.
import type { DecodedEntry } from '../host/decode.ts';
import type { TableSnapshot } from '../host/snapshot.ts';

export function hex(n: number, width = 0): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
}

/** The width to fit: the terminal's when stdout is one, else $COLUMNS, else 80. */
export function outputWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  if (stream.isTTY === true && (stream.columns ?? 0) > 0) return stream.columns!;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : 80;
}

/** "1 status frame", "2 status frames". */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/** "a pv", "an hvm": for abbreviations, read letter by letter (the letters whose names start with a vowel). */
export function article(abbrev: string): string {
  return `${/^[aefhilmnorsx]/i.test(abbrev) ? 'an' : 'a'} ${abbrev}`;
}

/** Bytes with a binary unit: "256.0 KiB", "64.0 MiB", "3.0 GiB". */
export function sizeText(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/**
 * Breaks prose into lines of at most `width` columns at spaces; continuation
 * lines start with `indent`. A word longer than a line stays whole.
 */
export function wrap(text: string, width: number, indent = '  '): string {
  const lead = /^ */.exec(text)![0];
  const words = text.slice(lead.length).split(' ');
  const lines: string[] = [];
  let line = lead;
  for (const w of words) {
    const start = lines.length === 0 ? lead : indent;
    if (line.length > start.length && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else {
      line = line.length > start.length ? `${line} ${w}` : line + w;
    }
  }
  lines.push(line);
  return lines.join('\n');
}

/** Aligns rows of cells into columns. */
export function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

function widest(text: string): number {
  return Math.max(...text.split('\n').map((l) => l.length));
}

/** Short names for the narrow form of a table: the entry type apart, reading/writing left to status. */
const SHORT: Record<string, string> = {
  permit_access: 'access',
  accept_transfer: 'transfer',
  transitive: 'transitive',
  invalid: 'invalid',
  readonly: 'ro',
  sub_page: 'sub',
  transfer_committed: 'committed',
  transfer_completed: 'completed',
};

function shortFlags(names: readonly string[], keepType: boolean): { type: string; flags: string } {
  const [type = 'invalid', ...rest] = names;
  const flags = rest
    .filter((n) => n !== 'reading' && n !== 'writing')
    .map((n) => SHORT[n] ?? n.toLowerCase())
    .join('|');
  return { type: keepType ? (SHORT[type] ?? type) : type, flags: flags || '-' };
}

function statusText(status: number): string {
  return [status & 0x8 ? 'reading' : '', status & 0x10 ? 'writing' : ''].filter(Boolean).join('|') || '-';
}

function kindText(t: TableSnapshot): string {
  const what = [t.kind === 'unknown' ? '' : t.kind, t.dying ? 'dying' : ''].filter(Boolean).join(', ');
  return what === '' ? '' : ` (${what})`;
}

/**
 * One table: the header, each entry in use (shared side and active side), and
 * the mappings the domain holds. Fits `width` columns: when the full form is
 * wider, the entry type gets a column of its own and flags their short names.
 */
export function formatTable(t: TableSnapshot, width = 80): string {
  const head = wrap(
    `grant table of d${t.domid}${kindText(t)}: v${t.version}, ` +
      `${t.frames} of ${plural(t.maxFrames, 'frame')}` +
      `${t.version === 2 ? `, ${plural(t.statusFrames, 'status frame')}` : ''}, ` +
      `${t.maptrackFrames} of ${plural(t.maxMaptrackFrames, 'maptrack frame')}`,
    width,
  );
  const lines = [head];
  if (t.entries.length === 0) lines.push('  no entries in use');
  else {
    const frameOf = (e: TableSnapshot['entries'][number]) =>
      e.transDomid !== undefined ? `d${e.transDomid}:ref ${e.frame}` : hex(e.frame);
    const mfnOf = (e: TableSnapshot['entries'][number]) => (e.active ? hex(e.active.mfn) : '-');
    const pinOf = (e: TableSnapshot['entries'][number]) =>
      e.active
        ? `${e.active.pins.hostWrite}/${e.active.pins.hostRead}/${e.active.pins.devWrite}/${e.active.pins.devRead}`
        : '-';
    const wide = columns([
      ['  ref', 'grantee', 'frame', 'flags', 'status', 'pin (hw/hr/dw/dr)', 'mfn'],
      ...t.entries.map((e) => [
        `  ${e.ref}`,
        `d${e.domid}`,
        frameOf(e),
        e.flagNames.join('|'),
        statusText(e.status),
        pinOf(e),
        mfnOf(e),
      ]),
    ]);
    const narrow = () =>
      columns([
        ['  ref', 'grantee', 'frame', 'type', 'flags', 'status', 'hw/hr/dw/dr', 'mfn'],
        ...t.entries.map((e) => {
          const s = shortFlags(e.flagNames, true);
          return [
            `  ${e.ref}`,
            `d${e.domid}`,
            frameOf(e),
            s.type,
            s.flags,
            statusText(e.status),
            pinOf(e),
            mfnOf(e),
          ];
        }),
      ]);
    lines.push(widest(wide) <= width ? wide : narrow());
  }
  if (t.mappings.length > 0) {
    lines.push(`  mappings held by d${t.domid}:`);
    lines.push(
      columns([
        ['    handle', 'granter', 'ref', 'flags'],
        ...t.mappings.map((m) => [`    ${m.handle}`, `d${m.granter}`, String(m.ref), m.flags.join('|')]),
      ]),
    );
  }
  return lines.join('\n');
}

/**
 * One table as Xen's grant-table debug key ('g', gnttab_usage_print) prints it:
 * the active entries (pinned refs) with their shared fields.
 */
export function formatXenDebugKey(t: TableSnapshot): string {
  // The column headings come first, for every domain, as gnttab_usage_print prints them.
  const lines = [
    '      -------- active --------       -------- shared --------',
    '[ref] localdom mfn      pin          localdom gmfn     flags',
    `grant-table for remote d${t.domid} (v${t.version})`,
    `  ${t.frames} frames (${t.maxFrames} max), ${t.maptrackFrames} maptrack frames (${t.maxMaptrackFrames} max)`,
  ];
  let first = true;
  for (const e of t.entries) {
    if (e.active === undefined) continue;
    first = false;
    // v1: the entry's flags; v2: its status word. MFN as PRI_mfn ("05lx").
    const status = t.version === 1 ? e.flags : e.status;
    lines.push(
      `[0x${e.ref.toString(16).padStart(3, '0')}]  ${String(e.active.grantee).padStart(5)} 0x${e.active.mfn.toString(16).padStart(5, '0')} ` +
        `0x${e.active.pin.toString(16).padStart(8, '0')}      ${String(e.domid).padStart(5)} 0x${e.frame.toString(16).padStart(6, '0')} ` +
        `0x${status.toString(16).padStart(2, '0')}`,
    );
  }
  if (first) lines.push('no active grant table entries');
  return lines.join('\n');
}

/** Decoded entries of a frame dump as a table, fitting `width` columns as formatTable does. */
export function formatDecoded(entries: readonly DecodedEntry[], layout: 1 | 2, width = 80): string {
  if (entries.length === 0) return `no valid entries (layout v${layout})`;
  const render = (short: boolean) => {
    const rows = [['ref', 'type', 'domid', 'frame / target', 'flags', 'status']];
    for (const e of entries) {
      const target = e.transitive
        ? `d${e.transitive.domid}:ref ${e.transitive.gref}`
        : `${hex(e.frame ?? 0)}${e.subPage ? ` [${e.subPage.offset}+${e.subPage.length}]` : ''}`;
      rows.push([
        String(e.ref),
        e.type,
        `d${e.domid}`,
        target,
        short ? shortFlags(e.flagNames, false).flags : e.flagNames.join('|'),
        e.status.join('|') || '-',
      ]);
    }
    return columns(rows);
  };
  const wide = render(false);
  return widest(wide) <= width ? wide : render(true);
}
