/**
 * The kernel interface. The model forward asks for these operations and never loops over raw
 * weights itself; backends own the weight layouts (including quantised ones) and the loops.
 * Kernels know nothing about presses: attention can hand back probabilities, and that is all.
 *
 * Shapes are row-major; `T` is the number of token rows processed together in one step (a prefill
 * block, or one row per sequence of a decode batch).
 */
export interface Weight {
  /** Output features (rows of the PyTorch [out, in] matrix). */
  readonly rows: number;
  /** Input features. */
  readonly cols: number;
  /** Bytes the backend holds for this weight. */
  readonly bytes: number;
}

/** One (layer, KV head) slice of a sequence's cache, as the attention kernel reads it. */
export interface KvHeadView {
  /** [capacity * headDim], the first `length` rows are live. Keys are stored after RoPE. */
  keys: Float32Array;
  values: Float32Array;
  length: number;
}

export interface AttentionArgs {
  /** [T, numHeads * headDim] queries of this segment's tokens, after RoPE. */
  q: Float32Array;
  qOffset: number;
  /** [T, numHeads * headDim] output rows. */
  out: Float32Array;
  outOffset: number;
  /**
   * Tokens in this segment, already appended to the cache: token t sees the first
   * `head.length - tokens + t + 1` slots of each head (causal inside the segment).
   */
  tokens: number;
  numHeads: number;
  headDim: number;
  /** One per KV head; query head g reads KV head floor(g / (numHeads / numKvHeads)). */
  heads: KvHeadView[];
  /**
   * When set, the kernel adds every token's attention probabilities, averaged over the query heads
   * of each group, into `probSums[kvHead][slot]` (the h2o running sum). Left out, nothing extra runs.
   */
  probSums?: Float32Array[];
  /** Scratch of at least max visible slots floats. */
  scratch: Float32Array;
}

export interface Backend {
  readonly name: string;
  /** Takes ownership of `data` ([rows, cols] float32) and returns the backend's layout of it. */
  weight(data: Float32Array, rows: number, cols: number): Weight;
  /** out[t, :] = W x[t, :] (+ bias) for t < T. */
  matmul(out: Float32Array, x: Float32Array, w: Weight, T: number, bias?: Float32Array): void;
  /** Copies row `id` of an embedding weight into out[outOffset ..]. */
  embed(out: Float32Array, outOffset: number, w: Weight, id: number): void;
  /** RMSNorm of each of `rows` rows of length `dim`: out = x / rms(x) * weight. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, rows: number, dim: number, eps: number): void;
  /**
   * Rotates `numHeads` heads of each of T rows in place (rotate_half convention: pairs (i, i + d/2)),
   * using cos/sin tables [T, headDim/2].
   */
  rope(x: Float32Array, T: number, numHeads: number, headDim: number, cos: Float32Array, sin: Float32Array): void;
  attention(args: AttentionArgs): void;
  /** gate[i] = silu(gate[i]) * up[i] for i < n. */
  siluGate(gate: Float32Array, up: Float32Array, n: number): void;
  /** x[i] += y[i] for i < n. */
  addInPlace(x: Float32Array, y: Float32Array, n: number): void;
  dispose(): void;
}
