/** The scored presses by name (what compressLayer and ada-kv dispatch on). */
import { h2o } from './h2o.js';
import { knorm } from './knorm.js';
import { mixkv } from './mix-kv.js';
import { pyramidkv } from './pyramidkv.js';
import { qFilters } from './q-filters.js';
import { rkv } from './r-kv.js';
import { snapkv } from './snapkv.js';
import { tova } from './tova.js';
import type { Scorer, ScoredPressName } from './types.js';

export const SCORERS: Readonly<Record<ScoredPressName, Scorer>> = {
  h2o,
  tova,
  knorm,
  snapkv,
  pyramidkv,
  'q-filters': qFilters,
  'r-kv': rkv,
  'mix-kv': mixkv,
};
