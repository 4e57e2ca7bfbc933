// Mapping other domains' grants: the gntdev device (drivers/xen/gntdev.c,
// guest-side.md §5.2) and the libxengnttab calls built on it (§5.3). A map is
// registered first (MAP_GRANT_REF, first-fit in the file's offset space), the
// grants are mapped at mmap time into unpopulated space above RAM, and they are
// unmapped when the map's last user goes (the file's list and the mapping).
// The unmap notification (§5.5) clears a byte through the mapping just before
// it is unmapped and signals an event channel after. GRANT_COPY copies
// between grants and this domain's own pages in batches of 16 GNTTABOP_copy.
// libxengnttab over it is in xengnttab.ts.

import { DOMID_SELF } from '../../abi/domid.ts';
import { GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTMAP_host_map, GNTMAP_readonly } from '../../abi/flags.ts';
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { GNTST_okay } from '../../abi/status.ts';
import type { GuestContext } from '../context.ts';
import type { PageAllocator } from '../pages.ts';
import {
  type CopyOp,
  gnttabBatchCopy,
  gnttabMapRefs,
  gnttabSetMapOp,
  gnttabSetUnmapOp,
  gnttabUnmapRefs,
  INVALID_GRANT_HANDLE,
} from './backend.ts';
import { EFAULT, EINVAL, ENOENT, ENOMEM, ENOTTY } from './errno.ts';
import {
  checkNotifyAction,
  type NotifyPort,
  noNotify,
  UNMAP_NOTIFY_CLEAR_BYTE,
  UNMAP_NOTIFY_SEND_EVENT,
  type UnmapNotify,
} from './unmap-notify.ts';

/** The module parameter `limit`: grants in one MAP_GRANT_REF request. */
export const GNTDEV_DEFAULT_LIMIT = 65536;

/** A grant of another domain: its ref in that domain's table. */
export interface GrantRef {
  domid: number;
  ref: number;
}

/** One end of a grant-copy segment: a grant of another domain, at an offset in its page. */
export interface GrantCopyForeign {
  ref: number;
  offset: number;
  domid: number;
}

/**
 * struct gntdev_grant_copy_segment (xengnttab_grant_copy_segment_t): `flags`
 * (GNTCOPY_source_gref, GNTCOPY_dest_gref) says which end is a grant
 * (`foreign`) and which an address of this domain (`virt`); at least one must
 * be a grant. `status` is written back: GNTST_okay or the first failure.
 */
export interface GrantCopySegment {
  source: { foreign: GrantCopyForeign } | { virt: number };
  dest: { foreign: GrantCopyForeign } | { virt: number };
  len: number;
  flags: number;
  status?: number;
}

/** GNTDEV_COPY_BATCH: GNTTABOP_copy ops per hypercall. */
export const GNTDEV_COPY_BATCH = 16;

interface GrantMap {
  /** In pages, in the file's offset space. */
  index: number;
  count: number;
  grants: GrantRef[];
  /** The file's list reference plus the mapping's. */
  users: number;
  /** GNTMAP flags, fixed at the first mmap (0 before). */
  flags: number;
  /** Where the grants are mapped, or -1. */
  addr: number;
  handles: number[];
  /** Grants currently mapped. */
  live: number;
  notify: UnmapNotify;
}

export interface GntdevOptions {
  limit?: number;
  /** Sends an event for UNMAP_NOTIFY_SEND_EVENT; without it that action is refused (-EINVAL). */
  notify?: NotifyPort;
}

/** The device: one per domain. */
export class Gntdev {
  readonly ctx: GuestContext;
  readonly pages: PageAllocator;
  limit: number;
  readonly notify: NotifyPort | null;

  constructor(ctx: GuestContext, pages: PageAllocator, options: GntdevOptions = {}) {
    this.ctx = ctx;
    this.pages = pages;
    this.limit = options.limit ?? GNTDEV_DEFAULT_LIMIT;
    this.notify = options.notify ?? null;
  }

  open(): GntdevFile {
    return new GntdevFile(this);
  }
}

export interface GntdevMmap {
  /** 0, -EINVAL (no such map, mapped already, or a grant failed to map), -ENOMEM. */
  rc: number;
  /** Address of the first page, or -1. */
  addr: number;
  /** Each grant's map status (empty when no hypercall was made). */
  status: number[];
}

/** One open file of the device (gntdev_priv). */
export class GntdevFile {
  private readonly dev: Gntdev;
  /** Maps on the file's list, sorted by index. */
  private maps: GrantMap[] = [];
  /** Maps mapped (on the list or not any more). */
  private readonly mapped = new Set<GrantMap>();
  private closed = false;

  constructor(dev: Gntdev) {
    this.dev = dev;
  }

  /** IOCTL_GNTDEV_MAP_GRANT_REF: registers the grants; the byte index of the map, or -errno. */
  mapGrantRef(grants: readonly GrantRef[]): number {
    const count = grants.length;
    if (this.closed || count === 0 || count > this.dev.limit) return -EINVAL;
    const add: GrantMap = {
      index: 0,
      count,
      grants: grants.map((g) => ({ domid: g.domid, ref: g.ref })),
      users: 1,
      flags: 0,
      addr: -1,
      handles: new Array<number>(count).fill(INVALID_GRANT_HANDLE),
      live: 0,
      notify: noNotify(),
    };
    // gntdev_add_map: first fit, before the first map that leaves strictly more room than needed.
    let at = this.maps.length;
    for (let i = 0; i < this.maps.length; i++) {
      const m = this.maps[i]!;
      if (add.index + add.count < m.index) {
        at = i;
        break;
      }
      add.index = m.index + m.count;
    }
    this.maps.splice(at, 0, add);
    return add.index * XEN_PAGE_SIZE;
  }

  private find(index: number, count: number): GrantMap | undefined {
    const page = index / XEN_PAGE_SIZE;
    return this.maps.find((m) => m.index === page && (count === 0 || m.count === count));
  }

  /**
   * mmap(offset = index, count pages): maps the grants now. Any grant that
   * fails makes the whole mmap fail, after unmapping exactly those that mapped.
   */
  async mmap(index: number, count: number, writable: boolean): Promise<GntdevMmap> {
    const m = this.maps.find((x) => x.index * XEN_PAGE_SIZE === index && x.count === count);
    if (m === undefined || m.addr !== -1 || this.mapped.has(m)) return { rc: -EINVAL, addr: -1, status: [] };
    const ro = writable ? 0 : GNTMAP_readonly;
    if (m.flags !== 0) {
      if (writable && (m.flags & GNTMAP_readonly) !== 0) return { rc: -EINVAL, addr: -1, status: [] };
    } else {
      // A byte to clear needs a writable mapping (checked again at SET_UNMAP_NOTIFY).
      if (!writable && (m.notify.flags & UNMAP_NOTIFY_CLEAR_BYTE) !== 0)
        return { rc: -EINVAL, addr: -1, status: [] };
      m.flags = GNTMAP_host_map | ro;
    }
    const { ctx, pages } = this.dev;
    const addr = pages.allocUnpopulated(count);
    if (addr < 0) return { rc: -ENOMEM, addr: -1, status: [] };
    m.addr = addr;
    m.users++;
    this.mapped.add(m);
    const ops = m.grants.map((g, i) => gnttabSetMapOp(addr + i * XEN_PAGE_SIZE, m.flags, g.ref, g.domid));
    const rc = await gnttabMapRefs(ctx, ops, pages);
    const status = ops.map((o) => o.status);
    ops.forEach((o, i) => {
      if (o.status === GNTST_okay) {
        m.handles[i] = o.handle;
        m.live++;
      }
    });
    if (rc === 0 && m.live === count) return { rc: 0, addr, status };
    // Failure: the mapping is torn down again (unmapping only what mapped) and dropped.
    this.unmapGrants(m);
    this.mapped.delete(m);
    if (m.live === 0) pages.freeUnpopulated(addr, count);
    m.addr = -1;
    m.users--;
    return { rc: -EINVAL, addr: -1, status };
  }

  /** __unmap_grant_pages: the byte to clear first (through the mapping), then every live grant. */
  private unmapGrants(m: GrantMap): void {
    const { ctx, pages } = this.dev;
    if ((m.notify.flags & UNMAP_NOTIFY_CLEAR_BYTE) !== 0) {
      const pgno = Math.floor(m.notify.offset / XEN_PAGE_SIZE);
      if (pgno < m.count && m.handles[pgno] !== INVALID_GRANT_HANDLE) {
        ctx.mem.writeU8(m.addr + m.notify.offset, 0);
        m.notify.flags &= ~UNMAP_NOTIFY_CLEAR_BYTE;
      }
    }
    const idx: number[] = [];
    for (let i = 0; i < m.count; i++) if (m.handles[i] !== INVALID_GRANT_HANDLE) idx.push(i);
    if (idx.length === 0) return;
    const ops = idx.map((i) => gnttabSetUnmapOp(m.addr + i * XEN_PAGE_SIZE, m.flags, m.handles[i]!));
    const rc = gnttabUnmapRefs(ctx, ops, pages);
    ops.forEach((o, k) => {
      if (rc === 0 && o.status === GNTST_okay) {
        m.handles[idx[k]!] = INVALID_GRANT_HANDLE;
        m.live--;
      } else {
        ctx.log(`gntdev: unmap of handle ${o.handle} failed: rc ${rc} status ${o.status}`);
      }
    });
  }

  /** gntdev_put_map: the last user unmaps, then signals the event, then frees the range. */
  private put(m: GrantMap): void {
    if (--m.users > 0) return;
    const { pages } = this.dev;
    if (m.addr !== -1) {
      this.unmapGrants(m);
      if (m.live === 0) pages.freeUnpopulated(m.addr, m.count);
      else this.dev.ctx.log(`gntdev: leaking ${m.count} pages of foreign-map space`);
      this.mapped.delete(m);
    }
    if ((m.notify.flags & UNMAP_NOTIFY_SEND_EVENT) !== 0) this.dev.notify?.(m.notify.port);
    m.notify = noNotify();
  }

  /** munmap of a mapping made by mmap: the mapping's reference goes. */
  munmap(addr: number): number {
    for (const m of this.mapped) {
      if (m.addr === addr) {
        this.put(m);
        return 0;
      }
    }
    return -EINVAL;
  }

  /** IOCTL_GNTDEV_UNMAP_GRANT_REF: off the list; the grants go when the mapping does too. */
  unmapGrantRef(index: number, count: number): number {
    const m = this.find(index, count);
    if (m === undefined) return -ENOENT;
    this.maps = this.maps.filter((x) => x !== m);
    this.put(m);
    return 0;
  }

  /** IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR: the byte index and page count of the mapping at vaddr. */
  getOffsetForVaddr(vaddr: number): { rc: number; offset: number; count: number } {
    for (const m of this.mapped) {
      if (vaddr >= m.addr && vaddr < m.addr + m.count * XEN_PAGE_SIZE)
        return { rc: 0, offset: m.index * XEN_PAGE_SIZE, count: m.count };
    }
    return { rc: -EINVAL, offset: 0, count: 0 };
  }

  /** IOCTL_GNTDEV_SET_UNMAP_NOTIFY: one per map, replacing any previous one. */
  setUnmapNotify(index: number, action: number, port: number): number {
    const m = this.maps.find(
      (x) => index >= x.index * XEN_PAGE_SIZE && index < (x.index + x.count) * XEN_PAGE_SIZE,
    );
    if (m === undefined) return -ENOENT;
    if (!checkNotifyAction(action, this.dev.notify)) return -EINVAL;
    if ((action & UNMAP_NOTIFY_CLEAR_BYTE) !== 0 && (m.flags & GNTMAP_readonly) !== 0) return -EINVAL;
    m.notify = { flags: action, offset: index - m.index * XEN_PAGE_SIZE, port };
    return 0;
  }

  /** IOCTL_GNTDEV_SET_MAX_GRANTS: current Linux has no such ioctl (-ENOTTY); the limit is the module's. */
  setMaxGrants(_count: number): number {
    return -ENOTTY;
  }

  /**
   * IOCTL_GNTDEV_GRANT_COPY (gntdev_ioctl_grant_copy): each segment is split
   * at page boundaries of its `virt` end into GNTTABOP_copy ops, sent 16 at a
   * time; a segment's status is GNTST_okay or the first op that failed. 0, or
   * -EINVAL for a segment with no grant end or a grant end crossing its page,
   * -EFAULT for a `virt` end outside this domain's RAM. A bad segment ends
   * the call: batches already sent stay done, ops still queued are dropped
   * (Linux's `out:` path), so after an error no status can be trusted.
   */
  async grantCopy(segs: GrantCopySegment[]): Promise<number> {
    const { ctx, pages } = this.dev;
    const ops: CopyOp[] = [];
    const owners: GrantCopySegment[] = [];
    const flush = async (): Promise<void> => {
      if (ops.length === 0) return;
      await gnttabBatchCopy(ctx, ops);
      ops.forEach((o, i) => {
        const seg = owners[i]!;
        if (o.status !== GNTST_okay && seg.status === GNTST_okay) seg.status = o.status;
      });
      ops.length = 0;
      owners.length = 0;
    };
    const end = (e: GrantCopySegment['source'], gref: boolean, copied: number, len: number) => {
      if (gref) {
        if (!('foreign' in e)) return null;
        return { u: e.foreign.ref, domid: e.foreign.domid, offset: e.foreign.offset + copied, len };
      }
      if (!('virt' in e)) return null;
      const virt = e.virt + copied;
      const off = virt & (XEN_PAGE_SIZE - 1);
      const base = virt - off;
      if (!pages.isRamPage(base)) return -EFAULT;
      return {
        u: pages.gfnOf(base),
        domid: DOMID_SELF,
        offset: off,
        len: Math.min(len, XEN_PAGE_SIZE - off),
      };
    };
    for (const seg of segs) {
      const srcGref = (seg.flags & GNTCOPY_source_gref) !== 0;
      const dstGref = (seg.flags & GNTCOPY_dest_gref) !== 0;
      if (!srcGref && !dstGref) return -EINVAL;
      if (!Number.isInteger(seg.len) || seg.len < 0 || seg.len > 0xffff) return -EINVAL;
      if (srcGref && (!('foreign' in seg.source) || seg.source.foreign.offset + seg.len > XEN_PAGE_SIZE))
        return -EINVAL;
      if (dstGref && (!('foreign' in seg.dest) || seg.dest.foreign.offset + seg.len > XEN_PAGE_SIZE))
        return -EINVAL;
      seg.status = GNTST_okay;
      let copied = 0;
      while (copied < seg.len) {
        if (ops.length >= GNTDEV_COPY_BATCH) await flush();
        let len = seg.len - copied;
        const s = end(seg.source, srcGref, copied, len);
        if (s === null) return -EINVAL;
        if (typeof s === 'number') return s;
        len = s.len;
        const d = end(seg.dest, dstGref, copied, len);
        if (d === null) return -EINVAL;
        if (typeof d === 'number') return d;
        len = Math.min(len, d.len);
        ops.push({
          source_u: s.u,
          source_domid: s.domid,
          source_offset: s.offset,
          dest_u: d.u,
          dest_domid: d.domid,
          dest_offset: d.offset,
          len,
          flags: seg.flags & (GNTCOPY_source_gref | GNTCOPY_dest_gref),
          status: 0,
        });
        owners.push(seg);
        copied += len;
      }
    }
    await flush();
    return 0;
  }

  /** close(fd): every map leaves the list; mapped ones go when their mapping does (close unmaps them too). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.maps) this.put(m);
    this.maps = [];
    // A closing process loses its mappings as well.
    for (const m of [...this.mapped]) this.put(m);
  }
}
