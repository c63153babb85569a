/**
 * definePress (a press is one self-describing definition) and what the engine asks of a definition:
 * its needs, its layer budget, and compressWith: per layer, per KV head, the ascending slots to keep.
 */
import { KvsieveError } from '../core/errors.js';
import { checkBudgetAboveReserved, PHASE } from './options.js';
import { keepTopPlusWindow, trivialKeep } from './keep-lists.js';
import { ws } from './numeric.js';
import type { LayerView, PressDefinition, PressNeeds, PressOptions, PressOptionSpec, ResolveContext, ResolvedOptions } from './types.js';

interface PressInit<N extends string, S extends readonly PressOptionSpec[]> {
  name: N;
  summary: string;
  /** The options (`phase` is added first when missing). */
  options: S;
  needs?: PressNeeds<ResolvedOptions<S>>;
  wraps?: boolean;
  check?(o: ResolvedOptions<S>, ctx: ResolveContext): void;
  layerBudget?(o: ResolvedOptions<S>, layer: number, numLayers: number): number;
}

/** A scored press: one score per older slot (higher keeps); the shared selection does the rest. */
export interface ScoredPressInit<N extends string, S extends readonly PressOptionSpec[]> extends PressInit<N, S> {
  window?(o: ResolvedOptions<S>): number;
  prepare?(o: ResolvedOptions<S>, view: LayerView): unknown;
  score(o: ResolvedOptions<S>, view: LayerView, h: number, m: number, out: Float32Array, prepared: unknown): void;
}

/** A keep-rule press: the keep lists of a whole layer. */
export interface KeepPressInit<N extends string, S extends readonly PressOptionSpec[]> extends PressInit<N, S> {
  keep(o: ResolvedOptions<S>, view: LayerView): Int32Array[];
}

const PRESS_NAME = /^[a-z][a-z0-9-]*$/;

/**
 * Defines a press. Options are built with `option.*` (or shared specs such as BUDGET, window(...)),
 * and the methods see them resolved and typed:
 *
 *   const keyNorm = definePress({
 *     name: 'my-knorm', summary: 'keep the keys of lowest L2 norm',
 *     options: [BUDGET, window(0, 0, 0)],
 *     score(o, view, h, m, out) { ... },
 *   });
 *   model.generate(prompt, { compression: { press: keyNorm, budget: 256 } });
 */
export function definePress<const N extends string, const S extends readonly PressOptionSpec[]>(
  init: ScoredPressInit<N, S> | KeepPressInit<N, S>,
): PressDefinition<ResolvedOptions<S>> & { readonly name: N } {
  if (!PRESS_NAME.test(init.name)) throw new KvsieveError(`definePress: name ${JSON.stringify(init.name)} must be lowercase letters, digits and dashes`);
  if (typeof init.summary !== 'string' || init.summary.length === 0 || init.summary.includes('\n')) {
    throw new KvsieveError(`definePress: ${init.name}: summary must be one non-empty line`);
  }
  const scored = 'score' in init && typeof init.score === 'function';
  const keeps = 'keep' in init && typeof init.keep === 'function';
  if (scored === keeps) throw new KvsieveError(`definePress: ${init.name}: give exactly one of score() and keep()`);
  const names = new Set<string>();
  for (const s of init.options) {
    if (names.has(s.name)) throw new KvsieveError(`definePress: ${init.name}: option "${s.name}" is listed twice`);
    names.add(s.name);
  }
  const options = names.has('phase') ? init.options : [PHASE, ...init.options];
  return { ...init, options, needs: init.needs ?? {}, wraps: init.wraps ?? false } as unknown as PressDefinition<ResolvedOptions<S>> & { readonly name: N };
}

/** Whether a press computes one score per token (ada-kv can wrap it). */
export function isScored(def: PressDefinition): boolean {
  return typeof def.score === 'function';
}

/** The scored press a wrapper's resolved options name, or the press itself. */
function target(def: PressDefinition, o: PressOptions): PressDefinition {
  return def.wraps ? (o['inner'] as PressDefinition) : def;
}

/** Observation queries and attention sums the engine must keep for `def` with options `o`. */
export function needsOf(def: PressDefinition, o: PressOptions): { queries: number; attentionSums: boolean } {
  const t = target(def, o);
  return { queries: t.needs.queries?.(o) ?? 0, attentionSums: t.needs.attentionSums ?? false };
}

/** Tokens kept per KV head in `layer` (the press's layer rule, else the budget). */
export function layerBudget(def: PressDefinition, o: PressOptions, layer: number, numLayers: number): number {
  const t = target(def, o);
  return t.layerBudget ? t.layerBudget(o, layer, numLayers) : o.budget;
}

/** The newest slots a scored press always keeps. */
export function windowOf(def: PressDefinition, o: PressOptions): number {
  if (def.window) return def.window(o);
  return typeof o['window'] === 'number' ? o['window'] : 0;
}

/**
 * The checks every press gets after resolution (the budget exceeds the window and sinks), then the
 * inner press's own checks on a wrapper's merged options, then the press's. Messages name `o.press`.
 */
export function checkResolved(def: PressDefinition, o: PressOptions, ctx: ResolveContext): void {
  checkBudgetAboveReserved(def.name, o);
  const t = target(def, o);
  if (t !== def) t.check?.(o, ctx);
  def.check?.(o, ctx);
}

function checkView(press: string, view: LayerView): void {
  const { numKvHeads: H, numQHeads, headDim: d } = view;
  const fail = (what: string) => new KvsieveError(`${press}: layer view: ${what}`);
  if (!(H >= 1) || view.heads.length !== H) throw fail(`heads holds ${view.heads.length} KV heads, numKvHeads is ${H}`);
  if (!(numQHeads >= H) || numQHeads % H !== 0) throw fail(`numQHeads ${numQHeads} is not a multiple of numKvHeads ${H}`);
  if (!(view.layer >= 0 && view.layer < view.numLayers)) throw fail(`layer ${view.layer} is outside 0..${view.numLayers - 1}`);
  for (let h = 0; h < H; h++) {
    const hv = view.heads[h]!;
    if (!(hv.n >= 0) || hv.keys.length < hv.n * d) throw fail(`KV head ${h} holds ${hv.keys.length} key entries, needs n * headDim = ${hv.n * d}`);
  }
  if (view.w > 0) {
    if (view.queries.length !== numQHeads) throw fail(`queries holds ${view.queries.length} query heads, numQHeads is ${numQHeads}`);
    for (const q of view.queries) if (q.length < view.w * d) throw fail(`a query head holds ${q.length} entries, needs w * headDim = ${view.w * d}`);
  }
}

/** A keep list from a press's keep rule, checked: the engine evicts by it. */
function checkKeep(press: string, keep: ArrayLike<number>[], view: LayerView): Int32Array[] {
  if (!Array.isArray(keep) || keep.length !== view.numKvHeads) {
    throw new KvsieveError(`${press}: keep() must return one list per KV head (${view.numKvHeads})`);
  }
  return keep.map((k, h) => {
    const n = view.heads[h]!.n;
    let prev = -1;
    for (let i = 0; i < k.length; i++) {
      const s = k[i]!;
      if (!(Number.isInteger(s) && s > prev && s < n)) {
        throw new KvsieveError(`${press}: keep() list of KV head ${h} must ascend within 0..${n - 1}, got ${s} after ${prev}`);
      }
      prev = s;
    }
    return k instanceof Int32Array ? k : Int32Array.from(k);
  });
}

/**
 * Per KV head, the ascending indices of the slots to keep, by the scores of a scored press: a head
 * holding n <= budget keeps everything; when budget <= window a head keeps its newest budget tokens;
 * otherwise exactly budget.
 */
export function keepByScores(def: PressDefinition, o: PressOptions, view: LayerView): Int32Array[] {
  const B = layerBudget(def, o, view.layer, view.numLayers);
  const w = windowOf(def, o);
  const out: (Int32Array | null)[] = view.heads.map((hv) => trivialKeep(hv.n, B, w));
  if (out.every((k) => k !== null)) return out as Int32Array[];
  const prepared = def.prepare?.(o, view);
  for (let h = 0; h < out.length; h++) {
    if (out[h]) continue;
    const n = view.heads[h]!.n;
    const scores = ws.f32('compress.scores', n - w);
    def.score!(o, view, h, n - w, scores, prepared);
    out[h] = keepTopPlusWindow(scores, n, B, w);
  }
  return out as Int32Array[];
}

/**
 * Per KV head, the ascending indices of the slots to keep. `options` must be resolved for `def`
 * (resolvePressOptions).
 */
export function compressWith(def: PressDefinition, options: PressOptions, view: LayerView): Int32Array[] {
  if (!options || options.press !== def.name) {
    throw new KvsieveError(`${def.name}: options: not resolved for this press (call resolvePressOptions("${def.name}", ...))`);
  }
  checkView(def.name, view);
  if (def.keep) return checkKeep(def.name, def.keep(options, view), view);
  return keepByScores(def, options, view);
}

/**
 * Scores (higher = keep) of the m = n - min(window, n) oldest slots of KV head h, by a scored press
 * (for a wrapper, by its inner press). Returns a new array.
 */
export function scoresWith(def: PressDefinition, options: PressOptions, view: LayerView, h: number): Float32Array {
  const t = target(def, options);
  if (!isScored(t) || options.press !== def.name) throw new KvsieveError(`${def.name}: options: not a scored press or not resolved for it`);
  const n = view.heads[h]!.n;
  const m = n - Math.min(n, windowOf(t, options));
  const out = new Float32Array(m);
  t.score!(options, view, h, m, out, t.prepare?.(options, view));
  return out;
}
