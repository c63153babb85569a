/** The presses: KV-cache compression methods (docs/methods.md), one definition each, and their table. */
export type {
  AcrossLayers,
  BaseOptions,
  GqaMode,
  HeadView,
  LayerView,
  OptionType,
  Phase,
  Pooling,
  PressDefinition,
  PressNeeds,
  PressOptions,
  PressOptionSpec,
  PressOptionsInput,
  ResolveContext,
  ResolvedOptions,
} from './types.js';
export { definePress, needsOf, layerBudget, windowOf, isScored, acrossOf, protectedPrompt, type ScoredPressInit, type KeepPressInit } from './define.js';
export { protectPrompt, promptOverflow, PROMPT_IN_BUDGET, PROMPT_OPTIONS, protectedSlots, type PromptOverflow } from './prompt.js';
export { option, BUDGET, SINKS, POOLING, GQA, KERNEL_BY_POOLING, window, flatTensor } from './options.js';
export {
  BUILTIN_PRESSES,
  PRESSES,
  PRESS_NAMES,
  SCORED_PRESS_NAMES,
  lookupPress,
  pressName,
  pressLabel,
  pressOptionSpecs,
  resolvePressOptions,
  parsePressFlag,
  pressFlags,
  formatPresses,
  compressLayer,
  pressScores,
  type PressName,
} from './table.js';
export { select, selectLayers, toLayerView, type SelectView } from './select.js';
export { budgetFromRatio, keepNewest, keepTopPlusWindow, topKAscending } from './keep-lists.js';
export { pool1d } from './numeric.js';
export { observationScores, softmaxInPlace, type ObservationSpec } from './observation.js';
export { streamingKeep } from './streaming-llm.js';
export { h2oAccumulate } from './h2o.js';
export { pyramidBudgets, pyramidLayerBudget } from './pyramidkv.js';
export { adaKvKeep } from './ada-kv.js';
export { qFilterFromQueries, kvFiltersFromQueryFilters } from './q-filters.js';
export { redundancyColumnMeans } from './r-kv.js';
export { headRedundancy, meanUnitKey } from './mix-kv.js';
export { randomStreamSeed } from './random-pp.js';
export { geometricOffsets, type TriAttentionStats } from './triattention.js';
