/**
 * GGUF container format (versions 2 and 3): constants, the ggml tensor type table, and the parser of the
 * header, metadata key/values and tensor infos. Internal to src/formats; the public API is in gguf.ts.
 *
 * Layout (all little endian):
 *   u32 magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
 *   metadata_kv_count x { string key, u32 value_type, value },
 *   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset },
 *   padding to `general.alignment` (default 32), then the data section; each tensor's offset is relative
 *   to the data section and a multiple of the alignment.
 * A string is u64 byte length + UTF-8 bytes; an array is u32 element type + u64 count + elements.
 * ne[0] is the innermost (fastest varying) dimension: a matrix of `rows` x `cols` has ne = [cols, rows].
 */
import { describeValue, quoted } from '../core/describe.js';
import { InternalError, KvsieveError } from '../core/errors.js';
import { handleSize, readFully, type Handle } from './io.js';

export const GGUF_MAGIC = 0x46554747; // the bytes "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;

/** GGUF metadata value types, by their numbers in the file. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueTypeName = keyof typeof GgufValueType;
const VALUE_TYPE_NAMES = Object.fromEntries(Object.entries(GgufValueType).map(([k, v]) => [v, k])) as Record<
  number,
  GgufValueTypeName
>;

/** Byte size of a scalar value type (strings and arrays are variable). */
const SCALAR_BYTES: Partial<Record<GgufValueTypeName, number>> = {
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  UINT32: 4,
  INT32: 4,
  FLOAT32: 4,
  BOOL: 1,
  UINT64: 8,
  INT64: 8,
  FLOAT64: 8,
};

/**
 * A metadata value as stored: `type` is its GGUF type; for arrays `elementType` is the element type.
 * Values are JS values: numbers (64-bit integers as number when safe, else bigint), booleans, strings;
 * numeric arrays are typed arrays (Uint8Array ... Float64Array, BigInt64Array / BigUint64Array), string arrays
 * string[], bool arrays boolean[], arrays of arrays unknown[][].
 */
export interface GgufValue {
  type: GgufValueTypeName;
  elementType?: GgufValueTypeName;
  value: unknown;
}

/** ggml tensor types: id, block size in elements and block size in bytes. */
export interface GgmlTypeInfo {
  id: number;
  name: string;
  blockSize: number;
  typeSize: number;
}

const TYPE_LIST: GgmlTypeInfo[] = [
  { id: 0, name: 'F32', blockSize: 1, typeSize: 4 },
  { id: 1, name: 'F16', blockSize: 1, typeSize: 2 },
  { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18 },
  { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20 },
  { id: 6, name: 'Q5_0', blockSize: 32, typeSize: 22 },
  { id: 7, name: 'Q5_1', blockSize: 32, typeSize: 24 },
  { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34 },
  { id: 9, name: 'Q8_1', blockSize: 32, typeSize: 36 },
  { id: 10, name: 'Q2_K', blockSize: 256, typeSize: 84 },
  { id: 11, name: 'Q3_K', blockSize: 256, typeSize: 110 },
  { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144 },
  { id: 13, name: 'Q5_K', blockSize: 256, typeSize: 176 },
  { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210 },
  { id: 15, name: 'Q8_K', blockSize: 256, typeSize: 292 },
  { id: 16, name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  { id: 17, name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  { id: 18, name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  { id: 19, name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  { id: 20, name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  { id: 21, name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  { id: 22, name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  { id: 23, name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  { id: 24, name: 'I8', blockSize: 1, typeSize: 1 },
  { id: 25, name: 'I16', blockSize: 1, typeSize: 2 },
  { id: 26, name: 'I32', blockSize: 1, typeSize: 4 },
  { id: 27, name: 'I64', blockSize: 1, typeSize: 8 },
  { id: 28, name: 'F64', blockSize: 1, typeSize: 8 },
  { id: 29, name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  { id: 30, name: 'BF16', blockSize: 1, typeSize: 2 },
  { id: 34, name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  { id: 35, name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  { id: 39, name: 'MXFP4', blockSize: 32, typeSize: 17 },
];
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(TYPE_LIST.map((t) => [t.id, t]));
export const GGML_TYPE_BY_NAME: ReadonlyMap<string, GgmlTypeInfo> = new Map(TYPE_LIST.map((t) => [t.name, t]));

export function ggmlType(name: string): GgmlTypeInfo {
  const t = GGML_TYPE_BY_NAME.get(name);
  if (!t) throw new InternalError(`unknown ggml type ${quoted(name)}`);
  return t;
}

/** Bytes of a tensor with dims `ne` (innermost first) of type `t`; ne[0] must be a multiple of the block size. */
export function ggmlTensorBytes(t: GgmlTypeInfo, ne: readonly number[]): number {
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i]!;
  return ((ne[0] ?? 1) / t.blockSize) * t.typeSize * rows;
}

/** One tensor as described by the file (GGUF name and dims). */
export interface GgufTensorInfo {
  name: string;
  /** Dims as stored, innermost first (ne[0] = columns). */
  ne: number[];
  type: GgmlTypeInfo;
  /** Offset within the data section. */
  offset: number;
  /** Absolute offset in the file. */
  position: number;
  byteLength: number;
}

export interface GgufHeader {
  file: string;
  version: number;
  fileSize: number;
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
}

const UTF8 = new TextDecoder('utf-8');

/** Buffered little-endian reads from a file or bytes in memory, each checked against the size. */
class FileReader {
  pos = 0;
  private buf: Uint8Array;
  private view: DataView;
  private bufStart = 0;
  private bufEnd = 0;
  /** Describes what is being read, for "truncated" errors. */
  context = 'the header';

  constructor(
    private readonly fd: Handle,
    readonly file: string,
    readonly size: number,
    chunk = 1 << 20,
  ) {
    this.buf = new Uint8Array(chunk);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes bytes [pos, pos + n) available in buf and returns their index there. */
  private need(n: number): number {
    if (this.pos + n > this.size) {
      throw new KvsieveError(
        `${this.file}: truncated: ${this.context} needs bytes up to ${this.pos + n} but the file ends at byte ${this.size}`,
      );
    }
    if (this.pos >= this.bufStart && this.pos + n <= this.bufEnd) return this.pos - this.bufStart;
    if (n > this.buf.length) {
      this.buf = new Uint8Array(Math.max(n, 2 * this.buf.length));
      this.view = new DataView(this.buf.buffer);
    }
    const got = Math.min(this.buf.length, this.size - this.pos);
    readFully(this.fd, this.file, this.context, this.buf.subarray(0, got), this.pos);
    this.bufStart = this.pos;
    this.bufEnd = this.pos + got;
    if (got < n) {
      throw new KvsieveError(
        `${this.file}: truncated: ${this.context} needs bytes up to ${this.pos + n} but the file ends at byte ${this.bufEnd}`,
      );
    }
    return 0;
  }

  u8(): number {
    const i = this.need(1);
    this.pos += 1;
    return this.buf[i]!;
  }
  i8(): number {
    const i = this.need(1);
    this.pos += 1;
    return this.view.getInt8(i);
  }
  u16(): number {
    const i = this.need(2);
    this.pos += 2;
    return this.view.getUint16(i, true);
  }
  i16(): number {
    const i = this.need(2);
    this.pos += 2;
    return this.view.getInt16(i, true);
  }
  u32(): number {
    const i = this.need(4);
    this.pos += 4;
    return this.view.getUint32(i, true);
  }
  i32(): number {
    const i = this.need(4);
    this.pos += 4;
    return this.view.getInt32(i, true);
  }
  f32(): number {
    const i = this.need(4);
    this.pos += 4;
    return this.view.getFloat32(i, true);
  }
  f64(): number {
    const i = this.need(8);
    this.pos += 8;
    return this.view.getFloat64(i, true);
  }
  u64big(): bigint {
    const i = this.need(8);
    this.pos += 8;
    return this.view.getBigUint64(i, true);
  }
  i64big(): bigint {
    const i = this.need(8);
    this.pos += 8;
    return this.view.getBigInt64(i, true);
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  u64(what: string): number {
    const v = this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new KvsieveError(`${this.file}: ${what} ${v} is absurdly large (corrupt file?)`);
    return Number(v);
  }
  /** Raw bytes copied out. */
  bytes(n: number): Uint8Array {
    if (n > this.buf.length) {
      if (this.pos + n > this.size) this.need(n); // throws the truncation error
      const out = new Uint8Array(n);
      readFully(this.fd, this.file, this.context, out, this.pos);
      this.pos += n;
      return out;
    }
    const i = this.need(n);
    this.pos += n;
    return new Uint8Array(this.buf.subarray(i, i + n));
  }
  string(what: string): string {
    const len = this.u64(`length of ${what}`);
    if (this.pos + len > this.size) {
      throw new KvsieveError(
        `${this.file}: truncated: ${what} of ${len} bytes at byte ${this.pos} runs past the end of the file (${this.size} bytes)`,
      );
    }
    if (len <= this.buf.length) {
      const i = this.need(len);
      this.pos += len;
      return UTF8.decode(this.buf.subarray(i, i + len));
    }
    return UTF8.decode(this.bytes(len));
  }
}

function typeName(file: string, id: number, what: string): GgufValueTypeName {
  const name = VALUE_TYPE_NAMES[id];
  if (name === undefined) throw new KvsieveError(`${file}: ${what} has unknown value type ${id} (corrupt file?)`);
  return name;
}

function readScalar(r: FileReader, type: GgufValueTypeName, what: string): unknown {
  switch (type) {
    case 'UINT8':
      return r.u8();
    case 'INT8':
      return r.i8();
    case 'UINT16':
      return r.u16();
    case 'INT16':
      return r.i16();
    case 'UINT32':
      return r.u32();
    case 'INT32':
      return r.i32();
    case 'FLOAT32':
      return r.f32();
    case 'FLOAT64':
      return r.f64();
    case 'BOOL':
      return r.u8() !== 0;
    case 'UINT64': {
      const v = r.u64big();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case 'INT64': {
      const v = r.i64big();
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    case 'STRING':
      return r.string(what);
    default:
      throw new KvsieveError(`${r.file}: ${what}: ${type} is not a scalar type`);
  }
}

type NumericArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

const TYPED_ARRAYS: Partial<Record<GgufValueTypeName, new (n: number) => NumericArray>> = {
  UINT8: Uint8Array,
  INT8: Int8Array,
  UINT16: Uint16Array,
  INT16: Int16Array,
  UINT32: Uint32Array,
  INT32: Int32Array,
  FLOAT32: Float32Array,
  FLOAT64: Float64Array,
  UINT64: BigUint64Array,
  INT64: BigInt64Array,
};

function readArray(r: FileReader, what: string, depth: number): GgufValue {
  const elementType = typeName(r.file, r.u32(), `${what} (array element type)`);
  const count = r.u64(`element count of ${what}`);
  const minBytes = elementType === 'STRING' ? 8 : elementType === 'ARRAY' ? 12 : SCALAR_BYTES[elementType]!;
  if (r.pos + count * minBytes > r.size) {
    throw new KvsieveError(
      `${r.file}: truncated: ${what} holds ${count} ${elementType} values, more than the ${r.size - r.pos} bytes left in the file`,
    );
  }
  const Typed = TYPED_ARRAYS[elementType];
  if (Typed) {
    const bytes = r.bytes(count * minBytes);
    const out = new Typed(count);
    new Uint8Array(out.buffer).set(bytes); // little-endian host (checked by the reader)
    return { type: 'ARRAY', elementType, value: out };
  }
  if (elementType === 'ARRAY') {
    if (depth > 8) throw new KvsieveError(`${r.file}: ${what}: arrays nested too deeply (corrupt file?)`);
    const out: unknown[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = readArray(r, what, depth + 1).value;
    return { type: 'ARRAY', elementType, value: out };
  }
  const out: unknown[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = readScalar(r, elementType, what);
  return { type: 'ARRAY', elementType, value: out };
}

/** Parses the header, metadata and tensor infos of an open GGUF file, validating every tensor's placement. */
export function parseGgufHeader(fd: Handle, file: string): GgufHeader {
  const size = handleSize(fd);
  const r = new FileReader(fd, file, size);
  if (size < 4) throw new KvsieveError(`${file}: not a GGUF file (${size} bytes, too short for the magic)`);
  const magic = r.u32();
  if (magic !== GGUF_MAGIC) {
    const hex = magic.toString(16).padStart(8, '0');
    throw new KvsieveError(`${file}: not a GGUF file (magic 0x${hex}, expected "GGUF")`);
  }
  r.context = 'the GGUF header';
  const version = r.u32();
  if (version !== 2 && version !== 3) {
    throw new KvsieveError(`${file}: GGUF version ${version} is not supported (only versions 2 and 3)`);
  }
  const tensorCount = r.u64('tensor count');
  const kvCount = r.u64('metadata count');
  // Each key/value takes at least 13 bytes and each tensor info at least 24: bound the counts by the file size.
  if (kvCount * 13 + tensorCount * 24 > size - r.pos) {
    throw new KvsieveError(
      `${file}: truncated: the header announces ${kvCount} metadata entries and ${tensorCount} tensors, more than a ${size}-byte file can hold`,
    );
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    r.context = `metadata entry ${i} of ${kvCount}`;
    const key = r.string(`metadata key ${i}`);
    const what = `metadata key ${quoted(key)}`;
    r.context = what;
    if (metadata.has(key)) throw new KvsieveError(`${file}: ${what} appears twice`);
    const type = typeName(file, r.u32(), what);
    metadata.set(key, type === 'ARRAY' ? readArray(r, what, 0) : { type, value: readScalar(r, type, what) });
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    const v = al.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || (v & (v - 1)) !== 0) {
      throw new KvsieveError(`${file}: general.alignment must be a positive power of two, got ${describeValue(v)}`);
    }
    alignment = v;
  }

  const infos: Omit<GgufTensorInfo, 'position'>[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    r.context = `tensor info ${i} of ${tensorCount}`;
    const name = r.string(`name of tensor ${i}`);
    const at = `${file}: tensor ${quoted(name)}`;
    r.context = `tensor info ${quoted(name)}`;
    if (names.has(name)) throw new KvsieveError(`${at}: appears twice`);
    names.add(name);
    const nDims = r.u32();
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) throw new KvsieveError(`${at}: ${nDims} dimensions (must be 1 to ${GGUF_MAX_DIMS})`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(r.u64(`tensor ${quoted(name)} dimension ${d}`));
    const typeId = r.u32();
    const type = GGML_TYPES.get(typeId);
    if (!type) throw new KvsieveError(`${at}: unknown ggml tensor type ${typeId}`);
    const offset = r.u64(`tensor ${quoted(name)} offset`);
    if (ne[0]! % type.blockSize !== 0) {
      throw new KvsieveError(`${at}: ${type.name} needs rows of a multiple of ${type.blockSize} values, but ne[0] is ${ne[0]}`);
    }
    const byteLength = ggmlTensorBytes(type, ne);
    if (!Number.isSafeInteger(byteLength)) throw new KvsieveError(`${at}: dims [${ne.join(', ')}] are absurdly large`);
    infos.push({ name, ne, type, offset, byteLength });
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const tensors: GgufTensorInfo[] = [];
  for (const t of infos) {
    const at = `${file}: tensor ${quoted(t.name)}`;
    if (t.offset % alignment !== 0) {
      throw new KvsieveError(`${at}: data offset ${t.offset} is not a multiple of the alignment ${alignment}`);
    }
    const position = dataOffset + t.offset;
    if (position + t.byteLength > size) {
      throw new KvsieveError(
        `${at}: truncated: its data (${t.byteLength} bytes at byte ${position}) runs past the end of the file (${size} bytes)`,
      );
    }
    tensors.push({ ...t, position });
  }
  const spans = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < spans.length; i++) {
    const a = spans[i - 1]!;
    const b = spans[i]!;
    if (b.offset < a.offset + a.byteLength) {
      throw new KvsieveError(`${file}: tensors ${quoted(a.name)} and ${quoted(b.name)} overlap in the data section`);
    }
  }
  // The data section is the tensors back to back, each padded to the alignment (as llama.cpp and gguf-py
  // write it), so a tensor info the counts leave out shows as a gap or as bytes after the last tensor,
  // instead of being dropped silently with every later offset shifted.
  const align = (n: number) => Math.ceil(n / alignment) * alignment;
  let covered = 0;
  for (const t of spans) {
    if (t.offset !== align(covered)) {
      throw new KvsieveError(
        `${file}: data bytes [${covered}, ${t.offset}) before tensor ${quoted(t.name)} belong to no tensor (tensor count ${tensorCount} too small?)`,
      );
    }
    covered = t.offset + t.byteLength;
  }
  const trailing = size - (dataOffset + covered);
  if (spans.length > 0 && trailing >= alignment) {
    throw new KvsieveError(`${file}: ${trailing} bytes after the last tensor's data belong to no tensor (tensor count ${tensorCount} too small?)`);
  }
  return { file, version, fileSize: size, alignment, dataOffset, metadata, tensors };
}
