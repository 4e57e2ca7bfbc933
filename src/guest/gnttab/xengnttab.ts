// libxengnttab (Xen tools/libs/gnttab: gnttab_core.c over linux.c,
// guest-side.md §5.3): mapping other domains' grants into this domain through
// one open gntdev file. The calls keep the C names in camelCase and their
// argument order (count is the arrays' length); where C returns NULL or -1
// with errno, these throw XenError with the errno and the reason. A mapping is
// an object that knows its address and page count and unmaps when disposed
// (`using m = await xgt.mapGrantRef(...)`), and the handle closes when
// disposed.
import { XEN_PAGE_SIZE } from '../../abi/limits.ts';
import { gntstName } from '../../abi/status.ts';
import { XenError } from '../xen-error.ts';
import { EBADF, EINVAL, ENOTTY } from './errno.ts';
import type { Gntdev, GntdevFile, GrantCopySegment, GrantRef } from './gntdev.ts';
import { notifyRequest, UNMAP_NOTIFY_CLEAR_BYTE } from './unmap-notify.ts';

/** Pages of other domains' grants mapped by Xengnttab, at addr .. addr + count * 4096. */
export class XengnttabMapping implements Disposable {
  /** Where the first page is, in this domain's address space. */
  readonly addr: number;
  /** Pages mapped. */
  readonly count: number;
  private readonly xgt: Xengnttab;
  private live = true;

  /** @internal made by Xengnttab's map calls. */
  constructor(xgt: Xengnttab, addr: number, count: number) {
    this.xgt = xgt;
    this.addr = addr;
    this.count = count;
  }

  /** True until unmapped (or the handle is closed). */
  get mapped(): boolean {
    return this.live && this.xgt.isMapped(this.addr);
  }

  /** xengnttab_unmap(addr, count) of this mapping; XenError EINVAL if it is gone already. */
  unmap(): void {
    this.xgt.unmap(this.addr, this.count);
  }

  /** @internal */
  forget(): void {
    this.live = false;
  }

  /** Unmaps if still mapped (the unmap notification, if any, runs). */
  [Symbol.dispose](): void {
    if (this.mapped) this.unmap();
  }
}

/** xengnttab_open: a handle over one open file of the domain's gntdev. */
export class Xengnttab implements Disposable {
  private readonly file: GntdevFile;
  private readonly maps = new Map<number, XengnttabMapping>();
  private closed = false;

  constructor(dev: Gntdev) {
    this.file = dev.open();
  }

  /** xengnttab_open. */
  static open(dev: Gntdev): Xengnttab {
    return new Xengnttab(dev);
  }

  /** xengnttab_map_grant_ref: one page of `domid`'s grant `ref`. */
  mapGrantRef(domid: number, ref: number, writable: boolean): Promise<XengnttabMapping> {
    return this.mapNotify('xengnttab_map_grant_ref', [{ domid, ref }], writable, -1, -1);
  }

  /**
   * xengnttab_map_grant_refs: refs[i] of domids[i], at consecutive pages.
   * All or nothing: if any grant fails, none stays mapped (XenError EINVAL
   * naming each failing grant's GNTST status).
   */
  mapGrantRefs(
    domids: readonly number[],
    refs: readonly number[],
    writable: boolean,
  ): Promise<XengnttabMapping> {
    const op = 'xengnttab_map_grant_refs';
    if (domids.length !== refs.length)
      return Promise.reject(
        new XenError(op, EINVAL, `${domids.length} domids for ${refs.length} refs: one domid per ref`),
      );
    return this.mapNotify(
      op,
      refs.map((ref, i) => ({ domid: domids[i]!, ref })),
      writable,
      -1,
      -1,
    );
  }

  /** xengnttab_map_domain_grant_refs: refs of one domain, at consecutive pages; all or nothing. */
  mapDomainGrantRefs(domid: number, refs: readonly number[], writable: boolean): Promise<XengnttabMapping> {
    return this.mapNotify(
      'xengnttab_map_domain_grant_refs',
      refs.map((ref) => ({ domid, ref })),
      writable,
      -1,
      -1,
    );
  }

  /**
   * xengnttab_map_grant_ref_notify: one page; when the mapping goes (unmap,
   * dispose, close, or this domain's death), the byte at notifyOffset
   * (< 4096; -1: none) is cleared through it and notifyPort (-1: none) is
   * signalled, so the granter learns this side is gone.
   */
  mapGrantRefNotify(
    domid: number,
    ref: number,
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): Promise<XengnttabMapping> {
    return this.mapNotify(
      'xengnttab_map_grant_ref_notify',
      [{ domid, ref }],
      writable,
      notifyOffset,
      notifyPort,
    );
  }

  private async mapNotify(
    op: string,
    grants: readonly GrantRef[],
    writable: boolean,
    notifyOffset: number,
    notifyPort: number,
  ): Promise<XengnttabMapping> {
    if (this.closed) throw new XenError(op, EBADF, 'the handle is closed');
    const count = grants.length;
    const index = this.file.mapGrantRef(grants);
    if (index < 0)
      throw new XenError(
        op,
        index,
        count === 0 ? 'no grants to map' : `${count} grants is more than the device's limit of one request`,
      );
    const mm = await this.file.mmap(index, count, writable);
    if (mm.rc !== 0) {
      this.file.unmapGrantRef(index, count);
      const bad = grants
        .map((g, i) => ({ g, s: mm.status[i] ?? 0 }))
        .filter((x) => x.s !== 0)
        .map((x) => `d${x.g.domid} ref ${x.g.ref}: ${gntstName(x.s)}`);
      const reason = bad.length > 0 ? bad.join(', ') : 'no room in the foreign-map area';
      throw new XenError(op, mm.rc, reason, { status: mm.status });
    }
    const { action, offset } = notifyRequest(notifyOffset, notifyPort, XEN_PAGE_SIZE * count);
    if (action !== 0) {
      const rc = this.file.setUnmapNotify(index + offset, action, notifyPort);
      if (rc !== 0) {
        this.file.munmap(mm.addr);
        this.file.unmapGrantRef(index, count);
        throw new XenError(
          op,
          rc,
          (action & UNMAP_NOTIFY_CLEAR_BYTE) !== 0 && !writable
            ? 'a byte to clear needs a writable mapping'
            : 'SET_UNMAP_NOTIFY refused (no event channel to signal?)',
        );
      }
    }
    const m = new XengnttabMapping(this, mm.addr, count);
    this.maps.set(mm.addr, m);
    return m;
  }

  /** @internal */
  isMapped(addr: number): boolean {
    return this.maps.has(addr);
  }

  /**
   * xengnttab_unmap: the whole mapping that starts at addr (count must be
   * its page count), then its registration with the device. Takes a mapping
   * object too. XenError EINVAL when there is no such mapping.
   */
  unmap(addr: number | XengnttabMapping, count?: number): void {
    const a = typeof addr === 'number' ? addr : addr.addr;
    const n = count ?? (typeof addr === 'number' ? -1 : addr.count);
    const o = this.file.getOffsetForVaddr(a);
    if (o.rc !== 0 || this.maps.get(a) === undefined)
      throw new XenError('xengnttab_unmap', EINVAL, `nothing mapped at 0x${a.toString(16)} by this handle`);
    if (o.count !== n)
      throw new XenError(
        'xengnttab_unmap',
        EINVAL,
        `the mapping at 0x${a.toString(16)} has ${o.count} pages, not ${n}`,
      );
    this.file.munmap(a);
    const rc = this.file.unmapGrantRef(o.offset, n);
    this.maps.get(a)?.forget();
    this.maps.delete(a);
    if (rc !== 0) throw new XenError('xengnttab_unmap', rc, 'UNMAP_GRANT_REF refused');
  }

  /**
   * xengnttab_set_max_grants: Linux's gntdev has no per-file limit any more
   * (the ioctl answers ENOTTY, which libxengnttab ignores); the limit is the
   * device's (GntdevOptions.limit). Any other failure throws.
   */
  setMaxGrants(nrGrants: number): void {
    const rc = this.file.setMaxGrants(nrGrants);
    if (rc !== 0 && rc !== -ENOTTY)
      throw new XenError('xengnttab_set_max_grants', rc, 'SET_MAX_GRANTS refused');
  }

  /**
   * xengnttab_grant_copy: copies between other domains' grants and this
   * domain's pages without mapping them. Each segment's `status` is written
   * (GNTST_okay or the first failure) and the statuses are returned; a bad
   * segment (no grant end, a grant end crossing its page, an address outside
   * RAM) throws XenError, after which no status can be trusted.
   */
  async grantCopy(segs: GrantCopySegment[]): Promise<number[]> {
    const rc = await this.file.grantCopy(segs);
    if (rc !== 0)
      throw new XenError(
        'xengnttab_grant_copy',
        rc,
        'a segment needs a grant end, grant ends must stay in their page, addresses in RAM',
      );
    return segs.map((s) => s.status ?? 0);
  }

  /** Mappings of this handle still live. */
  get mappings(): readonly XengnttabMapping[] {
    return [...this.maps.values()];
  }

  /** xengnttab_close: every mapping of the handle goes (their unmap notifications run). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
    for (const m of this.maps.values()) m.forget();
    this.maps.clear();
  }

  /** `using xgt = Xengnttab.open(dev)`: closes the handle. */
  [Symbol.dispose](): void {
    this.close();
  }
}
