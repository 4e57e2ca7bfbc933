// The requests on nodes (core.c): read, directory, directory_part, get_perms,
// write, mkdir, rm, set_perms, and get_feature; each answers a reply or an
// errno, as xenstored chooses them.
import { canonicalize, parentPath, XENSTORED_FEATURES, type XsNode } from '../nodes.ts';
import {
  atoi,
  parsePerm,
  permToString,
  XS_PERM_OWNER,
  XS_PERM_READ,
  XS_PERM_WRITE,
  type XsPermEntry,
} from '../permissions.ts';
import {
  concatBytes,
  fromBytes,
  nulStrings,
  splitStrings,
  toBytes,
  XENSTORE_PAYLOAD_MAX,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_READ,
  XS_RM,
  XS_SET_PERMS,
  XS_WRITE,
  type XsErrno,
} from '../wire.ts';
import { permsQuotaExceeded } from './quota.ts';
import { ACK, type Ctx, type Result, type Store } from './store.ts';
import { createNode, getNode, readNode, rmNode, writeNode } from './tree.ts';
import { fireWatches } from './watches.ts';

/** onearg: the payload is exactly one nul-terminated string. */
export function oneArg(p: Uint8Array): string | null {
  if (p.length === 0 || p.indexOf(0) !== p.length - 1) return null;
  return fromBytes(p.subarray(0, p.length - 1));
}

export function doRead(s: Store, c: Ctx, p: Uint8Array): Result {
  const g = getNode(s, c, oneArg(p), XS_PERM_READ, false);
  if (typeof g === 'string') return g;
  return { type: XS_READ, payload: g.node.value };
}

export function doDirectory(s: Store, c: Ctx, p: Uint8Array): Result {
  const g = getNode(s, c, oneArg(p), XS_PERM_READ, false);
  if (typeof g === 'string') return g;
  return { type: XS_DIRECTORY, payload: nulStrings(...g.node.children) };
}

/** send_directory_part: "<generation>\0" then child names from the byte offset, "" closing the list. */
export function doDirectoryPart(s: Store, c: Ctx, p: Uint8Array): Result {
  const strs = splitStrings(p);
  if (strs.length !== 2) return 'EINVAL';
  const g = getNode(s, c, strs[0]!, XS_PERM_READ, false);
  if (typeof g === 'string') return g;
  const off = atoi(strs[1]!) >>> 0;
  const children = nulStrings(...g.node.children);
  const gen = toBytes(`${g.node.generation}\0`);
  if (off >= children.length)
    return { type: XS_DIRECTORY_PART, payload: concatBytes(gen, new Uint8Array(1)) };
  const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
  let len = 0;
  for (;;) {
    let end = off + len;
    while (children[end] !== 0) end++;
    const l = end - (off + len);
    if (!(len + l < maxlen)) break;
    len += l + 1;
    if (off + len === children.length) break;
  }
  const part = children.subarray(off, off + len);
  const closing = off + len === children.length ? new Uint8Array(1) : new Uint8Array(0);
  return { type: XS_DIRECTORY_PART, payload: concatBytes(gen, part, closing) };
}

export function doGetPerms(s: Store, c: Ctx, p: Uint8Array): Result {
  const g = getNode(s, c, oneArg(p), XS_PERM_READ, true);
  if (typeof g === 'string') return g;
  return { type: XS_GET_PERMS, payload: nulStrings(...g.node.perms.map(permToString)) };
}

/** do_write: "path\0" then the value (anything, nuls included). */
export function doWrite(s: Store, c: Ctx, p: Uint8Array): Result {
  const nul = p.indexOf(0);
  if (nul < 0) return 'EINVAL';
  const r = writeValue(s, c, fromBytes(p.subarray(0, nul)), p.slice(nul + 1));
  return typeof r === 'string' ? r : { type: XS_WRITE, payload: ACK };
}

export function writeValue(s: Store, c: Ctx, path: string, value: Uint8Array): XsErrno | undefined {
  const g = getNode(s, c, path, XS_PERM_WRITE, false);
  let name: string;
  let node: XsNode;
  if (typeof g === 'string') {
    // No permissions, invalid input?
    if (g !== 'ENOENT') return g;
    name = canonicalize(c.conn, path, false)!;
    const made = createNode(s, c, name, value);
    if (typeof made === 'string') return made;
    node = made;
  } else {
    name = g.name;
    node = { ...g.node, value };
    const e = writeNode(s, c, name, node);
    if (e !== undefined) return e;
  }
  fireWatches(s, c, name, node, false, null);
  return undefined;
}

/** do_mkdir: an existing node is fine; a new one is empty. */
export function mkdir(s: Store, c: Ctx, path: string | null): XsErrno | undefined {
  const g = getNode(s, c, path, XS_PERM_WRITE, false);
  if (typeof g !== 'string') return undefined;
  if (g !== 'ENOENT') return g;
  const name = canonicalize(c.conn, path, false)!;
  const made = createNode(s, c, name, new Uint8Array(0));
  if (typeof made === 'string') return made;
  fireWatches(s, c, name, made, false, null);
  return undefined;
}

/** do_rm: a missing node is fine if its parent exists; the root cannot go. */
export function doRm(s: Store, c: Ctx, p: Uint8Array): Result {
  const path = oneArg(p);
  const g = getNode(s, c, path, XS_PERM_WRITE, false);
  if (typeof g === 'string') {
    if (g !== 'ENOENT') return g;
    const name = canonicalize(c.conn, path, false)!;
    return readNode(s, c, parentPath(name)) !== undefined ? { type: XS_RM, payload: ACK } : 'ENOENT';
  }
  if (g.name === '/') return 'EINVAL';
  const e = rmNode(s, c, g.name);
  return e !== undefined ? e : { type: XS_RM, payload: ACK };
}

/** do_set_perms: "path\0perm\0perm\0...", by the owner (or a privileged caller). */
export function doSetPerms(s: Store, c: Ctx, p: Uint8Array): Result {
  const strs = splitStrings(p);
  if (strs.length < 2) return 'EINVAL';
  if (permsQuotaExceeded(c.conn, strs.length - 1)) return 'ENOSPC';
  const perms: XsPermEntry[] = [];
  for (const str of strs.slice(1)) {
    const e = parsePerm(str);
    if (e === null) return 'EINVAL';
    perms.push(e);
  }
  const e = setPermsOf(s, c, strs[0]!, perms);
  return e !== undefined ? e : { type: XS_SET_PERMS, payload: ACK };
}

export function setPermsOf(
  s: Store,
  c: Ctx,
  path: string,
  given: readonly XsPermEntry[],
): XsErrno | undefined {
  // domain_alloc_permrefs: entries for domains that do not exist are ignored; the owner must exist.
  const perms = given.map((e) => (s.domainExists(e.id) ? e : { ...e, ignore: true }));
  if (perms[0]!.ignore === true) return 'ENOENT';
  const g = getNode(s, c, path, XS_PERM_WRITE | XS_PERM_OWNER, true);
  if (typeof g === 'string') return g;
  // Unprivileged domains may not change the owner.
  if (c.conn.unprivileged && perms[0]!.id !== g.node.perms[0]!.id) return 'EPERM';
  const old = g.node.perms;
  const node: XsNode = { ...g.node, perms };
  const err = writeNode(s, c, g.name, node);
  if (err !== undefined) return err;
  fireWatches(s, c, g.name, node, false, old);
  return undefined;
}

/**
 * do_get_feature: no argument, the caller's own features; a domid (not for
 * unprivileged callers: EACCES), that domain's.
 */
export function doGetFeature(s: Store, c: Ctx, p: Uint8Array): Result {
  const strs = splitStrings(p);
  let features = c.conn.features;
  if (strs.length > 0) {
    if (c.conn.unprivileged) return 'EACCES';
    if (strs.length > 1) return 'EINVAL';
    const id = atoi(strs[0]!) >>> 0;
    if (!s.domainExists(id)) return 'ENOENT';
    features = XENSTORED_FEATURES;
  }
  return { type: XS_GET_FEATURE, payload: nulStrings(String(features)) };
}
