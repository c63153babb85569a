/** pressScores: the raw scores of a scored press for one head (debugging, tests, reports). */
import { KvsieveError } from '../core/errors.js';
import { SCORERS } from './scorers.js';
import type { LayerView, PressOptions, ScoredPressName } from './types.js';

/**
 * Scores (higher = keep) of the m = n - min(window, n) oldest slots of KV head h, with the window of the press
 * (for ada-kv, of its inner press). Returns a new array.
 */
export function pressScores(press: string, options: PressOptions, view: LayerView, h: number): Float32Array {
  const name = (press === 'ada-kv' ? options.inner : press) as ScoredPressName;
  const scorer = SCORERS[name];
  if (!scorer || options.press !== press) throw new KvsieveError(`${press}: options: not a scored press or not resolved for it`);
  const n = view.heads[h]!.n;
  const m = n - Math.min(n, scorer.window(options));
  const out = new Float32Array(m);
  scorer.score(options, view, h, m, out, scorer.prepare?.(options, view));
  return out;
}
