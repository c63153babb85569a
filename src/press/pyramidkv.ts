/**
 * pyramidkv: SnapKV scores with per-layer budgets shrinking with depth. With base budget b and L layers:
 * min = b / beta, max = 2b - min, budget_l = round(max - l (max - min) / (L - 1)).
 */
import { KvsieveError } from '../core/errors.js';
import { definePress } from './define.js';
import { roundHalfEven } from './numeric.js';
import { option } from './options.js';
import { SNAP_OPTIONS, snapkvScores } from './snapkv.js';

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

const BETA = option.number({
  name: 'beta',
  description: 'pyramid steepness: the last layer keeps budget / beta, the first 2 budget - budget / beta',
  default: 20,
  min: 1,
  range: 'number >= 1 (1: uniform), budget / beta >= 0.5',
});

export const pyramidkv = definePress({
  name: 'pyramidkv',
  summary: 'snapkv scores with per-layer budgets shrinking with depth',
  options: [...SNAP_OPTIONS, BETA],
  needs: { queries: (o) => Math.max(1, o.window) },
  layerBudget: (o, layer, numLayers) => pyramidLayerBudget(o.budget, numLayers, o.beta, layer),
  check(o, ctx) {
    if (ctx.numLayers > 1 && pyramidLayerBudget(o.budget, ctx.numLayers, o.beta, ctx.numLayers - 1) < 1) {
      throw new KvsieveError(`${o.press}: option "beta" (${o.beta}) leaves the last layer no token: budget / beta must be at least 0.5`, { option: 'beta' });
    }
  },
  score: (o, view, h, m, out) => snapkvScores(o, view, h, m, out),
});
