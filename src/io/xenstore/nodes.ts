// Nodes and paths: the stored node record, the quotas of unprivileged
// domains, and path arithmetic (xenstored's core.c, watch.c, domain.c).

import type { XsConnection } from './connection.ts';
import type { XsPermEntry } from './permissions.ts';
import {
  XENSTORE_REL_PATH_MAX,
  XENSTORE_SERVER_FEATURE_ERROR,
  XENSTORE_SERVER_FEATURE_WATCHDEPTH,
} from './wire.ts';

/** A node as stored: never changed in place (a write stores a new record). */
export interface XsNode {
  readonly value: Uint8Array;
  readonly perms: readonly XsPermEntry[];
  readonly children: readonly string[];
  /** Generation count of its last change (transaction conflict detection). */
  readonly generation: number;
}

/** xenstored's NO_GENERATION: the node did not exist. */
export const NO_GENERATION = -1;

/** sizeof(struct node_hdr) and sizeof(struct xs_permissions), for the node-size quota. */
export const NODE_HDR_SIZE = 16;
export const XS_PERMISSIONS_SIZE = 8;

/** Default hard quotas of xenstored (domain.c), for unprivileged domains. */
export const XS_QUOTA = {
  /** Watches per domain. */
  watches: 128,
  /** Active transactions per domain. */
  transactions: 10,
  /** Max. number of permissions per node. */
  nodePerms: 5,
  /** Max. size of a node (header, permissions, value, child names). */
  nodeSize: 2048,
  /** Outstanding requests per domain (replies not yet written to its ring). */
  outstanding: 20,
  /** Nodes a domain may own (quota_nb_entry_per_domain). */
  nodes: 1000,
} as const;

export const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;

/** get_parent: "/a/b" -> "/a", "/a" -> "/", "@releaseDomain" -> "/". */
export function parentPath(name: string): string {
  const i = name.lastIndexOf('/');
  return i > 0 ? name.slice(0, i) : '/';
}

export function baseName(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

export function childPath(parent: string, child: string): string {
  return parent === '/' ? `/${child}` : `${parent}/${child}`;
}

/**
 * domain.c XENSTORE_FEATURES: what this xenstored offers every domain (the
 * ring's server_features, XS_GET_FEATURE): the error field, and watches with
 * a depth.
 */
export const XENSTORED_FEATURES = XENSTORE_SERVER_FEATURE_ERROR | XENSTORE_SERVER_FEATURE_WATCHDEPTH;

/**
 * watch.c is_child: child is parent or below it, at most `depth` levels
 * below (-1: any; 0: parent itself); everything is below "/".
 */
export function isChildPath(child: string, parent: string, depth = -1): boolean {
  if (!child.startsWith(parent)) return false;
  const len = parent.length;
  const c = child[len];
  if (parent !== '/' && c !== undefined && c !== '/') return false;
  if (depth < 0 || c === undefined) return true;
  // Levels below parent: the separators after it ("/" itself counts as one).
  let levels = parent === '/' ? 1 : 0;
  for (let i = len; i < child.length; i++) if (child[i] === '/') levels++;
  return levels <= depth;
}

/** The home of a domain, /local/domain/<domid>. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid >>> 0}`;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** canonicalize: the absolute name of a path argument, or null (EINVAL). */
export function canonicalize(conn: XsConnection, node: string | null, allowSpecial: boolean): string | null {
  if (node === null || !VALID_CHARS.test(node) || (node.startsWith('@') && !allowSpecial)) return null;
  const name = !node.startsWith('/') && !node.startsWith('@') ? `${conn.home}/${node}` : node;
  const local = /^\/local\/domain\/\d{1,5}\//.exec(name);
  const localOff = local === null ? 0 : local[0].length;
  if (name.endsWith('/') && name !== '/') return null;
  if (name.includes('//')) return null;
  if (conn.unprivileged && name.length - localOff > XENSTORE_REL_PATH_MAX) return null;
  return name;
}
