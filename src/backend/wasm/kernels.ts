/**
 * WebAssembly SIMD kernels (asm/, built into dist/wasm/kernels.wasm) over one shared
 * WebAssembly.Memory, with TypeScript handles for the buffers living in it.
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
 *             k.checkMatrix(m)), k.matrixFromF32(type, rows, cols, data), k.matrixFromBytes(type,
 *             rows, cols, bytes); type: 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' (PyTorch [out, in]
 *             row-major; GGUF block layouts). f16 values and q8_0/q4_0 scales must be finite.
 *             matrixFromF32 converts in the kernels (op.quantize, all threads), bit for bit as the JS
 *             references in src/quant and src/formats/half.ts.
 *   KV cache: k.kvLayer({ type: 'f32' | 'f16' | 'i8', nKvHeads, headDim, capacity, probSums })
 *             -> KvLayer: per-head slots + lengths in a head table the kernels read; keys(h),
 *             values(h), length(h)/setLength(h, n), keep(h, indices) (press eviction),
 *             probSums(h) (h2o running sums, filled by attention when enabled).
 *   Tasks:    op.matvec, op.gateUpSilu, op.rmsnorm, op.rope, op.softmax, op.siluGate, op.add,
 *             op.exp, op.attention, op.kvStore, op.embed, op.quantize, op.sum build `Task`s
 *             (validated here; cheap, and reusable while their buffers and lengths stay the same).
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
 * = 4 barriers per layer. Prefill is the same with nTok > 1 (matmat: q8_0/q4_0 weights are
 * widened once per group of four rows and column segment and serve every token, eight at a time,
 * with the tokens in the SIMD lanes; f32/f16/bf16 reuse each row across 16 tokens per pass;
 * attention is causal within the segment and splits query chunks over threads unless probSums
 * are tracked).
 *
 * Numerics: f32 accumulation everywhere. Q8_0/Q4_0 weights use exact integer dot products
 * against the input quantised once per 32-block (d = amax/127, q = round-half-even(x/d)), so a
 * quantised matvec differs from the dequantised f32 one by that input rounding. exp (softmax,
 * SiLU) is a SIMD polynomial, relative error <= 2.5e-7. f16 KV stores saturate at +-65504.
 * Every result is bit-identical whatever the thread count, and a k-token matmat row equals the
 * one-token matvec of that token.
 */
import { InternalError, KvsieveError, ensure } from '../../core/errors.js';
import { wasm, type WasmMemory, type WasmModule } from './wasm-api.js';

/** Must match ABI_VERSION in asm/index.ts. */
export const ABI_VERSION = 7;

export type WeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
export type KvType = 'f32' | 'f16' | 'i8';

const WT_CODE: Record<WeightType, number> = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4 };
const KV_CODE: Record<KvType, number> = { f32: 0, f16: 1, i8: 2 };
const KV_ELEM_BYTES: Record<KvType, number> = { f32: 4, f16: 2, i8: 1 };

/** Bytes of one row of `cols` values of a weight type. */
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
  }
}

/** A run of 32-bit elements (f32 unless said otherwise) in the shared memory. */
export interface Vec {
  /** Byte offset in the memory. */
  readonly ptr: number;
  /** Elements. */
  readonly length: number;
}

/** A row-major [rows, cols] weight in the shared memory. */
export interface Matrix {
  readonly ptr: number;
  readonly type: WeightType;
  readonly rows: number;
  readonly cols: number;
  readonly rowBytes: number;
  readonly bytes: number;
}

/** A window [offset, offset + length) of a Vec. */
export function sub(v: Vec, offset: number, length = v.length - offset): Vec {
  if (!(Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0 && offset + length <= v.length)) {
    throw new InternalError(`wasm: window [${offset}, ${offset + length}) outside a vector of ${v.length}`);
  }
  return { ptr: v.ptr + offset * 4, length };
}

// ------------------------------------------------------------------------------------------------
// Tasks (layout: asm/index.ts)

const TASK_WORDS = 32;
const TASK_BYTES = TASK_WORDS * 4;
const JOB_HEADER = 128;
/** Tasks one run()/runLocal() call can hold. */
export const MAX_TASKS = 64;

const OP_MATVEC = 1;
const OP_GATE_UP = 2;
const OP_RMSNORM = 3;
const OP_ROPE = 4;
const OP_SOFTMAX = 5;
const OP_SILU_GATE = 6;
const OP_ADD = 7;
const OP_ATTN = 8;
const OP_KV_STORE = 9;
const OP_EMBED = 10;
const OP_SUM = 11;
const OP_EXP = 12;
const OP_DOTS = 13;
const OP_REDUNDANCY = 14;
const OP_QUANTIZE = 15;
/** Words of one redundancy head-table entry: keys ptr, n, out ptr (f64[n]), unused. */
export const REDUNDANCY_ENTRY_WORDS = 4;

/** One kernel invocation: 32 words, split by rows ("units") over threads when run. */
export class Task {
  readonly words = new Int32Array(TASK_WORDS);
  private readonly floats = new Float32Array(this.words.buffer);

  /**
   * @param work about how many multiply-adds (or element operations) the task takes: run() keeps a job
   *   whose tasks add up to less than the kernels' minParallelWork on the calling thread, where waking the
   *   workers would cost more than it saves. Default: units.
   */
  constructor(op: number, units: number, align: number, readonly work = units) {
    this.words[0] = op;
    this.words[1] = units;
    this.words[2] = align;
  }
  get units(): number {
    return this.words[1]!;
  }
  /** Sets argument word i (>= 3) to an integer or pointer (pointers up to 4 GiB wrap to int32). */
  i(i: number, v: number): this {
    this.words[i] = v | 0;
    return this;
  }
  f(i: number, v: number): this {
    this.floats[i] = v;
    return this;
  }
}

function isInt(v: number, min = 0): boolean {
  return Number.isInteger(v) && v >= min;
}

function need(v: Vec, elems: number, what: string): void {
  if (v.length < elems) throw new InternalError(`wasm: ${what} holds ${v.length} values, needs ${elems}`);
}

/** Elements a strided run of `rows` rows of `width` needs. */
function span(rows: number, stride: number, width: number): number {
  return rows === 0 ? 0 : (rows - 1) * stride + width;
}

export interface MatvecOptions {
  /** Added to every output row (length >= rows). */
  bias?: Vec;
  /** y += W x instead of y = W x (the residual add, fused). */
  accumulate?: boolean;
  /** Tokens (input rows) processed together; default 1. */
  nTok?: number;
  /** Floats between consecutive input rows (default cols) and output rows (default rows). */
  xStride?: number;
  yStride?: number;
}

export interface AttentionOptions {
  /** Query heads (a multiple of the layer's KV heads). */
  nHeads: number;
  /** Query tokens in this segment (already appended to the cache); default 1. */
  nq?: number;
  /** Score scale; default 1/sqrt(headDim). */
  scale?: number;
  /** Floats between query rows / output rows; default nHeads * headDim. */
  qStride?: number;
  outStride?: number;
  /**
   * When given, row (t * nHeads + head) at probs[that * probsStride] receives the attention
   * probabilities of every slot of the head's KV head (0 beyond the visible ones).
   */
  probs?: Vec;
  probsStride?: number;
  /** Query tokens per work unit (ignored when the layer tracks probSums); default 16. */
  qChunk?: number;
}

/** Task builders. Each validates its arguments and throws an InternalError naming the fault. */
export const op = {
  /** y[t, r] (+)= sum_c W[r, c] x[t, c] (+ bias[r]) for t < nTok. */
  matvec(W: Matrix, x: Vec, y: Vec, o: MatvecOptions = {}): Task {
    const nTok = o.nTok ?? 1;
    const xStride = o.xStride ?? W.cols;
    const yStride = o.yStride ?? W.rows;
    ensure(isInt(nTok, 1) && isInt(xStride) && isInt(yStride), `wasm matvec: bad nTok/strides ${nTok}/${xStride}/${yStride}`);
    need(x, span(nTok, xStride, W.cols), 'matvec input');
    need(y, span(nTok, yStride, W.rows), 'matvec output');
    if (o.bias) need(o.bias, W.rows, 'matvec bias');
    return new Task(OP_MATVEC, W.rows, 4, W.rows * W.cols * nTok)
      .i(3, WT_CODE[W.type]).i(4, W.ptr).i(5, x.ptr).i(6, y.ptr).i(7, W.cols)
      .i(8, o.bias ? o.bias.ptr : 0).i(9, o.accumulate ? 1 : 0).i(10, nTok).i(11, xStride).i(12, yStride);
  },

  /** h[t, r] = silu((Wg x)[t, r]) * (Wu x)[t, r]: the gate/up projections and SiLU-gate in one pass. */
  gateUpSilu(Wg: Matrix, Wu: Matrix, x: Vec, h: Vec, o: { nTok?: number; xStride?: number; hStride?: number } = {}): Task {
    ensure(Wg.type === Wu.type && Wg.rows === Wu.rows && Wg.cols === Wu.cols,
      `wasm gateUpSilu: gate ${Wg.type} [${Wg.rows}, ${Wg.cols}] and up ${Wu.type} [${Wu.rows}, ${Wu.cols}] differ`);
    const nTok = o.nTok ?? 1;
    const xStride = o.xStride ?? Wg.cols;
    const hStride = o.hStride ?? Wg.rows;
    ensure(isInt(nTok, 1) && isInt(xStride) && isInt(hStride), `wasm gateUpSilu: bad nTok/strides`);
    need(x, span(nTok, xStride, Wg.cols), 'gateUpSilu input');
    need(h, span(nTok, hStride, Wg.rows), 'gateUpSilu output');
    return new Task(OP_GATE_UP, Wg.rows, 4, 2 * Wg.rows * Wg.cols * nTok)
      .i(3, WT_CODE[Wg.type]).i(4, Wg.ptr).i(5, Wu.ptr).i(6, x.ptr).i(7, h.ptr).i(8, Wg.cols)
      .i(9, nTok).i(10, xStride).i(11, hStride);
  },

  /** y = x / sqrt(mean(x^2) + eps) * w for `rows` rows of n values (w null: no weight). */
  rmsnorm(x: Vec, w: Vec | null, y: Vec, n: number, eps: number, o: { rows?: number; xStride?: number; yStride?: number } = {}): Task {
    const rows = o.rows ?? 1;
    const xStride = o.xStride ?? n;
    const yStride = o.yStride ?? n;
    ensure(isInt(n, 1) && isInt(rows) && isInt(xStride) && isInt(yStride), `wasm rmsnorm: bad sizes n=${n} rows=${rows}`);
    need(x, span(rows, xStride, n), 'rmsnorm input');
    need(y, span(rows, yStride, n), 'rmsnorm output');
    if (w) need(w, n, 'rmsnorm weight');
    return new Task(OP_RMSNORM, rows, 1, rows * n)
      .i(3, x.ptr).i(4, w ? w.ptr : 0).i(5, y.ptr).i(6, n).f(7, eps).i(8, xStride).i(9, yStride);
  },

  /**
   * rotate_half RoPE in place on nHeads heads of each of nTok rows of x, with cos/sin tables
   * [nTok][tabStride] (the first headDim/2 of each row used; row t for token t).
   */
  rope(x: Vec, cos: Vec, sin: Vec, o: { nHeads: number; headDim: number; nTok?: number; xStride?: number; tabStride?: number }): Task {
    const { nHeads, headDim } = o;
    const nTok = o.nTok ?? 1;
    const xStride = o.xStride ?? nHeads * headDim;
    const tabStride = o.tabStride ?? headDim / 2;
    ensure(isInt(nHeads, 1) && isInt(headDim, 2) && headDim % 2 === 0 && isInt(nTok) && isInt(xStride) && isInt(tabStride),
      `wasm rope: bad sizes heads=${nHeads} headDim=${headDim}`);
    need(x, span(nTok, xStride, nHeads * headDim), 'rope input');
    need(cos, span(nTok, tabStride, headDim / 2), 'rope cos table');
    need(sin, span(nTok, tabStride, headDim / 2), 'rope sin table');
    return new Task(OP_ROPE, nTok * nHeads, 1, nTok * nHeads * headDim)
      .i(3, x.ptr).i(4, nHeads).i(5, headDim).i(6, xStride).i(7, cos.ptr).i(8, sin.ptr).i(9, tabStride);
  },

  /** In-place softmax over n values of each of `rows` rows. */
  softmax(x: Vec, n: number, o: { rows?: number; stride?: number } = {}): Task {
    const rows = o.rows ?? 1;
    const stride = o.stride ?? n;
    ensure(isInt(n) && isInt(rows) && isInt(stride), `wasm softmax: bad sizes`);
    need(x, span(rows, stride, n), 'softmax input');
    return new Task(OP_SOFTMAX, rows, 1, rows * n).i(3, x.ptr).i(4, n).i(5, stride);
  },

  /** out[i] = silu(g[i]) * u[i] for i < n (out may be g or u). */
  siluGate(g: Vec, u: Vec, out: Vec, n: number): Task {
    ensure(isInt(n), `wasm siluGate: bad n ${n}`);
    need(g, n, 'siluGate gate');
    need(u, n, 'siluGate up');
    need(out, n, 'siluGate output');
    return new Task(OP_SILU_GATE, n, 16).i(3, g.ptr).i(4, u.ptr).i(5, out.ptr);
  },

  /** out[i] = a[i] + b[i] for i < n (out may be a or b). */
  add(out: Vec, a: Vec, b: Vec, n: number): Task {
    ensure(isInt(n), `wasm add: bad n ${n}`);
    need(out, n, 'add output');
    need(a, n, 'add input');
    need(b, n, 'add input');
    return new Task(OP_ADD, n, 16).i(3, out.ptr).i(4, a.ptr).i(5, b.ptr);
  },

  /**
   * Causal attention of the segment's nq query tokens (already appended: lengths include them)
   * over the layer's cache; query head g reads KV head floor(g / (nHeads / nKvHeads)).
   * When the layer tracks probSums, each head's running sum gets the group's mean probability.
   */
  attention(kv: KvLayer, q: Vec, out: Vec, o: AttentionOptions): Task {
    const { nHeads } = o;
    const d = kv.headDim;
    const nKv = kv.nKvHeads;
    const nq = o.nq ?? 1;
    ensure(isInt(nHeads, 1) && nHeads % nKv === 0, `wasm attention: ${nHeads} query heads is not a multiple of ${nKv} KV heads`);
    ensure(isInt(nq, 1), `wasm attention: bad nq ${nq}`);
    const G = nHeads / nKv;
    const qStride = o.qStride ?? nHeads * d;
    const outStride = o.outStride ?? nHeads * d;
    need(q, span(nq, qStride, nHeads * d), 'attention queries');
    need(out, span(nq, outStride, nHeads * d), 'attention output');
    let maxLen = 0;
    for (let h = 0; h < nKv; h++) {
      const len = kv.length(h);
      ensure(len >= nq, `wasm attention: KV head ${h} holds ${len} slots, fewer than the ${nq} query tokens`);
      maxLen = Math.max(maxLen, len);
    }
    const probsStride = o.probsStride ?? maxLen;
    if (o.probs) {
      ensure(probsStride >= maxLen, `wasm attention: probsStride ${probsStride} < ${maxLen} slots`);
      need(o.probs, span(nq * nHeads, probsStride, maxLen), 'attention probs');
    }
    const qChunk = kv.tracksProbSums ? nq : Math.max(1, Math.min(nq, o.qChunk ?? 16));
    const units = nKv * Math.ceil(nq / qChunk);
    return new Task(OP_ATTN, units, 1, 2 * nq * maxLen * nHeads * d)
      .i(3, KV_CODE[kv.type]).i(4, q.ptr).i(5, qStride).i(6, kv.table).i(7, out.ptr).i(8, outStride)
      .i(9, o.probs ? o.probs.ptr : 0).i(10, probsStride).i(11, nq).i(12, G).i(13, d)
      .f(14, o.scale ?? 1 / Math.sqrt(d)).i(15, nKv).i(16, qChunk);
  },

  /**
   * Writes the segment's nTok K/V rows (k/v: [nTok][srcStride], KV head h at h*headDim) into slots
   * length(h) - nTok + t of each head (set the lengths first), converting to the cache type.
   */
  kvStore(kv: KvLayer, k: Vec, v: Vec, o: { nTok?: number; srcStride?: number } = {}): Task {
    const nTok = o.nTok ?? 1;
    const srcStride = o.srcStride ?? kv.nKvHeads * kv.headDim;
    ensure(isInt(nTok) && isInt(srcStride), `wasm kvStore: bad nTok/stride`);
    need(k, span(nTok, srcStride, kv.nKvHeads * kv.headDim), 'kvStore keys');
    need(v, span(nTok, srcStride, kv.nKvHeads * kv.headDim), 'kvStore values');
    for (let h = 0; h < kv.nKvHeads; h++) {
      const len = kv.length(h);
      ensure(len >= nTok && len <= kv.capacity, `wasm kvStore: KV head ${h} length ${len} cannot hold the ${nTok} new tokens`);
    }
    return new Task(OP_KV_STORE, nTok * kv.nKvHeads, 1, nTok * kv.nKvHeads * kv.headDim)
      .i(3, KV_CODE[kv.type]).i(4, k.ptr).i(5, v.ptr).i(6, srcStride).i(7, kv.table).i(8, kv.nKvHeads)
      .i(9, kv.headDim).i(10, nTok);
  },

  /** y[j, :] = row ids[j] of W widened to f32 (ids: a Vec of int32), j < n. */
  embed(W: Matrix, ids: Vec, y: Vec, o: { n?: number; yStride?: number } = {}): Task {
    const n = o.n ?? ids.length;
    const yStride = o.yStride ?? W.cols;
    ensure(isInt(n) && n <= ids.length && isInt(yStride), `wasm embed: bad n/stride`);
    need(y, span(n, yStride, W.cols), 'embed output');
    return new Task(OP_EMBED, n, 1, n * W.cols).i(3, WT_CODE[W.type]).i(4, W.ptr).i(5, W.cols).i(6, ids.ptr).i(7, y.ptr).i(8, yStride);
  },

  /** out[i] = exp(x[i]) for i < n (relative error < 4e-7; 0 below -87, inputs above 88 clamp to exp(88)). */
  exp(x: Vec, out: Vec, n: number): Task {
    ensure(isInt(n), `wasm exp: bad n ${n}`);
    need(x, n, 'exp input');
    need(out, n, 'exp output');
    return new Task(OP_EXP, n, 16).i(3, x.ptr).i(4, out.ptr);
  },

  /**
   * out[r * outStride + j] = scale * a[r] . k[j] for r < rows, j < n: a [rows][aStride] (first d of each row),
   * k [n][d]. Splits the rows over threads (four per unit of work).
   */
  dots(a: Vec, rows: number, k: Vec, n: number, d: number, out: Vec, o: { scale?: number; aStride?: number; outStride?: number } = {}): Task {
    const aStride = o.aStride ?? d;
    const outStride = o.outStride ?? n;
    ensure(isInt(rows) && isInt(n) && isInt(d, 1) && isInt(aStride) && aStride >= d && isInt(outStride) && outStride >= n,
      `wasm dots: bad sizes rows=${rows} n=${n} d=${d}`);
    need(a, span(rows, aStride, d), 'dots rows');
    need(k, n * d, 'dots keys');
    need(out, span(rows, outStride, n), 'dots output');
    return new Task(OP_DOTS, rows, 4, rows * n * d)
      .i(3, a.ptr).i(4, aStride).i(5, k.ptr).i(6, n).i(7, d).f(8, o.scale ?? 1).i(9, out.ptr).i(10, outStride);
  },

  /**
   * Key redundancy of `heads` heads described by a table of REDUNDANCY_ENTRY_WORDS words each (keys ptr,
   * n, out ptr): out[j] (f64) = the mean over rows i of S[i, j], S the cosine similarities of the head's n
   * keys [n][d], with the diagonal and each row's last entry above `threshold` (entry 0 when none) zeroed.
   * One head per unit of work.
   */
  redundancy(table: number, heads: number, d: number, threshold: number): Task {
    ensure(isInt(heads) && isInt(d, 1) && Number.isFinite(threshold), `wasm redundancy: bad sizes heads=${heads} d=${d}`);
    return new Task(OP_REDUNDANCY, heads, 1, Infinity).i(3, table).i(4, d).f(5, threshold);
  },

  /**
   * Converts the n floats of src (default all) into m's stored layout from element `offset` on (row-major
   * order; offset and n multiples of 32 for q8_0/q4_0), bit for bit as src/quant's quantizeQ8_0 /
   * quantizeQ4_0 and formats/half's f32ArrayToF16 / f32ArrayToBf16 (f32: a copy). Units: 32-blocks or
   * elements. The results are not checked: call checkMatrix(m) afterwards (matrixFromF32 does).
   */
  quantize(src: Vec, m: Matrix, o: { offset?: number; n?: number } = {}): Task {
    const offset = o.offset ?? 0;
    const n = o.n ?? src.length;
    ensure(isInt(offset) && isInt(n) && offset + n <= m.rows * m.cols,
      `wasm quantize: elements [${offset}, ${offset + n}) outside ${m.type} [${m.rows}, ${m.cols}]`);
    need(src, n, 'quantize input');
    const blocks = m.type === 'q8_0' || m.type === 'q4_0';
    if (blocks) ensure(offset % 32 === 0 && n % 32 === 0, `wasm quantize: ${m.type} offset ${offset} and count ${n} must be multiples of 32`);
    const dst = m.ptr + weightRowBytes(m.type, offset); // the bytes of the first `offset` elements
    return new Task(OP_QUANTIZE, blocks ? n / 32 : n, blocks ? 1 : 64, n).i(3, WT_CODE[m.type]).i(4, src.ptr).i(5, dst);
  },

  /**
   * Bandwidth probe: thread i writes the sum of its share of x[0 .. n) to partials[i], reading it
   * as one sequential stream or as four side by side (as the matvec tiles read weight rows).
   */
  sum(x: Vec, n: number, partials: Vec, streams: 1 | 4 = 1): Task {
    need(x, n, 'sum input');
    return new Task(OP_SUM, n, 1024, Infinity).i(3, x.ptr).i(4, partials.ptr).i(5, streams);
  },
};

// ------------------------------------------------------------------------------------------------

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

export interface KernelExports {
  run(job: number, tid: number, nThreads: number): void;
  task_scratch(task: number): number;
  heap_base(): number;
  abi_version(): number;
  split_point(n: number, align: number, i: number, T: number): number;
  row_bytes(wt: number, cols: number): number;
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

/** The wasm imports of the kernel module. */
export function kernelImports(memory: WasmMemory): Record<string, Record<string, unknown>> {
  return { env: { memory } };
}

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
    if ((type === 'q8_0' || type === 'q4_0') && cols % 32 !== 0) {
      throw new InternalError(`wasm matrix: ${type} needs a multiple of 32 columns, got ${cols}`);
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
    this.checkMatrix(m, name);
    return m;
  }

  /**
   * Refuses f16 weights and q8_0/q4_0 block scales that are infinite or NaN: the matvec kernels
   * widen halves with a fast conversion that is exact only for finite values. matrixFromBytes and
   * matrixFromF32 call this; call it after filling bytes(m) yourself.
   */
  checkMatrix(m: Matrix, name = 'weight'): void {
    if (m.type !== 'f16' && m.type !== 'q8_0' && m.type !== 'q4_0') return;
    const u16 = new Uint16Array(this.memory.buffer, m.ptr, m.bytes >> 1);
    const step = m.type === 'f16' ? 1 : m.type === 'q8_0' ? 17 : 9; // in u16: every half, or each block's scale
    for (let i = 0; i < u16.length; i += step) {
      if ((u16[i]! & 0x7c00) === 0x7c00) {
        const elem = m.type === 'f16' ? i : (i / step) * 32;
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
  kvLayer(o: { type: KvType; nKvHeads: number; headDim: number; capacity: number; probSums?: boolean }): KvLayer {
    const { type, nKvHeads, headDim, capacity } = o;
    ensure(type in KV_CODE, `wasm kvLayer: unknown KV type ${String(type)}`);
    ensure(isInt(nKvHeads, 1) && isInt(headDim, 4) && headDim % 4 === 0 && isInt(capacity, 1),
      `wasm kvLayer: bad shape heads=${nKvHeads} headDim=${headDim} (a multiple of 4) capacity=${capacity}`);
    const table = this.alloc(nKvHeads * KV_ENTRY_BYTES, 64);
    const rowBytes = headDim * KV_ELEM_BYTES[type];
    const words = new Int32Array(this.memory.buffer, table, nKvHeads * KV_ENTRY_WORDS);
    for (let h = 0; h < nKvHeads; h++) {
      const e = h * KV_ENTRY_WORDS;
      words[e] = this.alloc(capacity * rowBytes, 64);
      words[e + 1] = this.alloc(capacity * rowBytes, 64);
      if (type === 'i8') {
        words[e + 2] = this.alloc(capacity * 4, 64);
        words[e + 3] = this.alloc(capacity * 4, 64);
      }
      words[e + 4] = 0;
      words[e + 5] = o.probSums ? this.alloc(capacity * 4, 64) : 0;
    }
    return new KvLayer(this.memory, type, nKvHeads, headDim, capacity, table);
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

const KV_ENTRY_BYTES = 32;
const KV_ENTRY_WORDS = 8;

/**
 * One layer's KV cache in the shared memory: per KV head its own K/V slot arrays ([capacity]
 * [headDim] of the KV type; keys after RoPE), i8 scales, live length and optional probSums, all
 * reachable through the head table at `table` that the attention and kvStore kernels read.
 * f16 slots must hold finite halves (op.kvStore saturates at +-65504); attention widens them with a
 * finite-only conversion.
 */
export class KvLayer {
  private readonly words: Int32Array;

  constructor(
    private readonly memory: WasmMemory,
    readonly type: KvType,
    readonly nKvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
    /** Byte offset of the head table (32 bytes per head). */
    readonly table: number,
  ) {
    this.words = new Int32Array(memory.buffer, table, nKvHeads * KV_ENTRY_WORDS);
  }

  get tracksProbSums(): boolean {
    return this.words[5] !== 0;
  }

  length(h: number): number {
    return this.words[this.entry(h) + 4]!;
  }

  setLength(h: number, n: number): void {
    ensure(isInt(n) && n <= this.capacity, `kv cache: length ${n} outside 0..${this.capacity}`);
    this.words[this.entry(h) + 4] = n;
  }

  /** Sets every head's length. */
  setLengthAll(n: number): void {
    for (let h = 0; h < this.nKvHeads; h++) this.setLength(h, n);
  }

  /** Slot array views of head h ([capacity * headDim]; Float32Array, Uint16Array of f16 bits, or Int8Array). */
  keys(h: number): Float32Array | Uint16Array | Int8Array {
    return this.area(this.words[this.entry(h)]! >>> 0);
  }

  values(h: number): Float32Array | Uint16Array | Int8Array {
    return this.area(this.words[this.entry(h) + 1]! >>> 0);
  }

  /** i8 caches: the per-slot scales of head h. */
  keyScales(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + 2]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  valueScales(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + 3]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  /** The running attention sums of head h (when tracked). */
  probSums(h: number): Float32Array | null {
    const p = this.words[this.entry(h) + 5]! >>> 0;
    return p ? new Float32Array(this.memory.buffer, p, this.capacity) : null;
  }

  /**
   * Keeps only the slots at `indices` (strictly ascending, below the length) of head h, compacted
   * to the front in order; scales and probSums move with them.
   */
  keep(h: number, indices: ArrayLike<number>): void {
    const len = this.length(h);
    const d = this.headDim;
    const k = this.keys(h);
    const v = this.values(h);
    const ks = this.keyScales(h);
    const vs = this.valueScales(h);
    const ps = this.probSums(h);
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const src = indices[i]!;
      if (!(Number.isInteger(src) && src > prev && src < len)) {
        throw new InternalError(`kv cache: keep indices must be ascending and below ${len}, got ${src} after ${prev}`);
      }
      prev = src;
      if (src !== i) {
        k.copyWithin(i * d, src * d, (src + 1) * d);
        v.copyWithin(i * d, src * d, (src + 1) * d);
        if (ks) ks[i] = ks[src]!;
        if (vs) vs[i] = vs[src]!;
        if (ps) ps[i] = ps[src]!;
      }
    }
    if (ps) ps.fill(0, indices.length, len);
    this.setLength(h, indices.length);
  }

  private entry(h: number): number {
    ensure(isInt(h) && h < this.nKvHeads, `kv cache: head ${h} outside 0..${this.nKvHeads - 1}`);
    return h * KV_ENTRY_WORDS;
  }

  private area(p: number): Float32Array | Uint16Array | Int8Array {
    const n = this.capacity * this.headDim;
    const buf = this.memory.buffer;
    if (this.type === 'f32') return new Float32Array(buf, p, n);
    if (this.type === 'f16') return new Uint16Array(buf, p, n);
    return new Int8Array(buf, p, n);
  }
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}
