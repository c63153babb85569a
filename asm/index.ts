// kvsieve CPU kernels: entry point and job dispatcher.
//
// A job is a list of independent tasks in shared memory; every thread (main + workers) calls
// run(job, tid, nThreads) and executes its share of every task's units, so one job costs one
// barrier however many tasks it holds. Tasks of one job must not write what another task of the
// same job reads.
//
// Job layout (little-endian 32-bit words):
//   job+0   nTasks
//   job+4   scratchBase  (per-thread scratch = scratchBase + tid * scratchStride)
//   job+8   scratchStride
//   job+128 + 128*i : task i, 32 words:
//     w0 op   w1 units   w2 align (range granularity)
//     w3..    op arguments, listed at each OP_* below (pointers are byte offsets, strides in floats)
//     w31     next unit to hand out (the host writes 0)
// Threads claim a task's units in ranges as they come free (guided self-scheduling: a range is
// about the remaining units over 2 x threads, at least 1/128 of the task per thread), so a thread
// that starts late or runs slow (a busy core) takes less; no kernel's result depends on which
// thread computed which range. The floor sets the tail: the other threads wait for the last range,
// about half a range on average. Lowering it from 1/16 to 1/128 per thread measured 0-4% faster on
// a 7B's K-quant products (2 threads) and no change on a 0.5B's q8_0 ones.
// The TypeScript side (src/backend/wasm/abi.ts, ops.ts) builds these; keep both in sync (ABI_VERSION).
import { WT_Q8_0, WT_Q4_0, WT_MXFP4, isKQuant, rowBytes } from './common';
import { dequantRowKQuant, quantXK, repackKQuantGroups, repackScratch } from './kquant';
import { dequantRowMxfp4 } from './mxfp4';
import { matRows, qxBytes, quantX, dequantRow, fewTokens } from './matvec';
import { rmsnormRow, ropeHead, softmaxRow, siluGateRange, geluGateRange, oaiGateRange, addRange, sumRange, expRange } from './elementwise';
import { attnUnit, attnScratch, kvStoreUnit, HEAD_ENTRY, SEG_ENTRY } from './attention';
import { dotRowsRange, redundancyUnit, redundancyScratch, RED_ENTRY } from './scores';
import { quantizeRange } from './quant';

const ABI_VERSION: i32 = 12;

const TASK_BYTES: usize = 128;
const JOB_HEADER: usize = 128;
const GU_CHUNK: i32 = 512;

/** units = rows. wType W x y cols bias(0) flags(1 = accumulate) nTok xStride yStride */
const OP_MATVEC: i32 = 1;
/** units = rows. wType Wg Wu x h cols nTok xStride hStride: h = silu(Wg x) * (Wu x) */
const OP_GATE_UP: i32 = 2;
/** units = rows. x w(0 = none) y n eps(f32) xStride yStride */
const OP_RMSNORM: i32 = 3;
/** units = nTok*nHeads. x nHeads headDim xStride cos sin tabStride (cos/sin row t at t*tabStride) */
const OP_ROPE: i32 = 4;
/** units = rows. x n stride */
const OP_SOFTMAX: i32 = 5;
/** units = n. g u out act(0 silu, 1 gelu-tanh, 2 GPT-OSS's clamped SwiGLU) */
const OP_SILU_GATE: i32 = 6;
/** units = n. out a b */
const OP_ADD: i32 = 7;
/** units = nKv * ceil(nq/qChunk). kvType q qStride table out outStride probs probsStride nq G d scale(f32) nKv qChunk window (0: none) sinks (0: none) */
const OP_ATTN: i32 = 8;
/** units = nTok*nKv. kvType kSrc vSrc srcStride table nKv d nTok */
const OP_KV_STORE: i32 = 9;
/** units = nIds. wType W cols ids(i32) y yStride rows */
const OP_EMBED: i32 = 10;
/** units = n. x partials streams(1|4) (thread tid writes partials[tid]) */
const OP_SUM: i32 = 11;
/** units = n. x out: out[i] = exp(x[i]) (the kernels' SIMD exp) */
const OP_EXP: i32 = 12;
/** units = rows of a. a aStride k n d scale(f32) out outStride: out[r][j] = scale * a[r] . k[j] */
const OP_DOTS: i32 = 13;
/** units = heads. table(RED_ENTRY per head: keys n out(f64)) d threshold(f32) */
const OP_REDUNDANCY: i32 = 14;
/**
 * units = 32-blocks (wType q8_0/q4_0) or elements (f16/bf16/f32). wType src(f32) dst: the floats at src
 * in wType's stored layout at dst (unit u at dst + u * its bytes), as the host's reference conversions.
 */
const OP_QUANTIZE: i32 = 15;
/**
 * units = the segments' units (see SEG_ENTRY in attention.ts). kvType segs(table) nSeg qStride outStride
 * G d scale(f32) nKv window sinks: OP_ATTN for every segment of a step in one task, no probs output.
 */
const OP_ATTN_SEGS: i32 = 16;
/** units = row groups of 4 (ceil(rows / 4)). wType (Q4_K/Q5_K/Q6_K) W rows cols: the file's superblocks re-laid in place as the kernels hold them (kquant.ts). */
const OP_REPACK_KQ: i32 = 17;

export function abi_version(): i32 {
  return ABI_VERSION;
}

/** First free byte after the module's own data; the host's allocator starts here. */
export function heap_base(): usize {
  return __heap_base;
}

@inline function w32(t: usize, i: i32): i32 {
  return load<i32>(t + (<usize>i << 2));
}
@inline function wptr(t: usize, i: i32): usize {
  return load<u32>(t + (<usize>i << 2)) as usize;
}
@inline function wf32(t: usize, i: i32): f32 {
  return load<f32>(t + (<usize>i << 2));
}

@inline function isQuant(wt: i32): bool {
  return wt == WT_Q8_0 || wt == WT_Q4_0 || isKQuant(wt) || wt == WT_MXFP4;
}

/** Start of thread i's range of n units out of T threads, rounded to a multiple of align. */
export function split_point(n: i32, align: i32, i: i32, T: i32): i32 {
  if (i >= T) return n;
  const q = <i32>((<i64>n * <i64>i) / <i64>T);
  const a = max(1, align);
  return min(n, ((q + (a >> 1)) / a) * a);
}

function maxHeadLength(table: usize, nKv: i32): i32 {
  let m = 0;
  for (let h = 0; h < nKv; h++) m = max(m, load<i32>(table + <usize>h * HEAD_ENTRY, 16));
  return m;
}

/** Scratch bytes one thread needs for the task at `task`. */
export function task_scratch(task: usize): usize {
  const op = w32(task, 0);
  if (op == OP_MATVEC) return isQuant(w32(task, 3)) ? qxBytes(w32(task, 3), w32(task, 10), w32(task, 7)) : 0;
  if (op == OP_GATE_UP) {
    const wt = w32(task, 3);
    const nTok = w32(task, 9);
    return (isQuant(wt) ? qxBytes(wt, nTok, w32(task, 8)) : 0) + <usize>(2 * GU_CHUNK * 4) * <usize>nTok;
  }
  if (op == OP_ATTN) {
    return attnScratch(w32(task, 12), w32(task, 13), maxHeadLength(wptr(task, 6), w32(task, 15)), wptr(task, 9) != 0);
  }
  if (op == OP_ATTN_SEGS) {
    const segs = wptr(task, 4);
    const nKv = w32(task, 11);
    let most = 0;
    for (let s = 0; s < w32(task, 5); s++) most = max(most, maxHeadLength(load<u32>(segs + <usize>s * SEG_ENTRY, 12) as usize, nKv));
    return attnScratch(w32(task, 8), w32(task, 9), most, false);
  }
  if (op == OP_REDUNDANCY) {
    const table = wptr(task, 3);
    let most: usize = 0;
    for (let h = 0; h < w32(task, 1); h++) most = max(most, redundancyScratch(load<i32>(table + <usize>h * RED_ENTRY, 4), w32(task, 4)));
    return most;
  }
  if (op == OP_REPACK_KQ) return repackScratch(w32(task, 3), w32(task, 6));
  return 0;
}

// Per-thread cache of the quantised input (each thread has its own instance, so globals are
// thread-local). Valid only within one run(): tasks of a job never write each other's inputs.
let qxValid = false;
let qxX: usize = 0;
let qxCols: i32 = 0;
let qxTok: i32 = 0;
let qxStride: i32 = 0;
/** The cached layout: 0 octets, 1 the one-token layout per token (quantX), 2 K-quant superblocks (quantXK). */
let qxLayout = 0;

/** x quantised for weights of type wt (its layout depends on wt and nTok), from the cache when it holds it. */
function quantisedInput(wt: i32, x: usize, xStride: i32, nTok: i32, cols: i32, scratch: usize): usize {
  const layout = isKQuant(wt) ? 2 : fewTokens(wt, nTok) ? 1 : 0;
  if (!(qxValid && qxX == x && qxCols == cols && qxTok == nTok && qxStride == xStride && qxLayout == layout)) {
    if (layout == 2) quantXK(x, xStride, nTok, cols, scratch);
    else quantX(x, xStride, nTok, cols, scratch, layout == 1);
    qxValid = true;
    qxLayout = layout;
    qxX = x;
    qxCols = cols;
    qxTok = nTok;
    qxStride = xStride;
  }
  return scratch;
}

function exec(t: usize, u0: i32, u1: i32, scratch: usize, tid: i32): void {
  const op = w32(t, 0);
  if (op == OP_MATVEC) {
    const wt = w32(t, 3);
    const x = wptr(t, 5);
    const cols = w32(t, 7);
    const nTok = w32(t, 10);
    const xStride = w32(t, 11);
    const qx = isQuant(wt) ? quantisedInput(wt, x, xStride, nTok, cols, scratch) : 0;
    matRows(wt, wptr(t, 4), x, qx, wptr(t, 6), cols, u0, u1, wptr(t, 8), (w32(t, 9) & 1) != 0, nTok, xStride, w32(t, 12));
  } else if (op == OP_GATE_UP) {
    const wt = w32(t, 3);
    const Wg = wptr(t, 4);
    const Wu = wptr(t, 5);
    const x = wptr(t, 6);
    const hp = wptr(t, 7);
    const cols = w32(t, 8);
    const nTok = w32(t, 9);
    const xStride = w32(t, 10);
    const hStride = w32(t, 11);
    let qx: usize = 0;
    let tg = scratch;
    if (isQuant(wt)) {
      qx = quantisedInput(wt, x, xStride, nTok, cols, scratch);
      tg += qxBytes(wt, nTok, cols);
    }
    const tu = tg + <usize>(GU_CHUNK * 4) * <usize>nTok;
    for (let c0 = u0; c0 < u1; c0 += GU_CHUNK) {
      const c1 = min(u1, c0 + GU_CHUNK);
      // Row r of token t lands at tmp + (t*GU_CHUNK + r - c0) floats (the shifted base wraps).
      const shift = <usize>c0 << 2;
      matRows(wt, Wg, x, qx, tg - shift, cols, c0, c1, 0, false, nTok, xStride, GU_CHUNK);
      matRows(wt, Wu, x, qx, tu - shift, cols, c0, c1, 0, false, nTok, xStride, GU_CHUNK);
      for (let k = 0; k < nTok; k++) {
        const o = <usize>(k * GU_CHUNK) << 2;
        siluGateRange(tg + o, tu + o, hp + ((<usize>k * <usize>hStride + <usize>c0) << 2), 0, c1 - c0);
      }
    }
  } else if (op == OP_RMSNORM) {
    const x = wptr(t, 3);
    const w = wptr(t, 4);
    const y = wptr(t, 5);
    const n = w32(t, 6);
    const eps = wf32(t, 7);
    const xs = <usize>w32(t, 8) << 2;
    const ys = <usize>w32(t, 9) << 2;
    for (let r = u0; r < u1; r++) rmsnormRow(x + <usize>r * xs, w, y + <usize>r * ys, n, eps);
  } else if (op == OP_ROPE) {
    const x = wptr(t, 3);
    const nHeads = w32(t, 4);
    const d = w32(t, 5);
    const xs = <usize>w32(t, 6) << 2;
    const cs = wptr(t, 7);
    const sn = wptr(t, 8);
    const ts = <usize>w32(t, 9) << 2;
    for (let u = u0; u < u1; u++) {
      const k = u / nHeads;
      const hh = u % nHeads;
      ropeHead(x + <usize>k * xs + ((<usize>hh * <usize>d) << 2), d, cs + <usize>k * ts, sn + <usize>k * ts);
    }
  } else if (op == OP_SOFTMAX) {
    const x = wptr(t, 3);
    const n = w32(t, 4);
    const xs = <usize>w32(t, 5) << 2;
    for (let r = u0; r < u1; r++) softmaxRow(x + <usize>r * xs, n);
  } else if (op == OP_SILU_GATE) {
    const act = w32(t, 6);
    if (act == 1) geluGateRange(wptr(t, 3), wptr(t, 4), wptr(t, 5), u0, u1);
    else if (act == 2) oaiGateRange(wptr(t, 3), wptr(t, 4), wptr(t, 5), u0, u1);
    else siluGateRange(wptr(t, 3), wptr(t, 4), wptr(t, 5), u0, u1);
  } else if (op == OP_ADD) {
    addRange(wptr(t, 3), wptr(t, 4), wptr(t, 5), u0, u1);
  } else if (op == OP_ATTN) {
    qxValid = false; // attention scratch overwrites a cached quantised input
    const nq = w32(t, 11);
    const qChunk = max(1, w32(t, 16));
    const nChunks = (nq + qChunk - 1) / qChunk;
    for (let u = u0; u < u1; u++) {
      const h = u / nChunks;
      const c = u % nChunks;
      attnUnit(w32(t, 3), wptr(t, 4), w32(t, 5), wptr(t, 6), h, wptr(t, 7), w32(t, 8), wptr(t, 9), w32(t, 10),
        nq, w32(t, 12), w32(t, 13), wf32(t, 14), w32(t, 15), c * qChunk, min(nq, (c + 1) * qChunk), scratch, w32(t, 17), wptr(t, 18));
    }
  } else if (op == OP_ATTN_SEGS) {
    qxValid = false;
    const segs = wptr(t, 4);
    const nSeg = w32(t, 5);
    // A range of units covers consecutive segments: find the first, then step along.
    let s = 0;
    for (let u = u0; u < u1; u++) {
      while (s + 1 < nSeg && load<i32>(segs + <usize>(s + 1) * SEG_ENTRY, 20) <= u) s++;
      const e = segs + <usize>s * SEG_ENTRY;
      const nq = load<i32>(e, 8);
      const qChunk = load<i32>(e, 16);
      const nChunks = (nq + qChunk - 1) / qChunk;
      const v = u - load<i32>(e, 20);
      const c = v % nChunks;
      attnUnit(w32(t, 3), load<u32>(e) as usize, w32(t, 6), load<u32>(e, 12) as usize, v / nChunks, load<u32>(e, 4) as usize, w32(t, 7),
        0, 0, nq, w32(t, 8), w32(t, 9), wf32(t, 10), w32(t, 11), c * qChunk, min(nq, (c + 1) * qChunk), scratch, w32(t, 12), wptr(t, 13));
    }
  } else if (op == OP_KV_STORE) {
    const nKv = w32(t, 8);
    for (let u = u0; u < u1; u++) {
      kvStoreUnit(w32(t, 3), wptr(t, 4), wptr(t, 5), w32(t, 6), wptr(t, 7), u % nKv, w32(t, 9), w32(t, 10), u / nKv);
    }
  } else if (op == OP_EMBED) {
    const wt = w32(t, 3);
    const W = wptr(t, 4);
    const cols = w32(t, 5);
    const ids = wptr(t, 6);
    const y = wptr(t, 7);
    const ys = <usize>w32(t, 8) << 2;
    if (isKQuant(wt)) {
      qxValid = false; // its 16 bytes of scale scratch overwrite a cached quantised input
      for (let u = u0; u < u1; u++) dequantRowKQuant(wt, W, w32(t, 9), cols, load<i32>(ids + (<usize>u << 2)), y + <usize>u * ys, scratch);
    } else if (wt == WT_MXFP4) {
      for (let u = u0; u < u1; u++) dequantRowMxfp4(W, cols, load<i32>(ids + (<usize>u << 2)), y + <usize>u * ys);
    } else {
      for (let u = u0; u < u1; u++) dequantRow(wt, W, cols, load<i32>(ids + (<usize>u << 2)), y + <usize>u * ys);
    }
  } else if (op == OP_SUM) {
    store<f32>(wptr(t, 4) + (<usize>tid << 2), sumRange(wptr(t, 3), u0, u1, w32(t, 5)));
  } else if (op == OP_EXP) {
    expRange(wptr(t, 3), wptr(t, 4), u0, u1);
  } else if (op == OP_DOTS) {
    dotRowsRange(wptr(t, 3), w32(t, 4), u0, u1, wptr(t, 5), w32(t, 6), w32(t, 7), wf32(t, 8), wptr(t, 9), w32(t, 10));
  } else if (op == OP_REDUNDANCY) {
    const table = wptr(t, 3);
    for (let u = u0; u < u1; u++) {
      const e = table + <usize>u * RED_ENTRY;
      redundancyUnit(load<u32>(e) as usize, load<i32>(e, 4), w32(t, 4), wf32(t, 5), load<u32>(e, 8) as usize, scratch);
    }
  } else if (op == OP_QUANTIZE) {
    quantizeRange(w32(t, 3), wptr(t, 4), wptr(t, 5), u0, u1);
  } else if (op == OP_REPACK_KQ) {
    if (!isKQuant(w32(t, 3))) unreachable();
    repackKQuantGroups(w32(t, 3), wptr(t, 4), w32(t, 5), w32(t, 6), u0, u1, scratch);
  } else {
    unreachable();
  }
}

/** Byte offset of a task's next-unit counter (w31). */
const NEXT_UNIT: usize = 124;

/** Runs thread tid's share of every task of the job: the ranges of units it claims. */
export function run(job: usize, tid: i32, nThreads: i32): void {
  qxValid = false;
  const nTasks = load<i32>(job);
  const stride = load<u32>(job, 8) as usize;
  const scratch = (load<u32>(job, 4) as usize) + <usize>tid * stride;
  for (let i = 0; i < nTasks; i++) {
    const t = job + JOB_HEADER + <usize>i * TASK_BYTES;
    if (task_scratch(t) > stride) unreachable();
    const units = w32(t, 1);
    const a = max(1, w32(t, 2));
    if (nThreads == 1) {
      if (units > 0) exec(t, 0, units, scratch, tid);
    } else if (w32(t, 0) == OP_SUM) {
      // Per-thread partial sums (partials[tid]): one fixed range per thread.
      const u0 = split_point(units, a, tid, nThreads);
      const u1 = split_point(units, a, tid + 1, nThreads);
      if (u0 < u1) exec(t, u0, u1, scratch, tid);
    } else {
      const least = max(a, (units / (128 * nThreads) / a) * a);
      for (;;) {
        let u0 = atomic.load<i32>(t + NEXT_UNIT);
        let u1 = 0;
        while (u0 < units) {
          const want = max(least, ((units - u0) / (2 * nThreads) / a) * a);
          u1 = min(units, u0 + want);
          const seen = atomic.cmpxchg<i32>(t + NEXT_UNIT, u0, u1);
          if (seen == u0) break;
          u0 = seen;
        }
        if (u0 >= units) break;
        exec(t, u0, u1, scratch, tid);
      }
    }
  }
}

/** Bytes of one row of a weight of type wt (exported for the host's layout checks). */
export function row_bytes(wt: i32, cols: i32): usize {
  return rowBytes(wt, cols);
}
