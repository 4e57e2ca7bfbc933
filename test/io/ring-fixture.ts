// Test plumbing for the io/ tests: a frontend grants pages of its RAM, a
// backend maps them one after another with the raw map_grant_ref hypercall
// (as a Linux backend maps a multi-page ring), and teardown undoes it all,
// asserting that the mappings are gone and the grants ended.
import assert from 'node:assert/strict';
import {
  type DomainHandle,
  GNTMAP_host_map,
  GNTST_okay,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  GTF_permit_access,
  type GuestMemory,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
} from '../../src/index.ts';
import {
  entryAddr,
  gnttabOp,
  grantAccess,
  MAP_VA,
  mapGrantTable,
  setVersion,
  statusAddr,
} from '../helpers/guest.ts';

export type Kind = 'pv' | 'hvm';

export const KIND_PAIRS: readonly (readonly [Kind, Kind])[] = [
  ['pv', 'pv'],
  ['hvm', 'hvm'],
  ['pv', 'hvm'],
  ['hvm', 'pv'],
];

export interface Env {
  host: Host;
  /** The frontend: owns the pages and grants them. */
  front: DomainHandle;
  /** The backend: maps the frontend's grants. */
  back: DomainHandle;
  /** Each domain's own address space, as its guest code sees it (GuestContext.mem). */
  frontMem: GuestMemory;
  backMem: GuestMemory;
}

export function makeEnv(frontKind: Kind, backKind: Kind, version: 1 | 2 = 1): Env {
  const host = new Host({ memoryMiB: 16 });
  const front = host.createDomain({ kind: frontKind, memoryKiB: 512 });
  const back = host.createDomain({ kind: backKind, memoryKiB: 512 });
  if (version === 2) assert.equal(setVersion(front, 2).rc, 0);
  mapGrantTable(front);
  return {
    host,
    front,
    back,
    frontMem: host.context(front.domid).mem,
    backMem: host.context(back.domid).mem,
  };
}

/** Pages of the frontend's RAM granted to the backend and mapped there contiguously. */
export interface Shared {
  /** First page in the frontend's address space. */
  frontBase: number;
  /** Where the backend sees the same pages, one after another. */
  backBase: number;
  pages: number;
  refs: number[];
  handles: number[];
}

/** The frontend grants `pages` pages starting at frontBase to the backend (refs firstRef, firstRef + 1, ...). */
export function grantPages(env: Env, frontBase: number, pages: number, firstRef: number): number[] {
  const { front, back } = env;
  const refs: number[] = [];
  for (let i = 0; i < pages; i++) {
    const ref = firstRef + i;
    grantAccess(front, ref, back.domid, front.frameOf(frontBase + i * 4096));
    refs.push(ref);
  }
  return refs;
}

/** The backend maps the frontend's `refs` one after another from backBase, in one map_grant_ref batch. */
export function mapRefs(env: Env, frontBase: number, refs: readonly number[], backBase: number): Shared {
  const { front, back } = env;
  const r = gnttabOp(
    back,
    GNTTABOP_map_grant_ref,
    gnttab_map_grant_ref,
    refs.map((ref, i) => ({ host_addr: backBase + i * 4096, flags: GNTMAP_host_map, ref, dom: front.domid })),
  );
  assert.equal(r.rc, 0);
  for (const o of r.out) assert.equal(o.status, GNTST_okay);
  return { frontBase, backBase, pages: refs.length, refs: [...refs], handles: r.out.map((o) => o.handle) };
}

/**
 * Grants `pages` pages of the frontend starting at frontBase (refs firstRef..)
 * and maps them in the backend at backBase.. in one map_grant_ref batch.
 */
export function share(env: Env, frontBase: number, pages: number, firstRef = 8, backBase = MAP_VA): Shared {
  return mapRefs(env, frontBase, grantPages(env, frontBase, pages, firstRef), backBase);
}

/**
 * The backend unmaps, the frontend ends access to every ref (v1: the cmpxchg
 * of the flags from permit_access to 0, which fails while Xen's reading or
 * writing bit is set; v2: flags to 0, then the status word must be clear).
 * Asserts the mappings are gone and nothing is pinned any more.
 */
export function unshare(env: Env, s: Shared): void {
  const { front, back, frontMem, backMem } = env;
  const r = gnttabOp(
    back,
    GNTTABOP_unmap_grant_ref,
    gnttab_unmap_grant_ref,
    s.handles.map((handle, i) => ({ host_addr: s.backBase + i * 4096, handle })),
  );
  assert.equal(r.rc, 0);
  for (const o of r.out) assert.equal(o.status, GNTST_okay);
  for (let i = 0; i < s.pages; i++) assert.equal(backMem.mapped(s.backBase + i * 4096), false);
  for (const ref of s.refs) {
    const flags = entryAddr(front, ref);
    if (front.xen.gt.version === 1) {
      assert.equal(frontMem.cmpxchg16(flags, GTF_permit_access, 0), GTF_permit_access);
    } else {
      frontMem.store16(flags, 0);
      frontMem.fence();
      assert.equal(frontMem.load16(statusAddr(front, ref)), 0);
    }
    assert.equal(frontMem.load16(flags), 0);
    assert.equal(front.xen.gt.activeEntryIfAny(ref)?.pin ?? 0, 0);
  }
}

/** Every mapping gone, every invariant holding, both domains destroyed cleanly. */
export function finish(env: Env): void {
  const { host, front, back } = env;
  assert.equal(back.xen.gt.maptrack.liveCount(), 0);
  for (const a of front.xen.gt.activeEntries()) assert.equal(a.pin, 0);
  assert.deepEqual(host.checkInvariants(), []);
  host.destroyDomain(back.domid);
  host.destroyDomain(front.domid);
  assert.deepEqual(host.checkInvariants(), []);
  assert.equal(host.hypervisor.domains.size, 0);
}

/** Bytes filled from a seed, so that each payload is distinct and checkable. */
export function pattern(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
