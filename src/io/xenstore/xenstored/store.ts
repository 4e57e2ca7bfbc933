// The store's state (xenstored's tdb and its lists of connections and
// domains), and the context each request is handled in.
import { type Transaction, XsConnection } from '../connection.ts';
import type { XsNode } from '../nodes.ts';
import type { Reply } from '../output.ts';
import { XS_PERM_NONE, type XsPermEntry } from '../permissions.ts';
import { nulStrings, type XsErrno } from '../wire.ts';

export interface XenStoreOptions {
  /**
   * Whether a domain exists (an XS_SET_PERMS owner must; other entries for
   * missing domains are ignored). Default: dom0 and the introduced domains.
   */
  domainExists?: (domid: number) => boolean;
}

/** Handling context of one request: the connection and its transaction. */
export interface Ctx {
  readonly conn: XsConnection;
  readonly tx: Transaction | null;
}

export type Result = Reply | XsErrno;

export const ACK = nulStrings('OK');

export class Store {
  readonly nodes = new Map<string, XsNode>();
  /** The generation count of the last change (every write and removal takes the next). */
  generation = 0;
  /** Connections in creation order (watch events go out in this order). */
  readonly conns: XsConnection[] = [];
  /** Introduced domains and their connections. */
  readonly domains = new Map<number, XsConnection>();
  /** The store's own privileged context for what the toolstack does (home trees, cleanup). */
  readonly internal: Ctx = { conn: new XsConnection(0, 'tool'), tx: null };
  readonly domainExists: (domid: number) => boolean;

  constructor(o: XenStoreOptions) {
    this.domainExists = o.domainExists ?? ((id) => id === 0 || this.domains.has(id));
    // setup_structure: the root, /tool/xenstored and the special nodes, all owned by dom0, "n0".
    const n0: XsPermEntry[] = [{ id: 0, perms: XS_PERM_NONE }];
    const mk = (children: string[]): XsNode => ({
      value: new Uint8Array(0),
      perms: n0,
      children,
      generation: ++this.generation,
    });
    this.nodes.set('/', mk(['tool']));
    this.nodes.set('/tool', mk(['xenstored']));
    this.nodes.set('/tool/xenstored', mk([]));
    this.nodes.set('@releaseDomain', mk([]));
    this.nodes.set('@introduceDomain', mk([]));
  }
}
