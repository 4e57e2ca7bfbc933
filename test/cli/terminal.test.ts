// The gnttab command's terminal habits: 80 columns (wider when the terminal
// is), --version, exit status 2 for usage errors and 1 for failures, a hint when
// decode waits on a terminal, --verbose stacks, plurals and articles; and which
// code the bin runs (the sources in a checkout, dist/ when installed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bin, gnttab, root } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'gnttab-term-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function tooWide(text: string, width = 80): string[] {
  return text.split('\n').filter((l) => l.length > width);
}

describe('gnttab output fits the terminal', () => {
  // Default kinds: an hvm frontend (here with layout v2) and a pv backend.
  const demo = gnttab(['demo', '--size', '64k', '--layout', '2'], { env: { COLUMNS: '' } });
  const wideDemo = gnttab(['demo', '--size', '64k', '--frontend', 'pv', '--backend', 'hvm'], {
    env: { COLUMNS: '160' },
  });

  it('every line of demo, tour, dump, decode and help fits 80 columns when not on a terminal', () => {
    const runs = [
      ['tour', '--layout', '2', '--frontend', 'hvm'],
      ['dump', 'examples/scenario.ts'],
      ['--help'],
    ];
    const outputs = [
      { args: ['demo'], r: demo },
      ...runs.map((args) => ({ args, r: gnttab(args, { env: { COLUMNS: '' } }) })),
    ];
    for (const { args, r } of outputs) {
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
      assert.ok(r.out.split('\n').length > 3, `${args.join(' ')} printed almost nothing`);
      assert.deepEqual(tooWide(r.out), [], `gnttab ${args.join(' ')}`);
    }
    // A v1 entry with every flag a layout defines beside the type, reading and writing.
    const frame = new Uint8Array(4096);
    const v = new DataView(frame.buffer);
    v.setUint16(8 * 8, 0x1 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80, true);
    v.setUint16(8 * 8 + 2, 32752, true);
    v.setUint32(8 * 8 + 4, 0xfffff, true);
    const d = gnttab(['decode', '-'], { input: frame, env: { COLUMNS: '' } });
    assert.equal(d.code, 0, d.err);
    assert.match(d.out, /^8\s+permit_access\s+d32752\s+0xfffff\s+ro\|pwt\|pcd\|pat\s+reading\|writing$/m);
    assert.deepEqual(tooWide(d.out), []);
  });

  it('has a narrow form for 80 columns and the full one when the terminal is wider ($COLUMNS off a terminal)', () => {
    assert.match(demo.out, /^ {2}ref {2}grantee {2}frame +type +flags +status +hw\/hr\/dw\/dr +mfn$/m);
    assert.match(demo.out, /^ {2}8 +d0 +0x0 +access +- +reading\|writing +1\/0\/0\/0 +0x[0-9a-f]+$/m);
    assert.equal(wideDemo.code, 0, wideDemo.err);
    assert.match(wideDemo.out, /pin \(hw\/hr\/dw\/dr\)/);
    assert.match(
      wideDemo.out,
      /^ {2}8 +d0 +0x[0-9a-f]+ +permit_access\|reading\|writing +reading\|writing +1\/0\/0\/0/m,
    );
    assert.ok(tooWide(wideDemo.out).length > 0, 'the wide form is wider than 80 columns');
    assert.deepEqual(tooWide(wideDemo.out, 160), []);
  });

  it('says "an hvm" and "a pv", and "1 status frame"', () => {
    assert.equal(demo.code, 0, demo.err);
    assert.match(demo.out, /from an hvm frontend \(grant table v2\) to a pv/);
    assert.match(demo.out, /grant table of d1 \(hvm\): v2, 1 of 64 frames, 1 status frame, 0 of 1024/);
    assert.match(wideDemo.out, /from a pv frontend \(grant table v1\) to an hvm/);
  });
});

describe('gnttab exit status and version', () => {
  it('--version prints the package version and exits 0', () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = gnttab([flag]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `${version}\n`);
    }
  });

  it('usage errors exit 2; help exits 0; a failure exits 1', () => {
    const usage: [string[], RegExp][] = [
      [[], /Usage: gnttab/],
      [['bogus'], /unknown command 'bogus'/],
      [['demo', '--bogus'], /unknown option '--bogus'/],
      [['tour', '--layout', '5'], /the layout is 1 or 2/],
      [['dump'], /missing required argument 'scenario'/],
      [['dump', 'x.ts', '--memory', '100000'], /a whole number of MiB from 1 to 4096/],
    ];
    for (const [args, says] of usage) {
      const r = gnttab(args);
      assert.equal(r.code, 2, `gnttab ${args.join(' ')}: ${r.err}`);
      assert.match(r.err, says, `gnttab ${args.join(' ')} says what is wrong`);
    }
    assert.equal(gnttab(['help']).code, 0);
    const fail = gnttab(['decode', '-'], { input: new Uint8Array(10) });
    assert.equal(fail.code, 1);
    assert.match(fail.err, /^gnttab: bad grant-frame dump/);
  });

  it('--verbose shows the stack of a scenario that throws', () => {
    const f = join(dir, 'throws.mjs');
    writeFileSync(f, 'export default function scenario() {\n  throw new Error("boom");\n}\n');
    const plain = gnttab(['dump', f]);
    assert.equal(plain.code, 1);
    assert.equal(plain.err, 'gnttab: boom\n');
    const verbose = gnttab(['dump', f, '--verbose']);
    assert.equal(verbose.code, 1);
    assert.match(
      verbose.err,
      /^gnttab: Error: boom\n\s+at (Module\.)?scenario \(file:\/\/.*throws\.mjs:2:9\)/,
    );
  });
});

describe('gnttab decode on a terminal', () => {
  it('says it waits for standard input', () => {
    // script(1) gives the command a pseudo-terminal; its stdin at EOF ends the dump.
    const r = spawnSync('script', ['-qec', `${process.execPath} ${bin} decode`, '/dev/null'], {
      cwd: root,
      input: '',
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.match(r.stdout, /reading a dump of grant frames from standard input \(end it with Ctrl-D/);
    // Piped input gets no such line.
    const piped = gnttab(['decode', '-'], { input: new Uint8Array(4096) });
    assert.equal(piped.err, '');
  });
});

describe('the gnttab bin', () => {
  // A copy of the bin beside a fake src/ and dist/, each announcing itself.
  function fakeCheckout(withSources: boolean): string {
    const top = mkdtempSync(join(dir, 'checkout-'));
    mkdirSync(join(top, 'bin'));
    writeFileSync(join(top, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(top, 'bin', 'gnttab.mjs'), readFileSync(bin));
    symlinkSync(join(root, 'node_modules'), join(top, 'node_modules'));
    mkdirSync(join(top, 'dist', 'cli'), { recursive: true });
    writeFileSync(
      join(top, 'dist', 'cli', 'main.js'),
      'export function main(argv) { console.log("dist", argv.slice(2).join(" ")); }\n',
    );
    if (withSources) {
      mkdirSync(join(top, 'src', 'cli'), { recursive: true });
      writeFileSync(
        join(top, 'src', 'cli', 'main.ts'),
        'export function main(argv: string[]): void {\n  console.log("src", argv.slice(2).join(" "));\n}\n',
      );
    }
    return join(top, 'bin', 'gnttab.mjs');
  }

  function runBin(file: string, env: Record<string, string> = {}): string {
    const r = spawnSync(process.execPath, [file, 'tour', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, GNTTAB_USE_DIST: '', ...env },
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  }

  it('runs the sources in a checkout even when dist/ exists, dist/ when told or when installed', () => {
    const checkout = fakeCheckout(true);
    assert.equal(runBin(checkout), 'src tour --json\n');
    assert.equal(runBin(checkout, { GNTTAB_USE_DIST: '1' }), 'dist tour --json\n');
    assert.equal(runBin(fakeCheckout(false)), 'dist tour --json\n');
  });
});
