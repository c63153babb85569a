/**
 * The package's browser entry (the `browser` condition of `kvsieve`'s exports): the engine from bytes
 * and URLs, with no Node-only call. `loadBrowserModel(files)` gives a Model on this thread (one kernel
 * thread); in a Web Worker script `serveEngine()` serves load / generate / cancel messages, which a
 * page sends through `EngineClient` (multi-threaded kernels when the page is cross-origin isolated).
 */
export { Model, ChatSession, type GenerateOptions, type ModelInfo, type BatchingOptions } from '../api/model.js';
export { modelFromFiles, modelFormatOf, type ModelFiles } from '../api/files.js';
export { parseTrace, traceHeader, traceResult, TRACE_VERSION, type Trace, type TraceHeader, type TraceResult, type TraceStep } from '../api/trace.js';
export type { GenerationChunk, GenerationResult, GenerationStream } from '../generate/batcher.js';
export type { KvTraceEvent, StopReason, TokenLogprob } from '../generate/sequence.js';
export type { CompressionSettings } from '../generate/compression.js';
export { KvsieveError, InternalError } from '../core/errors.js';
export { browserThreads, browserRelaxedSimd, createBrowserKernels, type KernelSource } from '../backend/wasm/browser.js';
export { loadBrowserModel, defaultKernelUrls, type BrowserLoadOptions } from './engine.js';
export { fetchFile, fetchModelFiles, hubModelUrls, HUB_ENDPOINT, MODEL_CACHE, type FetchOptions, type FileProgress } from './load.js';
export { serveEngine } from './worker.js';
export { EngineClient, EngineError, type EngineStream, type WorkerLike } from './client.js';
export type { FromEngine, LoadedModel, ModelSource, PlainGenerateOptions, ToEngine } from './protocol.js';
export { PRESS_NAMES, PRESSES } from '../press/table.js';
