/** kvsieve's public API. */
export { loadModel, Model } from './api.js';
export type { GenerateOptions, GenerationStream, LoadOptions, ModelInfo } from './api.js';
export type { GenerationChunk, GenerationResult } from './generate/run.js';
export type { StopReason } from './generate/sequence.js';
export type { SamplingOptions } from './generate/sampler.js';
export { KvsieveError } from './errors.js';
export { parseHfConfig, kvBytesPerToken, type ModelConfig } from './model/config.js';
export { DEFAULT_MODEL, modelSearchPath, resolveModel } from './model/resolve.js';
export { openSafetensors, writeSafetensors, writeShardedSafetensors } from './formats/safetensors.js';
export type { Tokenizer, ChatMessage } from './tokenizer/types.js';
export type { Backend } from './backend/backend.js';
export { ReferenceBackend } from './backend/reference.js';
