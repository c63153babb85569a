/**
 * llama2.c legacy (version 0) `.bin` checkpoints, presented under Hugging Face Llama tensor names.
 *
 * Layout: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
 * a negative vocab_size means the classifier is stored separately), then float32 arrays in this order:
 * token_embedding [vocab][dim], rms_att [L][dim], wq [L][dim][dim], wk [L][kv_dim][dim], wv [L][kv_dim][dim],
 * wo [L][dim][dim], rms_ffn [L][dim], w1 [L][hidden][dim], w2 [L][dim][hidden], w3 [L][hidden][dim],
 * rms_final [dim], freq_cis_real and freq_cis_imag [seq_len][head_size/2] (unused), wcls [vocab][dim] if unshared.
 *
 * llama2.c rotates interleaved pairs (2i, 2i+1) of each head; Hugging Face Llama rotates (i, i + head_dim/2).
 * q_proj and k_proj rows are therefore permuted per head as HF's conversion does (even offsets first, then
 * odd), so the engine uses one RoPE convention for every format.
 */
import { KvsieveError } from '../core/errors.js';
import type { ModelConfig } from '../core/model-config.js';
import { closeQuietly, handleSize, OffsetSource, openForReading, readFully, type Handle, type PlacedTensor, type ReadOptions } from './io.js';
import type { TensorSource } from './tensors.js';

const HEADER_BYTES = 28;
/** "ak42": the magic of llama2.c's versioned exports (version 1 and later), which this reader does not take. */
const VERSIONED_MAGIC = 0x616b3432;

export interface Llama2cCheckpoint {
  config: ModelConfig;
  tensors: TensorSource;
}

/**
 * Reorders the rows of `w` ([nHeads * headDim][cols]) within each head: rows at even offsets first, then
 * those at odd offsets, turning llama2.c's interleaved RoPE pairs into HF's rotate-half pairs.
 */
export function permuteRowsForRotateHalf(w: Float32Array, nHeads: number, headDim: number, cols: number): void {
  const half = headDim / 2;
  const head = headDim * cols;
  const tmp = new Float32Array(head);
  for (let h = 0; h < nHeads; h++) {
    const base = h * head;
    tmp.set(w.subarray(base, base + head));
    for (let p = 0; p < headDim; p++) {
      const from = p < half ? 2 * p : 2 * (p - half) + 1;
      w.set(tmp.subarray(from * cols, (from + 1) * cols), base + p * cols);
    }
  }
}

export function openLlama2cCheckpoint(file: string, options: ReadOptions = {}): Llama2cCheckpoint {
  const fd = openForReading(file);
  try {
    return build(file, fd, options);
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
}

/** The same from the file's bytes in memory (a browser's fetch); `name` names it in errors. */
export function readLlama2cCheckpoint(bytes: Uint8Array, name: string, options: ReadOptions = {}): Llama2cCheckpoint {
  return build(name, bytes, options);
}

function build(file: string, fd: Handle, options: ReadOptions): Llama2cCheckpoint {
  const size = handleSize(fd);
  if (size < HEADER_BYTES) {
    throw new KvsieveError(`${file}: truncated: ${size} bytes, too short for the ${HEADER_BYTES}-byte llama2.c header`);
  }
  const head = new Uint8Array(HEADER_BYTES);
  readFully(fd, file, 'the header', head, 0);
  const view = new DataView(head.buffer);
  if (view.getUint32(0, true) === VERSIONED_MAGIC) {
    throw new KvsieveError(
      `${file}: llama2.c export version ${view.getInt32(4, true)} ("ak42" magic) is not supported; only the legacy version 0 layout`,
    );
  }
  const [dim, hidden, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = Array.from({ length: 7 }, (_, i) =>
    view.getInt32(4 * i, true),
  ) as [number, number, number, number, number, number, number];
  const fields: [string, number][] = [
    ['dim', dim],
    ['hidden_dim', hidden],
    ['n_layers', nLayers],
    ['n_heads', nHeads],
    ['n_kv_heads', nKvHeads],
    ['seq_len', seqLen],
  ];
  for (const [k, v] of fields) {
    if (v <= 0) throw new KvsieveError(`${file}: header field ${k} is ${v}; it must be positive`);
  }
  if (vocabRaw === 0) throw new KvsieveError(`${file}: header field vocab_size is 0; it must be non-zero`);
  if (dim % nHeads !== 0) throw new KvsieveError(`${file}: header dim ${dim} is not a multiple of n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) {
    throw new KvsieveError(`${file}: header n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  }
  const headDim = dim / nHeads;
  if (headDim % 2 !== 0) throw new KvsieveError(`${file}: head size ${headDim} (dim / n_heads) must be even for RoPE`);
  const shared = vocabRaw > 0;
  const vocab = Math.abs(vocabRaw);
  const kvDim = headDim * nKvHeads;

  // Where each array starts, in floats from the end of the header.
  let at = 0;
  const take = (count: number): number => {
    const start = at;
    at += count;
    return start;
  };
  const emb = take(vocab * dim);
  const rmsAtt = take(nLayers * dim);
  const wq = take(nLayers * dim * dim);
  const wk = take(nLayers * kvDim * dim);
  const wv = take(nLayers * kvDim * dim);
  const wo = take(nLayers * dim * dim);
  const rmsFfn = take(nLayers * dim);
  const w1 = take(nLayers * hidden * dim);
  const w2 = take(nLayers * dim * hidden);
  const w3 = take(nLayers * hidden * dim);
  const rmsFinal = take(dim);
  take(seqLen * (headDim / 2)); // freq_cis_real
  take(seqLen * (headDim / 2)); // freq_cis_imag
  const wcls = shared ? -1 : take(vocab * dim);
  const expected = HEADER_BYTES + 4 * at;
  const described =
    `dim ${dim}, hidden_dim ${hidden}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, ` +
    `vocab_size ${vocabRaw}, seq_len ${seqLen}`;
  if (!Number.isSafeInteger(expected)) throw new KvsieveError(`${file}: header (${described}) implies an impossible size`);
  if (size < expected) {
    throw new KvsieveError(`${file}: truncated: the header (${described}) implies ${expected} bytes but the file holds ${size}`);
  }
  if (size > expected) {
    throw new KvsieveError(
      `${file}: the header (${described}) implies ${expected} bytes but the file holds ${size}; not a legacy llama2.c checkpoint?`,
    );
  }

  const placed: PlacedTensor[] = [];
  const add = (name: string, shape: number[], floatOffset: number, transform?: (w: Float32Array) => void): void => {
    const t: PlacedTensor = { info: { name, dtype: 'F32', shape, file }, fd, position: HEADER_BYTES + 4 * floatOffset };
    if (transform) t.transform = transform;
    placed.push(t);
  };
  add('model.embed_tokens.weight', [vocab, dim], emb);
  for (let l = 0; l < nLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [dim], rmsAtt + l * dim);
    add(`${p}.self_attn.q_proj.weight`, [dim, dim], wq + l * dim * dim, (w) => permuteRowsForRotateHalf(w, nHeads, headDim, dim));
    add(`${p}.self_attn.k_proj.weight`, [kvDim, dim], wk + l * kvDim * dim, (w) =>
      permuteRowsForRotateHalf(w, nKvHeads, headDim, dim),
    );
    add(`${p}.self_attn.v_proj.weight`, [kvDim, dim], wv + l * kvDim * dim);
    add(`${p}.self_attn.o_proj.weight`, [dim, dim], wo + l * dim * dim);
    add(`${p}.post_attention_layernorm.weight`, [dim], rmsFfn + l * dim);
    add(`${p}.mlp.gate_proj.weight`, [hidden, dim], w1 + l * hidden * dim);
    add(`${p}.mlp.up_proj.weight`, [hidden, dim], w3 + l * hidden * dim);
    add(`${p}.mlp.down_proj.weight`, [dim, hidden], w2 + l * dim * hidden);
  }
  add('model.norm.weight', [dim], rmsFinal);
  if (!shared) add('lm_head.weight', [vocab, dim], wcls);

  const config: ModelConfig = {
    architecture: 'llama',
    hiddenSize: dim,
    intermediateSize: hidden,
    numLayers: nLayers,
    numHeads: nHeads,
    numKvHeads: nKvHeads,
    headDim,
    vocabSize: vocab,
    maxPositions: seqLen,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    tieWordEmbeddings: shared,
    bosTokenId: 1,
    eosTokenIds: [2],
  };
  return { config, tensors: new OffsetSource(placed, file, [fd], options) };
}
