/**
 * snapkv: attention of the w observation queries (softmax over all n keys, causal inside the window),
 * window columns dropped, mean over the queries, pooled (avg kernel 5 by default), GQA mean over the group.
 */
import { definePress } from './define.js';
import { observationCount, observationScores } from './observation.js';
import { BUDGET, GQA, KERNEL_BY_POOLING, POOLING, window } from './options.js';
import type { GqaMode, LayerView, Pooling } from './types.js';

/** The options SnapKV's scores read (snapkv, pyramidkv, mix-kv). */
export interface SnapOptions {
  readonly press: string;
  readonly window: number;
  readonly kernel: number;
  readonly pooling: Pooling;
  readonly gqa: GqaMode;
}

/** The options of snapkv, shared by pyramidkv and mix-kv. */
export const SNAP_OPTIONS = [BUDGET, window(64, 8, 1), KERNEL_BY_POOLING, POOLING, GQA] as const;

/** SnapKV scores of the m oldest slots of head h (shared by pyramidkv and mix-kv). */
export function snapkvScores(o: SnapOptions, view: LayerView, h: number, m: number, out: Float32Array): void {
  observationScores(
    view,
    h,
    {
      queries: observationCount(view, o.window, o.press),
      scored: m,
      softmax: 'causal',
      gqa: o.gqa,
      pooling: o.pooling,
      kernel: o.kernel,
    },
    out,
  );
}

export const snapkv = definePress({
  name: 'snapkv',
  summary: 'pooled attention of the observation window over the older tokens',
  options: SNAP_OPTIONS,
  needs: { queries: (o) => Math.max(1, o.window) },
  score: (o, view, h, m, out) => snapkvScores(o, view, h, m, out),
});
