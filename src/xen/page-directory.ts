// A two-level directory of private pages (private-pages.ts): a root page whose
// slots hold directory pages, whose slots hold data pages, so that data page k
// of a structure (its active entries, its maptrack) is found by any thread
// from the root's page number alone. 0 in a slot means none yet (page 0 is the
// pool's header, never handed out). Data pages are only added, never moved,
// until the whole directory goes, so a thread may remember where one is.
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

/** Data pages one directory can hold. */
export const DIRECTORY_PAGES = PAGE_WORDS * PAGE_WORDS;

export class PageDirectory {
  readonly pool: PrivatePages;
  /** The root page, or 0 once the directory is freed. */
  root: number;
  /** This thread's memo of the data pages found so far (they never move while the directory lives). */
  private memo: number[] = [];

  /** A new directory (its root page allocated now), or a view of one at `root`. */
  constructor(pool: PrivatePages, root?: number) {
    this.pool = pool;
    if (root === undefined) {
      root = pool.alloc();
      if (root < 0) throw new RangeError("out of the hypervisor's private memory");
    }
    this.root = root;
  }

  /** Data page k, or 0 when it has none. */
  page(k: number): number {
    const known = this.memo[k];
    if (known !== undefined) return known;
    if (this.root === 0 || !(k >= 0 && k < DIRECTORY_PAGES)) return 0;
    const w = this.pool.words;
    const dir = w[this.root * PAGE_WORDS + Math.floor(k / PAGE_WORDS)]!;
    const page = dir === 0 ? 0 : w[dir * PAGE_WORDS + (k % PAGE_WORDS)]!;
    if (page !== 0) this.memo[k] = page;
    return page;
  }

  /** Gives slot k a zeroed data page; returns it, or -1 when the pool or the directory is full. */
  add(k: number): number {
    if (this.root === 0 || !(k >= 0 && k < DIRECTORY_PAGES)) return -1;
    const w = this.pool.words;
    const slot = this.root * PAGE_WORDS + Math.floor(k / PAGE_WORDS);
    let dir = w[slot]!;
    if (dir === 0) {
      dir = this.pool.alloc();
      if (dir < 0) return -1;
      w[slot] = dir;
    }
    const at = dir * PAGE_WORDS + (k % PAGE_WORDS);
    if (w[at] !== 0) return w[at]!;
    const page = this.pool.alloc();
    if (page < 0) return -1;
    w[at] = page;
    return page;
  }

  /** Frees every page of the directory, data, directory and root. */
  free(): void {
    if (this.root === 0) return;
    const w = this.pool.words;
    const root = this.root * PAGE_WORDS;
    for (let i = 0; i < PAGE_WORDS; i++) {
      const dir = w[root + i]!;
      if (dir === 0) continue;
      for (let j = 0; j < PAGE_WORDS; j++) {
        const page = w[dir * PAGE_WORDS + j]!;
        if (page !== 0) this.pool.free(page);
      }
      this.pool.free(dir);
    }
    this.pool.free(this.root);
    this.root = 0;
    this.memo = [];
  }
}
