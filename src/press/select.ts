/**
 * select: the pure, array-friendly entry point (tests, tools, parity checks). Adapts to compressLayer.
 *
 * view.keys / view.values: nested number arrays [numKvHeads][n][headDim], or one Float32Array of
 *   numKvHeads * n * headDim values (head, then token, then dim). Keys after RoPE. values may be omitted
 *   (only mix-kv reads them).
 * view.queries: nested [numQHeads][w][headDim], or one Float32Array of numQHeads * w * headDim values (w is
 *   deduced); the last w queries, those of the last w cached tokens. May be omitted (w = 0) for presses that
 *   need no queries. Query head g belongs to KV head floor(g / (numQHeads / numKvHeads)).
 * layer / numLayers default to 0 / 1; options.phase defaults to 'decode'.
 * promptLength (P), processed (T), positions (per KV head, [numKvHeads][n] or flat), sequenceId and
 * ropeInvFreq (or ropeTheta: theta^(-2f/headDim)) are the LayerView's fields of those names; left out,
 * P = 0, slot j has position j, T = the largest position + 1. triattention needs the rope; random-pp
 * draws by sequenceId.
 * selectLayers(press, options, views) takes every layer's view: a cross-layer press (triattention's
 * default) gives each KV head one list for all layers.
 */
import { KvsieveError } from '../core/errors.js';
import { acrossOf, compressAcrossLayers, compressWith } from './define.js';
import { lookupPress, resolvePressOptions } from './table.js';
import type { LayerView, PressDefinition, PressOptions, PressOptionsInput } from './types.js';

type Tensor3 = number[][][] | Float32Array;

export interface SelectView {
  numKvHeads: number;
  numQHeads: number;
  headDim: number;
  n: number;
  keys: Tensor3;
  values?: Tensor3;
  queries?: Tensor3;
  layer?: number;
  numLayers?: number;
  promptLength?: number;
  processed?: number;
  positions?: number[][] | Int32Array;
  sequenceId?: number;
  ropeInvFreq?: ArrayLike<number>;
  ropeTheta?: number;
}

function perHead(name: string, t: Tensor3, heads: number, rows: number | null, d: number): { rows: number; parts: Float32Array[] } {
  const fail = (what: string) => new KvsieveError(`select: view.${name}: ${what}`);
  if (t instanceof Float32Array) {
    const r = rows ?? t.length / (heads * d);
    if (!Number.isInteger(r) || t.length !== heads * r * d) throw fail(`a Float32Array of ${t.length} values is not ${heads} heads x ${rows ?? 'w'} x ${d}`);
    return { rows: r, parts: Array.from({ length: heads }, (_, h) => t.subarray(h * r * d, (h + 1) * r * d)) };
  }
  if (!Array.isArray(t) || t.length !== heads) throw fail(`must hold ${heads} heads, got ${Array.isArray(t) ? t.length : typeof t}`);
  const r = rows ?? (t[0]?.length ?? 0);
  const parts = t.map((head, h) => {
    if (!Array.isArray(head) || head.length !== r) throw fail(`head ${h} must hold ${r} rows`);
    const out = new Float32Array(r * d);
    head.forEach((row, i) => {
      if (!Array.isArray(row) && !((row as unknown) instanceof Float32Array)) throw fail(`head ${h} row ${i} is not an array`);
      if (row.length !== d) throw fail(`head ${h} row ${i} has ${row.length} values, headDim is ${d}`);
      for (let a = 0; a < d; a++) {
        const x = row[a]!;
        if (typeof x !== 'number' || !Number.isFinite(x)) throw fail(`head ${h} row ${i} holds a non-finite value`);
        out[i * d + a] = x;
      }
    });
    return out;
  });
  return { rows: r, parts };
}

/** The LayerView compressLayer takes, from a SelectView. */
export function toLayerView(view: SelectView): LayerView {
  const { numKvHeads: H, numQHeads: Q, headDim: d, n } = view;
  const keys = perHead('keys', view.keys, H, n, d).parts;
  const values = view.values ? perHead('values', view.values, H, n, d).parts : keys.map(() => new Float32Array(0));
  const q = view.queries ? perHead('queries', view.queries, Q, null, d) : { rows: 0, parts: Array.from({ length: Q }, () => new Float32Array(0)) };
  const fail = (what: string) => new KvsieveError(`select: view.${what}`);
  let positions: Int32Array[] | undefined;
  if (view.positions !== undefined) {
    const flat = view.positions instanceof Int32Array ? view.positions : null;
    if (flat ? flat.length !== H * n : !Array.isArray(view.positions) || view.positions.length !== H) throw fail(`positions must hold ${H} heads x ${n} positions`);
    positions = Array.from({ length: H }, (_, h) => {
      const p = flat ? flat.subarray(h * n, (h + 1) * n) : Int32Array.from((view.positions as number[][])[h] ?? []);
      if (p.length !== n) throw fail(`positions of head ${h} must hold ${n} positions`);
      for (let j = 0; j < n; j++) if (!(Number.isInteger(p[j]) && p[j]! >= 0 && (j === 0 || p[j]! > p[j - 1]!))) throw fail(`positions of head ${h} must ascend from 0 or more`);
      return p;
    });
  }
  for (const k of ['promptLength', 'processed', 'sequenceId'] as const) {
    const v = view[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw fail(`${k} must be a whole number >= 0, got ${v}`);
  }
  let rope: ArrayLike<number> | undefined = view.ropeInvFreq;
  if (rope === undefined && view.ropeTheta !== undefined) {
    if (!(view.ropeTheta > 1)) throw fail(`ropeTheta must be a number > 1, got ${view.ropeTheta}`);
    rope = Float64Array.from({ length: d / 2 }, (_, f) => Math.pow(view.ropeTheta!, (-2 * f) / d));
  }
  return {
    layer: view.layer ?? 0,
    numLayers: view.numLayers ?? 1,
    numKvHeads: H,
    numQHeads: Q,
    headDim: d,
    heads: keys.map((k, h) => ({ n, keys: k, values: values[h]! })),
    queries: q.parts,
    w: q.rows,
    ...(view.promptLength !== undefined ? { promptLength: view.promptLength } : {}),
    ...(view.processed !== undefined ? { processed: view.processed } : {}),
    ...(positions ? { positions } : {}),
    ...(view.sequenceId !== undefined ? { sequenceId: view.sequenceId } : {}),
    ...(rope ? { ropeInvFreq: rope } : {}),
  };
}

/** The options of `def` resolved for a layer view's model. */
function resolveFor(def: PressDefinition, options: PressOptionsInput | PressOptions | undefined, lv: LayerView): PressOptions {
  return resolvePressOptions(def, options, {
    phase: options?.phase ?? 'decode',
    numLayers: lv.numLayers,
    numKvHeads: lv.numKvHeads,
    numQHeads: lv.numQHeads,
    headDim: lv.headDim,
  });
}

/**
 * Per KV head, the ascending indices kept by `press` (a built-in name or a `definePress` definition)
 * with `options` (partial or resolved).
 */
export function select(press: string | PressDefinition, options: PressOptionsInput | PressOptions | undefined, view: SelectView): number[][] {
  const lv = toLayerView(view);
  const def = lookupPress(press);
  return compressWith(def, resolveFor(def, options, lv), lv).map((k) => Array.from(k));
}

/**
 * Per layer, per KV head, the ascending indices kept, from the views of every layer (views[l] is layer
 * l; `layer` and `numLayers` are set from the position in the list). A cross-layer press (triattention
 * with selection per-kv-head or union) keeps the same list in every layer; any other press selects
 * each layer on its own, as select() does.
 */
export function selectLayers(press: string | PressDefinition, options: PressOptionsInput | PressOptions | undefined, views: readonly SelectView[]): number[][][] {
  const lvs = views.map((v, l) => toLayerView({ ...v, layer: l, numLayers: views.length }));
  if (lvs.length === 0) return [];
  const def = lookupPress(press);
  const o = resolveFor(def, options, lvs[0]!);
  if (acrossOf(def, o)) {
    const keep = compressAcrossLayers(def, o, lvs.length, (l) => lvs[l]!).map((k) => Array.from(k));
    return lvs.map(() => keep);
  }
  return lvs.map((lv) => compressWith(def, o, lv).map((k) => Array.from(k)));
}
