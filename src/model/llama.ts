import type { Backend, Weight } from '../backend/backend.js';
import type { SequenceCache } from '../kv/cache.js';
import type { ModelConfig } from './config.js';
import { ropeInverseFrequencies, ropeTables } from './rope.js';

export interface LayerWeights {
  inputNorm: Float32Array; // [D]
  q: Weight; // [H*d, D]
  k: Weight; // [Hkv*d, D]
  v: Weight; // [Hkv*d, D]
  o: Weight; // [D, H*d]
  qBias: Float32Array | null;
  kBias: Float32Array | null;
  vBias: Float32Array | null;
  oBias: Float32Array | null;
  qNorm: Float32Array | null; // [d] (qwen3)
  kNorm: Float32Array | null; // [d] (qwen3)
  postNorm: Float32Array; // [D]
  gate: Weight; // [F, D]
  up: Weight; // [F, D]
  down: Weight; // [D, F]
  gateBias: Float32Array | null;
  upBias: Float32Array | null;
  downBias: Float32Array | null;
}

export interface ModelWeights {
  embed: Weight; // [V, D]
  layers: LayerWeights[];
  finalNorm: Float32Array; // [D]
  lmHead: Weight; // [V, D] (the embedding itself when tied)
}

/** A run of consecutive tokens of one sequence, processed in one forward step. */
export interface Segment {
  cache: SequenceCache;
  tokens: ArrayLike<number>;
  /** Original position of each token (the count of tokens the sequence had processed before it). */
  positions: ArrayLike<number>;
  /** Which of this segment's tokens need logits: the last one (sampling), all (evaluation) or none. */
  logits: 'last' | 'all' | 'none';
  /** Receives each layer's query rows [T, numHeads * headDim] (after RoPE) from `rowOffset` (calibration). */
  onQueries?: (layer: number, q: Float32Array, rowOffset: number, T: number) => void;
}

/** Scratch buffers for T rows, grown on demand and reused across steps (no allocation per step). */
class Scratch {
  rows = 0;
  x = new Float32Array(0); // [T, D] residual stream
  xb = new Float32Array(0); // [T, D] normed input
  q = new Float32Array(0); // [T, H*d]
  k = new Float32Array(0); // [T, Hkv*d]
  v = new Float32Array(0); // [T, Hkv*d]
  att = new Float32Array(0); // [T, H*d]
  proj = new Float32Array(0); // [T, D]
  gate = new Float32Array(0); // [T, F]
  up = new Float32Array(0); // [T, F]
  cos = new Float32Array(0); // [T, d/2]
  sin = new Float32Array(0); // [T, d/2]
  positions = new Int32Array(0); // [T]

  ensure(T: number, c: ModelConfig): void {
    if (T <= this.rows) return;
    const D = c.hiddenSize;
    this.rows = T;
    this.x = new Float32Array(T * D);
    this.xb = new Float32Array(T * D);
    this.q = new Float32Array(T * c.numHeads * c.headDim);
    this.k = new Float32Array(T * c.numKvHeads * c.headDim);
    this.v = new Float32Array(T * c.numKvHeads * c.headDim);
    this.att = new Float32Array(T * c.numHeads * c.headDim);
    this.proj = new Float32Array(T * D);
    this.gate = new Float32Array(T * c.intermediateSize);
    this.up = new Float32Array(T * c.intermediateSize);
    this.cos = new Float32Array((T * c.headDim) / 2);
    this.sin = new Float32Array((T * c.headDim) / 2);
    this.positions = new Int32Array(T);
  }
}

/**
 * The Llama-family forward (llama, mistral, qwen2, qwen3 as feature flags):
 *
 *   x = embed(tokens)
 *   for each layer:
 *     h = rmsnorm(x);  q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *     q, k = rmsnorm_head(q), rmsnorm_head(k)            (qwen3)
 *     q, k = rope(q, pos), rope(k, pos)                  (rotate_half)
 *     cache.append(k, v);  a = softmax(q K^T / sqrt(d)) V  (GQA: query head g reads KV head g / G)
 *     x = x + a Wo
 *     x = x + down(silu(rmsnorm(x) Wgate) * (rmsnorm(x) Wup))
 *   logits = rmsnorm(x) Wlm
 */
export class LlamaModel {
  private readonly s = new Scratch();
  private readonly invFreq: Float64Array;
  private attnScratch = new Float32Array(0);
  private lmIn = new Float32Array(0);

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
  ) {
    this.invFreq = ropeInverseFrequencies(config);
  }

  /** Bytes of weights the backend holds. */
  weightBytes(): number {
    const w = this.weights;
    let b = w.embed.bytes + (w.lmHead === w.embed ? 0 : w.lmHead.bytes) + w.finalNorm.byteLength;
    for (const l of w.layers) {
      for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) b += m.bytes;
      for (const v of [l.inputNorm, l.postNorm, l.qBias, l.kBias, l.vBias, l.oBias, l.qNorm, l.kNorm, l.gateBias, l.upBias, l.downBias]) {
        if (v) b += v.byteLength;
      }
    }
    return b;
  }

  /**
   * Runs one step over all segments' tokens together (matrix-matrix work over the stacked rows),
   * appending their keys and values to each segment's cache. Returns the logits of the rows the
   * segments asked for, in segment order: [rowsRequested, vocab].
   */
  forward(segments: Segment[]): Float32Array {
    const c = this.config;
    const be = this.backend;
    const D = c.hiddenSize;
    const d = c.headDim;
    const F = c.intermediateSize;
    const T = segments.reduce((n, seg) => n + seg.tokens.length, 0);
    const s = this.s;
    s.ensure(T, c);

    let row = 0;
    let maxVisible = 0;
    for (const seg of segments) {
      seg.cache.reserve(seg.tokens.length);
      for (let t = 0; t < seg.tokens.length; t++, row++) {
        be.embed(s.x, row * D, this.weights.embed, seg.tokens[t]!);
        s.positions[row] = seg.positions[t]!;
      }
      maxVisible = Math.max(maxVisible, seg.cache.maxHeadLength() + seg.tokens.length);
    }
    if (this.attnScratch.length < maxVisible) this.attnScratch = new Float32Array(Math.max(maxVisible, 2 * this.attnScratch.length));
    ropeTables(this.invFreq, s.positions, T, s.cos, s.sin);

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.layers[l]!;
      // attention block
      be.rmsnorm(s.xb, s.x, w.inputNorm, T, D, c.rmsNormEps);
      be.matmul(s.q, s.xb, w.q, T, w.qBias ?? undefined);
      be.matmul(s.k, s.xb, w.k, T, w.kBias ?? undefined);
      be.matmul(s.v, s.xb, w.v, T, w.vBias ?? undefined);
      if (w.qNorm && w.kNorm) {
        be.rmsnorm(s.q, s.q, w.qNorm, T * c.numHeads, d, c.rmsNormEps);
        be.rmsnorm(s.k, s.k, w.kNorm, T * c.numKvHeads, d, c.rmsNormEps);
      }
      be.rope(s.q, T, c.numHeads, d, s.cos, s.sin);
      be.rope(s.k, T, c.numKvHeads, d, s.cos, s.sin);

      let r0 = 0;
      for (const seg of segments) {
        const n = seg.tokens.length;
        const cache = seg.cache;
        cache.append(l, s.k, s.v, r0, n, seg.positions);
        cache.observe(l, s.q, r0, n);
        seg.onQueries?.(l, s.q, r0, n);
        const heads = cache.heads(l);
        const probSums = heads[0]!.probSums ? heads.map((h) => h.probSums!) : undefined;
        be.attention({
          q: s.q,
          qOffset: r0 * c.numHeads * d,
          out: s.att,
          outOffset: r0 * c.numHeads * d,
          tokens: n,
          numHeads: c.numHeads,
          headDim: d,
          heads,
          probSums,
          scratch: this.attnScratch,
        });
        r0 += n;
      }
      be.matmul(s.proj, s.att, w.o, T, w.oBias ?? undefined);
      be.addInPlace(s.x, s.proj, T * D);

      // feed-forward block
      be.rmsnorm(s.xb, s.x, w.postNorm, T, D, c.rmsNormEps);
      be.matmul(s.gate, s.xb, w.gate, T, w.gateBias ?? undefined);
      be.matmul(s.up, s.xb, w.up, T, w.upBias ?? undefined);
      be.siluGate(s.gate, s.up, T * F);
      be.matmul(s.proj, s.gate, w.down, T, w.downBias ?? undefined);
      be.addInPlace(s.x, s.proj, T * D);
    }

    // Gather the rows that need logits, then one final norm and lm_head over just those.
    let wanted = 0;
    for (const seg of segments) wanted += seg.logits === 'all' ? seg.tokens.length : seg.logits === 'last' ? 1 : 0;
    if (this.lmIn.length < wanted * D) this.lmIn = new Float32Array(wanted * D);
    let out = 0;
    row = 0;
    for (const seg of segments) {
      const n = seg.tokens.length;
      const first = seg.logits === 'all' ? 0 : seg.logits === 'last' ? n - 1 : n;
      for (let t = first; t < n; t++, out++) this.lmIn.set(s.x.subarray((row + t) * D, (row + t + 1) * D), out * D);
      row += n;
    }
    if (wanted === 0) return new Float32Array(0);
    be.rmsnorm(this.lmIn, this.lmIn, this.weights.finalNorm, wanted, D, c.rmsNormEps);
    const logits = new Float32Array(wanted * c.vocabSize);
    be.matmul(logits, this.lmIn, this.weights.lmHead, wanted);
    return logits;
  }
}
