/**
 * GGUF v3 writer: HF-named float32 tensors in, a llama.cpp-loadable file out. Matrices are stored in the
 * requested weight type (Q8_0 / Q4_0 fall back to F16 for rows that are not a multiple of 32 values, as
 * llama.cpp's converter does), 1-D tensors (norms, biases) stay F32. Q4_K_M is llama.cpp's mix: Q4_K for
 * the matrices (Q5_K_M: Q5_K), Q6_K for output.weight and for attn_v / ffn_down in the layers llama.cpp gives more bits
 * (the first and last eighth, and every third between); a matrix whose rows are not whole 256-value
 * superblocks falls back to Q8_0 (F16 when not whole 32-blocks either; llama.cpp would pick Q5_0/Q8_0). MXFP4_MOE is
 * llama.cpp's GPT-OSS type (file type 38): the stacked expert matrices (`*_exps`) MXFP4, the other matrices Q8_0.
 * `tensorType` overrides the choice per tensor (any matrix may be MXFP4, as llama.cpp accepts). The file is streamed tensor by tensor
 * through `<file>.tmp` and renamed into place, so memory holds one tensor and a crash leaves no partial file.
 */
import { KvsieveError } from '../core/errors.js';
import { yarnAmplitude, type ModelConfig } from '../core/model-config.js';
import { quantizeQ4_0 } from '../quant/q4_0.js';
import { quantizeQ8_0 } from '../quant/q8_0.js';
import { quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from '../quant/k-quants.js';
import { quantizeMXFP4 } from '../quant/mxfp4.js';
import { syntheticGpt2Vocab, tokenizerMetadata, type GgufTokenizerSpec } from './gguf-vocab.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../core/half.js';
import { numel, writeAll, writeAtomically } from './io.js';
import { configMetadata, ggufArchOf, GGUF_ARCHS, llama3RopeDivisors, type GgufArch } from './gguf-config.js';
import {
  GGML_TYPE_BY_NAME,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufValueType,
  ggmlTensorBytes,
  type GgmlTypeInfo,
  type GgufValue,
  type GgufValueTypeName,
} from './gguf-format.js';
import { hfToGgufName, permutedHeads, rawRowsHfToGguf, rowsHfToGguf } from './gguf-names.js';

export type GgufWeightType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_K_M' | 'Q5_K_M' | 'MXFP4_MOE';

/** The ggml types the writer quantises float data to (a `tensorType` answer). */
export type GgufTensorType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'MXFP4';

/**
 * One HF-named tensor; `data` may be a function called once when the tensor is written (any `dtype` is ignored).
 * `raw` instead stores already-quantised ggml blocks as they are (`data` is then ignored; rows in HF order, as readRawTensor gives them;
 * llama-arch q/k rows are reordered like float data).
 */
export interface GgufTensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array | (() => Float32Array);
  raw?: { type: string; data: Uint8Array };
}

export interface GgufWriteOptions {
  /** GGUF architecture; defaults to the config's (mistral -> llama). */
  arch?: GgufArch;
  config: ModelConfig;
  tensors: readonly GgufTensorToWrite[];
  weightType: GgufWeightType;
  /**
   * The ggml type of one matrix (by its GGUF name and row-major shape) instead of `weightType`'s choice;
   * undefined keeps that choice. Its rows must be whole blocks of the type.
   */
  tensorType?: (ggufName: string, shape: readonly number[]) => GgufTensorType | undefined;
  /** Left out, a synthetic byte-level vocabulary of config.vocabSize tokens is written (enough for llama.cpp to load). */
  tokenizer?: GgufTokenizerSpec;
  /** general.name (default "kvsieve"). */
  name?: string;
  /** Extra metadata entries (override the generated ones). */
  metadata?: Record<string, GgufValue>;
  /** general.alignment (default 32; a power of two). */
  alignment?: number;
}

/** llama_ftype numbers for general.file_type. */
const FILE_TYPE: Record<GgufWeightType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32, Q4_K_M: 15, Q5_K_M: 17, MXFP4_MOE: 38 };

/** Float32 -> ggml blocks, by type name. */
const QUANTIZERS: Record<string, (src: Float32Array, dst: Uint8Array, offset: number) => Uint8Array> = {
  Q8_0: quantizeQ8_0,
  Q4_0: quantizeQ4_0,
  Q4_K: quantizeQ4_K,
  Q5_K: quantizeQ5_K,
  Q6_K: quantizeQ6_K,
  MXFP4: quantizeMXFP4,
};

/** Growable little-endian byte buffer for the header. */
class ByteWriter {
  buf = Buffer.alloc(1 << 16);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf.writeUInt8(v, this.len);
    this.len += 1;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.len);
    this.len += 4;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.len);
    this.len += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.byteLength);
    this.buf.set(b, this.len);
    this.len += b.byteLength;
  }
  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(n);
    this.ensure(n);
    this.buf.write(s, this.len, 'utf8');
    this.len += n;
  }
  scalar(type: GgufValueTypeName, v: unknown, key: string): void {
    const bad = () => new KvsieveError(`GGUF metadata ${JSON.stringify(key)}: ${String(v)} is not a valid ${type}`);
    if (type === 'STRING') {
      if (typeof v !== 'string') throw bad();
      this.string(v);
      return;
    }
    if (type === 'BOOL') {
      if (typeof v !== 'boolean') throw bad();
      this.u8(v ? 1 : 0);
      return;
    }
    const size = { UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, UINT64: 8, INT64: 8, FLOAT64: 8 }[
      type as string
    ];
    if (size === undefined) throw bad();
    if (typeof v !== 'number' && typeof v !== 'bigint') throw bad();
    this.ensure(size);
    const b = this.buf;
    const o = this.len;
    try {
      switch (type) {
        case 'UINT8': b.writeUInt8(Number(v), o); break;
        case 'INT8': b.writeInt8(Number(v), o); break;
        case 'UINT16': b.writeUInt16LE(Number(v), o); break;
        case 'INT16': b.writeInt16LE(Number(v), o); break;
        case 'UINT32': b.writeUInt32LE(Number(v), o); break;
        case 'INT32': b.writeInt32LE(Number(v), o); break;
        case 'FLOAT32': b.writeFloatLE(Number(v), o); break;
        case 'FLOAT64': b.writeDoubleLE(Number(v), o); break;
        case 'UINT64': b.writeBigUInt64LE(BigInt(v), o); break;
        case 'INT64': b.writeBigInt64LE(BigInt(v), o); break;
      }
    } catch (e) {
      throw new KvsieveError(`GGUF metadata ${JSON.stringify(key)}: ${String(v)} does not fit ${type}`, { cause: e });
    }
    this.len += size;
  }
  value(key: string, v: GgufValue): void {
    this.u32(GgufValueType[v.type]);
    if (v.type !== 'ARRAY') {
      this.scalar(v.type, v.value, key);
      return;
    }
    const et = v.elementType;
    if (et === undefined || et === 'ARRAY') throw new KvsieveError(`GGUF metadata ${JSON.stringify(key)}: array needs a scalar elementType`);
    const items = v.value as ArrayLike<unknown>;
    if (items === null || typeof items !== 'object' || typeof items.length !== 'number') {
      throw new KvsieveError(`GGUF metadata ${JSON.stringify(key)}: array value must be array-like`);
    }
    this.u32(GgufValueType[et]);
    this.u64(items.length);
    for (let i = 0; i < items.length; i++) this.scalar(et, items[i], key);
  }
}

interface PlannedTensor {
  ggufName: string;
  hfName: string;
  ne: number[];
  type: GgmlTypeInfo;
  offset: number;
  byteLength: number;
  rows: number;
  cols: number;
  /** Heads whose rows are reordered for llama.cpp (llama arch q/k), or 0. */
  heads: number;
  data: Float32Array | (() => Float32Array);
  raw?: Uint8Array;
}

/**
 * Which ggml type a tensor of `shape` gets; Q4_K_M's and Q5_K_M's choice also reads its GGUF name `ggufName`, the
 * model's `layers` and `tied` (no output.weight): without them a matrix is Q4_K.
 */
function storageType(weightType: GgufWeightType, shape: number[], ggufName = '', layers = 0, tied = false): GgmlTypeInfo {
  const t = (name: string) => GGML_TYPE_BY_NAME.get(name)!;
  // vectors, and biases of any shape (GPT-OSS's stacked expert biases are [E, rows]), stay float32
  if (shape.length < 2 || weightType === 'F32' || ggufName.endsWith('.bias')) return t('F32');
  const cols = shape[shape.length - 1]!;
  if (weightType === 'Q8_0' || weightType === 'Q4_0') return cols % 32 === 0 ? t(weightType) : t('F16');
  if (weightType === 'MXFP4_MOE') return cols % 32 !== 0 ? t('F16') : /_exps\.weight$/.test(ggufName) ? t('MXFP4') : t('Q8_0');
  if (weightType === 'Q4_K_M' || weightType === 'Q5_K_M') {
    if (cols % 256 !== 0) return cols % 32 === 0 ? t('Q8_0') : t('F16');
    return t(q4KMType(ggufName, layers, tied, weightType === 'Q5_K_M' ? 'Q5_K' : 'Q4_K'));
  }
  return t(weightType);
}

/**
 * llama.cpp's Q4_K_M choice for one matrix: Q6_K for output.weight (token_embd.weight when the
 * embeddings are tied: it is the output then), and for attn_v / ffn_down of layer i when i < n/8,
 * i >= 7n/8 or (i - n/8) % 3 == 2 (its use_more_bits, integer division); Q4_K otherwise. Q5_K_M
 * makes the same choice with Q5_K (`base`) for Q4_K.
 */
export function q4KMType<B extends 'Q4_K' | 'Q5_K' = 'Q4_K'>(ggufName: string, layers: number, tied = false, base: B = 'Q4_K' as B): B | 'Q6_K' {
  if (ggufName === 'output.weight' || (tied && ggufName === 'token_embd.weight')) return 'Q6_K';
  const m = /^blk\.(\d+)\.(attn_v|ffn_down|ffn_down_exps)\.weight$/.exec(ggufName);
  if (!m) return base;
  const i = Number(m[1]);
  const eighth = Math.trunc(layers / 8);
  const more = i < eighth || i >= Math.trunc((7 * layers) / 8) || (i - eighth) % 3 === 2;
  return more ? 'Q6_K' : base;
}

/** Writes a GGUF v3 file (see the file comment). Throws a KvsieveError naming the file and tensor at fault. */
export function writeGguf(file: string, opts: GgufWriteOptions): void {
  const c = opts.config;
  const arch = opts.arch ?? ggufArchOf(c.architecture);
  if (!GGUF_ARCHS.includes(arch)) throw new KvsieveError(`${file}: unsupported GGUF architecture ${JSON.stringify(arch)}`);
  if (!(opts.weightType in FILE_TYPE)) throw new KvsieveError(`${file}: unsupported weight type ${JSON.stringify(opts.weightType)}`);
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new KvsieveError(`${file}: alignment ${alignment} is not a power of two`);
  }
  if (c.ropeScaling?.type === 'llama3' && arch !== 'llama') {
    throw new KvsieveError(`${file}: Llama 3 rope scaling can only be written for the llama architecture (llama.cpp reads rope_freqs only there)`);
  }

  checkWritable(file, arch, c);

  const plan: PlannedTensor[] = [];
  const seen = new Set<string>();
  /** storageType, or the caller's tensorType for a matrix. */
  const typeOf = (shape: number[], ggufName: string): GgmlTypeInfo => {
    const own = shape.length >= 2 ? opts.tensorType?.(ggufName, shape) : undefined;
    if (own === undefined) return storageType(opts.weightType, shape, ggufName, c.numLayers, c.tieWordEmbeddings);
    const t = GGML_TYPE_BY_NAME.get(own);
    if (!t || !(own in QUANTIZERS || own === 'F32' || own === 'F16' || own === 'BF16')) {
      throw new KvsieveError(`${file}: tensorType gives ${JSON.stringify(own)} for ${JSON.stringify(ggufName)}, not a type the writer quantises to`);
    }
    return t;
  };
  const add = (
    hfName: string,
    ggufName: string,
    shape: number[],
    type: GgmlTypeInfo,
    heads: number,
    data: PlannedTensor['data'],
    raw?: Uint8Array,
  ) => {
    const at = `${file}: tensor ${JSON.stringify(hfName)}`;
    if (seen.has(ggufName)) throw new KvsieveError(`${at}: given twice`);
    seen.add(ggufName);
    if (shape.length < 1 || shape.length > 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new KvsieveError(`${at}: shape ${JSON.stringify(shape)} must be 1 to 4 positive integers`);
    }
    if (raw === undefined && typeof data !== 'function' && data.length !== numel(shape)) {
      throw new KvsieveError(`${at}: data holds ${data.length} values but shape ${JSON.stringify(shape)} needs ${numel(shape)}`);
    }
    const ne = [...shape].reverse();
    const cols = ne[0]!;
    const rows = numel(shape) / cols;
    if (heads > 0 && rows !== heads * c.headDim) {
      throw new KvsieveError(`${at}: ${rows} rows, but ${heads} heads of ${c.headDim} imply ${heads * c.headDim}`);
    }
    if (cols % type.blockSize !== 0) throw new KvsieveError(`${at}: ${type.name} needs rows of a multiple of ${type.blockSize} values, got ${cols}`);
    const byteLength = ggmlTensorBytes(type, ne);
    if (raw !== undefined && raw.byteLength !== byteLength) {
      throw new KvsieveError(`${at}: raw ${type.name} data holds ${raw.byteLength} bytes but shape ${JSON.stringify(shape)} needs ${byteLength}`);
    }
    const p: PlannedTensor = { ggufName, hfName, ne, type, offset: 0, byteLength, rows, cols, heads, data };
    if (raw !== undefined) p.raw = raw;
    plan.push(p);
  };
  // HF's experts.{e}.{proj} tensors, gathered per (layer, proj) into llama.cpp's stacked [E, rows, cols]
  const expertParts = new Map<string, { e: number; t: GgufTensorToWrite }[]>();
  for (const t of opts.tensors) {
    if (t.name === 'lm_head.weight' && c.tieWordEmbeddings) continue; // llama.cpp ties by leaving output.weight out
    const expert = /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$/.exec(t.name);
    if (expert) {
      const key = `model.layers.${expert[1]}.mlp.experts.${expert[3]}.weight`;
      if (t.raw) throw new KvsieveError(`${file}: tensor ${JSON.stringify(t.name)}: experts are stacked from floats, not raw blocks`);
      expertParts.set(key, [...(expertParts.get(key) ?? []), { e: Number(expert[2]), t }]);
      continue;
    }
    const g = hfToGgufName(t.name, arch);
    if (g === null) throw new KvsieveError(`${file}: tensor ${JSON.stringify(t.name)} has no GGUF (llama.cpp) name`);
    // GGUF stores an RMSNorm's multiplier; HF Gemma stores it less 1.
    if (c.normPlusOne && /norm\.weight$/.test(t.name)) {
      if (t.raw) throw new KvsieveError(`${file}: tensor ${JSON.stringify(t.name)}: a norm of a checkpoint storing 1 + w must be given as floats`);
      const src = t.data;
      add(t.name, g, t.shape, typeOf(t.shape, g), 0, () => plusOne(typeof src === 'function' ? src() : src));
      continue;
    }
    const heads = arch === 'llama' ? permutedHeads(t.name, c.numHeads, c.numKvHeads) : 0;
    if (t.raw) {
      const type = GGML_TYPE_BY_NAME.get(t.raw.type);
      if (!type) throw new KvsieveError(`${file}: tensor ${JSON.stringify(t.name)}: unknown ggml type ${JSON.stringify(t.raw.type)}`);
      add(t.name, g, t.shape, type, heads, t.data, t.raw.data);
    } else {
      add(t.name, g, t.shape, typeOf(t.shape, g), heads, t.data);
    }
  }
  for (const [name, parts] of expertParts) {
    parts.sort((a, b) => a.e - b.e);
    const E = c.moe?.numExperts ?? 0;
    if (parts.length !== E || parts.some((p, i) => p.e !== i)) {
      throw new KvsieveError(`${file}: ${name.replace('.experts.', '.experts.{e}.')}: experts ${parts.map((p) => p.e).join(', ')} given, the config has ${E}`);
    }
    const shape = parts[0]!.t.shape;
    if (shape.length !== 2 || parts.some((p) => p.t.shape.join() !== shape.join())) throw new KvsieveError(`${file}: ${name}: the experts' shapes differ or are not 2-D`);
    const stacked = [E, shape[0]!, shape[1]!];
    const data = () => {
      const out = new Float32Array(numel(stacked));
      parts.forEach((p, e) => out.set(typeof p.t.data === 'function' ? p.t.data() : p.t.data, e * shape[0]! * shape[1]!));
      return out;
    };
    const g = hfToGgufName(name, arch)!;
    add(name, g, stacked, typeOf(stacked, g), 0, data);
  }
  if (!seen.has('token_embd.weight')) throw new KvsieveError(`${file}: no tensor "model.embed_tokens.weight" given`);
  if (c.ropeScaling?.type === 'llama3') {
    const divisors = llama3RopeDivisors(c.ropeScaling, c.ropeTheta, c.headDim);
    add('rope_freqs.weight', 'rope_freqs.weight', [c.headDim / 2], GGML_TYPE_BY_NAME.get('F32')!, 0, divisors);
  }
  let offset = 0;
  for (const p of plan) {
    p.offset = offset;
    offset += Math.ceil(p.byteLength / alignment) * alignment;
  }

  const md = new Map<string, GgufValue>();
  md.set('general.architecture', { type: 'STRING', value: arch });
  md.set('general.name', { type: 'STRING', value: opts.name ?? 'kvsieve' });
  md.set('general.file_type', { type: 'UINT32', value: FILE_TYPE[opts.weightType] });
  md.set('general.quantization_version', { type: 'UINT32', value: 2 });
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) md.set('general.alignment', { type: 'UINT32', value: alignment });
  for (const [k, v] of configMetadata(arch, c)) md.set(k, v);
  const tok = opts.tokenizer ?? syntheticGpt2Vocab(c.vocabSize, c);
  for (const [k, v] of tokenizerMetadata(tok, c)) md.set(k, v);
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(plan.length);
  w.u64(md.size);
  for (const [k, v] of md) {
    w.string(k);
    w.value(k, v);
  }
  for (const p of plan) {
    w.string(p.ggufName);
    w.u32(p.ne.length);
    for (const d of p.ne) w.u64(d);
    w.u32(p.type.id);
    w.u64(p.offset);
  }
  const dataStart = Math.ceil(w.len / alignment) * alignment;
  writeAtomically(file, (fd) => {
    writeAll(fd, w.buf.subarray(0, w.len), 0);
    if (dataStart > w.len) writeAll(fd, new Uint8Array(dataStart - w.len), w.len);
    for (const p of plan) writeTensor(file, fd, p, dataStart + p.offset, alignment);
  });
}

/** A copy of w with 1 added to every value. */
function plusOne(w: Float32Array): Float32Array {
  return w.map((v) => v + 1);
}

/**
 * Refuses a config that llama.cpp would run differently from the file's metadata: features its
 * architecture does not read (a sliding window outside Gemma 3, an embedding scale, GELU, sandwich
 * norms), or Gemma 3 settings it fixes itself (GGUF_ARCHS docs in gguf-config.ts).
 */
function checkWritable(file: string, arch: GgufArch, c: ModelConfig): void {
  const refuse = (what: string) => {
    throw new KvsieveError(`${file}: ${what} cannot be written for the GGUF architecture ${arch}: llama.cpp would run a different model`);
  };
  const sparse = arch === 'qwen3moe' || arch === 'gpt-oss';
  if (sparse ? !(c.moe && c.moe.normTopK && c.moe.layers.every(Boolean)) : c.moe !== undefined) {
    refuse(sparse ? 'experts on only some layers, or weights not renormalised over the chosen ones (norm_topk_prob),' : 'a mixture of experts');
  }
  const yarn = c.ropeScaling?.type === 'yarn' ? c.ropeScaling : null;
  if (yarn && (yarn.betaFast !== 32 || yarn.betaSlow !== 1 || !yarn.truncate || Math.abs(yarn.attentionFactor - yarnAmplitude(yarn.factor)) > 1e-6)) {
    refuse("YaRN other than llama.cpp's (beta_fast 32, beta_slow 1, truncate, the default attention factor)");
  }
  if (arch === 'gpt-oss') {
    const pattern = Array.from({ length: c.numLayers }, (_, l) => l % 2 === 0);
    if (c.hiddenAct !== 'swiglu-oai') refuse("a feed-forward other than GPT-OSS's clamped SwiGLU");
    if (c.slidingWindow !== undefined && !pattern.every((p, l) => p === (c.slidingLayers?.[l] ?? false))) refuse('sliding layers other than every other one');
    if (c.embedScale !== undefined || c.sandwichNorms || c.attentionScale !== undefined || c.ropeLocalTheta !== undefined || c.qkNorm) refuse("other architectures' features");
    return;
  }
  if (c.hiddenAct === 'swiglu-oai' || c.attentionSinks) refuse("GPT-OSS's features");
  const gemma = arch === 'gemma3';
  if (!gemma) {
    if (c.slidingWindow !== undefined) refuse('a sliding window');
    if (c.embedScale !== undefined || c.sandwichNorms || c.hiddenAct === 'gelu-tanh' || c.attentionScale !== undefined || c.ropeLocalTheta !== undefined) refuse("Gemma's features");
    return;
  }
  if (!c.sandwichNorms || c.hiddenAct !== 'gelu-tanh' || c.embedScale !== Math.fround(Math.sqrt(c.hiddenSize)) || !c.qkNorm) refuse('a model without Gemma 3\'s norms, GELU and embedding scale');
  const pattern = Array.from({ length: c.numLayers }, (_, l) => (l + 1) % 6 !== 0);
  if (c.slidingWindow !== undefined && !pattern.every((p, l) => p === (c.slidingLayers?.[l] ?? false))) refuse('sliding layers other than five of every six');
  if ((c.ropeLocalTheta ?? 10000) !== 10000) refuse(`a sliding layers' RoPE base of ${c.ropeLocalTheta} (llama.cpp uses 10000)`);
  const scale = 1 / Math.sqrt(c.numLayers === 62 ? c.hiddenSize / c.numHeads : c.headDim);
  if (c.attentionScale !== undefined && Math.abs(c.attentionScale - scale) > 1e-12 * scale) refuse(`an attention scale of ${c.attentionScale} (llama.cpp uses ${scale})`);
}

const CHUNK_VALUES = 1 << 18; // values converted per write (a multiple of every block size)

function writeTensor(file: string, fd: number, p: PlannedTensor, position: number, alignment: number): void {
  if (p.raw !== undefined) {
    const rowBytes = p.byteLength / p.rows;
    const bytes = p.heads > 0 ? rawRowsHfToGguf(p.raw, p.heads, p.rows / p.heads, rowBytes) : p.raw;
    writeAll(fd, bytes, position);
    const padded = Math.ceil(bytes.byteLength / alignment) * alignment;
    if (padded > bytes.byteLength) writeAll(fd, new Uint8Array(padded - bytes.byteLength), position + bytes.byteLength);
    return;
  }
  let data = typeof p.data === 'function' ? p.data() : p.data;
  const count = p.rows * p.cols;
  if (!(data instanceof Float32Array) || data.length !== count) {
    throw new KvsieveError(`${file}: tensor ${JSON.stringify(p.hfName)}: data must be a Float32Array of ${count} values`);
  }
  if (p.heads > 0) data = rowsHfToGguf(data, p.heads, p.rows / p.heads, p.cols); // a reordered copy: the caller's array is left alone
  let pos = position;
  const type = p.type.name;
  if (type === 'F32') {
    writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
    pos += data.byteLength;
  } else {
    // whole rows per chunk so block types never straddle a row
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / p.cols));
    const chunkValues = rowsPerChunk * p.cols;
    const scratch16 = type === 'F16' || type === 'BF16' ? new Uint16Array(Math.min(chunkValues, count)) : null;
    const scratchQ = scratch16 ? null : new Uint8Array(ggmlTensorBytes(p.type, [Math.min(chunkValues, count)]));
    for (let i = 0; i < count; i += chunkValues) {
      const k = Math.min(chunkValues, count - i);
      let bytes: Uint8Array;
      if (scratch16) {
        const part = scratch16.subarray(0, k);
        (type === 'F16' ? f32ArrayToF16 : f32ArrayToBf16)(data, part, i);
        bytes = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
      } else {
        const src = data.subarray(i, i + k);
        const n = ggmlTensorBytes(p.type, [k]);
        const quantize = QUANTIZERS[type];
        if (!quantize) throw new KvsieveError(`${file}: tensor ${JSON.stringify(p.hfName)}: cannot quantise to ${type}`);
        bytes = quantize(src, scratchQ!, 0).subarray(0, n);
      }
      writeAll(fd, bytes, pos);
      pos += bytes.byteLength;
    }
  }
  const padded = Math.ceil((pos - position) / alignment) * alignment;
  if (padded > pos - position) writeAll(fd, new Uint8Array(padded - (pos - position)), pos);
}


