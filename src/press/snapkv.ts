/**
 * snapkv: attention of the w observation queries (softmax over all n keys, causal inside the window),
 * window columns dropped, mean over the queries, pooled (avg kernel 5 by default), GQA mean over the group.
 */
import { observationCount, observationScores } from './attention.js';
import type { LayerView, PressOptions, Scorer } from './types.js';

/** SnapKV scores of the m oldest slots of head h (shared by pyramidkv and mix-kv). */
export function snapkvScores(o: PressOptions, view: LayerView, h: number, m: number, out: Float32Array, press = 'snapkv'): void {
  observationScores(
    view,
    h,
    {
      queries: observationCount(view, o.window, press),
      scored: m,
      softmax: 'causal',
      gqa: o.gqa,
      pooling: o.pooling,
      kernel: o.kernel,
    },
    out,
  );
}

export const snapkv: Scorer = {
  window: (o) => o.window,
  budget: (o) => o.budget,
  score: (o, view, h, m, out) => snapkvScores(o, view, h, m, out),
};
