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

export type XsWatchCallback = (path: string, token: string) => void;

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

export interface XsClient {
  readonly domid: number;
  /** The value at path; XsError ENOENT when there is none, EACCES without read permission. */
  read(path: string): Promise<string>;
  /** Writes (creating the node and missing parents, which inherit the parent's permissions). */
  write(path: string, value: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** Removes a node and everything under it. */
  rm(path: string): Promise<void>;
  directory(path: string): Promise<string[]>;
  getPerms(path: string): Promise<XsPerm[]>;
  /** The first entry is the owner (and the default for everyone else). */
  setPerms(path: string, perms: readonly XsPerm[]): Promise<void>;
  /** Fires once at once (as xenstored does on registration) and on every change at or below path. */
  watch(path: string, token: string, cb: XsWatchCallback): Promise<void>;
  unwatch(path: string, token: string): Promise<void>;
  /** Runs fn in a transaction, retried on EAGAIN. */
  transaction<T>(fn: (tx: XsClient) => Promise<T>): Promise<T>;
  /** The domain's home path, /local/domain/<domid>. */
  getDomainPath(domid: number): Promise<string>;
  /** Releases the connection (unwatches everything). */
  close(): Promise<void>;
}
