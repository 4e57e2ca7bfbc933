// Inspection of the store: its counts, and its own consistency.
import type { XsConnectionKind } from '../connection.ts';
import { baseName, childPath, parentPath } from '../nodes.ts';
import type { Store } from './store.ts';

export interface XsStats {
  nodes: number;
  connections: {
    domid: number;
    kind: XsConnectionKind;
    watches: number;
    transactions: number;
    ignored: boolean;
  }[];
  watches: number;
  transactions: number;
}

export function stats(s: Store): XsStats {
  let watches = 0;
  let transactions = 0;
  const connections = s.conns.map((c) => {
    watches += c.watches.length;
    transactions += c.transactions.size;
    return {
      domid: c.domid,
      kind: c.kind,
      watches: c.watches.length,
      transactions: c.transactions.size,
      ignored: c.ignored,
    };
  });
  return { nodes: s.nodes.size, connections, watches, transactions };
}

/**
 * The store's own consistency: every listed child exists and every node but
 * the root and the special ones is listed by its existing parent, once;
 * permissions are non-empty; closed connections are gone; domain
 * connections belong to introduced domains (and, given `live`, live ones).
 */
export function checkStore(s: Store, live?: (domid: number) => boolean): string[] {
  const out: string[] = [];
  for (const [name, node] of s.nodes) {
    if (node.perms.length === 0) out.push(`xenstore: ${name} has no permissions`);
    const seen = new Set<string>();
    for (const ch of node.children) {
      if (seen.has(ch)) out.push(`xenstore: ${name} lists ${ch} twice`);
      seen.add(ch);
      if (!s.nodes.has(childPath(name, ch))) out.push(`xenstore: ${name} lists missing child ${ch}`);
    }
    if (name === '/' || name.startsWith('@')) continue;
    const parent = s.nodes.get(parentPath(name));
    if (parent === undefined) out.push(`xenstore: ${name} has no parent`);
    else if (!parent.children.includes(baseName(name)))
      out.push(`xenstore: ${name} is not listed by its parent`);
  }
  for (const c of s.conns) {
    if (c.closed) out.push(`xenstore: closed connection of d${c.domid} still listed`);
    if (c.kind === 'domain' && s.domains.get(c.domid) !== c)
      out.push(`xenstore: connection of d${c.domid} for a domain not introduced`);
    if (c.kind === 'domain' && live !== undefined && !live(c.domid))
      out.push(`xenstore: connection, ${c.watches.length} watches of dead d${c.domid}`);
  }
  return out;
}
