// The xenstore client interface guest code (vchan, frontends, backends) is
// written against. Paths are absolute ("/local/domain/3/data/vchan") or
// relative to the domain's home ("/local/domain/<domid>"), as in Xen.
import { XenError } from '../../guest/xen-error.ts';

/** One permission entry, as xenstore writes them: "n0", "r1", "w2", "b3". */
export interface XsPerm {
  domid: number;
  /** none, read, write, both */
  perm: 'n' | 'r' | 'w' | 'b';
}

/** A watch's callback: the path that changed and the watch's token. */
export type XsWatchCallback = (path: string, token: string) => void;

/** One watch event, as xs_read_watch returns it (vec[XS_WATCH_PATH], vec[XS_WATCH_TOKEN]). */
export interface XsWatchEvent {
  /** The path that changed (relative when the watch's path was). */
  path: string;
  token: string;
}

/** Options of a wait on a xenstore client. */
export interface XsWaitOptions {
  /** Rejects the wait with the signal's reason (an AbortError) when it aborts. */
  signal?: AbortSignal;
}

/** Options of XsClient.watchEvents. */
export interface XsWatchEventsOptions extends XsWaitOptions {
  /** The watch's token (default: a fresh one of this client's). */
  token?: string;
  /** Levels below the path that fire (0: the node itself); needs XENSTORE_SERVER_FEATURE_WATCHDEPTH. */
  depth?: number;
}

/** A client inside one transaction (xs_transaction_t): every request carries its tx_id. */
export interface XsTransactionClient extends XsClient {
  readonly txId: number;
}

/**
 * A xenstore request refused: `code` is the error name xenstored sent
 * ("ENOENT", "EACCES", "EEXIST", "EINVAL", "EAGAIN", ...), `errno` its number,
 * `op` the libxenstore call ("xs_read") and `reason` what was asked.
 */
export class XsError extends XenError {
  constructor(code: string, what: string) {
    super(xsOpName(what), code, `xenstore ${what}`);
    this.name = 'XsError';
  }
}

/** "read /a/b" -> "xs_read"; the libxenstore name of a request described as `what`. */
function xsOpName(what: string): string {
  const word = /^[a-z_]+/.exec(what)?.[0] ?? 'request';
  return word.startsWith('xs_') ? word : `xs_${word}`;
}

/**
 * A xenstore connection, with libxenstore's calls in camelCase (xs_read is
 * read, xs_get_permissions getPermissions, ...). Refusals throw XsError with
 * xenstored's errno; waits take an AbortSignal. XsRingClient is the guest's
 * (its ring page and event channel); Host.xenstore and WorkerHost.xenstore
 * the toolstack's.
 */
export interface XsClient {
  readonly domid: number;
  /** The value at path; XsError ENOENT when there is none, EACCES without read permission. */
  read(path: string): Promise<string>;
  /** Writes (creating the node and missing parents, which inherit the parent's permissions). */
  write(path: string, value: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** Removes a node and everything under it. */
  rm(path: string): Promise<void>;
  /** xs_directory: the names of path's children. */
  directory(path: string): Promise<string[]>;
  /** xs_get_permissions: the owner's entry first. */
  getPermissions(path: string): Promise<XsPerm[]>;
  /** xs_set_permissions: the first entry is the owner (and the default for everyone else). */
  setPermissions(path: string, perms: readonly XsPerm[]): Promise<void>;
  /** getPermissions, by its older name here. */
  getPerms(path: string): Promise<XsPerm[]>;
  /** setPermissions, by its older name here. */
  setPerms(path: string, perms: readonly XsPerm[]): Promise<void>;
  /**
   * xs_watch: fires once at once (as xenstored does on registration) and on
   * every change at or below path. Events go to `cb`, or without one, to
   * readWatch(). XsError EEXIST when this path and token are watched already.
   */
  watch(path: string, token: string, cb?: XsWatchCallback): Promise<void>;
  /**
   * xs_watch_depth: as watch, for changes at most `depth` levels below path
   * (0: path itself). XenError EOPNOTSUPP when xenstored does not offer
   * XENSTORE_SERVER_FEATURE_WATCHDEPTH.
   */
  watchDepth(path: string, token: string, depth: number, cb?: XsWatchCallback): Promise<void>;
  /**
   * xs_read_watch: the next event of a watch registered without a callback,
   * oldest first; sleeps until there is one. A signal that aborts rejects with
   * its reason.
   */
  readWatch(options?: XsWaitOptions): Promise<XsWatchEvent>;
  /**
   * A watch as an async iterator: registers it (the first event is the
   * registration's), yields its events, unwatches when the loop ends.
   */
  watchEvents(path: string, options?: XsWatchEventsOptions): AsyncGenerator<XsWatchEvent, void, undefined>;
  /** xs_unwatch. */
  unwatch(path: string, token: string): Promise<void>;
  /** xs_get_features_supported: XENSTORE_SERVER_FEATURE_* bits the store offers this client. */
  getFeaturesSupported(): Promise<number>;
  /** xs_transaction_start: a client whose requests run in the new transaction. */
  transactionStart(): Promise<XsTransactionClient>;
  /**
   * xs_transaction_end: commits (XsError EAGAIN when another commit touched
   * what the transaction read: start again) or, with abort, discards.
   */
  transactionEnd(tx: XsTransactionClient, abort?: boolean): Promise<void>;
  /** Runs fn in a transaction, started again on EAGAIN (up to XS_TRANSACTION_RETRIES times). */
  transaction<T>(fn: (tx: XsClient) => Promise<T>): Promise<T>;
  /** xs_get_domain_path: the domain's home path, /local/domain/<domid>. */
  getDomainPath(domid: number): Promise<string>;
  /** Releases the connection (unwatches everything). */
  close(): Promise<void>;
}
