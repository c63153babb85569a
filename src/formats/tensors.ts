/** Element types kvsieve reads from checkpoints. */
export type DType = 'F32' | 'F16' | 'BF16';

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
  /** Releases file handles. */
  close(): void;
}
