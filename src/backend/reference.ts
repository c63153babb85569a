import { geluTanh, silu, swigluOai } from '../core/activations.js';
import type { AttentionArgs, AttentionSegment, Backend, EmbedArgs, GateUpArgs, MatmulArgs, QkvArgs, RmsnormArgs, RopeArgs, Weight } from './backend.js';
import { rowsAsF32 } from '../core/kv-rows.js';

/** A float32 weight in its PyTorch layout [rows = out, cols = in]. */
export class F32Weight implements Weight {
  constructor(
    readonly data: Float32Array,
    readonly rows: number,
    readonly cols: number,
  ) {}
  get bytes(): number {
    return this.data.byteLength;
  }
}

/**
 * The plain TypeScript backend: clear loops, float32 storage, float64 accumulation where it is
 * free. It is the oracle every faster backend is tested against.
 */
export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  private scores = new Float32Array(0);

  allocF32(n: number): Float32Array {
    return new Float32Array(n);
  }

  freeF32(_a: Float32Array): void {}

  weight(data: Float32Array, rows: number, cols: number): Weight {
    return new F32Weight(data, rows, cols);
  }

  qkv({ x, tokens, q, k, v }: QkvArgs): void {
    for (const p of [q, k, v]) this.matmul({ ...p, x, tokens });
  }

  gateUp({ out, scratch, x, tokens, gate, up, activation }: GateUpArgs): void {
    this.matmul({ ...gate, out, x, tokens });
    this.matmul({ ...up, out: scratch, x, tokens });
    const n = tokens * gate.w.rows;
    if (activation === 'swiglu-oai') {
      for (let i = 0; i < n; i++) out[i] = swigluOai(out[i]!, scratch[i]!);
      return;
    }
    const act = activation === 'gelu-tanh' ? geluTanh : silu;
    for (let i = 0; i < n; i++) out[i] = act(out[i]!) * scratch[i]!;
  }

  matmul(a: MatmulArgs): void {
    const { x, bias, tokens: T } = a;
    const { data, rows, cols } = a.w as F32Weight;
    const accumulate = a.addTo !== undefined;
    const out = a.addTo ?? a.out!;
    // Rows of W outer, tokens inner: each weight row is read once per step and reused over T.
    for (let r = 0; r < rows; r++) {
      const wr = r * cols;
      const b = bias ? bias[r]! : 0;
      for (let t = 0; t < T; t++) {
        const xr = t * cols;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        let i = 0;
        for (; i + 3 < cols; i += 4) {
          s0 += data[wr + i]! * x[xr + i]!;
          s1 += data[wr + i + 1]! * x[xr + i + 1]!;
          s2 += data[wr + i + 2]! * x[xr + i + 2]!;
          s3 += data[wr + i + 3]! * x[xr + i + 3]!;
        }
        for (; i < cols; i++) s0 += data[wr + i]! * x[xr + i]!;
        const y = s0 + s1 + s2 + s3 + b;
        out[t * rows + r] = accumulate ? out[t * rows + r]! + y : y;
      }
    }
  }

  embed({ out, w, ids, tokens }: EmbedArgs): void {
    const { data, cols } = w as F32Weight;
    for (let t = 0; t < tokens; t++) out.set(data.subarray(ids[t]! * cols, (ids[t]! + 1) * cols), t * cols);
  }

  rmsnorm({ out, x, weight, rows, dim, eps }: RmsnormArgs): void {
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
      const scale = 1 / Math.sqrt(ss / dim + eps);
      for (let i = 0; i < dim; i++) out[o + i] = weight[i]! * (x[o + i]! * scale);
    }
  }

  rope({ x, tokens, numHeads, headDim, cos, sin }: RopeArgs): void {
    const half = headDim >> 1;
    for (let t = 0; t < tokens; t++) {
      const c0 = t * half;
      for (let h = 0; h < numHeads; h++) {
        const base = (t * numHeads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const a = x[base + i]!;
          const b = x[base + i + half]!;
          const c = cos[c0 + i]!;
          const s = sin[c0 + i]!;
          x[base + i] = a * c - b * s;
          x[base + i + half] = b * c + a * s;
        }
      }
    }
  }

  attention({ q, out, numHeads, headDim, segments, window, scale, sinks }: AttentionArgs): void {
    for (const seg of segments) this.attendSegment(q, out, numHeads, headDim, seg, window ?? 0, scale ?? 1 / Math.sqrt(headDim), sinks ?? null);
  }

  private attendSegment(q: Float32Array, out: Float32Array, numHeads: number, headDim: number, seg: AttentionSegment, window: number, scale: number, sinks: Float32Array | null): void {
    const { tokens, probSums } = seg;
    const rowStride = numHeads * headDim;
    const qOffset = seg.row * rowStride;
    const outOffset = qOffset;
    let maxLen = 0;
    for (const h of seg.heads) maxLen = Math.max(maxLen, h.length);
    if (this.scores.length < maxLen) this.scores = new Float32Array(Math.max(maxLen, 2 * this.scores.length));
    const scratch = this.scores;
    // Heads not stored as f32 are read through widened copies of their live rows.
    const heads = seg.heads.map((h) =>
      h.kvDtype === 'f32'
        ? { keys: h.keys as Float32Array, values: h.values as Float32Array, length: h.length }
        : {
            keys: rowsAsF32(h.kvDtype, h.keys, h.keyScales, h.length, headDim),
            values: rowsAsF32(h.kvDtype, h.values, h.valueScales, h.length, headDim),
            length: h.length,
          },
    );
    const group = numHeads / heads.length;
    for (let t = 0; t < tokens; t++) {
      for (let g = 0; g < numHeads; g++) {
        const kvHead = Math.floor(g / group);
        const { keys, values, length } = heads[kvHead]!;
        // Slots [lo, visible) are seen: causal, and at most `window` of them in a sliding layer.
        const visible = length - tokens + t + 1;
        const lo = window > 0 ? Math.max(0, visible - window) : 0;
        const qBase = qOffset + t * rowStride + g * headDim;
        // scores[j] = q . k_j / sqrt(d), then softmax over the visible slots
        let max = -Infinity;
        for (let j = lo; j < visible; j++) {
          const kBase = j * headDim;
          let s = 0;
          for (let i = 0; i < headDim; i++) s += q[qBase + i]! * keys[kBase + i]!;
          s *= scale;
          scratch[j] = s;
          if (s > max) max = s;
        }
        // A sink (GPT-OSS) is one more logit in the max and the sum, with no value.
        if (sinks && sinks[g]! > max) max = sinks[g]!;
        let sum = sinks ? Math.exp(sinks[g]! - max) : 0;
        for (let j = lo; j < visible; j++) {
          const e = Math.exp(scratch[j]! - max);
          scratch[j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        const oBase = outOffset + t * rowStride + g * headDim;
        for (let i = 0; i < headDim; i++) out[oBase + i] = 0;
        for (let j = lo; j < visible; j++) {
          const p = scratch[j]! * inv;
          scratch[j] = p;
          const vBase = j * headDim;
          for (let i = 0; i < headDim; i++) out[oBase + i] = out[oBase + i]! + p * values[vBase + i]!;
        }
        if (probSums) {
          const acc = probSums[kvHead]!;
          const w = 1 / group;
          for (let j = lo; j < visible; j++) acc[j] = acc[j]! + scratch[j]! * w;
        }
      }
    }
  }

  dispose(): void {}
}
