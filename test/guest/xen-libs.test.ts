// libxengnttab and libxengntshr (tools/libs/gnttab linux.c over Linux's
// gntdev.c / gntalloc.c): the calls by their C names, typed errors with the
// errno, disposal that releases mappings and shares, grant copy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTST_bad_gntref,
  GNTST_okay,
  Gntalloc,
  Gntdev,
  PageAllocator,
  XenError,
  Xengntshr,
  Xengnttab,
} from 'gnttab';
import { world } from './gnttab-world.ts';

const PAGE = 4096;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function setup() {
  const w = world({ kind: 'pv', version: 1, backKind: 'hvm' });
  const bctx = w.host.context(w.back.domid);
  const bpages = new PageAllocator(bctx);
  const dev = new Gntdev(bctx, bpages);
  const grant = (text: string, readonly = false) => {
    const p = w.gt.pages.alloc();
    w.ctx.mem.write(p, enc(text));
    return { page: p, ref: w.gt.grantForeignAccess(w.back.domid, w.gt.pages.gfnOf(p), readonly) };
  };
  const pins = () => w.back.xen.gt.maptrack.liveCount();
  return { w, bctx, bpages, dev, grant, pins };
}

describe('libxengnttab', () => {
  it('map_grant_ref, map_grant_refs (a domid per ref), map_domain_grant_refs; unmap and dispose', async () => {
    const { w, bctx, dev, grant, pins } = setup();
    const a = grant('alpha');
    const b = grant('bravo');
    {
      using xgt = Xengnttab.open(dev);
      const one = await xgt.mapGrantRef(w.dom.domid, a.ref, false);
      assert.equal(dec(bctx.mem.read(one.addr, 5)), 'alpha');
      const two = await xgt.mapGrantRefs([w.dom.domid, w.dom.domid], [b.ref, a.ref], true);
      assert.equal(two.count, 2);
      assert.equal(dec(bctx.mem.read(two.addr, 5)), 'bravo');
      assert.equal(dec(bctx.mem.read(two.addr + PAGE, 5)), 'alpha');
      assert.equal(pins(), 3);
      {
        using three = await xgt.mapDomainGrantRefs(w.dom.domid, [a.ref], false);
        assert.equal(three.mapped, true);
        assert.equal(pins(), 4);
      }
      assert.equal(pins(), 3, 'disposing the mapping unmapped it');
      one.unmap();
      assert.throws(
        () => one.unmap(),
        (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      );
      await assert.rejects(
        xgt.mapGrantRefs([w.dom.domid], [a.ref, b.ref], false),
        (e: unknown) => e instanceof XenError && e.op === 'xengnttab_map_grant_refs' && e.errno === 22,
      );
      await assert.rejects(
        xgt.mapGrantRef(w.dom.domid, 999, false),
        (e: unknown) => e instanceof XenError && e.status?.[0] === GNTST_bad_gntref,
      );
      xgt.setMaxGrants(10); // Linux has no such ioctl (ENOTTY), which libxengnttab ignores
      assert.equal(pins(), 2);
    }
    assert.equal(pins(), 0, 'disposing the handle unmapped everything');
    assert.deepEqual(w.host.checkInvariants(), []);
  });

  it('grant_copy: to and from grants, split at page boundaries of the local address, per-segment status', async () => {
    const { w, bctx, bpages, dev, grant } = setup();
    const a = grant('0123456789');
    using xgt = Xengnttab.open(dev);
    const local = bpages.allocPages(2) as number[];
    assert.equal(local[1], local[0]! + PAGE, 'two consecutive pages');
    bctx.mem.write(local[0]! + PAGE - 3, enc('XYZUVW'));
    const segs = [
      // 6 bytes from a page boundary-crossing local address into the grant at offset 100: two ops.
      {
        source: { virt: local[0]! + PAGE - 3 },
        dest: { foreign: { ref: a.ref, offset: 100, domid: w.dom.domid } },
        len: 6,
        flags: GNTCOPY_dest_gref,
      },
      {
        source: { foreign: { ref: a.ref, offset: 2, domid: w.dom.domid } },
        dest: { virt: local[1]! + 10 },
        len: 4,
        flags: GNTCOPY_source_gref,
      },
      {
        source: { foreign: { ref: 4000, offset: 0, domid: w.dom.domid } },
        dest: { virt: local[1]! },
        len: 1,
        flags: GNTCOPY_source_gref,
      },
    ];
    assert.deepEqual(await xgt.grantCopy(segs), [GNTST_okay, GNTST_okay, GNTST_bad_gntref]);
    assert.equal(dec(w.ctx.mem.read(a.page + 100, 6)), 'XYZUVW');
    assert.equal(dec(bctx.mem.read(local[1]! + 10, 4)), '2345');
    await assert.rejects(
      xgt.grantCopy([{ source: { virt: local[0]! }, dest: { virt: local[1]! }, len: 1, flags: 0 }]),
      (e: unknown) => e instanceof XenError && e.op === 'xengnttab_grant_copy' && e.code === 'EINVAL',
    );
    await assert.rejects(
      xgt.grantCopy([
        {
          source: { foreign: { ref: a.ref, offset: 4090, domid: w.dom.domid } },
          dest: { virt: local[0]! },
          len: 10,
          flags: GNTCOPY_source_gref,
        },
      ]),
      (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      'a grant end must stay in its page',
    );
    await assert.rejects(
      xgt.grantCopy([
        {
          source: { foreign: { ref: a.ref, offset: 0, domid: w.dom.domid } },
          dest: { virt: 0x9000_0000 },
          len: 1,
          flags: GNTCOPY_source_gref,
        },
      ]),
      (e: unknown) => e instanceof XenError && e.code === 'EFAULT',
    );
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});

describe('libxengntshr', () => {
  it('share_pages, share_page_notify, unshare(addr, count); typed errors; dispose releases the share', async () => {
    const w = world({ kind: 'hvm', version: 1, backKind: 'pv' });
    const ports: number[] = [];
    const dev = new Gntalloc(w.gt, { limit: 3, notify: (p) => ports.push(p) });
    const free = w.gt.freeCount;
    {
      using xgs = Xengntshr.open(dev);
      const s = xgs.sharePages(w.back.domid, 2, true);
      assert.equal(s.refs.length, 2);
      assert.equal(w.gt.freeCount, free - 2);
      assert.throws(
        () => xgs.sharePages(w.back.domid, 2, false),
        (e: unknown) => e instanceof XenError && e.op === 'xengntshr_share_pages' && e.code === 'ENOSPC',
      );
      assert.throws(
        () => xgs.unshare(s.addr, 1),
        (e: unknown) => e instanceof XenError && e.code === 'EINVAL',
      );
      xgs.unshare(s.addr, 2);
      assert.equal(s.shared, false);
      assert.equal(w.gt.freeCount, free);
      const n = xgs.sharePageNotify(w.back.domid, true, 8, 5);
      w.ctx.mem.writeU8(n.addr + 8, 1);
      assert.equal(n.shared, true);
    }
    assert.deepEqual(ports, [5], 'disposing the handle unshared: the notification ran');
    assert.equal(w.gt.freeCount, free);
    assert.equal(dev.grefSize, 0);
    assert.deepEqual(w.host.checkInvariants(), []);
  });
});
