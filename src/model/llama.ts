import type { Allocator, AttentionSegment, Backend, KvHeadView, Weight } from '../backend/backend.js';
import type { KvCache } from '../kv/cache.js';
import { layerWindow, type ModelConfig } from '../core/model-config.js';
import { Router } from './moe.js';
import { ropeAmplitude, ropeInverseFrequencies, ropeTables } from './rope.js';

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
  postNorm: Float32Array; // [D] the norm before the feed-forward
  attnOutNorm: Float32Array | null; // [D] (gemma: the attention output's norm)
  ffnOutNorm: Float32Array | null; // [D] (gemma: the feed-forward output's norm)
  gate: Weight | null; // [F, D]; null on a sparse (mixture-of-experts) layer
  up: Weight | null; // [F, D]
  down: Weight | null; // [D, F]
  moe: MoeWeights | null;
  gateBias: Float32Array | null;
  upBias: Float32Array | null;
  downBias: Float32Array | null;
  /** [H] GPT-OSS's attention sink logits, one per query head. */
  sinks: Float32Array | null;
}

/**
 * A sparse feed-forward: the router [E, D] and each expert's gate, up [Fe, D] and down [D, Fe]
 * (with biases: GPT-OSS).
 */
export interface MoeWeights {
  router: Weight;
  routerBias: Float32Array | null;
  experts: { gate: Weight; up: Weight; down: Weight; gateBias: Float32Array | null; upBias: Float32Array | null; downBias: Float32Array | null }[];
}

export interface ModelWeights {
  embed: Weight; // [V, D]
  layers: LayerWeights[];
  finalNorm: Float32Array; // [D]
  lmHead: Weight; // [V, D] (the embedding itself when tied)
}

/**
 * What a segment's owner may see of each layer's attention (compression, calibration). The forward
 * hands these over and knows nothing of what they are for.
 */
export interface LayerObserver {
  /** The segment's query rows of `layer`, [T, numHeads * headDim] after RoPE, from row `rowOffset`. */
  queries?(layer: number, q: Float32Array, rowOffset: number, T: number): void;
  /**
   * The same rows as RoPE receives them: after the bias and q_norm (qwen3), before the rotation
   * (rotate-half pairing). Calibration of per-band query statistics reads these.
   */
  ropeInputQueries?(layer: number, q: Float32Array, rowOffset: number, T: number): void;
  /**
   * Arrays, one per KV head (at least `heads[h].length` floats, from the backend's allocator), into
   * which attention adds each token's probabilities over the slots, averaged over the group's query
   * heads; undefined: none.
   */
  attentionSums?(layer: number, heads: readonly KvHeadView[]): Float32Array[] | undefined;
}

/** A run of consecutive tokens of one sequence, processed in one forward step. */
export interface Segment {
  cache: KvCache;
  tokens: ArrayLike<number>;
  /** Original position of each token (the count of tokens the sequence had processed before it). */
  positions: ArrayLike<number>;
  /** Which of this segment's tokens need logits: the last one (sampling), all (evaluation) or none. */
  logits: 'last' | 'all' | 'none';
  observer?: LayerObserver;
}

/**
 * Scratch buffers for T rows, from the backend's allocator (so its kernels can address them), grown
 * on demand and reused across steps: no allocation per step.
 */
class Scratch {
  rows = 0;
  x: Float32Array = new Float32Array(0); // [T, D] residual stream
  xb: Float32Array = new Float32Array(0); // [T, D] normed input
  q: Float32Array = new Float32Array(0); // [T, H*d]
  k: Float32Array = new Float32Array(0); // [T, Hkv*d]
  v: Float32Array = new Float32Array(0); // [T, Hkv*d]
  att: Float32Array = new Float32Array(0); // [T, H*d]
  gate: Float32Array = new Float32Array(0); // [T, F]
  up: Float32Array = new Float32Array(0); // [T, F]
  cos: Float32Array = new Float32Array(0); // [T, d/2]
  sin: Float32Array = new Float32Array(0); // [T, d/2]
  cosLocal: Float32Array = new Float32Array(0); // [T, d/2] sliding layers' own RoPE (gemma), else unused
  sinLocal: Float32Array = new Float32Array(0);
  ids = new Int32Array(0); // [T]
  positions = new Int32Array(0); // [T]
  router: Float32Array = new Float32Array(0); // [T, E] (mixture of experts)
  moeIn: Float32Array = new Float32Array(0); // [T, D] the rows routed to one expert
  moeGate: Float32Array = new Float32Array(0); // [T, Fe]
  moeUp: Float32Array = new Float32Array(0); // [T, Fe]
  moeOut: Float32Array = new Float32Array(0); // [T, D]
  lmIn: Float32Array = new Float32Array(0); // [rows needing logits, D]
  logits: Float32Array = new Float32Array(0); // [rows needing logits, V]

  constructor(private readonly alloc: Allocator) {}

  /** A larger array in place of `old`; `old` stays valid (and in use) if the allocation fails. */
  private grow(old: Float32Array, n: number): Float32Array {
    if (old.length >= n) return old;
    const grown = this.alloc.allocF32(n);
    if (old.length > 0) this.alloc.freeF32(old);
    return grown;
  }

  /** Rows for T tokens; `rows` says T only once every array holds them (a failed allocation is retried). */
  ensure(T: number, c: ModelConfig): void {
    if (T <= this.rows) return;
    const D = c.hiddenSize;
    this.x = this.grow(this.x, T * D);
    this.xb = this.grow(this.xb, T * D);
    this.q = this.grow(this.q, T * c.numHeads * c.headDim);
    this.k = this.grow(this.k, T * c.numKvHeads * c.headDim);
    this.v = this.grow(this.v, T * c.numKvHeads * c.headDim);
    this.att = this.grow(this.att, T * c.numHeads * c.headDim);
    this.gate = this.grow(this.gate, T * c.intermediateSize);
    this.up = this.grow(this.up, T * c.intermediateSize);
    this.cos = this.grow(this.cos, (T * c.headDim) / 2);
    this.sin = this.grow(this.sin, (T * c.headDim) / 2);
    if (c.ropeLocalTheta !== undefined) {
      this.cosLocal = this.grow(this.cosLocal, (T * c.headDim) / 2);
      this.sinLocal = this.grow(this.sinLocal, (T * c.headDim) / 2);
    }
    if (c.moe) {
      this.router = this.grow(this.router, T * c.moe.numExperts);
      this.moeIn = this.grow(this.moeIn, T * D);
      this.moeGate = this.grow(this.moeGate, T * c.moe.expertFfn);
      this.moeUp = this.grow(this.moeUp, T * c.moe.expertFfn);
      this.moeOut = this.grow(this.moeOut, T * D);
    }
    this.ids = new Int32Array(T);
    this.positions = new Int32Array(T);
    this.rows = T;
  }

  ensureLogits(rows: number, c: ModelConfig): void {
    this.lmIn = this.grow(this.lmIn, rows * c.hiddenSize);
    this.logits = this.grow(this.logits, rows * c.vocabSize);
  }
}

/** A stage of the forward: the backend (part) that runs it and the scratch in that backend's memory. */
interface Stage {
  be: Backend;
  s: Scratch;
}

/** x[0..n) *= scale (gemma's embedding scale). */
function scaleRows(x: Float32Array, n: number, scale: number): void {
  for (let i = 0; i < n; i++) x[i] = x[i]! * scale;
}

/**
 * The Llama-family forward (llama, mistral, qwen2, qwen3 as feature flags):
 *
 *   x = embed(tokens)
 *   for each layer:
 *     h = rmsnorm(x);  q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *     q, k = rmsnorm_head(q), rmsnorm_head(k)            (qwen3)
 *     q, k = rope(q, pos), rope(k, pos)                  (rotate_half)
 *     cache.append(k, v);  a = softmax(q K^T / sqrt(d)) V  (GQA: query head g reads KV head g / G;
 *                          a sliding layer's tokens see only the last `slidingWindow` positions;
 *                          GPT-OSS: a sink logit per head joins the softmax's sum)
 *     x = x + a Wo
 *     x = x + down(silu(rmsnorm(x) Wgate) * (rmsnorm(x) Wup))
 *   logits = rmsnorm(x) Wlm
 */
export class LlamaModel {
  private readonly invFreq: Float64Array;
  /** The sliding layers' own RoPE frequencies (gemma), or null when every layer shares invFreq. */
  private readonly invFreqLocal: Float64Array | null;
  /**
   * The backend that runs each stage and the scratch in its memory: one for all on one memory; on a
   * split backend, the part of the embedding, of each layer and of the head (see Backend.partFor).
   */
  private readonly embedStage: Stage;
  private readonly layerStages: Stage[];
  private readonly headStage: Stage;
  /** The experts' router buffers (mixture of experts), made at the first sparse layer. */
  private router: Router | null = null;

  constructor(
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
  ) {
    this.invFreq = ropeInverseFrequencies(config);
    this.invFreqLocal = config.ropeLocalTheta !== undefined ? ropeInverseFrequencies(config, true) : null;
    const scratch = new Map<Backend, Scratch>();
    const stage = (be: Backend): Stage => {
      let s = scratch.get(be);
      if (!s) scratch.set(be, (s = new Scratch(be)));
      return { be, s };
    };
    const part = backend.partFor?.bind(backend);
    this.embedStage = stage(part?.('embed') ?? backend);
    this.layerStages = Array.from({ length: config.numLayers }, (_, l) => stage(part?.(l) ?? backend));
    this.headStage = stage(part?.('head') ?? backend);
  }

  /** Bytes of weights the backend holds. */
  weightBytes(): number {
    const w = this.weights;
    let b = w.embed.bytes + (w.lmHead === w.embed ? 0 : w.lmHead.bytes) + w.finalNorm.byteLength;
    for (const l of w.layers) {
      for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down, l.moe?.router, ...(l.moe?.experts.flatMap((e) => [e.gate, e.up, e.down]) ?? [])]) b += m?.bytes ?? 0;
      for (const v of [l.inputNorm, l.postNorm, l.attnOutNorm, l.ffnOutNorm, l.qBias, l.kBias, l.vBias, l.oBias, l.qNorm, l.kNorm, l.gateBias, l.upBias, l.downBias, l.sinks, l.moe?.routerBias]) {
        if (v) b += v.byteLength;
      }
      for (const e of l.moe?.experts ?? []) for (const v of [e.gateBias, e.upBias, e.downBias]) if (v) b += v.byteLength;
    }
    return b;
  }

  /**
   * Whether a step must be awaited (forwardAsync): a GPU forward reads its logits back asynchronously.
   * CPU backends answer false and the generation path calls `forward` synchronously.
   */
  get stepsAsync(): boolean {
    return false;
  }

  /** `forward`, awaited: what a caller that may hold a GPU model (gpu-llama.ts) calls. */
  forwardAsync(segments: Segment[]): Promise<Float32Array> {
    return Promise.resolve(this.forward(segments));
  }

  /**
   * x += y W^T (+ bias): fused where the backend can; with an output norm (gemma's sandwich), y W^T is
   * normed first, in the normed-input scratch, which is free by then.
   */
  private residual({ be, s }: Stage, outNorm: Float32Array | null, a: { x: Float32Array; w: Weight; bias: Float32Array | null; tokens: number }): void {
    if (!outNorm) {
      be.matmul({ addTo: s.x, ...a });
      return;
    }
    const D = this.config.hiddenSize;
    be.matmul({ out: s.xb, ...a });
    be.rmsnorm({ out: s.xb, x: s.xb, weight: outNorm, rows: a.tokens, dim: D, eps: this.config.rmsNormEps });
    const n = a.tokens * D;
    for (let i = 0; i < n; i++) s.x[i] = s.x[i]! + s.xb[i]!;
  }

  /**
   * x += sum over each row's chosen experts of weight * down(silu(h Wgate) * (h Wup)), h = the normed
   * rows in xb: each expert runs once, over the rows routed to it (gathered, then scattered back).
   */
  private experts({ be, s }: Stage, moe: MoeWeights, T: number): void {
    const c = this.config;
    const m = c.moe!;
    const D = c.hiddenSize;
    be.matmul({ out: s.router, x: s.xb, w: moe.router, bias: moe.routerBias, tokens: T });
    const { offsets, rows, weights } = (this.router ??= new Router(m.numExperts, m.expertsPerToken, m.normTopK)).route(s.router, T);
    for (let e = 0; e < m.numExperts; e++) {
      const first = offsets[e]!;
      const n = offsets[e + 1]! - first;
      if (n === 0) continue;
      for (let i = 0; i < n; i++) s.moeIn.set(s.xb.subarray(rows[first + i]! * D, (rows[first + i]! + 1) * D), i * D);
      const ex = moe.experts[e]!;
      be.gateUp({
        out: s.moeGate, scratch: s.moeUp, x: s.moeIn, tokens: n,
        gate: { w: ex.gate, bias: ex.gateBias }, up: { w: ex.up, bias: ex.upBias },
        activation: c.hiddenAct ?? 'silu',
      });
      be.matmul({ out: s.moeOut, x: s.moeGate, w: ex.down, bias: ex.downBias, tokens: n });
      for (let i = 0; i < n; i++) {
        const wt = weights[first + i]!;
        const x = rows[first + i]! * D;
        for (let j = 0; j < D; j++) s.x[x + j] = s.x[x + j]! + wt * s.moeOut[i * D + j]!;
      }
    }
  }

  /**
   * Runs one step over all segments' tokens together (matrix-matrix work over the stacked rows),
   * appending their keys and values to each segment's cache. Returns the logits of the rows the
   * segments asked for, in segment order: [rowsRequested, vocab] — a view valid until the next call.
   */
  forward(segments: Segment[]): Float32Array {
    const c = this.config;
    const D = c.hiddenSize;
    const d = c.headDim;
    const T = segments.reduce((n, seg) => n + seg.tokens.length, 0);
    let stage = this.embedStage;
    let { be, s } = stage;
    s.ensure(T, c);

    let row = 0;
    for (const seg of segments) {
      for (let t = 0; t < seg.tokens.length; t++, row++) {
        s.ids[row] = seg.tokens[t]!;
        s.positions[row] = seg.positions[t]!;
      }
    }
    be.embed({ out: s.x, w: this.weights.embed, ids: s.ids, tokens: T });
    if (c.embedScale !== undefined) scaleRows(s.x, T * D, c.embedScale);
    ropeTables(this.invFreq, s.positions, T, s.cos, s.sin, ropeAmplitude(c));
    if (this.invFreqLocal) ropeTables(this.invFreqLocal, s.positions, T, s.cosLocal, s.sinLocal, ropeAmplitude(c, true));

    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.layers[l]!;
      const next = this.layerStages[l]!;
      if (next.s !== s) {
        // A split model: the layer's part runs in another memory; the residual rows and the RoPE tables move there.
        next.s.ensure(T, c);
        next.s.x.set(s.x.subarray(0, T * D));
        next.s.cos.set(s.cos.subarray(0, (T * d) / 2));
        next.s.sin.set(s.sin.subarray(0, (T * d) / 2));
        if (this.invFreqLocal) {
          next.s.cosLocal.set(s.cosLocal.subarray(0, (T * d) / 2));
          next.s.sinLocal.set(s.sinLocal.subarray(0, (T * d) / 2));
        }
        ({ be, s } = stage = next);
      }
      // attention block
      be.rmsnorm({ out: s.xb, x: s.x, weight: w.inputNorm, rows: T, dim: D, eps: c.rmsNormEps });
      be.qkv({
        x: s.xb,
        tokens: T,
        q: { out: s.q, w: w.q, bias: w.qBias },
        k: { out: s.k, w: w.k, bias: w.kBias },
        v: { out: s.v, w: w.v, bias: w.vBias },
      });
      if (w.qNorm && w.kNorm) {
        be.rmsnorm({ out: s.q, x: s.q, weight: w.qNorm, rows: T * c.numHeads, dim: d, eps: c.rmsNormEps });
        be.rmsnorm({ out: s.k, x: s.k, weight: w.kNorm, rows: T * c.numKvHeads, dim: d, eps: c.rmsNormEps });
      }
      let r = 0;
      for (const seg of segments) {
        seg.observer?.ropeInputQueries?.(l, s.q, r, seg.tokens.length);
        r += seg.tokens.length;
      }
      const window = layerWindow(c, l);
      const [cos, sin] = window && this.invFreqLocal ? [s.cosLocal, s.sinLocal] : [s.cos, s.sin];
      be.rope({ x: s.q, tokens: T, numHeads: c.numHeads, headDim: d, cos, sin });
      be.rope({ x: s.k, tokens: T, numHeads: c.numKvHeads, headDim: d, cos, sin });

      // per segment: its keys and values into its cache; then every segment's attention at once
      const attend: AttentionSegment[] = [];
      let r0 = 0;
      for (const seg of segments) {
        const n = seg.tokens.length;
        const heads = seg.cache.append(l, { k: s.k, v: s.v, offset: r0, count: n, positions: seg.positions });
        seg.observer?.queries?.(l, s.q, r0, n);
        const probSums = seg.observer?.attentionSums?.(l, heads);
        attend.push({ row: r0, tokens: n, heads, ...(probSums ? { probSums } : {}) });
        r0 += n;
      }
      be.attention({
        q: s.q, out: s.att, numHeads: c.numHeads, headDim: d, segments: attend,
        ...(window ? { window } : {}),
        ...(c.attentionScale !== undefined ? { scale: c.attentionScale } : {}),
        ...(w.sinks ? { sinks: w.sinks } : {}),
      });
      this.residual(stage, w.attnOutNorm, { x: s.att, w: w.o, bias: w.oBias, tokens: T }); // x += attn Wo (normed first: gemma)

      // feed-forward block: x += down(silu(h Wgate) * (h Wup))
      be.rmsnorm({ out: s.xb, x: s.x, weight: w.postNorm, rows: T, dim: D, eps: c.rmsNormEps });
      if (w.moe) {
        this.experts(stage, w.moe, T);
      } else {
      be.gateUp({
        out: s.gate,
        scratch: s.up,
        x: s.xb,
        tokens: T,
        gate: { w: w.gate!, bias: w.gateBias },
        up: { w: w.up!, bias: w.upBias },
        activation: c.hiddenAct ?? 'silu',
      });
      this.residual(stage, w.ffnOutNorm, { x: s.gate, w: w.down!, bias: w.downBias, tokens: T });
      }
    }

    // Gather the rows that need logits, then one final norm and lm_head over just those.
    let wanted = 0;
    for (const seg of segments) wanted += seg.logits === 'all' ? seg.tokens.length : seg.logits === 'last' ? 1 : 0;
    if (wanted === 0) return new Float32Array(0);
    const head = this.headStage; // the rows are gathered into its memory (a split model's head may be in another)
    head.s.ensureLogits(wanted, c);
    let out = 0;
    row = 0;
    for (const seg of segments) {
      const n = seg.tokens.length;
      const first = seg.logits === 'all' ? 0 : seg.logits === 'last' ? n - 1 : n;
      for (let t = first; t < n; t++, out++) head.s.lmIn.set(s.x.subarray((row + t) * D, (row + t + 1) * D), out * D);
      row += n;
    }
    head.be.rmsnorm({ out: head.s.lmIn, x: head.s.lmIn, weight: this.weights.finalNorm, rows: wanted, dim: D, eps: c.rmsNormEps });
    const logits = head.s.logits.subarray(0, wanted * c.vocabSize);
    head.be.matmul({ out: logits, x: head.s.lmIn, w: this.weights.lmHead, tokens: wanted });
    return logits;
  }
}
