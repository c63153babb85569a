// A tiny random GPT-OSS checkpoint in Hugging Face's layout (experts as transformers' GptOssExperts
// stores them: gate and up interleaved in one [E, D, 2F] tensor), and a float64 forward of it written
// here from the model's definition (transformers' GptOssForCausalLM), for the GPT-OSS tests.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../../src/formats/safetensors.js';
import { rng } from '../helpers.js';
import { randomCheckpoint } from './checkpoint.js';
import { attend, matvec, rmsnorm } from './naive.js';

/**
 * 4 layers (0 and 2 slide over 6 positions), 4 experts of width 32, 2 per token, YaRN over an original
 * context of 256 (head size 16: bands 0-2 partly kept, the rest interpolated by 32).
 */
export const GPT_OSS_CONFIG = {
  architectures: ['GptOssForCausalLM'],
  model_type: 'gpt_oss',
  hidden_size: 64,
  intermediate_size: 32,
  num_local_experts: 4,
  num_experts_per_tok: 2,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 300,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 150000,
  rope_scaling: { rope_type: 'yarn', factor: 32, beta_fast: 32, beta_slow: 1, original_max_position_embeddings: 256, truncate: false },
  sliding_window: 6,
  layer_types: ['sliding_attention', 'full_attention', 'sliding_attention', 'full_attention'],
  attention_bias: true,
  swiglu_limit: 7,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'float32',
};

export type GptOssConfig = typeof GPT_OSS_CONFIG;

/** Writes config.json and model.safetensors (float32, random weights from `seed`) into `dir`. */
export function writeTinyGptOss(dir: string, config: GptOssConfig = GPT_OSS_CONFIG, seed = 5): string {
  const c = config;
  const { add, write } = randomCheckpoint(seed);
  const D = c.hidden_size;
  const d = c.head_dim;
  const E = c.num_local_experts;
  const F = c.intermediate_size;
  add('model.embed_tokens.weight', [c.vocab_size, D], 0.5);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [D], 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, [c.num_attention_heads * d, D], 0.2);
    add(`${p}self_attn.q_proj.bias`, [c.num_attention_heads * d], 0.1);
    add(`${p}self_attn.k_proj.weight`, [c.num_key_value_heads * d, D], 0.2);
    add(`${p}self_attn.k_proj.bias`, [c.num_key_value_heads * d], 0.1);
    add(`${p}self_attn.v_proj.weight`, [c.num_key_value_heads * d, D], 0.1);
    add(`${p}self_attn.v_proj.bias`, [c.num_key_value_heads * d], 0.1);
    add(`${p}self_attn.o_proj.weight`, [D, c.num_attention_heads * d], 0.05);
    add(`${p}self_attn.o_proj.bias`, [D], 0.05);
    add(`${p}self_attn.sinks`, [c.num_attention_heads], 1); // comparable to the scores: the sinks take a real share
    add(`${p}post_attention_layernorm.weight`, [D], 0.1, 1);
    add(`${p}mlp.router.weight`, [E, D], 0.5); // decisive routing: no near-ties between experts
    add(`${p}mlp.router.bias`, [E], 0.2);
    add(`${p}mlp.experts.gate_up_proj`, [E, D, 2 * F], 0.5); // wide enough that the clamp at 7 bites now and then
    add(`${p}mlp.experts.gate_up_proj_bias`, [E, 2 * F], 0.5);
    add(`${p}mlp.experts.down_proj`, [E, F, D], 0.1);
    add(`${p}mlp.experts.down_proj_bias`, [E, D], 0.05);
  }
  add('model.norm.weight', [D], 0.1, 1);
  add('lm_head.weight', [c.vocab_size, D], 0.5);
  return write(dir, c);
}

/** YaRN's inverse frequencies of head size d (transformers' _compute_yarn_parameters), and its amplitude. */
export function yarn(c: GptOssConfig): { inv: number[]; amplitude: number } {
  const d = c.head_dim;
  const s = c.rope_scaling;
  const band = (rotations: number) => (d * Math.log(s.original_max_position_embeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(c.rope_theta));
  let low = band(s.beta_fast);
  let high = band(s.beta_slow);
  if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, d - 1)];
  if (low === high) high += 0.001;
  const inv = Array.from({ length: d / 2 }, (_, i) => {
    const extrapolation = 1 / c.rope_theta ** ((2 * i) / d);
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolationFactor = 1 - ramp;
    return (extrapolation / s.factor) * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
  });
  return { inv, amplitude: 0.1 * Math.log(s.factor) + 1 };
}

/** logits[p] after feeding ids[0..p], in float64, one token at a time over the full history. */
export function gptOssLogits(dir: string, ids: readonly number[], config?: GptOssConfig): number[][] {
  const c = config ?? (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as GptOssConfig);
  const src = openSafetensors(join(dir, 'model.safetensors'));
  const w = (name: string) => Float64Array.from(src.readF32(name));
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const Hkv = c.num_key_value_heads;
  const d = c.head_dim;
  const E = c.num_local_experts;
  const F = c.intermediate_size;
  const eps = c.rms_norm_eps;
  const { inv, amplitude } = yarn(c);
  const rotate = (v: Float64Array, heads: number, pos: number) => {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < d / 2; i++) {
        const a = pos * inv[i]!;
        const [cos, sin] = [amplitude * Math.cos(a), amplitude * Math.sin(a)];
        const [x0, x1] = [v[h * d + i]!, v[h * d + i + d / 2]!];
        v[h * d + i] = x0 * cos - x1 * sin;
        v[h * d + i + d / 2] = x1 * cos + x0 * sin;
      }
    }
  };
  const keys: Float64Array[][] = [];
  const values: Float64Array[][] = [];
  const out: number[][] = [];
  const embed = w('model.embed_tokens.weight');
  ids.forEach((id, pos) => {
    let x = embed.slice(id * D, (id + 1) * D);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      const h = rmsnorm(x.slice(), w(`${p}input_layernorm.weight`), eps);
      const q = matvec(w(`${p}self_attn.q_proj.weight`), h, H * d, w(`${p}self_attn.q_proj.bias`));
      const k = matvec(w(`${p}self_attn.k_proj.weight`), h, Hkv * d, w(`${p}self_attn.k_proj.bias`));
      rotate(q, H, pos);
      rotate(k, Hkv, pos);
      (keys[l] ??= []).push(k);
      (values[l] ??= []).push(matvec(w(`${p}self_attn.v_proj.weight`), h, Hkv * d, w(`${p}self_attn.v_proj.bias`)));
      const first = c.layer_types[l] === 'sliding_attention' ? Math.max(0, keys[l]!.length - c.sliding_window) : 0;
      const att = attend(q, keys[l]!, values[l]!, first, H, Hkv, d, 1 / Math.sqrt(d), w(`${p}self_attn.sinks`));
      const a = matvec(w(`${p}self_attn.o_proj.weight`), att, D, w(`${p}self_attn.o_proj.bias`));
      x = x.map((v, i) => v + a[i]!);
      const h2 = rmsnorm(x.slice(), w(`${p}post_attention_layernorm.weight`), eps);
      // the router's top k logits, weighted by their softmax
      const logits = matvec(w(`${p}mlp.router.weight`), h2, E, w(`${p}mlp.router.bias`));
      const top = Array.from(logits, (v, i) => [v, i] as const).sort((u, v) => v[0] - u[0]).slice(0, c.num_experts_per_tok);
      const m = top[0]![0];
      const z = top.reduce((s, [v]) => s + Math.exp(v - m), 0);
      const gateUp = w(`${p}mlp.experts.gate_up_proj`);
      const gateUpBias = w(`${p}mlp.experts.gate_up_proj_bias`);
      const down = w(`${p}mlp.experts.down_proj`);
      const downBias = w(`${p}mlp.experts.down_proj_bias`);
      const f = new Float64Array(D);
      for (const [v, e] of top) {
        // h2 @ gate_up_proj[e] + bias: gate at even columns, up at odd ones
        const gu = new Float64Array(2 * F);
        for (let j = 0; j < 2 * F; j++) {
          let s = gateUpBias[e * 2 * F + j]!;
          for (let i = 0; i < D; i++) s += h2[i]! * gateUp[(e * D + i) * 2 * F + j]!;
          gu[j] = s;
        }
        const act = new Float64Array(F);
        for (let j = 0; j < F; j++) {
          const g = Math.min(gu[2 * j]!, c.swiglu_limit);
          const u = Math.min(Math.max(gu[2 * j + 1]!, -c.swiglu_limit), c.swiglu_limit);
          act[j] = (u + 1) * g * (1 / (1 + Math.exp(-1.702 * g)));
        }
        const weight = Math.exp(v - m) / z;
        for (let o = 0; o < D; o++) {
          let s = downBias[e * D + o]!;
          for (let j = 0; j < F; j++) s += act[j]! * down[(e * F + j) * D + o]!;
          f[o]! += weight * s;
        }
      }
      x = x.map((v, i) => v + f[i]!);
    }
    out.push(Array.from(matvec(w('lm_head.weight'), rmsnorm(x.slice(), w('model.norm.weight'), eps), c.vocab_size)));
  });
  src.close();
  return out;
}

/** The E2M1 values of codes 0..15, written out (as OpenAI's reference lists them). */
const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/**
 * A GPT-OSS checkpoint whose experts are MXFP4 as OpenAI publishes them (`*_blocks` / `*_scales`, U8,
 * random codes and scales in [lo, hi]) in `mxfp4Dir`, and the same model with those experts decoded
 * here to floats in transformers' layout in `floatDir` (every other tensor copied from `base`).
 */
export function writeTinyGptOssMxfp4(base: string, mxfp4Dir: string, floatDir: string, seed = 7): void {
  const c = JSON.parse(readFileSync(join(base, 'config.json'), 'utf8')) as GptOssConfig;
  const src = openSafetensors(join(base, 'model.safetensors'));
  const r = rng(seed);
  const E = c.num_local_experts;
  const D = c.hidden_size;
  const F = c.intermediate_size;
  type T = { name: string; shape: number[]; dtype: 'F32' | 'U8'; data: Float32Array };
  const mx: T[] = [];
  const fl: T[] = [];
  for (const t of src.list()) {
    if (/mlp\.experts\.(gate_up_proj|down_proj)$/.test(t.name)) continue;
    const data = src.readF32(t.name);
    mx.push({ name: t.name, shape: t.shape, dtype: 'F32', data });
    fl.push({ name: t.name, shape: t.shape, dtype: 'F32', data });
  }
  /** Random blocks and scales for [E, R, C] weights; returns them and the weights [E, R, C] they decode to. */
  const quantised = (R: number, C: number, lo: number, hi: number) => {
    const nb = C / 32;
    const blocks = Float32Array.from({ length: E * R * nb * 16 }, () => Math.floor(r() * 256));
    const scales = Float32Array.from({ length: E * R * nb }, () => lo + Math.floor(r() * (hi - lo + 1)));
    const w = new Float64Array(E * R * C);
    for (let row = 0; row < E * R; row++) {
      for (let b = 0; b < nb; b++) {
        const s = 2 ** (scales[row * nb + b]! - 127);
        for (let j = 0; j < 16; j++) {
          const byte = blocks[(row * nb + b) * 16 + j]!;
          w[row * C + b * 32 + 2 * j] = FP4[byte & 15]! * s;
          w[row * C + b * 32 + 2 * j + 1] = FP4[byte >> 4]! * s;
        }
      }
    }
    return { blocks, scales, w, nb };
  };
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.mlp.experts.`;
    const gu = quantised(2 * F, D, 119, 124); // rows: gate f at 2f, up f at 2f + 1
    const dn = quantised(D, F, 115, 120);
    mx.push({ name: `${p}gate_up_proj_blocks`, shape: [E, 2 * F, gu.nb, 16], dtype: 'U8', data: gu.blocks });
    mx.push({ name: `${p}gate_up_proj_scales`, shape: [E, 2 * F, gu.nb], dtype: 'U8', data: gu.scales });
    mx.push({ name: `${p}down_proj_blocks`, shape: [E, D, dn.nb, 16], dtype: 'U8', data: dn.blocks });
    mx.push({ name: `${p}down_proj_scales`, shape: [E, D, dn.nb], dtype: 'U8', data: dn.scales });
    // transformers' float layout: gate_up_proj [E, D, 2F] = rows transposed; down_proj [E, F, D]
    const gateUp = new Float32Array(E * D * 2 * F);
    const down = new Float32Array(E * F * D);
    for (let e = 0; e < E; e++) {
      for (let row = 0; row < 2 * F; row++) for (let i = 0; i < D; i++) gateUp[(e * D + i) * 2 * F + row] = gu.w[(e * 2 * F + row) * D + i]!;
      for (let o = 0; o < D; o++) for (let f = 0; f < F; f++) down[(e * F + f) * D + o] = dn.w[(e * D + o) * F + f]!;
    }
    fl.push({ name: `${p}gate_up_proj`, shape: [E, D, 2 * F], dtype: 'F32', data: gateUp });
    fl.push({ name: `${p}down_proj`, shape: [E, F, D], dtype: 'F32', data: down });
  }
  src.close();
  for (const [dir, tensors] of [[mxfp4Dir, mx], [floatDir, fl]] as const) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c, null, 2));
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  }
}
