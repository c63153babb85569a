/**
 * kvsieve's public API (the package's root entry). Its types need no @types/node: environments are
 * plain records (Env), and what needs Node's own types lives in other entries: `kvsieve/server`
 * (the OpenAI-compatible HTTP server) and `kvsieve/eval` (grading and reports, with their optional
 * packages).
 */
export { loadModel, loadModelFromFiles, Model, ChatSession } from './api.js';
export type { GenerateOptions, LoadOptions, ModelFiles, ModelInfo } from './api.js';
export type { GenerationChunk, GenerationResult, GenerationStream } from './generate/batcher.js';
export type { StopReason, TokenLogprob } from './generate/sequence.js';
export type { SamplingOptions } from './generate/sampler.js';
export { KvsieveError, InternalError, type KvsieveErrorOptions } from './core/errors.js';
export { parseHfConfig } from './formats/hf-config.js';
export { kvBytesPerToken, type ModelConfig } from './core/model-config.js';
export { DEFAULT_MODEL, downloadModel, locateModel, modelSearchPath, resolveModel } from './model/resolve.js';
export type { DownloadedModel, HubOptions, LocateOptions, ResolvedModel } from './model/resolve.js';
export { DEFAULT_MODEL_SOURCE, modelFiles, parseHubModelId, type HubModelId } from './model/hub-model.js';
export { downloadRepo, downloadSnapshot, type DownloadOptions, type DownloadProgress, type RepoSnapshot } from './hub/download.js';
export { hubCacheDir, resolveCachedRepo } from './hub/cache.js';
export type { Env } from './core/env.js';
export { openSafetensors, writeSafetensors, writeShardedSafetensors } from './formats/safetensors.js';
export type { Tokenizer, ChatMessage } from './tokenizer/types.js';
export type { Backend } from './backend/backend.js';
export { ReferenceBackend } from './backend/reference.js';
export {
  select,
  selectLayers,
  compressLayer,
  resolvePressOptions,
  definePress,
  option,
  BUDGET,
  SINKS,
  POOLING,
  GQA,
  KERNEL_BY_POOLING,
  window,
  protectPrompt,
  protectedSlots,
  BUILTIN_PRESSES,
  PRESSES,
  PRESS_NAMES,
  formatPresses,
  pyramidBudgets,
} from './press/index.js';
export type {
  LayerView,
  HeadView,
  PressDefinition,
  PressNeeds,
  PressOptions,
  PressOptionSpec,
  PressOptionsInput,
  PressName,
  ResolvedOptions,
  SelectView,
  TriAttentionStats,
} from './press/index.js';
export type { KvPoolStats } from './generate/pool.js';
export { compressionFor, type CompressionSettings, type CompressionSchedule, type CompressionTrigger } from './generate/compression.js';
export { calibrateQFilters } from './calibrate/q-filters.js';
export { readQFilters, writeQFilters } from './formats/q-filters.js';
export { calibrateTriAttention, textSequences, generatedSequences } from './calibrate/triattention.js';
export { readTriAttentionStats, writeTriAttentionStats } from './formats/triattention.js';
