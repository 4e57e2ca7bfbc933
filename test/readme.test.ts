// The README's guest programs ("Node idioms": a vchan echo through the
// toolstack libraries' Node idioms, and a vchan stream in stream.pipeline),
// taken from README.md as they are, written to test/.readme/ and each run as a
// server and a client: in one thread (Host.runGuests) and in worker threads
// (WorkerHost). What the README shows must run as it says.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type GuestContext, Host, WorkerHost } from 'gnttab';

const root = new URL('..', import.meta.url);

/** The README's ```ts block that starts with `// ${name}`. */
function snippet(name: string): string {
  const md = readFileSync(new URL('README.md', root), 'utf8');
  for (const m of md.matchAll(/```ts\n([\s\S]*?)```/g)) if (m[1]!.startsWith(`// ${name}`)) return m[1]!;
  throw new Error(`README.md has no \`\`\`ts block starting with // ${name}`);
}

function writeSnippet(name: string): URL {
  const dir = new URL('test/.readme/', root);
  mkdirSync(dir, { recursive: true });
  const file = new URL(name, dir);
  writeFileSync(file, snippet(name));
  return pathToFileURL(file.pathname);
}

type Echo = (ctx: GuestContext, a: { role: 'server' | 'client'; peer: number }) => Promise<string>;

describe('README: the Node idioms guest program', () => {
  const url = writeSnippet('echo.ts');

  it('runs in one thread (Host.runGuests): the client gets its bytes back, nothing left behind', async () => {
    const main = ((await import(url.href)) as { default: Echo }).default;
    const host = new Host({ memoryMiB: 32, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const s = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const c = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const [so, co] = await host.runGuests([
      { domid: s.domid, main, args: { role: 'server' as const, peer: c.domid } },
      { domid: c.domid, main, args: { role: 'client' as const, peer: s.domid } },
    ]);
    assert.equal(so.error, undefined, String(so.error?.stack));
    assert.equal(co.error, undefined, String(co.error?.stack));
    assert.equal(co.result, 'hello, vchan');
    assert.equal(so.result, 'echoed');
    assert.equal(c.xen.gt.maptrack.liveCount(), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('runs in worker threads (WorkerHost.spawn)', { timeout: 120_000 }, async () => {
    await using wh = await WorkerHost.start({ memoryMiB: 32, xenstore: true });
    const s = await wh.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const c = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const [sr, cr] = await Promise.all([
      wh.spawn<string>(s, url, { role: 'server', peer: c.domid }),
      wh.spawn<string>(c, url, { role: 'client', peer: s.domid }),
    ]);
    assert.equal(cr, 'hello, vchan');
    assert.equal(sr, 'echoed');
    assert.deepEqual(await wh.checkInvariants(), []);
  });
});

describe('README: the stream.pipeline guest program (a vchan through a Transform back into itself)', () => {
  const url = writeSnippet('upper.ts');

  it('runs in one thread (Host.runGuests): the reply is the text upper-cased, nothing left behind', async () => {
    const main = ((await import(url.href)) as { default: Echo }).default;
    const host = new Host({ memoryMiB: 32, xenstore: true });
    host.createDomain({ kind: 'pv', memoryKiB: 256 });
    const s = host.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const c = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const [so, co] = await host.runGuests([
      { domid: s.domid, main, args: { role: 'server' as const, peer: c.domid } },
      { domid: c.domid, main, args: { role: 'client' as const, peer: s.domid } },
    ]);
    assert.equal(so.error, undefined, String(so.error?.stack));
    assert.equal(co.error, undefined, String(co.error?.stack));
    assert.equal(co.result, 'upper-cased');
    assert.equal(so.result, 'served');
    assert.equal(c.xen.gt.maptrack.liveCount(), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('runs in worker threads (WorkerHost.spawn)', { timeout: 120_000 }, async () => {
    await using wh = await WorkerHost.start({ memoryMiB: 32, xenstore: true });
    const s = await wh.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    const c = await wh.createDomain({ kind: 'pv', memoryKiB: 1024 });
    const [sr, cr] = await Promise.all([
      wh.spawn<string>(s, url, { role: 'server', peer: c.domid }),
      wh.spawn<string>(c, url, { role: 'client', peer: s.domid }),
    ]);
    assert.equal(cr, 'upper-cased');
    assert.equal(sr, 'served');
    assert.deepEqual(await wh.checkInvariants(), []);
  });
});
