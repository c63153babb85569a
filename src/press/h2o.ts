/**
 * h2o (heavy hitters): score = the slot's accumulated attention (the running sum of the attention it received,
 * averaged over the query heads of the group). Keep the top B - w plus the last w.
 *
 * State: the running sums come from the view (`LayerView.accumulatedAttention`) or the `accumulatedAttention`
 * option, [n] per KV head. Without them the sums are computed from the observation queries the view holds
 * (causal mask, mean over the group, summed over the queries), the prefill rule restricted to those queries.
 */
import { KvsieveError } from '../core/errors.js';
import { definePress } from './define.js';
import { observationScores } from './observation.js';
import { BUDGET, describeValue, option, window } from './options.js';

/**
 * One decode step of the running sums of one KV head: acc[j] += mean over the group's query heads of probs[g][j].
 * `probs` holds the attention probabilities of the current token for each query head of the group, [n] each.
 */
export function h2oAccumulate(acc: Float32Array, probs: ArrayLike<number>[], n: number): void {
  const inv = 1 / probs.length;
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (const p of probs) s += p[j]!;
    acc[j] = acc[j]! + s * inv;
  }
}

const NORMALIZE = option.boolean({
  name: 'normalize',
  description: 'divide each running sum by the number of queries that saw the token (n - j)',
  default: false,
});

const ACCUMULATED = option.custom({
  name: 'accumulatedAttention',
  type: 'state',
  description: 'running attention sums per slot, [kvHeads][n] (the engine passes them in the layer view)',
  defaultText: 'summed from the observation queries',
  range: 'one array per KV head, n values',
  convert(press, v, ctx): Float32Array[] {
    if (!Array.isArray(v) || v.length !== ctx.numKvHeads) {
      throw new KvsieveError(`${press}: option "accumulatedAttention" must hold one array per KV head (${ctx.numKvHeads}), got ${describeValue(v)}`, {
        option: 'accumulatedAttention',
      });
    }
    return v.map((row: unknown, h) => {
      if (!(row instanceof Float32Array) && !(Array.isArray(row) && row.every((x) => typeof x === 'number' && Number.isFinite(x)))) {
        throw new KvsieveError(`${press}: option "accumulatedAttention" of KV head ${h} must be a Float32Array or an array of finite numbers`, {
          option: 'accumulatedAttention',
        });
      }
      return row instanceof Float32Array ? row : Float32Array.from(row as number[]);
    });
  },
});

export const h2o = definePress({
  name: 'h2o',
  summary: 'heavy hitters: top by accumulated attention plus the recent window',
  options: [BUDGET, window(64, 8, 0, 'newest tokens always kept'), NORMALIZE, ACCUMULATED],
  needs: { attentionSums: true },
  score(o, view, h, m, out) {
    const n = view.heads[h]!.n;
    const acc = view.accumulatedAttention?.[h] ?? o.accumulatedAttention?.[h];
    if (acc) {
      if (acc.length < n) {
        throw new KvsieveError(`h2o: accumulatedAttention of KV head ${h} holds ${acc.length} sums but the head holds ${n} tokens`);
      }
      for (let j = 0; j < m; j++) out[j] = o.normalize ? acc[j]! / (n - j) : acc[j]!;
      return;
    }
    if (view.w < 1) {
      throw new KvsieveError('h2o: accumulatedAttention: none given and the layer view holds no observation queries');
    }
    // Every observation query sees every scored slot, so the (n - j) normalisation is a constant here.
    observationScores(view, h, { queries: view.w, scored: m, softmax: 'causal', gqa: 'mean', pooling: null, kernel: 1, sum: true }, out);
  },
});
