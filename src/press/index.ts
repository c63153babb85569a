/** The presses: KV-cache compression methods (see /shared/docs/methods.md). */
export type {
  GqaMode,
  HeadView,
  LayerView,
  Phase,
  Pooling,
  PressName,
  PressOptions,
  PressOptionsInput,
  Scorer,
  ScoredPressName,
} from './types.js';
export { PRESS_NAMES, SCORED_PRESS_NAMES } from './types.js';
export {
  PRESSES,
  pressOptionSpecs,
  type OptionName,
  type OptionType,
  type PressInfo,
  type PressOptionSpec,
  type ResolveContext,
} from './registry.js';
export { formatPresses, parsePressFlag, resolvePressOptions } from './options.js';
export { compressLayer } from './compress.js';
export { select, toLayerView, type SelectView } from './select.js';
export { pressScores } from './scores.js';
export { budgetFromRatio, keepNewest, keepTopPlusWindow, pool1d, topKAscending } from './select-util.js';
export { observationScores, softmaxInPlace, type ObservationSpec } from './attention.js';
export { streamingKeep } from './streaming-llm.js';
export { h2oAccumulate } from './h2o.js';
export { pyramidBudgets, pyramidLayerBudget } from './pyramidkv.js';
export { adaKvKeep } from './ada-kv.js';
export { qFilterFromQueries, kvFiltersFromQueryFilters } from './q-filters.js';
export { redundancyColumnMeans } from './r-kv.js';
export { headRedundancy, meanUnitKey } from './mix-kv.js';
