/**
 * definePress (a press is one self-describing definition) and what the engine asks of a definition:
 * its needs, its layer budget, and compressWith: per layer, per KV head, the ascending slots to keep.
 */
import { KvsieveError } from '../core/errors.js';
import { checkBudgetAboveReserved, PHASE } from './options.js';
import { keepAll, keepTopPlusWindow, trivialKeep } from './keep-lists.js';
import { ws } from './numeric.js';
import { budgetWithPrompt, PROMPT_OPTIONS, promptRule, promptShare, protectedSlots } from './prompt.js';
import { promptSlots } from './sequence.js';
import type { AcrossLayers, LayerView, PressDefinition, PressNeeds, PressOptions, PressOptionSpec, ResolveContext, ResolvedOptions } from './types.js';

interface PressInit<N extends string, S extends readonly PressOptionSpec[]> {
  name: N;
  summary: string;
  /** The options (`phase` is added first when missing). */
  options: S;
  needs?: PressNeeds<ResolvedOptions<S>>;
  wraps?: boolean;
  check?(o: ResolvedOptions<S>, ctx: ResolveContext): void;
  layerBudget?(o: ResolvedOptions<S>, layer: number, numLayers: number): number;
  /** The decode schedule's default buffer for this press (the engine's default: 128). */
  buffer?: number;
}

/** A scored press: one score per older slot (higher keeps); the shared selection does the rest. */
export interface ScoredPressInit<N extends string, S extends readonly PressOptionSpec[]> extends PressInit<N, S> {
  window?(o: ResolvedOptions<S>): number;
  across?(o: ResolvedOptions<S>): AcrossLayers | null;
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
  if (init.buffer !== undefined && !(Number.isInteger(init.buffer) && init.buffer >= 1)) {
    throw new KvsieveError(`definePress: ${init.name}: buffer must be a whole number >= 1`);
  }
  // Every press with a budget takes the prompt rule (a press may list its own spec of one of them to
  // change its default, as random-pp and triattention do).
  const prompt = names.has('budget') ? PROMPT_OPTIONS.filter((s) => !names.has(s.name)) : [];
  const options = [...(names.has('phase') ? [] : [PHASE]), ...init.options, ...prompt];
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

/**
 * The prompt slots of KV head h that a keep rule must keep (0 when nothing is protected or nothing is
 * evicted; n when the rule says not to evict): what the shared selection protects, for keep-rule
 * presses that apply the prompt rule themselves.
 */
export function protectedPrompt(def: PressDefinition, o: PressOptions, view: LayerView, h: number): number {
  return protectedSlots(o, view, h, layerBudget(def, o, view.layer, view.numLayers), windowOf(target(def, o), o));
}

/** A keep list from a press's keep rule, checked: the engine evicts by it (and the prompt rule holds). */
function checkKeep(def: PressDefinition, o: PressOptions, keep: ArrayLike<number>[], view: LayerView): Int32Array[] {
  const press = def.name;
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
    // Ascending and unique, so slots 0..p-1 are all kept exactly when entry p-1 is p-1.
    const p = protectedPrompt(def, o, view, h);
    if (p > 0 && !(k.length >= p && k[p - 1] === p - 1)) {
      throw new KvsieveError(`${press}: keep() of KV head ${h} evicts a protected prompt slot (its first ${p} slots must stay)`, { option: 'protectPrompt' });
    }
    return k instanceof Int32Array ? k : Int32Array.from(k);
  });
}

/** Tokens kept per KV head in this view's layer, the prompt included when the rule puts it on top. */
function budgetOf(def: PressDefinition, o: PressOptions, view: LayerView): number {
  return budgetWithPrompt(promptRule(o), layerBudget(def, o, view.layer, view.numLayers), view.promptLength ?? 0);
}

/**
 * One head's keep list when the rules decide it before any scoring (n <= budget, budget <= window, a
 * prompt that skips or truncates), else null with the prompt slots the selection must keep.
 */
function ruledKeep(o: PressOptions, view: LayerView, h: number, B: number, w: number): { keep: Int32Array | null; protect: number } {
  const n = view.heads[h]!.n;
  const fixed = trivialKeep(n, B, w);
  if (fixed) return { keep: fixed, protect: 0 };
  const share = promptShare(promptRule(o), promptSlots(view, h), B, w);
  if (share.all) return { keep: keepAll(n), protect: 0 };
  return { keep: share.protect === B - w ? keepTopPlusWindow([], n, B, w, B - w) : null, protect: share.protect };
}

/**
 * Per KV head, the ascending indices of the slots to keep, by the scores of a scored press: a head
 * holding n <= budget keeps everything; when budget <= window a head keeps its newest budget tokens;
 * otherwise exactly budget: the protected prompt (protectPrompt), the window, and the top of the rest.
 */
export function keepByScores(def: PressDefinition, o: PressOptions, view: LayerView): Int32Array[] {
  const B = budgetOf(def, o, view);
  const w = windowOf(def, o);
  const ruled = view.heads.map((_, h) => ruledKeep(o, view, h, B, w));
  if (ruled.every((r) => r.keep !== null)) return ruled.map((r) => r.keep!);
  const prepared = def.prepare?.(o, view);
  return ruled.map((r, h) => {
    if (r.keep) return r.keep;
    const n = view.heads[h]!.n;
    const scores = ws.f32('compress.scores', n - w);
    def.score!(o, view, h, n - w, scores, prepared);
    return keepTopPlusWindow(scores, n, B, w, r.protect);
  });
}

/** How a press's keep lists span layers, or null when each layer selects on its own (a wrapper's: per layer). */
export function acrossOf(def: PressDefinition, o: PressOptions): AcrossLayers | null {
  return def.across?.(o) ?? null;
}

/**
 * The keep lists of a cross-layer press (`across`): per KV head, one list for every layer, by the
 * press's per-layer scores of that head combined over the layers (mean or max), and over the heads
 * too when `heads` is 'max'. `viewOf(l)` gives layer l's view, asked once per layer in order (an engine
 * builds them one at a time); every layer must hold the same slots in each head. The budget rules,
 * the prompt rule and the window apply as in keepByScores, from layer 0's view.
 */
export function compressAcrossLayers(def: PressDefinition, o: PressOptions, numLayers: number, viewOf: (layer: number) => LayerView): Int32Array[] {
  if (!o || o.press !== def.name) throw new KvsieveError(`${def.name}: options: not resolved for this press (call resolvePressOptions("${def.name}", ...))`);
  if (!isScored(def)) throw new KvsieveError(`${def.name}: only a scored press selects across layers`);
  const across = acrossOf(def, o) ?? { layers: 'mean', heads: 'each' };
  const w = windowOf(def, o);
  let ruled: { keep: Int32Array | null; protect: number }[] = [];
  let ns: number[] = [];
  let B = 0;
  // Per KV head, the combined score of each of its n - w older slots.
  let acc: Float64Array[] = [];
  for (let l = 0; l < numLayers; l++) {
    const view = viewOf(l);
    checkView(def.name, view);
    if (l === 0) {
      ns = view.heads.map((hv) => hv.n);
      if (across.heads === 'max' && ns.some((n) => n !== ns[0])) {
        throw new KvsieveError(`${def.name}: one keep list for every KV head needs the heads to hold the same slots, they hold ${ns.join(', ')}`);
      }
      B = budgetOf(def, o, view);
      ruled = ns.map((_, h) => ruledKeep(o, view, h, B, w));
      if (ruled.every((r) => r.keep !== null)) return ruled.map((r) => r.keep!);
      acc = ns.map((n) => new Float64Array(Math.max(0, n - w)).fill(across.layers === 'max' ? -Infinity : 0));
    } else if (view.heads.some((hv, h) => hv.n !== ns[h])) {
      throw new KvsieveError(
        `${def.name}: layer ${l} holds ${view.heads.map((hv) => hv.n).join(', ')} slots per KV head and layer 0 ${ns.join(', ')}: a cross-layer press needs the same slots in every layer`,
      );
    }
    const prepared = def.prepare?.(o, view);
    ns.forEach((n, h) => {
      if (ruled[h]!.keep) return;
      const m = n - w;
      const s = ws.f32('compress.scores', m);
      def.score!(o, view, h, m, s, prepared);
      const a = acc[h]!;
      // NaN counts as the lowest score, as in the selection.
      if (across.layers === 'max') for (let j = 0; j < m; j++) a[j] = Math.max(a[j]!, s[j]! !== s[j]! ? -Infinity : s[j]!);
      else for (let j = 0; j < m; j++) a[j] = a[j]! + (s[j]! !== s[j]! ? -Infinity : s[j]!);
    });
  }
  if (across.layers === 'mean') for (const a of acc) for (let j = 0; j < a.length; j++) a[j] = a[j]! / numLayers;
  if (across.heads === 'max') {
    const all = acc.find((_, h) => !ruled[h]!.keep)!;
    acc.forEach((a, h) => {
      if (a !== all && !ruled[h]!.keep) for (let j = 0; j < all.length; j++) all[j] = Math.max(all[j]!, a[j]!);
    });
    acc = acc.map(() => all);
  }
  return ruled.map((r, h) => r.keep ?? keepTopPlusWindow(acc[h]!, ns[h]!, B, w, r.protect));
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
  if (def.keep) return checkKeep(def, options, def.keep(options, view), view);
  // A cross-layer press given one layer: that layer alone (its heads still share a list under heads: 'max').
  if (acrossOf(def, options)) return compressAcrossLayers(def, options, 1, () => view);
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
