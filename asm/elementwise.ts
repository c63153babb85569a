// Row-wise and element-wise kernels. Every SIMD loop has a scalar tail computed with the same float
// operations (exp/silu tails run the SIMD code on a splat), so results never depend on where a
// thread's range starts or ends.
import { hsum, hmax, exp4, exp1, siluMul4, siluMul1, geluMul4, geluMul1, oaiMul4, oaiMul1 } from './common';

/** y = x / sqrt(mean(x^2) + eps) * w (w = 0: no weight), one row of n values. */
export function rmsnormRow(x: usize, w: usize, y: usize, n: i32, eps: f32): void {
  const n4 = n & ~3;
  let a = f32x4.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    a = f32x4.add(a, f32x4.mul(v, v));
  }
  let ss = hsum(a);
  for (let i = n4; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    ss += v * v;
  }
  const s: f32 = <f32>1.0 / Mathf.sqrt(ss / <f32>n + eps);
  const sv = f32x4.splat(s);
  if (w) {
    for (let i = 0; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(y + o, f32x4.mul(f32x4.mul(v128.load(x + o), sv), v128.load(w + o)));
    }
    for (let i = n4; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(y + o, (load<f32>(x + o) * s) * load<f32>(w + o));
    }
  } else {
    for (let i = 0; i < n4; i += 4) {
      const o = <usize>i << 2;
      v128.store(y + o, f32x4.mul(v128.load(x + o), sv));
    }
    for (let i = n4; i < n; i++) {
      const o = <usize>i << 2;
      store<f32>(y + o, load<f32>(x + o) * s);
    }
  }
}

/**
 * rotate_half RoPE of one head of d values in place, with cos/sin [d/2] for its position:
 * x[i] <- x[i] c_i - x[i+d/2] s_i ; x[i+d/2] <- x[i+d/2] c_i + x[i] s_i.
 */
export function ropeHead(x: usize, d: i32, cs: usize, sn: usize): void {
  const half = d >> 1;
  const hb = <usize>half << 2;
  const h4 = half & ~3;
  for (let i = 0; i < h4; i += 4) {
    const o = <usize>i << 2;
    const a = v128.load(x + o);
    const b = v128.load(x + hb + o);
    const c = v128.load(cs + o);
    const s = v128.load(sn + o);
    v128.store(x + o, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
    v128.store(x + hb + o, f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s)));
  }
  for (let i = h4; i < half; i++) {
    const o = <usize>i << 2;
    const a = load<f32>(x + o);
    const b = load<f32>(x + hb + o);
    const c = load<f32>(cs + o);
    const s = load<f32>(sn + o);
    store<f32>(x + o, a * c - b * s);
    store<f32>(x + hb + o, b * c + a * s);
  }
}

/** In-place softmax of n values: exp(x - max) / sum (multiplied by 1/sum). */
export function softmaxRow(x: usize, n: i32): void {
  softmaxRowSink(x, n, false, 0);
}

/**
 * softmaxRow with, when hasSink, one more logit `sink` in the max and the sum whose probability is
 * not stored (GPT-OSS's attention sinks: a learned per-head logit that takes a share of the mass).
 */
export function softmaxRowSink(x: usize, n: i32, hasSink: bool, sink: f32): void {
  if (n <= 0) return;
  const n4 = n & ~3;
  let m: f32 = -Infinity;
  if (n4 > 0) {
    let mv = f32x4.splat(-Infinity);
    // pmax (one instruction; f32x4.max is a long sequence for its NaN and -0 rules): a NaN may be
    // skipped here, but it makes the sum, and so every output, NaN all the same; a max of -0 for +0
    // changes no difference x - m.
    for (let i = 0; i < n4; i += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize>i << 2)));
    m = hmax(mv);
  }
  for (let i = n4; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  if (hasSink) m = max(m, sink);
  const mv = f32x4.splat(m);
  let sv = f32x4.splat(0);
  for (let i = 0; i < n4; i += 4) {
    const p = x + (<usize>i << 2);
    const e = exp4(f32x4.sub(v128.load(p), mv));
    v128.store(p, e);
    sv = f32x4.add(sv, e);
  }
  let sum = hsum(sv);
  for (let i = n4; i < n; i++) {
    const p = x + (<usize>i << 2);
    const e = exp1(load<f32>(p) - m);
    store<f32>(p, e);
    sum += e;
  }
  if (hasSink) sum += exp1(sink - m);
  const inv: f32 = <f32>1.0 / sum;
  const iv = f32x4.splat(inv);
  for (let i = 0; i < n4; i += 4) {
    const p = x + (<usize>i << 2);
    v128.store(p, f32x4.mul(v128.load(p), iv));
  }
  for (let i = n4; i < n; i++) {
    const p = x + (<usize>i << 2);
    store<f32>(p, load<f32>(p) * inv);
  }
}

/** out[i] = silu(g[i]) * u[i] for i in [i0, i1). */
export function siluGateRange(g: usize, u: usize, out: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, siluMul4(v128.load(g + o), v128.load(u + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, siluMul1(load<f32>(g + o), load<f32>(u + o)));
  }
}

/** out[i] = gelu_tanh(g[i]) * u[i] for i in [i0, i1). */
export function geluGateRange(g: usize, u: usize, out: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, geluMul4(v128.load(g + o), v128.load(u + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, geluMul1(load<f32>(g + o), load<f32>(u + o)));
  }
}

/** out[i] = GPT-OSS's clamped SwiGLU of (g[i], u[i]) (oaiMul4) for i in [i0, i1). */
export function oaiGateRange(g: usize, u: usize, out: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, oaiMul4(v128.load(g + o), v128.load(u + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, oaiMul1(load<f32>(g + o), load<f32>(u + o)));
  }
}

/** out[i] = exp(x[i]) for i in [i0, i1) (in place allowed). */
export function expRange(x: usize, out: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, exp4(v128.load(x + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, exp1(load<f32>(x + o)));
  }
}

/** out[i] = a[i] + b[i] for i in [i0, i1) (in place allowed). */
export function addRange(out: usize, a: usize, b: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/**
 * Sum of x[i0 .. i1) (bandwidth probe). streams = 1: one sequential pass with four accumulators;
 * streams = 4: the range in four quarters read side by side (as the matvec tiles read weights).
 */
export function sumRange(x: usize, i0: i32, i1: i32, streams: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let i = i0;
  if (streams == 4) {
    const q = ((i1 - i0) >> 2) & ~3;
    const qb = <usize>q << 2;
    const end = i0 + q;
    for (; i < end; i += 4) {
      const p = x + (<usize>i << 2);
      a0 = f32x4.add(a0, v128.load(p));
      a1 = f32x4.add(a1, v128.load(p + qb));
      a2 = f32x4.add(a2, v128.load(p + 2 * qb));
      a3 = f32x4.add(a3, v128.load(p + 3 * qb));
    }
    i = i0 + 4 * q;
  } else {
    for (; i + 16 <= i1; i += 16) {
      const p = x + (<usize>i << 2);
      a0 = f32x4.add(a0, v128.load(p));
      a1 = f32x4.add(a1, v128.load(p, 16));
      a2 = f32x4.add(a2, v128.load(p, 32));
      a3 = f32x4.add(a3, v128.load(p, 48));
    }
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; i < i1; i++) s += load<f32>(x + (<usize>i << 2));
  return s;
}
