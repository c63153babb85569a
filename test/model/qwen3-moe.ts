// A tiny random Qwen3-MoE checkpoint in Hugging Face's layout, and a float64 forward of it written here
// from the model's definition (transformers' Qwen3MoeForCausalLM), for the mixture-of-experts tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { randomCheckpoint } from './checkpoint.js';
import { attend, matvec, rmsnorm, rope, silu } from './naive.js';

/** 8 experts of width 32, 2 per token, on every layer; weights renormalised over the chosen two. */
export const QWEN3_MOE_CONFIG = {
  architectures: ['Qwen3MoeForCausalLM'],
  model_type: 'qwen3_moe',
  hidden_size: 64,
  intermediate_size: 160,
  moe_intermediate_size: 32,
  num_experts: 8,
  num_experts_per_tok: 2,
  norm_topk_prob: true,
  decoder_sparse_step: 1,
  mlp_only_layers: [] as number[],
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 300,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'float32',
};

export type Qwen3MoeConfig = typeof QWEN3_MOE_CONFIG;

/** Writes config.json and model.safetensors (float32, random weights from `seed`) into `dir`. */
export function writeTinyQwen3Moe(dir: string, config: Qwen3MoeConfig = QWEN3_MOE_CONFIG, seed = 11): string {
  const c = config;
  const { add, write } = randomCheckpoint(seed);
  const D = c.hidden_size;
  const d = c.head_dim;
  add('model.embed_tokens.weight', [c.vocab_size, D], 0.5);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [D], 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, [c.num_attention_heads * d, D], 0.2);
    add(`${p}self_attn.k_proj.weight`, [c.num_key_value_heads * d, D], 0.2);
    add(`${p}self_attn.v_proj.weight`, [c.num_key_value_heads * d, D], 0.05);
    add(`${p}self_attn.o_proj.weight`, [D, c.num_attention_heads * d], 0.05);
    add(`${p}self_attn.q_norm.weight`, [d], 0.1, 1);
    add(`${p}self_attn.k_norm.weight`, [d], 0.1, 1);
    add(`${p}post_attention_layernorm.weight`, [D], 0.1, 1);
    if (c.mlp_only_layers.includes(l)) {
      add(`${p}mlp.gate_proj.weight`, [c.intermediate_size, D], 0.05);
      add(`${p}mlp.up_proj.weight`, [c.intermediate_size, D], 0.05);
      add(`${p}mlp.down_proj.weight`, [D, c.intermediate_size], 0.05);
    } else {
      add(`${p}mlp.gate.weight`, [c.num_experts, D], 0.5); // decisive routing: no near-ties between experts
      for (let e = 0; e < c.num_experts; e++) {
        add(`${p}mlp.experts.${e}.gate_proj.weight`, [c.moe_intermediate_size, D], 0.2);
        add(`${p}mlp.experts.${e}.up_proj.weight`, [c.moe_intermediate_size, D], 0.2);
        add(`${p}mlp.experts.${e}.down_proj.weight`, [D, c.moe_intermediate_size], 0.2);
      }
    }
  }
  add('model.norm.weight', [D], 0.1, 1);
  add('lm_head.weight', [c.vocab_size, D], 0.5);
  return write(dir, c);
}

/** logits[p] after feeding ids[0..p], in float64, one token at a time over the full history. */
export function qwen3MoeLogits(dir: string, ids: readonly number[]): number[][] {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Qwen3MoeConfig;
  const src = openSafetensors(join(dir, 'model.safetensors'));
  const w = (name: string) => Float64Array.from(src.readF32(name));
  const D = c.hidden_size;
  const H = c.num_attention_heads;
  const Hkv = c.num_key_value_heads;
  const d = c.head_dim;
  const eps = c.rms_norm_eps;
  const ffn = (p: string, h: Float64Array, F: number) => {
    const gate = matvec(w(`${p}gate_proj.weight`), h, F);
    const up = matvec(w(`${p}up_proj.weight`), h, F);
    return matvec(w(`${p}down_proj.weight`), gate.map((g, i) => silu(g) * up[i]!), D);
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
      const q = matvec(w(`${p}self_attn.q_proj.weight`), h, H * d);
      const k = matvec(w(`${p}self_attn.k_proj.weight`), h, Hkv * d);
      for (let g = 0; g < H; g++) rmsnorm(q, w(`${p}self_attn.q_norm.weight`), eps, false, g * d, d);
      for (let g = 0; g < Hkv; g++) rmsnorm(k, w(`${p}self_attn.k_norm.weight`), eps, false, g * d, d);
      rope(q, H, d, pos, c.rope_theta);
      rope(k, Hkv, d, pos, c.rope_theta);
      (keys[l] ??= []).push(k);
      (values[l] ??= []).push(matvec(w(`${p}self_attn.v_proj.weight`), h, Hkv * d));
      const att = attend(q, keys[l]!, values[l]!, 0, H, Hkv, d, 1 / Math.sqrt(d));
      const a = matvec(w(`${p}self_attn.o_proj.weight`), att, D);
      x = x.map((v, i) => v + a[i]!);
      const h2 = rmsnorm(x.slice(), w(`${p}post_attention_layernorm.weight`), eps);
      let f: Float64Array;
      if (c.mlp_only_layers.includes(l)) {
        f = ffn(`${p}mlp.`, h2, c.intermediate_size);
      } else {
        // softmax over the experts, the top k, renormalised (norm_topk_prob), their weighted sum
        const logits = matvec(w(`${p}mlp.gate.weight`), h2, c.num_experts);
        const m = Math.max(...logits);
        const e = Array.from(logits, (v) => Math.exp(v - m));
        const z = e.reduce((s, v) => s + v, 0);
        const probs = e.map((v) => v / z);
        const top = probs.map((pr, i) => [pr, i] as const).sort((u, v) => v[0] - u[0]).slice(0, c.num_experts_per_tok);
        const norm = c.norm_topk_prob ? top.reduce((s, [pr]) => s + pr, 0) : 1;
        f = new Float64Array(D);
        for (const [pr, i] of top) {
          const y = ffn(`${p}mlp.experts.${i}.`, h2, c.moe_intermediate_size);
          for (let j = 0; j < D; j++) f[j]! += (pr / norm) * y[j]!;
        }
      }
      x = x.map((v, i) => v + f[i]!);
    }
    out.push(Array.from(matvec(w('lm_head.weight'), rmsnorm(x.slice(), w('model.norm.weight'), eps), c.vocab_size)));
  });
  src.close();
  return out;
}
