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
 */
import { KvsieveError } from '../core/errors.js';
import { compressWith } from './define.js';
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
  return {
    layer: view.layer ?? 0,
    numLayers: view.numLayers ?? 1,
    numKvHeads: H,
    numQHeads: Q,
    headDim: d,
    heads: keys.map((k, h) => ({ n, keys: k, values: values[h]! })),
    queries: q.parts,
    w: q.rows,
  };
}

/**
 * Per KV head, the ascending indices kept by `press` (a built-in name or a `definePress` definition)
 * with `options` (partial or resolved).
 */
export function select(press: string | PressDefinition, options: PressOptionsInput | PressOptions | undefined, view: SelectView): number[][] {
  const lv = toLayerView(view);
  const def = lookupPress(press);
  const o = resolvePressOptions(def, options, {
    phase: options?.phase ?? 'decode',
    numLayers: lv.numLayers,
    numKvHeads: lv.numKvHeads,
    headDim: lv.headDim,
  });
  return compressWith(def, o, lv).map((k) => Array.from(k));
}
