// Plain-text rendering for the CLI: aligned columns, no colour when not a TTY.
import type { DecodedEntry } from '../host/decode.ts';
import type { TableSnapshot } from '../host/snapshot.ts';

export function hex(n: number, width = 0): string {
  return `0x${n.toString(16).padStart(width, '0')}`;
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

/** One table as Xen's debug key prints it: active side and shared side per entry in use. */
export function formatTable(t: TableSnapshot): string {
  const head =
    `grant table of d${t.domid} (${t.kind}${t.dying ? ', dying' : ''}): v${t.version}, ` +
    `${t.frames} of ${t.maxFrames} frames${t.version === 2 ? `, ${t.statusFrames} status frames` : ''}, ` +
    `${t.maptrackFrames} of ${t.maxMaptrackFrames} maptrack frames`;
  const lines = [head];
  if (t.entries.length === 0) lines.push('  no entries in use');
  else {
    const rows = [['  ref', 'grantee', 'frame', 'flags', 'status', 'pin (hw/hr/dw/dr)', 'mfn']];
    for (const e of t.entries) {
      const status =
        [e.status & 0x8 ? 'reading' : '', e.status & 0x10 ? 'writing' : ''].filter(Boolean).join('|') || '-';
      const pin = e.active
        ? `${e.active.pins.hostWrite}/${e.active.pins.hostRead}/${e.active.pins.devWrite}/${e.active.pins.devRead}`
        : '-';
      const frame = e.transDomid !== undefined ? `d${e.transDomid}:ref ${e.frame}` : hex(e.frame);
      rows.push([
        `  ${e.ref}`,
        `d${e.domid}`,
        frame,
        e.flagNames.join('|'),
        status,
        pin,
        e.active ? hex(e.active.mfn) : '-',
      ]);
    }
    lines.push(columns(rows));
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
  const lines = [
    `grant-table for remote d${t.domid} (v${t.version})`,
    `  ${t.frames} frames (${t.maxFrames} max), ${t.maptrackFrames} maptrack frames (${t.maxMaptrackFrames} max)`,
  ];
  let first = true;
  for (const e of t.entries) {
    if (e.active === undefined) continue;
    if (first) {
      lines.push('      -------- active --------       -------- shared --------');
      lines.push('[ref] localdom mfn      pin          localdom gmfn     flags');
      first = false;
    }
    const status = t.version === 1 ? e.flags : e.status;
    lines.push(
      `[0x${e.ref.toString(16).padStart(3, '0')}]  ${String(e.active.grantee).padStart(5)} 0x${e.active.mfn.toString(16).padStart(6, '0')} ` +
        `0x${e.active.pin.toString(16).padStart(8, '0')}      ${String(e.domid).padStart(5)} 0x${e.frame.toString(16).padStart(6, '0')} ` +
        `0x${status.toString(16).padStart(2, '0')}`,
    );
  }
  if (first) lines.push('no active grant table entries');
  return lines.join('\n');
}

/** Decoded entries of a frame dump as a table. */
export function formatDecoded(entries: readonly DecodedEntry[], layout: 1 | 2): string {
  if (entries.length === 0) return `no valid entries (layout v${layout})`;
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
      e.flagNames.join('|'),
      e.status.join('|') || '-',
    ]);
  }
  return columns(rows);
}
