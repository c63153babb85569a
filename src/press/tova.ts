/**
 * tova: score = attention of the LAST query only (softmax over all n keys, its own included), averaged over ALL
 * query heads of the layer (every KV head gets the same scores). Keeps the top B - 1 of the n - 1 older tokens
 * plus the newest (forceNewest, kvpress), or the top B of all n (the TOVA paper).
 *
 * When the heads hold different numbers of tokens (after ada-kv) their slots are not aligned, so the average
 * is then taken over the query heads of each KV head's group only.
 */
import { KvsieveError } from '../core/errors.js';
import { definePress } from './define.js';
import { ws } from './numeric.js';
import { attentionRow } from './observation.js';
import { BUDGET, option } from './options.js';
import type { LayerView } from './types.js';

function lastRowOrThrow(view: LayerView): number {
  if (view.w < 1) throw new KvsieveError('tova: queries: the layer view holds no observation query (w = 0)');
  return view.w - 1;
}

/** Mean over query heads g0..g1-1 of the last query's attention over KV head h(g)'s n keys, into out[0..n). */
function lastQueryMean(view: LayerView, g0: number, g1: number, n: number, out: Float64Array): void {
  const G = view.numQHeads / view.numKvHeads;
  const row = ws.f64('tova.row', n);
  const last = lastRowOrThrow(view);
  out.fill(0, 0, n);
  for (let g = g0; g < g1; g++) {
    attentionRow(view, g, last, Math.floor(g / G), n, row);
    for (let j = 0; j < n; j++) out[j] = out[j]! + row[j]!;
  }
  const inv = 1 / (g1 - g0);
  for (let j = 0; j < n; j++) out[j] = out[j]! * inv;
}

const FORCE_NEWEST = option.boolean({
  name: 'forceNewest',
  description: 'always keep the newest token (kvpress); false: top budget of all n (TOVA paper)',
  default: true,
});

export const tova = definePress({
  name: 'tova',
  summary: 'attention of the last query, averaged over all query heads of the layer',
  options: [BUDGET, FORCE_NEWEST],
  needs: { queries: () => 1 },
  window: (o) => (o.forceNewest ? 1 : 0),
  prepare(_o, view) {
    const n = view.heads[0]?.n ?? 0;
    if (!view.heads.every((hv) => hv.n === n)) return null;
    const avg = ws.f64('tova.avg', n);
    lastQueryMean(view, 0, view.numQHeads, n, avg);
    return avg;
  },
  score(_o, view, h, m, out, prepared) {
    let avg = prepared as Float64Array | null;
    if (!avg) {
      const G = view.numQHeads / view.numKvHeads;
      avg = ws.f64('tova.group', view.heads[h]!.n);
      lastQueryMean(view, h * G, (h + 1) * G, view.heads[h]!.n, avg);
    }
    for (let j = 0; j < m; j++) out[j] = avg[j]!;
  },
});
