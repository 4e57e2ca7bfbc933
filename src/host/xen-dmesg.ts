// Reading what Xen's grant-table debug key prints on a real host
// (`xl debug-keys g; xl dmesg`): gnttab_usage_print_all in
// xen/common/grant_table.c brackets one gnttab_usage_print per domain, which
// prints the two column headings, "grant-table for remote d<id> (v<n>)", the
// frame counts, then one row per active (pinned) entry:
//   [0x%03x]  %5d 0x%"PRI_mfn" 0x%08x      %5d 0x%06"PRIx64" 0x%02x
// (ref; the active entry's domid, MFN and pin; the shared entry's domid,
// frame and, v1, its flags or, v2, its status word) or "no active grant table
// entries". Every console line starts with "(XEN) " and, with
// console_timestamps, a "[...] " stamp (printk_start_of_line).
//
// The result is the same TableSnapshot `gnttab dump` shows. What Xen does not
// print stays unknown: the domain's kind, a v2 entry's header flags, the
// maptrack contents (mappings). A line inside a dump that is none of the
// above is reported with its number, never skipped.
import { GTF_reading, GTF_writing } from '../abi/flags.ts';
import { flagNames, type TableSnapshot } from './snapshot.ts';

/** A line of the input that is not part of what gnttab_usage_print prints. */
export interface UnreadableLine {
  /** 1-based line number in the input. */
  line: number;
  text: string;
  reason: string;
}

/** One press of the key: its tables, where it starts (1-based line) and whether it ran to "] done". */
export interface XenDmesgDump {
  line: number;
  complete: boolean;
  tables: TableSnapshot[];
}

export interface XenDmesgResult {
  dumps: XenDmesgDump[];
  unreadable: UnreadableLine[];
  /** Console lines outside any dump (the rest of `xl dmesg`), counted, not read. */
  otherLines: number;
  /** Whether the input has the key's "gnttab_usage_print_all [" line (else it was read as one dump's body). */
  bracketed: boolean;
}

const START = /^gnttab_usage_print_all \[ key '(.)' pressed$/;
const DONE = /^gnttab_usage_print_all \] done$/;
const HEAD_ACTIVE = /^ {6}-{8} active -{8} {7}-{8} shared -{8}$/;
const HEAD_COLUMNS = /^\[ref\] localdom mfn {6}pin {10}localdom gmfn {5}flags$/;
const TABLE = /^grant-table for remote d(\d+) \(v(\d+)\)$/;
const FRAMES = /^ {2}(\d+) frames \((\d+) max\), (\d+) maptrack frames \((\d+) max\)$/;
const NO_ENTRIES = /^no active grant table entries$/;
// %03x and %08x pad, never cut; %5d pads a domid_t to five columns.
const ROW =
  /^\[0x([0-9a-f]{3,})\] {2}([ \d]{5}|\d{6,}) 0x([0-9a-f]{5,}) 0x([0-9a-f]{8,}) {6}([ \d]{5}|\d{6,}) 0x([0-9a-f]{6,}) 0x([0-9a-f]{2,})$/;
/** printk_start_of_line: the prefix, then the stamp of console_timestamps=date|datems|boot|raw. */
const PREFIX = /^\(XEN\) (?:\[(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?| *\d+\.\d{6}|[0-9a-f]{16})\] )?/;

const MAX_DOMID = 0xffff;

/** Grant entries per status frame over entries per v2 grant frame: grant_to_status_frames. */
function statusFramesOf(frames: number): number {
  return Math.ceil((frames * 256) / 2048);
}

/** The console text of a line: without "(XEN) ", a timestamp and a trailing CR. */
function consoleText(raw: string): { text: string; xen: boolean } {
  const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  const m = PREFIX.exec(line);
  return m === null ? { text: line, xen: false } : { text: line.slice(m[0].length), xen: true };
}

/**
 * Parses `xl dmesg` text (or a serial console capture) holding the output of
 * debug key 'g'. With no "gnttab_usage_print_all [" line at all, the whole
 * input is read as the body of one dump (a pasted excerpt).
 */
export function parseXenDmesg(input: string): XenDmesgResult {
  const lines = input.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const bracketed = lines.some((l) => START.test(consoleText(l).text));
  const dumps: XenDmesgDump[] = [];
  const unreadable: UnreadableLine[] = [];
  let otherLines = 0;
  let dump: XenDmesgDump | null = bracketed ? null : { line: 1, complete: false, tables: [] };
  if (dump !== null) dumps.push(dump);
  /** The table being read, and what its next line must be. */
  let table: TableSnapshot | null = null;
  let want: 'frames' | 'rows' | 'table' = 'table';
  const bad = (n: number, text: string, reason: string) => unreadable.push({ line: n, text, reason });

  lines.forEach((raw, i) => {
    const n = i + 1;
    const { text } = consoleText(raw);
    if (START.test(text)) {
      if (dump !== null && !dump.complete)
        bad(n, text, `a new dump starts before the one at line ${dump.line} reached "] done"`);
      dump = { line: n, complete: false, tables: [] };
      dumps.push(dump);
      table = null;
      want = 'table';
      return;
    }
    if (dump === null || dump.complete) {
      if (DONE.test(text)) bad(n, text, '"] done" without a "gnttab_usage_print_all [" before it');
      else otherLines++;
      return;
    }
    if (bracketed && DONE.test(text)) {
      if (want === 'frames') bad(n, text, 'the dump ends before the frame counts of its last table');
      dump.complete = true;
      table = null;
      want = 'table';
      return;
    }
    if (HEAD_ACTIVE.test(text) || HEAD_COLUMNS.test(text)) return;
    if (want === 'frames') {
      const m = FRAMES.exec(text);
      if (m === null || table === null) {
        bad(
          n,
          text,
          'expected "  N frames (M max), N maptrack frames (M max)" after "grant-table for remote"',
        );
        want = 'table';
        return;
      }
      const t: TableSnapshot = table;
      t.frames = Number(m[1]);
      t.maxFrames = Number(m[2]);
      t.maptrackFrames = Number(m[3]);
      t.maxMaptrackFrames = Number(m[4]);
      if (t.version === 2) t.statusFrames = statusFramesOf(t.frames);
      want = 'rows';
      return;
    }
    const tm = TABLE.exec(text);
    if (tm !== null) {
      const domid = Number(tm[1]);
      const version = Number(tm[2]);
      if (domid > MAX_DOMID || (version !== 1 && version !== 2)) {
        bad(n, text, `d${tm[1]} (v${tm[2]}): a domid is 0 to 65535 and a grant-table version 1 or 2`);
        table = null;
        want = 'table';
        return;
      }
      table = {
        domid,
        kind: 'unknown',
        dying: false,
        version: version as 1 | 2,
        frames: 0,
        maxFrames: 0,
        statusFrames: 0,
        maptrackFrames: 0,
        maxMaptrackFrames: 0,
        entries: [],
        mappings: [],
      };
      dump.tables.push(table);
      want = 'frames';
      return;
    }
    if (NO_ENTRIES.test(text)) {
      if (table === null) bad(n, text, '"no active grant table entries" outside a table');
      else if ((table as TableSnapshot).entries.length > 0)
        bad(n, text, `"no active grant table entries" after entries of d${(table as TableSnapshot).domid}`);
      return;
    }
    const r = ROW.exec(text);
    if (r !== null) {
      if (table === null) {
        bad(n, text, 'an entry row before any "grant-table for remote d<N> (v<n>)" line');
        return;
      }
      const t: TableSnapshot = table;
      const pin = Number.parseInt(r[4]!, 16);
      const grantee = Number(r[2]!.trim());
      const domid = Number(r[5]!.trim());
      const status = Number.parseInt(r[7]!, 16);
      if (pin > 0xffff_ffff || grantee > MAX_DOMID || domid > MAX_DOMID || status > 0xffff) {
        bad(n, text, 'a field is wider than Xen prints it (pin 32 bits, domids 16, flags 16)');
        return;
      }
      const v1 = t.version === 1;
      t.entries.push({
        ref: Number.parseInt(r[1]!, 16),
        // v1 prints the entry's flags; v2 only its status word, not the header.
        flags: v1 ? status : 0,
        flagNames: v1 ? flagNames(status) : ['?'],
        domid,
        frame: Number.parseInt(r[6]!, 16),
        status: status & (GTF_reading | GTF_writing),
        active: {
          pin,
          pins: {
            hostWrite: pin & 0xff,
            hostRead: (pin >>> 8) & 0xff,
            devWrite: (pin >>> 16) & 0xff,
            devRead: pin >>> 24,
          },
          grantee,
          mfn: Number.parseInt(r[3]!, 16),
        },
      });
      return;
    }
    bad(n, text, 'not a line gnttab_usage_print prints');
  });
  const last = dumps[dumps.length - 1];
  if (!bracketed && last !== undefined) last.complete = true;
  else if (last !== undefined && !last.complete)
    unreadable.push({
      line: lines.length,
      text: lines[lines.length - 1] ?? '',
      reason: `the input ends before the dump that starts at line ${last.line} reached "] done"`,
    });
  return { dumps, unreadable, otherLines, bracketed };
}
