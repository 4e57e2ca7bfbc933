// The guest grant-table driver (guest-side.md §2-§3, xen-grant-tables.md §14):
// init and version choice, granting and ending access in v1 and v2 on PV and
// HVM, the deferred end-access list (XSA-396), transfers, sub-page and
// transitive grants, growth up to the maximum, suspend/resume, and gntalloc
// page sharing with the unmap notification.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XEN_PAGE_SIZE as PAGE_SIZE } from '../../src/abi/limits.ts';
import type { GuestContext } from '../../src/guest/context.ts';
import { EINVAL, ENOSPC, ENOSYS, EPERM } from '../../src/guest/gnttab/errno.ts';
import { GNTTAB_LIST_END, newFreeCallback } from '../../src/guest/gnttab/free-list.ts';
import { GNTALLOC_FLAG_WRITABLE, Gntalloc } from '../../src/guest/gnttab/gntalloc.ts';
import { Gnttab } from '../../src/guest/gnttab/grant-table.ts';
import { UNMAP_NOTIFY_CLEAR_BYTE, UNMAP_NOTIFY_SEND_EVENT } from '../../src/guest/gnttab/unmap-notify.ts';
import { Xengntshr } from '../../src/guest/gnttab/xengntshr.ts';
import { GNTTAB_SHARED_VA, GNTTAB_STATUS_VA, hypercallArgArea } from '../../src/guest/layout.ts';
import {
  __HYPERVISOR_grant_table_op,
  __HYPERVISOR_update_va_mapping,
  _PAGE_PRESENT,
  _PAGE_RW,
  DOMID_SELF,
  GNTCOPY_dest_gref,
  GNTCOPY_source_gref,
  GNTST_general_error,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_query_size,
  GNTTABOP_transfer,
  GTF_accept_transfer,
  GTF_permit_access,
  GTF_reading,
  GTF_readonly,
  GTF_sub_page,
  GTF_transitive,
  GTF_writing,
  gnttab_copy,
  gnttab_transfer,
  XEN_ENOSYS,
} from '../../src/index.ts';
import { gnttabOp, MAP_VA, one, setVersion } from '../helpers/guest.ts';
import { dec, enc, type Kind, peerMap, peerUnmap, pin, world } from './gnttab-world.ts';

const KINDS: Kind[] = ['pv', 'hvm'];
const VERSIONS: (1 | 2)[] = [1, 2];
const RW = GTF_reading | GTF_writing;

function entrySize(v: number): number {
  return v === 1 ? 8 : 16;
}
function entry(ref: number, v: number): number {
  return GNTTAB_SHARED_VA + ref * entrySize(v);
}
function statusWord(ref: number, v: number): number {
  return v === 1 ? entry(ref, 1) : GNTTAB_STATUS_VA + ref * 2;
}

describe('gnttab_init and version choice (guest-side.md §2.2, §3.5)', () => {
  for (const kind of KINDS) {
    for (const version of VERSIONS) {
      it(`${kind} v${version}: one frame mapped, refs 8.. free, Xen uses the same layout`, () => {
        const { host, dom, ctx, gt } = world({ kind, version });
        assert.equal(gt.version, version);
        assert.equal(dom.xen.gt.version, version);
        assert.equal(gt.nrGrantFrames, 1);
        const per = version === 1 ? 512 : 256;
        assert.equal(gt.size, per);
        assert.equal(gt.freeCount, per - 8);
        for (let r = 0; r < 8; r++) assert.equal(gt.isFree(r), false, `reserved ref ${r}`);
        assert.equal(gt.isFree(8), true);
        assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA, true), true);
        assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA + PAGE_SIZE), false);
        assert.equal(ctx.mem.mapped(GNTTAB_STATUS_VA), version === 2);
        if (kind === 'hvm') {
          assert.equal(dom.xen.gt.sharedGfn.get(0), GNTTAB_SHARED_VA / PAGE_SIZE);
          // v2 on HVM: the status frame placed too (Linux does not; we do, §3.4).
          if (version === 2) assert.equal(dom.xen.gt.statusGfn.get(0), GNTTAB_STATUS_VA / PAGE_SIZE);
        }
        assert.ok(host.console(dom.domid).includes(`Grant tables using version ${version} layout`));
        assert.equal(gt.init(), -EINVAL, 'a second init is refused');
        assert.deepEqual(host.checkInvariants(), []);
      });
    }
  }

  it("'auto' picks v1: v2 is needed only for frames >= 2^32 (§3.5)", () => {
    const { host, dom, gt } = world({ kind: 'pv', version: 'auto' });
    assert.equal(gt.version, 1);
    assert.equal(dom.xen.gt.version, 1);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('asking v2 of a Xen limited to v1: set_version answers -ENOSYS, v1 ops are used (§3.5)', () => {
    const { host, dom, gt } = world({ kind: 'hvm', version: 2, hostMaxVersion: 1 });
    assert.equal(gt.version, 1);
    assert.equal(dom.xen.gt.version, 1);
    assert.equal(gt.freeCount, 512 - 8);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('the driver keeps to the argument area: pages it allocates never reach it', () => {
    const { host, ctx, gt } = world({ kind: 'pv', version: 1 });
    const top = hypercallArgArea(ctx.start.ramBytes);
    assert.equal(gt.pages.nrPages, top / PAGE_SIZE);
    const got: number[] = [];
    for (let a = gt.pages.alloc(); a >= 0; a = gt.pages.alloc()) got.push(a);
    assert.equal(got.length, top / PAGE_SIZE);
    assert.ok(got.every((a) => a < top));
    assert.equal(gt.pages.alloc(), -12);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('granting and ending access (§2.3, §2.4, xen-grant-tables §14)', () => {
  for (const kind of KINDS) {
    for (const version of VERSIONS) {
      it(`${kind} v${version}: grant, the peer maps and reads; end refused while mapped, accepted after unmap`, () => {
        const { host, dom, back, ctx, gt } = world({ kind, version });
        const page = gt.pages.alloc();
        ctx.mem.write(page, enc(`hello from d${dom.domid}`));
        const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
        assert.ok(ref >= 8);
        assert.equal(gt.isFree(ref), false);
        // The entry as Xen reads it: flags, domid, frame.
        const e = entry(ref, version);
        assert.equal(ctx.mem.readU16(e), GTF_permit_access);
        assert.equal(ctx.mem.readU16(e + 2), back.domid);
        const frame = version === 1 ? ctx.mem.readU32(e + 4) : Number(ctx.mem.readU64(e + 8));
        assert.equal(frame, dom.frameOf(page));
        assert.equal(gt.readFrame(ref), frame);

        const m = peerMap(back, dom.domid, ref);
        assert.equal(m.status, GNTST_okay);
        assert.equal(dec(back.memory.read(MAP_VA, 13)), `hello from d${dom.domid}`);
        back.memory.write(MAP_VA + 100, enc('reply'));
        assert.equal(dec(ctx.mem.read(page + 100, 5)), 'reply');
        assert.equal(ctx.mem.readU16(statusWord(ref, version)) & RW, RW);

        assert.equal(gt.endForeignAccessRef(ref), false);
        assert.ok(host.console(dom.domid).includes(`WARNING: g.e. 0x${ref.toString(16)} still in use!`));
        // v1 leaves the entry valid; v2 has cleared the flags already but the mapping stays (§2.4).
        assert.equal(ctx.mem.readU16(e) & 3, version === 1 ? GTF_permit_access : 0);
        assert.equal(dec(back.memory.read(MAP_VA, 5)), 'hello');
        assert.equal(gt.tryEndForeignAccess(ref), false);
        assert.equal(gt.isFree(ref), false, 'try_end keeps the ref when it fails');

        assert.equal(peerUnmap(back, m.handle), GNTST_okay);
        assert.equal(pin(dom, ref), 0);
        const free = gt.freeCount;
        assert.equal(gt.tryEndForeignAccess(ref), true);
        assert.equal(ctx.mem.readU16(e), 0);
        assert.equal(gt.isFree(ref), true);
        assert.equal(gt.freeCount, free + 1);
        // A revoked entry cannot be mapped again.
        assert.notEqual(peerMap(back, dom.domid, ref).status, GNTST_okay);
        assert.deepEqual(host.checkInvariants(), []);
      });

      it(`${kind} v${version}: a read-only grant maps read-only only`, () => {
        const { host, dom, back, ctx, gt } = world({ kind, version });
        const page = gt.pages.alloc();
        const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), true);
        assert.equal(ctx.mem.readU16(entry(ref, version)), GTF_permit_access | GTF_readonly);
        assert.notEqual(peerMap(back, dom.domid, ref, false).status, GNTST_okay);
        const m = peerMap(back, dom.domid, ref, true);
        assert.equal(m.status, GNTST_okay);
        assert.equal(ctx.mem.readU16(statusWord(ref, version)) & RW, GTF_reading);
        assert.equal(peerUnmap(back, m.handle), GNTST_okay);
        gt.endForeignAccess(ref, page);
        assert.equal(gt.pages.count(page), 0);
        assert.deepEqual(host.checkInvariants(), []);
      });
    }
  }

  it('v1 update_entry: domid and frame are in place when the flags store makes the entry valid (§14)', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'pv', version: 1 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    assert.equal(gt.endForeignAccessRef(ref), true);
    const seen: string[] = [];
    const words = host.hypervisor.machine.words;
    words.interpose = (op) => {
      seen.push(
        `${op} domid=${ctx.mem.readU16(entry(ref, 1) + 2)} frame=${ctx.mem.readU32(entry(ref, 1) + 4)}`,
      );
    };
    gt.grantForeignAccessRef(ref, back.domid + 0, gt.pages.gfnOf(page), false);
    words.interpose = null;
    assert.deepEqual(seen, [`store16 domid=${back.domid} frame=${dom.frameOf(page)}`]);
    assert.equal(gt.tryEndForeignAccess(ref), true);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('v2 revoke: hdr.flags = 0 first, then the status word is read (§14, §13.2)', () => {
    const { host, back, ctx, gt } = world({ kind: 'hvm', version: 2 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    const seen: string[] = [];
    const words = host.hypervisor.machine.words;
    words.interpose = (op) => {
      seen.push(`${op} flags=${ctx.mem.readU16(entry(ref, 2))}`);
    };
    assert.equal(gt.tryEndForeignAccess(ref), true);
    words.interpose = null;
    assert.deepEqual(seen, [`store16 flags=${GTF_permit_access}`, 'load16 flags=0']);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('v1 revoke retries its cmpxchg with the value found when the flags change under it (§14)', () => {
    const { host, back, ctx, gt } = world({ kind: 'pv', version: 1 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    const flagsAt = host.hypervisor.machine.words;
    const ops: string[] = [];
    let flips = 3;
    flagsAt.interpose = (op) => {
      ops.push(op);
      // Another writer toggles GTF_readonly between the guest's read and its cmpxchg, three times.
      if (op === 'cmpxchg16' && flips-- > 0)
        ctx.mem.writeU16(entry(ref, 1), ctx.mem.readU16(entry(ref, 1)) ^ GTF_readonly);
    };
    assert.equal(gt.endForeignAccessRef(ref), true);
    flagsAt.interpose = null;
    assert.deepEqual(ops, ['load16', 'cmpxchg16', 'cmpxchg16', 'cmpxchg16', 'cmpxchg16']);
    assert.equal(ctx.mem.readU16(entry(ref, 1)), 0);
    gt.freeGrantReference(ref);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('v1 revoke fails when Xen pins the entry between the guest read and its cmpxchg (§13.1)', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'pv', version: 1 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    const words = host.hypervisor.machine.words;
    let m: { status: number; handle: number } | null = null;
    words.interpose = (op) => {
      if (op === 'cmpxchg16' && m === null) {
        words.interpose = null;
        m = peerMap(back, dom.domid, ref);
      }
    };
    assert.equal(gt.endForeignAccessRef(ref), false);
    words.interpose = null;
    const mapped = m as { status: number; handle: number } | null;
    assert.ok(mapped !== null);
    assert.equal(mapped.status, GNTST_okay);
    assert.equal(ctx.mem.readU16(entry(ref, 1)), GTF_permit_access | RW);
    assert.equal(peerUnmap(back, mapped.handle), GNTST_okay);
    assert.equal(gt.endForeignAccessRef(ref), true);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('deferred end of access (§3.6, XSA-396)', () => {
  for (const kind of KINDS) {
    for (const version of VERSIONS) {
      it(`${kind} v${version}: end_foreign_access while mapped defers; the page stays held until the peer unmaps`, () => {
        const { host, dom, back, ctx, gt } = world({ kind, version });
        const page = gt.pages.alloc();
        ctx.mem.write(page, enc('secret'));
        const freePages = gt.pages.freePages;
        const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
        const m = peerMap(back, dom.domid, ref);
        assert.equal(m.status, GNTST_okay);
        gt.endForeignAccess(ref, page);
        assert.equal(gt.deferredCount, 1);
        assert.equal(gt.pages.count(page), 1, 'the page reference moved to the deferred entry');
        assert.equal(gt.pages.freePages, freePages);
        assert.equal(gt.isFree(ref), false);
        // Nothing can take the page while it is held: allocations go elsewhere.
        const other = gt.pages.alloc();
        assert.notEqual(other, page);
        gt.pages.put(other);
        host.clock.advance(999);
        assert.equal(gt.deferredCount, 1);
        host.clock.advance(1);
        assert.equal(gt.deferredCount, 1, 'still mapped at the first timer run');
        assert.equal(gt.pages.count(page), 1);
        assert.equal(dec(back.memory.read(MAP_VA, 6)), 'secret');
        assert.equal(peerUnmap(back, m.handle), GNTST_okay);
        assert.equal(gt.pages.count(page), 1, 'nothing happens before the timer');
        host.clock.advance(1000);
        assert.equal(gt.deferredCount, 0);
        assert.equal(gt.isFree(ref), true);
        assert.equal(gt.pages.count(page), 0);
        assert.equal(gt.pages.freePages, freePages + 1);
        assert.equal(host.clock.pendingTimers, 0, 'no timer once the list is empty');
        assert.deepEqual(host.checkInvariants(), []);
      });
    }
  }

  it('with no page given, the driver takes its own reference on the granted page (CVE-2022-23041)', () => {
    for (const kind of KINDS) {
      const { host, dom, back, gt } = world({ kind, version: 1 });
      const page = gt.pages.alloc();
      const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
      const m = peerMap(back, dom.domid, ref);
      gt.endForeignAccess(ref, null);
      assert.equal(gt.pages.count(page), 2, `${kind}: read_frame found the page and got it`);
      assert.equal(gt.pages.put(page), false, 'the caller lets go: the page is not freed');
      assert.equal(gt.pages.count(page), 1);
      assert.equal(peerUnmap(back, m.handle), GNTST_okay);
      host.clock.advance(1000);
      assert.equal(gt.pages.count(page), 0);
      assert.equal(gt.deferredCount, 0);
      assert.deepEqual(host.checkInvariants(), []);
    }
  });

  it('end_foreign_access on an unmapped grant frees the ref and the page at once', () => {
    const { host, back, gt } = world({ kind: 'hvm', version: 2 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    gt.endForeignAccess(ref, page);
    assert.equal(gt.deferredCount, 0);
    assert.equal(gt.isFree(ref), true);
    assert.equal(gt.pages.count(page), 0);
    assert.equal(host.clock.pendingTimers, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('a run tries at most free_per_iteration (10) entries, in order', () => {
    const { host, dom, back, gt } = world({ kind: 'pv', version: 1 });
    const refs: number[] = [];
    const handles: number[] = [];
    for (let i = 0; i < 25; i++) {
      const page = gt.pages.alloc();
      const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), true);
      const m = peerMap(back, dom.domid, ref, true, MAP_VA + i * PAGE_SIZE);
      assert.equal(m.status, GNTST_okay);
      refs.push(ref);
      handles.push(m.handle);
      gt.endForeignAccess(ref, page);
    }
    assert.equal(gt.deferredCount, 25);
    handles.forEach((h, i) => {
      assert.equal(peerUnmap(back, h, MAP_VA + i * PAGE_SIZE), GNTST_okay);
    });
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 15);
    assert.deepEqual(
      refs.map((r) => gt.isFree(r)),
      refs.map((_, i) => i < 10),
    );
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 5);
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 0);
    assert.ok(refs.every((r) => gt.isFree(r)));
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('free_per_iteration 0 means no limit', () => {
    const { host, dom, back, gt } = world({ kind: 'hvm', version: 1, gnttab: { freePerIteration: 0 } });
    const handles: number[] = [];
    for (let i = 0; i < 15; i++) {
      const page = gt.pages.alloc();
      const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), true);
      handles.push(peerMap(back, dom.domid, ref, true, MAP_VA + i * PAGE_SIZE).handle);
      gt.endForeignAccess(ref, page);
    }
    handles.forEach((h, i) => {
      peerUnmap(back, h, MAP_VA + i * PAGE_SIZE);
    });
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('an entry still pending after 60 attempts is reported once; the timer keeps running', () => {
    const { host, dom, back, gt } = world({ kind: 'pv', version: 2 });
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    const m = peerMap(back, dom.domid, ref);
    gt.endForeignAccess(ref, page);
    const line = `g.e. 0x${ref.toString(16)} still pending`;
    host.clock.advance(59_000);
    assert.equal(host.console(dom.domid).filter((l) => l === line).length, 0);
    host.clock.advance(1000);
    assert.equal(host.console(dom.domid).filter((l) => l === line).length, 1);
    host.clock.advance(100_000);
    assert.equal(host.console(dom.domid).filter((l) => l === line).length, 1, 'the counter wrapped (u16)');
    assert.equal(gt.deferredCount, 1);
    assert.equal(gt.pages.count(page), 1);
    assert.equal(peerUnmap(back, m.handle), GNTST_okay);
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 0);
    assert.equal(gt.pages.count(page), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('transfers (§2.5, xen-grant-tables §6.6)', () => {
  /** A page of the PV sender given away: unmapped from its own address space first. */
  function giveAway(s: import('../../src/index.ts').DomainHandle, addr: number, text: string): number {
    s.memory.write(addr, enc(text));
    const mfn = s.frameOf(addr);
    assert.equal(s.hypercall(__HYPERVISOR_update_va_mapping, addr, 0, 0), 0);
    return mfn;
  }

  for (const kind of KINDS) {
    for (const version of VERSIONS) {
      it(`${kind} v${version} receiver: accept_transfer entry, the PV peer transfers a page, end_foreign_transfer returns its frame`, () => {
        const { host, dom, back, ctx, gt } = world({ kind, version, backKind: 'pv' });
        // HVM: the page arrives at a GFN with nothing there; PV: Xen writes the MFN back.
        const pfn = kind === 'hvm' ? gt.pages.allocUnpopulated(1) / PAGE_SIZE : 0x1234;
        const ref = gt.grantForeignTransfer(back.domid, pfn);
        assert.ok(ref >= 8);
        // Flags name the type exactly: v2 does not OR in permit_access (the §2.5 quirk is not copied).
        assert.equal(ctx.mem.readU16(entry(ref, version)), GTF_accept_transfer);
        const mfn = giveAway(back, 0x8000, `flipped to d${dom.domid}`);
        const r = one(gnttabOp(back, GNTTABOP_transfer, gnttab_transfer, [{ mfn, domid: dom.domid, ref }]));
        assert.equal(r.status, GNTST_okay);
        const frame = gt.endForeignTransfer(ref);
        assert.equal(gt.isFree(ref), true);
        if (kind === 'hvm') {
          assert.equal(frame, pfn);
          assert.equal(dec(ctx.mem.read(pfn * PAGE_SIZE, 13)), `flipped to d${dom.domid}`);
        } else {
          assert.equal(frame, mfn);
          const va = gt.pages.allocUnpopulated(1);
          assert.equal(
            ctx.hypercall(
              __HYPERVISOR_update_va_mapping,
              va,
              frame * PAGE_SIZE + _PAGE_PRESENT + _PAGE_RW,
              0,
            ),
            0,
          );
          assert.equal(dec(ctx.mem.read(va, 13)), `flipped to d${dom.domid}`);
        }
        assert.deepEqual(host.checkInvariants(), []);
      });
    }
  }

  it('no transfer happened: the entry is reclaimed, 0 is returned and the ref freed', () => {
    for (const version of VERSIONS) {
      const { host, back, ctx, gt } = world({ kind: 'pv', version });
      const ref = gt.grantForeignTransfer(back.domid, 0x55);
      assert.equal(gt.endForeignTransferRef(ref), 0);
      assert.equal(ctx.mem.readU16(entry(ref, version)), 0);
      assert.equal(gt.isFree(ref), false, 'the _ref form leaves the ref allocated');
      gt.freeGrantReference(ref);
      const ref2 = gt.grantForeignTransfer(back.domid, 0x55);
      assert.equal(gt.endForeignTransfer(ref2), 0);
      assert.equal(gt.isFree(ref2), true);
      assert.deepEqual(host.checkInvariants(), []);
    }
  });

  it('a transfer reclaimed first cannot be committed: the sender is refused (general_error, §6.6 step 8)', () => {
    const { host, dom, back, gt } = world({ kind: 'pv', version: 1, backKind: 'pv' });
    const ref = gt.grantForeignTransfer(back.domid, 0x77);
    assert.equal(gt.endForeignTransferRef(ref), 0);
    const mfn = giveAway(back, 0x9000, 'x');
    const r = one(gnttabOp(back, GNTTABOP_transfer, gnttab_transfer, [{ mfn, domid: dom.domid, ref }]));
    assert.equal(r.status, GNTST_general_error);
    gt.freeGrantReference(ref);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('sub-page and transitive grants (§2.8, xen-grant-tables §8)', () => {
  it('v1: not available; -ENOSYS, and the ref goes back to the free list', () => {
    const { host, back, gt } = world({ kind: 'pv', version: 1 });
    assert.equal(gt.subpageGrantsAvailable(), false);
    assert.equal(gt.transGrantsAvailable(), false);
    const free = gt.freeCount;
    assert.equal(gt.grantForeignAccessSubpage(back.domid, 1, 0, 0, 16), -ENOSYS);
    assert.equal(gt.grantForeignAccessTrans(back.domid, 0, back.domid, 8), -ENOSYS);
    assert.equal(gt.freeCount, free);
    assert.equal(gt.grantForeignAccessSubpageRef(9, back.domid, 1, 0, 0, 16), -ENOSYS);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('flags they may not carry give -EPERM, before the availability check (§2.8)', () => {
    for (const version of VERSIONS) {
      const { host, back, gt } = world({ kind: 'hvm', version });
      const free = gt.freeCount;
      // GTF_transitive is 3, so the sub-page mask also refuses GTF_permit_access.
      for (const f of [GTF_accept_transfer, GTF_reading, GTF_writing, GTF_transitive, GTF_permit_access])
        assert.equal(gt.grantForeignAccessSubpage(back.domid, 1, f, 0, 16), -EPERM, `sub-page flag ${f}`);
      for (const f of [GTF_accept_transfer, GTF_reading, GTF_writing, GTF_sub_page])
        assert.equal(
          gt.grantForeignAccessTrans(back.domid, f, back.domid, 8),
          -EPERM,
          `transitive flag ${f}`,
        );
      assert.equal(gt.freeCount, free);
      assert.deepEqual(host.checkInvariants(), []);
    }
  });

  for (const kind of KINDS) {
    it(`${kind} v2 sub-page grant: copies inside the window work, outside it fail, mapping fails (§8, quirk §15.7)`, () => {
      const { host, dom, back, ctx, gt } = world({ kind, version: 2 });
      assert.equal(gt.subpageGrantsAvailable(), true);
      const page = gt.pages.alloc();
      ctx.mem.write(page + 100, enc('window bytes'));
      const ref = gt.grantForeignAccessSubpage(back.domid, gt.pages.gfnOf(page), GTF_readonly, 100, 12);
      assert.ok(ref >= 8);
      const e = entry(ref, 2);
      assert.equal(ctx.mem.readU16(e), GTF_permit_access | GTF_sub_page | GTF_readonly);
      assert.equal(ctx.mem.readU16(e + 4), 100);
      assert.equal(ctx.mem.readU16(e + 6), 12);
      const copy = (offset: number, len: number) =>
        one(
          gnttabOp(back, GNTTABOP_copy, gnttab_copy, [
            {
              source_u: ref,
              source_domid: dom.domid,
              source_offset: offset,
              dest_u: back.frameOf(0x6000),
              dest_domid: DOMID_SELF,
              dest_offset: 0,
              len,
              flags: GNTCOPY_source_gref,
            },
          ]),
        ).status;
      assert.equal(copy(100, 12), GNTST_okay);
      assert.equal(dec(back.memory.read(0x6000, 12)), 'window bytes');
      assert.equal(copy(99, 12), GNTST_general_error);
      assert.equal(copy(100, 13), GNTST_general_error);
      assert.notEqual(peerMap(back, dom.domid, ref, true).status, GNTST_okay);
      gt.endForeignAccess(ref, page);
      assert.equal(gt.pages.count(page), 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it("v2 transitive grant: C copies A's page through B's entry (§8)", () => {
    const { host, dom: b, back: a, ctx, gt } = world({ kind: 'hvm', version: 2, backKind: 'pv' });
    const c = host.createDomain({ kind: 'hvm', memoryKiB: 1024 });
    // A (raw, v1) grants B its page through ref 20.
    const aPage = 0x7000;
    a.memory.write(aPage, enc('from A via B'));
    const aEntry = GNTTAB_SHARED_VA + 20 * 8;
    // A maps its own table to write the entry (PV).
    const aCtx = host.context(a.domid);
    const aGt = new Gnttab(aCtx, { version: 1 });
    assert.equal(aGt.init(), 0);
    aGt.grantForeignAccessRef(20, b.domid, a.frameOf(aPage), true);
    assert.equal(a.memory.readU16(aEntry), GTF_permit_access | GTF_readonly);
    assert.equal(gt.transGrantsAvailable(), true);
    const ref = gt.grantForeignAccessTrans(c.domid, GTF_readonly, a.domid, 20);
    assert.ok(ref >= 8);
    const e = entry(ref, 2);
    assert.equal(ctx.mem.readU16(e), GTF_permit_access | GTF_transitive | GTF_readonly);
    assert.equal(ctx.mem.readU16(e + 4), a.domid);
    assert.equal(ctx.mem.readU32(e + 8), 20);
    const r = one(
      gnttabOp(c, GNTTABOP_copy, gnttab_copy, [
        {
          source_u: ref,
          source_domid: b.domid,
          source_offset: 0,
          dest_u: c.frameOf(0x5000),
          dest_domid: DOMID_SELF,
          dest_offset: 0,
          len: 12,
          flags: GNTCOPY_source_gref,
        },
      ]),
    );
    assert.equal(r.status, GNTST_okay);
    assert.equal(dec(c.memory.read(0x5000, 12)), 'from A via B');
    // Writing through a read-only transitive grant is refused.
    const w = one(
      gnttabOp(c, GNTTABOP_copy, gnttab_copy, [
        {
          source_u: c.frameOf(0x5000),
          source_domid: DOMID_SELF,
          dest_u: ref,
          dest_domid: b.domid,
          len: 4,
          flags: GNTCOPY_dest_gref,
        },
      ]),
    );
    assert.notEqual(w.status, GNTST_okay);
    assert.equal(gt.tryEndForeignAccess(ref), true);
    assert.equal(aGt.endForeignAccessRef(20), true);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('growth on demand (§3.3 gnttab_expand, xen-grant-tables §11)', () => {
  for (const kind of KINDS) {
    for (const version of VERSIONS) {
      it(`${kind} v${version}: grows a frame at a time up to max_grant_frames, then -ENOSPC`, () => {
        const { host, dom, back, ctx, gt } = world({ kind, version, maxGrantFrames: 3 });
        const per = version === 1 ? 512 : 256;
        const refs: number[] = [];
        for (;;) {
          const ref = gt.grantForeignAccess(back.domid, 1, true);
          if (ref < 0) {
            assert.equal(ref, -ENOSPC);
            break;
          }
          refs.push(ref);
        }
        assert.equal(refs.length, 3 * per - 8);
        assert.equal(new Set(refs).size, refs.length);
        assert.equal(gt.nrGrantFrames, 3);
        assert.equal(dom.xen.gt.nrGrantFrames, 3);
        assert.equal(gt.freeCount, 0);
        assert.ok(
          host
            .console(dom.domid)
            .some((l) => l.startsWith('xen/grant-table: max_grant_frames reached cur=3 extra=1 limit=3')),
        );
        for (let f = 0; f < 3; f++)
          assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA + f * PAGE_SIZE, true), true);
        // An entry in the last frame works end to end.
        const last = Math.max(...refs);
        assert.equal(last, 3 * per - 1);
        const page = gt.pages.alloc();
        ctx.mem.write(page, enc('last frame'));
        gt.grantForeignAccessRef(last, back.domid, gt.pages.gfnOf(page), false);
        const m = peerMap(back, dom.domid, last);
        assert.equal(m.status, GNTST_okay);
        assert.equal(dec(back.memory.read(MAP_VA, 10)), 'last frame');
        assert.equal(gt.endForeignAccessRef(last), false);
        assert.equal(peerUnmap(back, m.handle), GNTST_okay);
        assert.equal(gt.endForeignAccessRef(last), true);
        gt.freeGrantReference(last);
        assert.equal(gt.freeCount, 1);
        assert.deepEqual(host.checkInvariants(), []);
      });
    }
  }

  it('v2 past 8 frames: a second status frame is set up (PV maps it, HVM places it)', () => {
    for (const kind of KINDS) {
      const { host, dom, back, ctx, gt } = world({ kind, version: 2, maxGrantFrames: 10 });
      const first = gt.allocGrantReferenceSeq(8 * 256);
      assert.ok(first >= 8, `${kind}: ${first}`);
      assert.equal(gt.nrGrantFrames, 9);
      assert.equal(dom.xen.gt.nrStatusFrames, 2);
      assert.equal(ctx.mem.mapped(GNTTAB_STATUS_VA + PAGE_SIZE), true);
      if (kind === 'hvm') assert.equal(dom.xen.gt.statusGfn.get(1), GNTTAB_STATUS_VA / PAGE_SIZE + 1);
      // A ref whose status word is in the second status frame.
      const ref = 2048 + 5;
      assert.ok(ref >= first && ref < first + 8 * 256);
      const page = gt.pages.alloc();
      gt.grantForeignAccessRef(ref, back.domid, gt.pages.gfnOf(page), false);
      const m = peerMap(back, dom.domid, ref);
      assert.equal(m.status, GNTST_okay);
      assert.equal(ctx.mem.readU16(statusWord(ref, 2)) & RW, RW);
      assert.equal(gt.endForeignAccessRef(ref), false);
      assert.equal(peerUnmap(back, m.handle), GNTST_okay);
      assert.equal(gt.endForeignAccessRef(ref), true);
      gt.freeGrantReferenceSeq(first, 8 * 256);
      assert.deepEqual(host.checkInvariants(), []);
    }
  });

  it('query_size failing: the legacy maximum of 4 frames (§2.2)', () => {
    const failQuery = (ctx: GuestContext): GuestContext => ({
      ...ctx,
      hypercall: (nr, ...args) =>
        nr === __HYPERVISOR_grant_table_op && args[0] === GNTTABOP_query_size
          ? -XEN_ENOSYS
          : ctx.hypercall(nr, ...args),
    });
    const { host, dom, back, gt } = world({ kind: 'hvm', version: 1, wrap: failQuery });
    assert.equal(gt.maxGrantFrames(), 4);
    let n = 0;
    while (gt.grantForeignAccess(back.domid, 1, true) >= 0) n++;
    assert.equal(n, 4 * 512 - 8);
    assert.equal(dom.xen.gt.nrGrantFrames, 4);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('the maximum never exceeds what the first query saw (§2.2 boot value)', () => {
    let max = 2;
    const moving = (ctx: GuestContext): GuestContext => ({
      ...ctx,
      hypercall: (nr, ...args) => {
        const rc = ctx.hypercall(nr, ...args);
        if (nr === __HYPERVISOR_grant_table_op && args[0] === GNTTABOP_query_size)
          ctx.mem.writeU32(Number(args[1]) + 8, max);
        return rc;
      },
    });
    const { host, gt, back } = world({ kind: 'pv', version: 1, wrap: moving });
    max = 10;
    assert.equal(gt.maxGrantFrames(), 2);
    max = 1;
    assert.equal(gt.maxGrantFrames(), 1);
    max = 10;
    let n = 0;
    while (gt.grantForeignAccess(back.domid, 1, true) >= 0) n++;
    assert.equal(n, 2 * 512 - 8);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('suspend and resume (§2.2)', () => {
  for (const version of VERSIONS) {
    it(`pv v${version}: suspend unmaps the frames, resume maps them again; grants survive`, () => {
      const { host, dom, back, ctx, gt } = world({ kind: 'pv', version, maxGrantFrames: 4 });
      const page = gt.pages.alloc();
      ctx.mem.write(page, enc('before'));
      const ref = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
      // Grow to two frames first.
      const seq = gt.allocGrantReferenceSeq(gt.freeCount + 1);
      assert.ok(seq >= 8);
      assert.equal(gt.nrGrantFrames, 2);
      const m = peerMap(back, dom.domid, ref);
      assert.equal(gt.suspend(), 0);
      assert.equal(gt.isSuspended, true);
      assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA), false);
      assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA + PAGE_SIZE), false);
      assert.equal(ctx.mem.mapped(GNTTAB_STATUS_VA), false);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(gt.resume(), 0);
      assert.equal(gt.isSuspended, false);
      assert.equal(gt.version, version);
      assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA + PAGE_SIZE, true), true);
      assert.equal(ctx.mem.mapped(GNTTAB_STATUS_VA), version === 2);
      // The grant is still there and still mapped by the peer; nothing was re-granted.
      assert.equal(ctx.mem.readU16(entry(ref, version)), GTF_permit_access | (version === 1 ? RW : 0));
      assert.equal(dec(back.memory.read(MAP_VA, 6)), 'before');
      assert.equal(gt.endForeignAccessRef(ref), false);
      assert.equal(peerUnmap(back, m.handle), GNTST_okay);
      gt.endForeignAccess(ref, page);
      assert.equal(gt.pages.count(page), 0);
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('hvm: suspend leaves the frames where Xen placed them; resume places them again', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'hvm', version: 2 });
    const ref = gt.grantForeignAccess(back.domid, 3, true);
    assert.equal(gt.suspend(), 0);
    assert.equal(ctx.mem.mapped(GNTTAB_SHARED_VA), true);
    assert.equal(gt.resume(), 0);
    assert.equal(dom.xen.gt.sharedGfn.get(0), GNTTAB_SHARED_VA / PAGE_SIZE);
    assert.equal(dom.xen.gt.statusGfn.get(0), GNTTAB_STATUS_VA / PAGE_SIZE);
    assert.equal(gt.tryEndForeignAccess(ref), true);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('resume renegotiates: v2 refused (-EBUSY while a grant is pinned) falls back to v1 ops (§3.5)', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'pv', version: 2 });
    assert.equal(gt.suspend(), 0);
    // The restored domain starts at v1 (status frames unmapped by suspend, so Xen allows it)
    // and a peer already has one of its grants mapped.
    assert.equal(setVersion(dom, 1).rc, 0);
    assert.equal(dom.xen.gt.version, 1);
    const raw = host.context(dom.domid);
    const v1 = new Gnttab(raw, { version: 1 });
    assert.equal(v1.init(), 0);
    v1.grantForeignAccessRef(9, back.domid, dom.frameOf(0x3000), true);
    const m = peerMap(back, dom.domid, 9, true);
    assert.equal(m.status, GNTST_okay);
    assert.equal(gt.resume(), 0);
    assert.equal(gt.version, 1);
    assert.equal(dom.xen.gt.version, 1);
    assert.ok(host.console(dom.domid).filter((l) => l === 'Grant tables using version 1 layout').length >= 1);
    // The v1 ops now drive the table: the pinned entry reads as in use.
    assert.equal(gt.endForeignAccessRef(9), false);
    assert.equal(ctx.mem.mapped(GNTTAB_STATUS_VA), false);
    assert.equal(peerUnmap(back, m.handle), GNTST_okay);
    assert.equal(gt.endForeignAccessRef(9), true);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('resume with fewer frames allowed than in use: -ENOSYS (§2.2 gnttab_setup)', () => {
    let max = 3;
    const shrinking = (ctx: GuestContext): GuestContext => ({
      ...ctx,
      hypercall: (nr, ...args) => {
        const rc = ctx.hypercall(nr, ...args);
        if (nr === __HYPERVISOR_grant_table_op && args[0] === GNTTABOP_query_size)
          ctx.mem.writeU32(Number(args[1]) + 8, max);
        return rc;
      },
    });
    const { host, gt } = world({ kind: 'pv', version: 1, wrap: shrinking });
    assert.ok(gt.allocGrantReferenceSeq(600) >= 8);
    assert.equal(gt.nrGrantFrames, 2);
    assert.equal(gt.suspend(), 0);
    max = 1;
    assert.equal(gt.resume(), -ENOSYS);
    max = 3;
    assert.equal(gt.resume(), 0);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('private pools, single and consecutive refs, callbacks (§2.6, §2.7)', () => {
  it('alloc/claim/release/free of a private pool', () => {
    const { host, gt } = world({ kind: 'hvm', version: 1 });
    const free = gt.freeCount;
    const pool = { head: GNTTAB_LIST_END };
    assert.equal(gt.emptyGrantReferences(pool), true);
    assert.equal(gt.allocGrantReferences(3, pool), 0);
    assert.equal(gt.freeCount, free - 3);
    const a = gt.claimGrantReference(pool);
    const b = gt.claimGrantReference(pool);
    const c = gt.claimGrantReference(pool);
    assert.equal(new Set([a, b, c]).size, 3);
    assert.equal(gt.claimGrantReference(pool), -ENOSPC);
    assert.equal(gt.emptyGrantReferences(pool), true);
    gt.releaseGrantReference(pool, b);
    assert.equal(gt.isFree(b), false, 'released to the pool, not the free list');
    assert.equal(gt.claimGrantReference(pool), b);
    gt.releaseGrantReference(pool, a);
    gt.releaseGrantReference(pool, c);
    gt.freeGrantReferences(pool.head);
    gt.freeGrantReference(b);
    assert.equal(gt.freeCount, free);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('reserved refs 0-7 are ignored when freed; a double free is a BUG', () => {
    const { host, gt } = world({ kind: 'pv', version: 1 });
    const free = gt.freeCount;
    gt.freeGrantReference(1);
    gt.freeGrantReferenceSeq(0, 8);
    assert.equal(gt.freeCount, free);
    const ref = gt.allocGrantReferenceSeq(1);
    gt.freeGrantReference(ref);
    assert.throws(() => gt.freeGrantReference(ref), /freed twice/);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('consecutive refs come from the tail run; freeing them puts them back in ascending order', () => {
    const { host, gt } = world({ kind: 'pv', version: 1 });
    const first = gt.allocGrantReferenceSeq(10);
    assert.equal(first, 8);
    gt.freeGrantReferenceSeq(first, 10);
    const pool = { head: GNTTAB_LIST_END };
    assert.equal(gt.allocGrantReferences(3, pool), 0);
    assert.deepEqual(
      [gt.claimGrantReference(pool), gt.claimGrantReference(pool), gt.claimGrantReference(pool)],
      [8, 9, 10],
    );
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('a seq allocation that finds no run and no tail run grows by whole frames and stays inside the table', () => {
    const { host, gt } = world({ kind: 'pv', version: 1, maxGrantFrames: 4 });
    // Two frames, every free run shorter than 512, and the last ref taken: no tail run.
    assert.equal(gt.allocGrantReferenceSeq(1016), 8);
    assert.equal(gt.nrGrantFrames, 2);
    gt.freeGrantReferenceSeq(8, 292);
    gt.freeGrantReferenceSeq(301, 499);
    gt.freeGrantReferenceSeq(801, 222);
    assert.equal(gt.freeCount, 1013);
    const first = gt.allocGrantReferenceSeq(512);
    assert.equal(gt.nrGrantFrames, 3);
    // Linux points its tail at the first new ref's own link cell here and would hand out
    // 1025..1536, one past the table; the new frame's run is 1024..1535.
    assert.equal(first, 1024);
    for (let r = first; r < first + 512; r++) assert.equal(gt.isFree(r), false);
    assert.equal(gt.freeCount, 1013);
    gt.freeGrantReferenceSeq(first, 512);
    for (const r of [300, 800, 1023]) gt.freeGrantReference(r);
    assert.equal(gt.freeCount, gt.size - 8);
    // The list is whole: every free ref can be taken again, once.
    const again = new Set<number>();
    const left = (): number => gt.freeCount;
    while (left() > 0) {
      const r = gt.allocGrantReferenceSeq(1);
      assert.ok(!again.has(r) && r >= 8 && r < 1536, String(r));
      again.add(r);
    }
    assert.equal(again.size, 1536 - 8);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('a seq allocation that takes the whole tail run keeps the list whole for the next growth', () => {
    // Found by the allocator model test (hvm v2, seed 373232290): allocPool(23), allocPool(4),
    // allocPool(6), allocSeq(47), freePool(0), allocSeq(424), allocPool(24).
    const { host, gt } = world({ kind: 'hvm', version: 2, maxGrantFrames: 3 });
    const pools = [23, 4, 6].map((n) => {
      const pool = { head: GNTTAB_LIST_END };
      assert.equal(gt.allocGrantReferences(n, pool), 0);
      return pool;
    });
    assert.equal(gt.allocGrantReferenceSeq(47), 41);
    gt.freeGrantReferences(pools[0]!.head);
    // 191 free, the tail run 88..255: growing one frame makes it exactly 424, all taken.
    assert.equal(gt.allocGrantReferenceSeq(424), 88);
    assert.equal(gt.freeCount, 23);
    // Linux's last_free still names ref 511 (just taken): the next growth would link the new
    // frame from its cell and the 24th ref of this pool would be read past the list's end.
    const pool = { head: GNTTAB_LIST_END };
    assert.equal(gt.allocGrantReferences(24, pool), 0);
    const got: number[] = [];
    for (let r = gt.claimGrantReference(pool); r >= 0; r = gt.claimGrantReference(pool)) got.push(r);
    assert.equal(got.length, 24);
    assert.deepEqual(
      got.sort((a, b) => a - b),
      [...Array.from({ length: 23 }, (_, i) => 8 + i), 512],
    );
    assert.equal(gt.freeCount, 255);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('free callbacks: fire once when enough refs are free; a queued callback is not re-registered', () => {
    const { host, gt } = world({ kind: 'hvm', version: 1, maxGrantFrames: 1 });
    const seen: string[] = [];
    const cb = newFreeCallback();
    const pool = { head: GNTTAB_LIST_END };
    assert.equal(gt.allocGrantReferences(gt.freeCount - 2, pool), 0);
    gt.requestFreeCallback(cb, (arg) => seen.push(String(arg)), 'a', 5);
    assert.equal(seen.length, 0);
    gt.requestFreeCallback(cb, (arg) => seen.push(`other ${String(arg)}`), 'b', 1);
    const refs = [gt.claimGrantReference(pool), gt.claimGrantReference(pool), gt.claimGrantReference(pool)];
    gt.freeGrantReference(refs[0]!);
    gt.freeGrantReference(refs[1]!);
    assert.equal(seen.length, 0);
    gt.freeGrantReference(refs[2]!);
    assert.deepEqual(seen, ['a'], 'the first registration stands');
    gt.freeGrantReference(gt.claimGrantReference(pool));
    assert.deepEqual(seen, ['a'], 'fired once');
    gt.requestFreeCallback(cb, (arg) => seen.push(String(arg)), 'c', 2);
    assert.deepEqual(seen, ['a', 'c'], 'already satisfied: fires at once');
    const cb2 = newFreeCallback();
    gt.requestFreeCallback(cb2, () => seen.push('never'), null, 1000);
    gt.cancelFreeCallback(cb2);
    gt.freeGrantReferences(pool.head);
    assert.deepEqual(seen, ['a', 'c']);
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('gntalloc: sharing pages with the unmap notification (§5.1, §5.4, §5.5)', () => {
  for (const kind of KINDS) {
    it(`${kind}: share pages, the peer maps them; unshare while mapped defers the end of access`, () => {
      const { host, dom, back, ctx, gt } = world({ kind, version: 1 });
      const dev = new Gntalloc(gt);
      const shr = new Xengntshr(dev);
      const share = shr.sharePages(back.domid, 3, true);
      assert.equal(share.refs.length, 3);
      assert.equal(dev.grefSize, 3);
      ctx.mem.write(share.addrs[1]!, enc('page one'));
      const m = peerMap(back, dom.domid, share.refs[1]!);
      assert.equal(m.status, GNTST_okay);
      assert.equal(dec(back.memory.read(MAP_VA, 8)), 'page one');
      shr.unshare(share);
      assert.equal(dev.grefSize, 0);
      assert.equal(gt.deferredCount, 1, 'the mapped one is deferred');
      assert.equal(gt.isFree(share.refs[0]!), true);
      assert.equal(gt.isFree(share.refs[1]!), false);
      assert.equal(gt.pages.count(share.addrs[0]!), 0);
      assert.equal(gt.pages.count(share.addrs[1]!), 1, 'held until the peer lets go (XSA-396)');
      assert.equal(peerUnmap(back, m.handle), GNTST_okay);
      host.clock.advance(1000);
      assert.equal(gt.pages.count(share.addrs[1]!), 0);
      assert.equal(gt.isFree(share.refs[1]!), true);
      shr.close();
      assert.deepEqual(host.checkInvariants(), []);
    });
  }

  it('unmap notification: the byte is cleared and the port signalled when the page is unshared', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'pv', version: 2 });
    const ports: number[] = [];
    const dev = new Gntalloc(gt, { notify: (p) => ports.push(p) });
    const shr = new Xengntshr(dev);
    const share = shr.sharePageNotify(back.domid, true, 21, 7);
    const page = share.addrs[0]!;
    ctx.mem.writeU8(page + 21, 1);
    const m = peerMap(back, dom.domid, share.refs[0]!);
    assert.equal(back.memory.readU8(MAP_VA + 21), 1);
    shr.unshare(share);
    assert.deepEqual(ports, [7]);
    assert.equal(back.memory.readU8(MAP_VA + 21), 0, 'the peer sees the live byte cleared');
    assert.equal(peerUnmap(back, m.handle), GNTST_okay);
    host.clock.advance(1000);
    assert.equal(gt.deferredCount, 0);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('device rules: limit, file indexes never reused, notify validation, records live while mapped', () => {
    const { host, back, gt } = world({ kind: 'hvm', version: 1 });
    const dev = new Gntalloc(gt, { limit: 4 });
    const f = dev.open();
    const a = f.allocGref(back.domid, GNTALLOC_FLAG_WRITABLE, 3);
    assert.equal(a.rc, 0);
    assert.equal(a.index, 0);
    assert.equal(f.allocGref(back.domid, 0, 2).rc, -ENOSPC, 'the limit counts every page');
    const b = f.allocGref(back.domid, 0, 1);
    assert.equal(b.rc, 0);
    assert.equal(b.index, 3 * PAGE_SIZE);
    // Read-only grant for flags 0.
    assert.equal(gt.ctx.mem.readU16(entry(b.grefIds[0]!, 1)), GTF_permit_access | GTF_readonly);
    assert.equal(f.setUnmapNotify(0, 4, 0), -EINVAL, 'unknown action bit');
    assert.equal(f.setUnmapNotify(0, UNMAP_NOTIFY_SEND_EVENT, 3), -EINVAL, 'no event channel to signal');
    assert.equal(f.setUnmapNotify(9 * PAGE_SIZE, UNMAP_NOTIFY_CLEAR_BYTE, 0), -2);
    assert.equal(f.setUnmapNotify(PAGE_SIZE + 5, UNMAP_NOTIFY_CLEAR_BYTE, 0), 0);
    const vma = f.mmap(0, 3);
    assert.ok(typeof vma !== 'number');
    gt.ctx.mem.writeU8(vma.addrs[1]! + 5, 9);
    assert.equal(f.deallocGref(0, 3), 0);
    assert.equal(dev.grefSize, 4, 'dealloc keeps mapped records alive, and the limit counts them');
    assert.equal(gt.ctx.mem.readU8(vma.addrs[1]! + 5), 9);
    vma.unmap();
    assert.equal(gt.ctx.mem.readU8(vma.addrs[1]! + 5), 0, 'byte cleared when the last user went');
    assert.equal(dev.grefSize, 1);
    for (const r of a.grefIds) assert.equal(gt.isFree(r), true);
    assert.equal(f.deallocGref(0, 3), -EINVAL);
    const c = f.allocGref(back.domid, 0, 1);
    assert.equal(c.index, 4 * PAGE_SIZE, 'indexes are never reused');
    f.close();
    assert.equal(dev.grefSize, 0);
    assert.equal(gt.freeCount, gt.size - 8);
    assert.deepEqual(host.checkInvariants(), []);
  });

  it('running out of grant refs undoes the allocation (-ENOSPC, nothing left behind)', () => {
    const { host, back, gt } = world({ kind: 'pv', version: 1, maxGrantFrames: 1 });
    const pool = { head: GNTTAB_LIST_END };
    assert.equal(gt.allocGrantReferences(gt.freeCount - 2, pool), 0);
    const pagesFree = gt.pages.freePages;
    const dev = new Gntalloc(gt);
    const f = dev.open();
    assert.equal(f.allocGref(back.domid, 0, 3).rc, -ENOSPC);
    assert.equal(dev.grefSize, 0);
    assert.equal(gt.freeCount, 2);
    assert.equal(gt.pages.freePages, pagesFree);
    gt.freeGrantReferences(pool.head);
    f.close();
    assert.deepEqual(host.checkInvariants(), []);
  });
});

describe('copying into a grant made by the driver (xen-grant-tables §6.7)', () => {
  it('the peer copies into a writable grant; a read-only grant refuses the write', () => {
    const { host, dom, back, ctx, gt } = world({ kind: 'hvm', version: 2, backKind: 'hvm' });
    const page = gt.pages.alloc();
    const rw = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), false);
    const ro = gt.grantForeignAccess(back.domid, gt.pages.gfnOf(page), true);
    back.memory.write(0x4000, enc('copied in'));
    const copyTo = (ref: number) =>
      one(
        gnttabOp(back, GNTTABOP_copy, gnttab_copy, [
          {
            source_u: back.frameOf(0x4000),
            source_domid: DOMID_SELF,
            dest_u: ref,
            dest_domid: dom.domid,
            dest_offset: 40,
            len: 9,
            flags: GNTCOPY_dest_gref,
          },
        ]),
      ).status;
    assert.equal(copyTo(rw), GNTST_okay);
    assert.equal(dec(ctx.mem.read(page + 40, 9)), 'copied in');
    assert.notEqual(copyTo(ro), GNTST_okay);
    assert.equal(gt.tryEndForeignAccess(rw), true);
    assert.equal(gt.tryEndForeignAccess(ro), true);
    gt.pages.put(page);
    assert.deepEqual(host.checkInvariants(), []);
  });
});
