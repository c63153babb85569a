// A tiny random Gemma 3 text checkpoint in Hugging Face's layout, and a float64 forward of it written
// here from the model's definition (transformers' Gemma3ForCausalLM), for the Gemma 3 tests.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import { rng } from '../helpers.js';
import { attend, geluTanh, matvec, rmsnorm, rope } from './naive.js';

/**
 * 7 layers so that layer 5 is the one global layer (every 6th), a window of 6, linear RoPE scaling 8 on
 * the global layer and base 10000 on the local ones, an untied lm_head. Norm weights are stored as HF
 * does (the multiplier less 1).
 */
export const GEMMA3_CONFIG = {
  architectures: ['Gemma3ForCausalLM'],
  model_type: 'gemma3_text',
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 7,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 300,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_local_base_freq: 10000,
  rope_scaling: { rope_type: 'linear', factor: 8 },
  query_pre_attn_scalar: 16,
  sliding_window: 6,
  sliding_window_pattern: 6,
  hidden_activation: 'gelu_pytorch_tanh',
  final_logit_softcapping: null,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  eos_token_id: 1,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
};

const LAYER_TENSORS = (D: number, F: number, qDim: number, kvDim: number, d: number) => [
  ['input_layernorm.weight', [D], 'norm'],
  ['self_attn.q_proj.weight', [qDim, D], 0.2],
  ['self_attn.k_proj.weight', [kvDim, D], 0.2],
  ['self_attn.v_proj.weight', [kvDim, D], 0.05],
  ['self_attn.o_proj.weight', [D, qDim], 0.05],
  ['self_attn.q_norm.weight', [d], 'norm'],
  ['self_attn.k_norm.weight', [d], 'norm'],
  ['post_attention_layernorm.weight', [D], 'norm'],
  ['pre_feedforward_layernorm.weight', [D], 'norm'],
  ['post_feedforward_layernorm.weight', [D], 'norm'],
  ['mlp.gate_proj.weight', [F, D], 0.05],
  ['mlp.up_proj.weight', [F, D], 0.05],
  ['mlp.down_proj.weight', [D, F], 0.05],
] as const;

/** Writes config.json and model.safetensors (float32, random weights from `seed`) into `dir`. */
export function writeTinyGemma3(dir: string, seed = 7): string {
  mkdirSync(dir, { recursive: true });
  const c = GEMMA3_CONFIG;
  const r = rng(seed);
  // Uniform with the given standard deviation; norms 0.1-std around 0 (a multiplier near 1).
  const rand = (n: number, std: number) => Float32Array.from({ length: n }, () => (2 * r() - 1) * std * Math.sqrt(3));
  const D = c.hidden_size;
  const d = c.head_dim;
  const tensors: { name: string; shape: number[]; dtype: 'F32'; data: Float32Array }[] = [];
  const add = (name: string, shape: readonly number[], std: number | 'norm') =>
    tensors.push({ name, shape: [...shape], dtype: 'F32', data: rand(shape.reduce((a, b) => a * b, 1), std === 'norm' ? 0.1 : std) });
  add('model.embed_tokens.weight', [c.vocab_size, D], 0.05);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    for (const [name, shape, std] of LAYER_TENSORS(D, c.intermediate_size, c.num_attention_heads * d, c.num_key_value_heads * d, d)) add(`model.layers.${l}.${name}`, shape, std);
  }
  add('model.norm.weight', [D], 'norm');
  // Untied, larger than the embedding: logits of a few units (few near-ties), and a residual stream
  // that the scaled embedding does not dominate (a tied tiny model greedily repeats its input token).
  add('lm_head.weight', [c.vocab_size, D], 0.5);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

/** logits[p] after feeding ids[0..p], in float64, one token at a time over the full history. */
export function gemma3Logits(dir: string, ids: readonly number[]): number[][] {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as typeof GEMMA3_CONFIG;
  const src = openSafetensors(join(dir, 'model.safetensors'));
  const w = (name: string) => Float64Array.from(src.readF32(name));
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const Hkv = c.num_key_value_heads;
  const d = c.head_dim;
  const F = c.intermediate_size;
  const global = (l: number) => (l + 1) % c.sliding_window_pattern === 0;
  const eps = c.rms_norm_eps;
  const layers = Array.from({ length: c.num_hidden_layers }, (_, l) => {
    const p = `model.layers.${l}.`;
    return Object.fromEntries(LAYER_TENSORS(D, F, H * d, Hkv * d, d).map(([name]) => [name, w(p + name)])) as Record<string, Float64Array>;
  });
  const embed = w('model.embed_tokens.weight');
  const norm = w('model.norm.weight');
  const head = w('lm_head.weight');
  src.close();
  const keys: Float64Array[][] = layers.map(() => []);
  const values: Float64Array[][] = layers.map(() => []);
  const out: number[][] = [];
  ids.forEach((id, pos) => {
    let x = embed.slice(id * D, (id + 1) * D).map((v) => v * Math.fround(Math.sqrt(D)));
    layers.forEach((ly, l) => {
      const h = rmsnorm(x.slice(), ly['input_layernorm.weight']!, eps, true);
      const q = matvec(ly['self_attn.q_proj.weight']!, h, H * d);
      const k = matvec(ly['self_attn.k_proj.weight']!, h, Hkv * d);
      for (let g = 0; g < H; g++) rmsnorm(q, ly['self_attn.q_norm.weight']!, eps, true, g * d, d);
      for (let g = 0; g < Hkv; g++) rmsnorm(k, ly['self_attn.k_norm.weight']!, eps, true, g * d, d);
      // global layers: rope_theta with linear scaling; local ones: their own base, unscaled
      const [base, factor] = global(l) ? [c.rope_theta, c.rope_scaling.factor] : [c.rope_local_base_freq, 1];
      rope(q, H, d, pos, base, factor);
      rope(k, Hkv, d, pos, base, factor);
      keys[l]!.push(k);
      values[l]!.push(matvec(ly['self_attn.v_proj.weight']!, h, Hkv * d));
      const first = global(l) ? 0 : Math.max(0, pos - c.sliding_window + 1);
      const att = attend(q, keys[l]!, values[l]!, first, H, Hkv, d, 1 / Math.sqrt(c.query_pre_attn_scalar));
      const a = rmsnorm(matvec(ly['self_attn.o_proj.weight']!, att, D), ly['post_attention_layernorm.weight']!, eps, true);
      x = x.map((v, i) => v + a[i]!);
      const h2 = rmsnorm(x.slice(), ly['pre_feedforward_layernorm.weight']!, eps, true);
      const gate = matvec(ly['mlp.gate_proj.weight']!, h2, F);
      const up = matvec(ly['mlp.up_proj.weight']!, h2, F);
      const f = rmsnorm(matvec(ly['mlp.down_proj.weight']!, gate.map((g, i) => geluTanh(g) * up[i]!), D), ly['post_feedforward_layernorm.weight']!, eps, true);
      x = x.map((v, i) => v + f[i]!);
    });
    out.push(Array.from(matvec(head, rmsnorm(x.slice(), norm, eps, true), c.vocab_size)));
  });
  return out;
}
