import type { Backend } from '../backend/backend.js';
import { KvsieveError } from '../core/errors.js';
import type { TensorSource } from '../formats/tensors.js';
import type { ModelConfig } from '../core/model-config.js';
import type { LayerWeights, ModelWeights } from './llama.js';

/**
 * Reads every tensor the config calls for from `src`, checking each shape against the config,
 * and hands matrices to the backend (which may re-layout or quantise them; a matrix the backend
 * takes in its stored form goes in as those bytes, with no float32 copy). Each tensor is read once,
 * straight into the array the model keeps.
 */
export function loadWeights(src: TensorSource, c: ModelConfig, backend: Backend): ModelWeights {
  const checkShape = (name: string, shape: number[]): void => {
    const info = src.info(name);
    if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
      throw new KvsieveError(
        `${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`,
      );
    }
  };
  const read = (name: string, shape: number[]): Float32Array => {
    checkShape(name, shape);
    return src.readF32(name);
  };
  const optional = (name: string, shape: number[], wanted: boolean): Float32Array | null =>
    wanted ? read(name, shape) : null;
  const matrix = (name: string, rows: number, cols: number) => {
    // Stored bytes the backend takes as they are (its own layout, or halves it converts itself).
    const stored = src.storedType?.(name) ?? null;
    if (stored !== null && src.readStored && backend.weightFromStored && backend.takesStored?.(stored, cols)) {
      checkShape(name, [rows, cols]);
      return backend.weightFromStored(stored, src.readStored(name), rows, cols, name);
    }
    return backend.weight(read(name, [rows, cols]), rows, cols, name);
  };

  const D = c.hiddenSize;
  const d = c.headDim;
  const qDim = c.numHeads * d;
  const kvDim = c.numKvHeads * d;
  const F = c.intermediateSize;

  const embed = matrix('model.embed_tokens.weight', c.vocabSize, D);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: read(`${p}input_layernorm.weight`, [D]),
      q: matrix(`${p}self_attn.q_proj.weight`, qDim, D),
      k: matrix(`${p}self_attn.k_proj.weight`, kvDim, D),
      v: matrix(`${p}self_attn.v_proj.weight`, kvDim, D),
      o: matrix(`${p}self_attn.o_proj.weight`, D, qDim),
      qBias: optional(`${p}self_attn.q_proj.bias`, [qDim], c.qkvBias),
      kBias: optional(`${p}self_attn.k_proj.bias`, [kvDim], c.qkvBias),
      vBias: optional(`${p}self_attn.v_proj.bias`, [kvDim], c.qkvBias),
      oBias: optional(`${p}self_attn.o_proj.bias`, [D], c.oBias),
      qNorm: optional(`${p}self_attn.q_norm.weight`, [d], c.qkNorm),
      kNorm: optional(`${p}self_attn.k_norm.weight`, [d], c.qkNorm),
      postNorm: read(`${p}post_attention_layernorm.weight`, [D]),
      gate: matrix(`${p}mlp.gate_proj.weight`, F, D),
      up: matrix(`${p}mlp.up_proj.weight`, F, D),
      down: matrix(`${p}mlp.down_proj.weight`, D, F),
      gateBias: optional(`${p}mlp.gate_proj.bias`, [F], c.mlpBias),
      upBias: optional(`${p}mlp.up_proj.bias`, [F], c.mlpBias),
      downBias: optional(`${p}mlp.down_proj.bias`, [D], c.mlpBias),
    });
  }
  const finalNorm = read('model.norm.weight', [D]);
  // Tied models may still ship lm_head.weight (stories260K's conversion does); the embedding is used.
  const lmHead = c.tieWordEmbeddings ? embed : matrix('lm_head.weight', c.vocabSize, D);
  return { embed, layers, finalNorm, lmHead };
}

/** Parameter count implied by the config (tied embeddings counted once). */
export function parameterCount(c: ModelConfig): number {
  const D = c.hiddenSize;
  const d = c.headDim;
  const qDim = c.numHeads * d;
  const kvDim = c.numKvHeads * d;
  const F = c.intermediateSize;
  let perLayer = 2 * D + D * qDim + 2 * D * kvDim + qDim * D + 3 * D * F;
  if (c.qkvBias) perLayer += qDim + 2 * kvDim;
  if (c.oBias) perLayer += D;
  if (c.mlpBias) perLayer += 2 * F + D;
  if (c.qkNorm) perLayer += 2 * d;
  return c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + D;
}
