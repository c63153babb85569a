/**
 * The slice of the WebAssembly JS API the kernels use, typed locally: the project compiles with
 * lib ES2022 + node types, neither of which declares the WebAssembly global. Going through this
 * module (instead of an ambient declaration) cannot clash with a DOM lib added later.
 */
/** A compiled module (opaque; structured-clonable to workers). */
export interface WasmModule {
  readonly [Symbol.toStringTag]: string;
}

export interface WasmMemory {
  /** A SharedArrayBuffer for shared memories; a fresh, longer one after grow(). */
  readonly buffer: ArrayBufferLike;
  /** Grows by `pages` 64 KiB pages, returning the previous size in pages. */
  grow(pages: number): number;
}

export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

export interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  compile(bytes: Uint8Array): Promise<WasmModule>;
}

export const wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
