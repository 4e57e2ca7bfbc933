// Plain-text rendering for the CLI: aligned columns, no colour when not a TTY.
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
