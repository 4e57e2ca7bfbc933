// Xen's private shadow of a grant entry in use (reference §4.2). While pin != 0
// the cached fields are authoritative and the shared entry is not read again.
//
// Active entries live in the hypervisor's private pages (private-pages.ts),
// ACT_PER_PAGE to a page, so that every hypervisor thread sees the same ones;
// an ActiveEntry is one thread's view of one of them. A table finds its pages
// through a two-level directory of private pages (grant-table.ts).
import { XEN_PAGE_SIZE } from '../abi/limits.ts';
import type { WaitPolicy } from '../machine/wait-policy.ts';
import { LOCK_CLASSES, LOCK_WORDS, SpinLock } from './locks.ts';
import { PAGE_WORDS } from './private-pages.ts';

// ---- the record's layout, in Int32 words (the one definition) ----
/** act->lock: the first LOCK_WORDS words. */
export const ACT_LOCK = 0;
const ACT_PIN = LOCK_WORDS;
const ACT_DOMID = LOCK_WORDS + 1;
const ACT_SRC_DOMID = LOCK_WORDS + 2;
const ACT_TRANS_GREF = LOCK_WORDS + 3;
const ACT_START = LOCK_WORDS + 4;
const ACT_LENGTH = LOCK_WORDS + 5;
const ACT_IS_SUB_PAGE = LOCK_WORDS + 6;
const ACT_MFN = LOCK_WORDS + 7;
/** Words per record: a power of two, so records never straddle a page. */
export const ACT_WORDS = 16;
export const ACT_PER_PAGE = PAGE_WORDS / ACT_WORDS;

/** Makes the records of a fresh (zeroed) page what a new active entry is. */
export function initActivePage(words: Int32Array, page: number): void {
  for (let i = 0; i < ACT_PER_PAGE; i++)
    words[page * PAGE_WORDS + i * ACT_WORDS + ACT_LENGTH] = XEN_PAGE_SIZE;
}

export class ActiveEntry {
  /** The private pages' words, and where this record starts in them. */
  readonly words: Int32Array;
  readonly at: number;

  /** act->lock, keyed by its table (see GrantTable.lock); made on first use. */
  private spin: SpinLock | null = null;
  private readonly key: number;
  private readonly policy: WaitPolicy;

  constructor(words: Int32Array, at: number, key: number, policy: WaitPolicy) {
    this.words = words;
    this.at = at;
    this.key = key;
    this.policy = policy;
  }

  /** act->lock (active_entry_acquire): taken only under its table's lock. */
  get lock(): SpinLock {
    this.spin ??= new SpinLock(
      this.words,
      this.at + ACT_LOCK,
      LOCK_CLASSES.activeEntry,
      this.key,
      this.policy,
    );
    return this.spin;
  }

  /** Four 8-bit counters: hstw | hstr << 8 | devw << 16 | devr << 24 (a uint32). */
  get pin(): number {
    return this.words[this.at + ACT_PIN]! >>> 0;
  }
  set pin(v: number) {
    this.words[this.at + ACT_PIN] = v | 0;
  }

  /** The grantee holding the pins. */
  get domid(): number {
    return this.words[this.at + ACT_DOMID]!;
  }
  set domid(v: number) {
    this.words[this.at + ACT_DOMID] = v;
  }

  /** The domain whose page is really used (the granter, or the inner granter of a transitive grant). */
  get srcDomid(): number {
    return this.words[this.at + ACT_SRC_DOMID]!;
  }
  set srcDomid(v: number) {
    this.words[this.at + ACT_SRC_DOMID] = v;
  }

  get transGref(): number {
    return this.words[this.at + ACT_TRANS_GREF]! >>> 0;
  }
  set transGref(v: number) {
    this.words[this.at + ACT_TRANS_GREF] = v | 0;
  }

  /** Window start, stored in 15 bits as Xen does (quirk §15.20). */
  get start(): number {
    return this.words[this.at + ACT_START]!;
  }
  set start(v: number) {
    this.words[this.at + ACT_START] = v;
  }

  get length(): number {
    return this.words[this.at + ACT_LENGTH]!;
  }
  set length(v: number) {
    this.words[this.at + ACT_LENGTH] = v;
  }

  get isSubPage(): boolean {
    return this.words[this.at + ACT_IS_SUB_PAGE] !== 0;
  }
  set isSubPage(v: boolean) {
    this.words[this.at + ACT_IS_SUB_PAGE] = v ? 1 : 0;
  }

  get mfn(): number {
    return this.words[this.at + ACT_MFN]!;
  }
  set mfn(v: number) {
    this.words[this.at + ACT_MFN] = v;
  }
}
