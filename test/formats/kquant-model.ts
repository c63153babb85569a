// A tiny random llama whose matrices are whole K-quant superblocks (hidden 256, 8 layers so that the
// Q4_K_M mix holds both Q4_K and Q6_K layers), for the K-quant GGUF tests and the llama.cpp parity test.
import type { ModelConfig } from '../../src/core/model-config.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import type { GgufTensorToWrite } from '../../src/formats/gguf.js';
import { writeGguf } from '../../src/formats/gguf-write.js';
import { join } from 'node:path';
import { rng } from '../helpers.js';

/** The tiny model written as `dir`/tiny-Q4_K_M.gguf (Q4_K and Q6_K matrices); its path. */
export function writeTinyQ4KM(dir: string): string {
  const { config, tensors } = tinyQ4KMModel({});
  const file = join(dir, 'tiny-Q4_K_M.gguf');
  writeGguf(file, { config, tensors, weightType: 'Q4_K_M' });
  return file;
}

export function tinyQ4KMModel(o: { intermediate?: number; seed?: number }): { config: ModelConfig; tensors: GgufTensorToWrite[] } {
  const hf = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 256,
    intermediate_size: o.intermediate ?? 512,
    num_hidden_layers: 8,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 512,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
  };
  const config = parseHfConfig(hf, 'tiny K-quant llama');
  const r = rng(o.seed ?? 7);
  // Uniform values of standard deviation `std` (mean `mean`): weights ~ 1/sqrt(cols), so activations stay
  // of order one and the logits spread out (clear greedy choices).
  const uniform = (n: number, std: number, mean = 0) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + (2 * r() - 1) * std * Math.sqrt(3);
    return a;
  };
  const D = config.hiddenSize;
  const F = config.intermediateSize;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const tensors: GgufTensorToWrite[] = [];
  const matrix = (name: string, rows: number, cols: number, std = 0.5 / Math.sqrt(cols)) =>
    tensors.push({ name, shape: [rows, cols], data: uniform(rows * cols, std) });
  const vector = (name: string, n: number) => tensors.push({ name, shape: [n], data: uniform(n, 0.1, 1) });
  matrix('model.embed_tokens.weight', config.vocabSize, D, 1);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`;
    vector(`${p}input_layernorm.weight`, D);
    matrix(`${p}self_attn.q_proj.weight`, qDim, D);
    matrix(`${p}self_attn.k_proj.weight`, kvDim, D);
    matrix(`${p}self_attn.v_proj.weight`, kvDim, D);
    matrix(`${p}self_attn.o_proj.weight`, D, qDim);
    vector(`${p}post_attention_layernorm.weight`, D);
    matrix(`${p}mlp.gate_proj.weight`, F, D);
    matrix(`${p}mlp.up_proj.weight`, F, D);
    matrix(`${p}mlp.down_proj.weight`, D, F);
  }
  vector('model.norm.weight', D);
  matrix('lm_head.weight', config.vocabSize, D, 3 / Math.sqrt(D));
  return { config, tensors };
}
