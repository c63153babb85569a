/**
 * ModelConfig <-> GGUF metadata (`general.*`, `<arch>.*`, the special token ids of `tokenizer.ggml.*`).
 *
 * Llama 3 RoPE scaling: llama.cpp's converter stores it as a `rope_freqs.weight` tensor of per-frequency
 * divisors (1 for short wavelengths, `factor` for long ones, interpolated between) and writes no metadata for it.
 * kvsieve writes the four HF parameters as `kvsieve.rope_scaling.*` keys besides the tensor (llama.cpp ignores
 * them); a file without them gets parameters fitted to the divisors, which reproduce the same frequencies.
 */
import { describeValue, quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { MAX_CONFIG_INT, yarnAmplitude, type Architecture, type Llama3RopeScaling, type ModelConfig, type RopeScaling } from '../core/model-config.js';
import type { GgufValue } from './gguf-format.js';

/** GGUF architectures kvsieve runs (mistral models are written by llama.cpp as `llama`). */
export type GgufArch = 'llama' | 'qwen2' | 'qwen3' | 'qwen3moe' | 'gemma3' | 'gpt-oss';
export const GGUF_ARCHS: readonly GgufArch[] = ['llama', 'qwen2', 'qwen3', 'qwen3moe', 'gemma3', 'gpt-oss'];

/**
 * What llama.cpp fixes for Gemma 3 rather than reading from the file: every 6th layer global (the
 * others slide), the sliding layers' RoPE base 10000 (unscaled), the attention scale 1/sqrt(head size)
 * except for the 27B model (62 layers), whose is 1/sqrt(hidden / heads).
 */
const GEMMA3_SLIDING_PATTERN = 6;
const GEMMA3_LOCAL_ROPE_BASE = 10000;

/**
 * What llama.cpp fixes for GPT-OSS: every other layer slides, the first included (unless the file says
 * otherwise in attention.sliding_window_pattern); the clamped SwiGLU
 * (alpha 1.702, limit 7); the chosen experts weighted by a softmax over their router logits. And for
 * YaRN in any file: beta_fast 32 and beta_slow 1 (it reads them for no architecture kvsieve runs), the
 * correction range rounded outward to whole bands, the amplitude 0.1 ln(factor) + 1 (times
 * rope.scaling.attn_factor when set).
 */
const GPT_OSS_SLIDING_PATTERN = 2;
const YARN_BETA_FAST = 32;
const YARN_BETA_SLOW = 1;

/** The GGUF architecture of a config (mistral -> llama, qwen3_moe -> qwen3moe, gpt_oss -> gpt-oss). */
export function ggufArchOf(a: Architecture): GgufArch {
  return a === 'mistral' ? 'llama' : a === 'qwen3_moe' ? 'qwen3moe' : a === 'gpt_oss' ? 'gpt-oss' : a;
}

const PRIVATE_ROPE = 'kvsieve.rope_scaling';

/** The shortest decimal that rounds to the same float32 (1e-5 stored as f32 reads back as 1e-5). */
export function niceF32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const f = Math.fround(x);
  for (let p = 1; p <= 9; p++) {
    const v = Number(f.toPrecision(p));
    if (Math.fround(v) === f) return v;
  }
  return f;
}

class Meta {
  constructor(
    readonly file: string,
    readonly md: Map<string, GgufValue>,
  ) {}

  has(key: string): boolean {
    return this.md.has(key);
  }

  raw(key: string): unknown {
    return this.md.get(key)?.value;
  }

  num(key: string, fallback?: number): number {
    const e = this.md.get(key);
    if (e === undefined) {
      if (fallback !== undefined) return fallback;
      throw new KvsieveError(`${this.file}: missing metadata key ${quoted(key)}`);
    }
    if (e.type === 'ARRAY') {
      throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} is an array (per-layer values are not supported)`);
    }
    const v = e.value;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} must be a number, got ${e.type} ${describeValue(v)}`);
    }
    return e.type === 'FLOAT32' ? niceF32(v) : v;
  }

  /** A number greater than `min` (and, with `below`, less than it). */
  above(key: string, min: number, fallback?: number, below?: number): number {
    const v = this.num(key, fallback);
    if (!(v > min) || (below !== undefined && !(v < below))) {
      const range = below === undefined ? `greater than ${min}` : `greater than ${min} and less than ${below}`;
      throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} must be ${range}, got ${v}`);
    }
    return v;
  }

  posInt(key: string, fallback?: number): number {
    const v = this.num(key, fallback);
    if (!Number.isInteger(v) || v <= 0 || v > MAX_CONFIG_INT) {
      throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} must be a positive integer up to ${MAX_CONFIG_INT}, got ${v}`);
    }
    return v;
  }

  str(key: string): string | undefined {
    const e = this.md.get(key);
    if (e === undefined) return undefined;
    if (typeof e.value !== 'string') throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} must be a string, got ${e.type}`);
    return e.value;
  }

  optId(key: string): number | null {
    if (!this.md.has(key)) return null;
    const v = this.num(key);
    if (!Number.isInteger(v) || v < 0) throw new KvsieveError(`${this.file}: metadata key ${quoted(key)} must be a token id, got ${v}`);
    return v;
  }
}

/** What configFromGguf needs to know about the tensors. */
export interface GgufTensorFacts {
  has(ggufName: string): boolean;
  /** Dims as stored (innermost first), undefined when absent. */
  ne(ggufName: string): number[] | undefined;
  /** rope_freqs.weight as float32, when present. */
  ropeFreqs(): Float32Array | null;
}

/** Reads the architecture name and refuses the ones kvsieve does not run. */
export function ggufArchitecture(file: string, md: Map<string, GgufValue>): GgufArch {
  const arch = new Meta(file, md).str('general.architecture');
  if (arch === undefined) throw new KvsieveError(`${file}: missing metadata key "general.architecture"`);
  if (!(GGUF_ARCHS as readonly string[]).includes(arch)) {
    throw new KvsieveError(`${file}: unsupported GGUF architecture ${quoted(arch, 40)} (supported: ${GGUF_ARCHS.join(', ')})`);
  }
  return arch as GgufArch;
}

/** Builds the ModelConfig of a GGUF file from its metadata and tensor list. */
export function configFromGguf(file: string, md: Map<string, GgufValue>, t: GgufTensorFacts): ModelConfig {
  const arch = ggufArchitecture(file, md);
  const m = new Meta(file, md);
  const k = (s: string) => `${arch}.${s}`;
  const hiddenSize = m.posInt(k('embedding_length'));
  const numHeads = m.posInt(k('attention.head_count'));
  const numKvHeads = m.posInt(k('attention.head_count_kv'), numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new KvsieveError(`${file}: ${k('attention.head_count')} (${numHeads}) must be a multiple of ${k('attention.head_count_kv')} (${numKvHeads})`);
  }
  const defaultHeadDim = hiddenSize / numHeads;
  const headDim = m.posInt(k('attention.key_length'), Number.isInteger(defaultHeadDim) ? defaultHeadDim : undefined);
  const valueLength = m.posInt(k('attention.value_length'), headDim);
  if (valueLength !== headDim) {
    throw new KvsieveError(`${file}: ${k('attention.value_length')} ${valueLength} differs from the key length ${headDim} (not supported)`);
  }
  if (headDim % 2 !== 0) throw new KvsieveError(`${file}: head size ${headDim} must be even for RoPE`);
  const ropeDims = m.posInt(k('rope.dimension_count'), headDim);
  if (ropeDims !== headDim) {
    throw new KvsieveError(`${file}: ${k('rope.dimension_count')} ${ropeDims} rotates part of a ${headDim}-wide head (partial RoPE is not supported)`);
  }

  const embd = t.ne('token_embd.weight');
  if (!embd || embd.length !== 2) throw new KvsieveError(`${file}: missing 2-D tensor "token_embd.weight"`);
  const vocabSize = embd[1]!;
  if (m.has(k('vocab_size')) && m.posInt(k('vocab_size')) !== vocabSize) {
    throw new KvsieveError(`${file}: ${k('vocab_size')} ${m.num(k('vocab_size'))} differs from token_embd.weight's ${vocabSize} rows`);
  }

  // inv_freq = theta^(-2i/d): a base of 1 or less gives no decreasing frequencies (or none at all, at <= 0).
  const ropeTheta = m.above(k('rope.freq_base'), 1, 10000);
  let ropeScaling: RopeScaling | null = null;
  const scalingType = m.str(k('rope.scaling.type'));
  let ropeLinearFactor: number | undefined;
  if (scalingType !== undefined && scalingType !== 'none') {
    const factor = m.num(k('rope.scaling.factor'), 1);
    if (scalingType !== 'linear' && scalingType !== 'yarn') {
      throw new KvsieveError(`${file}: ${k('rope.scaling.type')} ${quoted(scalingType, 40)} is not supported (linear, yarn, and Llama 3 rope_freqs)`);
    }
    if (!(factor >= 1)) throw new KvsieveError(`${file}: metadata key ${quoted(k('rope.scaling.factor'))} must be at least 1, got ${factor}`);
    if (scalingType === 'yarn') {
      if (m.num(k('rope.scaling.yarn_log_multiplier'), 0) !== 0) {
        throw new KvsieveError(`${file}: metadata key ${quoted(k('rope.scaling.yarn_log_multiplier'))} is set (DeepSeek's YaRN amplitude is not supported)`);
      }
      ropeScaling = {
        type: 'yarn',
        factor,
        betaFast: YARN_BETA_FAST,
        betaSlow: YARN_BETA_SLOW,
        originalMaxPositionEmbeddings: m.posInt(k('rope.scaling.original_context_length'), m.posInt(k('context_length'), 2048)),
        truncate: true,
        attentionFactor: yarnAmplitude(factor) * m.above(k('rope.scaling.attn_factor'), 0, 1),
      };
    } else if (factor !== 1) {
      ropeLinearFactor = factor;
    }
  }
  const freqs = t.ropeFreqs();
  if (freqs) ropeScaling = llama3FromRopeFreqs(file, m, freqs, ropeTheta, headDim, m.posInt(k('context_length'), 2048));

  // Special ids outside the vocabulary are ignored, as llama.cpp does.
  const inVocab = (id: number | null): id is number => id !== null && id < vocabSize;
  const bosId = m.optId('tokenizer.ggml.bos_token_id');
  const bos = inVocab(bosId) ? bosId : null;
  const eos = ['eos', 'eot', 'eom'].map((s) => m.optId(`tokenizer.ggml.${s}_token_id`)).filter(inVocab);

  const numLayers = m.posInt(k('block_count'));
  const maxPositions = m.posInt(k('context_length'), 2048);
  const gemma = arch === 'gemma3' ? gemma3Features(m, k, numLayers, maxPositions, hiddenSize, numHeads, headDim) : {};
  const sparse = arch === 'qwen3moe' || arch === 'gpt-oss';
  // llama.cpp's qwen3moe and gpt-oss: every layer sparse, the chosen experts' weights renormalised
  // (gpt-oss: a softmax over the chosen logits, the same weights).
  const moe: Partial<ModelConfig> = sparse
    ? {
        moe: {
          numExperts: m.posInt(k('expert_count')),
          expertsPerToken: m.posInt(k('expert_used_count')),
          expertFfn: m.posInt(k('expert_feed_forward_length')),
          normTopK: true,
          ...(t.has('blk.0.ffn_gate_inp.bias') ? { routerBias: true } : {}),
          ...(t.has('blk.0.ffn_gate_exps.bias') ? { expertBias: true } : {}),
          layers: new Array<boolean>(numLayers).fill(true),
        },
      }
    : {};
  const gptOss: Partial<ModelConfig> = arch === 'gpt-oss' ? gptOssFeatures(m, k, numLayers, maxPositions, t.has('blk.0.attn_sinks.weight')) : {};

  return {
    architecture: arch === 'qwen3moe' ? 'qwen3_moe' : arch === 'gpt-oss' ? 'gpt_oss' : arch,
    hiddenSize,
    // a MoE file without dense layers may leave the dense width out
    intermediateSize: m.posInt(k('feed_forward_length'), sparse ? m.posInt(k('expert_feed_forward_length')) : undefined),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositions,
    // added to a mean of squares: positive (0 divides by zero on a zero row) and small
    rmsNormEps: m.above(k('attention.layer_norm_rms_epsilon'), 0, 1e-6, 1),
    ropeTheta,
    ropeScaling,
    qkvBias: t.has('blk.0.attn_q.bias'),
    oBias: t.has('blk.0.attn_output.bias'),
    mlpBias: t.has('blk.0.ffn_gate.bias') || t.has('blk.0.ffn_up.bias') || t.has('blk.0.ffn_down.bias'),
    qkNorm: t.has('blk.0.attn_q_norm.weight'),
    tieWordEmbeddings: !t.has('output.weight'),
    ...(ropeLinearFactor !== undefined ? { ropeLinearFactor } : {}),
    ...gemma,
    ...gptOss,
    ...moe,
    bosTokenId: bos,
    eosTokenIds: [...new Set(eos)],
  };
}

/** The ModelConfig fields of a Gemma 3 GGUF file (its norms are stored as their multipliers). */
function gemma3Features(m: Meta, k: (s: string) => string, numLayers: number, maxPositions: number, hiddenSize: number, numHeads: number, headDim: number): Partial<ModelConfig> {
  const window = m.posInt(k('attention.sliding_window'));
  const sliding = window < maxPositions ? { slidingWindow: window, slidingLayers: Array.from({ length: numLayers }, (_, l) => (l + 1) % GEMMA3_SLIDING_PATTERN !== 0) } : {};
  return {
    ...sliding,
    ropeLocalTheta: GEMMA3_LOCAL_ROPE_BASE,
    hiddenAct: 'gelu-tanh',
    embedScale: Math.fround(Math.sqrt(hiddenSize)),
    sandwichNorms: true,
    attentionScale: 1 / Math.sqrt(numLayers === 62 ? hiddenSize / numHeads : headDim),
  };
}

/**
 * Which layers slide, as llama.cpp reads it: the key as one flag per layer, or as a period n (layer l
 * slides when l % n < n - 1; 0: all), else the architecture's period `fallback`.
 */
function slidingPattern(m: Meta, key: string, numLayers: number, fallback: number): boolean[] {
  const v = m.raw(key);
  if (v === undefined) return Array.from({ length: numLayers }, (_, l) => l % fallback < fallback - 1);
  if (Array.isArray(v)) {
    if (v.length !== numLayers || !v.every((x) => typeof x === 'boolean')) {
      throw new KvsieveError(`${m.file}: metadata key ${quoted(key)} must be ${numLayers} booleans (one per layer), got ${describeValue(v)}`);
    }
    return [...(v as boolean[])];
  }
  const n = m.num(key);
  if (!Number.isInteger(n) || n < 0) throw new KvsieveError(`${m.file}: metadata key ${quoted(key)} must be a whole number, got ${n}`);
  return Array.from({ length: numLayers }, (_, l) => n === 0 || l % n < n - 1);
}

/** The ModelConfig fields of a GPT-OSS GGUF file that llama.cpp fixes (GPT_OSS_SLIDING_PATTERN). */
function gptOssFeatures(m: Meta, k: (s: string) => string, numLayers: number, maxPositions: number, sinks: boolean): Partial<ModelConfig> {
  const window = m.posInt(k('attention.sliding_window'));
  const layers = slidingPattern(m, k('attention.sliding_window_pattern'), numLayers, GPT_OSS_SLIDING_PATTERN);
  const sliding = window < maxPositions && layers.some(Boolean) ? { slidingWindow: window, slidingLayers: layers } : {};
  return { ...sliding, hiddenAct: 'swiglu-oai', ...(sinks ? { attentionSinks: true } : {}) };
}

/** llama.cpp's rope_freqs divisors for Llama 3 scaling: inv_freq[i] / divisor[i] is the scaled frequency. */
export function llama3RopeDivisors(s: Llama3RopeScaling, theta: number, headDim: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(half);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = 2 * Math.PI * Math.pow(theta, (2 * i) / headDim);
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = s.factor;
    else {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / s.factor + smooth);
    }
  }
  return out;
}

function divisorsMatch(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= 1e-5 * Math.max(1, Math.abs(v)));
}

/**
 * Llama 3 scaling parameters reproducing `freqs` (the rope_freqs divisors): the kvsieve.rope_scaling.* keys when
 * present, else fitted. Only the band edges relative to original_max_position_embeddings matter, so the fit
 * takes `original_max_position_embeddings` = context_length / factor. Null when every divisor is 1.
 */
function llama3FromRopeFreqs(file: string, m: Meta, freqs: Float32Array, theta: number, headDim: number, ctx: number): Llama3RopeScaling | null {
  if (freqs.length !== headDim / 2) {
    throw new KvsieveError(`${file}: tensor "rope_freqs.weight" has ${freqs.length} values; the head size ${headDim} needs ${headDim / 2}`);
  }
  let s: Llama3RopeScaling | null;
  if (m.has(`${PRIVATE_ROPE}.factor`)) {
    const lowFreqFactor = m.above(`${PRIVATE_ROPE}.low_freq_factor`, 0);
    s = {
      type: 'llama3',
      factor: m.above(`${PRIVATE_ROPE}.factor`, 0),
      lowFreqFactor,
      highFreqFactor: m.above(`${PRIVATE_ROPE}.high_freq_factor`, lowFreqFactor),
      originalMaxPositionEmbeddings: m.posInt(`${PRIVATE_ROPE}.original_max_position_embeddings`),
    };
  } else {
    s = fitLlama3(freqs, theta, headDim, ctx);
    if (s === null) {
      // No scaling fitted: the file's divisors must then all be 1, or its frequencies would be ignored.
      if (!freqs.every((f) => Math.abs(f - 1) <= 1e-5)) {
        throw new KvsieveError(`${file}: tensor "rope_freqs.weight" does not follow Llama 3 RoPE scaling (unsupported rope factors)`);
      }
      return null;
    }
  }
  if (!divisorsMatch(llama3RopeDivisors(s, theta, headDim), freqs)) {
    throw new KvsieveError(`${file}: tensor "rope_freqs.weight" does not follow Llama 3 RoPE scaling (unsupported rope factors)`);
  }
  return s;
}

/** Fits Llama 3 parameters to rope_freqs divisors (see llama3FromRopeFreqs); null when all are 1. */
export function fitLlama3(freqs: Float32Array, theta: number, headDim: number, contextLength: number): Llama3RopeScaling | null {
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b));
  let factor = 1;
  for (const f of freqs) factor = Math.max(factor, f);
  if (close(factor, 1)) return null;
  // u = 1 / wavelength, decreasing with i; the divisor is 1 above hi, `factor` below lo, interpolated between.
  const u = Array.from(freqs, (_, i) => 1 / (2 * Math.PI * Math.pow(theta, (2 * i) / headDim)));
  const keep: number[] = [];
  const scaled: number[] = [];
  const mid: { u: number; s: number }[] = [];
  freqs.forEach((f, i) => {
    if (close(f, 1)) keep.push(u[i]!);
    else if (close(f, factor)) scaled.push(u[i]!);
    else mid.push({ u: u[i]!, s: (1 / f - 1 / factor) / (1 - 1 / factor) });
  });
  const minKeep = keep.length ? Math.min(...keep) : Infinity;
  const maxScaled = scaled.length ? Math.max(...scaled) : 0;
  let lo: number;
  let hi: number;
  if (mid.length >= 2) {
    const a = mid[0]!;
    const b = mid[mid.length - 1]!;
    const slope = (a.s - b.s) / (a.u - b.u); // = 1 / (hi - lo)
    lo = a.u - a.s / slope;
    hi = lo + 1 / slope;
  } else if (mid.length === 1) {
    // one interpolated point: put lo halfway between it and the next scaled one, hi where its smooth value says
    const p = mid[0]!;
    lo = scaled.length ? (maxScaled + p.u) / 2 : p.u / 2;
    hi = lo + (p.u - lo) / p.s;
  } else {
    const top = Number.isFinite(minKeep) ? minKeep : 2 * maxScaled;
    lo = maxScaled + (top - maxScaled) / 3;
    hi = maxScaled + (2 * (top - maxScaled)) / 3;
  }
  const orig = Math.max(1, Math.round(contextLength / factor));
  return { type: 'llama3', factor, lowFreqFactor: lo * orig, highFreqFactor: hi * orig, originalMaxPositionEmbeddings: orig };
}

/** Metadata entries describing `c` for architecture `arch` (general.* except name and file_type, <arch>.*, token ids). */
export function configMetadata(arch: GgufArch, c: ModelConfig): [string, GgufValue][] {
  const u32 = (value: number): GgufValue => ({ type: 'UINT32', value });
  const f32 = (value: number): GgufValue => ({ type: 'FLOAT32', value });
  const out: [string, GgufValue][] = [
    [`${arch}.context_length`, u32(c.maxPositions)],
    [`${arch}.embedding_length`, u32(c.hiddenSize)],
    [`${arch}.block_count`, u32(c.numLayers)],
    [`${arch}.feed_forward_length`, u32(c.intermediateSize)],
    [`${arch}.attention.head_count`, u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(c.numKvHeads)],
    [`${arch}.attention.key_length`, u32(c.headDim)],
    [`${arch}.attention.value_length`, u32(c.headDim)],
    [`${arch}.rope.dimension_count`, u32(c.headDim)],
    [`${arch}.rope.freq_base`, f32(c.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps)],
    [`${arch}.vocab_size`, u32(c.vocabSize)],
  ];
  if (c.ropeScaling?.type === 'yarn') {
    const s = c.ropeScaling;
    out.push(
      [`${arch}.rope.scaling.type`, { type: 'STRING', value: 'yarn' }],
      [`${arch}.rope.scaling.factor`, f32(s.factor)],
      [`${arch}.rope.scaling.original_context_length`, u32(s.originalMaxPositionEmbeddings)],
    );
  } else if (c.ropeScaling) {
    const s = c.ropeScaling;
    out.push(
      [`${PRIVATE_ROPE}.factor`, f32(s.factor)],
      [`${PRIVATE_ROPE}.low_freq_factor`, f32(s.lowFreqFactor)],
      [`${PRIVATE_ROPE}.high_freq_factor`, f32(s.highFreqFactor)],
      [`${PRIVATE_ROPE}.original_max_position_embeddings`, u32(s.originalMaxPositionEmbeddings)],
    );
  }
  if (c.ropeLinearFactor !== undefined) {
    out.push([`${arch}.rope.scaling.type`, { type: 'STRING', value: 'linear' }], [`${arch}.rope.scaling.factor`, f32(c.ropeLinearFactor)]);
  }
  if (c.moe) {
    out.push(
      [`${arch}.expert_count`, u32(c.moe.numExperts)],
      [`${arch}.expert_used_count`, u32(c.moe.expertsPerToken)],
      [`${arch}.expert_feed_forward_length`, u32(c.moe.expertFfn)],
    );
  }
  if (arch === 'gemma3' || arch === 'gpt-oss') out.push([`${arch}.attention.sliding_window`, u32(c.slidingWindow ?? c.maxPositions)]);
  if (c.bosTokenId !== null) out.push(['tokenizer.ggml.bos_token_id', u32(c.bosTokenId)]);
  const [eos, eot, eom] = c.eosTokenIds;
  if (eos !== undefined) out.push(['tokenizer.ggml.eos_token_id', u32(eos)]);
  if (eot !== undefined) out.push(['tokenizer.ggml.eot_token_id', u32(eot)]);
  if (eom !== undefined) out.push(['tokenizer.ggml.eom_token_id', u32(eom)]);
  return out;
}
