/** Hugging Face config.json (and generation_config.json) as a ModelConfig. */
import { KvsieveError } from '../core/errors.js';
import type { Architecture, ModelConfig, RopeScaling } from '../core/model-config.js';

const KNOWN_TYPES: readonly string[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

type Json = Record<string, unknown>;

function num(json: Json, key: string, file: string, fallback?: number): number {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new KvsieveError(`${file}: missing field "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new KvsieveError(`${file}: field "${key}" must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function posInt(json: Json, key: string, file: string, fallback?: number): number {
  const v = num(json, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) {
    throw new KvsieveError(`${file}: field "${key}" must be a positive integer, got ${v}`);
  }
  return v;
}

function bool(json: Json, key: string, file: string, fallback: boolean): boolean {
  const v = json[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new KvsieveError(`${file}: field "${key}" must be true or false`);
  return v;
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/**
 * Normalises a Hugging Face `config.json` (plus the optional `generation_config.json`).
 * Refuses unknown architectures and fields it would otherwise silently get wrong.
 */
export function parseHfConfig(json: Json, file = 'config.json', generation: Json | null = null): ModelConfig {
  const modelType = json['model_type'];
  if (typeof modelType !== 'string') throw new KvsieveError(`${file}: missing field "model_type"`);
  if (!KNOWN_TYPES.includes(modelType)) {
    throw new KvsieveError(
      `${file}: unsupported model_type "${modelType}" (supported: ${KNOWN_TYPES.join(', ')})`,
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

  const act = json['hidden_act'] ?? 'silu';
  if (act !== 'silu') throw new KvsieveError(`${file}: unsupported hidden_act "${String(act)}" (only silu)`);

  // A sliding window that is really in force would change attention; refuse it rather than ignore it.
  const sliding = json['sliding_window'];
  const slidingInForce =
    typeof sliding === 'number' &&
    (architecture === 'mistral' || json['use_sliding_window'] === true);
  if (slidingInForce) {
    throw new KvsieveError(`${file}: sliding_window ${sliding} is set; sliding-window attention is not supported`);
  }

  let ropeScaling: RopeScaling | null = null;
  const rs = json['rope_scaling'];
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object') throw new KvsieveError(`${file}: field "rope_scaling" must be an object or null`);
    const r = rs as Json;
    const type = r['rope_type'] ?? r['type'];
    if (type === 'default') {
      ropeScaling = null;
    } else if (type === 'llama3') {
      ropeScaling = {
        type: 'llama3',
        factor: num(r, 'factor', `${file} rope_scaling`),
        lowFreqFactor: num(r, 'low_freq_factor', `${file} rope_scaling`),
        highFreqFactor: num(r, 'high_freq_factor', `${file} rope_scaling`),
        originalMaxPositionEmbeddings: posInt(r, 'original_max_position_embeddings', `${file} rope_scaling`),
      };
    } else {
      throw new KvsieveError(`${file}: unsupported rope_scaling type "${String(type)}" (supported: llama3)`);
    }
  }

  const attentionBias = bool(json, 'attention_bias', file, false);
  const eos = [...idList(json['eos_token_id']), ...idList(generation?.['eos_token_id'])];
  const bos = json['bos_token_id'] ?? generation?.['bos_token_id'];

  return {
    architecture,
    hiddenSize,
    intermediateSize: posInt(json, 'intermediate_size', file),
    numLayers: posInt(json, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(json, 'vocab_size', file),
    maxPositions: posInt(json, 'max_position_embeddings', file, 2048),
    rmsNormEps: num(json, 'rms_norm_eps', file, 1e-6),
    ropeTheta: num(json, 'rope_theta', file, 10000),
    ropeScaling,
    qkvBias: architecture === 'qwen2' || attentionBias,
    oBias: architecture === 'llama' && attentionBias,
    mlpBias: architecture === 'llama' && bool(json, 'mlp_bias', file, false),
    qkNorm: architecture === 'qwen3',
    tieWordEmbeddings: bool(json, 'tie_word_embeddings', file, false),
    bosTokenId: typeof bos === 'number' ? bos : null,
    eosTokenIds: [...new Set(eos)],
  };
}

