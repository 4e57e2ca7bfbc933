// XSA-155 (2015): PV backends read requests in the shared ring twice.
import { GNTST_okay } from '../../abi/status.ts';
import { mapForeignRefs, unmapForeignRefs } from '../../guest/gnttab/backend.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { PageAllocator } from '../../guest/pages.ts';
import { BackRing, FrontRing, sharedRingInit } from '../../io/ring.ts';
import { Lab } from './lab.ts';
import type { XsaEntry } from './types.ts';

const title = 'PV backends read shared memory twice';
/** A request: u16 id, u16 length, then data; the backend accepts length <= 512. */
const REQ = 64;
const MAX_LEN = 512;

export const xsa155: XsaEntry = {
  id: 155,
  year: 2015,
  title,
  op: 'RING_COPY_REQUEST (guest ring.h)',
  side: 'guest',
  run: async () => {
    const lab = new Lab(155, title);
    const b = lab.domain('B', { kind: 'pv', mapTable: false });
    const a = lab.domain('A', { kind: 'hvm', mapTable: false });
    const fctx = lab.host.context(a.domid);
    const bctx = lab.host.context(b.domid);
    const gt = new Gnttab(fctx, { version: 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    const page = gt.pages.alloc();
    sharedRingInit(fctx.mem, page);
    const front = new FrontRing(fctx.mem, page, 4096, { entrySize: REQ });
    const ref = gt.grantForeignAccess(b.domid, gt.pages.gfnOf(page), false);
    lab.note(
      `A (frontend) shares a ring.h ring through ref ${ref}; B (backend) maps it with the guest library`,
    );
    const pages = new PageAllocator(bctx);
    const m = await mapForeignRefs(bctx, pages, a.domid, [ref]);
    lab.step('B', 'map_grant_ref', `A ref ${ref} (the ring)`, m.rc === 0 ? 'okay' : String(m.rc));
    if (m.mapping === null) throw new Error('ring map failed');
    const back = new BackRing(bctx.mem, m.mapping.addr, 4096, { entrySize: REQ });
    const req = new Uint8Array(REQ);
    new DataView(req.buffer).setUint16(2, 256, true);
    front.writeRequest(front.reqProdPvt, req);
    front.pushRequests();
    lab.step('A', 'push request', 'id 0, length 256', 'done');
    // The backend takes its one snapshot, validates it ...
    const snap = back.copyRequest(back.reqCons);
    const len = new DataView(snap.buffer, snap.byteOffset).getUint16(2, true);
    lab.step('B', 'RING_COPY_REQUEST', 'request 0 into private memory', `length ${len}`);
    const valid = len <= MAX_LEN;
    // ... then the frontend rewrites the shared slot before the backend uses it.
    fctx.mem.writeU16(front.requestAddr(0) + 2, 60000);
    lab.step('A', 'rewrite slot', 'length 60000 after B validated', 'done');
    const used = new DataView(snap.buffer, snap.byteOffset).getUint16(2, true);
    lab.expect(valid && used === 256, 'the backend validates and uses its snapshot: length 256 both times');
    lab.expect(
      bctx.mem.readU16(back.requestAddr(0) + 2) === 60000,
      'the shared slot says 60000: a second read would have seen it',
    );
    const u = unmapForeignRefs(bctx, pages, m.mapping);
    lab.expect(u.rc === 0 && u.status.every((s) => s === GNTST_okay), 'B unmaps the ring');
    lab.expect(gt.tryEndForeignAccess(ref), 'A ends access to its ring page');
    return lab.finish([
      'the backend copies each request into private memory exactly once, then validates and uses only the snapshot',
    ]);
  },
};
