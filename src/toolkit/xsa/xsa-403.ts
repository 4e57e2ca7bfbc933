// XSA-403 (2022): block and network frontends granted pages holding other data.

import { mapForeignRefs, unmapForeignRefs } from '../../guest/gnttab/backend.ts';
import { GNTALLOC_FLAG_WRITABLE, Gntalloc } from '../../guest/gnttab/gntalloc.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { PageAllocator } from '../../guest/pages.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'Linux block and network frontends leaked data';
const SECRET = 0xa5;
const IO = 0x3c;

export const xsa403: XsaEntry = {
  id: 403,
  year: 2022,
  title,
  op: 'gntalloc / grant of I/O buffers (guest)',
  side: 'guest',
  run: async () => {
    const lab = new Lab(403, title);
    const b = lab.domain('B', { kind: 'pv', mapTable: false });
    const a = lab.domain('A', { kind: 'hvm', mapTable: false });
    const fctx = lab.host.context(a.domid);
    const gt = new Gnttab(fctx, { version: 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    lab.note(
      'gnttab has no blkfront/netfront: A shares its I/O buffer through gntalloc, as user-space frontends do',
    );
    // A page held a secret, and went back to A's allocator.
    const old = gt.pages.alloc();
    fctx.mem.fill(old, 4096, SECRET);
    gt.pages.put(old);
    lab.step('A', 'free page', `0x${old.toString(16)} after it held a secret`, 'done');
    const file = new Gntalloc(gt).open();
    const g = file.allocGref(b.domid, GNTALLOC_FLAG_WRITABLE, 1);
    const ref = g.grefIds[0]!;
    lab.step('A', 'IOCTL_GNTALLOC_ALLOC_GREF', '1 page for B', g.rc === 0 ? `ref ${ref}` : String(g.rc));
    const vma = file.mmap(g.index, 1);
    const addr = typeof vma === 'number' ? -1 : (vma.addrs[0] ?? -1);
    lab.expect(g.rc === 0 && addr === old, 'the granted page is the one that held the secret');
    fctx.mem.fill(addr, 512, IO);
    lab.step('A', 'write', '512 bytes of I/O data', 'done');
    const bctx = lab.host.context(b.domid);
    const pages = new PageAllocator(bctx);
    const m = await mapForeignRefs(bctx, pages, a.domid, [ref], true);
    lab.step('B', 'map_grant_ref', `A ref ${ref}, the whole page`, m.rc === 0 ? 'okay' : String(m.rc));
    const bytes = m.mapping === null ? new Uint8Array() : bctx.mem.read(m.mapping.addr, 4096);
    lab.expect(
      bytes.length === 4096 && !bytes.includes(SECRET),
      'a backend mapping the whole page finds no secret byte',
    );
    lab.expect(
      bytes.slice(0, 512).every((x) => x === IO) && bytes.slice(512).every((x) => x === 0),
      'it holds only the intended bytes, the rest zeroed',
    );
    if (m.mapping !== null) unmapForeignRefs(bctx, pages, m.mapping);
    return lab.finish([
      'the granted page holds only the intended bytes, with the rest zeroed (or a bounce page is used)',
      'a backend mapping or copying the whole page finds no secret byte',
    ]);
  },
};
