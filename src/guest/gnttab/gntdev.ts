// Mapping other domains' grants: the gntdev device (drivers/xen/gntdev.c,
// guest-side.md §5.2) and the libxengnttab calls built on it (§5.3). A map is
// registered first (MAP_GRANT_REF, first-fit in the file's offset space), the
// grants are mapped at mmap time into unpopulated space above RAM, and they are
// unmapped when the map's last user goes (the file's list and the mapping).
// The unmap notification (§5.5) clears a byte through the mapping just before
// it is unmapped and signals an event channel after.
import { GNTMAP_host_map, GNTMAP_readonly } from '../../abi/flags.ts';
import { GNTST_okay } from '../../abi/status.ts';
import type { GuestContext } from '../context.ts';
import { PAGE_SIZE } from '../layout.ts';
import type { PageAllocator } from '../pages.ts';
import {
  gnttabMapRefs,
  gnttabSetMapOp,
  gnttabSetUnmapOp,
  gnttabUnmapRefs,
  INVALID_GRANT_HANDLE,
} from './backend.ts';
import { EINVAL, ENOENT, ENOMEM } from './errno.ts';
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

export interface GrantRef {
  domid: number;
  ref: number;
}

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
    return add.index * PAGE_SIZE;
  }

  private find(index: number, count: number): GrantMap | undefined {
    const page = index / PAGE_SIZE;
    return this.maps.find((m) => m.index === page && (count === 0 || m.count === count));
  }

  /**
   * mmap(offset = index, count pages): maps the grants now. Any grant that
   * fails makes the whole mmap fail, after unmapping exactly those that mapped.
   */
  async mmap(index: number, count: number, writable: boolean): Promise<GntdevMmap> {
    const m = this.maps.find((x) => x.index * PAGE_SIZE === index && x.count === count);
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
    const ops = m.grants.map((g, i) => gnttabSetMapOp(addr + i * PAGE_SIZE, m.flags, g.ref, g.domid));
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
      const pgno = Math.floor(m.notify.offset / PAGE_SIZE);
      if (pgno < m.count && m.handles[pgno] !== INVALID_GRANT_HANDLE) {
        ctx.mem.writeU8(m.addr + m.notify.offset, 0);
        m.notify.flags &= ~UNMAP_NOTIFY_CLEAR_BYTE;
      }
    }
    const idx: number[] = [];
    for (let i = 0; i < m.count; i++) if (m.handles[i] !== INVALID_GRANT_HANDLE) idx.push(i);
    if (idx.length === 0) return;
    const ops = idx.map((i) => gnttabSetUnmapOp(m.addr + i * PAGE_SIZE, m.flags, m.handles[i]!));
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
      if (vaddr >= m.addr && vaddr < m.addr + m.count * PAGE_SIZE)
        return { rc: 0, offset: m.index * PAGE_SIZE, count: m.count };
    }
    return { rc: -EINVAL, offset: 0, count: 0 };
  }

  /** IOCTL_GNTDEV_SET_UNMAP_NOTIFY: one per map, replacing any previous one. */
  setUnmapNotify(index: number, action: number, port: number): number {
    const m = this.maps.find((x) => index >= x.index * PAGE_SIZE && index < (x.index + x.count) * PAGE_SIZE);
    if (m === undefined) return -ENOENT;
    if (!checkNotifyAction(action, this.dev.notify)) return -EINVAL;
    if ((action & UNMAP_NOTIFY_CLEAR_BYTE) !== 0 && (m.flags & GNTMAP_readonly) !== 0) return -EINVAL;
    m.notify = { flags: action, offset: index - m.index * PAGE_SIZE, port };
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

// ---- libxengnttab (§5.3) -------------------------------------------------------------------------

/** xengnttab_open: a handle over one gntdev file. */
export class Xengnttab {
  private readonly file: GntdevFile;

  constructor(dev: Gntdev) {
    this.file = dev.open();
  }

  /**
   * xengnttab_map_grant_refs / map_domain_grant_refs: all or nothing; the
   * address of the first page, or null (nothing stays mapped or registered).
   */
  async mapGrantRefs(grants: readonly GrantRef[], writable: boolean): Promise<number | null> {
    return this.mapNotify(grants, writable, -1, -1);
  }

  /** One domid for all refs. */
  async mapDomainGrantRefs(
    domid: number,
    refs: readonly number[],
    writable: boolean,
  ): Promise<number | null> {
    return this.mapNotify(
      refs.map((ref) => ({ domid, ref })),
      writable,
      -1,
      -1,
    );
  }

  /**
   * xengnttab_map_grant_ref_notify: one page; notifyOffset < 4096 clears that
   * byte and notifyPort !== -1 signals that port when the mapping goes.
   */
  async mapGrantRefNotify(
    domid: number,
    ref: number,
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): Promise<number | null> {
    return this.mapNotify([{ domid, ref }], writable, notifyOffset, notifyPort);
  }

  private async mapNotify(
    grants: readonly GrantRef[],
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): Promise<number | null> {
    const count = grants.length;
    const index = this.file.mapGrantRef(grants);
    if (index < 0) return null;
    const mm = await this.file.mmap(index, count, writable);
    if (mm.rc !== 0) {
      this.file.unmapGrantRef(index, count);
      return null;
    }
    let action = 0;
    let offset = 0;
    if (notifyOffset >= 0 && notifyOffset < PAGE_SIZE * count) {
      action |= UNMAP_NOTIFY_CLEAR_BYTE;
      offset = notifyOffset;
    }
    if (notifyPort !== -1 && notifyPort !== 0xffff_ffff) action |= UNMAP_NOTIFY_SEND_EVENT;
    if (action !== 0 && this.file.setUnmapNotify(index + offset, action, notifyPort) !== 0) {
      this.file.munmap(mm.addr);
      this.file.unmapGrantRef(index, count);
      return null;
    }
    return mm.addr;
  }

  /** xengnttab_unmap: the whole mapping at addr (count must match), then its registration. */
  unmap(addr: number, count: number): number {
    const o = this.file.getOffsetForVaddr(addr);
    if (o.rc !== 0 || o.count !== count) return -EINVAL;
    this.file.munmap(addr);
    return this.file.unmapGrantRef(o.offset, count);
  }

  close(): void {
    this.file.close();
  }
}
