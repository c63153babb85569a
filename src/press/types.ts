/**
 * The press room's types. A press is one self-describing definition (`PressDefinition`, made with
 * `definePress`): its name, summary, options, what it needs from the engine, and its scorer or keep
 * rule. See docs/methods.md for every method.
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
   * Per KV head, the running attention sum of each slot ([n] each), when the press asked the engine for
   * them (`needs.attentionSums`).
   */
  accumulatedAttention?: ArrayLike<number>[];
  /** Faster implementations of the heaviest loops (the engine passes its backend's); left out, the presses' own. */
  kernels?: ScoreKernels;
}

export type OptionType = 'integer' | 'number' | 'boolean' | 'enum' | 'press' | 'tensor' | 'state';

/** What a press needs to know of the model to resolve its options (tensor shapes). */
export interface ResolveContext {
  phase?: Phase;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** The presses a press-valued option (ada-kv's inner) may name; the built-in table by default. */
  presses?: readonly PressDefinition[];
}

/** One option of a press. `T` is its resolved value's type. */
export interface PressOptionSpec<N extends string = string, T = unknown> {
  /** camelCase key in the options object. */
  readonly name: N;
  /** kebab-case CLI flag without the leading dashes; null when the option is not a flag (state). */
  readonly flag: string | null;
  readonly type: OptionType;
  readonly description: string;
  /** The default as printed (per phase where they differ). */
  readonly default: string;
  /** The allowed values as printed. */
  readonly range: string;
  readonly choices?: readonly string[];
  /** Whether the press refuses to run without it (options that have no default). */
  readonly required?: boolean;
  /** The default value in `phase` given the options set so far (undefined: none; the option is then null). */
  defaultFor(phase: Phase, given: Readonly<Record<string, unknown>>): T | undefined;
  /** Checks a given value and converts it to the resolved form; throws a KvsieveError naming the option. */
  convert(press: string, value: unknown, ctx: ResolveContext): T;
  /** The value of a CLI flag's text (files are read here: the flag names a file). */
  fromFlag?(press: string, raw: string, ctx: ResolveContext): unknown;
}

type SpecValue<S> = S extends PressOptionSpec<string, infer T> ? T : never;

/** The options every resolved object holds, whatever the press. */
export type BaseOptions = {
  readonly press: string;
  readonly phase: Phase;
  /** Tokens kept per (layer, KV head), window included; Infinity for a press without a budget. */
  readonly budget: number;
};

/** The resolved options of a press with specs `S`: each option by name with its value's type. */
export type ResolvedOptions<S extends readonly PressOptionSpec[]> = BaseOptions & {
  readonly [P in S[number] as P['name']]: SpecValue<P>;
};

/** Resolved options as generic code sees them (the engine, wrappers, tools). */
export type PressOptions = BaseOptions & { readonly [option: string]: unknown };


/** What a press needs the engine to collect while the sequence runs. */
export interface PressNeeds<O> {
  /** Query rows (after RoPE) per layer the engine keeps for the next compression: the observation window. */
  queries?(o: O): number;
  /** Per-slot running sums of the attention each cached token received (h2o). */
  attentionSums?: boolean;
}

/**
 * A press: the one place that knows a compression method. Either a scorer (`score`: one score per
 * older slot, higher keeps; the shared selection keeps the window and the top `budget - window`), or a
 * keep rule for a whole layer (`keep`). A wrapper (`wraps`) takes every option of the scored press
 * named by its `inner` option, which resolves to that press's definition.
 */
export interface PressDefinition<O extends PressOptions = PressOptions> {
  readonly name: string;
  /** One line for listings and help. */
  readonly summary: string;
  /** Every option, `phase` first. */
  readonly options: readonly PressOptionSpec[];
  readonly needs: PressNeeds<O>;
  /** Wraps a scored press (ada-kv): resolved options hold `inner`, the inner press's definition. */
  readonly wraps: boolean;
  /** Checks between options after resolution (the budget against the window is checked for every press). */
  check?(o: O, ctx: ResolveContext): void;
  /** Tokens of one layer kept per KV head (pyramidkv shrinks it with depth; default the budget). */
  layerBudget?(o: O, layer: number, numLayers: number): number;
  /** Scored presses: the newest slots always kept (default: the `window` option, else 0). */
  window?(o: O): number;
  /** Scored presses: per-layer work shared by the heads; its result is passed to `score`. */
  prepare?(o: O, view: LayerView): unknown;
  /** Scored presses: writes the scores of the m oldest slots of KV head h into out[0..m). */
  score?(o: O, view: LayerView, h: number, m: number, out: Float32Array, prepared: unknown): void;
  /** Keep-rule presses: per KV head, the ascending slots to keep. */
  keep?(o: O, view: LayerView): Int32Array[];
}

/**
 * What callers give: any subset of a press's options by their camelCase names (`kvsieve presses`
 * lists them); `resolvePressOptions` fills the rest and refuses names the press does not take.
 */
export interface PressOptionsInput {
  phase?: Phase;
  /** Tokens kept per (layer, KV head) after a compression, window included. */
  budget?: number;
  /** Newest tokens always kept. */
  window?: number;
  [option: string]: unknown;
}
