// The guest programs of the advisories' thread races, one role per domain,
// each in its own worker thread (spawned by race.ts), over the harness of
// race-harness.ts. This module is what each worker loads: the roles of
// XSA-295, 396 and 384 are here, the others in race-roles-*.ts.

import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly } from '../../abi/flags.ts';
import { gnttab_copy, gnttab_map_grant_ref } from '../../abi/gnttab-ops.ts';
import {
  GNTTABOP_copy,
  GNTTABOP_map_grant_ref,
  XEN_EINVAL,
  XENMAPIDX_grant_table_status,
  XENMAPSPACE_grant_table,
} from '../../abi/hypercall.ts';
import { GNTST_bad_domain, GNTST_bad_page, GNTST_general_error, GNTST_okay } from '../../abi/status.ts';
import type { GuestContext } from '../../guest/context.ts';
import { Gnttab } from '../../guest/gnttab/grant-table.ts';
import { addToPhysmap, grantTableOp, setVersion } from '../../guest/hypercall.ts';
import { FOREIGN_MAP_VA, GNTTAB_SHARED_VA } from '../../guest/layout.ts';
import {
  H,
  mapOnce,
  overlapped,
  passive,
  type RaceArgs,
  type Role,
  stopped,
  tally,
  unmapOnce,
  waitReady,
  words,
} from './race-harness.ts';
import { stealRoles, transferRoles } from './race-roles-transfer.ts';
import { transitiveRaceRoles, transitiveRoles } from './race-roles-transitive.ts';
import { versionRoles } from './race-roles-version.ts';

const NOISE = 0x200;
/** XSA-379: the two GFNs A's status frame 0 is placed at, by A itself and by dom0. */
const GFN_X = 0xd0010;
const GFN_Y = 0xd0020;
/** Where dom0 places A's status frame in the XSA-384 race. */
const STATUS_GFN = 0xd0040;

const roles: Record<string, Role> = {
  /** XSA-295, A: grants ref to B, then toggles an unrelated flag bit of it for ever. */
  async 'xsa-295-granter'(ctx, a, w) {
    const gt = new Gnttab(ctx, { version: 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    const page = gt.pages.alloc();
    const ref = gt.grantForeignAccess(a.peer, gt.pages.gfnOf(page), false);
    const flags = GNTTAB_SHARED_VA + ref * 8;
    Atomics.store(w, H.ref, ref);
    Atomics.add(w, H.ready, 1);
    return passive(ctx, w, () => {
      ctx.mem.or16(flags, NOISE);
      ctx.mem.and16(flags, ~NOISE & 0xffff);
    });
  },
  /** XSA-295, B: maps and unmaps A's ref; a hit is a map during which A toggled the flags. */
  async 'xsa-295-mapper'(ctx, a, w) {
    await waitReady(ctx, w, 1);
    const ref = Atomics.load(w, H.ref);
    let n = 0;
    while (!stopped(w)) {
      let status = GNTST_okay;
      let handle = -1;
      const hit = overlapped(w, () => {
        const m = mapOnce(ctx, a.peer, ref);
        status = m.status;
        handle = m.handle;
      });
      // Mapped (a CMPXCHG got through), or general_error after Xen's 5 attempts.
      if (status === GNTST_okay) {
        if (unmapOnce(ctx, handle) !== GNTST_okay) Atomics.add(w, H.violations, 1);
      } else if (status !== GNTST_general_error) Atomics.add(w, H.violations, 1);
      tally(w, a, hit);
      if ((++n & 1023) === 0) await ctx.clock.sleep(0);
    }
    return n;
  },
  /** XSA-396, A (frontend, the real driver): grants, then ends access; a refused end is a hit. */
  async 'xsa-396-frontend'(ctx, a, w) {
    const gt = new Gnttab(ctx, { version: a.version ?? 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    const page = gt.pages.alloc();
    Atomics.add(w, H.ready, 1);
    let n = 0;
    while (!stopped(w)) {
      const ref = gt.grantForeignAccess(a.peer, gt.pages.gfnOf(page), false);
      Atomics.store(w, H.ref, ref);
      // Give the backend a moment to map, varied from round to round.
      const spins = (n * 7919) % 5000;
      for (let i = 0; i < spins; i++) Atomics.load(w, H.mapped);
      let refused = false;
      for (;;) {
        if (gt.tryEndForeignAccess(ref)) {
          // Ended: the backend must not hold a mapping now (it sets mapped only after its map succeeded).
          if (Atomics.load(w, H.mapped) === 1) Atomics.add(w, H.violations, 1);
          break;
        }
        refused = true;
      }
      Atomics.store(w, H.ref, -1);
      tally(w, a, refused);
      if ((++n & 255) === 0) await ctx.clock.sleep(0);
    }
    return n;
  },
  /** XSA-396, B (backend): maps whatever ref is published, touches it, unmaps. */
  async 'xsa-396-backend'(ctx, a, w) {
    await waitReady(ctx, w, 1);
    let n = 0;
    while (!stopped(w)) {
      const ref = Atomics.load(w, H.ref);
      if (ref >= 0) {
        const m = mapOnce(ctx, a.peer, ref);
        if (m.status === GNTST_okay) {
          Atomics.store(w, H.mapped, 1);
          ctx.mem.writeU32(FOREIGN_MAP_VA, n);
          Atomics.store(w, H.mapped, 0);
          if (unmapOnce(ctx, m.handle) !== GNTST_okay) Atomics.add(w, H.violations, 1);
        } else if (m.status !== GNTST_general_error) Atomics.add(w, H.violations, 1);
      }
      if ((++n & 1023) === 0) await ctx.clock.sleep(0);
    }
    return n;
  },
  /** XSA-384/486, A: switches v2 -> v1 -> v2 for ever. */
  async 'xsa-384-switcher'(ctx, _a, w) {
    if (setVersion(ctx, 2).rc !== 0) throw new Error('set_version(2) failed');
    Atomics.add(w, H.ready, 1);
    return passive(ctx, w, () => {
      for (const v of [1, 2]) {
        const rc = setVersion(ctx, v).rc;
        if (rc !== 0) Atomics.add(w, H.violations, 1);
      }
    });
  },
  /** XSA-236, A: grants a page of 0x41 bytes to B as a ref, publishes it and is done (the host destroys A later). */
  async 'xsa-236-granter'(ctx, a, w) {
    const gt = new Gnttab(ctx, { version: 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    const page = gt.pages.alloc();
    ctx.mem.fill(page, 4096, 0x41);
    Atomics.store(w, H.ref, gt.grantForeignAccess(a.peer, gt.pages.gfnOf(page), true));
    Atomics.add(w, H.ready, 1);
    return 0;
  },
  /**
   * XSA-236, B: maps A's ref read-only (so its copies take the pinned fast
   * path), then copies from it until the race stops, A destroyed on the way.
   * Each copy is A's bytes, or bad_domain / bad_page / general_error with
   * nothing written; once A is gone B unmaps, and the zombie goes.
   */
  async 'xsa-236-copier'(ctx, a, w) {
    const gt = new Gnttab(ctx, { version: 1 });
    if (gt.init() !== 0) throw new Error('gnttab init failed');
    const dest = gt.pages.alloc();
    await waitReady(ctx, w, 1);
    const ref = Atomics.load(w, H.ref);
    const m = grantTableOp(ctx, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: FOREIGN_MAP_VA, flags: GNTMAP_host_map | GNTMAP_readonly, ref, dom: a.peer },
    ]).out[0]!;
    if (m.status !== GNTST_okay) throw new Error(`map of A's ref: ${m.status}`);
    const op = {
      source_u: ref,
      source_domid: a.peer,
      dest_u: gt.pages.gfnOf(dest),
      dest_domid: DOMID_SELF,
      len: 64,
      flags: GNTCOPY_source_gref,
    };
    let okay = 0;
    let failed = 0;
    let n = 0;
    // Past the stop, until the host's destroy is done (its second H.seq step)
    // and a copy has seen A dead: the hits may all come from copies while the
    // destroy request is on its way, before any of them could see it.
    while (!stopped(w) || Atomics.load(w, H.seq) < 2 || failed === 0) {
      ctx.mem.fill(dest, 64, 0);
      let status = 0;
      const hit = overlapped(w, () => {
        status = grantTableOp(ctx, GNTTABOP_copy, gnttab_copy, [op]).out[0]!.status;
      });
      const got = ctx.mem.read(dest, 64);
      if (status === GNTST_okay && got.every((x) => x === 0x41)) okay++;
      else if (
        (status === GNTST_bad_domain || status === GNTST_bad_page || status === GNTST_general_error) &&
        got.every((x) => x === 0)
      )
        failed++;
      else Atomics.add(w, H.violations, 1);
      tally(w, a, hit);
      if ((++n & 63) === 0) await ctx.clock.sleep(0);
    }
    if (unmapOnce(ctx, m.handle) !== GNTST_okay) Atomics.add(w, H.violations, 1);
    // Both sides of A's death must have been seen, or the harness checked nothing.
    if (okay === 0 || failed === 0) Atomics.add(w, H.violations, 1);
    return n;
  },
  /** XSA-379, A (HVM, v2): places its own status frame 0 at GFN X for ever; each placement 0. */
  async 'xsa-379-self'(ctx, _a, w) {
    if (setVersion(ctx, 2).rc !== 0) throw new Error('set_version(2) failed');
    Atomics.add(w, H.ready, 1);
    return passive(ctx, w, () => {
      const rc = addToPhysmap(ctx, DOMID_SELF, XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, GFN_X);
      if (rc !== 0) Atomics.add(w, H.violations, 1);
    });
  },
  /** XSA-379, dom0: places A's status frame 0 at GFN Y; a hit overlaps A's placement. */
  async 'xsa-379-other'(ctx, a, w) {
    await waitReady(ctx, w, 1);
    let n = 0;
    while (!stopped(w)) {
      let rc = 0;
      const hit = overlapped(w, () => {
        rc = addToPhysmap(ctx, a.peer, XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, GFN_Y);
      });
      if (rc !== 0) Atomics.add(w, H.violations, 1);
      tally(w, a, hit);
      if ((++n & 1023) === 0) await ctx.clock.sleep(0);
    }
    return n;
  },
  /** XSA-384/486, dom0: places A's status frame 0 in A's P2M; a hit overlaps a switch. */
  async 'xsa-384-placer'(ctx, a, w) {
    await waitReady(ctx, w, 1);
    let n = 0;
    while (!stopped(w)) {
      let rc = 0;
      const hit = overlapped(w, () => {
        rc = addToPhysmap(ctx, a.peer, XENMAPSPACE_grant_table, XENMAPIDX_grant_table_status, STATUS_GFN);
      });
      // Placed (v2 at that moment), or -EINVAL (v1: the status index is invalid).
      if (rc !== 0 && rc !== -XEN_EINVAL) Atomics.add(w, H.violations, 1);
      tally(w, a, hit);
      if ((++n & 1023) === 0) await ctx.clock.sleep(0);
    }
    return n;
  },
};

export default async function main(ctx: GuestContext, a: RaceArgs): Promise<unknown> {
  const role =
    roles[a.role] ??
    transitiveRoles[a.role] ??
    transitiveRaceRoles[a.role] ??
    versionRoles[a.role] ??
    transferRoles[a.role] ??
    stealRoles[a.role];
  if (role === undefined) throw new Error(`no race role ${a.role}`);
  const w = words(a);
  // A side that throws stops the race; one that returns (its setup done) leaves it running.
  try {
    return await role(ctx, a, w);
  } catch (err) {
    Atomics.store(w, H.stop, 1);
    throw err;
  }
}
