import type { Backend } from '../backend/backend.js';
import { quoted } from '../core/describe.js';
import { KvsieveError } from '../core/errors.js';
import { checkFiniteF32, checkFiniteStored } from '../formats/finite.js';
import type { TensorSource } from '../formats/tensors.js';
import { withStackedExperts } from '../formats/gpt-oss.js';
import type { ModelConfig } from '../core/model-config.js';
import type { LayerWeights, ModelWeights } from './llama.js';

/** Tensors a checkpoint may hold that the forward does not use (old Llama exports store RoPE's frequencies). */
const UNUSED_OK = /\.rotary_emb\.inv_freq$/;

/**
 * Reads every tensor the config calls for from `src`, checking each shape against the config,
 * and hands matrices to the backend (which may re-layout or quantise them; a matrix the backend
 * takes in its stored form goes in as those bytes, with no float32 copy). Each tensor is read once,
 * straight into the array the model keeps.
 *
 * A tensor of the checkpoint that the config does not call for is refused: a config describing fewer
 * layers than the file holds, or no bias where the file has one, would otherwise run a different model.
 * A tied config (tie_word_embeddings) with an lm_head.weight in the file loads only when that tensor
 * equals the embedding. A tensor holding a NaN or an infinity is refused, naming it.
 */
export function loadWeights(file: TensorSource, c: ModelConfig, top: Backend): ModelWeights {
  // GPT-OSS's Hugging Face experts (interleaved gate_up_proj) are read as stacked per-projection tensors.
  const src = c.architecture === 'gpt_oss' ? withStackedExperts(file) : file;
  const used = new Set<string>();
  const checkShape = (name: string, shape: number[]): void => {
    used.add(name);
    const info = src.info(name);
    if (info.shape.length !== shape.length || info.shape.some((v, i) => v !== shape[i])) {
      throw new KvsieveError(
        `${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}] but config.json implies [${shape.join(', ')}]`,
      );
    }
  };
  // Every value is checked to be finite as it comes out of the file (one pass of exponent-bit tests,
  // formats/finite.ts): a NaN or an infinity in any weight makes every logit NaN.
  const read = (name: string, shape: number[]): Float32Array => {
    checkShape(name, shape);
    const data = src.readF32(name);
    checkFiniteF32(data, src.info(name).file, name, shape);
    return data;
  };
  const optional = (name: string, shape: number[], wanted: boolean): Float32Array | null =>
    wanted ? read(name, shape) : null;
  // An RMSNorm's multiplier: as stored, or 1 + the stored value (Hugging Face's Gemma).
  const norm = (name: string, shape: number[]): Float32Array => {
    const w = read(name, shape);
    if (c.normPlusOne) for (let i = 0; i < w.length; i++) w[i] = w[i]! + 1;
    return w;
  };
  const optionalNorm = (name: string, shape: number[], wanted: boolean): Float32Array | null => (wanted ? norm(name, shape) : null);
  // A split backend makes each weight in the part that runs it (Backend.partFor); otherwise all in `top`.
  const partOf = (part: number | 'embed' | 'head'): Backend => top.partFor?.(part) ?? top;
  const matrix = (name: string, rows: number, cols: number, part: number | 'embed' | 'head') => {
    const backend = partOf(part);
    // Stored bytes the backend takes as they are (its own layout, or halves it converts itself).
    const stored = src.storedType?.(name) ?? null;
    if (stored !== null && src.readStored && backend.weightFromStored && backend.takesStored?.(stored, cols)) {
      checkShape(name, [rows, cols]);
      const bytes = src.readStored(name);
      checkFiniteStored(bytes, stored, src.info(name).file, name, [rows, cols]);
      return backend.weightFromStored(stored, bytes, rows, cols, name);
    }
    return backend.weight(read(name, [rows, cols]), rows, cols, name);
  };

  /**
   * `count` matrices [rows, cols], one per expert: from one stacked tensor [count, rows, cols] (GGUF's
   * *_exps), or one tensor each (Hugging Face's experts.{e}.*). Stacked rows are sliced, not copied.
   */
  const perExpert = (stacked: string, each: (e: number) => string, count: number, rows: number, cols: number, layer: number) => {
    if (!src.has(stacked)) return Array.from({ length: count }, (_, e) => matrix(each(e), rows, cols, layer));
    const backend = partOf(layer);
    const stored = src.storedType?.(stacked) ?? null;
    if (stored !== null && src.readStored && backend.weightFromStored && backend.takesStored?.(stored, cols)) {
      checkShape(stacked, [count, rows, cols]);
      const bytes = src.readStored(stacked);
      checkFiniteStored(bytes, stored, src.info(stacked).file, stacked, [count, rows, cols]);
      const per = bytes.byteLength / count;
      return Array.from({ length: count }, (_, e) => backend.weightFromStored!(stored, bytes.subarray(e * per, (e + 1) * per), rows, cols, `${stacked}[${e}]`));
    }
    const all = read(stacked, [count, rows, cols]);
    return Array.from({ length: count }, (_, e) => backend.weight(all.subarray(e * rows * cols, (e + 1) * rows * cols), rows, cols, `${stacked}[${e}]`));
  };

  const D = c.hiddenSize;
  const d = c.headDim;
  const qDim = c.numHeads * d;
  const kvDim = c.numKvHeads * d;
  const F = c.intermediateSize;

  const embed = matrix('model.embed_tokens.weight', c.vocabSize, D, 'embed');
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const moe = c.moe?.layers[i] ? c.moe : null;
    const experts = (proj: string, rows: number, cols: number) =>
      perExpert(`${p}mlp.experts.${proj}.weight`, (e) => `${p}mlp.experts.${e}.${proj}.weight`, moe!.numExperts, rows, cols, i);
    // Expert biases (GPT-OSS) come stacked, [E, rows]: each expert's is a view of its row.
    const expertBiases = (proj: string, rows: number) => {
      if (!moe!.expertBias) return new Array<null>(moe!.numExperts).fill(null);
      const all = read(`${p}mlp.experts.${proj}.bias`, [moe!.numExperts, rows]);
      return Array.from({ length: moe!.numExperts }, (_, e) => all.subarray(e * rows, (e + 1) * rows));
    };
    // GPT-OSS's router is mlp.router (with a bias); Qwen3-MoE's mlp.gate.
    const router = c.architecture === 'gpt_oss' ? `${p}mlp.router` : `${p}mlp.gate`;
    const dense = !moe;
    layers.push({
      inputNorm: norm(`${p}input_layernorm.weight`, [D]),
      q: matrix(`${p}self_attn.q_proj.weight`, qDim, D, i),
      k: matrix(`${p}self_attn.k_proj.weight`, kvDim, D, i),
      v: matrix(`${p}self_attn.v_proj.weight`, kvDim, D, i),
      o: matrix(`${p}self_attn.o_proj.weight`, D, qDim, i),
      qBias: optional(`${p}self_attn.q_proj.bias`, [qDim], c.qkvBias),
      kBias: optional(`${p}self_attn.k_proj.bias`, [kvDim], c.qkvBias),
      vBias: optional(`${p}self_attn.v_proj.bias`, [kvDim], c.qkvBias),
      oBias: optional(`${p}self_attn.o_proj.bias`, [D], c.oBias),
      qNorm: optionalNorm(`${p}self_attn.q_norm.weight`, [d], c.qkNorm),
      kNorm: optionalNorm(`${p}self_attn.k_norm.weight`, [d], c.qkNorm),
      // Gemma's post_attention_layernorm norms the attention output; its pre_feedforward_layernorm is
      // the norm before the feed-forward that Llama calls post_attention_layernorm.
      attnOutNorm: optionalNorm(`${p}post_attention_layernorm.weight`, [D], c.sandwichNorms === true),
      postNorm: norm(c.sandwichNorms ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`, [D]),
      ffnOutNorm: optionalNorm(`${p}post_feedforward_layernorm.weight`, [D], c.sandwichNorms === true),
      gate: dense ? matrix(`${p}mlp.gate_proj.weight`, F, D, i) : null,
      up: dense ? matrix(`${p}mlp.up_proj.weight`, F, D, i) : null,
      down: dense ? matrix(`${p}mlp.down_proj.weight`, D, F, i) : null,
      gateBias: optional(`${p}mlp.gate_proj.bias`, [F], dense && c.mlpBias),
      upBias: optional(`${p}mlp.up_proj.bias`, [F], dense && c.mlpBias),
      downBias: optional(`${p}mlp.down_proj.bias`, [D], dense && c.mlpBias),
      sinks: optional(`${p}self_attn.sinks`, [c.numHeads], c.attentionSinks === true),
      moe: moe
        ? (() => {
            const routerW = matrix(`${router}.weight`, moe.numExperts, D, i);
            const routerBias = optional(`${router}.bias`, [moe.numExperts], moe.routerBias === true);
            const [gate, up, down] = [experts('gate_proj', moe.expertFfn, D), experts('up_proj', moe.expertFfn, D), experts('down_proj', D, moe.expertFfn)];
            const [gateB, upB, downB] = [expertBiases('gate_proj', moe.expertFfn), expertBiases('up_proj', moe.expertFfn), expertBiases('down_proj', D)];
            return {
              router: routerW,
              routerBias,
              experts: gate.map((g, e) => ({ gate: g, up: up[e]!, down: down[e]!, gateBias: gateB[e]!, upBias: upB[e]!, downBias: downB[e]! })),
            };
          })()
        : null,
    });
  }
  const finalNorm = norm('model.norm.weight', [D]);
  // Tied models may still ship lm_head.weight (stories260K's conversion does): a copy of the embedding.
  if (c.tieWordEmbeddings && src.has('lm_head.weight')) checkTiedCopy(src);
  const lmHead = c.tieWordEmbeddings ? embed : matrix('lm_head.weight', c.vocabSize, D, 'head');
  for (const t of src.list()) {
    if (used.has(t.name) || UNUSED_OK.test(t.name) || (c.tieWordEmbeddings && t.name === 'lm_head.weight')) continue;
    const layer = /^model\.layers\.(\d+)\./.exec(t.name);
    const why =
      layer && Number(layer[1]) >= c.numLayers
        ? `the config has ${c.numLayers} layers (num_hidden_layers / block_count)`
        : 'the config calls for no such tensor (wrong architecture, bias or norm settings?)';
    throw new KvsieveError(`${t.file}: tensor ${quoted(t.name)} is not used: ${why}`);
  }
  return { embed, layers, finalNorm, lmHead };
}

/** Refuses an lm_head.weight that differs from the embedding in a tied model (it would be ignored). */
function checkTiedCopy(src: TensorSource): void {
  const a = src.info('model.embed_tokens.weight');
  const b = src.info('lm_head.weight');
  const storedA = src.storedType?.(a.name) ?? null;
  const same =
    a.shape.length === b.shape.length &&
    a.shape.every((v, i) => v === b.shape[i]) &&
    (storedA !== null && src.readStored && storedA === src.storedType?.(b.name)
      ? equalBytes(src.readStored(a.name), src.readStored(b.name))
      : equalBytes(new Uint8Array(src.readF32(a.name).buffer), new Uint8Array(src.readF32(b.name).buffer)));
  if (!same) {
    throw new KvsieveError(
      `${b.file}: tensor "lm_head.weight" differs from model.embed_tokens.weight, but the config ties them (tie_word_embeddings: true on an untied checkpoint?)`,
    );
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Parameter count implied by the config (tied embeddings counted once). */
export function parameterCount(c: ModelConfig): number {
  const D = c.hiddenSize;
  const d = c.headDim;
  const qDim = c.numHeads * d;
  const kvDim = c.numKvHeads * d;
  const F = c.intermediateSize;
  let perLayer = 2 * D + D * qDim + 2 * D * kvDim + qDim * D + 3 * D * F;
  const moe = c.moe;
  const sparse = moe ? moe.layers.filter(Boolean).length : 0;
  // a sparse layer's router and experts in place of the dense feed-forward
  const biases = moe ? (moe.routerBias ? moe.numExperts : 0) + (moe.expertBias ? moe.numExperts * (2 * moe.expertFfn + D) : 0) : 0;
  const moeExtra = moe ? sparse * (moe.numExperts * D + moe.numExperts * 3 * D * moe.expertFfn - 3 * D * F + biases) : 0;
  if (c.qkvBias) perLayer += qDim + 2 * kvDim;
  if (c.oBias) perLayer += D;
  if (c.mlpBias) perLayer += 2 * F + D;
  if (c.qkNorm) perLayer += 2 * d;
  if (c.sandwichNorms) perLayer += 2 * D;
  if (c.attentionSinks) perLayer += c.numHeads;
  return c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + moeExtra + D;
}
