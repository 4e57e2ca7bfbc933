// libxengntshr (Xen tools/libs/gnttab: gntshr_core.c over linux.c,
// guest-side.md §5.4): sharing this domain's own pages with another domain
// through one open gntalloc file. share_pages allocates and grants, maps, sets
// any unmap notification, then lets the file's reference go at once, so the
// pages live exactly as long as the mapping (the share). Where C returns NULL
// or -1 with errno, these throw XenError. A share unshares when disposed, and
// the handle closes when disposed.
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { XenError } from '../xen-error.ts';
import { EBADF, EINVAL, ENOMEM, ENOSPC } from './errno.ts';
import { GNTALLOC_FLAG_WRITABLE, type Gntalloc, type GntallocFile, type GntallocVma } from './gntalloc.ts';
import { notifyRequest } from './unmap-notify.ts';

/** Pages of this domain shared with another by Xengntshr: the pages and the grant refs for the peer. */
export class XengntshrShare implements Disposable {
  /** The shared pages, in order (page i is granted as refs[i]). */
  readonly addrs: readonly number[];
  /** The grant refs to hand to the peer. */
  readonly refs: readonly number[];
  /** @internal the mapping that keeps the pages shared. */
  readonly vma: GntallocVma;
  private readonly xgs: Xengntshr;

  /** @internal made by Xengntshr's share calls. */
  constructor(xgs: Xengntshr, vma: GntallocVma, refs: readonly number[]) {
    this.xgs = xgs;
    this.vma = vma;
    this.addrs = vma.addrs;
    this.refs = refs;
  }

  /** The first page: the start_address xengntshr_share_pages returns. */
  get addr(): number {
    return this.addrs[0]!;
  }

  get count(): number {
    return this.addrs.length;
  }

  /** True until unshared (or the handle is closed). */
  get shared(): boolean {
    return this.xgs.isShared(this);
  }

  /** xengntshr_unshare of this share. */
  unshare(): void {
    this.xgs.unshare(this);
  }

  /** Unshares if still shared: the grants end (deferred while the peer still maps them). */
  [Symbol.dispose](): void {
    if (this.shared) this.unshare();
  }
}

function allocReason(rc: number, count: number): string {
  if (rc === -ENOSPC)
    return `no room for ${count} more shared pages (the device's limit) or no free grant refs`;
  if (rc === -ENOMEM) return `no free page to share (${count} wanted)`;
  return count <= 0 ? 'no pages to share' : 'ALLOC_GREF refused';
}

/** xengntshr_open: a handle over one open file of the domain's gntalloc. */
export class Xengntshr implements Disposable {
  private readonly file: GntallocFile;
  private readonly shares = new Set<XengntshrShare>();
  private closed = false;

  constructor(dev: Gntalloc) {
    this.file = dev.open();
  }

  /** xengntshr_open. */
  static open(dev: Gntalloc): Xengntshr {
    return new Xengntshr(dev);
  }

  /** xengntshr_share_pages: `count` zeroed pages granted to `domid` (read-only unless writable). */
  sharePages(domid: number, count: number, writable: boolean): XengntshrShare {
    return this.share('xengntshr_share_pages', domid, count, writable, -1, -1);
  }

  /**
   * xengntshr_share_page_notify: one page; when it is unshared (or this
   * domain dies), the byte at notifyOffset (< 4096; -1: none) is cleared and
   * notifyPort (-1: none) signalled, so the peer learns this side is gone.
   */
  sharePageNotify(
    domid: number,
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): XengntshrShare {
    return this.share('xengntshr_share_page_notify', domid, 1, writable, notifyOffset, notifyPort);
  }

  private share(
    op: string,
    domid: number,
    count: number,
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): XengntshrShare {
    if (this.closed) throw new XenError(op, EBADF, 'the handle is closed');
    if (!Number.isInteger(count) || count <= 0) throw new XenError(op, EINVAL, `cannot share ${count} pages`);
    const a = this.file.allocGref(domid, writable ? GNTALLOC_FLAG_WRITABLE : 0, count);
    if (a.rc !== 0) throw new XenError(op, a.rc, allocReason(a.rc, count));
    const vma = this.file.mmap(a.index, count);
    let rc = typeof vma === 'number' ? vma : 0;
    const { action, offset } = notifyRequest(notifyOffset, notifyPort, XEN_PAGE_SIZE * count);
    if (rc === 0 && action !== 0) rc = this.file.setUnmapNotify(a.index + offset, action, notifyPort);
    // The file lets go at once: the pages now live as long as the mapping.
    this.file.deallocGref(a.index, count);
    if (typeof vma === 'number') throw new XenError(op, rc, 'mmap of the shared pages failed');
    if (rc !== 0) {
      vma.unmap();
      throw new XenError(op, rc, 'SET_UNMAP_NOTIFY refused (no event channel to signal?)');
    }
    const s = new XengntshrShare(this, vma, a.grefIds);
    this.shares.add(s);
    return s;
  }

  /** @internal */
  isShared(s: XengntshrShare): boolean {
    return this.shares.has(s);
  }

  /**
   * xengntshr_unshare(start_address, count): the share whose first page is
   * at addr (or the share itself). The kernel ends the grants, deferring
   * while the peer still maps them. XenError EINVAL when there is no such share.
   */
  unshare(addr: number | XengntshrShare, count?: number): void {
    const s =
      typeof addr === 'number'
        ? [...this.shares].find((x) => x.addr === addr)
        : this.shares.has(addr)
          ? addr
          : undefined;
    const where = typeof addr === 'number' ? `0x${addr.toString(16)}` : `0x${addr.addr.toString(16)}`;
    if (s === undefined)
      throw new XenError('xengntshr_unshare', EINVAL, `nothing shared at ${where} by this handle`);
    if (count !== undefined && count !== s.count)
      throw new XenError(
        'xengntshr_unshare',
        EINVAL,
        `the share at ${where} has ${s.count} pages, not ${count}`,
      );
    this.shares.delete(s);
    s.vma.unmap();
  }

  /** Shares of this handle still live. */
  get live(): readonly XengntshrShare[] {
    return [...this.shares];
  }

  /**
   * xengntshr_close: the file goes. Shares stay until unshared, as mappings
   * outlive the fd in Linux.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }

  /** `using xgs = Xengntshr.open(dev)`: closes the handle and unshares what it still shares. */
  [Symbol.dispose](): void {
    for (const s of [...this.shares]) this.unshare(s);
    this.close();
  }
}
