// Domain ids, as Xen's domid_alloc / domid_free (xen/common/domid.c) hand them
// out: a bitmap of the ids below DOMID_FIRST_RESERVED. An explicit id is taken
// if free; DOMID_ANY searches upwards from the last id handed out, wrapping to
// 1 (id 0 is the first boot domain's and never chosen by a search), so two
// searches in a row never return the same id and a long-running host reuses
// the ids of domains that are gone.
import { DOMID_ANY, DOMID_FIRST_RESERVED, DOMID_INVALID } from '../abi/domid.ts';

export class DomidAllocator {
  private readonly used = new Uint8Array(DOMID_FIRST_RESERVED);
  /** domid_last: the last id a search returned (0: none yet). */
  private last = 0;

  /** An explicit id if it is free, else the next free one after the last; DOMID_INVALID when none is. */
  alloc(domid: number): number {
    if (domid >= DOMID_FIRST_RESERVED && domid !== DOMID_ANY) return DOMID_INVALID;
    if (domid < DOMID_FIRST_RESERVED) {
      if (this.used[domid] === 1) return DOMID_INVALID;
      this.used[domid] = 1;
      return domid;
    }
    let found = this.search(this.last + 1, DOMID_FIRST_RESERVED);
    if (found < 0 && this.last !== 0) found = this.search(1, this.last + 1);
    if (found < 0) return DOMID_INVALID;
    this.used[found] = 1;
    this.last = found;
    return found;
  }

  /** Gives an id back once its domain is finally destroyed. */
  free(domid: number): void {
    this.used[domid] = 0;
  }

  private search(from: number, bound: number): number {
    for (let id = from; id < bound; id++) if (this.used[id] === 0) return id;
    return -1;
  }
}
