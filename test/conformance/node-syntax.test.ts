// The sources use only syntax that every supported Node line runs once types
// are stripped. Node 22.18+ runs src/ by stripping types (a worker started on a
// .ts entry, and the package imported from a guest in a checkout), but its V8
// has no `using` / `await using` (explicit resource management arrived in
// Node 24): a declaration of that kind was a SyntaxError there. Type-only
// syntax that cannot be stripped (enums, parameter properties) is tsc's
// erasableSyntaxOnly check; this is the one it does not make. Parsed with
// TypeScript's parser, so comments and strings do not count.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** `file:line` of each `using` or `await using` declaration in the file. */
export function usingDeclarations(file: string, text: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (n: ts.Node): void => {
    // AwaitUsing includes the Using bit.
    if (ts.isVariableDeclarationList(n) && (n.flags & ts.NodeFlags.Using) !== 0) {
      const { line } = sf.getLineAndCharacterOfPosition(n.getStart(sf));
      found.push(`${relative(root, file)}:${line + 1}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

describe('src syntax that Node 22 runs after stripping types', () => {
  it('the check finds using and await using, not the word in a comment or a string', () => {
    const text = [
      '// await using v = x;',
      "const s = 'using y = z';",
      'async function f() {',
      '  await using a = open();',
      '  { using b = open(); }',
      '}',
    ].join('\n');
    assert.deepEqual(usingDeclarations(join(root, 'x.ts'), text), ['x.ts:4', 'x.ts:5']);
  });

  it('no using or await using declaration in src (try/finally instead)', () => {
    const found = sourceFiles(root).flatMap((f) => usingDeclarations(f, readFileSync(f, 'utf8')));
    assert.deepEqual(found, []);
  });
});
