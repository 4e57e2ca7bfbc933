// `gnttab decode --xen-dmesg <file|->`: the tables of Xen's debug key 'g',
// read from `xl dmesg`, shown as `gnttab dump` shows ours.
import { parseXenDmesg, type XenDmesgResult } from '../host/xen-dmesg.ts';
import { formatTable, plural, wrap } from './format.ts';

export interface XenDmesgReport {
  /** The last dump in the input (the host as it was last seen). */
  tables: XenDmesgResult['dumps'][number]['tables'];
  /** Where that dump starts (1-based line), and how many dumps the input holds. */
  dumpLine: number;
  dumps: number;
  unreadable: XenDmesgResult['unreadable'];
  otherLines: number;
}

/** Thrown when the input holds no output of debug key 'g' at all. */
export class NoXenDumpError extends Error {
  constructor(what: string) {
    super(
      `${what} holds no output of Xen's debug key 'g' ("gnttab_usage_print_all [ key 'g' pressed"): on the host run \`xl debug-keys g; xl dmesg > dmesg.txt\``,
    );
    this.name = 'NoXenDumpError';
  }
}

export function readXenDmesg(text: string, what: string): XenDmesgReport {
  const r = parseXenDmesg(text);
  const last = r.dumps[r.dumps.length - 1];
  if (last === undefined || (last.tables.length === 0 && (!r.bracketed || r.unreadable.length === 0)))
    throw new NoXenDumpError(what);
  return {
    tables: last.tables,
    dumpLine: last.line,
    dumps: r.dumps.length,
    unreadable: r.unreadable,
    otherLines: r.otherLines,
  };
}

export function formatXenDmesgReport(r: XenDmesgReport, width: number): string {
  const out: string[] = [];
  out.push(
    wrap(
      `Xen's debug key 'g'${r.dumps > 1 ? `, the last of ${r.dumps} dumps` : ''} (from line ${r.dumpLine}): ${plural(r.tables.length, 'domain')}`,
      width,
    ),
    '',
  );
  for (const t of r.tables) out.push(formatTable(t, width), '');
  out.push(
    wrap(
      "Xen's dump lists only active (pinned) entries, and not the domains' kinds, the mappings, or a v2 entry's header flags (shown '?').",
      width,
    ),
  );
  if (r.otherLines > 0)
    out.push(wrap(`${plural(r.otherLines, 'other console line')} not part of a dump`, width));
  return out.join('\n');
}

/** One line per unreadable input line, for stderr. */
export function formatUnreadable(r: XenDmesgReport, what: string, width: number): string {
  return r.unreadable
    .map(
      (u) =>
        `${wrap(`gnttab: ${what}:${u.line}: ${u.reason}`, width, '    ')}\n    ${JSON.stringify(u.text)}`,
    )
    .join('\n');
}
