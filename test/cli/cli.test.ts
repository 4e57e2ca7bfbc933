// The gnttab command, run as a user runs it: a subprocess through bin/gnttab.mjs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gnttab as run } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gnttab-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const gnttab = (args: string[], input?: Uint8Array) => run(args, input === undefined ? {} : { input });

/** A v1 grant frame with entries 8 (permit_access to d1, frame 0x1234, reading) and 9 (readonly to d2). */
function v1Frame(): Uint8Array {
  const b = new Uint8Array(4096);
  const v = new DataView(b.buffer);
  v.setUint16(8 * 8, 0x1 | 0x8, true);
  v.setUint16(8 * 8 + 2, 1, true);
  v.setUint32(8 * 8 + 4, 0x1234, true);
  v.setUint16(9 * 8, 0x1 | 0x4, true);
  v.setUint16(9 * 8 + 2, 2, true);
  v.setUint32(9 * 8 + 4, 0x99, true);
  return b;
}

describe('gnttab decode', () => {
  it('decodes the valid entries of a v1 frame dump from a file, as text and as JSON', () => {
    const f = join(dir, 'v1.bin');
    writeFileSync(f, v1Frame());
    const t = gnttab(['decode', f]);
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /^8\s+permit_access\s+d1\s+0x1234\s+permit_access\|reading\s+reading$/m);
    assert.match(t.out, /^9\s+permit_access\s+d2\s+0x99\s+permit_access\|readonly\s+-$/m);
    const j = JSON.parse(gnttab(['decode', '--json', f]).out) as {
      entries: { ref: number; domid: number; frame: number; status: string[] }[];
    };
    assert.deepEqual(
      j.entries.map((e) => [e.ref, e.domid, e.frame, e.status]),
      [
        [8, 1, 0x1234, ['reading']],
        [9, 2, 0x99, []],
      ],
    );
  });

  it('reads standard input, and v2 with a status dump', () => {
    const frames = new Uint8Array(4096);
    const v = new DataView(frames.buffer);
    v.setUint16(10 * 16, 0x1 | 0x100, true); // sub-page
    v.setUint16(10 * 16 + 2, 3, true);
    v.setUint16(10 * 16 + 4, 128, true);
    v.setUint16(10 * 16 + 6, 64, true);
    v.setUint32(10 * 16 + 8, 0x4242, true);
    v.setUint16(11 * 16, 0x3, true); // transitive
    v.setUint16(11 * 16 + 2, 4, true);
    v.setUint16(11 * 16 + 4, 1, true);
    v.setUint32(11 * 16 + 8, 17, true);
    const status = new Uint8Array(4096);
    new DataView(status.buffer).setUint16(10 * 2, 0x8, true);
    const sf = join(dir, 'status.bin');
    writeFileSync(sf, status);
    const r = gnttab(['decode', '--layout', '2', '--status', sf, '--json', '-'], frames);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { entries: Record<string, unknown>[] };
    assert.deepEqual(j.entries[0], {
      ref: 10,
      type: 'permit_access',
      flags: 0x101,
      flagNames: ['permit_access', 'sub_page'],
      domid: 3,
      frame: 0x4242,
      subPage: { offset: 128, length: 64 },
      status: ['reading'],
    });
    assert.deepEqual(j.entries[1]?.transitive, { domid: 1, gref: 17 });
  });

  it('refuses bad input with a clear message and a non-zero exit', () => {
    const short = gnttab(['decode', '-'], new Uint8Array(100));
    assert.equal(short.code, 1);
    assert.match(short.err, /100 bytes: a dump of grant frames is a whole number of 4096-byte frames/);
    const bits = v1Frame();
    new DataView(bits.buffer).setUint16(8 * 8, 0x1 | 0x8000, true);
    const b = gnttab(['decode', '-'], bits);
    assert.equal(b.code, 1);
    assert.match(b.err, /ref 8: flags 0x8001 have bits no grant layout defines \(0x8000\)/);
    const missing = gnttab(['decode', join(dir, 'nope.bin')]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /no such file/);
    // A bad option value is a usage error: exit 2.
    const layout = gnttab(['decode', '--layout', '3', '-'], v1Frame());
    assert.equal(layout.code, 2);
    assert.match(layout.err, /the layout is 1 or 2/);
  });
});

describe('gnttab decode --xen-dmesg', () => {
  it("reads back what gnttab dump prints in the form of Xen's debug key 'g' (gnttab_usage_print)", () => {
    const dump = gnttab(['dump', 'examples/scenario.ts']);
    assert.equal(dump.code, 0, dump.err);
    const f = join(dir, 'dmesg.txt');
    writeFileSync(f, dump.out);
    const j = gnttab(['decode', '--xen-dmesg', f, '--json']);
    assert.equal(j.code, 0, j.err);
    const r = JSON.parse(j.out) as {
      tables: {
        domid: number;
        version: number;
        entries: { ref: number; status: number; active?: { pin: number } }[];
      }[];
      unreadable: unknown[];
      dumps: number;
    };
    assert.deepEqual(r.unreadable, []);
    assert.equal(r.dumps, 1);
    const d1 = r.tables.find((t) => t.domid === 1);
    assert.equal(d1?.version, 2);
    assert.deepEqual(
      d1?.entries.map((e) => [e.ref, e.status, e.active?.pin]),
      [[8, 0x08, 0x100]],
    );
    // The same from standard input, as text: the table gnttab dump shows.
    const t = gnttab(['decode', '--xen-dmesg', '-'], new TextEncoder().encode(dump.out));
    assert.equal(t.code, 0, t.err);
    assert.match(t.out, /grant table of d1: v2, 1 of 64 frames, 1 status frame/);
    assert.match(t.out, /\n {2}8 +d0 +0x0 +\? +reading +0\/1\/0\/0 +0x[0-9a-f]+\n/);
  });

  it('names each line it cannot read, by number, and exits 1; input with no dump is an error', () => {
    const f = join(dir, 'dmesg-bad.txt');
    writeFileSync(
      f,
      [
        "(XEN) gnttab_usage_print_all [ key 'g' pressed",
        '(XEN) grant-table for remote d1 (v1)',
        '(XEN)   1 frames (64 max), 0 maptrack frames (1024 max)',
        '(XEN) [0x008]      0 0x0beef 0x00000001',
        '(XEN) [0x009]      0 0x0bef0 0x00000001          0 0x000123 0x19',
        '(XEN) gnttab_usage_print_all ] done',
        '',
      ].join('\n'),
    );
    const r = gnttab(['decode', '--xen-dmesg', f]);
    assert.equal(r.code, 1);
    assert.match(r.err, /dmesg-bad\.txt:4: not a line gnttab_usage_print\s+prints\n {4}"\[0x008\]/);
    assert.match(r.out, /\n {2}9 +d0 +0x123 +access +- +reading\|writing +1\/0\/0\/0 +0xbef0\n/);
    const none = gnttab(
      ['decode', '--xen-dmesg', '-'],
      new TextEncoder().encode('(XEN) Brought up 2 CPUs\n'),
    );
    assert.equal(none.code, 1);
    assert.match(none.err, /no output of Xen's debug key 'g'.*xl debug-keys g/s);
  });
});

describe('gnttab dump', () => {
  it("runs a scenario module and prints the tables as Xen's debug key does", () => {
    const r = gnttab(['dump', 'examples/scenario.ts']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\(XEN\) grant-table for remote d1 \(v2\)/);
    assert.match(r.out, /\(XEN\) \[0x008\]\s+0 0x[0-9a-f]{5} 0x00000100\s+0 0x[0-9a-f]{6} 0x08/);
    assert.match(r.out, /invariants: all hold/);
    const j = JSON.parse(gnttab(['dump', '--json', 'examples/scenario.ts']).out) as {
      tables: { domid: number; entries: { ref: number; active?: { pin: number } }[] }[];
      invariants: string[];
    };
    assert.equal(j.tables.find((t) => t.domid === 1)?.entries.find((e) => e.ref === 8)?.active?.pin, 0x100);
    assert.deepEqual(j.invariants, []);
  });

  it('says what is wrong with a scenario that cannot run', () => {
    const f = join(dir, 'bad-scenario.mjs');
    writeFileSync(f, 'export const x = 1;\n');
    const r = gnttab(['dump', f]);
    assert.equal(r.code, 1);
    assert.match(r.err, /must export a default function taking a Host/);
    assert.match(gnttab(['dump', join(dir, 'missing.ts')]).err, /cannot load the scenario/);
  });
});

describe('gnttab demo', () => {
  it('streams over vchan between two worker domains and checks every byte (--json)', () => {
    const r = gnttab(['demo', '--size', '1M', '--layout', '2', '--ring-size', '4k', '--json']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      ok: boolean;
      bytesReceived: number;
      mismatches: number;
      leftovers: string[];
      invariants: string[];
      tables: { domid: number; version: number; entries: { active?: unknown }[]; mappings: unknown[] }[];
      frontendDomid: number;
      backendDomid: number;
    };
    assert.equal(j.ok, true);
    assert.equal(j.bytesReceived, 1024 * 1024);
    assert.equal(j.mismatches, 0);
    assert.deepEqual(j.leftovers, []);
    assert.deepEqual(j.invariants, []);
    // While connected: the frontend's v2 table has pinned ring pages, the backend holds mappings.
    const front = j.tables.find((t) => t.domid === j.frontendDomid);
    const back = j.tables.find((t) => t.domid === j.backendDomid);
    assert.equal(front?.version, 2);
    assert.ok((front?.entries.filter((e) => e.active !== undefined).length ?? 0) >= 2);
    assert.ok((back?.mappings.length ?? 0) >= 2);
  });

  it('shows progress and the tables as text; refuses a bad ring size', () => {
    const r = gnttab(['demo', '--size', '256k']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /100%: 256\.0 KiB of 256\.0 KiB checked/);
    assert.match(r.out, /every byte as sent/);
    assert.match(r.out, /grant table of d1 \(hvm\): v1/);
    assert.match(r.out, /all invariants hold/);
    const bad = gnttab(['demo', '--ring-size', '3000']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /a power of two from 1k to 1M/);
  });
});

describe('gnttab tour', () => {
  it('walks the raw ABI and ends clean', () => {
    const r = gnttab(['tour', '--layout', '2', '--frontend', 'hvm']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /map_grant_ref\(d1, ref 8\)/);
    assert.match(r.out, /all invariants hold, nothing leaked/);
  });
});

describe('gnttab --help', () => {
  it('every command has help with an example', () => {
    for (const cmd of ['demo', 'tour', 'dump', 'decode']) {
      const r = gnttab([cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.out, /Example/);
      assert.deepEqual(
        r.out.split('\n').filter((l) => l.length > 80),
        [],
        `${cmd} --help fits 80 columns`,
      );
    }
  });
});
