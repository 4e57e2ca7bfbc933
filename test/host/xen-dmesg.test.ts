// Reading the text of Xen's debug key 'g' (gnttab_usage_print_all and
// gnttab_usage_print in xen/common/grant_table.c, prefixed as
// printk_start_of_line in xen/drivers/char/console.c does).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatXenDebugKey } from '../../src/cli/format.ts';
import { parseXenDmesg } from '../../src/host/xen-dmesg.ts';
import {
  GNTMAP_host_map,
  GNTTABOP_map_grant_ref,
  Gnttab,
  gnttab_map_grant_ref,
  guestHypercall,
  Host,
  layout,
  snapshotTables,
} from '../../src/index.ts';

// Hand-written in exactly the format of gnttab_usage_print at Xen HEAD:
//   "[0x%03x]  %5d 0x%"PRI_mfn" 0x%08x      %5d 0x%06"PRIx64" 0x%02x", PRI_mfn "05lx".
const XL_DMESG_DATEMS = `(XEN) [2026-12-02 14:01:02.345] Freed 2048kB init memory
(XEN) [2026-12-02 14:05:10.001] gnttab_usage_print_all [ key 'g' pressed
(XEN) [2026-12-02 14:05:10.001]       -------- active --------       -------- shared --------
(XEN) [2026-12-02 14:05:10.001] [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) [2026-12-02 14:05:10.001] grant-table for remote d0 (v1)
(XEN) [2026-12-02 14:05:10.001]   1 frames (64 max), 1 maptrack frames (1024 max)
(XEN) [2026-12-02 14:05:10.001] no active grant table entries
(XEN) [2026-12-02 14:05:10.002]       -------- active --------       -------- shared --------
(XEN) [2026-12-02 14:05:10.002] [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) [2026-12-02 14:05:10.002] grant-table for remote d3 (v1)
(XEN) [2026-12-02 14:05:10.002]   4 frames (64 max), 0 maptrack frames (1024 max)
(XEN) [2026-12-02 14:05:10.002] [0x008]      0 0x1a2b3 0x00000001          0 0x0012f4 0x19
(XEN) [2026-12-02 14:05:10.002] [0x009]      0 0x1a2b4 0x00000100          0 0x0012f5 0x0d
(XEN) [2026-12-02 14:05:10.002] [0x1000]      7 0x123456789 0x01000000          7 0x0abcde 0x09
(XEN) [2026-12-02 14:05:10.003]       -------- active --------       -------- shared --------
(XEN) [2026-12-02 14:05:10.003] [ref] localdom mfn      pin          localdom gmfn     flags
(XEN) [2026-12-02 14:05:10.003] grant-table for remote d12 (v2)
(XEN) [2026-12-02 14:05:10.003]   5 frames (64 max), 0 maptrack frames (1024 max)
(XEN) [2026-12-02 14:05:10.003] [0x00a]  32767 0x0beef 0x00000201      32767 0x000123 0x18
(XEN) [2026-12-02 14:05:10.003] gnttab_usage_print_all ] done
`;

describe("decode --xen-dmesg: Xen's debug key 'g' (gnttab_usage_print)", () => {
  it('reads per-domain headers and active rows under datems timestamps', () => {
    const r = parseXenDmesg(XL_DMESG_DATEMS);
    assert.deepEqual(r.unreadable, []);
    assert.equal(r.otherLines, 1);
    assert.equal(r.dumps.length, 1);
    const [d0, d3, d12] = r.dumps[0]!.tables;
    assert.deepEqual(
      [d0, d3, d12].map((t) => [
        t?.domid,
        t?.version,
        t?.frames,
        t?.maxFrames,
        t?.maptrackFrames,
        t?.maxMaptrackFrames,
      ]),
      [
        [0, 1, 1, 64, 1, 1024],
        [3, 1, 4, 64, 0, 1024],
        [12, 2, 5, 64, 0, 1024],
      ],
    );
    assert.equal(d0!.entries.length, 0);
    // v1: the printed flags are the entry's own: permit_access|reading|writing (0x19).
    const e8 = d3!.entries[0]!;
    assert.deepEqual(
      [
        e8.ref,
        e8.domid,
        e8.frame,
        e8.flags,
        e8.flagNames,
        e8.status,
        e8.active?.grantee,
        e8.active?.mfn,
        e8.active?.pin,
      ],
      [8, 0, 0x12f4, 0x19, ['permit_access', 'reading', 'writing'], 0x18, 0, 0x1a2b3, 1],
    );
    assert.deepEqual(d3!.entries[1]!.flagNames, ['permit_access', 'readonly', 'reading']);
    assert.deepEqual(d3!.entries[1]!.active?.pins, { hostWrite: 0, hostRead: 1, devWrite: 0, devRead: 0 });
    // A ref above 0xfff and an MFN wider than five digits: %03x and %05lx pad, never cut.
    const big = d3!.entries[2]!;
    assert.deepEqual([big.ref, big.active?.mfn, big.active?.pins.devRead], [0x1000, 0x123456789, 1]);
    // v2: Xen prints the status word, not the header flags; status frames follow grant frames.
    const e = d12!.entries[0]!;
    assert.deepEqual([e.flagNames, e.status, e.active?.grantee, e.active?.pin], [['?'], 0x18, 32767, 0x201]);
    assert.equal(d12!.statusFrames, 1); // grant_to_status_frames(5): 1280 entries fit one status frame
    assert.equal(d12!.kind, 'unknown');
  });

  it('reads boot and raw timestamps, no timestamp, CRLF, and several presses (each its own dump)', () => {
    const body = (stamp: string) =>
      [
        "gnttab_usage_print_all [ key 'g' pressed",
        '      -------- active --------       -------- shared --------',
        '[ref] localdom mfn      pin          localdom gmfn     flags',
        'grant-table for remote d1 (v1)',
        '  1 frames (32 max), 1 maptrack frames (256 max)',
        '[0x010]      0 0x04000 0x00000001          0 0x004000 0x19',
        'gnttab_usage_print_all ] done',
      ].map((l) => `(XEN) ${stamp}${l}\r\n`);
    const text = [...body('[  123.456789] '), ...body('[000000a1b2c3d4e5] '), ...body('')].join('');
    const r = parseXenDmesg(text);
    assert.deepEqual(r.unreadable, []);
    assert.deepEqual(
      r.dumps.map((d) => [d.line, d.complete, d.tables[0]?.entries[0]?.active?.mfn]),
      [
        [1, true, 0x4000],
        [8, true, 0x4000],
        [15, true, 0x4000],
      ],
    );
  });

  it('reports every line it cannot read with its number, and reads on', () => {
    const lines = XL_DMESG_DATEMS.split('\n');
    // A row with a field missing, a guest's console line inside the dump, and a cut-off end.
    lines[12] = '(XEN) [2026-12-02 14:05:10.002] [0x009]      0 0x1a2b4 0x00000100          0 0x0012f5';
    lines.splice(14, 0, '(d3) hello from the guest');
    const cut = lines.slice(0, 20).join('\n');
    const r = parseXenDmesg(cut);
    assert.deepEqual(
      r.unreadable.map((u) => [u.line, u.reason]),
      [
        [13, 'not a line gnttab_usage_print prints'],
        [15, 'not a line gnttab_usage_print prints'],
        [20, 'the input ends before the dump that starts at line 2 reached "] done"'],
      ],
    );
    assert.equal(r.unreadable[1]!.text, '(d3) hello from the guest');
    // The rows around them are still read.
    assert.deepEqual(
      r.dumps[0]!.tables[1]!.entries.map((e) => e.ref),
      [8, 0x1000],
    );
    assert.deepEqual(
      parseXenDmesg('(XEN)   2 frames (64 max), 0 maptrack frames (1024 max)\n').unreadable[0]?.line,
      1,
    );
  });

  it('a header out of place, or a version Xen has no layout for, is reported', () => {
    const r = parseXenDmesg(
      [
        "(XEN) gnttab_usage_print_all [ key 'g' pressed",
        '(XEN) [0x008]      0 0x1a2b3 0x00000001          0 0x0012f4 0x19',
        '(XEN) grant-table for remote d4 (v3)',
        '(XEN) grant-table for remote d5 (v1)',
        '(XEN) no active grant table entries',
        '(XEN) gnttab_usage_print_all ] done',
      ].join('\n'),
    );
    assert.deepEqual(
      r.unreadable.map((u) => u.line),
      [2, 3, 5],
    );
  });

  it("round trip: the host's own dump in Xen's format reads back as the same active entries", () => {
    const host = new Host({ memoryMiB: 16 });
    const back = host.createDomain({ kind: 'pv', memoryKiB: 512 });
    const front = host.createDomain({ kind: 'hvm', memoryKiB: 512 });
    for (const version of [1, 2] as const) {
      const fe = host.createDomain({ kind: 'pv', memoryKiB: 512 });
      const gt = new Gnttab(host.context(fe.domid), { version });
      assert.equal(gt.init(), 0);
      const p = gt.pages.alloc();
      const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(p), false);
      const m = guestHypercall.grantTableOp(
        host.context(back.domid),
        GNTTABOP_map_grant_ref,
        gnttab_map_grant_ref,
        [{ host_addr: layout.FOREIGN_MAP_VA + version * 4096, flags: GNTMAP_host_map, ref, dom: fe.domid }],
      );
      assert.equal(m.out[0]?.status, 0);
    }
    void front;
    const tables = snapshotTables(host.hypervisor);
    const text = [
      "gnttab_usage_print_all [ key 'g' pressed",
      ...tables.flatMap((t) => formatXenDebugKey(t).split('\n')),
      'gnttab_usage_print_all ] done',
    ]
      .map((l) => `(XEN) ${l}\n`)
      .join('');
    const r = parseXenDmesg(text);
    assert.deepEqual(r.unreadable, []);
    const read = r.dumps[0]!.tables;
    assert.deepEqual(
      read.map((t) => [t.domid, t.version, t.frames, t.maxFrames, t.maptrackFrames, t.maxMaptrackFrames]),
      tables.map((t) => [t.domid, t.version, t.frames, t.maxFrames, t.maptrackFrames, t.maxMaptrackFrames]),
    );
    for (const [i, t] of tables.entries()) {
      const active = t.entries.filter((e) => e.active !== undefined);
      const got = read[i]!.entries;
      assert.deepEqual(
        got.map((e) => [e.ref, e.domid, e.frame, e.status, e.active]),
        active.map((e) => [e.ref, e.domid, e.frame, e.status, e.active]),
      );
      if (t.version === 1)
        assert.deepEqual(
          got.map((e) => e.flagNames),
          active.map((e) => e.flagNames),
        );
    }
    assert.equal(read.flatMap((t) => t.entries).length, 2);
  });
});
