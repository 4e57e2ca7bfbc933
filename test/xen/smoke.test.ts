import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DOMID_SELF,
  GNTCOPY_source_gref,
  GNTMAP_host_map,
  GNTST_okay,
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  gnttab_copy,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
} from '../../src/index.ts';
import { gnttabOp, grantAccess, MAP_VA, mapGrantTable, one, statusBits } from '../helpers/guest.ts';

describe('smoke', () => {
  for (const [gk, bk] of [
    ['pv', 'pv'],
    ['hvm', 'hvm'],
    ['pv', 'hvm'],
    ['hvm', 'pv'],
  ] as const) {
    it(`${gk} granter, ${bk} grantee: grant, map, read through the mapping, copy, unmap`, () => {
      const host = new Host({ memoryMiB: 16 });
      const a = host.createDomain({ kind: gk, memoryKiB: 256 });
      const b = host.createDomain({ kind: bk, memoryKiB: 256 });
      mapGrantTable(a);
      const page = 0x3000;
      a.memory.write(page, new TextEncoder().encode('hello from a'));
      grantAccess(a, 10, b.domid, a.frameOf(page));
      const m = one(
        gnttabOp(b, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
          { host_addr: MAP_VA, flags: GNTMAP_host_map, ref: 10, dom: a.domid },
        ]),
      );
      assert.equal(m.status, GNTST_okay);
      assert.equal(new TextDecoder().decode(b.memory.read(MAP_VA, 12)), 'hello from a');
      assert.equal(statusBits(a, 10), 0x18);
      assert.deepEqual(host.checkInvariants(), []);
      b.memory.write(MAP_VA + 100, Uint8Array.of(1, 2, 3));
      assert.deepEqual([...a.memory.read(page + 100, 3)], [1, 2, 3]);
      // copy from the grant into b's own page 5
      const c = one(
        gnttabOp(b, GNTTABOP_copy, gnttab_copy, [
          {
            source_u: 10,
            source_domid: a.domid,
            source_offset: 0,
            dest_u: b.frameOf(0x5000),
            dest_domid: DOMID_SELF,
            dest_offset: 8,
            len: 12,
            flags: GNTCOPY_source_gref,
          },
        ]),
      );
      assert.equal(c.status, GNTST_okay);
      assert.equal(new TextDecoder().decode(b.memory.read(0x5008, 12)), 'hello from a');
      const u = one(
        gnttabOp(b, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [
          { host_addr: MAP_VA, handle: m.handle },
        ]),
      );
      assert.equal(u.status, GNTST_okay);
      assert.equal(statusBits(a, 10), 0);
      assert.deepEqual(host.checkInvariants(), []);
      host.destroyDomain(b.domid);
      host.destroyDomain(a.domid);
      assert.deepEqual(host.checkInvariants(), []);
      assert.equal(host.hypervisor.domains.size, 0);
    });
  }
});
