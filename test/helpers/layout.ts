// Golden-vector checks of a struct definition against the offsets and sizes of
// the C header: [struct, size, [field, offset, size]...].
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { decodeStruct, encodeStruct, fieldSize, type StructDef } from '../../src/abi/struct.ts';

export type Layout = [StructDef, number, [string, number, number][]];

/** One test per struct: its size, its field set, and each field's offset, size and bytes. */
export function itMatchesLayouts(layouts: readonly Layout[]): void {
  for (const [def, size, fields] of layouts) {
    it(`${def.name}: size ${size} and every field offset`, () => {
      assert.equal(def.size, size);
      assert.deepEqual(Object.keys(def.fields).sort(), fields.map((f) => f[0]).sort());
      for (const [name, offset, fsize] of fields) {
        const f = def.fields[name];
        assert.ok(f, name);
        assert.equal(f.offset, offset, `${def.name}.${name} offset`);
        assert.equal(fieldSize(f.type), fsize, `${def.name}.${name} size`);
        // Golden bytes: a marker value placed in the field lands at exactly this byte, little-endian.
        const bytes = encodeStruct(def, { [name]: 0xa5 });
        const expected = new Uint8Array(size);
        expected[offset] = 0xa5;
        assert.deepEqual(bytes, expected, `${def.name}.${name} bytes`);
        assert.equal(decodeStruct(def, expected)[name], 0xa5);
        // The compiled accessors the hypercall paths run: the same byte, both ways.
        const view = new DataView(expected.buffer);
        const value = def.decode(view, 0);
        assert.deepEqual(
          Object.keys(value),
          def.list.map(([k]) => k),
        );
        const into = def.decodeInto(view, 0, Object.fromEntries(def.list.map(([k]) => [k, -1])));
        assert.deepEqual(into, value);
        // Guard bytes either side stay untouched.
        const out = new Uint8Array(size + 8).fill(0x5a).fill(0, 4, 4 + size);
        def.encode(new DataView(out.buffer), 4, value);
        assert.deepEqual(out.subarray(4, 4 + size), expected, `${def.name}.${name} compiled encode`);
        assert.ok(
          out.subarray(0, 4).every((b) => b === 0x5a) && out.subarray(4 + size).every((b) => b === 0x5a),
        );
        // The field's own compiled reader and writer: the same offset, size and bytes.
        const acc = def.at[name];
        assert.ok(acc, `${def.name}.${name} accessor`);
        assert.equal(acc.offset, offset, `${def.name}.${name} accessor offset`);
        assert.equal(acc.size, fsize, `${def.name}.${name} accessor size`);
        assert.equal(acc.get(view, 0), 0xa5, `${def.name}.${name} compiled get`);
        const one = new Uint8Array(size + 8).fill(0x5a).fill(0, 4, 4 + size);
        acc.set(new DataView(one.buffer), 4, 0xa5);
        assert.deepEqual(one, out, `${def.name}.${name} compiled set`);
      }
    });
  }
}
