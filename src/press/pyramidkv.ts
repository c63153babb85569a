/**
 * pyramidkv: SnapKV scores with per-layer budgets shrinking with depth. With base budget b and L layers:
 * min = b / beta, max = 2b - min, budget_l = round(max - l (max - min) / (L - 1)).
 */
import { roundHalfEven } from './select-util.js';
import { snapkvScores } from './snapkv.js';
import type { Scorer } from './types.js';

/**
 * Budget of layer l. Rounds half to even (Python's round), so with an integer b the layer budgets,
 * symmetric about b, sum to exactly L * b; with other rounding they sum to L * b within L / 2.
 */
export function pyramidLayerBudget(b: number, numLayers: number, beta: number, layer: number): number {
  if (numLayers <= 1) return b;
  const min = b / beta;
  const max = 2 * b - min;
  return roundHalfEven(max - (layer * (max - min)) / (numLayers - 1));
}

/** Per-layer budgets, deepest smallest; they sum to numLayers * b within rounding. */
export function pyramidBudgets(b: number, numLayers: number, beta = 20): number[] {
  return Array.from({ length: numLayers }, (_, l) => pyramidLayerBudget(b, numLayers, beta, l));
}

export const pyramidkv: Scorer = {
  window: (o) => o.window,
  budget: (o, view) => pyramidLayerBudget(o.budget, view.numLayers, o.beta, view.layer),
  score: (o, view, h, m, out) => snapkvScores(o, view, h, m, out, 'pyramidkv'),
};
