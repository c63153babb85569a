/**
 * h2o (heavy hitters): score = the slot's accumulated attention (the running sum of the attention it received,
 * averaged over the query heads of the group). Keep the top B - w plus the last w.
 *
 * State: the running sums come from the view (`LayerView.accumulatedAttention`) or the `accumulatedAttention`
 * option, [n] per KV head. Without them the sums are computed from the observation queries the view holds
 * (causal mask, mean over the group, summed over the queries), the prefill rule restricted to those queries.
 */
import { KvsieveError } from '../core/errors.js';
import { observationScores } from './attention.js';
import type { Scorer } from './types.js';

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

export const h2o: Scorer = {
  window: (o) => o.window,
  budget: (o) => o.budget,
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
};
