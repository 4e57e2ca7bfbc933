// A small codec for Xen's fixed-layout C structs (x86_64, little-endian).
// Each struct is described once by its field offsets; the same description
// reads and writes it in a byte buffer or in a domain's memory.
// 64-bit fields are JavaScript numbers (lo + hi * 2^32): every address and
// frame in this model is far below 2^53, and values a guest may write above
// that only ever meet range checks, where the rounding cannot matter.

/** A field's C type: u8, u16, i16, u32 or u64 (little-endian). */
export type FieldType = 'u8' | 'u16' | 'i16' | 'u32' | 'u64';

/** Where a field sits in its struct and its type. */
export interface Field {
  readonly offset: number;
  readonly type: FieldType;
}

/** A C struct described once: its name, size and fields (defineStruct makes one). */
export interface StructDef<F extends string = string> {
  readonly name: string;
  readonly size: number;
  readonly fields: { readonly [K in F]: Field };
  /** The fields in declaration order, for decoding without walking object keys. */
  readonly list: readonly (readonly [F, Field])[];
  /** Compiled from `fields`: the struct at byte `base` of `view`, as a new object of one fixed shape. */
  readonly decode: (view: DataView, base: number) => StructValue<F>;
  /** Compiled from `fields`: reads the struct into `out` (allocates nothing); returns `out`. */
  readonly decodeInto: (view: DataView, base: number, out: StructValue<F>) => StructValue<F>;
  /** Compiled from `fields`: writes every field of `value` at byte `base` of `view`. */
  readonly encode: (view: DataView, base: number, value: StructValue<F>) => void;
  /** Compiled from `fields`: one reader and one writer per field, for paths that touch a few fields. */
  readonly at: { readonly [K in F]: FieldAccessor };
}

/**
 * One field's compiled accessors. `base` is the struct's start, not the
 * field's: the offset is a constant in the generated code.
 */
export interface FieldAccessor {
  readonly offset: number;
  /** Bytes of the field. */
  readonly size: number;
  readonly get: (view: DataView, base: number) => number;
  readonly set: (view: DataView, base: number, value: number) => void;
}

/** A struct's value: one number per field. */
export type StructValue<F extends string> = { [K in F]: number };

const TWO32 = 0x1_0000_0000;

/**
 * A u64 from its halves. Below 2^32 it is the low half itself: a value V8 keeps
 * as an integer, where lo + hi * 2^32 would be a double, and every frame, ref
 * or address that later indexes a typed array or an Atomics call would pay for it.
 */
function u64(lo: number, hi: number): number {
  return hi === 0 ? lo : lo + hi * TWO32;
}

/** Builds a generated function that may call u64. */
function generated<T>(params: string, body: string): T {
  return new Function('u64', `return function (${params}) { ${body} };`)(u64) as T;
}

/** The expression that reads field `f` (getField, unrolled). */
function readExpr(f: Field): string {
  const at = `b + ${f.offset}`;
  switch (f.type) {
    case 'u8':
      return `v.getUint8(${at})`;
    case 'u16':
      return `v.getUint16(${at}, true)`;
    case 'i16':
      return `v.getInt16(${at}, true)`;
    case 'u32':
      return `v.getUint32(${at}, true)`;
    case 'u64':
      return `u64(v.getUint32(${at}, true), v.getUint32(${at} + 4, true))`;
  }
}

/** The statement that writes `x` into field `f` (setField, unrolled). */
function writeStmt(f: Field, x: string): string {
  const at = `b + ${f.offset}`;
  switch (f.type) {
    case 'u8':
      return `v.setUint8(${at}, ${x});`;
    case 'u16':
      return `v.setUint16(${at}, ${x} & 0xffff, true);`;
    case 'i16':
      return `v.setInt16(${at}, ${x}, true);`;
    case 'u32':
      return `v.setUint32(${at}, ${x} >>> 0, true);`;
    case 'u64':
      return `{ const w = ${x} > 0 ? Math.trunc(${x}) : 0; const lo = w >>> 0; v.setUint32(${at}, lo, true); v.setUint32(${at} + 4, ((w - lo) / ${TWO32}) >>> 0, true); }`;
  }
}

/**
 * The compiled accessors of one layout. Hypercall paths decode a struct per
 * element: the generic loop (a string switch per field, keyed stores into an
 * object of no fixed shape) cost a quarter of a 4 KiB GNTTABOP_copy. Code
 * generated once from the field table has constant offsets and one object
 * shape per struct, so every offset is still written only in defineStruct.
 */
function compile<F extends string>(
  list: readonly (readonly [F, Field])[],
): {
  decode: StructDef<F>['decode'];
  decodeInto: StructDef<F>['decodeInto'];
  encode: StructDef<F>['encode'];
} {
  const key = (k: string) => JSON.stringify(k);
  const decodeBody = `return { ${list.map(([k, f]) => `${key(k)}: ${readExpr(f)}`).join(', ')} };`;
  const intoBody = `${list.map(([k, f]) => `o[${key(k)}] = ${readExpr(f)};`).join(' ')} return o;`;
  const encodeBody = list.map(([k, f]) => writeStmt(f, `x[${key(k)}]`)).join(' ');
  return {
    decode: generated<StructDef<F>['decode']>('v, b', decodeBody),
    decodeInto: generated<StructDef<F>['decodeInto']>('v, b, o', intoBody),
    encode: generated<StructDef<F>['encode']>('v, b, x', encodeBody),
  };
}

/** Describes a C struct by its size and its fields' [offset, type]; checks they fit. */
export function defineStruct<F extends string>(
  name: string,
  size: number,
  fields: { readonly [K in F]: readonly [number, FieldType] },
): StructDef<F> {
  const out = {} as { [K in F]: Field };
  const list: (readonly [F, Field])[] = [];
  for (const key of Object.keys(fields) as F[]) {
    const [offset, type] = fields[key];
    if (!(Number.isInteger(offset) && offset >= 0)) throw new Error(`${name}.${key}: bad offset ${offset}`);
    if (offset + fieldSize(type) > size) throw new Error(`${name}.${key} lies outside the struct`);
    out[key] = { offset, type };
    list.push([key, out[key]]);
  }
  const at = {} as { [K in F]: FieldAccessor };
  for (const [key, f] of list) at[key] = compileField(f);
  return { name, size, fields: out, list, ...compile(list), at };
}

/** The reader and writer of one field (readExpr and writeStmt, each its own function). */
function compileField(f: Field): FieldAccessor {
  return {
    offset: f.offset,
    size: fieldSize(f.type),
    get: generated<FieldAccessor['get']>('v, b', `return ${readExpr(f)};`),
    set: generated<FieldAccessor['set']>('v, b, x', writeStmt(f, 'x')),
  };
}

/** Bytes of a field type. */
export function fieldSize(type: FieldType): number {
  switch (type) {
    case 'u8':
      return 1;
    case 'u16':
    case 'i16':
      return 2;
    case 'u32':
      return 4;
    case 'u64':
      return 8;
  }
}

/** Reads one field at `base` in a DataView. */
export function getField(view: DataView, base: number, f: Field): number {
  const at = base + f.offset;
  switch (f.type) {
    case 'u8':
      return view.getUint8(at);
    case 'u16':
      return view.getUint16(at, true);
    case 'i16':
      return view.getInt16(at, true);
    case 'u32':
      return view.getUint32(at, true);
    case 'u64':
      return u64(view.getUint32(at, true), view.getUint32(at + 4, true));
  }
}

/** Writes one field at `base` in a DataView. */
export function setField(view: DataView, base: number, f: Field, value: number): void {
  const at = base + f.offset;
  switch (f.type) {
    case 'u8':
      view.setUint8(at, value);
      return;
    case 'u16':
      view.setUint16(at, value & 0xffff, true);
      return;
    case 'i16':
      view.setInt16(at, value, true);
      return;
    case 'u32':
      view.setUint32(at, value >>> 0, true);
      return;
    case 'u64': {
      // Negative and NaN write 0; above 2^64 the value wraps. >>> 0 is the
      // value modulo 2^32, exactly, and (v - lo) / 2^32 is exact: no fmod,
      // which costs more than the rest of a struct's encode.
      const v = value > 0 ? Math.trunc(value) : 0;
      const lo = v >>> 0;
      view.setUint32(at, lo, true);
      view.setUint32(at + 4, ((v - lo) / TWO32) >>> 0, true);
      return;
    }
  }
}

/** Decodes the struct at `base` of `bytes`. */
export function decodeStruct<F extends string>(
  def: StructDef<F>,
  bytes: Uint8Array,
  base = 0,
): StructValue<F> {
  return decodeFromView(def, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), base);
}

/** Decodes the struct at byte `base` of a DataView (machine memory, say). */
export function decodeFromView<F extends string>(
  def: StructDef<F>,
  view: DataView,
  base: number,
): StructValue<F> {
  return def.decode(view, base);
}

/** Encodes every field of `value` at byte `base` of a DataView. */
export function encodeToView<F extends string>(
  def: StructDef<F>,
  view: DataView,
  base: number,
  value: StructValue<F>,
): void {
  def.encode(view, base, value);
}

/** Encodes `value` into a new zero-filled buffer of the struct's size; missing fields are 0. */
export function encodeStruct<F extends string>(
  def: StructDef<F>,
  value: Partial<StructValue<F>>,
): Uint8Array {
  const bytes = new Uint8Array(def.size);
  const view = new DataView(bytes.buffer);
  for (const key of Object.keys(value) as F[]) {
    const v = value[key];
    if (v !== undefined) setField(view, 0, def.fields[key], v);
  }
  return bytes;
}

/** Encodes an array of structs back to back, as a batched hypercall expects them. */
export function encodeArray<F extends string>(
  def: StructDef<F>,
  values: readonly Partial<StructValue<F>>[],
): Uint8Array {
  const out = new Uint8Array(def.size * values.length);
  values.forEach((v, i) => {
    out.set(encodeStruct(def, v), i * def.size);
  });
  return out;
}

/** The byte access a struct needs in some address space (a domain's memory, for instance). */
export interface ByteAccess {
  read(addr: number, len: number): Uint8Array;
  write(addr: number, bytes: Uint8Array): void;
}

/** Reads a struct at `addr` of an address space (a domain's memory, say). */
export function readStruct<F extends string>(
  mem: ByteAccess,
  addr: number,
  def: StructDef<F>,
): StructValue<F> {
  return decodeStruct(def, mem.read(addr, def.size));
}

/** Writes a struct (missing fields 0) at `addr` of an address space. */
export function writeStruct<F extends string>(
  mem: ByteAccess,
  addr: number,
  def: StructDef<F>,
  value: Partial<StructValue<F>>,
): void {
  mem.write(addr, encodeStruct(def, value));
}

/** Reads `count` structs one after another from `addr`. */
export function readStructArray<F extends string>(
  mem: ByteAccess,
  addr: number,
  def: StructDef<F>,
  count: number,
): StructValue<F>[] {
  const bytes = mem.read(addr, def.size * count);
  const out: StructValue<F>[] = [];
  for (let i = 0; i < count; i++) out.push(decodeStruct(def, bytes, i * def.size));
  return out;
}
