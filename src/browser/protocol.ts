/**
 * The messages between a page and the engine in its Web Worker (worker.ts serves them, client.ts sends
 * them). Everything that crosses is plain data: no functions, no class instances.
 */
import type { ModelFiles } from '../api/files.js';
import type { ModelInfo } from '../api/model.js';
import type { TraceHeader, TraceResult } from '../api/trace.js';
import type { KernelSource } from '../backend/wasm/browser.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { GenerationResult } from '../generate/batcher.js';
import type { KvTraceEvent } from '../generate/sequence.js';
import type { BrowserLoadOptions } from './engine.js';
import type { FileProgress } from './load.js';

/** Where the model comes from: a Hub id, file URLs by name, or the files' bytes (a file input). */
export type ModelSource = { hub: string } | { urls: Record<string, string> } | { files: ModelFiles };

/** The generation options that can cross to the worker (GenerateOptions without callbacks or signals). */
export interface PlainGenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  stop?: string[];
  ignoreEos?: boolean;
  kvDtype?: 'f32' | 'f16' | 'int8';
  compression?: CompressionSettings & { press: string };
  /** Send a trace of the KV cache (a header, then per step the positions held; see KvTraceEvent). */
  trace?: boolean;
}

export type ToEngine =
  | { type: 'load'; source: ModelSource; options: Omit<BrowserLoadOptions, 'onStep'> & { wasm?: KernelSource; cache?: string | false; endpoint?: string } }
  | { type: 'generate'; id: number; prompt: string; options: PlainGenerateOptions }
  | { type: 'cancel'; id: number };

export interface LoadedModel {
  info: ModelInfo;
  /** Threads the kernels run on. */
  threads: number;
  crossOriginIsolated: boolean;
}

export type FromEngine =
  | { type: 'progress'; progress: FileProgress }
  | { type: 'loaded'; model: LoadedModel }
  | { type: 'header'; id: number; header: TraceHeader }
  | { type: 'chunk'; id: number; text: string; ids: number[] }
  | { type: 'trace'; id: number; event: KvTraceEvent }
  | { type: 'done'; id: number; result: GenerationResult; trace: TraceResult }
  | { type: 'error'; id: number | null; message: string; name: string };
