/**
 * The task builders (`op.*`) and the handles they take: a Vec (a run of values) and a Matrix (a
 * weight) in the kernels' shared memory, a KvLayer (kv-layer.ts) for attention and kvStore, a
 * SegmentTable (kv-layer.ts) for the segments of a batched attention. Each builder checks its
 * arguments against the sizes it was given and writes the op's words (layout: abi.ts,
 * asm/index.ts); a Task is cheap, and can be run again while its buffers and lengths stay the same.
 *
 * Numerics: f32 accumulation everywhere. Q8_0/Q4_0 weights use exact integer dot products
 * against the input quantised once per 32-block (d = amax/127, q = round-half-even(x/d)), so a
 * quantised matvec differs from the dequantised f32 one by that input rounding. Q4_K/Q5_K/Q6_K weights
 * (taken as a GGUF stores them) run the same way on that input (asm/kquant.ts), and MXFP4 weights
 * (asm/mxfp4.ts). exp (softmax,
 * SiLU) is a SIMD polynomial, relative error <= 2.5e-7. f16 KV stores saturate at +-65504.
 * Every result is bit-identical whatever the thread count, a k-token matmat row equals the
 * one-token matvec of that token, and a segment of op.attentions equals op.attention on it alone.
 * Quantised products use no multiply-add: the same bits in both builds on every machine. Float
 * products and attention use madd, which the relaxed build leaves to the engine (relaxed_madd,
 * fused or not): those equalities hold there as long as the engine lowers every relaxed_madd alike,
 * as V8 does (fused on FMA CPUs), and results may differ in the last bits between machines.
 */
import { InternalError, KvsieveError, ensure } from '../../core/errors.js';
import {
  KV_CODE, OP_ADD, OP_ATTN, OP_ATTN_SEGS, OP_DOTS, OP_EMBED, OP_EXP, OP_GATE_UP, OP_KV_STORE, OP_MATVEC, OP_QUANTIZE,
  OP_REPACK_KQ, OP_REDUNDANCY,
  OP_RMSNORM, OP_ROPE, OP_SILU_GATE, OP_SOFTMAX, OP_SUM, TASK_WORDS, WT_CODE, weightRowBytes, type WeightType,
} from './abi.js';
import type { KvLayer, SegmentTable } from './kv-layer.js';
import type { Activation } from '../backend.js';

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

export function isInt(v: number, min = 0): boolean {
  return Number.isInteger(v) && v >= min;
}

export function need(v: Vec, elems: number, what: string): void {
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
  /**
   * A sliding-window layer's window: each token sees at most this many slots, its own and those just
   * before it (the layer's slots hold consecutive positions); 0 or absent: every earlier slot.
   */
  window?: number;
  /** GPT-OSS's attention sinks: [nHeads] logits, one per query head, in each softmax's sum only. */
  sinks?: Vec;
}

function windowOf(o: { window?: number }): number {
  const w = o.window ?? 0;
  ensure(isInt(w, 0), () => `wasm attention: bad window ${w}`);
  return w;
}

/** The sinks' pointer (0: none), checked to hold a logit per query head. */
function sinksOf(o: { sinks?: Vec }, nHeads: number): number {
  if (!o.sinks) return 0;
  need(o.sinks, nHeads, 'attention sinks');
  return o.sinks.ptr;
}

const ACTIVATION_CODE: Record<Activation, number> = { silu: 0, 'gelu-tanh': 1, 'swiglu-oai': 2 };

/** One segment of op.attentions: a sequence's query rows of the step, its output rows, its layer's KV heads. */
export interface AttentionSegment {
  kv: KvLayer;
  /** From its first query row and first output row (rows qStride / outStride floats apart). */
  q: Vec;
  out: Vec;
  /** Its query tokens (already appended to the cache). */
  nq: number;
}

/**
 * Checks one segment's shapes against its KV layer (every head holds the nq query tokens) and
 * returns the longest head.
 */
function checkSegment(kv: KvLayer, q: Vec, out: Vec, nq: number, nHeads: number, qStride: number, outStride: number): number {
  const d = kv.headDim;
  const nKv = kv.nKvHeads;
  // (messages built only on failure: this runs for every segment of every layer of a step)
  ensure(isInt(nHeads, 1) && nHeads % nKv === 0, () => `wasm attention: ${nHeads} query heads is not a multiple of ${nKv} KV heads`);
  ensure(isInt(nq, 1), () => `wasm attention: bad nq ${nq}`);
  need(q, span(nq, qStride, nHeads * d), 'attention queries');
  need(out, span(nq, outStride, nHeads * d), 'attention output');
  let maxLen = 0;
  for (let h = 0; h < nKv; h++) {
    const len = kv.length(h);
    ensure(len >= nq, () => `wasm attention: KV head ${h} holds ${len} slots, fewer than the ${nq} query tokens`);
    maxLen = Math.max(maxLen, len);
  }
  return maxLen;
}

/** Task builders. Each validates its arguments and throws a KvsieveError naming the fault. */
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

  /**
   * out[i] = act(g[i]) * u[i] for i < n (out may be g or u), act silu or (activation 'gelu-tanh') GELU's
   * tanh form; 'swiglu-oai': GPT-OSS's clamped form (Activation in backend.ts).
   */
  siluGate(g: Vec, u: Vec, out: Vec, n: number, activation: Activation = 'silu'): Task {
    ensure(isInt(n), `wasm siluGate: bad n ${n}`);
    need(g, n, 'siluGate gate');
    need(u, n, 'siluGate up');
    need(out, n, 'siluGate output');
    return new Task(OP_SILU_GATE, n, 16).i(3, g.ptr).i(4, u.ptr).i(5, out.ptr).i(6, ACTIVATION_CODE[activation]);
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
    const qStride = o.qStride ?? nHeads * d;
    const outStride = o.outStride ?? nHeads * d;
    const maxLen = checkSegment(kv, q, out, nq, nHeads, qStride, outStride);
    const G = nHeads / nKv;
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
      .f(14, o.scale ?? 1 / Math.sqrt(d)).i(15, nKv).i(16, qChunk).i(17, windowOf(o)).i(18, sinksOf(o, nHeads));
  },

  /**
   * op.attention for several segments (the sequences of a step) in one task: their entries go into
   * `table` (segment i at entry i, the table must not change until the task has run), and the work
   * units, (segment, KV head, query chunk), are shared among the threads like any task's rows. Each
   * segment's result is bit for bit what op.attention gives it alone: the same units, each computed
   * the same way. The segments are one layer of one model (the same KV type, KV heads, head size);
   * no probs output, and a segment whose layer tracks probSums takes one unit per KV head.
   */
  attentions(table: SegmentTable, segs: readonly AttentionSegment[], o: Omit<AttentionOptions, 'nq' | 'probs' | 'probsStride'>): Task {
    ensure(segs.length >= 1 && segs.length <= table.capacity, () => `wasm attentions: ${segs.length} segments for a table of ${table.capacity}`);
    const { nHeads } = o;
    const kv0 = segs[0]!.kv;
    const d = kv0.headDim;
    const nKv = kv0.nKvHeads;
    const qStride = o.qStride ?? nHeads * d;
    const outStride = o.outStride ?? nHeads * d;
    let units = 0;
    let work = 0;
    for (let i = 0; i < segs.length; i++) {
      const { kv, q, out, nq } = segs[i]!;
      ensure(kv.type === kv0.type && kv.nKvHeads === nKv && kv.headDim === d, () =>
        `wasm attentions: segment ${i} is ${kv.type} ${kv.nKvHeads}x${kv.headDim}, segment 0 ${kv0.type} ${nKv}x${d}`);
      const maxLen = checkSegment(kv, q, out, nq, nHeads, qStride, outStride);
      const qChunk = kv.tracksProbSums ? nq : Math.max(1, Math.min(nq, o.qChunk ?? 16));
      table.set(i, { q: q.ptr, out: out.ptr, nq, table: kv.table, qChunk, firstUnit: units });
      units += nKv * Math.ceil(nq / qChunk);
      work += 2 * nq * maxLen * nHeads * d;
    }
    return new Task(OP_ATTN_SEGS, units, 1, work)
      .i(3, KV_CODE[kv0.type]).i(4, table.ptr).i(5, segs.length).i(6, qStride).i(7, outStride)
      .i(8, nHeads / nKv).i(9, d).f(10, o.scale ?? 1 / Math.sqrt(d)).i(11, nKv).i(12, windowOf(o)).i(13, sinksOf(o, nHeads));
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
    return new Task(OP_EMBED, n, 1, n * W.cols).i(3, WT_CODE[W.type]).i(4, W.ptr).i(5, W.cols).i(6, ids.ptr).i(7, y.ptr).i(8, yStride).i(9, W.rows);
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
    if (m.type === 'q4_k' || m.type === 'q5_k' || m.type === 'q6_k' || m.type === 'mxfp4') throw new KvsieveError(`wasm quantize: ${m.type} weights are only taken as stored, not converted from f32`);
    const blocks = m.type === 'q8_0' || m.type === 'q4_0';
    if (blocks) ensure(offset % 32 === 0 && n % 32 === 0, `wasm quantize: ${m.type} offset ${offset} and count ${n} must be multiples of 32`);
    const dst = m.ptr + weightRowBytes(m.type, offset); // the bytes of the first `offset` elements
    return new Task(OP_QUANTIZE, blocks ? n / 32 : n, blocks ? 1 : 64, n).i(3, WT_CODE[m.type]).i(4, src.ptr).i(5, dst);
  },

  /**
   * Re-lays a Q4_K, Q5_K or Q6_K matrix's superblocks, filled with the file's bytes, in place into the
   * layout the kernels hold (asm/kquant.ts; the same size), a group of four rows per unit. Exactly once
   * per matrix: matrixFromBytes runs it.
   */
  repackKQuant(m: Matrix): Task {
    ensure(m.type === 'q4_k' || m.type === 'q5_k' || m.type === 'q6_k', `wasm repackKQuant: ${m.type} weights are not a K-quant`);
    return new Task(OP_REPACK_KQ, Math.ceil(m.rows / 4), 1, m.rows * m.cols).i(3, WT_CODE[m.type]).i(4, m.ptr).i(5, m.rows).i(6, m.cols);
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
