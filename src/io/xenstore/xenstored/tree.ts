// The node tree (core.c): finding a node with a permission check, reading and
// writing nodes globally or through a transaction, creating a node with its
// missing ancestors, and removing subtrees.
import { baseName, canonicalize, childPath, NO_GENERATION, parentPath, type XsNode } from '../nodes.ts';
import { permFor, XS_PERM_NONE } from '../permissions.ts';
import type { XsErrno } from '../wire.ts';
import { nodesQuotaExceeded, nodeTooBig } from './quota.ts';
import type { Ctx, Store } from './store.ts';
import { fireWatches } from './watches.ts';

/**
 * get_node: the node at a path argument if the connection has `perm` on it;
 * otherwise EINVAL (bad path), EACCES or ENOENT, where ENOENT is told only to
 * those who may `perm` the closest existing ancestor (errno_from_parents).
 */
export function getNode(
  s: Store,
  c: Ctx,
  path: string | null,
  perm: number,
  allowSpecial: boolean,
): { name: string; node: XsNode } | XsErrno {
  const name = canonicalize(c.conn, path, allowSpecial);
  if (name === null) return 'EINVAL';
  const node = readNode(s, c, name);
  let err: XsErrno;
  if (node === undefined) err = 'ENOENT';
  else if ((permFor(c.conn, node.perms) & perm) !== perm) err = 'EACCES';
  else return { name, node };
  // ask_parents: what does the closest existing ancestor say?
  let anc: XsNode | undefined;
  let p = name;
  do {
    p = parentPath(p);
    anc = readNode(s, c, p);
  } while (anc === undefined && p !== '/');
  const parentPerm = anc === undefined ? XS_PERM_NONE : permFor(c.conn, anc.perms);
  return (parentPerm & perm) !== 0 ? err : 'EACCES';
}

/** read_node: through the transaction when there is one (recording the access). */
export function readNode(s: Store, c: Ctx, name: string): XsNode | undefined {
  const tx = c.tx;
  if (tx === null) return s.nodes.get(name);
  let a = tx.accessed.get(name);
  if (a === undefined) {
    const live = s.nodes.get(name) ?? null;
    a = {
      generation: live?.generation ?? NO_GENERATION,
      check: true,
      modified: false,
      node: live,
      oldPerms: live?.perms ?? null,
      fireWatch: false,
      watchExact: false,
    };
    tx.accessed.set(name, a);
  }
  return a.node ?? undefined;
}

/** write_node: stores `node` (globally, or in the transaction) with a new generation. */
export function writeNode(s: Store, c: Ctx, name: string, node: XsNode, quota = true): XsErrno | undefined {
  if (quota && nodeTooBig(c, node)) return 'ENOSPC';
  const n: XsNode = { ...node, generation: ++s.generation };
  const tx = c.tx;
  if (tx === null) {
    s.nodes.set(name, n);
    return undefined;
  }
  let a = tx.accessed.get(name);
  if (a === undefined) {
    a = {
      generation: NO_GENERATION,
      check: false,
      modified: false,
      node: null,
      oldPerms: null,
      fireWatch: false,
      watchExact: false,
    };
    tx.accessed.set(name, a);
  }
  a.node = n;
  a.modified = true;
  return undefined;
}

function deleteNode(s: Store, c: Ctx, name: string): void {
  s.generation++;
  const tx = c.tx;
  if (tx === null) {
    s.nodes.delete(name);
    return;
  }
  const a = tx.accessed.get(name);
  if (a === undefined) return; // never read in this transaction: nothing to delete
  a.node = null;
  a.modified = true;
}

/**
 * create_node / construct_node: the node and any missing ancestors, each
 * inheriting its parent's permissions, owned by an unprivileged creator.
 */
export function createNode(s: Store, c: Ctx, name: string, value: Uint8Array): XsNode | XsErrno {
  const names: string[] = [];
  let parentName = name;
  let parent: XsNode | undefined;
  do {
    names.push(parentName);
    parentName = parentPath(parentName);
    parent = readNode(s, c, parentName);
  } while (parent === undefined && parentName !== '/');
  if (parent === undefined) return 'EINVAL';
  // quota_nb_entry_per_domain: an unprivileged domain owns at most XS_QUOTA.nodes nodes.
  if (nodesQuotaExceeded(s, c, names.length)) return 'ENOSPC';
  // Walk back down, constructing the missing nodes.
  const writes: [string, XsNode][] = [];
  let pName = parentName;
  let p: XsNode = parent;
  for (let i = names.length - 1; i >= 0; i--) {
    const n = names[i]!;
    const updatedParent: XsNode = { ...p, children: [...p.children, baseName(n)] };
    writes.push([pName, updatedParent]);
    const perms = p.perms.map((e) => ({ ...e }));
    if (c.conn.unprivileged) perms[0] = { ...perms[0]!, id: c.conn.domid };
    const node: XsNode = {
      value: i === 0 ? value : new Uint8Array(0),
      perms,
      children: [],
      generation: NO_GENERATION,
    };
    pName = n;
    p = node;
  }
  writes.push([pName, p]);
  // Each write replaces its parent's record: keep the last one per name.
  const finals = new Map<string, XsNode>();
  for (const [n, node] of writes) finals.set(n, node);
  for (const node of finals.values()) if (nodeTooBig(c, node)) return 'ENOSPC';
  // Bottom up, as create_node writes them.
  for (const [n, node] of [...finals].reverse()) writeNode(s, c, n, node, false);
  return finals.get(name)!;
}

/**
 * rm_node: removes the subtree (children first), firing each removed node's
 * watches (exactly, the root as a change of the tree), then drops the entry
 * from the parent.
 */
export function rmNode(s: Store, c: Ctx, name: string): XsErrno | undefined {
  const pname = parentPath(name);
  const parent = readNode(s, c, pname);
  if (parent === undefined) return 'EINVAL';
  const walk = (n: string): void => {
    const node = readNode(s, c, n);
    if (node === undefined) return;
    for (const ch of node.children) walk(childPath(n, ch));
    deleteNode(s, c, n);
    fireWatches(s, c, n, node, n !== name, null);
  };
  walk(name);
  const base = baseName(name);
  const fresh = readNode(s, c, pname)!;
  if (!fresh.children.includes(base)) return 'EIO';
  return writeNode(s, c, pname, { ...fresh, children: fresh.children.filter((x) => x !== base) }, false);
}

/** domain_tree_remove: every node still owned by a dead domain goes (with its subtree). */
export function removeOwnedBy(s: Store, domid: number): void {
  const c = s.internal;
  const visit = (n: string): void => {
    const node = s.nodes.get(n);
    if (node === undefined) return;
    if (n !== '/' && node.perms[0]!.id === domid) {
      rmNode(s, c, n);
      return;
    }
    for (const ch of [...node.children]) visit(childPath(n, ch));
  };
  visit('/');
}
