/**
 * Tensor names of llama.cpp's GGUF files and their Hugging Face equivalents, and the q/k row order of
 * `llama`-architecture files.
 *
 * llama.cpp's HF -> GGUF converter reorders the q_proj / k_proj rows (and biases) of `llama` models (mistral
 * included) so that llama.cpp can rotate adjacent pairs (2i, 2i+1) of each head: within every head of d rows,
 * GGUF row 2i + j is HF row j * d/2 + i (j = 0, 1). qwen2 / qwen3 files keep the HF order (llama.cpp uses
 * the rotate-half "NEOX" RoPE for them). Reading undoes the reorder, writing applies it.
 */
import { permuteRowsForRotateHalf } from './llama2c.js';

/** Per-layer GGUF name suffixes -> HF suffixes (both after the layer prefix, without .weight/.bias). */
const LAYER_NAMES: [string, string][] = [
  ['attn_norm', 'input_layernorm'],
  ['attn_q', 'self_attn.q_proj'],
  ['attn_k', 'self_attn.k_proj'],
  ['attn_v', 'self_attn.v_proj'],
  ['attn_output', 'self_attn.o_proj'],
  ['attn_q_norm', 'self_attn.q_norm'],
  ['attn_k_norm', 'self_attn.k_norm'],
  ['ffn_norm', 'post_attention_layernorm'],
  ['ffn_gate', 'mlp.gate_proj'],
  ['ffn_up', 'mlp.up_proj'],
  ['ffn_down', 'mlp.down_proj'],
  // mixture of experts: the router, and each projection of every expert stacked in one [E, rows, cols]
  // tensor (HF stores experts.{e}.*_proj separately; the stacked name stands for all of them)
  ['ffn_gate_inp', 'mlp.gate'],
  ['ffn_gate_exps', 'mlp.experts.gate_proj'],
  ['ffn_up_exps', 'mlp.experts.up_proj'],
  ['ffn_down_exps', 'mlp.experts.down_proj'],
];
/** Gemma 3's four norms per layer: ffn_norm is the norm before the feed-forward, as in Llama, but HF names it differently. */
const GEMMA3_LAYER_NAMES: [string, string][] = [
  ...LAYER_NAMES.filter(([g]) => g !== 'ffn_norm'),
  ['post_attention_norm', 'post_attention_layernorm'],
  ['ffn_norm', 'pre_feedforward_layernorm'],
  ['post_ffw_norm', 'post_feedforward_layernorm'],
];
/**
 * GPT-OSS: its norm before the feed-forward is post_attention_norm in llama.cpp's files, the router
 * is HF's mlp.router, and attn_sinks.weight is HF's self_attn.sinks (a tensor without a .weight suffix,
 * see SINKS). The experts go by kvsieve's stacked names (formats/gpt-oss.ts makes them from HF's
 * interleaved gate_up_proj).
 */
const GPT_OSS_LAYER_NAMES: [string, string][] = [
  ...LAYER_NAMES.filter(([g]) => g !== 'ffn_norm' && g !== 'ffn_gate_inp'),
  ['post_attention_norm', 'post_attention_layernorm'],
  ['ffn_gate_inp', 'mlp.router'],
];
const SINKS = { gguf: /^blk\.(\d+)\.attn_sinks\.weight$/, hf: /^model\.layers\.(\d+)\.self_attn\.sinks$/ };
const GLOBAL_NAMES: [string, string][] = [
  ['token_embd', 'model.embed_tokens'],
  ['output_norm', 'model.norm'],
  ['output', 'lm_head'],
];
const layerMaps = (names: [string, string][]) => ({ g2h: new Map(names), h2g: new Map(names.map(([g, h]) => [h, g])) });
const LAYER_MAPS = layerMaps(LAYER_NAMES);
const GEMMA3_LAYER_MAPS = layerMaps(GEMMA3_LAYER_NAMES);
const GPT_OSS_LAYER_MAPS = layerMaps(GPT_OSS_LAYER_NAMES);
const mapsOf = (arch: string | undefined) => (arch === 'gemma3' ? GEMMA3_LAYER_MAPS : arch === 'gpt-oss' ? GPT_OSS_LAYER_MAPS : LAYER_MAPS);
const GLOBAL_G2H = new Map(GLOBAL_NAMES);
const GLOBAL_H2G = new Map(GLOBAL_NAMES.map(([g, h]) => [h, g]));

/** The HF name of a GGUF tensor name (of a file of architecture `arch`), or null when it has none (e.g. rope_freqs.weight). */
export function ggufToHfName(name: string, arch?: string): string | null {
  const sinks = arch === 'gpt-oss' ? SINKS.gguf.exec(name) : null;
  if (sinks) return `model.layers.${sinks[1]}.self_attn.sinks`;
  const m = /^(.*)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const [, stem, kind] = m as unknown as [string, string, string];
  const layer = /^blk\.(\d+)\.(.+)$/.exec(stem);
  if (layer) {
    const h = mapsOf(arch).g2h.get(layer[2]!);
    return h === undefined ? null : `model.layers.${layer[1]}.${h}.${kind}`;
  }
  const g = GLOBAL_G2H.get(stem);
  return g === undefined ? null : `${g}.${kind}`;
}

/** The GGUF name of an HF tensor name (for architecture `arch`), or null when llama.cpp has none for it. */
export function hfToGgufName(name: string, arch?: string): string | null {
  const sinks = arch === 'gpt-oss' ? SINKS.hf.exec(name) : null;
  if (sinks) return `blk.${sinks[1]}.attn_sinks.weight`;
  const m = /^(.*)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const [, stem, kind] = m as unknown as [string, string, string];
  const layer = /^model\.layers\.(\d+)\.(.+)$/.exec(stem);
  if (layer) {
    const g = mapsOf(arch).h2g.get(layer[2]!);
    return g === undefined ? null : `blk.${layer[1]}.${g}.${kind}`;
  }
  const g = GLOBAL_H2G.get(stem);
  return g === undefined ? null : `${g}.${kind}`;
}

/** For a llama-architecture file: the head count whose rows are reordered in this (HF-named) tensor, or 0. */
export function permutedHeads(hfName: string, numHeads: number, numKvHeads: number): number {
  if (/^model\.layers\.\d+\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return numHeads;
  if (/^model\.layers\.\d+\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return numKvHeads;
  return 0;
}

/** GGUF (interleaved) row order -> HF (rotate-half) row order, in place. */
export function rowsGgufToHf(w: Float32Array, nHeads: number, headDim: number, cols: number): void {
  permuteRowsForRotateHalf(w, nHeads, headDim, cols);
}

/** HF (rotate-half) row order -> GGUF (interleaved) row order, into a new array. */
export function rowsHfToGguf(w: Float32Array, nHeads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * headDim + j * half + i) * cols;
        out.set(w.subarray(from, from + cols), (h * headDim + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/**
 * The same reorder GGUF -> HF on raw rows of `rowBytes` bytes each (block-quantised rows stay whole):
 * HF row p of a head is GGUF row 2p (p < d/2) or 2(p - d/2) + 1.
 */
export function rawRowsGgufToHf(raw: Uint8Array, nHeads: number, headDim: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(raw.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let p = 0; p < headDim; p++) {
      const from = h * headDim + (p < half ? 2 * p : 2 * (p - half) + 1);
      out.set(raw.subarray(from * rowBytes, (from + 1) * rowBytes), (h * headDim + p) * rowBytes);
    }
  }
  return out;
}

/** The inverse of rawRowsGgufToHf: HF-ordered raw rows -> GGUF order. */
export function rawRowsHfToGguf(raw: Uint8Array, nHeads: number, headDim: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(raw.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let p = 0; p < headDim; p++) {
      const to = h * headDim + (p < half ? 2 * p : 2 * (p - half) + 1);
      out.set(raw.subarray((h * headDim + p) * rowBytes, (h * headDim + p + 1) * rowBytes), to * rowBytes);
    }
  }
  return out;
}
