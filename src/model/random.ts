import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Random } from '../core/random.js';
import { parseHfConfig } from '../formats/hf-config.js';
import { type ModelConfig } from '../core/model-config.js';
import { writeSafetensors } from '../formats/safetensors.js';
import type { DType } from '../formats/tensors.js';

/** config.json fields of published model shapes, for benchmarks with random weights. */
export const MODEL_SHAPES = {
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    use_sliding_window: false,
    bos_token_id: 151643,
    eos_token_id: 151645,
  },
  'r1-distill-qwen-1.5b': {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_size: 1536,
    intermediate_size: 8960,
    num_hidden_layers: 28,
    num_attention_heads: 12,
    num_key_value_heads: 2,
    vocab_size: 151936,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    use_sliding_window: false,
    bos_token_id: 151646,
    eos_token_id: 151643,
  },
  'gpt-oss-20b': {
    architectures: ['GptOssForCausalLM'],
    model_type: 'gpt_oss',
    hidden_size: 2880,
    intermediate_size: 2880,
    num_local_experts: 32,
    num_experts_per_tok: 4,
    num_hidden_layers: 24,
    num_attention_heads: 64,
    num_key_value_heads: 8,
    head_dim: 64,
    vocab_size: 201088,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-5,
    rope_theta: 150000,
    // truncate as llama.cpp does (openai's config says false): the same file then runs the same in both
    rope_scaling: { rope_type: 'yarn', factor: 32, beta_fast: 32, beta_slow: 1, original_max_position_embeddings: 4096, truncate: true },
    sliding_window: 128,
    attention_bias: true,
    swiglu_limit: 7,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    bos_token_id: 199998,
    eos_token_id: 200002,
  },
} as const;

export type ModelShape = keyof typeof MODEL_SHAPES;

/** One tensor of a random model: Hugging Face name, shape, and data produced on demand. */
export interface RandomTensor {
  name: string;
  shape: number[];
  data: () => Float32Array;
}

/**
 * The tensors of a random-weight model of `shape` (uniform; std 0.02 for matrices and embeddings,
 * norms 1 + std 0.1, biases std 0.1), in a fixed order; each tensor's values are drawn when its
 * `data` is called, so a writer holds one tensor at a time. Call `data` in order for reproducible values.
 */
export function randomModelTensors(shape: ModelShape, seed = 1): { config: ModelConfig; tensors: RandomTensor[] } {
  const config = parseHfConfig(MODEL_SHAPES[shape] as unknown as Record<string, unknown>, `shape ${shape}`);
  const rnd = new Random(seed);
  const uniform = (n: number, std: number, mean = 0) => () => {
    const a = std * Math.sqrt(3);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + (2 * rnd.next() - 1) * a;
    return out;
  };
  const D = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const F = config.intermediateSize;
  const V = config.vocabSize;
  const tensors: RandomTensor[] = [];
  const add = (name: string, dims: number[], std: number, mean = 0) =>
    tensors.push({ name, shape: dims, data: uniform(dims.reduce((a, b) => a * b, 1), std, mean) });
  add('model.embed_tokens.weight', [V, D], 0.02);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [D], 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, [qDim, D], 0.02);
    if (config.qkvBias) add(`${p}self_attn.q_proj.bias`, [qDim], 0.1);
    add(`${p}self_attn.k_proj.weight`, [kvDim, D], 0.02);
    if (config.qkvBias) add(`${p}self_attn.k_proj.bias`, [kvDim], 0.1);
    add(`${p}self_attn.v_proj.weight`, [kvDim, D], 0.02);
    if (config.qkvBias) add(`${p}self_attn.v_proj.bias`, [kvDim], 0.1);
    add(`${p}self_attn.o_proj.weight`, [D, qDim], 0.02);
    if (config.oBias) add(`${p}self_attn.o_proj.bias`, [D], 0.1);
    if (config.attentionSinks) add(`${p}self_attn.sinks`, [config.numHeads], 1);
    add(`${p}post_attention_layernorm.weight`, [D], 0.1, 1);
    const moe = config.moe?.layers[l] ? config.moe : null;
    if (moe) {
      // the experts stacked per projection (formats/gpt-oss.ts), as GGUF stores them
      const [E, Fe] = [moe.numExperts, moe.expertFfn];
      const router = config.architecture === 'gpt_oss' ? 'router' : 'gate';
      add(`${p}mlp.${router}.weight`, [E, D], 0.02);
      if (moe.routerBias) add(`${p}mlp.${router}.bias`, [E], 0.1);
      add(`${p}mlp.experts.gate_proj.weight`, [E, Fe, D], 0.02);
      add(`${p}mlp.experts.up_proj.weight`, [E, Fe, D], 0.02);
      add(`${p}mlp.experts.down_proj.weight`, [E, D, Fe], 0.02);
      if (moe.expertBias) {
        add(`${p}mlp.experts.gate_proj.bias`, [E, Fe], 0.1);
        add(`${p}mlp.experts.up_proj.bias`, [E, Fe], 0.1);
        add(`${p}mlp.experts.down_proj.bias`, [E, D], 0.1);
      }
    } else {
      add(`${p}mlp.gate_proj.weight`, [F, D], 0.02);
      add(`${p}mlp.up_proj.weight`, [F, D], 0.02);
      add(`${p}mlp.down_proj.weight`, [D, F], 0.02);
    }
  }
  add('model.norm.weight', [D], 0.1, 1);
  if (!config.tieWordEmbeddings) add('lm_head.weight', [V, D], 0.02);
  return { config, tensors };
}

/**
 * Writes a Hugging Face checkpoint with the given shape and random weights (`randomModelTensors`)
 * into `dir`, tensor by tensor so memory stays at one tensor. Returns `dir`.
 * An existing complete checkpoint there is reused.
 */
export function writeRandomModel(dir: string, shape: ModelShape, dtype: DType = 'BF16', seed = 1): string {
  if (existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'config.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  const { tensors } = randomModelTensors(shape, seed);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...MODEL_SHAPES[shape], torch_dtype: dtype.toLowerCase() }, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors.map((t) => ({ ...t, dtype })), { format: 'pt' });
  return dir;
}
