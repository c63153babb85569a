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
  /**
   * P: the sequence's prompt length (the tokens its prefill reads). The prompt rule (`protectPrompt`)
   * protects the slots whose position is below it; triattention scores only the others. Left out: 0.
   */
  promptLength?: number;
  /**
   * T: tokens the sequence has processed, the token whose forward just ran included: the position the
   * next token gets (the newest cached key has T - 1). Left out: the largest position held + 1.
   */
  processed?: number;
  /**
   * Per KV head, the original position of each slot ([n] ascending, the RoPE angle baked into its key).
   * Left out: slot j has position j (nothing evicted yet).
   */
  positions?: ArrayLike<number>[];
  /**
   * The inverse frequencies [headDim / 2] of the RoPE that rotated the keys, in the rotate-half pairing
   * (band f is dims f and f + headDim / 2). The rotation's amplitude is left out: YaRN's (GPT-OSS)
   * scales every key alike, which scales triattention's scores alike and leaves its keep sets as they are.
   * triattention needs them.
   */
  ropeInvFreq?: ArrayLike<number>;
  /**
   * Identifies the sequence for random streams (random-pp draws from the stream of (its seed, this id,
   * processed, layer, KV head)): the engine derives it from the prompt ids and the sampling seed, so a
   * rerun draws the same, whatever else runs in the batch. Left out: 0.
   */
  sequenceId?: number;
}

export type OptionType = 'integer' | 'number' | 'boolean' | 'enum' | 'press' | 'tensor' | 'state';

/** What a press needs to know of the model to resolve its options (tensor shapes). */
export interface ResolveContext {
  phase?: Phase;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Query heads of the model, when known (triattention's statistics are per query head). */
  numQHeads?: number;
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
  /**
   * Scored presses whose keep lists span layers (triattention's default): per KV head one keep list for
   * every layer. `layers` combines a slot's per-layer scores (mean or max); `heads: 'max'` also gives
   * every KV head one list (the max over the heads). Null or left out: each layer selects on its own.
   * The compressor then compresses every layer at once; every layer must hold the same slots per head.
   */
  across?(o: O): AcrossLayers | null;
  /** The decode schedule's default buffer for this press (the engine's default: 128). */
  readonly buffer?: number;
}

/** How a cross-layer press combines its per-layer scores (PressDefinition.across). */
export interface AcrossLayers {
  layers: 'mean' | 'max';
  heads: 'each' | 'max';
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
  /** Never evict the prompt; the budget counts it (every press with a budget takes it). */
  protectPrompt?: boolean;
  /** With protectPrompt: whether the budget counts the prompt (default true). */
  promptInBudget?: boolean;
  /** With protectPrompt, a prompt that leaves the press no free slot: clamp (default), skip, truncate. */
  promptOverflow?: 'clamp' | 'skip' | 'truncate';
  [option: string]: unknown;
}
