/**
 * The WGSL kernels of the f32 forward. Every kernel reads its sizes from a uniform block `p` (one
 * 256-byte slot of the step's parameter arena) and addresses whole buffers by element offsets, so
 * no storage binding needs an aligned offset. Layouts are row-major:
 *   activations  [T, width]                       (T token rows of the step)
 *   weights      [rows, cols]                     (PyTorch [out, in])
 *   KV cache     [numKvHeads, capacity, headDim]  per layer, K and V apart; head h's slot s at (h * capacity + s) * headDim
 */

/** Threads of a workgroup, every kernel. */
export const WORKGROUP = 64;

/**
 * How a weight matrix is stored: f32; f16 packed two to a u32 (low half first; no shader-f16 needed);
 * or q8_0 / q4_0 (ggml's 32-value blocks, cols a multiple of 32) repacked for u32 reads, one buffer:
 *   scales  [nBlocks] f16, two to a u32 (block 2i in the low half), the last word padded with zero
 *   quants  from word ceil(nBlocks / 2): per block, q8_0 its 32 int8 in 8 words (value j in byte j % 4
 *           of word j / 4), q4_0 its 16 stored bytes in 4 words (byte j: value j in the low nibble,
 *           value j + 16 in the high one)
 * with blocks in row-major order (row r's blocks at r * cols / 32); value = scale * q (q4_0: q - 8).
 */
export type GpuWeightType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

/** u32 words of quants per 32-block of a quantised weight. */
export const QUANT_WORDS: Record<'q8_0' | 'q4_0', number> = { q8_0: 8, q4_0: 4 };

const isQuant = (type: GpuWeightType): type is 'q8_0' | 'q4_0' => type === 'q8_0' || type === 'q4_0';

/** The storage type of a weight binding. */
function weightArray(type: GpuWeightType): string {
  return type === 'f32' ? 'array<f32>' : 'array<u32>';
}

/**
 * WGSL of `fn at_<buf>(i: u32, qbase: u32) -> f32`: element i (flat, row-major) of weight `buf`;
 * qbase is the first quants word (quantised types; ignored otherwise).
 */
function elementAt(type: GpuWeightType, buf: string): string {
  const body =
    type === 'f32'
      ? `return ${buf}[i];`
      : type === 'f16'
        ? `return unpack2x16float(${buf}[i >> 1u])[i & 1u];`
        : type === 'q8_0'
          ? `let b = i >> 5u; let j = i & 31u;
  let d = unpack2x16float(${buf}[b >> 1u])[b & 1u];
  return d * f32(extractBits(i32(${buf}[qbase + b * 8u + (j >> 2u)]), (j & 3u) * 8u, 8u));`
          : `let b = i >> 5u; let j = i & 15u;
  let d = unpack2x16float(${buf}[b >> 1u])[b & 1u];
  let q = extractBits(${buf}[qbase + b * 4u + (j >> 2u)], (j & 3u) * 8u + select(0u, 4u, (i & 31u) >= 16u), 4u);
  return d * (f32(q) - 8.0);`;
  return `fn at_${buf}(i: u32, qbase: u32) -> f32 {
  ${body}
}`;
}

/**
 * WGSL of `fn dot_<buf>(r: u32, rows: u32, xo: u32) -> f32`: row r of weight `buf` ([rows, p.cols])
 * dotted with x[xo .. xo + p.cols]. Quantised rows go block by block: the block's sum of q * x, then
 * times its scale.
 */
function rowDot(type: GpuWeightType, buf: string): string {
  if (!isQuant(type)) {
    return `fn dot_${buf}(r: u32, rows: u32, xo: u32) -> f32 {
  let wo = r * p.cols;
  var acc = 0.0;
  for (var c = 0u; c < p.cols; c++) { acc += at_${buf}(wo + c, 0u) * x[xo + c]; }
  return acc;
}`;
  }
  const inner =
    type === 'q8_0'
      ? `for (var k = 0u; k < 8u; k++) {
      let word = i32(${buf}[qo + k]);
      let xk = xb + 4u * k;
      s += f32(extractBits(word, 0u, 8u)) * x[xk] + f32(extractBits(word, 8u, 8u)) * x[xk + 1u]
         + f32(extractBits(word, 16u, 8u)) * x[xk + 2u] + f32(extractBits(word, 24u, 8u)) * x[xk + 3u];
    }`
      : `for (var k = 0u; k < 4u; k++) {
      let word = ${buf}[qo + k];
      for (var i = 0u; i < 4u; i++) {
        let j = xb + 4u * k + i;
        s += (f32(extractBits(word, 8u * i, 4u)) - 8.0) * x[j] + (f32(extractBits(word, 8u * i + 4u, 4u)) - 8.0) * x[j + 16u];
      }
    }`;
  return `fn dot_${buf}(r: u32, rows: u32, xo: u32) -> f32 {
  let nb = p.cols >> 5u;
  let qbase = (rows * nb + 1u) >> 1u;
  var acc = 0.0;
  for (var b = 0u; b < nb; b++) {
    let blk = r * nb + b;
    let d = unpack2x16float(${buf}[blk >> 1u])[blk & 1u];
    let qo = qbase + blk * ${QUANT_WORDS[type]}u;
    let xb = xo + b * 32u;
    var s = 0.0;
    ${inner}
    acc += d * s;
  }
  return acc;
}`;
}

/** The helper functions of weight bindings `bufs` (dot_ and at_ of each). */
function weightFns(type: GpuWeightType, ...bufs: string[]): string {
  return bufs.map((b) => `${elementAt(type, b)}
${rowDot(type, b)}`).join('\n');
}

/**
 * out[t, r] = x[t, :] . w[r, :] (+ bias[r]) for r < rows, t < tokens; flags bit 0: add the bias,
 * bit 1: add into out (the residual x += a W^T). One thread per output element.
 */
export const MATMUL = (type: GpuWeightType) => /* wgsl */ `
struct P { rows: u32, cols: u32, tokens: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: ${weightArray(type)};
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
${weightFns(type, 'w')}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.rows || t >= p.tokens) { return; }
  var acc = dot_w(r, p.rows, t * p.cols);
  if ((p.flags & 1u) != 0u) { acc += bias[r]; }
  let o = t * p.rows + r;
  if ((p.flags & 2u) != 0u) { out[o] = out[o] + acc; } else { out[o] = acc; }
}
`;

/**
 * The q, k and v projections of the same rows in one dispatch: output row r < qRows goes to q, the
 * next kvRows to k, the last kvRows to v; `bias` is the three biases end to end (flags bit 0: add it).
 */
export const QKV = (type: GpuWeightType) => /* wgsl */ `
struct P { qRows: u32, kvRows: u32, cols: u32, tokens: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> wq: ${weightArray(type)};
@group(0) @binding(2) var<storage, read> wk: ${weightArray(type)};
@group(0) @binding(3) var<storage, read> wv: ${weightArray(type)};
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> k: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;
${weightFns(type, 'wq', 'wk', 'wv')}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.qRows + 2u * p.kvRows || t >= p.tokens) { return; }
  let xo = t * p.cols;
  var acc = 0.0;
  if (r < p.qRows) {
    acc = dot_wq(r, p.qRows, xo);
  } else if (r < p.qRows + p.kvRows) {
    acc = dot_wk(r - p.qRows, p.kvRows, xo);
  } else {
    acc = dot_wv(r - p.qRows - p.kvRows, p.kvRows, xo);
  }
  if ((p.flags & 1u) != 0u) { acc += bias[r]; }
  if (r < p.qRows) {
    q[t * p.qRows + r] = acc;
  } else if (r < p.qRows + p.kvRows) {
    k[t * p.kvRows + r - p.qRows] = acc;
  } else {
    v[t * p.kvRows + r - p.qRows - p.kvRows] = acc;
  }
}
`;

/** out[t, r] = silu(x[t] . gate[r] (+ bg[r])) * (x[t] . up[r] (+ bu[r])); flags bit 0: bg, bit 1: bu. */
export const GATE_UP = (type: GpuWeightType) => /* wgsl */ `
struct P { rows: u32, cols: u32, tokens: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> wg: ${weightArray(type)};
@group(0) @binding(2) var<storage, read> wu: ${weightArray(type)};
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bg: array<f32>;
@group(0) @binding(5) var<storage, read> bu: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
${weightFns(type, 'wg', 'wu')}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.rows || t >= p.tokens) { return; }
  let xo = t * p.cols;
  var a = dot_wg(r, p.rows, xo);
  var b = dot_wu(r, p.rows, xo);
  if ((p.flags & 1u) != 0u) { a += bg[r]; }
  if ((p.flags & 2u) != 0u) { b += bu[r]; }
  out[t * p.rows + r] = a / (1.0 + exp(-a)) * b;
}
`;

/** out[t, :] = w[ids[t], :] ([tokens, dim]; w has `rows` rows). */
export const EMBED = (type: GpuWeightType) => /* wgsl */ `
struct P { dim: u32, tokens: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: ${weightArray(type)};
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${elementAt(type, 'w')}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  let t = g.y;
  if (c >= p.dim || t >= p.tokens) { return; }
  let qbase = (p.rows * (p.dim >> 5u) + 1u) >> 1u;
  out[t * p.dim + c] = at_w(ids[t] * p.dim + c, qbase);
}
`;

/**
 * RMSNorm of rows of length dim: y = x / sqrt(mean(x^2) + eps) * weight. One workgroup per row (row
 * = wg.y * 32768 + wg.x). IN_PLACE: y is x (one read_write binding).
 */
function rmsnorm(inPlace: boolean): string {
  return /* wgsl */ `
struct P { rows: u32, dim: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
${inPlace ? '@group(0) @binding(2) var<storage, read_write> y: array<f32>;' : '@group(0) @binding(2) var<storage, read> x: array<f32>;\n@group(0) @binding(3) var<storage, read_write> y: array<f32>;'}
var<workgroup> partial: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wg.y * 32768u + wg.x;
  if (row >= p.rows) { return; }
  let o = row * p.dim;
  var ss = 0.0;
  for (var i = li; i < p.dim; i += ${WORKGROUP}u) { let v = ${inPlace ? 'y' : 'x'}[o + i]; ss += v * v; }
  partial[li] = ss;
  workgroupBarrier();
  for (var s = ${WORKGROUP / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { partial[li] += partial[li + s]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
  for (var i = li; i < p.dim; i += ${WORKGROUP}u) { y[o + i] = weight[i] * (${inPlace ? 'y' : 'x'}[o + i] * scale); }
}
`;
}
export const RMSNORM = rmsnorm(false);
export const RMSNORM_IN_PLACE = rmsnorm(true);

/**
 * rotate_half RoPE in place over q [tokens, heads, headDim] and k [tokens, kvHeads, headDim] in one
 * dispatch: pairs (i, i + half) of row t turned by the angles of row t of cos/sin [tokens, half]. One
 * thread per pair, q's pairs first.
 */
export const ROPE = /* wgsl */ `
struct P { tokens: u32, heads: u32, kvHeads: u32, half: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> cosines: array<f32>;
@group(0) @binding(2) var<storage, read> sines: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var n = g.y * 65535u * ${WORKGROUP}u + g.x;
  let qPairs = p.tokens * p.heads * p.half;
  if (n >= qPairs + p.tokens * p.kvHeads * p.half) { return; }
  let inQ = n < qPairs;
  if (!inQ) { n -= qPairs; }
  let heads = select(p.kvHeads, p.heads, inQ);
  let i = n % p.half;
  let th = n / p.half;
  let t = th / heads;
  let base = th * 2u * p.half;
  let c = cosines[t * p.half + i];
  let s = sines[t * p.half + i];
  if (inQ) {
    let a = q[base + i];
    let b = q[base + i + p.half];
    q[base + i] = a * c - b * s;
    q[base + i + p.half] = b * c + a * s;
  } else {
    let a = k[base + i];
    let b = k[base + i + p.half];
    k[base + i] = a * c - b * s;
    k[base + i + p.half] = b * c + a * s;
  }
}
`;

/**
 * How a layer's cache stores K and V: f32, or IEEE halves two to a u32 (value 2i of the flat
 * [numKvHeads, capacity, headDim] array in the low half of word i; headDim is even, so a word never
 * straddles two rows). No shader-f16 needed: halves are widened with unpack2x16float (exact) and
 * narrowed by halfBits below.
 */
export type GpuKvStore = 'f32' | 'f16';

/** The storage type of a K/V cache binding. */
const kvArray = (kv: GpuKvStore) => (kv === 'f32' ? 'array<f32>' : 'array<u32>');

/** WGSL of `fn <name>(i: u32) -> f32`: element i (flat) of cache binding `buf`, widened from its half under f16. */
function kvRead(kv: GpuKvStore, buf: string, name: string): string {
  return `fn ${name}(i: u32) -> f32 { return ${kv === 'f32' ? `${buf}[i]` : `unpack2x16float(${buf}[i >> 1u])[i & 1u]`}; }`;
}

/**
 * WGSL of `fn halfBits(x: f32) -> u32`: the half nearest x clamped to +-65504, ties to even, as
 * bits (src/core/kv-rows.ts's f16 rows: the CPU backends' encoding). Done on the float32 bits, not
 * with pack2x16float, whose result is indeterminate out of range and whose rounding WGSL leaves to
 * the implementation.
 */
const HALF_BITS = /* wgsl */ `
fn halfBits(x: f32) -> u32 {
  let u = bitcast<u32>(clamp(x, -65504.0, 65504.0));
  let sign = (u >> 16u) & 0x8000u;
  let e = i32((u >> 23u) & 0xffu) - 112;
  let mant = u & 0x7fffffu;
  if (e <= 0) {
    // a half subnormal (or zero): value / 2^-24 = m24 >> (14 - e)
    if (e < -10) { return sign; }
    let m = mant | 0x800000u;
    let shift = u32(14 - e);
    var r = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u) != 0u)) { r += 1u; }
    return sign | r;
  }
  var r = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u)) { r += 1u; }
  return sign | r;
}
`;

/** Most KV heads a layer may have on the GPU: each head's own slot count travels in the uniform block. */
export const MAX_KV_HEADS = 32;

/** Each KV head's live slots before the step, in the uniform block (u32 h at bases[h / 4][h % 4]). */
const BASES = `bases: array<vec4<u32>, ${MAX_KV_HEADS / 4}>`;
const baseOf = (h: string) => `p.bases[${h} / 4u][${h} % 4u]`;

/**
 * Rows row..row+count of k and v ([T, kvHeads * headDim]) into each head h of a layer's cache from its
 * slot bases[h]. f32: one thread per value; f16: one thread per u32 word (two neighbouring values of a row).
 */
export const KV_APPEND = (kv: GpuKvStore) => /* wgsl */ `
struct P { row: u32, count: u32, kvHeads: u32, headDim: u32, capacity: u32, pad0: u32, pad1: u32, pad2: u32, ${BASES} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: ${kvArray(kv)};
@group(0) @binding(4) var<storage, read_write> vc: ${kvArray(kv)};
${kv === 'f16' ? HALF_BITS : ''}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let per = ${kv === 'f16' ? '2u' : '1u'};
  let n = g.y * 65535u * ${WORKGROUP}u + g.x;
  let width = p.kvHeads * p.headDim;
  if (n >= p.count * width / per) { return; }
  let t = n / (width / per);
  let hc = (n % (width / per)) * per;
  let h = hc / p.headDim;
  let c = hc % p.headDim;
  let src = (p.row + t) * width + hc;
  let dst = (h * p.capacity + ${baseOf('h')} + t) * p.headDim + c;
${
  kv === 'f16'
    ? `  kc[dst / 2u] = halfBits(k[src]) | (halfBits(k[src + 1u]) << 16u);
  vc[dst / 2u] = halfBits(v[src]) | (halfBits(v[src + 1u]) << 16u);`
    : `  kc[dst] = k[src];
  vc[dst] = v[src];`
}
}
`;

/** Largest head dimension the attention kernel holds per thread (4 floats per thread). */
export const MAX_HEAD_DIM = 4 * WORKGROUP;

/**
 * Attention of one segment: workgroup (head g, token t) reads query row `row + t`, head g, over KV head
 * kh = g / group of its cache ([kvHeads, capacity, headDim]), whose first bases[kh] + count slots are
 * live; token t sees the first bases[kh] + t + 1 of them (causal inside the segment). Keys are taken
 * 64 at a time, one per thread, with a running maximum and sum (online softmax); thread i holds output
 * dimensions i, i + 64, i + 128, i + 192. With flags bit 0, the softmax's final maximum and sum of each
 * (token, head) go to stats [T, heads, 2] (for ATTENTION_SUMS).
 */
export const ATTENTION = (kv: GpuKvStore) => /* wgsl */ `
struct P { row: u32, count: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, scale: f32, flags: u32, ${BASES} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(3) var<storage, read> vc: ${kvArray(kv)};
${kvRead(kv, 'vc', 'valueAt')}
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
var<workgroup> qrow: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> scores: array<f32, ${WORKGROUP}>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let head = wg.x;
  let t = wg.y;
  let d = p.headDim;
  let kvHead = head / (p.heads / p.kvHeads);
  let qo = ((p.row + t) * p.heads + head) * d;
  for (var i = li; i < d; i += ${WORKGROUP}u) { qrow[i] = q[qo + i]; }
  workgroupBarrier();
  let visible = ${baseOf('kvHead')} + t + 1u;
  let region = kvHead * p.capacity * d;
  var m = -3.0e38;
  var l = 0.0;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var j0 = 0u; j0 < visible; j0 += ${WORKGROUP}u) {
    let j = j0 + li;
    var s = -3.0e38;
    if (j < visible) {
      let ko = region + j * d;
      var dot = 0.0;
      for (var i = 0u; i < d; i++) { dot += qrow[i] * keyAt(ko + i); }
      s = dot * p.scale;
    }
    scores[li] = s;
    workgroupBarrier();
    let n = min(${WORKGROUP}u, visible - j0);
    var cm = m;
    for (var u = 0u; u < n; u++) { cm = max(cm, scores[u]); }
    workgroupBarrier();
    // each thread turns its own score into a weight; every thread then sums them in the same order
    scores[li] = exp(s - cm);
    workgroupBarrier();
    let rescale = exp(m - cm);
    l *= rescale;
    for (var u = 0u; u < n; u++) { l += scores[u]; }
    for (var r = 0u; r < 4u; r++) {
      let i = li + r * ${WORKGROUP}u;
      if (i < d) {
        var a = acc[r] * rescale;
        for (var u = 0u; u < n; u++) { a += scores[u] * valueAt(region + (j0 + u) * d + i); }
        acc[r] = a;
      }
    }
    m = cm;
    workgroupBarrier();
  }
  let oo = ((p.row + t) * p.heads + head) * d;
  for (var r = 0u; r < 4u; r++) {
    let i = li + r * ${WORKGROUP}u;
    if (i < d) { out[oo + i] = acc[r] / l; }
  }
  if ((p.flags & 1u) != 0u && li == 0u) {
    let so = ((p.row + t) * p.heads + head) * 2u;
    stats[so] = m;
    stats[so + 1u] = l;
  }
}
`;

/**
 * The running attention sums of one segment's step (h2o's): thread (slot j, KV head kh) adds, for each
 * token t that sees slot j and each query head g of kh's group in order, exp(s - max) / sum / group to
 * sums[kh * capacity + j] ([kvHeads, capacity], the cache's layout), with max and sum the ones ATTENTION
 * wrote to stats and s = q . k_j * scale recomputed: the order in which the CPU backends add them.
 */
export const ATTENTION_SUMS = (kv: GpuKvStore) => /* wgsl */ `
struct P { row: u32, count: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, scale: f32, pad0: u32, ${BASES} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let j = g.x;
  let kvHead = g.y;
  let base = ${baseOf('kvHead')};
  if (j >= base + p.count) { return; }
  let d = p.headDim;
  let group = p.heads / p.kvHeads;
  let w = 1.0 / f32(group);
  let ko = (kvHead * p.capacity + j) * d;
  var acc = sums[kvHead * p.capacity + j];
  // token t sees slots [0, base + t + 1)
  let first = select(0u, j - base, j >= base);
  for (var t = first; t < p.count; t++) {
    for (var e = 0u; e < group; e++) {
      let head = kvHead * group + e;
      let qo = ((p.row + t) * p.heads + head) * d;
      var dot = 0.0;
      for (var i = 0u; i < d; i++) { dot += q[qo + i] * keyAt(ko + i); }
      let so = ((p.row + t) * p.heads + head) * 2u;
      let prob = exp(dot * p.scale - stats[so]) * (1.0 / stats[so + 1u]);
      acc = acc + prob * w;
    }
  }
  sums[kvHead * p.capacity + j] = acc;
}
`;

/**
 * The last rows of a segment's queries into an observation ring: row `row + i` of q ([T, width]) to
 * ring slot (start + i) % window ([window, width]), i < count.
 */
export const RING_STORE = /* wgsl */ `
struct P { row: u32, count: u32, width: u32, window: u32, start: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> ring: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.y * 65535u * ${WORKGROUP}u + g.x;
  if (n >= p.count * p.width) { return; }
  let i = n / p.width;
  let c = n % p.width;
  ring[((p.start + i) % p.window) * p.width + c] = q[(p.row + i) * p.width + c];
}
`;

/**
 * Scoring (a compression's heavy reductions on the GPU). Per KV head h the scored layer's live slots
 * n_h and scored slots m_h come in `shape` ([kvHeads, 2] u32: n, m). The observation queries are the
 * last rows of a ring ([window, heads * headDim], `count` rows stored so far, row r at slot r % window);
 * a head uses its last qq = min(queries, n_h) of them, query i of them (i < qq) belonging to token
 * n_h - qq + i.
 */
const SCORING_P = `struct P { rowHeads: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, queries: u32, window: u32, count: u32, scale: f32, scoredSoftmax: u32, maxLogits: u32 }`;

/**
 * Observation-window attention probabilities: workgroup (row head r, query i) writes, for j < visible,
 * the softmax over j < visible of q . k_j * scale into probs[(r * queries + i) * capacity + j]. Row heads
 * are the query heads, or with maxLogits the KV heads (the logit of a slot is then the largest of its
 * group's query heads'). visible: m_h with scoredSoftmax (softmax over the scored slots), else the
 * causal n_h - qq + i + 1.
 */
export const OBS_PROBS = (kv: GpuKvStore) => /* wgsl */ `
${SCORING_P}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ring: array<f32>;
@group(0) @binding(2) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(3) var<storage, read> shape: array<u32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
var<workgroup> part: array<f32, ${WORKGROUP}>;

fn reduce(li: u32, x: f32, isMax: bool) -> f32 {
  part[li] = x;
  workgroupBarrier();
  for (var stride = ${WORKGROUP / 2}u; stride > 0u; stride = stride / 2u) {
    if (li < stride) { part[li] = select(part[li] + part[li + stride], max(part[li], part[li + stride]), isMax); }
    workgroupBarrier();
  }
  let r = part[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wg.x;
  let i = wg.y;
  let group = p.heads / p.kvHeads;
  let kvHead = select(r / group, r, p.maxLogits != 0u);
  let n = shape[2u * kvHead];
  let m = shape[2u * kvHead + 1u];
  let qq = min(p.queries, n);
  if (i >= qq) { return; }
  let visible = select(n - qq + i + 1u, m, p.scoredSoftmax != 0u);
  let d = p.headDim;
  let width = p.heads * d;
  let qrow = ((p.count - qq + i) % p.window) * width;
  let out = (r * p.queries + i) * p.capacity;
  let g0 = select(r, kvHead * group, p.maxLogits != 0u);
  let gn = select(1u, group, p.maxLogits != 0u);
  var mx = -3.0e38;
  for (var j = li; j < visible; j += ${WORKGROUP}u) {
    let ko = (kvHead * p.capacity + j) * d;
    var best = -3.0e38;
    for (var g = g0; g < g0 + gn; g++) {
      var dot = 0.0;
      for (var c = 0u; c < d; c++) { dot += ring[qrow + g * d + c] * keyAt(ko + c); }
      best = max(best, dot * p.scale);
    }
    probs[out + j] = best;
    mx = max(mx, best);
  }
  mx = reduce(li, mx, true);
  var sum = 0.0;
  for (var j = li; j < visible; j += ${WORKGROUP}u) {
    let e = exp(probs[out + j] - mx);
    probs[out + j] = e;
    sum += e;
  }
  sum = reduce(li, sum, false);
  let inv = 1.0 / sum;
  for (var j = li; j < visible; j += ${WORKGROUP}u) { probs[out + j] = probs[out + j] * inv; }
}
`;

/** totals[r * capacity + j] = the sum over the row head's observation queries i (those that see j) of probs, for j < m_h. */
export const OBS_REDUCE = /* wgsl */ `
${SCORING_P}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> probs: array<f32>;
@group(0) @binding(2) var<storage, read> shape: array<u32>;
@group(0) @binding(3) var<storage, read_write> totals: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let r = gid.y;
  let group = p.heads / p.kvHeads;
  let kvHead = select(r / group, r, p.maxLogits != 0u);
  let n = shape[2u * kvHead];
  let m = shape[2u * kvHead + 1u];
  if (j >= m) { return; }
  let qq = min(p.queries, n);
  var acc = 0.0;
  for (var i = 0u; i < qq; i++) {
    let visible = select(n - qq + i + 1u, m, p.scoredSoftmax != 0u);
    if (j < visible) { acc += probs[(r * p.queries + i) * p.capacity + j]; }
  }
  totals[r * p.capacity + j] = acc;
}
`;

/** norms[h * capacity + j] = ||k_j|| of KV head h, j < n_h. */
export const KEY_NORMS = (kv: GpuKvStore) => /* wgsl */ `
${SCORING_P}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(2) var<storage, read> shape: array<u32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  if (j >= shape[2u * h]) { return; }
  let ko = (h * p.capacity + j) * p.headDim;
  var s = 0.0;
  for (var c = 0u; c < p.headDim; c++) { s += keyAt(ko + c) * keyAt(ko + c); }
  norms[h * p.capacity + j] = sqrt(s);
}
`;

/** proj[h * capacity + j] = filter[h] . k_j of KV head h, j < n_h (filter: [kvHeads, headDim], Q-Filters'). */
export const KEY_PROJECTIONS = (kv: GpuKvStore) => /* wgsl */ `
${SCORING_P}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(2) var<storage, read> shape: array<u32>;
@group(0) @binding(3) var<storage, read> filt: array<f32>;
@group(0) @binding(4) var<storage, read_write> proj: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  if (j >= shape[2u * h]) { return; }
  let ko = (h * p.capacity + j) * p.headDim;
  var s = 0.0;
  for (var c = 0u; c < p.headDim; c++) { s += filt[h * p.headDim + c] * keyAt(ko + c); }
  proj[h * p.capacity + j] = s;
}
`;

/**
 * R-KV's redundancy (ScoreKernels.redundancy's definition), with S[i, j] = k_i . k_j / ((||k_i|| +
 * 1e-8) (||k_j|| + 1e-8)) over KV head h's n_h live keys and norms from KEY_NORMS. RKV_ROWS: thread
 * (row i, head h) finds the entry of row i that is zeroed besides the diagonal: the largest j with
 * S[i, j] > threshold (the zeroed diagonal itself counts when 0 > threshold), else column 0; its
 * column and value go to pick / picked [kvHeads, capacity].
 */
const RKV_COMMON = (kv: GpuKvStore) => /* wgsl */ `
struct P { rowHeads: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, queries: u32, window: u32, count: u32, threshold: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> kc: ${kvArray(kv)};
${kvRead(kv, 'kc', 'keyAt')}
@group(0) @binding(2) var<storage, read> shape: array<u32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;

fn similarity(h: u32, i: u32, j: u32) -> f32 {
  let a = (h * p.capacity + i) * p.headDim;
  let b = (h * p.capacity + j) * p.headDim;
  var dot = 0.0;
  for (var c = 0u; c < p.headDim; c++) { dot += keyAt(a + c) * keyAt(b + c); }
  return dot / ((norms[h * p.capacity + i] + 1e-8) * (norms[h * p.capacity + j] + 1e-8));
}
`;

export const RKV_ROWS = (kv: GpuKvStore) => /* wgsl */ `
${RKV_COMMON(kv)}
@group(0) @binding(4) var<storage, read_write> pick: array<u32>;
@group(0) @binding(5) var<storage, read_write> picked: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let h = gid.y;
  let n = shape[2u * h];
  if (i >= n) { return; }
  var at = 0u;
  var value = select(similarity(h, i, 0u), 0.0, i == 0u);
  for (var j = n; j > 0u; j--) {
    let c = j - 1u;
    if (c == i) {
      if (0.0 > p.threshold) { at = i; value = 0.0; break; }
      continue;
    }
    let s = similarity(h, i, c);
    if (s > p.threshold) { at = c; value = s; break; }
  }
  pick[h * p.capacity + i] = at;
  picked[h * p.capacity + i] = value;
}
`;

/** c[h * capacity + j] = (the sum over rows i != j of S[i, j], less the values of the rows that picked column j) / n_h. */
export const RKV_COLUMNS = (kv: GpuKvStore) => /* wgsl */ `
${RKV_COMMON(kv)}
@group(0) @binding(4) var<storage, read> pick: array<u32>;
@group(0) @binding(5) var<storage, read> picked: array<f32>;
@group(0) @binding(6) var<storage, read_write> means: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let h = gid.y;
  let n = shape[2u * h];
  if (j >= n) { return; }
  var acc = 0.0;
  for (var i = 0u; i < n; i++) {
    if (i != j) { acc += similarity(h, i, j); }
    if (pick[h * p.capacity + i] == j) { acc -= picked[h * p.capacity + i]; }
  }
  means[h * p.capacity + j] = acc / f32(n);
}
`;

/** out[i, :] = x[rows[first + i], :] for i < count ([*, dim] rows gathered from x). */
export const GATHER_ROWS = /* wgsl */ `
struct P { dim: u32, count: u32, first: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  let i = g.y;
  if (c >= p.dim || i >= p.count) { return; }
  out[i * p.dim + c] = x[rows[p.first + i] * p.dim + c];
}
`;
