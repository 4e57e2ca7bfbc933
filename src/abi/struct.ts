// A small codec for Xen's fixed-layout C structs (x86_64, little-endian).
// Each struct is described once by its field offsets; the same description
// reads and writes it in a byte buffer or in a domain's memory.
// 64-bit fields are JavaScript numbers (lo + hi * 2^32): every address and
// frame in this model is far below 2^53, and values a guest may write above
// that only ever meet range checks, where the rounding cannot matter.

export type FieldType = 'u8' | 'u16' | 'i16' | 'u32' | 'u64';

export interface Field {
  readonly offset: number;
  readonly type: FieldType;
}

export interface StructDef<F extends string = string> {
  readonly name: string;
  readonly size: number;
  readonly fields: { readonly [K in F]: Field };
  /** The fields in declaration order, for decoding without walking object keys. */
  readonly list: readonly (readonly [F, Field])[];
}

export type StructValue<F extends string> = { [K in F]: number };

const TWO32 = 0x1_0000_0000;

export function defineStruct<F extends string>(
  name: string,
  size: number,
  fields: { readonly [K in F]: readonly [number, FieldType] },
): StructDef<F> {
  const out = {} as { [K in F]: Field };
  const list: (readonly [F, Field])[] = [];
  for (const key of Object.keys(fields) as F[]) {
    const [offset, type] = fields[key];
    if (offset + fieldSize(type) > size) throw new Error(`${name}.${key} lies outside the struct`);
    out[key] = { offset, type };
    list.push([key, out[key]]);
  }
  return { name, size, fields: out, list };
}

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
      return view.getUint32(at, true) + view.getUint32(at + 4, true) * TWO32;
  }
}

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
      const v = Math.max(0, Math.trunc(value));
      view.setUint32(at, v % TWO32, true);
      view.setUint32(at + 4, Math.floor(v / TWO32) % TWO32, true);
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
  const out = {} as StructValue<F>;
  for (const [key, f] of def.list) out[key] = getField(view, base, f);
  return out;
}

/** Encodes every field of `value` at byte `base` of a DataView. */
export function encodeToView<F extends string>(
  def: StructDef<F>,
  view: DataView,
  base: number,
  value: StructValue<F>,
): void {
  for (const [key, f] of def.list) setField(view, base, f, value[key]);
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

export function readStruct<F extends string>(
  mem: ByteAccess,
  addr: number,
  def: StructDef<F>,
): StructValue<F> {
  return decodeStruct(def, mem.read(addr, def.size));
}

export function writeStruct<F extends string>(
  mem: ByteAccess,
  addr: number,
  def: StructDef<F>,
  value: Partial<StructValue<F>>,
): void {
  mem.write(addr, encodeStruct(def, value));
}

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
