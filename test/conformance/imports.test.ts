// The shape of src's imports (DESIGN.md "Layers"): no module imports itself
// through a chain of others, and imports point down the layers, never up.
// A cycle of value imports makes evaluation order matter (a module can see
// another's bindings before they are initialised); `import type` is erased
// before anything runs, so it cannot form one and is left out of the cycle
// check, but it must still respect the layers. The sources are parsed with
// TypeScript's own parser, so a type-only import is known, not guessed.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** Layers from the bottom; a file may import from its own layer and those below. */
const LAYERS = ['abi', 'machine', 'xen', 'guest', 'io', 'host', 'toolkit', 'cli'] as const;
/** Siblings that must not see each other: guest code talks to Xen only through the ABI. */
const APART: [string, string][] = [
  ['guest', 'xen'],
  ['io', 'xen'],
];

interface Edge {
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The relative imports and re-exports of one file (static ones: a dynamic import() runs later). */
export function importsOf(file: string, text: string): Edge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  for (const s of sf.statements) {
    let spec: ts.Expression | undefined;
    let typeOnly = false;
    if (ts.isImportDeclaration(s)) {
      spec = s.moduleSpecifier;
      typeOnly = s.importClause?.isTypeOnly ?? false;
    } else if (ts.isExportDeclaration(s)) {
      spec = s.moduleSpecifier;
      typeOnly = s.isTypeOnly;
    }
    if (spec === undefined || !ts.isStringLiteral(spec) || !spec.text.startsWith('.')) continue;
    edges.push({ to: resolve(dirname(file), spec.text), typeOnly });
  }
  return edges;
}

/** Strongly connected components of more than one file (Tarjan), each a cycle's members. */
export function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    // A file importing itself is a cycle of one.
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const files = sourceFiles(root);
const edges = new Map(files.map((f) => [f, importsOf(f, readFileSync(f, 'utf8'))]));
const layerOf = (f: string) => relative(root, f).split('/')[0]!;
const rankOf = (f: string) => LAYERS.indexOf(layerOf(f) as (typeof LAYERS)[number]);

describe('the import structure of src (DESIGN.md "Layers")', () => {
  it('the checks can fail: a planted cycle and a type-only edge are told apart', () => {
    const a = resolve(root, 'a.ts');
    const b = resolve(root, 'b.ts');
    const ea = importsOf(a, "import { x } from './b.ts';\nimport type { T } from './c.ts';\n");
    const eb = importsOf(b, "export { y } from './a.ts';\n");
    assert.deepEqual(ea, [
      { to: b, typeOnly: false },
      { to: resolve(root, 'c.ts'), typeOnly: true },
    ]);
    assert.deepEqual(
      cycles(
        new Map([
          [a, ea.map((e) => e.to)],
          [b, eb.map((e) => e.to)],
        ]),
      ),
      [[a, b]],
    );
  });

  it('every file of src is in a known layer', () => {
    const unknown = files.filter((f) => rankOf(f) < 0 && relative(root, f) !== 'index.ts');
    assert.deepEqual(
      unknown.map((f) => relative(root, f)),
      [],
    );
  });

  it('no cycle of value imports', () => {
    const graph = new Map(
      [...edges].map(([f, es]) => [f, es.filter((e) => !e.typeOnly).map((e) => e.to)] as [string, string[]]),
    );
    assert.deepEqual(
      cycles(graph).map((c) => c.map((f) => relative(root, f)).join(' -> ')),
      [],
    );
  });

  it('imports point down the layers; guest and io never import xen', () => {
    const bad: string[] = [];
    for (const [f, es] of edges) {
      if (relative(root, f) === 'index.ts') continue; // the package root re-exports every layer
      for (const e of es) {
        const up = rankOf(e.to) > rankOf(f);
        const apart = APART.some(([x, y]) => layerOf(f) === x && layerOf(e.to) === y);
        if (up || apart)
          bad.push(`${relative(root, f)} -> ${relative(root, e.to)}${e.typeOnly ? ' (type)' : ''}`);
      }
    }
    assert.deepEqual(bad, []);
  });
});
