/** Hugging Face config.json (and generation_config.json) as a ModelConfig. */
import { describeValue, quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { MAX_CONFIG_INT, type Architecture, type ModelConfig, type RopeScaling } from '../core/model-config.js';

const KNOWN_TYPES: readonly string[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

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
  const architecture = modelType as Architecture;

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

  const act = json['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw new KvsieveError(`${file}: unsupported hidden_act ${describeValue(act, 40)} (only silu)`);

  // A sliding window that is really in force would change attention; refuse it rather than ignore it.
  const sliding = json['sliding_window'];
  if (sliding !== undefined && sliding !== null && typeof sliding !== 'number') {
    throw new KvsieveError(`${file}: field "sliding_window" must be a number or null, got ${describeValue(sliding)}`);
  }
  const slidingInForce =
    typeof sliding === 'number' &&
    (architecture === 'mistral' || json['use_sliding_window'] === true);
  if (slidingInForce) {
    throw new KvsieveError(`${file}: sliding_window ${sliding} is set; sliding-window attention is not supported`);
  }

  let ropeScaling: RopeScaling | null = null;
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
    } else {
      throw new KvsieveError(`${file}: unsupported rope_scaling type ${describeValue(type, 40)} (supported: llama3)`);
    }
  }

  const vocabSize = posInt(json, 'vocab_size', file);
  const attentionBias = bool(json, 'attention_bias', file, false);
  const eos = [...idList(json, 'eos_token_id', file, vocabSize), ...idList(generation, 'eos_token_id', generationFile, vocabSize)];
  const bos = json['bos_token_id'] != null ? idList(json, 'bos_token_id', file, vocabSize) : idList(generation, 'bos_token_id', generationFile, vocabSize);
  if (bos.length > 1) throw new KvsieveError(`${file}: field "bos_token_id" must be one token id, got ${describeValue(bos)}`);

  return {
    architecture,
    hiddenSize,
    intermediateSize: posInt(json, 'intermediate_size', file),
    numLayers: posInt(json, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositions: posInt(json, 'max_position_embeddings', file, 2048),
    // eps is added to a mean of squares: it must be positive (0 divides by zero on a zero row) and small.
    rmsNormEps: num(json, 'rms_norm_eps', file, 1e-6, { min: 0, above: true, max: 1, below: true }),
    // inv_freq = theta^(-2i/d): a base of 1 or less does not give decreasing frequencies (or any, at <= 0).
    ropeTheta: num(json, 'rope_theta', file, 10000, { min: 1, above: true }),
    ropeScaling,
    qkvBias: architecture === 'qwen2' || attentionBias,
    oBias: architecture === 'llama' && attentionBias,
    mlpBias: architecture === 'llama' && bool(json, 'mlp_bias', file, false),
    qkNorm: architecture === 'qwen3',
    tieWordEmbeddings: bool(json, 'tie_word_embeddings', file, false),
    bosTokenId: bos[0] ?? null,
    eosTokenIds: [...new Set(eos)],
  };
}
