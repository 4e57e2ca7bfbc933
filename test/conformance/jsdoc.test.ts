// Every export of the package root has JSDoc (issue 9: "JSDoc on every
// export"): what an editor shows on hover and what the published .d.ts carry.
// Read with TypeScript's checker, so a re-export counts with the comment of the
// declaration it names; `export * as ns` counts with the comment on that line.
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const index = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/index.ts');

/** True when a /** comment leads the node (the comment on an `export * as ns from` line). */
function leadingJsDoc(node: ts.Node): boolean {
  const text = node.getSourceFile().getFullText();
  return (ts.getLeadingCommentRanges(text, node.getFullStart()) ?? []).some((r) =>
    text.slice(r.pos, r.end).startsWith('/**'),
  );
}

describe('JSDoc on the package root', () => {
  it('every export of src/index.ts has a doc comment', () => {
    const program = ts.createProgram([index], {
      allowImportingTsExtensions: true,
      noEmit: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      strict: true,
    });
    const checker = program.getTypeChecker();
    const root = checker.getSymbolAtLocation(program.getSourceFile(index)!)!;
    const exports = checker.getExportsOfModule(root);
    const missing: string[] = [];
    for (const exp of exports) {
      const target = exp.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exp) : exp;
      if (ts.displayPartsToString(target.getDocumentationComment(checker)).trim() !== '') continue;
      const decl = exp.declarations?.[0];
      if (decl !== undefined && ts.isNamespaceExport(decl) && leadingJsDoc(decl.parent)) continue;
      missing.push(exp.name);
    }
    assert.ok(exports.length > 300, `only ${exports.length} exports found`);
    assert.deepEqual(missing, []);
  });
});
