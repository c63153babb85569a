/** kvsieve's public API. */
export { loadModel, Model } from './api.js';
export type { GenerateOptions, LoadOptions, ModelInfo } from './api.js';
export type { GenerationChunk, GenerationResult, GenerationStream } from './generate/batcher.js';
export type { StopReason } from './generate/sequence.js';
export type { SamplingOptions } from './generate/sampler.js';
export { KvsieveError, InternalError, type KvsieveErrorOptions } from './core/errors.js';
export { parseHfConfig } from './formats/hf-config.js';
export { kvBytesPerToken, type ModelConfig } from './core/model-config.js';
export { DEFAULT_MODEL, modelSearchPath, resolveModel } from './model/resolve.js';
export { openSafetensors, writeSafetensors, writeShardedSafetensors } from './formats/safetensors.js';
export type { Tokenizer, ChatMessage } from './tokenizer/types.js';
export type { Backend } from './backend/backend.js';
export { ReferenceBackend } from './backend/reference.js';
export { select, compressLayer, resolvePressOptions, PRESSES, PRESS_NAMES, pyramidBudgets } from './press/index.js';
export type { LayerView, HeadView, PressOptions, PressOptionsInput, PressName, SelectView } from './press/index.js';
export { compressionFor, type CompressionSettings, type CompressionSchedule, type CompressionTrigger } from './generate/compression.js';
export { calibrateQFilters, readQFilters, writeQFilters } from './calibrate/q-filters.js';
export { extractAnswer, answersEqual } from './eval/answer.js';
