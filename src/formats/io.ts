/**
 * Positioned file reading shared by the checkpoint readers, and a TensorSource over tensors that lie
 * at known offsets in open files. Internal to src/formats.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { KvsieveError } from '../core/errors.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../core/half.js';
import { oneLine, quoted } from '../core/describe.js';
import type { DType, TensorInfo, TensorSource } from './tensors.js';

export { oneLine } from '../core/describe.js';

/** Largest single readSync: Node refuses 2 GiB and more in one call. */
export const DEFAULT_MAX_READ_BYTES = 1 << 30;
/** Bytes read per chunk when widening F16/BF16 to float32. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

/** Read tuning; the defaults suit real checkpoints, tests shrink them to exercise the chunk loops. */
export interface ReadOptions {
  /** Bytes per chunk when widening F16/BF16 (default 1 MiB). */
  chunkBytes?: number;
  /** Most bytes asked of one readSync (default 1 GiB). */
  maxReadBytes?: number;
}

// Read from a typed array, not os.endianness(): this module is also bundled for the browser, where
// only the bytes-in-memory handles below are used and nothing from node:fs is called.
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Where a checkpoint's bytes are: an open file descriptor (Node), or the whole file in memory (bytes
 * handed over by a caller, a browser's fetch). Every reader here takes either.
 */
export type Handle = number | Uint8Array;

/** The size in bytes of what `h` holds. */
export function handleSize(h: Handle): number {
  return typeof h === 'number' ? fstatSync(h).size : h.byteLength;
}

/**
 * Fills `target` from `fd` starting at byte `position`, in reads of at most `maxRead` bytes.
 * A read that hits the end of file throws a KvsieveError naming the file and `what` was being read.
 */
export function readFully(
  fd: Handle,
  file: string,
  what: string,
  target: Uint8Array,
  position: number,
  maxRead = DEFAULT_MAX_READ_BYTES,
): void {
  const len = target.byteLength;
  if (typeof fd !== 'number') {
    const available = Math.max(0, Math.min(len, fd.byteLength - position));
    target.set(fd.subarray(position, position + available));
    if (available < len) {
      throw new KvsieveError(
        `${file}: truncated: ${what} needs bytes up to ${position + len} but the file ends at byte ${position + available}`,
      );
    }
    return;
  }
  let done = 0;
  while (done < len) {
    const want = Math.min(len - done, maxRead);
    let n: number;
    try {
      n = readSync(fd, target, done, want, position + done);
    } catch (e) {
      throw new KvsieveError(`${file}: reading ${what} failed: ${oneLine((e as Error).message, 100)}`, { cause: e });
    }
    if (n === 0) {
      throw new KvsieveError(
        `${file}: truncated: ${what} needs bytes up to ${position + len} but the file ends at byte ${position + done}`,
      );
    }
    done += n;
  }
}

/** Number of elements of `shape` (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Reads the `numel(shape)` elements of `dtype` at byte `position` of `fd` into a fresh Float32Array. F32
 * bytes go straight into the result's buffer; F16/BF16 are read in chunks and widened, so no second full
 * copy exists.
 */
export function readAsF32(
  fd: Handle,
  file: string,
  name: string,
  dtype: DType,
  shape: readonly number[],
  position: number,
  opts: ReadOptions = {},
): Float32Array {
  const what = `tensor ${quoted(name)}`;
  if (!LITTLE_ENDIAN_HOST) throw new KvsieveError(`${file}: ${what}: big-endian hosts are not supported`);
  const count = numel(shape);
  const maxRead = Math.max(1, Math.floor(opts.maxReadBytes ?? DEFAULT_MAX_READ_BYTES));
  let out: Float32Array;
  try {
    out = new Float32Array(count);
  } catch (e) {
    throw new KvsieveError(`${file}: ${what}: cannot allocate ${count} floats (${oneLine((e as Error).message, 80)})`, {
      cause: e,
    });
  }
  if (dtype === 'F32') {
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    readFully(fd, file, what, bytes, position, maxRead);
    return out;
  }
  if (dtype === 'U8') {
    const bytes = new Uint8Array(count);
    readFully(fd, file, what, bytes, position, maxRead);
    out.set(bytes);
    return out;
  }
  const widen = dtype === 'F16' ? f16ArrayToF32 : bf16ArrayToF32;
  const perChunk = Math.max(1, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / 2));
  const scratch = new Uint16Array(Math.min(perChunk, Math.max(count, 1)));
  for (let i = 0; i < count; i += perChunk) {
    const k = Math.min(perChunk, count - i);
    const part = scratch.subarray(0, k);
    const bytes = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
    readFully(fd, file, what, bytes, position + 2 * i, maxRead);
    widen(part, out, i);
  }
  return out;
}

/** One tensor of an OffsetSource: where its bytes are and how to read them. */
export interface PlacedTensor {
  info: TensorInfo;
  fd: Handle;
  /** Absolute byte offset of the first element in its file. */
  position: number;
  /** Applied to the freshly read data before it is returned (e.g. a row permutation). */
  transform?: (data: Float32Array) => void;
}

/**
 * A TensorSource over tensors at known file offsets. `where` describes the file(s) for "not found"
 * errors; `fds` are closed by close().
 */
export class OffsetSource implements TensorSource {
  private readonly byName = new Map<string, PlacedTensor>();
  private closed = false;

  constructor(
    tensors: PlacedTensor[],
    private readonly where: string,
    private readonly fds: Handle[],
    private readonly opts: ReadOptions = {},
  ) {
    for (const t of tensors) this.byName.set(t.info.name, t);
  }

  list(): TensorInfo[] {
    return [...this.byName.values()].map((t) => copyInfo(t.info));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    return copyInfo(this.placed(name).info);
  }

  readF32(name: string): Float32Array {
    const t = this.placed(name);
    if (this.closed) throw new KvsieveError(`${t.info.file}: tensor ${quoted(name)} read after close()`);
    const { info } = t;
    const data = readAsF32(t.fd, info.file, name, info.dtype, info.shape, t.position, this.opts);
    t.transform?.(data);
    return data;
  }

  storedType(name: string): string | null {
    const t = this.placed(name);
    return t.transform ? null : t.info.dtype;
  }

  readStored(name: string): Uint8Array {
    const t = this.placed(name);
    if (this.closed) throw new KvsieveError(`${t.info.file}: tensor ${quoted(name)} read after close()`);
    if (t.transform) throw new KvsieveError(`${t.info.file}: tensor ${quoted(name)} is rearranged while read; it has no stored form`);
    const bytes = numel(t.info.shape) * DTYPE_BYTES[t.info.dtype];
    const data = new Uint8Array(bytes);
    readFully(t.fd, t.info.file, `tensor ${quoted(name)}`, data, t.position, this.opts.maxReadBytes);
    return data;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds) closeQuietly(fd);
  }

  private placed(name: string): PlacedTensor {
    const t = this.byName.get(name);
    if (!t) throw new KvsieveError(`${this.where}: no tensor named ${quoted(name)}`);
    return t;
  }
}

function copyInfo(i: TensorInfo): TensorInfo {
  return { name: i.name, dtype: i.dtype, shape: [...i.shape], file: i.file };
}

export function closeQuietly(fd: Handle): void {
  if (typeof fd !== 'number') return; // bytes in memory: nothing to close
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to release
  }
}

/** Opens `file` for reading; a failure is a KvsieveError naming the file. */
export function openForReading(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    throw new KvsieveError(`${file}: cannot open: ${oneLine((e as Error).message)}`, { cause: e });
  }
}

/** Writes all of `bytes` at `position`, in pieces a single write call accepts. */
export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const len = Math.min(bytes.byteLength - done, DEFAULT_MAX_READ_BYTES);
    done += writeSync(fd, bytes, done, len, position + done);
  }
}

/** Writes `target` via `target.tmp` and a rename, so `target` is never left half-written. */
export function writeAtomically(target: string, body: (fd: number) => void): void {
  const tmp = `${target}.tmp`;
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    body(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) closeQuietly(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // never created or already gone
    }
    if (e instanceof KvsieveError) throw e;
    throw new KvsieveError(`${target}: write failed: ${oneLine((e as Error).message)}`, { cause: e });
  }
}
