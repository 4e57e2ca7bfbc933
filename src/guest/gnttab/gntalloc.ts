// Sharing your own pages with another domain: the gntalloc device
// (drivers/xen/gntalloc.c, guest-side.md §5.1) and the libxengntshr calls
// built on it (§5.4). Each shared page is a record with a user count (the
// file's reference plus one per mapping); when it drops to 0 the record dies:
// the unmap notification runs (§5.5), then gnttab_end_foreign_access ends the
// grant and gives the page back, or defers both while the peer still maps it
// (XSA-396). libxengntshr over it is in xengntshr.ts.

import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { EINVAL, ENOENT, ENOMEM, ENOSPC } from './errno.ts';
import type { Gnttab } from './grant-table.ts';
import {
  checkNotifyAction,
  type NotifyPort,
  noNotify,
  UNMAP_NOTIFY_CLEAR_BYTE,
  UNMAP_NOTIFY_SEND_EVENT,
  type UnmapNotify,
} from './unmap-notify.ts';

export const GNTALLOC_FLAG_WRITABLE = 1;
/** The module parameter `limit`: pages shared at once by the whole domain. */
export const GNTALLOC_DEFAULT_LIMIT = 1024;

interface GntallocGref {
  /** The shared RAM page (the record holds one reference on it). */
  page: number;
  /** Byte index in its file's offset space. */
  fileIndex: number;
  users: number;
  /** The grant ref, 0 until granted. */
  grefId: number;
  notify: UnmapNotify;
  file: GntallocFile | null;
  dead: boolean;
}

export interface GntallocOptions {
  limit?: number;
  /** Sends an event for UNMAP_NOTIFY_SEND_EVENT; without it that action is refused (-EINVAL). */
  notify?: NotifyPort;
}

/** The device: one per domain, over its grant table. */
export class Gntalloc {
  readonly gnttab: Gnttab;
  limit: number;
  readonly notify: NotifyPort | null;
  /** gref_size: records alive (pages shared and not yet given back). */
  private size = 0;
  private readonly grefs = new Set<GntallocGref>();

  constructor(gnttab: Gnttab, options: GntallocOptions = {}) {
    this.gnttab = gnttab;
    this.limit = options.limit ?? GNTALLOC_DEFAULT_LIMIT;
    this.notify = options.notify ?? null;
  }

  get grefSize(): number {
    return this.size;
  }

  open(): GntallocFile {
    return new GntallocFile(this);
  }

  /** @internal reserve room for count records, or false past the limit. */
  reserve(count: number): boolean {
    if (this.size + count > this.limit) return false;
    this.size += count;
    return true;
  }

  /** @internal */
  unreserve(count: number): void {
    this.size -= count;
  }

  /** @internal */
  adopt(g: GntallocGref): void {
    this.grefs.add(g);
  }

  /** do_cleanup: every record nobody uses any more dies. */
  cleanup(): void {
    for (const g of [...this.grefs]) if (g.users === 0) this.delGref(g);
  }

  /** __del_gref: notification, then end of access (deferred while mapped), then the record goes. */
  delGref(g: GntallocGref): void {
    if (g.dead) return;
    g.dead = true;
    const mem = this.gnttab.ctx.mem;
    if ((g.notify.flags & UNMAP_NOTIFY_CLEAR_BYTE) !== 0) mem.writeU8(g.page + g.notify.offset, 0);
    if ((g.notify.flags & UNMAP_NOTIFY_SEND_EVENT) !== 0) this.notify?.(g.notify.port);
    g.notify = noNotify();
    if (g.grefId !== 0) this.gnttab.endForeignAccess(g.grefId, g.page);
    else this.gnttab.pages.put(g.page);
    this.size--;
    this.grefs.delete(g);
    g.file?.forget(g);
  }
}

export interface GntallocAlloc {
  /** 0, -ENOSPC (the limit, or no grant refs), -ENOMEM (no pages). */
  rc: number;
  /** Byte offset of the first page in the file's offset space. */
  index: number;
  grefIds: number[];
}

/** A mapping of consecutive pages of one file (a VMA): each page's record has one more user. */
export class GntallocVma {
  readonly addrs: readonly number[];
  private grefs: GntallocGref[] | null;
  private readonly dev: Gntalloc;

  constructor(dev: Gntalloc, grefs: GntallocGref[]) {
    this.dev = dev;
    this.grefs = grefs;
    this.addrs = grefs.map((g) => g.page);
  }

  /** munmap: drop this mapping's users; records nobody uses die. */
  unmap(): void {
    if (this.grefs === null) return;
    for (const g of this.grefs) g.users--;
    this.grefs = null;
    this.dev.cleanup();
  }
}

/** One open file of the device (gntalloc_file_private_data). */
export class GntallocFile {
  private readonly dev: Gntalloc;
  /** Records of this file, in file_index order. */
  private list: GntallocGref[] = [];
  /** Next byte index: grows forever, never reused. */
  private index = 0;
  private closed = false;

  constructor(dev: Gntalloc) {
    this.dev = dev;
  }

  /** @internal */
  forget(g: GntallocGref): void {
    this.list = this.list.filter((x) => x !== g);
  }

  private run(index: number, count: number): GntallocGref[] | null {
    const i = this.list.findIndex((g) => g.fileIndex === index);
    if (i < 0 || count <= 0) return null;
    const run = this.list.slice(i, i + count);
    if (run.length !== count) return null;
    for (let k = 0; k < count; k++) if (run[k]!.fileIndex !== index + k * XEN_PAGE_SIZE) return null;
    return run;
  }

  /** IOCTL_GNTALLOC_ALLOC_GREF: `count` zeroed pages granted to domid. */
  allocGref(domid: number, flags: number, count: number): GntallocAlloc {
    const none = { index: 0, grefIds: [] };
    if (this.closed) return { rc: -EINVAL, ...none };
    this.dev.cleanup();
    if (!this.dev.reserve(count)) return { rc: -ENOSPC, ...none };
    const index = this.index;
    this.index += count * XEN_PAGE_SIZE;
    const readonly = (flags & GNTALLOC_FLAG_WRITABLE) === 0;
    const gt = this.dev.gnttab;
    const made: GntallocGref[] = [];
    for (let i = 0; i < count; i++) {
      const page = gt.pages.alloc(true);
      let rc = page < 0 ? -ENOMEM : 0;
      let grefId = 0;
      if (rc === 0) {
        const ref = gt.grantForeignAccess(domid, gt.pages.gfnOf(page), readonly);
        if (ref < 0) rc = ref;
        else grefId = ref;
      }
      if (rc !== 0) {
        // Undo: the records made so far die (their grants end), the rest of the reservation goes.
        if (page >= 0) gt.pages.put(page);
        this.dev.unreserve(count - made.length);
        for (const g of made) {
          g.users = 0;
          this.dev.delGref(g);
        }
        return { rc, ...none };
      }
      const g: GntallocGref = {
        page,
        fileIndex: index + i * XEN_PAGE_SIZE,
        users: 1,
        grefId,
        notify: noNotify(),
        file: this,
        dead: false,
      };
      made.push(g);
      this.list.push(g);
      this.dev.adopt(g);
    }
    return { rc: 0, index, grefIds: made.map((g) => g.grefId) };
  }

  /** IOCTL_GNTALLOC_DEALLOC_GREF: the file lets go of a run; pages live on while mapped. */
  deallocGref(index: number, count: number): number {
    const run = this.run(index, count);
    if (run === null) return -EINVAL;
    for (const g of run) {
      this.forget(g);
      g.file = null;
      g.users--;
    }
    this.dev.cleanup();
    return 0;
  }

  /** IOCTL_GNTALLOC_SET_UNMAP_NOTIFY: one notification per page; a new one replaces the old. */
  setUnmapNotify(index: number, action: number, port: number): number {
    const pgoff = index & (XEN_PAGE_SIZE - 1);
    const g = this.list.find((x) => x.fileIndex === index - pgoff);
    if (g === undefined) return -ENOENT;
    if (!checkNotifyAction(action, this.dev.notify)) return -EINVAL;
    g.notify = { flags: action, offset: pgoff, port };
    return 0;
  }

  /** mmap(offset = index, count pages): the pages as this domain addresses them. */
  mmap(index: number, count: number): GntallocVma | number {
    const run = this.run(index, count);
    if (run === null) return -ENOENT;
    for (const g of run) g.users++;
    return new GntallocVma(this.dev, run);
  }

  /** close(fd): the file's reference on every record it still has goes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const g of this.list) {
      g.file = null;
      g.users--;
    }
    this.list = [];
    this.dev.cleanup();
  }
}
