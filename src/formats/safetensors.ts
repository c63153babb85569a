/**
 * safetensors checkpoints: one file, or shards listed by `model.safetensors.index.json`.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON (name -> {dtype, shape, data_offsets},
 * plus an optional "__metadata__" of strings), then the data section; data_offsets are [begin, end) byte
 * offsets into the data section. Only the header is read at open time; tensors are read on demand with
 * positioned reads, so files of any size (above 2 GiB included) work without loading them.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { describeValue, jsonErrorReason, quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../core/half.js';
import {
  closeQuietly,
  DEFAULT_CHUNK_BYTES,
  DTYPE_BYTES,
  handleSize,
  numel,
  OffsetSource,
  oneLine,
  openForReading,
  readFully,
  writeAll,
  writeAtomically,
  type Handle,
  type PlacedTensor,
  type ReadOptions,
} from './io.js';
import type { DType, TensorSource } from './tensors.js';

export type { ReadOptions } from './io.js';

/** Headers larger than this are refused as corrupt (the reference implementation uses the same limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Index files larger than this are refused as corrupt. */
const MAX_INDEX_BYTES = 100_000_000;

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

const DTYPES: readonly DType[] = ['F32', 'F16', 'BF16', 'U8'];

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const q = quoted;

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** One opened and validated safetensors file. The caller owns `fd`. */
interface ParsedFile {
  path: string;
  fd: Handle;
  tensors: PlacedTensor[];
  byName: Map<string, PlacedTensor>;
  metadata: Record<string, string>;
}

/** Opens `path`, validates its header and every tensor entry; closes the file again on any error. */
function parseFile(path: string): ParsedFile {
  const fd = openForReading(path);
  try {
    return parseOpenFile(path, fd);
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
}

function parseOpenFile(path: string, fd: Handle): ParsedFile {
  const size = handleSize(fd);
  if (size < 8) throw new KvsieveError(`${path}: truncated: ${size} bytes, too short for the 8-byte header length`);
  const lenBytes = new Uint8Array(8);
  readFully(fd, path, 'the header length', lenBytes, 0);
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new KvsieveError(`${path}: header length ${headerLen} is absurdly large (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file?`);
  }
  const n = Number(headerLen);
  if (8 + n > size) {
    throw new KvsieveError(`${path}: truncated: header length ${n} runs past the end of the file (${size} bytes)`);
  }
  const headerBytes = new Uint8Array(n);
  readFully(fd, path, 'the header', headerBytes, 8);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes));
  } catch (e) {
    throw new KvsieveError(`${path}: header is not valid JSON (${jsonErrorReason(e)})`, { cause: e });
  }
  if (!isObject(header)) throw new KvsieveError(`${path}: header is not a JSON object`);

  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const tensors: PlacedTensor[] = [];
  const spans: { name: string; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (isObject(entry)) {
        metadata = Object.fromEntries(Object.entries(entry).filter((kv): kv is [string, string] => typeof kv[1] === 'string'));
      }
      continue;
    }
    const at = `${path}: tensor ${q(name)}`;
    if (!isObject(entry)) throw new KvsieveError(`${at}: entry is not an object`);
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!(key in entry)) throw new KvsieveError(`${at}: missing "${key}"`);
    }
    const dtype = entry['dtype'];
    if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
      throw new KvsieveError(`${at}: unsupported dtype ${describeValue(dtype)} (supported: ${DTYPES.join(', ')})`);
    }
    const shape = entry['shape'];
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new KvsieveError(`${at}: "shape" must be an array of non-negative integers, got ${describeValue(shape)}`);
    }
    const offsets = entry['data_offsets'];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0]! > offsets[1]!) {
      throw new KvsieveError(`${at}: "data_offsets" must be [begin, end] with 0 <= begin <= end, got ${describeValue(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const needed = numel(shape) * DTYPE_BYTES[dtype as DType];
    if (end - begin !== needed) {
      throw new KvsieveError(
        `${at}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${describeValue(shape)} needs ${needed}`,
      );
    }
    if (end > dataSize) {
      throw new KvsieveError(
        `${at}: truncated: data ends at byte ${end} of the data section but the file holds only ${dataSize} data bytes`,
      );
    }
    tensors.push({ info: { name, dtype: dtype as DType, shape: [...shape], file: path }, fd, position: dataStart + begin });
    if (end > begin) spans.push({ name, begin, end });
  }
  spans.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < spans.length; i++) {
    const a = spans[i - 1]!;
    const b = spans[i]!;
    if (b.begin < a.end) {
      throw new KvsieveError(
        `${path}: tensors ${q(a.name)} [${a.begin}, ${a.end}) and ${q(b.name)} [${b.begin}, ${b.end}) overlap`,
      );
    }
  }
  // The data section holds the tensors back to back and nothing else (as the reference implementation
  // requires). A gap or trailing bytes mean the header does not describe this data: a header length a
  // few bytes short still parses (the cut falls in the padding) but shifts every tensor.
  let covered = 0;
  for (const s of spans) {
    if (s.begin !== covered) {
      throw new KvsieveError(`${path}: data bytes [${covered}, ${s.begin}) before tensor ${q(s.name)} belong to no tensor (wrong header length or offsets?)`);
    }
    covered = s.end;
  }
  if (covered !== dataSize) {
    throw new KvsieveError(`${path}: ${dataSize - covered} data bytes after the last tensor belong to no tensor (wrong header length or offsets?)`);
  }
  tensors.sort((a, b) => a.position - b.position);
  return { path, fd, tensors, byName: new Map(tensors.map((t) => [t.info.name, t])), metadata };
}

/**
 * A single safetensors file from its bytes in memory (a browser's fetch), validated as openSafetensors
 * validates a file; `name` names it in errors.
 */
export function readSafetensors(bytes: Uint8Array, name: string, options: ReadOptions = {}): TensorSource {
  const f = parseOpenFile(name, bytes);
  return new OffsetSource(f.tensors, name, [], options);
}

function openSingle(path: string, opts: ReadOptions): TensorSource {
  const f = parseFile(path);
  return new OffsetSource(f.tensors, path, [f.fd], opts);
}

function openSharded(indexPath: string, opts: ReadOptions): TensorSource {
  let size: number;
  try {
    size = statSync(indexPath).size;
  } catch (e) {
    throw new KvsieveError(`${indexPath}: cannot open: ${oneLine((e as Error).message)}`, { cause: e });
  }
  if (size > MAX_INDEX_BYTES) throw new KvsieveError(`${indexPath}: ${size} bytes is absurdly large for a shard index`);
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new KvsieveError(`${indexPath}: not valid JSON (${jsonErrorReason(e)})`, { cause: e });
  }
  if (!isObject(index) || !isObject(index['weight_map'])) {
    throw new KvsieveError(`${indexPath}: missing "weight_map" object`);
  }
  const weightMap = index['weight_map'];
  const dir = dirname(indexPath);
  const shards = new Map<string, ParsedFile>();
  try {
    const placed: PlacedTensor[] = [];
    for (const [name, shard] of Object.entries(weightMap)) {
      if (typeof shard !== 'string' || shard === '' || basename(shard) !== shard) {
        throw new KvsieveError(`${indexPath}: tensor ${q(name)} maps to ${describeValue(shard)}, not a file name beside the index`);
      }
      let f = shards.get(shard);
      if (!f) {
        const shardPath = join(dir, shard);
        if (!existsSync(shardPath)) {
          throw new KvsieveError(`${indexPath}: shard ${q(shard)} (holding tensor ${q(name)}) is missing (no such file beside the index)`);
        }
        f = parseFile(shardPath);
        shards.set(shard, f);
      }
      const t = f.byName.get(name);
      if (!t) throw new KvsieveError(`${indexPath}: tensor ${q(name)} is mapped to shard ${q(shard)} but ${f.path} does not contain it`);
      placed.push(t);
    }
    return new OffsetSource(placed, indexPath, [...shards.values()].map((f) => f.fd), opts);
  } catch (e) {
    for (const f of shards.values()) closeQuietly(f.fd);
    throw e;
  }
}

/**
 * Opens a safetensors checkpoint: a `.safetensors` file, a directory holding `model.safetensors` or
 * `model.safetensors.index.json`, or the index file itself. Validates every header at open time and
 * throws a one-line KvsieveError naming the file (and tensor) at fault. `options` only tunes read sizes.
 */
export function openSafetensors(path: string, options: ReadOptions = {}): TensorSource {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw new KvsieveError(`${path}: no such file or directory`, { cause: e });
  }
  if (isDir) {
    const single = join(path, SINGLE_FILE_NAME);
    if (existsSync(single)) return openSingle(single, options);
    const index = join(path, INDEX_FILE_NAME);
    if (existsSync(index)) return openSharded(index, options);
    throw new KvsieveError(`${path}: directory holds neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}`);
  }
  if (path.endsWith('.index.json')) return openSharded(path, options);
  return openSingle(path, options);
}

// ------------------------------------------------------------------------------------------------
// Writing

/** One tensor to write. `data` may be a function, called once when the tensor is written, so a large
 * model can be produced one tensor at a time instead of all at once. */
export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: Float32Array | (() => Float32Array);
}

function validateForWrite(path: string, tensors: readonly TensorToWrite[]): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    const at = `${path}: tensor ${q(t.name)}`;
    if (t.name === '__metadata__') throw new KvsieveError(`${at}: the name is reserved`);
    if (seen.has(t.name)) throw new KvsieveError(`${at}: given twice`);
    seen.add(t.name);
    if (!DTYPES.includes(t.dtype)) throw new KvsieveError(`${at}: unsupported dtype ${describeValue(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every(isNonNegInt)) {
      throw new KvsieveError(`${at}: shape must be non-negative integers, got ${describeValue(t.shape)}`);
    }
    if (typeof t.data !== 'function' && t.data.length !== numel(t.shape)) {
      throw new KvsieveError(`${at}: data holds ${t.data.length} values but shape ${describeValue(t.shape)} needs ${numel(t.shape)}`);
    }
  }
}



/**
 * Writes a safetensors file: float32 data converted to each tensor's dtype (F16/BF16 round to nearest
 * even), the JSON header padded with spaces to a multiple of 8 bytes, tensors packed contiguously in
 * the given order. Data is streamed in chunks (no whole-model buffer) and the file appears atomically.
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  validateForWrite(path, tensors);
  const header: Json = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new KvsieveError(`${path}: metadata ${q(k)} must be a string`);
    }
    header['__metadata__'] = { ...metadata };
  }
  let offset = 0;
  for (const t of tensors) {
    const bytes = numel(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length), 0);

  writeAtomically(path, (fd) => {
    writeAll(fd, prefix, 0);
    writeAll(fd, json, 8);
    let pos = 8 + json.length;
    const scratch = new Uint16Array(DEFAULT_CHUNK_BYTES / 2);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const count = numel(t.shape);
      if (!(data instanceof Float32Array) || data.length !== count) {
        throw new KvsieveError(`${path}: tensor ${q(t.name)}: data must be a Float32Array of ${count} values`);
      }
      if (t.dtype === 'F32') {
        writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
        pos += data.byteLength;
        continue;
      }
      if (t.dtype === 'U8') {
        if (!data.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) throw new KvsieveError(`${path}: tensor ${q(t.name)}: U8 data must be whole numbers 0..255`);
        writeAll(fd, Uint8Array.from(data), pos);
        pos += count;
        continue;
      }
      const narrow = t.dtype === 'F16' ? f32ArrayToF16 : f32ArrayToBf16;
      for (let i = 0; i < count; i += scratch.length) {
        const part = scratch.subarray(0, Math.min(scratch.length, count - i));
        narrow(data, part, i);
        writeAll(fd, new Uint8Array(part.buffer, part.byteOffset, part.byteLength), pos);
        pos += part.byteLength;
      }
    }
  });
}

/** The Hugging Face shard file name: `model-00001-of-00003.safetensors`. */
export function shardFileName(i: number, count: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/**
 * Writes `tensors` as `shardCount` shards (`model-0000i-of-0000N.safetensors`, contiguous runs of
 * tensors balanced by bytes, none empty) plus `model.safetensors.index.json` into `dir` (created if
 * needed). Returns the index path.
 */
export function writeShardedSafetensors(dir: string, tensors: TensorToWrite[], shardCount: number): string {
  const index = join(dir, INDEX_FILE_NAME);
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > tensors.length) {
    throw new KvsieveError(`${index}: shardCount must be an integer from 1 to ${tensors.length} (the tensor count), got ${shardCount}`);
  }
  validateForWrite(index, tensors);
  const sizes = tensors.map((t) => numel(t.shape) * DTYPE_BYTES[t.dtype]);
  const total = sizes.reduce((a, b) => a + b, 0);
  // Boundary s is the first tensor whose data starts at or after s/N of the bytes, kept so every shard has one.
  const bounds = [0];
  let cum = 0;
  let next = 0;
  const starts = sizes.map((s) => ((cum += s), cum - s));
  for (let s = 1; s < shardCount; s++) {
    while (next < tensors.length && starts[next]! < (s * total) / shardCount) next++;
    bounds.push(Math.min(Math.max(next, bounds[s - 1]! + 1), tensors.length - (shardCount - s)));
  }
  bounds.push(tensors.length);

  mkdirSync(dir, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shardCount; s++) {
    const name = shardFileName(s, shardCount);
    const group = tensors.slice(bounds[s], bounds[s + 1]);
    writeSafetensors(join(dir, name), group, { format: 'pt' });
    for (const t of group) weightMap[t.name] = name;
  }
  const body = Buffer.from(`${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`, 'utf8');
  writeAtomically(index, (fd) => writeAll(fd, body, 0));
  return index;
}
