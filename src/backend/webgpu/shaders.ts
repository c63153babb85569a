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

/** How a weight matrix is stored: f32, or f16 packed two to a u32 (low half first; no shader-f16 needed). */
export type GpuWeightType = 'f32' | 'f16';

/** The storage type of a weight binding, and element i of it as f32. */
function weightAccess(type: GpuWeightType): { array: string; read: (buf: string, i: string) => string } {
  return type === 'f32'
    ? { array: 'array<f32>', read: (buf, i) => `${buf}[${i}]` }
    : { array: 'array<u32>', read: (buf, i) => `unpack2x16float(${buf}[(${i}) >> 1u])[(${i}) & 1u]` };
}

/**
 * out[t, r] = x[t, :] . w[r, :] (+ bias[r]) for r < rows, t < tokens; flags bit 0: add the bias,
 * bit 1: add into out (the residual x += a W^T). One thread per output element.
 */
export const MATMUL = (type: GpuWeightType) => /* wgsl */ `
struct P { rows: u32, cols: u32, tokens: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: ${weightAccess(type).array};
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.rows || t >= p.tokens) { return; }
  let wo = r * p.cols;
  let xo = t * p.cols;
  var acc = 0.0;
  for (var c = 0u; c < p.cols; c++) { acc += ${weightAccess(type).read('w', 'wo + c')} * x[xo + c]; }
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
@group(0) @binding(1) var<storage, read> wq: ${weightAccess(type).array};
@group(0) @binding(2) var<storage, read> wk: ${weightAccess(type).array};
@group(0) @binding(3) var<storage, read> wv: ${weightAccess(type).array};
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read_write> k: array<f32>;
@group(0) @binding(8) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.qRows + 2u * p.kvRows || t >= p.tokens) { return; }
  let xo = t * p.cols;
  var acc = 0.0;
  if (r < p.qRows) {
    let wo = r * p.cols;
    for (var c = 0u; c < p.cols; c++) { acc += ${weightAccess(type).read('wq', 'wo + c')} * x[xo + c]; }
  } else if (r < p.qRows + p.kvRows) {
    let wo = (r - p.qRows) * p.cols;
    for (var c = 0u; c < p.cols; c++) { acc += ${weightAccess(type).read('wk', 'wo + c')} * x[xo + c]; }
  } else {
    let wo = (r - p.qRows - p.kvRows) * p.cols;
    for (var c = 0u; c < p.cols; c++) { acc += ${weightAccess(type).read('wv', 'wo + c')} * x[xo + c]; }
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
@group(0) @binding(1) var<storage, read> wg: ${weightAccess(type).array};
@group(0) @binding(2) var<storage, read> wu: ${weightAccess(type).array};
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bg: array<f32>;
@group(0) @binding(5) var<storage, read> bu: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.rows || t >= p.tokens) { return; }
  let wo = r * p.cols;
  let xo = t * p.cols;
  var a = 0.0;
  var b = 0.0;
  for (var c = 0u; c < p.cols; c++) {
    let xv = x[xo + c];
    a += ${weightAccess(type).read('wg', 'wo + c')} * xv;
    b += ${weightAccess(type).read('wu', 'wo + c')} * xv;
  }
  if ((p.flags & 1u) != 0u) { a += bg[r]; }
  if ((p.flags & 2u) != 0u) { b += bu[r]; }
  out[t * p.rows + r] = a / (1.0 + exp(-a)) * b;
}
`;

/** out[t, :] = w[ids[t], :] ([tokens, dim]). */
export const EMBED = (type: GpuWeightType) => /* wgsl */ `
struct P { dim: u32, tokens: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: ${weightAccess(type).array};
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  let t = g.y;
  if (c >= p.dim || t >= p.tokens) { return; }
  out[t * p.dim + c] = ${weightAccess(type).read('w', 'ids[t] * p.dim + c')};
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
 * Appends `count` rows of k and v ([T, numKvHeads * headDim], from row `row`) to every KV head of a
 * layer's cache at slot `base` onwards. One thread per float.
 */
export const KV_APPEND = /* wgsl */ `
struct P { row: u32, count: u32, kvHeads: u32, headDim: u32, capacity: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.y * 65535u * ${WORKGROUP}u + g.x;
  let width = p.kvHeads * p.headDim;
  if (n >= p.count * width) { return; }
  let t = n / width;
  let hc = n % width;
  let h = hc / p.headDim;
  let c = hc % p.headDim;
  let src = (p.row + t) * width + hc;
  let dst = (h * p.capacity + p.base + t) * p.headDim + c;
  kc[dst] = k[src];
  vc[dst] = v[src];
}
`;

/** Largest head dimension the attention kernel holds per thread (4 floats per thread). */
export const MAX_HEAD_DIM = 4 * WORKGROUP;

/**
 * Attention of one segment: workgroup (head g, token t) reads query row `row + t`, head g, over KV head
 * g / group of its cache ([kvHeads, capacity, headDim]), whose first `length` slots are live; token t
 * sees the first length - count + t + 1 of them (causal inside the segment). Keys are taken 64 at a
 * time, one per thread, with a running maximum and sum (online softmax); thread i holds output
 * dimensions i, i + 64, i + 128, i + 192.
 */
export const ATTENTION = /* wgsl */ `
struct P { row: u32, count: u32, heads: u32, kvHeads: u32, headDim: u32, capacity: u32, length: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
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
  let visible = p.length - p.count + t + 1u;
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
      for (var i = 0u; i < d; i++) { dot += qrow[i] * kc[ko + i]; }
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
        for (var u = 0u; u < n; u++) { a += scores[u] * vc[region + (j0 + u) * d + i]; }
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
