/** kvsieve's public API. */
export { loadModel, Model, ChatSession } from './api.js';
export type { GenerateOptions, LoadOptions, ModelInfo } from './api.js';
export type { GenerationChunk, GenerationResult, GenerationStream } from './generate/batcher.js';
export type { StopReason, TokenLogprob } from './generate/sequence.js';
export type { SamplingOptions } from './generate/sampler.js';
export { KvsieveError, InternalError, type KvsieveErrorOptions } from './core/errors.js';
export { parseHfConfig } from './formats/hf-config.js';
export { kvBytesPerToken, type ModelConfig } from './core/model-config.js';
export { DEFAULT_MODEL, modelSearchPath, resolveModel } from './model/resolve.js';
export { openSafetensors, writeSafetensors, writeShardedSafetensors } from './formats/safetensors.js';
export type { Tokenizer, ChatMessage } from './tokenizer/types.js';
export type { Backend } from './backend/backend.js';
export { ReferenceBackend } from './backend/reference.js';
export {
  select,
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
} from './press/index.js';
export { createOpenAiServer, listen, type ServerOptions, type ReasoningFormat } from './server/openai.js';
export { localEngine, type Engine, type EngineRequest, type EngineSink, type EngineInfo } from './server/engine.js';
export { WorkerEngine, type WorkerLoadOptions } from './server/worker-engine.js';
export type { KvPoolStats } from './generate/pool.js';
export { compressionFor, type CompressionSettings, type CompressionSchedule, type CompressionTrigger } from './generate/compression.js';
export { calibrateQFilters } from './calibrate/q-filters.js';
export { readQFilters, writeQFilters } from './formats/q-filters.js';
export { extractAnswer, answersEqual } from './eval/answer.js';
