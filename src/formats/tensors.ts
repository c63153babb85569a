/**
 * Element types kvsieve reads from checkpoints. U8: bytes (GPT-OSS's MXFP4 blocks and scales), read
 * as float32 by value (0..255) and meant to be reinterpreted (formats/gpt-oss.ts).
 */
export type DType = 'F32' | 'F16' | 'BF16' | 'U8';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** The file the bytes live in (for error messages). */
  file: string;
}

/**
 * A read-only set of named tensors backed by one or more files. Tensors are read on demand
 * straight from the file into a fresh Float32Array (F16/BF16 are widened while reading), so the
 * caller holds the only copy of the weights.
 */
export interface TensorSource {
  /** Every tensor, in a stable order. */
  list(): TensorInfo[];
  has(name: string): boolean;
  /** Throws a KvsieveError naming the tensor (and where it was looked for) when absent. */
  info(name: string): TensorInfo;
  /** Reads one tensor as float32, row-major in its stored shape. */
  readF32(name: string): Float32Array;
  /**
   * Where the source can hand out a tensor's bytes as stored: its element type (ggml's names: F32,
   * F16, BF16, Q8_0, Q4_0, ...), else null (e.g. rows that are permuted while reading as float32).
   */
  storedType?(name: string): string | null;
  /** The bytes of a tensor whose storedType is not null: row-major, rows in the order readF32 gives. */
  readStored?(name: string): Uint8Array;
  /** Releases file handles. */
  close(): void;
}
