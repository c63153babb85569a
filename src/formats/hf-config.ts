/** Hugging Face config.json (and generation_config.json) as a ModelConfig. */
import { describeValue, quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { MAX_CONFIG_INT, yarnAmplitude, type Architecture, type ModelConfig, type MoeConfig, type RopeScaling } from '../core/model-config.js';

const KNOWN_TYPES: readonly string[] = ['llama', 'mistral', 'qwen2', 'qwen3', 'qwen3_moe', 'gemma3_text', 'gpt_oss'];

type Json = Record<string, unknown>;

/** A finite number, optionally within (min, max) or [min, max] bounds. */
interface Range {
  /** Smallest value allowed; `above` makes it exclusive. */
  min?: number;
  above?: boolean;
  /** Largest value allowed (exclusive with `below`). */
  max?: number;
  below?: boolean;
}

function rangeText(r: Range): string {
  const lo = r.min === undefined ? '' : r.above ? `greater than ${r.min}` : `at least ${r.min}`;
  const hi = r.max === undefined ? '' : r.below ? `less than ${r.max}` : `at most ${r.max}`;
  return [lo, hi].filter((x) => x !== '').join(' and ');
}

function num(json: Json, key: string, file: string, fallback?: number, range: Range = {}): number {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new KvsieveError(`${file}: missing field "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new KvsieveError(`${file}: field "${key}" must be a number, got ${describeValue(v)}`);
  }
  const { min, max } = range;
  const low = min !== undefined && (range.above ? v <= min : v < min);
  const high = max !== undefined && (range.below ? v >= max : v > max);
  if (low || high) throw new KvsieveError(`${file}: field "${key}" must be ${rangeText(range)}, got ${v}`);
  return v;
}

function posInt(json: Json, key: string, file: string, fallback?: number): number {
  const v = num(json, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0 || v > MAX_CONFIG_INT) {
    throw new KvsieveError(`${file}: field "${key}" must be a positive integer up to ${MAX_CONFIG_INT}, got ${v}`);
  }
  return v;
}

function bool(json: Json, key: string, file: string, fallback: boolean): boolean {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new KvsieveError(`${file}: field "${key}" must be true or false, got ${describeValue(v)}`);
  return v;
}

/** Token ids given as one id or a list (eos_token_id), each within the vocabulary. */
function idList(json: Json | null, key: string, file: string, vocabSize: number): number[] {
  const v = json?.[key];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new KvsieveError(`${file}: field "${key}" must be token ids below vocab_size ${vocabSize}, got ${describeValue(v)}`);
    }
  }
  return list as number[];
}

/**
 * Normalises a Hugging Face `config.json` (plus the optional `generation_config.json`).
 * Refuses unknown architectures and fields it would otherwise silently get wrong.
 */
export function parseHfConfig(json: Json, file = 'config.json', generation: Json | null = null, generationFile = 'generation_config.json'): ModelConfig {
  const modelType = json['model_type'];
  if (typeof modelType !== 'string') throw new KvsieveError(`${file}: missing field "model_type"`);
  if (!KNOWN_TYPES.includes(modelType)) {
    throw new KvsieveError(
      `${file}: unsupported model_type ${quoted(modelType, 40)} (supported: ${KNOWN_TYPES.join(', ')})`,
    );
  }
  // Gemma 3's text model (Gemma3ForCausalLM) is `gemma3_text`; `gemma3` is the image-text wrapper.
  const architecture = (modelType === 'gemma3_text' ? 'gemma3' : modelType) as Architecture;
  const gemma = architecture === 'gemma3';
  const gptOss = architecture === 'gpt_oss';

  const hiddenSize = posInt(json, 'hidden_size', file);
  const numHeads = posInt(json, 'num_attention_heads', file);
  const numKvHeads = posInt(json, 'num_key_value_heads', file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new KvsieveError(
      `${file}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  const headDimDefault = hiddenSize / numHeads;
  const headDim = posInt(json, 'head_dim', file, Number.isInteger(headDimDefault) ? headDimDefault : undefined);
  if (headDim % 2 !== 0) throw new KvsieveError(`${file}: head size ${headDim} must be even for RoPE`);

  const actKey = json['hidden_activation'] !== undefined && json['hidden_activation'] !== null ? 'hidden_activation' : 'hidden_act';
  const act = json[actKey] ?? 'silu';
  if (act !== 'silu' && act !== 'gelu_pytorch_tanh') {
    throw new KvsieveError(`${file}: unsupported ${actKey} ${describeValue(act, 40)} (supported: silu, gelu_pytorch_tanh)`);
  }
  // GPT-OSS's "silu" is its clamped SwiGLU, with a limit transformers reads and an alpha it fixes.
  if (gptOss && num(json, 'swiglu_limit', file, 7) !== 7) {
    throw new KvsieveError(`${file}: field "swiglu_limit" is ${describeValue(json['swiglu_limit'])}; kvsieve runs GPT-OSS's 7`);
  }
  // Soft-capping (Gemma 2) is not implemented: a value that is set would change the logits.
  for (const key of ['attn_logit_softcapping', 'final_logit_softcapping']) {
    if (json[key] !== undefined && json[key] !== null) throw new KvsieveError(`${file}: field "${key}" is set (${describeValue(json[key], 40)}); soft-capping is not supported`);
  }

  let ropeScaling: RopeScaling | null = null;
  let ropeLinearFactor: number | undefined;
  const rs = json['rope_scaling'];
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object' || Array.isArray(rs)) {
      throw new KvsieveError(`${file}: field "rope_scaling" must be an object or null, got ${describeValue(rs)}`);
    }
    const r = rs as Json;
    const type = r['rope_type'] ?? r['type'];
    const where = `${file} rope_scaling`;
    if (type === 'default') {
      ropeScaling = null;
    } else if (type === 'linear') {
      ropeLinearFactor = num(r, 'factor', where, undefined, { min: 1 });
    } else if (type === 'llama3') {
      // The band edges are orig/low and orig/high wavelengths; high must exceed low for the blend between them.
      const lowFreqFactor = num(r, 'low_freq_factor', where, undefined, { min: 0, above: true });
      ropeScaling = {
        type: 'llama3',
        factor: num(r, 'factor', where, undefined, { min: 1 }),
        lowFreqFactor,
        highFreqFactor: num(r, 'high_freq_factor', where, undefined, { min: lowFreqFactor, above: true }),
        originalMaxPositionEmbeddings: posInt(r, 'original_max_position_embeddings', where),
      };
    } else if (type === 'yarn') {
      const factor = num(r, 'factor', where, undefined, { min: 1 });
      // transformers' default amplitude: get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) when both are set
      const mscale = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
      const both = r['mscale'] != null && r['mscale_all_dim'] != null;
      const amplitude = both ? mscale(num(r, 'mscale', where)) / mscale(num(r, 'mscale_all_dim', where)) : yarnAmplitude(factor);
      ropeScaling = {
        type: 'yarn',
        factor,
        betaFast: num(r, 'beta_fast', where, 32, { min: 0, above: true }),
        betaSlow: num(r, 'beta_slow', where, 1, { min: 0, above: true }),
        originalMaxPositionEmbeddings: posInt(r, 'original_max_position_embeddings', where, posInt(json, 'max_position_embeddings', file, 2048)),
        truncate: bool(r, 'truncate', where, true),
        attentionFactor: num(r, 'attention_factor', where, amplitude, { min: 0, above: true }),
      };
    } else {
      throw new KvsieveError(`${file}: unsupported rope_scaling type ${describeValue(type, 40)} (supported: llama3, linear, yarn)`);
    }
  }

  const vocabSize = posInt(json, 'vocab_size', file);
  const attentionBias = bool(json, 'attention_bias', file, false);
  const eos = [...idList(json, 'eos_token_id', file, vocabSize), ...idList(generation, 'eos_token_id', generationFile, vocabSize)];
  const bos = json['bos_token_id'] != null ? idList(json, 'bos_token_id', file, vocabSize) : idList(generation, 'bos_token_id', generationFile, vocabSize);
  if (bos.length > 1) throw new KvsieveError(`${file}: field "bos_token_id" must be one token id, got ${describeValue(bos)}`);

  const numLayers = posInt(json, 'num_hidden_layers', file);
  const maxPositions = posInt(json, 'max_position_embeddings', file, 2048);
  const sliding = slidingAttention(json, file, architecture, numLayers, maxPositions);

  return {
    architecture,
    hiddenSize,
    intermediateSize: posInt(json, 'intermediate_size', file),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositions,
    // eps is added to a mean of squares: it must be positive (0 divides by zero on a zero row) and small.
    rmsNormEps: num(json, 'rms_norm_eps', file, 1e-6, { min: 0, above: true, max: 1, below: true }),
    // inv_freq = theta^(-2i/d): a base of 1 or less does not give decreasing frequencies (or any, at <= 0).
    ropeTheta: num(json, 'rope_theta', file, 10000, { min: 1, above: true }),
    ropeScaling,
    qkvBias: architecture === 'qwen2' || attentionBias,
    oBias: (architecture === 'llama' || gptOss) && attentionBias,
    mlpBias: architecture === 'llama' && bool(json, 'mlp_bias', file, false),
    qkNorm: architecture === 'qwen3' || architecture === 'qwen3_moe' || gemma,
    tieWordEmbeddings: bool(json, 'tie_word_embeddings', file, gemma),
    ...(sliding ? { slidingWindow: sliding.window, slidingLayers: sliding.layers } : {}),
    ...(ropeLinearFactor !== undefined && ropeLinearFactor !== 1 ? { ropeLinearFactor } : {}),
    ...(act === 'gelu_pytorch_tanh' ? { hiddenAct: 'gelu-tanh' as const } : {}),
    ...(architecture === 'qwen3_moe' ? { moe: moeConfig(json, file, numLayers) } : {}),
    ...(gptOss ? { hiddenAct: 'swiglu-oai' as const, attentionSinks: true, moe: gptOssExperts(json, file, numLayers) } : {}),
    ...(gemma
      ? {
          ropeLocalTheta: num(json, 'rope_local_base_freq', file, 10000, { min: 1, above: true }),
          // Gemma scales the embedding by sqrt(hidden_size) (as a float32, the way llama.cpp does).
          embedScale: Math.fround(Math.sqrt(hiddenSize)),
          sandwichNorms: true,
          attentionScale: 1 / Math.sqrt(num(json, 'query_pre_attn_scalar', file, headDim, { min: 0, above: true })),
          normPlusOne: true,
        }
      : {}),
    bosTokenId: bos[0] ?? null,
    eosTokenIds: [...new Set(eos)],
  };
}

/** Qwen3-MoE's experts: which layers are sparse (decoder_sparse_step, mlp_only_layers), how many experts, how wide. */
function moeConfig(json: Json, file: string, numLayers: number): MoeConfig {
  const numExperts = posInt(json, 'num_experts', file);
  const expertsPerToken = posInt(json, 'num_experts_per_tok', file);
  if (expertsPerToken > numExperts) throw new KvsieveError(`${file}: field "num_experts_per_tok" (${expertsPerToken}) is more than num_experts (${numExperts})`);
  const step = posInt(json, 'decoder_sparse_step', file, 1);
  const dense = json['mlp_only_layers'] ?? [];
  if (!Array.isArray(dense) || !dense.every((l) => Number.isInteger(l) && l >= 0 && l < numLayers)) {
    throw new KvsieveError(`${file}: field "mlp_only_layers" must list layer indices below ${numLayers}, got ${describeValue(dense)}`);
  }
  return {
    numExperts,
    expertsPerToken,
    expertFfn: posInt(json, 'moe_intermediate_size', file),
    normTopK: bool(json, 'norm_topk_prob', file, false),
    layers: Array.from({ length: numLayers }, (_, l) => !dense.includes(l) && (l + 1) % step === 0),
  };
}

/** GPT-OSS's experts: on every layer, intermediate_size wide, the router's chosen logits softmaxed; router and experts biased. */
function gptOssExperts(json: Json, file: string, numLayers: number): MoeConfig {
  const numExperts = posInt(json, 'num_local_experts', file);
  const expertsPerToken = posInt(json, 'num_experts_per_tok', file, json['experts_per_token'] != null ? posInt(json, 'experts_per_token', file) : undefined);
  if (expertsPerToken > numExperts) throw new KvsieveError(`${file}: field "num_experts_per_tok" (${expertsPerToken}) is more than num_local_experts (${numExperts})`);
  return {
    numExperts,
    expertsPerToken,
    expertFfn: posInt(json, 'intermediate_size', file),
    normTopK: true,
    routerBias: true,
    expertBias: true,
    layers: new Array<boolean>(numLayers).fill(true),
  };
}

/**
 * Which layers attend through a sliding window, as transformers decides it: an explicit `layer_types`
 * list ("sliding_attention" / "full_attention") when there is one; otherwise every layer of a Mistral
 * with a `sliding_window`, and for Qwen2/Qwen3 with `use_sliding_window` the layers from
 * `max_window_layers` on. Null when no layer slides (or the window covers the whole context).
 */
function slidingAttention(
  json: Json,
  file: string,
  architecture: Architecture,
  numLayers: number,
  maxPositions: number,
): { window: number; layers: boolean[] } | null {
  const types = json['layer_types'];
  let layers: boolean[];
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== numLayers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
      throw new KvsieveError(
        `${file}: field "layer_types" must list "sliding_attention" or "full_attention" for each of the ${numLayers} layers, got ${describeValue(types)}`,
      );
    }
    layers = types.map((t) => t === 'sliding_attention');
  } else if (architecture === 'mistral') {
    layers = new Array<boolean>(numLayers).fill(true);
  } else if (architecture === 'gpt_oss') {
    layers = Array.from({ length: numLayers }, (_, l) => l % 2 === 0);
  } else if (architecture === 'gemma3') {
    // Every `sliding_window_pattern`-th layer is global, the others local.
    const pattern = posInt(json, 'sliding_window_pattern', file, 6);
    layers = Array.from({ length: numLayers }, (_, l) => (l + 1) % pattern !== 0);
  } else if ((architecture === 'qwen2' || architecture === 'qwen3' || architecture === 'qwen3_moe') && bool(json, 'use_sliding_window', file, false)) {
    const from = num(json, 'max_window_layers', file, numLayers, { min: 0 });
    layers = Array.from({ length: numLayers }, (_, l) => l >= from);
  } else {
    return null;
  }
  const raw = json['sliding_window'];
  if (raw === undefined || raw === null) {
    if (types !== undefined && types !== null && layers.some(Boolean)) {
      throw new KvsieveError(`${file}: field "layer_types" lists sliding layers but "sliding_window" is not set`);
    }
    return null;
  }
  const window = posInt(json, 'sliding_window', file);
  if (window >= maxPositions || !layers.some(Boolean)) return null;
  return { window, layers };
}
