// Shared plumbing of the guest grant-table tests: a host with a guest running
// the driver and a peer that acts through the raw hypercall interface.
import assert from 'node:assert/strict';
import type { GuestContext } from '../../src/guest/context.ts';
import { Gnttab, type GnttabOptions } from '../../src/guest/gnttab/grant-table.ts';
import {
  type DomainHandle,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTTABOP_map_grant_ref,
  GNTTABOP_unmap_grant_ref,
  gnttab_map_grant_ref,
  gnttab_unmap_grant_ref,
  Host,
} from '../../src/index.ts';
import { gnttabOp, MAP_VA, one } from '../helpers/guest.ts';

export type Kind = 'pv' | 'hvm';

export interface World {
  host: Host;
  /** The domain running the driver. */
  dom: DomainHandle;
  /** A peer acting through raw hypercalls (a backend). */
  back: DomainHandle;
  ctx: GuestContext;
  gt: Gnttab;
}

export interface WorldOptions {
  kind: Kind;
  version: 1 | 2 | 'auto';
  backKind?: Kind;
  maxGrantFrames?: number;
  hostMaxVersion?: 1 | 2;
  /** Wraps the driver's context (a test double for hypercalls, say). */
  wrap?: (ctx: GuestContext) => GuestContext;
  gnttab?: Omit<GnttabOptions, 'version'>;
  init?: boolean;
}

export function world(o: WorldOptions): World {
  const host = new Host({
    memoryMiB: 32,
    ...(o.hostMaxVersion ? { gnttab: { maxVersion: o.hostMaxVersion } } : {}),
  });
  const back = host.createDomain({ kind: o.backKind ?? 'pv', memoryKiB: 1024 });
  const dom = host.createDomain({
    kind: o.kind,
    memoryKiB: 1024,
    // Room for pages received by transfer.
    maxMemoryKiB: 2048,
    ...(o.maxGrantFrames !== undefined ? { maxGrantFrames: o.maxGrantFrames } : {}),
  });
  const raw = host.context(dom.domid);
  const ctx = o.wrap ? o.wrap(raw) : raw;
  const gt = new Gnttab(ctx, { version: o.version, ...(o.gnttab ?? {}) });
  if (o.init !== false) assert.equal(gt.init(), 0);
  return { host, dom, back, ctx, gt };
}

export interface Mapped {
  status: number;
  handle: number;
}

/** The peer maps (granter, ref) at `at` with map_grant_ref. */
export function peerMap(
  peer: DomainHandle,
  granter: number,
  ref: number,
  readonly = false,
  at = MAP_VA,
): Mapped {
  const r = one(
    gnttabOp(peer, GNTTABOP_map_grant_ref, gnttab_map_grant_ref, [
      { host_addr: at, flags: GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0), ref, dom: granter },
    ]),
  );
  return { status: r.status, handle: r.handle };
}

export function peerUnmap(peer: DomainHandle, handle: number, at = MAP_VA): number {
  return one(gnttabOp(peer, GNTTABOP_unmap_grant_ref, gnttab_unmap_grant_ref, [{ host_addr: at, handle }]))
    .status;
}

/** Pin count Xen keeps for (d, ref). */
export function pin(d: DomainHandle, ref: number): number {
  return d.xen.gt.activeEntryIfAny(ref)?.pin ?? 0;
}

/**
 * Runs the virtual clock until `p` settles: lets pending continuations run,
 * then jumps to the next timer. Fails if nothing is left to wait for.
 */
export async function drive<T>(host: Host, p: Promise<T>): Promise<T> {
  let settled = false;
  const out = p.finally(() => {
    settled = true;
  });
  for (;;) {
    await new Promise<void>((r) => setImmediate(r));
    if (settled) return out;
    const due = host.clock.nextDue();
    if (due === undefined) throw new Error('the promise waits on nothing');
    host.clock.advance(due - host.clock.now());
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
