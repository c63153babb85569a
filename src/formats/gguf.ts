/**
 * GGUF checkpoints (llama.cpp's format, versions 2 and 3), read as kvsieve models and written from them.
 *
 *   openGgufWeights(file, options?): GgufWeights         config + HF-named tensors + metadata (synchronous;
 *                                                        src/model/open-gguf.ts adds the tokenizer)
 *   writeGguf(file, options): void                       (gguf-write.ts)
 *
 * Tensors are presented under Hugging Face names with row-major shapes (GGUF dims are innermost first), read on
 * demand and dequantised to float32 chunk by chunk (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
 * Q6_K, MXFP4); `readRawTensor` gives the stored blocks for backends that keep quantised weights. For `llama`-arch
 * files the q/k rows are put back into HF (rotate-half) order, raw blocks included (see gguf-names.ts).
 */
import { quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import { configFromGguf, ggufArchitecture, type GgufArch } from './gguf-config.js';
import { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from './gguf-format.js';
import { DEQUANTIZABLE, dequantizeBlocks } from './gguf-quant.js';
import { ggufToHfName, permutedHeads, rawRowsGgufToHf, rowsGgufToHf } from './gguf-names.js';
import { closeQuietly, DEFAULT_CHUNK_BYTES, numel, openForReading, readAsF32, readFully, type Handle, type ReadOptions } from './io.js';
import type { DType, TensorInfo, TensorSource } from './tensors.js';

export { writeGguf, type GgufTensorToWrite, type GgufWeightType, type GgufWriteOptions } from './gguf-write.js';
export { ggufVocabFromLlama2c, syntheticGpt2Vocab, TokenType, type GgufTokenizerSpec } from './gguf-vocab.js';
export { GGML_TYPES, GgufValueType, type GgmlTypeInfo, type GgufHeader, type GgufTensorInfo, type GgufValue } from './gguf-format.js';
export { fitLlama3, ggufArchOf, llama3RopeDivisors, type GgufArch } from './gguf-config.js';
export { ggufToHfName, hfToGgufName } from './gguf-names.js';

/** A tensor's stored bytes: whole ggml blocks, rows in HF order. */
export interface RawTensor {
  /** HF name (or the GGUF name for tensors without one). */
  name: string;
  ggufName: string;
  /** ggml type name (F32, F16, Q8_0, ...) and number. */
  type: string;
  typeId: number;
  /** Row-major shape, as readF32 gives it. */
  shape: number[];
  /** Elements per block and bytes per block of `type`. */
  blockSize: number;
  blockBytes: number;
  data: Uint8Array;
}

interface Entry {
  name: string;
  shape: number[];
  t: GgufTensorInfo;
  /** Heads whose rows go back to HF order (llama-arch q/k), or 0. */
  heads: number;
}

/** The TensorSource of a GGUF file, plus raw access to the stored blocks. */
export class GgufTensorSource implements TensorSource {
  private readonly byName = new Map<string, Entry>();
  private readonly byGgufName = new Map<string, Entry>();
  private closed = false;

  constructor(
    readonly header: GgufHeader,
    private readonly fd: Handle,
    readonly arch: GgufArch,
    private readonly heads: { numHeads: number; numKvHeads: number; headDim: number } | null,
    private readonly opts: ReadOptions = {},
  ) {
    for (const t of header.tensors) {
      const hf = ggufToHfName(t.name, arch);
      const name = hf ?? t.name;
      const h = hf && heads && arch === 'llama' ? permutedHeads(hf, heads.numHeads, heads.numKvHeads) : 0;
      const e: Entry = { name, shape: [...t.ne].reverse(), t, heads: h };
      if (this.byName.has(name)) throw new KvsieveError(`${header.file}: tensors ${quoted(t.name)} and another both map to ${quoted(name)}`);
      this.byName.set(name, e);
      this.byGgufName.set(t.name, e);
    }
  }

  list(): TensorInfo[] {
    return [...this.byName.values()].filter((e) => e.name !== 'rope_freqs.weight').map((e) => this.infoOf(e));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    return this.infoOf(this.entry(name));
  }

  /** The ggml type name a tensor is stored in (HF or GGUF name). */
  ggmlType(name: string): string {
    return this.entry(name).t.type.name;
  }

  readF32(name: string): Float32Array {
    const e = this.entry(name);
    const file = this.header.file;
    const at = `${file}: tensor ${quoted(name)}`;
    if (this.closed) throw new KvsieveError(`${at} read after close()`);
    const type = e.t.type;
    if (!DEQUANTIZABLE.has(type.name)) {
      throw new KvsieveError(`${at} (${e.t.name}): ggml type ${type.name} (${type.id}) cannot be read as float32 (supported: ${[...DEQUANTIZABLE].join(', ')})`);
    }
    const count = numel(e.shape);
    let out: Float32Array;
    if (type.name === 'F32' || type.name === 'F16' || type.name === 'BF16') {
      out = readAsF32(this.fd, file, name, type.name as DType, e.shape, e.t.position, this.opts);
    } else {
      try {
        out = new Float32Array(count);
      } catch (err) {
        throw new KvsieveError(`${at}: cannot allocate ${count} floats (${(err as Error).message})`, { cause: err });
      }
      const nBlocks = count / type.blockSize;
      const perChunk = Math.max(1, Math.floor((this.opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / type.typeSize));
      const scratch = new Uint8Array(Math.min(perChunk, nBlocks) * type.typeSize);
      for (let b = 0; b < nBlocks; b += perChunk) {
        const k = Math.min(perChunk, nBlocks - b);
        const part = scratch.subarray(0, k * type.typeSize);
        readFully(this.fd, file, `tensor ${quoted(name)}`, part, e.t.position + b * type.typeSize, this.opts.maxReadBytes);
        dequantizeBlocks(type.name, part, k, out, b * type.blockSize);
      }
    }
    if (e.heads > 0) {
      const { headDim } = this.heads!;
      const cols = e.t.ne[0]!;
      this.checkHeadRows(e, count / cols);
      rowsGgufToHf(out, e.heads, headDim, cols);
    }
    return out;
  }

  storedType(name: string): string {
    return this.entry(name).t.type.name;
  }

  readStored(name: string): Uint8Array {
    return this.readRawTensor(name).data;
  }

  /** The stored bytes of a tensor (HF or GGUF name), q/k rows of llama-arch files in HF order. */
  readRawTensor(name: string): RawTensor {
    const e = this.entry(name);
    if (this.closed) throw new KvsieveError(`${this.header.file}: tensor ${quoted(name)} read after close()`);
    const data = new Uint8Array(e.t.byteLength);
    readFully(this.fd, this.header.file, `tensor ${quoted(name)}`, data, e.t.position, this.opts.maxReadBytes);
    const type = e.t.type;
    let out: Uint8Array = data;
    if (e.heads > 0) {
      const cols = e.t.ne[0]!;
      const rows = numel(e.shape) / cols;
      this.checkHeadRows(e, rows);
      out = rawRowsGgufToHf(data, e.heads, this.heads!.headDim, (cols / type.blockSize) * type.typeSize);
    }
    return {
      name: e.name,
      ggufName: e.t.name,
      type: type.name,
      typeId: type.id,
      shape: [...e.shape],
      blockSize: type.blockSize,
      blockBytes: type.typeSize,
      data: out,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.fd);
  }

  private checkHeadRows(e: Entry, rows: number): void {
    const want = e.heads * this.heads!.headDim;
    if (rows !== want) {
      throw new KvsieveError(
        `${this.header.file}: tensor ${quoted(e.t.name)} has ${rows} rows but ${e.heads} heads of ${this.heads!.headDim} imply ${want}`,
      );
    }
  }

  private infoOf(e: Entry): TensorInfo {
    const n = e.t.type.name;
    const dtype: DType = n === 'F16' || n === 'BF16' ? n : 'F32';
    return { name: e.name, dtype, shape: [...e.shape], file: this.header.file };
  }

  private entry(name: string): Entry {
    const e = this.byName.get(name) ?? this.byGgufName.get(name);
    if (!e) throw new KvsieveError(`${this.header.file}: no tensor named ${quoted(name)}`);
    return e;
  }
}

export interface GgufWeights {
  config: ModelConfig;
  tensors: GgufTensorSource;
  /** Every metadata value by key (see GgufValue for the JS types); `header.metadata` has the stored types too. */
  metadata: Map<string, unknown>;
  header: GgufHeader;
  arch: GgufArch;
}

/** Opens a GGUF file: header, metadata, config and tensors (no tokenizer). Closes the file on any error. */
export function openGgufWeights(file: string, options: ReadOptions = {}): GgufWeights {
  return ggufWeightsOf(openForReading(file), file, options);
}

/** A GGUF file's bytes in memory (a browser's fetch, a picked file) as openGgufWeights reads a file; `name` in errors. */
export function readGgufWeights(bytes: Uint8Array, name: string, options: ReadOptions = {}): GgufWeights {
  return ggufWeightsOf(bytes, name, options);
}

function ggufWeightsOf(fd: Handle, file: string, options: ReadOptions): GgufWeights {
  try {
    const header = parseGgufHeader(fd, file);
    const arch = ggufArchitecture(file, header.metadata);
    // config first needs rope_freqs (if any), read through a source without head info
    const plain = new GgufTensorSource(header, fd, arch, null, options);
    const byName = new Map(header.tensors.map((t) => [t.name, t]));
    const config = configFromGguf(file, header.metadata, {
      has: (n) => byName.has(n),
      ne: (n) => byName.get(n)?.ne,
      ropeFreqs: () => (byName.has('rope_freqs.weight') ? plain.readF32('rope_freqs.weight') : null),
    });
    const tensors = new GgufTensorSource(header, fd, arch, config, options);
    const metadata = new Map<string, unknown>([...header.metadata].map(([k, v]) => [k, v.value]));
    return { config, tensors, metadata, header, arch };
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
}
