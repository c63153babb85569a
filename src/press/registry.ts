/**
 * The press registry: per press a one-line description and its options with type, default (per phase where they
 * differ) and allowed range. The CLI prints it (`kvsieve presses`, see `formatPresses`) and parses kebab-case
 * flags from it (`parsePressFlag`); `resolvePressOptions` fills defaults and validates from it.
 */
import { KvsieveError } from '../core/errors.js';
import { PRESS_NAMES, SCORED_PRESS_NAMES, type Phase, type PressName, type PressOptionsInput, type ScoredPressName } from './types.js';

export type OptionType = 'integer' | 'number' | 'boolean' | 'enum' | 'press' | 'tensor' | 'state';
export type OptionName = keyof PressOptionsInput;

export interface PressOptionSpec {
  /** camelCase key in PressOptionsInput. */
  readonly name: OptionName;
  /** kebab-case CLI flag, without the leading dashes. */
  readonly flag: string;
  readonly type: OptionType;
  readonly description: string;
  /** The default as printed (per phase where they differ). */
  readonly default: string;
  /** The allowed values as printed. */
  readonly range: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Integers only: must be odd. */
  readonly odd?: boolean;
  /** Tensors and state: whether the press refuses to run without it. */
  readonly required?: boolean;
  /** The default value in `phase` given the options set so far (undefined: none). */
  readonly defaultFor: (phase: Phase, given: PressOptionsInput) => unknown;
}

export interface PressInfo {
  readonly name: PressName;
  readonly description: string;
  /** Computes one score per token (can be wrapped by ada-kv). */
  readonly scored: boolean;
  /** ada-kv: also takes every option of its inner press. */
  readonly wraps: boolean;
  readonly options: readonly PressOptionSpec[];
}

export interface ResolveContext {
  phase?: Phase;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

type SpecInit = Omit<PressOptionSpec, 'flag' | 'defaultFor'> & { defaultFor?: PressOptionSpec['defaultFor'] };
function spec(init: SpecInit): PressOptionSpec {
  return { ...init, flag: kebab(init.name), defaultFor: init.defaultFor ?? (() => undefined) };
}

const byPhase = (prefill: number, decode: number) => (phase: Phase) => (phase === 'prefill' ? prefill : decode);
const phaseText = (prefill: number, decode: number) => (prefill === decode ? `${prefill}` : `${prefill} (prefill), ${decode} (decode)`);

const PHASE = spec({
  name: 'phase',
  type: 'enum',
  description: 'when the compression runs; picks the phase-dependent defaults',
  default: 'the run (prefill after the prompt, decode while generating)',
  range: 'prefill | decode',
  choices: ['prefill', 'decode'],
});
const BUDGET = spec({
  name: 'budget',
  type: 'integer',
  description: 'tokens kept per (layer, KV head) after a compression, window included',
  default: '1024',
  range: 'integer >= 1, larger than window + sinks',
  min: 1,
  defaultFor: () => 1024,
});
const window = (prefill: number, decode: number, min: number, what = 'newest tokens always kept (their queries are the observation queries)') =>
  spec({
    name: 'window',
    type: 'integer',
    description: what,
    default: phaseText(prefill, decode),
    range: `integer >= ${min}`,
    min,
    defaultFor: byPhase(prefill, decode),
  });
const SINKS = spec({
  name: 'sinks',
  type: 'integer',
  description: 'first tokens always kept (attention sinks)',
  default: '4',
  range: 'integer >= 0',
  min: 0,
  defaultFor: () => 4,
});
const POOLING = spec({
  name: 'pooling',
  type: 'enum',
  description: 'pooling of the scores along the tokens (avg: zero padding counted; max: -inf padding)',
  default: 'avg',
  range: 'avg | max',
  choices: ['avg', 'max'],
  defaultFor: () => 'avg',
});
const KERNEL_BY_POOLING = spec({
  name: 'kernel',
  type: 'integer',
  description: 'pooling kernel (stride 1, floor(kernel/2) padding each side)',
  default: '5 (avg pooling), 7 (max pooling)',
  range: 'odd integer >= 1 (1: no pooling)',
  min: 1,
  odd: true,
  defaultFor: (_p, given) => (given.pooling === 'max' ? 7 : 5),
});
const KERNEL_7 = spec({ ...KERNEL_BY_POOLING, description: 'max-pooling kernel of the importance', default: '7', defaultFor: () => 7 });
const GQA = spec({
  name: 'gqa',
  type: 'enum',
  description: 'GQA reduction: mean of the query heads\' attention, or max over the group on the logits',
  default: 'mean',
  range: 'mean | max-logits',
  choices: ['mean', 'max-logits'],
  defaultFor: () => 'mean',
});
const LAMBDA = spec({
  name: 'lambda',
  type: 'number',
  description: 'weight of importance against redundancy: F = lambda I - (1 - lambda) R',
  default: '0.1',
  range: '[0, 1]',
  min: 0,
  max: 1,
  defaultFor: () => 0.1,
});
const THRESHOLD = spec({
  name: 'threshold',
  type: 'number',
  description: 'cosine similarity above which two keys are near-duplicates (each token\'s most recent one is protected)',
  default: '0.5',
  range: '[-1, 1]',
  min: -1,
  max: 1,
  defaultFor: () => 0.5,
});
const ALPHA = spec({
  name: 'alpha',
  type: 'number',
  description: 'share of (budget - window) every head keeps of its own best tokens before the global pick',
  default: '0.2',
  range: '[0, 1]',
  min: 0,
  max: 1,
  defaultFor: () => 0.2,
});
const BETA = spec({
  name: 'beta',
  type: 'number',
  description: 'pyramid steepness: the last layer keeps budget / beta, the first 2 budget - budget / beta',
  default: '20',
  range: 'number >= 1 (1: uniform), budget / beta >= 0.5',
  min: 1,
  defaultFor: () => 20,
});
const FILTERS = spec({
  name: 'filters',
  type: 'tensor',
  description: 'calibrated Q-Filters, [layers][kvHeads][headDim] (q_filters tensor)',
  default: 'none (required)',
  range: 'finite values, shape of the model',
  required: true,
});
const HEAD_REDUNDANCY = spec({
  name: 'headRedundancy',
  type: 'tensor',
  description: 'calibrated head redundancy r_h, [kvHeads] or [layers][kvHeads]',
  default: 'computed online from the keys',
  range: 'values in [0, 1]',
});
const ACCUMULATED = spec({
  name: 'accumulatedAttention',
  type: 'state',
  description: 'running attention sums per slot, [kvHeads][n] (the engine passes them in the layer view)',
  default: 'summed from the observation queries',
  range: 'one array per KV head, n values',
});
const NORMALIZE = spec({
  name: 'normalize',
  type: 'boolean',
  description: 'divide each running sum by the number of queries that saw the token (n - j)',
  default: 'false',
  range: 'true | false',
  defaultFor: () => false,
});
const FORCE_NEWEST = spec({
  name: 'forceNewest',
  type: 'boolean',
  description: 'always keep the newest token (kvpress); false: top budget of all n (TOVA paper)',
  default: 'true',
  range: 'true | false',
  defaultFor: () => true,
});
const INNER = spec({
  name: 'inner',
  type: 'press',
  description: 'the scored press whose scores ada-kv pools over the heads (its options apply too)',
  default: 'snapkv',
  range: SCORED_PRESS_NAMES.join(' | '),
  choices: SCORED_PRESS_NAMES,
  defaultFor: () => 'snapkv',
});

const SNAP_OPTS = [PHASE, BUDGET, window(64, 8, 1), KERNEL_BY_POOLING, POOLING, GQA];

export const PRESSES: Readonly<Record<PressName, PressInfo>> = {
  full: { name: 'full', description: 'no eviction; the reference for every fidelity metric', scored: false, wraps: false, options: [PHASE] },
  'streaming-llm': {
    name: 'streaming-llm',
    description: 'keep the first sinks tokens and the most recent budget - sinks',
    scored: false,
    wraps: false,
    options: [PHASE, BUDGET, SINKS],
  },
  h2o: {
    name: 'h2o',
    description: 'heavy hitters: top by accumulated attention plus the recent window',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, window(64, 8, 0, 'newest tokens always kept'), NORMALIZE, ACCUMULATED],
  },
  tova: {
    name: 'tova',
    description: 'attention of the last query, averaged over all query heads of the layer',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, FORCE_NEWEST],
  },
  knorm: {
    name: 'knorm',
    description: 'keep the keys of lowest L2 norm',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, window(0, 0, 0, 'newest tokens always kept')],
  },
  snapkv: {
    name: 'snapkv',
    description: 'pooled attention of the observation window over the older tokens',
    scored: true,
    wraps: false,
    options: SNAP_OPTS,
  },
  pyramidkv: {
    name: 'pyramidkv',
    description: 'snapkv scores with per-layer budgets shrinking with depth',
    scored: true,
    wraps: false,
    options: [...SNAP_OPTS, BETA],
  },
  'ada-kv': {
    name: 'ada-kv',
    description: 'wraps a scored press: heads share the layer budget by pooled scores, each keeps a floor',
    scored: false,
    wraps: true,
    options: [PHASE, INNER, ALPHA],
  },
  'q-filters': {
    name: 'q-filters',
    description: 'keep the keys with the lowest projection on a calibrated per-head filter',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, window(0, 64, 0, 'newest tokens always kept (0 = kvpress parity)'), FILTERS],
  },
  'r-kv': {
    name: 'r-kv',
    description: 'importance minus redundancy (cosine similarity of keys), for reasoning models',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, window(8, 8, 1), KERNEL_7, LAMBDA, THRESHOLD],
  },
  'mix-kv': {
    name: 'mix-kv',
    description: 'importance and diversity mixed per head by the head\'s key redundancy',
    scored: true,
    wraps: false,
    options: [PHASE, BUDGET, window(32, 8, 1), KERNEL_BY_POOLING, POOLING, GQA, HEAD_REDUNDANCY],
  },
};

export function pressInfo(press: string): PressInfo {
  if (!(PRESS_NAMES as readonly string[]).includes(press)) {
    throw new KvsieveError(`press: unknown press "${press}" (one of: ${PRESS_NAMES.join(', ')})`, { option: 'press' });
  }
  return PRESSES[press as PressName];
}

export function innerName(press: string, given: unknown): ScoredPressName {
  const inner = given ?? 'snapkv';
  if (typeof inner !== 'string' || !(SCORED_PRESS_NAMES as readonly string[]).includes(inner)) {
    throw new KvsieveError(`${press}: option "inner" must name a scored press (${SCORED_PRESS_NAMES.join(', ')}), got ${JSON.stringify(inner)}`, { option: 'inner' });
  }
  return inner as ScoredPressName;
}

/** The option specs a press accepts (for ada-kv: its own plus its inner press's). */
export function pressOptionSpecs(press: string, inner?: string): readonly PressOptionSpec[] {
  const info = pressInfo(press);
  if (!info.wraps) return info.options;
  const innerInfo = PRESSES[innerName(press, inner)];
  return [...info.options, ...innerInfo.options.filter((s) => s.name !== 'phase')];
}
