// The xenstore client interface guest code (vchan, frontends, backends) is
// written against. Paths are absolute ("/local/domain/3/data/vchan") or
// relative to the domain's home ("/local/domain/<domid>"), as in Xen.

/** One permission entry, as xenstore writes them: "n0", "r1", "w2", "b3". */
export interface XsPerm {
  domid: number;
  /** none, read, write, both */
  perm: 'n' | 'r' | 'w' | 'b';
}

export type XsWatchCallback = (path: string, token: string) => void;

export class XsError extends Error {
  /** Xen's errno name as xenstored sends it: "ENOENT", "EACCES", "EEXIST", "EINVAL", "EAGAIN", ... */
  readonly errno: string;
  constructor(errno: string, what: string) {
    super(`xenstore ${what}: ${errno}`);
    this.name = 'XsError';
    this.errno = errno;
  }
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
