/**
 * Shared types of the presses (KV-cache compression methods). See /shared/docs/methods.md.
 *
 * Conventions everywhere in src/press:
 * - a head holds n tokens (slots 0..n-1, oldest first); keys are stored after RoPE;
 * - the protected window is the newest w slots (n - w .. n - 1); scores exist for the older slots j < n - w;
 * - a higher score means "keep"; ties at the keep/evict boundary keep the lower index (the older token);
 * - keep lists are ascending slot indices.
 */

import type { ScoreKernels } from '../backend/backend.js';

export type Phase = 'prefill' | 'decode';
export type Pooling = 'avg' | 'max';
export type GqaMode = 'mean' | 'max-logits';

export const PRESS_NAMES = [
  'full',
  'streaming-llm',
  'h2o',
  'tova',
  'knorm',
  'snapkv',
  'pyramidkv',
  'ada-kv',
  'q-filters',
  'r-kv',
  'mix-kv',
] as const;
export type PressName = (typeof PRESS_NAMES)[number];

/** Presses that compute one score per token (the ones ada-kv can wrap). */
export const SCORED_PRESS_NAMES = ['h2o', 'tova', 'knorm', 'snapkv', 'pyramidkv', 'q-filters', 'r-kv', 'mix-kv'] as const;
export type ScoredPressName = (typeof SCORED_PRESS_NAMES)[number];

/** One KV head of one layer as the engine holds it. */
export interface HeadView {
  /** Tokens (slots) held by this head. */
  n: number;
  /** [n * headDim] (at least), after RoPE. */
  keys: Float32Array;
  /** [n * headDim] (at least). */
  values: Float32Array;
}

/** One layer of one sequence at compression time (engine-facing, flat arrays). */
export interface LayerView {
  layer: number;
  numLayers: number;
  numKvHeads: number;
  numQHeads: number;
  headDim: number;
  /** One per KV head; heads may hold different numbers of tokens (after ada-kv). */
  heads: HeadView[];
  /** One per query head, [w * headDim]: the queries (after RoPE) of the last w cached tokens, oldest first. */
  queries: Float32Array[];
  /** Number of observation queries available. */
  w: number;
  /**
   * h2o state: per KV head, the running attention sum of each slot ([n] each). Takes precedence over
   * the `accumulatedAttention` option (the engine passes its per-slot sums here at every compression).
   */
  accumulatedAttention?: ArrayLike<number>[];
  /** Faster implementations of the heaviest loops (the engine passes its backend's); left out, the presses' own. */
  kernels?: ScoreKernels;
}

/** What callers give: any subset of the options (camelCase names); `resolvePressOptions` fills the rest. */
export interface PressOptionsInput {
  phase?: Phase;
  budget?: number;
  window?: number;
  sinks?: number;
  kernel?: number;
  pooling?: Pooling;
  gqa?: GqaMode;
  lambda?: number;
  threshold?: number;
  alpha?: number;
  beta?: number;
  /** q-filters: [layers][kvHeads][headDim] nested, or a Float32Array of layers * kvHeads * headDim (that order). */
  filters?: number[][][] | Float32Array;
  /**
   * mix-kv: calibrated head redundancy r_h in [0, 1]: [kvHeads] (the same for every layer; pass the view's layer
   * values), [layers][kvHeads], or a Float32Array of kvHeads or layers * kvHeads values.
   */
  headRedundancy?: number[] | number[][] | Float32Array;
  /** h2o: per KV head running attention sums, [kvHeads][n] or Float32Array[] (one per head). */
  accumulatedAttention?: number[][] | Float32Array[];
  /** h2o: divide each running sum by the number of queries that saw the token (n - j). */
  normalize?: boolean;
  /** tova: always keep the newest token (kvpress); false = the TOVA paper (top B of all n). */
  forceNewest?: boolean;
  /** ada-kv: the scored press whose scores are pooled over the heads of a layer. */
  inner?: string;
}

/**
 * Resolved options: every field is present. Fields a press does not use hold neutral values
 * (see `PRESSES[press].options` for the ones that matter). Produced only by `resolvePressOptions`.
 */
export interface PressOptions {
  readonly press: PressName;
  readonly phase: Phase;
  /** Tokens kept per (layer, KV head), window included. Infinity for `full`. */
  readonly budget: number;
  readonly window: number;
  readonly sinks: number;
  readonly kernel: number;
  readonly pooling: Pooling;
  readonly gqa: GqaMode;
  readonly lambda: number;
  readonly threshold: number;
  readonly alpha: number;
  readonly beta: number;
  /** [layers * kvHeads * headDim] or null. */
  readonly filters: Float32Array | null;
  /** [layers * kvHeads] or null (computed online). */
  readonly headRedundancy: Float32Array | null;
  readonly accumulatedAttention: Float32Array[] | null;
  readonly normalize: boolean;
  readonly forceNewest: boolean;
  readonly inner: ScoredPressName | null;
}

/**
 * How a scored press plugs into the shared selection (`compressLayer`, ada-kv).
 * `score` writes the scores of the m = n_h - window(o) oldest slots of head h into out[0..m).
 */
export interface Scorer {
  /** Newest slots always kept. */
  window(o: PressOptions): number;
  /** Budget B of this layer (per KV head, window included). */
  budget(o: PressOptions, view: LayerView): number;
  /** Per-layer work shared by all heads; its result is passed to `score`. */
  prepare?(o: PressOptions, view: LayerView): unknown;
  score(o: PressOptions, view: LayerView, h: number, m: number, out: Float32Array, prepared: unknown): void;
}
