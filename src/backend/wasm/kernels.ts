/**
 * WebAssembly SIMD kernels (asm/, built into dist/wasm/kernels.wasm) over one shared
 * WebAssembly.Memory: `Kernels` owns that memory, allocates in it and runs tasks.
 *
 * The wasm backend's files: abi.ts (what both sides of the wasm boundary agree on: op codes, task
 * words, type codes, table layouts), ops.ts (the `op.*` task builders and the Vec / Matrix handles),
 * kv-layer.ts (KvLayer, the KV head table attention reads), this file, backend.ts (the Backend
 * interface on top), and the Node-only pool.ts / node.ts.
 *
 * This file is platform-neutral (no Node imports): `Kernels` takes a compiled module and, for
 * multi-threading, a `Dispatcher` (Node: `WorkerPool` in pool.ts; `createKernels` in node.ts wires
 * both). Everything the kernels touch — weights, activations, KV cache, scratch — lives in the
 * shared memory, allocated by a bump arena (`alloc`, `mark`/`release`; nothing is freed
 * individually, so allocate model-lifetime buffers once).
 *
 * API
 *   const k = await createKernels({ threads })   // node.ts; threads in all = main + (threads - 1)
 *                                                 // workers, default = number of cores
 *   Buffers:  k.vec(n) / k.vecFrom(f32) -> Vec {ptr, length} (f32); k.ints(n) -> Vec of i32;
 *             k.f32(v) / k.i32(v) typed views (valid across memory growth: shared memory never
 *             moves), k.read(v) copy out, k.write(v, data), sub(v, offset, length) a window.
 *   Weights:  k.matrix(type, rows, cols) (then fill k.bytes(m), e.g. GGUF tensor bytes as is, and
 *             k.checkMatrix(m); K-quants then k.run(op.repackKQuant(m)): their held layout differs),
 *             k.matrixFromF32(type, rows, cols, data), k.matrixFromBytes(type, rows, cols, bytes); type: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k' | 'mxfp4' (PyTorch [out, in]
 *             row-major; GGUF block layouts). f16 values and q8_0/q4_0 scales must be finite.
 *             matrixFromF32 converts in the kernels (op.quantize, all threads), bit for bit as the JS
 *             references in src/quant and src/formats/half.ts.
 *   KV cache: k.kvLayer({ type: 'f32' | 'f16' | 'int8', nKvHeads, headDim, capacity, probSums })
 *             -> KvLayer (kv-layer.ts): per-head slots + lengths in a head table the kernels
 *             read; keys(h), values(h), length(h)/setLength(h, n), probSums(h) (h2o running
 *             sums, filled by attention when enabled), setHead(h, pointers). Only a view, for
 *             kernel tests and benchmarks and for WasmBackend to describe the engine's cache
 *             (src/kv, where slots are appended and compacted) to the kernels.
 *   Tasks:    op.matvec, op.gateUpSilu, op.rmsnorm, op.rope, op.softmax, op.siluGate, op.add,
 *             op.exp, op.attention, op.attentions (every segment of a step; its SegmentTable from
 *             k.segmentTable(n)), op.kvStore, op.embed, op.quantize, op.sum (ops.ts) build
 *             `Task`s (validated there; cheap, and reusable while their buffers and lengths stay
 *             the same).
 *             k.run(...tasks) shares every task's rows among all threads (each claims ranges as
 *             it comes free, so a late or slow thread takes less) — one barrier for the
 *             lot (~2 us when the workers are spinning), so tasks of one call must be
 *             independent (no task reads what another writes). k.runLocal(...tasks) runs them in
 *             order on the calling thread only (no barrier; for the small per-token steps).
 *
 * A decode step of one layer (x = residual [dim]; xn/q/kk/vv/att/h preallocated Vecs):
 *   k.runLocal(op.rmsnorm(x, attnNorm, xn, dim, eps));
 *   k.run(op.matvec(Wq, xn, q, { bias: bq }), op.matvec(Wk, xn, kk, { bias: bk }),
 *         op.matvec(Wv, xn, vv, { bias: bv }));                     // xn quantised once per thread
 *   kv.setLengthAll(len + 1);                                       // or per head, after presses
 *   k.runLocal(                                                     // (qk-norm: op.rmsnorm with
 *     op.rope(q, cos, sin, { nHeads, headDim }),                    //  rows = heads, n = headDim)
 *     op.rope(kk, cos, sin, { nHeads: nKv, headDim }),
 *     op.kvStore(kv, kk, vv));
 *   k.run(op.attention(kv, q, att, { nHeads }));                    // one unit per KV head (GQA
 *                                                                   // group shares each K/V load)
 *   k.run(op.matvec(Wo, att, x, { accumulate: true }));             // residual add fused
 *   k.runLocal(op.rmsnorm(x, ffnNorm, xn, dim, eps));
 *   k.run(op.gateUpSilu(Wg, Wu, xn, h));                             // silu(g) * u fused
 *   k.run(op.matvec(Wd, h, x, { accumulate: true }));               // residual add fused
 * = 4 barriers per layer. A decode batch or a prefill block is the same with nTok > 1: for 2..15
 * tokens (q4_0: 2..5) quantised products run on tiles of four weight rows times two tokens, the
 * first token pair reading each group of rows from memory and the others from L1 (no widening pass,
 * no padding); past that the weights are widened once per group of four rows and column segment and
 * serve every token, eight at a time, with the tokens in the SIMD lanes; f32/f16/bf16 run tiles of
 * 2-4 rows times 1-4 tokens over each group of four rows, 16 tokens per pass. Either way each weight
 * block comes from memory once for all the tokens. Attention is causal within a segment and splits
 * query chunks over threads unless probSums are tracked; op.attentions runs every segment of a step
 * (each sequence's rows over its own cache) in one task. What the results are, numerically: ops.ts.
 */
import { InternalError, KvsieveError, ensure } from '../../core/errors.js';
import type { KvDtype } from '../../core/kv-rows.js';
import {
  ABI_VERSION, JOB_HEADER, KV_CODE, KV_ELEM_BYTES, KV_ENTRY_BYTES, MAX_TASKS, SEG_ENTRY_BYTES, TASK_BYTES, TASK_WORDS, WT_CODE,
  BLOCK_VALUES, kernelImports, weightRowBytes, type KernelExports, type WeightType,
} from './abi.js';
import { KvLayer, SegmentTable } from './kv-layer.js';
import { isInt, need, op, type Matrix, type Task, type Vec } from './ops.js';
import { wasm, type WasmMemory, type WasmModule } from './wasm-api.js';

/** What runs a job on every thread. Node: WorkerPool (pool.ts). */
export interface Dispatcher {
  /** Threads taking part, the calling one included. */
  readonly threads: number;
  /** Runs share 0 on the calling thread (through `runShare`) and returns when every share is done. */
  dispatch(jobPtr: number): void;
  /** Diagnostics, where the dispatcher counts them: jobs dispatched, and times a worker slept waiting for one. */
  readonly dispatches?: number;
  readonly sleeps?: number;
  dispose(): Promise<void>;
}

export interface KernelsOptions {
  /** Initial memory size in bytes (default 16 MiB). */
  initialBytes?: number;
  /** Maximum memory size in bytes (default and limit 4 GiB). */
  maxBytes?: number;
  /** A memory to use (shared, created with a maximum); one is created when left out. */
  memory?: WasmMemory;
  /**
   * Jobs whose tasks add up to less work than this (Task.work, about multiply-adds) run on the calling
   * thread alone (default 65536, about 10-20 us of work, the cost of waking the workers). 0: always split.
   */
  minParallelWork?: number;
}

const PAGE = 65536;
const MAX_PAGES = 65536;
/** Floats per piece matrixFromF32 converts at a time (4 MiB; a multiple of 32 and of op.quantize's 64-element alignment). */
export const QUANTIZE_PIECE = 1 << 20;

export class Kernels {
  readonly memory: WasmMemory;
  readonly exports: KernelExports;
  private readonly maxPages: number;
  private top: number;
  private readonly jobPtr: number;
  private scratchPtr = 0;
  private scratchStride = 0;
  private scratchThreads = 0;
  private dispatcher: Dispatcher | null = null;
  private disposed = false;
  private jobWords: Int32Array;
  private readonly minParallelWork: number;

  constructor(readonly module: WasmModule, o: KernelsOptions = {}) {
    this.minParallelWork = o.minParallelWork ?? 65536;
    const maxBytes = o.maxBytes ?? MAX_PAGES * PAGE;
    this.maxPages = Math.min(MAX_PAGES, Math.floor(maxBytes / PAGE));
    const initPages = Math.min(this.maxPages, Math.max(1, Math.ceil((o.initialBytes ?? 16 << 20) / PAGE)));
    this.memory = o.memory ?? new wasm.Memory({ initial: initPages, maximum: this.maxPages, shared: true });
    const instance = new wasm.Instance(module, kernelImports(this.memory));
    this.exports = instance.exports as unknown as KernelExports;
    const abi = this.exports.abi_version();
    if (abi !== ABI_VERSION) {
      throw new InternalError(`wasm kernels: module ABI ${abi}, expected ${ABI_VERSION} (rebuild with node scripts/build-wasm.mjs)`);
    }
    this.top = alignUp(this.exports.heap_base() >>> 0, 64);
    this.jobPtr = this.alloc(JOB_HEADER + MAX_TASKS * TASK_BYTES);
    this.jobWords = new Int32Array(this.memory.buffer, this.jobPtr, (JOB_HEADER + MAX_TASKS * TASK_BYTES) / 4);
  }

  /** Threads a run() uses (1 without a dispatcher). */
  get threads(): number {
    return this.dispatcher?.threads ?? 1;
  }

  /** Jobs dispatched to the workers and the times a worker slept waiting for one (null without a counting dispatcher). */
  poolStats(): { dispatches: number; sleeps: number } | null {
    const d = this.dispatcher;
    return d && d.dispatches !== undefined && d.sleeps !== undefined ? { dispatches: d.dispatches, sleeps: d.sleeps } : null;
  }

  /** Attaches the dispatcher that run() uses (null: single-threaded). */
  setDispatcher(d: Dispatcher | null): void {
    this.dispatcher = d;
  }

  /** Thread tid's share of the job at jobPtr, on this thread's instance (for dispatchers). */
  readonly runShare = (jobPtr: number, tid: number, nThreads: number): void => {
    this.exports.run(jobPtr, tid, nThreads);
  };

  // ---- memory ----------------------------------------------------------------------------------

  /** Bytes the memory holds now. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** The most bytes the memory may grow to. */
  get maxBytes(): number {
    return this.maxPages * PAGE;
  }

  /** First unallocated byte. */
  get allocated(): number {
    return this.top;
  }

  /** Allocates `bytes` (zero-filled unless released before) aligned to `align`, growing the memory as needed. */
  alloc(bytes: number, align = 64): number {
    ensure(isInt(bytes) && isInt(align, 1) && (align & (align - 1)) === 0, `wasm alloc: bad size ${bytes} / alignment ${align}`);
    const ptr = alignUp(this.top, align);
    const end = ptr + bytes;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > this.maxPages) {
        throw new KvsieveError(`wasm memory: ${end} bytes needed, the maximum is ${this.maxPages * PAGE} (raise maxBytes, up to 4 GiB)`);
      }
      this.memory.grow(pages);
    }
    this.top = end;
    return ptr;
  }

  /** The current allocation point, for release(). */
  mark(): number {
    return this.top;
  }

  /** Frees everything allocated after mark() returned `m` (zero-filled so later allocations start clean). */
  release(m: number): void {
    ensure(isInt(m) && m <= this.top, `wasm release: mark ${m} is above the allocation point ${this.top}`);
    new Uint8Array(this.memory.buffer, m, this.top - m).fill(0);
    this.top = m;
    if (this.scratchPtr >= m) {
      this.scratchPtr = 0;
      this.scratchStride = 0;
    }
  }

  vec(n: number): Vec {
    return { ptr: this.alloc(n * 4, 64), length: n };
  }

  vecFrom(data: ArrayLike<number>): Vec {
    const v = this.vec(data.length);
    this.f32(v).set(data);
    return v;
  }

  /** A Vec of n int32 (token ids for embed). */
  ints(n: number): Vec {
    return this.vec(n);
  }

  f32(v: Vec): Float32Array {
    return new Float32Array(this.memory.buffer, v.ptr, v.length);
  }

  i32(v: Vec): Int32Array {
    return new Int32Array(this.memory.buffer, v.ptr, v.length);
  }

  /** A copy of the vector's values. */
  read(v: Vec): Float32Array {
    return this.f32(v).slice();
  }

  write(v: Vec, data: ArrayLike<number>, offset = 0): void {
    need(v, offset + data.length, 'write target');
    this.f32(v).set(data, offset);
  }

  /** A byte view of a region. */
  u8(ptr: number, bytes: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, bytes);
  }

  // ---- weights ---------------------------------------------------------------------------------

  /** Allocates a weight (contents zero); fill it through bytes(m). */
  matrix(type: WeightType, rows: number, cols: number): Matrix {
    ensure(type in WT_CODE, `wasm matrix: unknown weight type ${String(type)}`);
    ensure(isInt(rows, 1) && isInt(cols, 1), `wasm matrix: bad shape [${rows}, ${cols}]`);
    const block = BLOCK_VALUES[type];
    if (block !== undefined && cols % block !== 0) {
      throw new InternalError(`wasm matrix: ${type} needs a multiple of ${block} columns, got ${cols}`);
    }
    const rowBytes = weightRowBytes(type, cols);
    const bytes = rowBytes * rows;
    return { ptr: this.alloc(bytes, 64), type, rows, cols, rowBytes, bytes };
  }

  bytes(m: Matrix): Uint8Array {
    return this.u8(m.ptr, m.bytes);
  }

  /** A weight from raw bytes of its layout (f16/bf16 little-endian, GGUF blocks for q8_0/q4_0). */
  matrixFromBytes(type: WeightType, rows: number, cols: number, data: Uint8Array, name = 'weight'): Matrix {
    const m = this.matrix(type, rows, cols);
    ensure(data.length === m.bytes, `wasm matrix: ${type} [${rows}, ${cols}] is ${m.bytes} bytes, got ${data.length}`);
    this.bytes(m).set(data);
    this.checkMatrix(m, name); // on the file's layout: the K-quants' held one moves d and dmin
    if (type === 'q4_k' || type === 'q5_k' || type === 'q6_k') this.run(op.repackKQuant(m));
    return m;
  }

  /**
   * Refuses f16 weights and q8_0/q4_0 block scales that are infinite or NaN: the matvec kernels
   * widen halves with a fast conversion that is exact only for finite values. matrixFromBytes and
   * matrixFromF32 call this; call it after filling bytes(m) yourself.
   */
  checkMatrix(m: Matrix, name = 'weight'): void {
    const scales = BLOCK_SCALE_HALVES[m.type];
    if (m.type !== 'f16' && !scales) return;
    const u16 = new Uint16Array(this.memory.buffer, m.ptr, m.bytes >> 1);
    // in u16: every half, or each block's scale halves (at the block's start + each offset)
    const step = m.type === 'f16' ? 1 : weightRowBytes(m.type, BLOCK_VALUES[m.type]!) >> 1;
    const offsets = scales ?? [0];
    for (const o of offsets) {
      for (let b = 0; b < u16.length; b += step) {
        if ((u16[b + o]! & 0x7c00) !== 0x7c00) continue;
        const elem = m.type === 'f16' ? b : (b / step) * BLOCK_VALUES[m.type]!;
        throw new KvsieveError(
          `wasm matrix: ${name} (${m.type} [${m.rows}, ${m.cols}]) has a non-finite ${m.type === 'f16' ? 'value' : 'block scale'} at row ${Math.floor(elem / m.cols)}, column ${elem % m.cols}`,
        );
      }
    }
  }

  /**
   * A weight converted from float32 [rows * cols] (f16/bf16 round to nearest even; q8_0/q4_0 as ggml),
   * bit for bit as the JS references (see op.quantize). The data goes through the shared memory in
   * pieces of QUANTIZE_PIECE floats (a scratch area freed afterwards, so a large matrix never needs a
   * second whole f32 copy in there), each converted by all threads straight into the matrix.
   */
  matrixFromF32(type: WeightType, rows: number, cols: number, data: Float32Array, name = 'weight'): Matrix {
    ensure(data.length === rows * cols, `wasm matrix: [${rows}, ${cols}] needs ${rows * cols} values, got ${data.length}`);
    return this.matrixFromPieces(type, rows, cols, (offset, out) => out.set(data.subarray(offset, offset + out.length)), name);
  }

  /**
   * matrixFromF32 for values that `fill` writes piece by piece: fill(offset, out) puts elements
   * [offset, offset + out.length) of the row-major [rows * cols] float32 values into out (a view of
   * the shared memory). So a checkpoint's f16/bf16 values need no whole-matrix float32 array.
   */
  matrixFromPieces(type: WeightType, rows: number, cols: number, fill: (offset: number, out: Float32Array) => void, name = 'weight'): Matrix {
    const n = rows * cols;
    const m = this.matrix(type, rows, cols);
    if (type === 'f32') {
      for (let offset = 0; offset < n; offset += QUANTIZE_PIECE) {
        fill(offset, new Float32Array(this.memory.buffer, m.ptr + offset * 4, Math.min(QUANTIZE_PIECE, n - offset)));
      }
    } else {
      const start = this.mark();
      try {
        const piece = this.vec(Math.min(n, QUANTIZE_PIECE));
        for (let offset = 0; offset < n; offset += piece.length) {
          const len = Math.min(piece.length, n - offset);
          fill(offset, this.f32(piece).subarray(0, len));
          this.run(op.quantize(piece, m, { offset, n: len }));
        }
      } finally {
        this.release(start);
      }
    }
    this.checkMatrix(m, name);
    return m;
  }

  // ---- KV cache --------------------------------------------------------------------------------

  /** One layer's cache: nKvHeads heads of `capacity` slots each, lengths 0. */
  kvLayer(o: { type: KvDtype; nKvHeads: number; headDim: number; capacity: number; probSums?: boolean }): KvLayer {
    const { type, nKvHeads, headDim, capacity } = o;
    ensure(type in KV_CODE, `wasm kvLayer: unknown KV type ${String(type)}`);
    ensure(isInt(nKvHeads, 1) && isInt(headDim, 4) && headDim % 4 === 0 && isInt(capacity, 1),
      `wasm kvLayer: bad shape heads=${nKvHeads} headDim=${headDim} (a multiple of 4) capacity=${capacity}`);
    const kv = new KvLayer(this.memory, type, nKvHeads, headDim, capacity, this.alloc(nKvHeads * KV_ENTRY_BYTES, 64));
    const rowBytes = headDim * KV_ELEM_BYTES[type];
    const floats = (yes: boolean) => (yes ? this.alloc(capacity * 4, 64) : 0);
    for (let h = 0; h < nKvHeads; h++) {
      const keys = this.alloc(capacity * rowBytes, 64);
      const values = this.alloc(capacity * rowBytes, 64);
      const keyScales = floats(type === 'int8');
      const valueScales = floats(type === 'int8');
      kv.setHead(h, { keys, values, keyScales, valueScales, probSums: floats(o.probSums === true), length: 0 });
    }
    return kv;
  }

  /** A segment table for op.attentions with room for `capacity` segments. */
  segmentTable(capacity: number): SegmentTable {
    ensure(isInt(capacity, 1), () => `wasm segmentTable: bad capacity ${capacity}`);
    return new SegmentTable(this.memory, capacity, this.alloc(capacity * SEG_ENTRY_BYTES, 64));
  }

  // ---- running -----------------------------------------------------------------------------------

  /** Runs the tasks split over all threads (one barrier). They must be independent of each other. */
  run(...tasks: Task[]): void {
    const d = this.dispatcher;
    let work = 0;
    for (const t of tasks) work += t.work;
    if (!d || d.threads === 1 || work < this.minParallelWork) {
      this.runOn(tasks, 1, null);
      return;
    }
    this.runOn(tasks, d.threads, d);
  }

  /** Runs the tasks, in order, on the calling thread only. */
  runLocal(...tasks: Task[]): void {
    this.runOn(tasks, 1, null);
  }

  private runOn(tasks: Task[], threads: number, d: Dispatcher | null): void {
    if (this.disposed) throw new KvsieveError('wasm kernels: used after dispose()');
    if (tasks.length > MAX_TASKS) throw new InternalError(`wasm run: ${tasks.length} tasks, at most ${MAX_TASKS} per call`);
    const w = this.jobWords;
    let needScratch = 0;
    for (let i = 0; i < tasks.length; i++) {
      const base = (JOB_HEADER + i * TASK_BYTES) / 4;
      w.set(tasks[i]!.words, base);
      w[base + TASK_WORDS - 1] = 0; // the next unit to hand out (asm/index.ts run)
      needScratch = Math.max(needScratch, this.exports.task_scratch(this.jobPtr + JOB_HEADER + i * TASK_BYTES) >>> 0);
    }
    this.ensureScratch(needScratch, threads);
    w[0] = tasks.length;
    w[1] = this.scratchPtr | 0;
    w[2] = this.scratchStride;
    try {
      if (d) d.dispatch(this.jobPtr);
      else this.exports.run(this.jobPtr, 0, 1);
    } catch (e) {
      if (e instanceof InternalError || e instanceof KvsieveError) throw e;
      throw new InternalError(`wasm kernel failed: ${(e as Error).message}`, { cause: e });
    }
  }

  private ensureScratch(bytes: number, threads: number): void {
    const stride = alignUp(Math.max(bytes, 64), 64);
    if (this.scratchPtr !== 0 && stride <= this.scratchStride && threads <= this.scratchThreads) return;
    const t = Math.max(threads, this.threads);
    // Attention's scratch grows with the sequence, a little every few tokens. The allocator only
    // moves up, so grow in place where the scratch is the last allocation, and otherwise by half
    // again: the regions left behind add up to about twice the final size, not a sum over every
    // length the sequence passed through.
    const atTop = this.scratchPtr !== 0 && this.scratchPtr + this.scratchStride * this.scratchThreads === this.top;
    const s = atTop ? stride : Math.max(stride, alignUp(Math.ceil(this.scratchStride * 1.5), 64));
    const top = this.top;
    if (atTop) this.top = this.scratchPtr;
    try {
      this.scratchPtr = this.alloc(s * t, 64);
    } catch (e) {
      this.top = top; // the old scratch stays allocated and in use
      throw e;
    }
    this.scratchStride = s;
    this.scratchThreads = t;
  }

  /** Stops the worker threads; the kernels refuse to run afterwards (the memory stays readable). */
  async dispose(): Promise<void> {
    this.disposed = true;
    const d = this.dispatcher;
    this.dispatcher = null;
    if (d) await d.dispose();
  }
}

/** Where a block's f16 scales are, in u16 from its start (q4_k, q5_k: d and dmin; q6_k: d after 208 bytes). */
const BLOCK_SCALE_HALVES: Partial<Record<WeightType, readonly number[]>> = { q8_0: [0], q4_0: [0], q4_k: [0, 1], q5_k: [0, 1], q6_k: [104] };

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
