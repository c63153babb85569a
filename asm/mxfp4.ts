// MXFP4 weights (GPT-OSS's experts; ggml type 39) read as stored in GGUF files: blocks of 32 values,
// 17 bytes: u8 e (E8M0) | u8 qs[16] (E2M1 codes: value j in the low nibble of qs[j], j + 16 in the high).
// As ggml computes them, a code c's value is kv[c] * 2^(e - 128), kv = the E2M1 values doubled as
// integers {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12} (src/quant/mxfp4.ts).
//
// Products run against the input quantised per 32-block (matvec.ts quantX, the one-token layout for any
// number of tokens: per token q i16 [nb][32] | d f32 [nb] | s i32 [nb], 72 bytes per block). Per (row,
// token) the arithmetic is, for each block b of the row in order,
//   acc = acc + f32(isum_b) * (dw_b * dx_b)        dw_b = 2^(e_b - 128) (f32), isum_b = sum kv[c] q (exact)
// (float32, acc from 0; separate multiplies and adds, the same bits in both builds). The codes become
// the integers kv by one i8x16.swizzle of the table per 16 nibbles; the baseline build widens them to
// i16 for i32x4.dot_i16x8_s, the relaxed one takes kv + 12 (0..24) against the input narrowed to i8 in
// i16x8.relaxed_dot_i8x16_i7x16_s (exact: no sign bit in the i7 operand, sums far from i16's limits)
// and subtracts 12 times the block's input sum. Both give the same integers. Tiles hold four rows in the lanes of
// a vector (from the four quarters of the range, four long sequential streams); a lone row runs the same
// sequence on scalars. So results do not depend on the thread split or on how many tokens share the
// product, and a token's row of a several-token product equals its matvec bit for bit. |isum_b| is at
// most 12 * 127 * 32 < 2^24, so its conversion is exact too.

/** [sum(a), sum(b), sum(c), sum(d)] of four i32x4 vectors (exact). */
@inline function transposeSum(a: v128, b: v128, c: v128, d: v128): v128 {
  const s0 = i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const s1 = i32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(s0, s1, 0, 2, 4, 6), i32x4.shuffle(s0, s1, 1, 3, 5, 7));
}

@inline function hsumI(v: v128): i32 {
  return (i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1)) + (i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3));
}

/** Bytes of one token's quantised input per 32-block (the one-token layout). */
const QX_BLOCK: usize = 72;

/** Blocks per column segment of a several-token product (four rows' blocks: 4 * 64 * 17 bytes, in L1 across the tokens). */
const SEG: i32 = 64;

@inline function codeTable(): v128 {
  return i8x16(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
}

/** The table plus 12 (0..24: no sign bit), for the relaxed build's i8 x i7 dots. */
@inline function codeTable12(): v128 {
  return i8x16(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
}

/** 2^(e - 128) as f32 (ggml's ggml_e8m0_to_fp32_half): e >= 2 normal, e = 0 and 1 the subnormals 2^-128 and 2^-127. */
@inline function scaleOf(e: u32): f32 {
  return reinterpret<f32>(e >= 2 ? (e - 1) << 23 : <u32>0x00200000 << e);
}

/** scaleOf of the scale bytes at p0..p3 (one per row) as f32 lanes. */
@inline function scales4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let ev = v128.load8_lane(p0, i32x4.splat(0), 0);
  ev = v128.load8_lane(p1, ev, 4);
  ev = v128.load8_lane(p2, ev, 8);
  ev = v128.load8_lane(p3, ev, 12);
  const normal = i32x4.shl(i32x4.sub(ev, i32x4.splat(1)), 23);
  const small = i32x4.lt_s(ev, i32x4.splat(2));
  if (!v128.any_true(small)) return normal;
  return v128.bitselect(i32x4.mul(i32x4.splat(0x00200000), i32x4.add(ev, i32x4.splat(1))), normal, small); // e = 0: 2^-128, e = 1: 2^-127
}

/** The code table the build's dots take: kv, or kv + 12 in the relaxed build (see dotCodes). */
@inline function buildTable(): v128 {
  return ASC_FEATURE_RELAXED_SIMD ? codeTable12() : codeTable();
}

/** A block's 16 code bytes q (as loaded from the block + 1): values 0..15 (low nibbles) and 16..31 as table entries. */
@inline function codesLo(q: v128): v128 {
  return i8x16.swizzle(buildTable(), v128.and(q, i8x16.splat(0x0f)));
}
@inline function codesHi(q: v128): v128 {
  return i8x16.swizzle(buildTable(), i8x16.shr_u(q, 4));
}

/**
 * One row's block (codesLo / codesHi: lo = values 0..15, hi = 16..31) against an input block (its four
 * i16 vectors x0..x3, and in the relaxed build the same values narrowed to i8: n0 = values 0..15, n1 =
 * 16..31): four partial lanes of the exact integer dot isum = sum kv[c] q; in the relaxed build of
 * isum + 12 sum q (the codes offset to 0..24, so the i8 x i7 dot is exact: its pair sums, and those of
 * values 0..15 and 16..31 added, stay within 4 * 127 * 24 in i16), which the caller corrects with the
 * block's input sum.
 */
@inline function dotCodes(lo: v128, hi: v128, x0: v128, x1: v128, x2: v128, x3: v128, n0: v128, n1: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    // (i16x8's dot, not i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20's V8 returns that one doubled)
    return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(n0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(n1, hi)));
  }
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), x1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), x2), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), x3)),
  );
}

/** What dotCodes' lanes sum to beyond isum: 12 times the block's input sum in the relaxed build, else 0. */
@inline function offsetOf(sum: i32): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? sum * 12 : 0;
}

/** Where quadTile takes the four rows' codes and scales from. */
const FROM_BLOCKS = 0; // the stored blocks
const KEEP = 1; // the stored blocks, keeping the codes and scales in the cache for the next token pairs
const FROM_CACHE = 2; // the cache

/**
 * Four rows (blocks at w, w + rs, w + 2 rs, w + 3 rs, 17 bytes apart) times one token (two = false) or
 * two (the second's input ts bytes after the first's) over n blocks: x the first token's input at the
 * first of these blocks, xd its scale, xs its block sum. `mode` (a constant at every call): read the
 * blocks, or read them and keep their table entries ([block][row][lo 16 B | hi 16 B] at cache) and
 * scales ([block] f32x4 at dws), or read those. The sums (one f32x4 per token at acc, lanes = rows)
 * start at 0 (`first`) or continue from acc, and go back there.
 */
@inline function quadTile(
  w: usize, rs: usize, x: usize, xd: usize, xs: usize, ts: usize, n: i32, acc: usize, first: bool, two: bool,
  mode: i32, cache: usize, dws: usize,
): void {
  let w0 = w;
  let w1 = w0 + rs;
  let w2 = w1 + rs;
  let w3 = w2 + rs;
  let a0 = first ? f32x4.splat(0) : v128.load(acc);
  let a1 = first || !two ? f32x4.splat(0) : v128.load(acc, 16);
  let xb = x;
  let dp = xd;
  let sp = xs;
  let cp = cache;
  let sc = dws;
  for (let b = 0; b < n; b++) {
    let l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, dw: v128;
    if (mode == FROM_CACHE) {
      l0 = v128.load(cp);
      h0 = v128.load(cp, 16);
      l1 = v128.load(cp, 32);
      h1 = v128.load(cp, 48);
      l2 = v128.load(cp, 64);
      h2 = v128.load(cp, 80);
      l3 = v128.load(cp, 96);
      h3 = v128.load(cp, 112);
      dw = v128.load(sc);
    } else {
      const q0 = v128.load(w0, 1);
      const q1 = v128.load(w1, 1);
      const q2 = v128.load(w2, 1);
      const q3 = v128.load(w3, 1);
      l0 = codesLo(q0);
      h0 = codesHi(q0);
      l1 = codesLo(q1);
      h1 = codesHi(q1);
      l2 = codesLo(q2);
      h2 = codesHi(q2);
      l3 = codesLo(q3);
      h3 = codesHi(q3);
      dw = scales4(w0, w1, w2, w3);
      if (mode == KEEP) {
        v128.store(cp, l0);
        v128.store(cp, h0, 16);
        v128.store(cp, l1, 32);
        v128.store(cp, h1, 48);
        v128.store(cp, l2, 64);
        v128.store(cp, h2, 80);
        v128.store(cp, l3, 96);
        v128.store(cp, h3, 112);
        v128.store(sc, dw);
      }
    }
    let x0 = v128.load(xb);
    let x1 = v128.load(xb, 16);
    let x2 = v128.load(xb, 32);
    let x3 = v128.load(xb, 48);
    let n0 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x0, x1) : x0;
    let n1 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x2, x3) : x0;
    let s0 = transposeSum(dotCodes(l0, h0, x0, x1, x2, x3, n0, n1), dotCodes(l1, h1, x0, x1, x2, x3, n0, n1),
      dotCodes(l2, h2, x0, x1, x2, x3, n0, n1), dotCodes(l3, h3, x0, x1, x2, x3, n0, n1));
    if (ASC_FEATURE_RELAXED_SIMD) s0 = i32x4.sub(s0, i32x4.splat(offsetOf(load<i32>(sp))));
    a0 = f32x4.add(a0, f32x4.mul(f32x4.convert_i32x4_s(s0), f32x4.mul(dw, v128.load32_splat(dp))));
    if (two) {
      const xt = xb + ts;
      x0 = v128.load(xt);
      x1 = v128.load(xt, 16);
      x2 = v128.load(xt, 32);
      x3 = v128.load(xt, 48);
      n0 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x0, x1) : x0;
      n1 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x2, x3) : x0;
      let s1 = transposeSum(dotCodes(l0, h0, x0, x1, x2, x3, n0, n1), dotCodes(l1, h1, x0, x1, x2, x3, n0, n1),
        dotCodes(l2, h2, x0, x1, x2, x3, n0, n1), dotCodes(l3, h3, x0, x1, x2, x3, n0, n1));
      if (ASC_FEATURE_RELAXED_SIMD) s1 = i32x4.sub(s1, i32x4.splat(offsetOf(load<i32>(sp + ts))));
      a1 = f32x4.add(a1, f32x4.mul(f32x4.convert_i32x4_s(s1), f32x4.mul(dw, v128.load32_splat(dp + ts))));
    }
    w0 += 17;
    w1 += 17;
    w2 += 17;
    w3 += 17;
    xb += 64;
    dp += 4;
    sp += 4;
    cp += 128;
    sc += 16;
  }
  v128.store(acc, a0);
  if (two) v128.store(acc, a1, 16);
}

/** One row at w times one token's input at x (nb blocks): quadTile's arithmetic on scalars. */
function oneRow(w: usize, x: usize, nb: i32): f32 {
  const xd = x + (<usize>nb << 6);
  const xs = xd + (<usize>nb << 2);
  let acc: f32 = 0;
  for (let b = 0; b < nb; b++) {
    const wb = w + <usize>b * 17;
    const xb = x + (<usize>b << 6);
    const x0 = v128.load(xb);
    const x1 = v128.load(xb, 16);
    const x2 = v128.load(xb, 32);
    const x3 = v128.load(xb, 48);
    const n0 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x0, x1) : x0;
    const n1 = ASC_FEATURE_RELAXED_SIMD ? i8x16.narrow_i16x8_s(x2, x3) : x0;
    const q = v128.load(wb, 1);
    const isum = hsumI(dotCodes(codesLo(q), codesHi(q), x0, x1, x2, x3, n0, n1)) - offsetOf(load<i32>(xs + (<usize>b << 2)));
    acc += <f32>isum * (scaleOf(<u32>load<u8>(wb)) * load<f32>(xd + (<usize>b << 2)));
  }
  return acc;
}

/**
 * Scratch bytes an MXFP4 product needs: the quantised input of nTok tokens, then two f32x4 per token of
 * sums, and for several tokens the code cache of one column segment (SEG blocks of 128 bytes, four rows)
 * and its scales (SEG f32x4).
 */
export function mxfp4Scratch(nTok: i32, cols: i32): usize {
  let b = <usize>nTok * <usize>(cols >> 5) * QX_BLOCK + (<usize>nTok << 5);
  if (nTok > 1) b += <usize>SEG * 144;
  return (b + 63) & ~(<usize>63);
}

@inline function emitOne(y: usize, r: i32, s: f32, bias: usize, accumulate: bool): void {
  let v = s;
  if (bias) v += load<f32>(bias + (<usize>r << 2));
  const p = y + (<usize>r << 2);
  if (accumulate) v = load<f32>(p) + v;
  store<f32>(p, v);
}

@inline function emitLanes(y: usize, r: i32, Q: i32, v: v128, bias: usize, accumulate: bool): void {
  emitOne(y, r, f32x4.extract_lane(v, 0), bias, accumulate);
  emitOne(y, r + Q, f32x4.extract_lane(v, 1), bias, accumulate);
  emitOne(y, r + 2 * Q, f32x4.extract_lane(v, 2), bias, accumulate);
  emitOne(y, r + 3 * Q, f32x4.extract_lane(v, 3), bias, accumulate);
}

/**
 * Rows [r0, r1) of y = W x for nTok tokens of the quantised input qx (quantX, one-token layout). Rows go
 * four at a time from the four quarters of the range; for several tokens, per column segment of SEG
 * blocks every token pair (then an odd last token) runs over the four rows' blocks: the first pair
 * reads them from memory and keeps their decoded codes and scales, the others read those from L1.
 * Rows past the last group go one at a time.
 */
export function matRowsMxfp4(
  W: usize, qx: usize, y: usize, cols: i32, r0: i32, r1: i32, bias: usize, accumulate: bool, nTok: i32, yStride: i32,
): void {
  const nb = cols >> 5;
  const rb = <usize>nb * 17;
  const ts = <usize>nb * QX_BLOCK;
  const accs = qx + <usize>nTok * ts;
  const cache = accs + (<usize>nTok << 5);
  const dws = cache + (<usize>SEG << 7);
  const ys = <usize>yStride << 2;
  const Q = (r1 - r0) >> 2;
  const qb = <usize>Q * rb;
  const xd = <usize>nb << 6;
  for (let i = 0; i < Q; i++) {
    const r = r0 + i;
    const w = W + <usize>r * rb;
    if (nTok == 1) {
      quadTile(w, qb, qx, qx + xd, qx + xd + (<usize>nb << 2), ts, nb, accs, true, false, FROM_BLOCKS, 0, 0);
      emitLanes(y, r, Q, v128.load(accs), bias, accumulate);
      continue;
    }
    for (let b0 = 0; b0 < nb; b0 += SEG) {
      const n = min(SEG, nb - b0);
      const p = w + <usize>b0 * 17;
      const xo = <usize>b0 << 6;
      const so = xd + (<usize>b0 << 2);
      const sso = so + (<usize>nb << 2);
      for (let t = 0; t < nTok; t += 2) {
        const xt = qx + <usize>t * ts;
        const at = accs + (<usize>t << 4);
        // the first pair reads the blocks and keeps their codes and scales, the others read those
        if (t == 0) quadTile(p, qb, xt + xo, xt + so, xt + sso, ts, n, at, b0 == 0, true, KEEP, cache, dws);
        else if (t + 1 < nTok) quadTile(p, qb, xt + xo, xt + so, xt + sso, ts, n, at, b0 == 0, true, FROM_CACHE, cache, dws);
        else quadTile(p, qb, xt + xo, xt + so, xt + sso, ts, n, at, b0 == 0, false, FROM_CACHE, cache, dws);
      }
    }
    for (let t = 0; t < nTok; t++) emitLanes(y + <usize>t * ys, r, Q, v128.load(accs + (<usize>t << 4)), bias, accumulate);
  }
  for (let r = r0 + 4 * Q; r < r1; r++) {
    const w = W + <usize>r * rb;
    for (let t = 0; t < nTok; t++) emitOne(y + <usize>t * ys, r, oneRow(w, qx + <usize>t * ts, nb), bias, accumulate);
  }
}

/** Row r of W dequantised to f32 into y[0 .. cols), bit for bit as src/quant/mxfp4.ts (ggml's kv[c] * 2^(e - 128) in float32). */
export function dequantRowMxfp4(W: usize, cols: i32, r: i32, y: usize): void {
  const nb = cols >> 5;
  const w = W + <usize>r * <usize>nb * 17;
  for (let b = 0; b < nb; b++) {
    const wb = w + <usize>b * 17;
    const d = scaleOf(<u32>load<u8>(wb));
    const q = v128.load(wb, 1);
    const lo = i8x16.swizzle(codeTable(), v128.and(q, i8x16.splat(0x0f)));
    const hi = i8x16.swizzle(codeTable(), i8x16.shr_u(q, 4));
    const yb = y + (<usize>b << 7);
    const ds = f32x4.splat(d);
    // the i8 integers widened to f32 lanes, four at a time, each times d (one rounding, as ggml)
    const l16a = i16x8.extend_low_i8x16_s(lo);
    const l16b = i16x8.extend_high_i8x16_s(lo);
    const h16a = i16x8.extend_low_i8x16_s(hi);
    const h16b = i16x8.extend_high_i8x16_s(hi);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l16a)), ds));
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l16a)), ds), 16);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l16b)), ds), 32);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l16b)), ds), 48);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h16a)), ds), 64);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h16a)), ds), 80);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h16b)), ds), 96);
    v128.store(yb, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h16b)), ds), 112);
  }
}
