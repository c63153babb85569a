// A tiny random Gemma 3 text checkpoint in Hugging Face's layout, and a float64 forward of it written
// here from the model's definition (transformers' Gemma3ForCausalLM), for the Gemma 3 tests.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import { rng } from '../helpers.js';

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
  // Gemma's RMSNorm multiplies by (1 + w).
  const rmsnorm = (x: Float64Array, g: Float64Array, off = 0, n = x.length) => {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[off + i]! ** 2;
    const r = 1 / Math.sqrt(ss / n + c.rms_norm_eps);
    for (let i = 0; i < n; i++) x[off + i] = x[off + i]! * r * (1 + g[i]!);
    return x;
  };
  const matvec = (W: Float64Array, x: Float64Array, rows: number) => {
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let i = 0; i < x.length; i++) s += W[r * x.length + i]! * x[i]!;
      y[r] = s;
    }
    return y;
  };
  const global = (l: number) => (l + 1) % c.sliding_window_pattern === 0;
  const rope = (v: Float64Array, heads: number, pos: number, l: number) => {
    const [base, factor] = global(l) ? [c.rope_theta, c.rope_scaling.factor] : [c.rope_local_base_freq, 1];
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < d / 2; i++) {
        const a = (pos * base ** (-(2 * i) / d)) / factor;
        const [x0, x1] = [v[h * d + i]!, v[h * d + i + d / 2]!];
        v[h * d + i] = x0 * Math.cos(a) - x1 * Math.sin(a);
        v[h * d + i + d / 2] = x1 * Math.cos(a) + x0 * Math.sin(a);
      }
    }
  };
  const gelu = (g: number) => 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3)));
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
      const h = rmsnorm(x.slice(), ly['input_layernorm.weight']!);
      const q = matvec(ly['self_attn.q_proj.weight']!, h, H * d);
      const k = matvec(ly['self_attn.k_proj.weight']!, h, Hkv * d);
      for (let g = 0; g < H; g++) rmsnorm(q, ly['self_attn.q_norm.weight']!, g * d, d);
      for (let g = 0; g < Hkv; g++) rmsnorm(k, ly['self_attn.k_norm.weight']!, g * d, d);
      rope(q, H, pos, l);
      rope(k, Hkv, pos, l);
      keys[l]!.push(k);
      values[l]!.push(matvec(ly['self_attn.v_proj.weight']!, h, Hkv * d));
      const first = global(l) ? 0 : Math.max(0, pos - c.sliding_window + 1);
      const att = new Float64Array(H * d);
      for (let g = 0; g < H; g++) {
        const kv = Math.floor(g / (H / Hkv));
        const s: number[] = [];
        for (let j = first; j <= pos; j++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[g * d + i]! * keys[l]![j]![kv * d + i]!;
          s.push(dot / Math.sqrt(c.query_pre_attn_scalar));
        }
        const m = Math.max(...s);
        const e = s.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = first; j <= pos; j++) for (let i = 0; i < d; i++) att[g * d + i]! += (e[j - first]! / z) * values[l]![j]![kv * d + i]!;
      }
      const a = rmsnorm(matvec(ly['self_attn.o_proj.weight']!, att, D), ly['post_attention_layernorm.weight']!);
      x = x.map((v, i) => v + a[i]!);
      const h2 = rmsnorm(x.slice(), ly['pre_feedforward_layernorm.weight']!);
      const gate = matvec(ly['mlp.gate_proj.weight']!, h2, F);
      const up = matvec(ly['mlp.up_proj.weight']!, h2, F);
      const f = rmsnorm(matvec(ly['mlp.down_proj.weight']!, gate.map((g, i) => gelu(g) * up[i]!), D), ly['post_feedforward_layernorm.weight']!);
      x = x.map((v, i) => v + f[i]!);
    });
    out.push(Array.from(matvec(head, rmsnorm(x.slice(), norm), c.vocab_size)));
  });
  return out;
}
