// Attention of the G query heads of one group over their KV head's cache, and the cache append.
//
// A layer's cache is described by a head table in shared memory, one 32-byte entry per KV head:
//   +0 k ptr   +4 v ptr   [capacity][headDim] elements of the KV type (keys after RoPE)
//   +8 kScale  +12 vScale  f32 [capacity] (KV_I8 only: value = scale[slot] * q)
//   +16 length (live slots, the current segment's tokens included)
//   +20 probSums ptr: f32 [capacity] or 0
// Heads may have different lengths (presses keep different slots per head).
// KV_F16 slots must hold finite halves (kvStore saturates at +-65504; NaN reads back as a finite
// value): the kernel widens them with the fast finite-only conversion.
// Query token t of a segment of nq tokens sees the first (length - nq + t + 1) slots of each head.
import { KV_F32, KV_F16, KV_I8, hsum, madd, f16x4FiniteToF32x4, f32ToF16 } from './common';
import { softmaxRow, softmaxRowSink } from './elementwise';

export const HEAD_ENTRY: usize = 32;

// A batched attention (all the sequences of a step, each a segment) reads a segment table, one
// 32-byte entry per segment:
//   +0 q ptr  +4 out ptr  (the segment's first query and output rows; the strides are the task's)
//   +8 nq (its query tokens)  +12 its KV head table  +16 qChunk (query tokens per work unit)
//   +20 its first work unit (units of one segment: nKv * ceil(nq / qChunk), KV head major)
export const SEG_ENTRY: usize = 32;

/** Keys converted and scored per step; values converted and accumulated per chunk. */
const KEY_TILE: i32 = 4;
const V_CHUNK: i32 = 32;

/** Widens rows [j0, j0 + n) of a K or V area to f32 at tmp (KV_F32: returns the rows in place). */
@inline function kvRows(kt: i32, base: usize, j0: i32, n: i32, d: i32, tmp: usize): usize {
  const e = <usize>j0 * <usize>d;
  if (kt == KV_F32) return base + (e << 2);
  const count = n * d;
  if (kt == KV_F16) {
    const p = base + (e << 1);
    let i = 0;
    for (; i + 8 <= count; i += 8) {
      const h = v128.load(p + (<usize>i << 1));
      v128.store(tmp + (<usize>i << 2), f16x4FiniteToF32x4(i32x4.extend_low_i16x8_s(h)));
      v128.store(tmp + (<usize>i << 2), f16x4FiniteToF32x4(i32x4.extend_high_i16x8_s(h)), 16);
    }
    for (; i < count; i += 4) {
      v128.store(tmp + (<usize>i << 2), f16x4FiniteToF32x4(v128.load16x4_s(p + (<usize>i << 1))));
    }
  } else {
    const p = base + e;
    for (let i = 0; i < count; i += 4) {
      const b = i16x8.extend_low_i8x16_s(v128.load32_zero(p + <usize>i));
      v128.store(tmp + (<usize>i << 2), f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(b)));
    }
  }
  return tmp;
}

/** [sum(a), sum(b), sum(c), sum(d)] of four f32x4 vectors. */
@inline function transposeSumF(a: v128, b: v128, c: v128, d: v128): v128 {
  const s0 = f32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const s1 = f32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return f32x4.add(i32x4.shuffle(s0, s1, 0, 2, 4, 6), i32x4.shuffle(s0, s1, 1, 3, 5, 7));
}

/**
 * Scores of the G heads of a query row (heads D floats apart from q) against four key rows (D floats
 * apart from k), scaled by ks, into sc + g*scs (four floats per head), D = 16 * sizeof<T>(): the
 * row stride is a constant, so every load is a fixed offset from one of two pointers. Heads go in
 * pairs sharing each key load. Per score the arithmetic is scoreTileAny's: lane-wise products added
 * in order of the dimension, then transposeSumF.
 */
@inline function scoreTile<T>(q: usize, k: usize, G: i32, sc: usize, scs: usize, ks: v128): void {
  const DB: usize = sizeof<T>() * 64;
  let g = 0;
  for (; g + 2 <= G; g += 2) {
    let pq = q + <usize>g * DB;
    let pk = k;
    const pe = k + DB;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0);
    let b1 = f32x4.splat(0);
    let b2 = f32x4.splat(0);
    let b3 = f32x4.splat(0);
    while (pk < pe) {
      const qa = v128.load(pq);
      const qb = v128.load(pq, sizeof<T>() * 64);
      const k0 = v128.load(pk);
      const k1 = v128.load(pk, sizeof<T>() * 64);
      const k2 = v128.load(pk, sizeof<T>() * 128);
      const k3 = v128.load(pk, sizeof<T>() * 192);
      a0 = madd(qa, k0, a0);
      a1 = madd(qa, k1, a1);
      a2 = madd(qa, k2, a2);
      a3 = madd(qa, k3, a3);
      b0 = madd(qb, k0, b0);
      b1 = madd(qb, k1, b1);
      b2 = madd(qb, k2, b2);
      b3 = madd(qb, k3, b3);
      pq += 16;
      pk += 16;
    }
    v128.store(sc + <usize>g * scs, f32x4.mul(transposeSumF(a0, a1, a2, a3), ks));
    v128.store(sc + <usize>(g + 1) * scs, f32x4.mul(transposeSumF(b0, b1, b2, b3), ks));
  }
  if (g < G) {
    let pq = q + <usize>g * DB;
    let pk = k;
    const pe = k + DB;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    while (pk < pe) {
      const qa = v128.load(pq);
      a0 = madd(qa, v128.load(pk), a0);
      a1 = madd(qa, v128.load(pk, sizeof<T>() * 64), a1);
      a2 = madd(qa, v128.load(pk, sizeof<T>() * 128), a2);
      a3 = madd(qa, v128.load(pk, sizeof<T>() * 192), a3);
      pq += 16;
      pk += 16;
    }
    v128.store(sc + <usize>g * scs, f32x4.mul(transposeSumF(a0, a1, a2, a3), ks));
  }
}

/** scoreTile for any head size d (a multiple of 4). */
function scoreTileAny(q: usize, k0: usize, G: i32, d: i32, sc: usize, scs: usize, ks: v128): void {
  const db = <usize>d << 2;
  const k1 = k0 + db;
  const k2 = k1 + db;
  const k3 = k2 + db;
  for (let g = 0; g < G; g++) {
    const qg = q + <usize>g * db;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    for (let i = 0; i < d; i += 4) {
      const o = <usize>i << 2;
      const qv = v128.load(qg + o);
      a0 = madd(qv, v128.load(k0 + o), a0);
      a1 = madd(qv, v128.load(k1 + o), a1);
      a2 = madd(qv, v128.load(k2 + o), a2);
      a3 = madd(qv, v128.load(k3 + o), a3);
    }
    v128.store(sc + <usize>g * scs, f32x4.mul(transposeSumF(a0, a1, a2, a3), ks));
  }
}

/** Probability j of the row at p, times the slot's value scale for KV_I8 caches. */
@inline function prob<S>(p: usize, vs: usize, j: i32): f32 {
  let v = load<f32>(p + (<usize>j << 2));
  if (sizeof<S>() == 1) v *= load<f32>(vs + (<usize>j << 2));
  return v;
}

/**
 * Two heads' outputs oa/ob (d floats) += sum over the n value rows at vr (db bytes apart) of the
 * heads' probabilities pa[j]/pb[j] (value-scaled for KV_I8) times row j, in order of j.
 */
function pvPair<S>(pa: usize, pb: usize, vs: usize, vr: usize, n: i32, db: usize, d: i32, oa: usize, ob: usize): void {
  const d16 = d & ~15;
  for (let i = 0; i < d16; i += 16) {
    const o = <usize>i << 2;
    let a0 = v128.load(oa + o);
    let a1 = v128.load(oa + o, 16);
    let a2 = v128.load(oa + o, 32);
    let a3 = v128.load(oa + o, 48);
    let b0 = v128.load(ob + o);
    let b1 = v128.load(ob + o, 16);
    let b2 = v128.load(ob + o, 32);
    let b3 = v128.load(ob + o, 48);
    let v = vr + o;
    for (let j = 0; j < n; j++) {
      const x = f32x4.splat(prob<S>(pa, vs, j));
      const y = f32x4.splat(prob<S>(pb, vs, j));
      const v0 = v128.load(v);
      const v1 = v128.load(v, 16);
      const v2 = v128.load(v, 32);
      const v3 = v128.load(v, 48);
      a0 = madd(x, v0, a0);
      a1 = madd(x, v1, a1);
      a2 = madd(x, v2, a2);
      a3 = madd(x, v3, a3);
      b0 = madd(y, v0, b0);
      b1 = madd(y, v1, b1);
      b2 = madd(y, v2, b2);
      b3 = madd(y, v3, b3);
      v += db;
    }
    v128.store(oa + o, a0);
    v128.store(oa + o, a1, 16);
    v128.store(oa + o, a2, 32);
    v128.store(oa + o, a3, 48);
    v128.store(ob + o, b0);
    v128.store(ob + o, b1, 16);
    v128.store(ob + o, b2, 32);
    v128.store(ob + o, b3, 48);
  }
  for (let i = d16; i < d; i += 4) {
    const o = <usize>i << 2;
    let a = v128.load(oa + o);
    let b = v128.load(ob + o);
    let v = vr + o;
    for (let j = 0; j < n; j++) {
      const w = v128.load(v);
      a = madd(f32x4.splat(prob<S>(pa, vs, j)), w, a);
      b = madd(f32x4.splat(prob<S>(pb, vs, j)), w, b);
      v += db;
    }
    v128.store(oa + o, a);
    v128.store(ob + o, b);
  }
}

/** pvPair for one head. */
function pvOne<S>(pa: usize, vs: usize, vr: usize, n: i32, db: usize, d: i32, oa: usize): void {
  const d16 = d & ~15;
  for (let i = 0; i < d16; i += 16) {
    const o = <usize>i << 2;
    let a0 = v128.load(oa + o);
    let a1 = v128.load(oa + o, 16);
    let a2 = v128.load(oa + o, 32);
    let a3 = v128.load(oa + o, 48);
    let v = vr + o;
    for (let j = 0; j < n; j++) {
      const x = f32x4.splat(prob<S>(pa, vs, j));
      a0 = madd(x, v128.load(v), a0);
      a1 = madd(x, v128.load(v, 16), a1);
      a2 = madd(x, v128.load(v, 32), a2);
      a3 = madd(x, v128.load(v, 48), a3);
      v += db;
    }
    v128.store(oa + o, a0);
    v128.store(oa + o, a1, 16);
    v128.store(oa + o, a2, 32);
    v128.store(oa + o, a3, 48);
  }
  for (let i = d16; i < d; i += 4) {
    const o = <usize>i << 2;
    let a = v128.load(oa + o);
    let v = vr + o;
    for (let j = 0; j < n; j++) {
      a = madd(f32x4.splat(prob<S>(pa, vs, j)), v128.load(v), a);
      v += db;
    }
    v128.store(oa + o, a);
  }
}

/** Scratch bytes one thread needs for attention over heads with at most maxLen slots. */
export function attnScratch(g: i32, d: i32, maxLen: i32, withProbs: bool): usize {
  const scores: usize = withProbs ? 0 : ((<usize>g * <usize>maxLen * 4 + 63) & ~(<usize>63));
  return scores + ((<usize>V_CHUNK * <usize>d * 4 + 63) & ~(<usize>63));
}

/** Bytes of one stored K or V row of d values. */
@inline function rowBytes(kt: i32, d: i32): usize {
  return kt == KV_F32 ? <usize>d << 2 : kt == KV_F16 ? <usize>d << 1 : <usize>d;
}

/**
 * Query tokens [t0, t1) of the G heads of KV head h.
 * q/out: [nq][nHeads*d] rows with strides qStride/outStride (floats); query head h*G+g.
 * Token t sees slots [lo, end): end = length - nq + t + 1 (causal), lo = max(0, end - window) when
 * window > 0 (a sliding-window layer, whose slots hold consecutive positions), 0 otherwise.
 * probs (optional): row (t*nHeads + head) at probs + that*probsStride floats gets the probabilities
 * of all `length` slots (0 outside the visible ones).
 * sinks (optional): [nHeads] f32, query head i's sink logit (GPT-OSS): in the softmax's sum, not in the output.
 */
export function attnUnit(
  kt: i32, q: usize, qStride: i32, table: usize, h: i32, out: usize, outStride: i32,
  probs: usize, probsStride: i32, nq: i32, G: i32, d: i32, scale: f32, nKv: i32,
  t0: i32, t1: i32, scratch: usize, window: i32, sinks: usize,
): void {
  const e = table + <usize>h * HEAD_ENTRY;
  const kp0 = load<u32>(e) as usize;
  const vp0 = load<u32>(e, 4) as usize;
  const ksp0 = load<u32>(e, 8) as usize;
  const vsp0 = load<u32>(e, 12) as usize;
  const len = load<i32>(e, 16);
  const psum0 = load<u32>(e, 20) as usize;
  const rb = rowBytes(kt, d);
  const nH = nKv * G;
  const scoresBytes: usize = probs ? 0 : ((<usize>G * <usize>len * 4 + 63) & ~(<usize>63));
  const tmp = scratch + scoresBytes;
  const invG: f32 = <f32>1.0 / <f32>G;
  const db = <usize>d << 2; // bytes of one f32 row
  const sv = f32x4.splat(scale);
  for (let t = t0; t < t1; t++) {
    const end = min(len, max(0, len - nq + t + 1));
    const lo = window > 0 ? max(0, end - window) : 0;
    // The visible slots [lo, end) as a head of their own: nv slots from kp.
    const nv = end - lo;
    const kp = kp0 + <usize>lo * rb;
    const vp = vp0 + <usize>lo * rb;
    const ksp = ksp0 + (<usize>lo << 2);
    const vsp = vsp0 + (<usize>lo << 2);
    const psum = psum0 ? psum0 + (<usize>lo << 2) : 0;
    const qrow = q + ((<usize>t * <usize>qStride + <usize>(h * G) * <usize>d) << 2);
    const orow = out + ((<usize>t * <usize>outStride + <usize>(h * G) * <usize>d) << 2);
    // Score rows: the caller's probability rows, or scratch.
    let sc0: usize;
    let scs: usize;
    if (probs) {
      const row0 = probs + ((<usize>(t * nH + h * G) * <usize>probsStride) << 2);
      scs = <usize>probsStride << 2;
      for (let g = 0; g < G; g++) memory.fill(row0 + <usize>g * scs, 0, <usize>lo << 2);
      sc0 = row0 + (<usize>lo << 2);
    } else {
      sc0 = scratch;
      scs = <usize>len << 2;
    }
    // Scores, four keys at a time: each key row is widened once for the G heads.
    let j = 0;
    for (; j + KEY_TILE <= nv; j += KEY_TILE) {
      const k0 = kvRows(kt, kp, j, KEY_TILE, d, tmp);
      let ks = sv;
      if (kt == KV_I8) ks = f32x4.mul(v128.load(ksp + (<usize>j << 2)), sv);
      const scj = sc0 + (<usize>j << 2);
      if (d == 64) scoreTile<f32>(qrow, k0, G, scj, scs, ks);
      else if (d == 128) scoreTile<f64>(qrow, k0, G, scj, scs, ks);
      else scoreTileAny(qrow, k0, G, d, scj, scs, ks);
    }
    for (; j < nv; j++) {
      const kr = kvRows(kt, kp, j, 1, d, tmp);
      let ks = scale;
      if (kt == KV_I8) ks = load<f32>(ksp + (<usize>j << 2)) * scale;
      for (let g = 0; g < G; g++) {
        const qg = qrow + <usize>g * db;
        let a = f32x4.splat(0);
        for (let i = 0; i < d; i += 4) {
          const o = <usize>i << 2;
          a = madd(v128.load(qg + o), v128.load(kr + o), a);
        }
        store<f32>(sc0 + <usize>g * scs + (<usize>j << 2), hsum(a) * ks);
      }
    }
    for (let g = 0; g < G; g++) {
      const sc = sc0 + <usize>g * scs;
      if (sinks) softmaxRowSink(sc, nv, true, load<f32>(sinks + (<usize>(h * G + g) << 2)));
      else softmaxRow(sc, nv);
      if (probs) memory.fill(sc + (<usize>nv << 2), 0, <usize>(len - end) << 2);
      memory.fill(orow + <usize>g * db, 0, db);
    }
    // Output: values in chunks (widened once for the G heads); the outputs of two heads accumulate
    // in registers, four vectors (16 floats) each at a time, across the chunk, sharing each value
    // load. Per output float the arithmetic is the same whatever the grouping: o + p * v in slot order.
    for (let c0 = 0; c0 < nv; c0 += V_CHUNK) {
      const cn = min(V_CHUNK, nv - c0);
      const vr = kvRows(kt, vp, c0, cn, d, tmp);
      const vs = vsp + (<usize>c0 << 2);
      let g = 0;
      for (; g + 2 <= G; g += 2) {
        const pa = sc0 + <usize>g * scs + (<usize>c0 << 2);
        const oa = orow + <usize>g * db;
        if (kt == KV_I8) pvPair<i8>(pa, pa + scs, vs, vr, cn, db, d, oa, oa + db);
        else pvPair<f32>(pa, pa + scs, vs, vr, cn, db, d, oa, oa + db);
      }
      if (g < G) {
        const pa = sc0 + <usize>g * scs + (<usize>c0 << 2);
        if (kt == KV_I8) pvOne<i8>(pa, vs, vr, cn, db, d, orow + <usize>g * db);
        else pvOne<f32>(pa, vs, vr, cn, db, d, orow + <usize>g * db);
      }
    }
    // The h2o running sum: the group's mean probability per slot.
    if (psum) {
      for (let g = 0; g < G; g++) {
        const sc = sc0 + <usize>g * scs;
        for (let jj = 0; jj < nv; jj++) {
          const a = psum + (<usize>jj << 2);
          store<f32>(a, load<f32>(a) + load<f32>(sc + (<usize>jj << 2)) * invG);
        }
      }
    }
  }
}

/**
 * Appends token t (of a segment of nTok) of KV head h: k/v rows at src + (t*srcStride + h*d) floats
 * go to slot (length - nTok + t). KV_F16: round to nearest even, saturating at +-65504.
 * KV_I8: scale = amax/127, q = round-half-even(x / scale).
 */
export function kvStoreUnit(
  kt: i32, kSrc: usize, vSrc: usize, srcStride: i32, table: usize, h: i32, d: i32, nTok: i32, t: i32,
): void {
  const e = table + <usize>h * HEAD_ENTRY;
  const slot = load<i32>(e, 16) - nTok + t;
  if (slot < 0) unreachable();
  const off = (<usize>t * <usize>srcStride + <usize>h * <usize>d) << 2;
  storeRow(kt, kSrc + off, load<u32>(e) as usize, load<u32>(e, 8) as usize, slot, d);
  storeRow(kt, vSrc + off, load<u32>(e, 4) as usize, load<u32>(e, 12) as usize, slot, d);
}

function storeRow(kt: i32, src: usize, base: usize, scales: usize, slot: i32, d: i32): void {
  if (kt == KV_F32) {
    memory.copy(base + ((<usize>slot * <usize>d) << 2), src, <usize>d << 2);
  } else if (kt == KV_F16) {
    // Saturate to the largest finite half: attention widens f16 with the finite-only fast path.
    const p = base + ((<usize>slot * <usize>d) << 1);
    for (let i = 0; i < d; i++) {
      const v = max<f32>(<f32>-65504.0, min<f32>(<f32>65504.0, load<f32>(src + (<usize>i << 2))));
      store<u16>(p + (<usize>i << 1), <u16>f32ToF16(v));
    }
  } else if (kt == KV_I8) {
    let amax: f32 = 0;
    for (let i = 0; i < d; i++) amax = max(amax, Mathf.abs(load<f32>(src + (<usize>i << 2))));
    const sc: f32 = amax / <f32>127.0;
    const id: f32 = sc != 0 ? <f32>1.0 / sc : <f32>0.0;
    store<f32>(scales + (<usize>slot << 2), sc);
    const p = base + <usize>slot * <usize>d;
    for (let i = 0; i < d; i++) {
      const v = nearest<f32>(load<f32>(src + (<usize>i << 2)) * id);
      store<i8>(p + <usize>i, <i8>(<i32>max<f32>(<f32>-127.0, min<f32>(<f32>127.0, v))));
    }
  } else unreachable();
}
