// The domain table: which domain each domid names (Xen's domain_list and
// domain_hash, rcu_lock_domain_by_id) and the domid allocator (domid_alloc /
// domid_free, xen/common/domid.c), in the hypervisor's private pages so that
// every hypervisor thread finds the same domains. A slot holds the domain's
// record page, -1 while its id is allocated and the domain not yet built, 0
// when the id is free. Each thread keeps its own views of the domains, made
// from their records on first use and remade when a slot names another record
// (a new domain with an old id). Every change happens under
// domlist_update_lock, as in Xen (the toolstack's create and destroy run
// beside other threads' hypercalls, and a shared hypercall may unlink a dead
// domain). A slot is stored with Atomics only once the domain it names is
// built (domlist_insert's rcu_assign_pointer), and read with Atomics: a
// thread that finds the record sees every word written before it was
// published.
import { DOMID_ANY, DOMID_FIRST_RESERVED, DOMID_INVALID } from '../abi/domid.ts';
import type { Domain } from './domain.ts';
import { LOCK_CLASSES, SpinLock } from './locks.ts';
import { PageDirectory } from './page-directory.ts';
import { PAGE_WORDS, type PrivatePages } from './private-pages.ts';

// ---- the table's header page, in Int32 words (the one definition) ----
/** domid_last: the last id a search returned (0: none yet). */
const H_LAST = 4;
/** One above the highest slot that is not free. */
const H_HIGH = 5;
/** Domains in the table. */
const H_COUNT = 6;
/** Root of the directory of slot pages. */
const H_ROOT = 7;
const RESERVED = -1;
/** Slot pages: one Int32 word for each domid below DOMID_FIRST_RESERVED. */
const SLOT_PAGES = Math.ceil(DOMID_FIRST_RESERVED / PAGE_WORDS);

export class DomainTable {
  /** Private pages a table takes (create): its header, its directory's root and pages, the slot pages. */
  static readonly PAGES = 2 + Math.ceil(SLOT_PAGES / PAGE_WORDS) + SLOT_PAGES;
  readonly headerPage: number;
  private readonly words: Int32Array;
  private readonly hdr: number;
  private readonly slots: PageDirectory;
  private readonly makeView: (record: number) => Domain;
  /** domlist_update_lock: the header page's first LOCK_WORDS words. */
  private readonly lock: SpinLock;
  /** This thread's views, by domid. */
  private readonly cache = new Map<number, Domain>();

  /** A new, empty table in `pool`; returns its header page. */
  static create(pool: PrivatePages): number {
    const header = pool.alloc();
    if (header < 0) throw new RangeError("out of the hypervisor's private memory for the domain table");
    const slots = new PageDirectory(pool);
    for (let k = 0; k < SLOT_PAGES; k++)
      if (slots.add(k) < 0)
        throw new RangeError("out of the hypervisor's private memory for the domain table");
    pool.words[header * PAGE_WORDS + H_ROOT] = slots.root;
    return header;
  }

  /** A view of the table at `headerPage`; `view` makes this thread's view of a domain from its record. */
  constructor(pool: PrivatePages, headerPage: number, view: (record: number) => Domain) {
    this.headerPage = headerPage;
    this.words = pool.words;
    this.hdr = headerPage * PAGE_WORDS;
    this.slots = new PageDirectory(pool, this.words[this.hdr + H_ROOT]!);
    this.makeView = view;
    this.lock = new SpinLock(this.words, this.hdr, LOCK_CLASSES.domlist, 0, pool.policy);
  }

  private at(domid: number): number {
    return this.slots.page(Math.floor(domid / PAGE_WORDS)) * PAGE_WORDS + (domid % PAGE_WORDS);
  }

  private slot(domid: number): number {
    if (!(Number.isInteger(domid) && domid >= 0 && domid < DOMID_FIRST_RESERVED)) return 0;
    return Atomics.load(this.words, this.at(domid));
  }

  /** Under the lock. */
  private setSlot(domid: number, v: number): void {
    if (v !== 0 && domid >= this.words[this.hdr + H_HIGH]!)
      Atomics.store(this.words, this.hdr + H_HIGH, domid + 1);
    Atomics.store(this.words, this.at(domid), v);
  }

  /** rcu_lock_domain_by_id: the domain with this exact id, or undefined. */
  get(domid: number): Domain | undefined {
    const record = this.slot(domid);
    if (record <= 0) {
      this.cache.delete(domid);
      return undefined;
    }
    const d = this.cache.get(domid);
    if (d !== undefined && d.recordPage === record) return d;
    const v = this.makeView(record);
    this.cache.set(domid, v);
    return v;
  }

  has(domid: number): boolean {
    return this.slot(domid) > 0;
  }

  /** Puts a domain built on an allocated id in the table (domlist_insert). */
  set(domid: number, d: Domain): this {
    this.lock.lock();
    try {
      if (this.slot(domid) <= 0) Atomics.add(this.words, this.hdr + H_COUNT, 1);
      this.setSlot(domid, d.recordPage);
    } finally {
      this.lock.unlock();
    }
    this.cache.set(domid, d);
    return this;
  }

  /**
   * domlist_remove of the domain whose record is `record`, if the slot still
   * names it; false when another thread took it out first. Under
   * domlist_update_lock: threads in shared hypercalls may race to do it.
   */
  remove(domid: number, record: number): boolean {
    this.lock.lock();
    try {
      if (this.slot(domid) !== record) return false;
      this.deleteLocked(domid);
      return true;
    } finally {
      this.lock.unlock();
    }
  }

  /** A view made from a record (one no longer in the table, to finalise it). */
  view(record: number): Domain {
    return this.makeView(record);
  }

  /** Takes a domain out of the table and frees its id (domlist_remove, domid_free). */
  delete(domid: number): boolean {
    this.lock.lock();
    try {
      return this.deleteLocked(domid);
    } finally {
      this.lock.unlock();
    }
  }

  private deleteLocked(domid: number): boolean {
    const had = this.slot(domid) > 0;
    if (this.slot(domid) !== 0) this.setSlot(domid, 0);
    if (had) Atomics.sub(this.words, this.hdr + H_COUNT, 1);
    this.cache.delete(domid);
    return had;
  }

  get size(): number {
    return Atomics.load(this.words, this.hdr + H_COUNT);
  }

  /** The domains, lowest id first (domain_list is kept sorted by id). */
  *values(): IterableIterator<Domain> {
    const high = Atomics.load(this.words, this.hdr + H_HIGH);
    for (let id = 0; id < high; id++) {
      const d = this.get(id);
      if (d !== undefined) yield d;
    }
  }

  *keys(): IterableIterator<number> {
    for (const d of this.values()) yield d.domid;
  }

  *entries(): IterableIterator<[number, Domain]> {
    for (const d of this.values()) yield [d.domid, d];
  }

  [Symbol.iterator](): IterableIterator<[number, Domain]> {
    return this.entries();
  }

  /**
   * domid_alloc: an explicit id if it is free, else the next free one after
   * the last a search returned, wrapping to 1 (id 0 is the boot domain's and
   * never chosen by a search); DOMID_INVALID when there is none. The id stays
   * taken until delete.
   */
  allocId(domid: number): number {
    if (domid >= DOMID_FIRST_RESERVED && domid !== DOMID_ANY) return DOMID_INVALID;
    this.lock.lock();
    try {
      return this.allocIdLocked(domid);
    } finally {
      this.lock.unlock();
    }
  }

  private allocIdLocked(domid: number): number {
    if (domid < DOMID_FIRST_RESERVED) {
      if (this.slot(domid) !== 0) return DOMID_INVALID;
      this.setSlot(domid, RESERVED);
      return domid;
    }
    const last = this.words[this.hdr + H_LAST]!;
    let found = this.search(last + 1, DOMID_FIRST_RESERVED);
    if (found < 0 && last !== 0) found = this.search(1, last + 1);
    if (found < 0) return DOMID_INVALID;
    this.setSlot(found, RESERVED);
    this.words[this.hdr + H_LAST] = found;
    return found;
  }

  /** domid_free of an id whose domain was never put in the table. */
  freeId(domid: number): void {
    this.lock.lock();
    try {
      if (this.slot(domid) === RESERVED) this.setSlot(domid, 0);
    } finally {
      this.lock.unlock();
    }
  }

  private search(from: number, bound: number): number {
    for (let id = from; id < bound; id++) if (this.slot(id) === 0) return id;
    return -1;
  }
}
