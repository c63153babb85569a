import type { KvDtype } from '../core/kv-rows.js';

/**
 * The kernel interface. The model forward asks for these operations and never loops over raw
 * weights itself; backends own the weight layouts (including quantised ones) and the loops.
 * Kernels know nothing about presses: attention can hand back probabilities, and that is all.
 *
 * Shapes are row-major; `tokens` is the number of token rows processed together in one step (a
 * prefill block, or one row per sequence of a decode batch). Every operation takes one object of
 * named arguments.
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
  /** How rows are stored: f32, f16 (IEEE half bits) or int8 (value = scale[slot] * q). */
  kvDtype: KvDtype;
  /** [capacity * headDim], the first `length` rows are live. Keys are stored after RoPE. */
  keys: Float32Array | Uint16Array | Int8Array;
  values: Float32Array | Uint16Array | Int8Array;
  /** int8 only: one scale per slot. */
  keyScales: Float32Array | null;
  valueScales: Float32Array | null;
  length: number;
}

/** One sequence's rows of a step, as attention reads them. */
export interface AttentionSegment {
  /** Its first row in q and out. */
  row: number;
  /**
   * Its rows (tokens), already appended to its cache: token t sees the first
   * `head.length - tokens + t + 1` slots of each head (causal inside the segment).
   */
  tokens: number;
  /** Its cache's heads, one per KV head; query head g reads KV head floor(g / (numHeads / numKvHeads)). */
  heads: readonly KvHeadView[];
  /**
   * When set, the kernel adds every token's attention probabilities, averaged over the query heads
   * of each group, into `probSums[kvHead][slot]` (the h2o running sum). Left out, nothing extra runs.
   */
  probSums?: readonly Float32Array[];
}

/**
 * Attention of every sequence of a step at once: each segment's query rows over its own cache's
 * heads, into the same rows of `out`. A segment's result does not depend on the others (a backend may
 * run them in any order or together).
 */
export interface AttentionArgs {
  /** [T, numHeads * headDim] queries of the step's rows, after RoPE. */
  q: Float32Array;
  /** [T, numHeads * headDim] output rows. */
  out: Float32Array;
  numHeads: number;
  headDim: number;
  /** Rows that do not overlap, each segment over its own cache. */
  segments: readonly AttentionSegment[];
  /**
   * A sliding-window layer's window W: a token sees only the W slots ending at its own (a sliding
   * layer's cache holds consecutive positions, so slots W back are positions W back). Absent: all.
   */
  window?: number;
  /** The score scale (q . k times this); default 1/sqrt(headDim). */
  scale?: number;
  /**
   * GPT-OSS's attention sinks: [numHeads] learned logits, query head i's joins its softmax's sum (and
   * max) as one more score whose probability is dropped, so a head may attend to nothing.
   */
  sinks?: Float32Array;
}

/** A weight and its optional bias: the map x -> x W^T (+ bias) on each row x. */
export interface Linear {
  w: Weight;
  /** [w.rows], added to every output row. */
  bias?: Float32Array | null;
}

/**
 * out[t, :] = x[t, :] W^T (+ bias) for t < tokens; with `addTo` in place of `out`, the result is added
 * to what addTo holds (the residual add x += a Wo, fused where the backend can).
 */
export type MatmulArgs = Linear & {
  /** [tokens, w.cols] input rows. */
  x: Float32Array;
  tokens: number;
} & ({ out: Float32Array; addTo?: never } | { addTo: Float32Array; out?: never });

/** One of several projections of the same input rows: out = x W^T (+ bias), [tokens, w.rows]. */
export interface Projection extends Linear {
  out: Float32Array;
}

/** The q, k and v projections of the same rows. */
export interface QkvArgs {
  /** [tokens, q.w.cols] input rows, shared by the three. */
  x: Float32Array;
  tokens: number;
  q: Projection;
  k: Projection;
  v: Projection;
}

/**
 * How a gated feed-forward combines g = x Wgate^T (+ bias) and u = x Wup^T (+ bias):
 * - silu: g sigmoid(g) u;
 * - gelu-tanh: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) u;
 * - swiglu-oai (GPT-OSS): c sigmoid(1.702 c) (v + 1), c = min(g, 7), v = u clamped to [-7, 7].
 */
export type Activation = 'silu' | 'gelu-tanh' | 'swiglu-oai';

/** The gated feed-forward's first half: out = act(g, u) (Activation). */
export interface GateUpArgs {
  /** [tokens, gate.w.rows]. */
  out: Float32Array;
  /** Scratch of out's size: where a backend that projects up on its own puts it. */
  scratch: Float32Array;
  /** [tokens, gate.w.cols] input rows. */
  x: Float32Array;
  tokens: number;
  gate: Linear;
  up: Linear;
  /** Default silu. */
  activation?: Activation;
}

/** out[t, :] = row ids[t] of an embedding weight, t < tokens. */
export interface EmbedArgs {
  out: Float32Array;
  w: Weight;
  ids: Int32Array;
  tokens: number;
}

/** RMSNorm of each of `rows` rows of length `dim`: out = x / rms(x) * weight (out may be x). */
export interface RmsnormArgs {
  out: Float32Array;
  x: Float32Array;
  /** [dim]. */
  weight: Float32Array;
  rows: number;
  dim: number;
  eps: number;
}

/**
 * Rotates `numHeads` heads of each of `tokens` rows of x in place (rotate_half convention: pairs
 * (i, i + headDim/2)), row t by the angles of row t of the cos/sin tables [tokens, headDim/2].
 */
export interface RopeArgs {
  x: Float32Array;
  tokens: number;
  numHeads: number;
  headDim: number;
  cos: Float32Array;
  sin: Float32Array;
}

/** Where activations and KV slots live: plain memory, or memory the kernels can address. */
export interface Allocator {
  /** A zero-filled float32 array the backend's kernels can work on. */
  allocF32(n: number): Float32Array;
  /** Gives an array from allocF32 back for reuse (it must not be used afterwards). */
  freeF32(a: Float32Array): void;
  /**
   * Where the memory is bounded (a wasm memory): the most bytes it can hold and the bytes in use now
   * (weights, activations, KV); the KV memory pool's default is sized from what remains.
   */
  memoryUsage?(): MemoryUsage;
  /**
   * Where memory is split in parts (a model over several wasm memories, each part its own kernels):
   * the allocator of the part that holds layer `layer`, where that layer's KV slots and attention
   * sums must live. Left out: one memory, this allocator for every layer.
   */
  partFor?(layer: number): Allocator;
}

/** A bounded memory's use (Allocator.memoryUsage). */
export interface MemoryUsage {
  /** The most bytes it can hold, over all its parts. */
  limitBytes: number;
  /** Bytes in use now (weights, activations, KV), over all its parts. */
  usedBytes: number;
  /**
   * A memory split in parts: each part's own figures and the layers it holds. A sequence's KV is
   * spread like the layers, so the part with the least room per layer bounds the KV memory.
   */
  parts?: readonly { limitBytes: number; usedBytes: number; layers: number }[];
}

/**
 * Whole-head reductions that scoring code can hand to a backend (generic math: they know nothing about
 * presses). A backend without them leaves the callers to their own loops.
 */
export interface ScoreKernels {
  /** out[r * n + j] = scale * a[r * d ..] . keys[j * d ..] for r < rows, j < n. */
  dots(a: Float32Array, rows: number, keys: Float32Array, n: number, d: number, scale: number, out: Float32Array): void;
  /**
   * Per head h (keys[h]: [lengths[h], d]): out[h][j] = the mean over rows i of S[i, j], S the cosine
   * similarities k^_i . k^_j (k^ = k / (||k|| + 1e-8)) with the diagonal and, in each row i, the entry of
   * the largest j with S[i, j] > threshold (entry 0 when there is none) set to 0. Dot products in float32.
   */
  redundancy(keys: readonly Float32Array[], lengths: readonly number[], d: number, threshold: number, out: readonly Float64Array[]): void;
}

export interface Backend extends Allocator {
  readonly name: string;
  /** Faster scoring reductions where the backend has them. */
  readonly scoreKernels?: ScoreKernels;
  /** Takes `data` ([rows, cols] float32, PyTorch [out, in]) and returns the backend's layout of it. */
  weight(data: Float32Array, rows: number, cols: number, name?: string): Weight;
  /**
   * Whether weightFromStored takes a [rows, cols] matrix stored as `type` (ggml's names: F32, F16,
   * BF16, Q8_0, Q4_0, ...): the layout it would make of it anyway, or one it converts itself to the
   * same result weight() gives for the float32 values.
   */
  takesStored?(type: string, cols: number): boolean;
  /** weight() for stored bytes that takesStored accepted: no whole-matrix float32 copy. */
  weightFromStored?(type: string, data: Uint8Array, rows: number, cols: number, name?: string): Weight;
  /**
   * out = x W^T (+ bias), or addTo += x W^T (+ bias). Activations (out, addTo, x, and those of the
   * other operations) come from allocF32; biases and norm weights may be any arrays.
   */
  matmul(args: MatmulArgs): void;
  /** The q, k and v projections of the same rows, in one dispatch where the backend can. */
  qkv(args: QkvArgs): void;
  /** silu(x Wgate) * (x Wup), in one pass where the backend can. */
  gateUp(args: GateUpArgs): void;
  embed(args: EmbedArgs): void;
  rmsnorm(args: RmsnormArgs): void;
  rope(args: RopeArgs): void;
  /** Every segment of the step in one call (the wasm backend: one dispatch per layer). */
  attention(args: AttentionArgs): void;
  /**
   * A backend split in parts: the part that runs layer `layer` (its weights, KV slots and the
   * activations its kernels read), or that holds the embedding ('embed') or the final norm and lm_head
   * ('head'). Weights are made by the part that uses them, and activations move between parts as
   * copies of their rows. Left out: this backend runs everything.
   */
  partFor?(of: number | 'embed' | 'head'): Backend;
  dispose(): void;
}
