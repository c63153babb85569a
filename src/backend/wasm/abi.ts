/**
 * The binary interface between this TypeScript side and the kernel module (asm/): the numbers and
 * memory layouts both sides must agree on. asm/index.ts (job and task words, op codes), asm/common.ts
 * (type codes, row bytes), asm/attention.ts (KV head table) and asm/scores.ts (redundancy table) hold
 * the other half; a change to either side bumps ABI_VERSION on both.
 */
import type { KvDtype } from '../../core/kv-rows.js';
import type { WasmMemory } from './wasm-api.js';

/** Must match ABI_VERSION in asm/index.ts. */
export const ABI_VERSION = 12;

// ---- jobs and tasks (asm/index.ts) --------------------------------------------------------------
// A job: a 128-byte header (word 0 the task count, 1 the scratch base, 2 the per-thread scratch
// stride) followed by MAX_TASKS tasks of 32 words: op, units, align, the op's arguments from word 3,
// and in the last word the next unit to hand out.

export const TASK_WORDS = 32;
export const TASK_BYTES = TASK_WORDS * 4;
export const JOB_HEADER = 128;
/** Tasks one run()/runLocal() call can hold. */
export const MAX_TASKS = 64;

export const OP_MATVEC = 1;
export const OP_GATE_UP = 2;
export const OP_RMSNORM = 3;
export const OP_ROPE = 4;
export const OP_SOFTMAX = 5;
export const OP_SILU_GATE = 6;
export const OP_ADD = 7;
export const OP_ATTN = 8;
export const OP_KV_STORE = 9;
export const OP_EMBED = 10;
export const OP_SUM = 11;
export const OP_EXP = 12;
export const OP_DOTS = 13;
export const OP_REDUNDANCY = 14;
export const OP_QUANTIZE = 15;
export const OP_ATTN_SEGS = 16;
export const OP_REPACK_KQ = 17;

// ---- weights (asm/common.ts) --------------------------------------------------------------------

/**
 * q4_k / q5_k / q6_k: ggml's Q4_K / Q5_K / Q6_K superblocks as GGUF stores them (asm/kquant.ts); mxfp4: ggml's MXFP4
 * blocks (asm/mxfp4.ts). They are only ever taken as stored; the K-quants' bytes are re-laid as they
 * arrive, code bytes within each superblock and Q4_K / Q5_K superblocks across groups of four rows
 * (the same size; op.repackKQuant, which matrixFromBytes runs).
 */
export type WeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k' | 'mxfp4';

export const WT_CODE: Record<WeightType, number> = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_k: 5, q6_k: 6, mxfp4: 7, q5_k: 8 };

/** Values per block of the block types (a row holds whole blocks). */
export const BLOCK_VALUES: Partial<Record<WeightType, number>> = { q8_0: 32, q4_0: 32, q4_k: 256, q5_k: 256, q6_k: 256, mxfp4: 32 };

/** Bytes of one row of `cols` values of a weight type (GGUF block layouts for q8_0 / q4_0 / q4_k / q5_k / q6_k / mxfp4). */
export function weightRowBytes(type: WeightType, cols: number): number {
  switch (type) {
    case 'f32':
      return cols * 4;
    case 'f16':
    case 'bf16':
      return cols * 2;
    case 'q8_0':
      return (cols / 32) * 34;
    case 'q4_0':
      return (cols / 32) * 18;
    case 'q4_k':
      return (cols / 256) * 144;
    case 'q5_k':
      return (cols / 256) * 176;
    case 'q6_k':
      return (cols / 256) * 210;
    case 'mxfp4':
      return (cols / 32) * 17;
  }
}

// ---- KV heads (asm/attention.ts) ----------------------------------------------------------------

/** The cache's KV dtypes as asm/common.ts numbers them (KV_F32, KV_F16, KV_I8). */
export const KV_CODE: Record<KvDtype, number> = { f32: 0, f16: 1, int8: 2 };
export const KV_ELEM_BYTES: Record<KvDtype, number> = { f32: 4, f16: 2, int8: 1 };

/**
 * One entry of a KV head table per KV head, 8 words (32 bytes): byte pointers to the key and value
 * slots ([capacity][headDim] of the KV type), to the int8 key and value scales (f32 [capacity], else 0),
 * the live length, and a pointer to the probSums (f32 [capacity], or 0: not tracked).
 */
export const KV_ENTRY_WORDS = 8;
export const KV_ENTRY_BYTES = KV_ENTRY_WORDS * 4;
export const KV_KEYS = 0;
export const KV_VALUES = 1;
export const KV_KEY_SCALES = 2;
export const KV_VALUE_SCALES = 3;
export const KV_LENGTH = 4;
export const KV_PROB_SUMS = 5;

/**
 * A batched attention's segment table (asm/attention.ts SEG_ENTRY), one entry per segment, 8 words
 * (32 bytes): byte pointers to its first query and output rows, its query tokens, its KV head table,
 * its query tokens per work unit, and its first work unit.
 */
export const SEG_ENTRY_WORDS = 8;
export const SEG_ENTRY_BYTES = SEG_ENTRY_WORDS * 4;
export const SEG_Q = 0;
export const SEG_OUT = 1;
export const SEG_NQ = 2;
export const SEG_TABLE = 3;
export const SEG_QCHUNK = 4;
export const SEG_FIRST_UNIT = 5;

// ---- scoring (asm/scores.ts) --------------------------------------------------------------------

/** Words of one redundancy head-table entry: keys ptr, n, out ptr (f64[n]), unused. */
export const REDUNDANCY_ENTRY_WORDS = 4;

// ---- the module ---------------------------------------------------------------------------------

export interface KernelExports {
  run(job: number, tid: number, nThreads: number): void;
  task_scratch(task: number): number;
  heap_base(): number;
  abi_version(): number;
  split_point(n: number, align: number, i: number, T: number): number;
  row_bytes(wt: number, cols: number): number;
}

/** The wasm imports of the kernel module. */
export function kernelImports(memory: WasmMemory): Record<string, Record<string, unknown>> {
  return { env: { memory } };
}
