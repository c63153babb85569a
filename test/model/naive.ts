// Float64 building blocks of the tests' reference forwards (sliding windows, Gemma 3, Qwen3-MoE):
// each written from its definition, one token at a time, with no engine code.

/** x[off, off + n) / rms * g in place (with `plusOne`, * (1 + g): Gemma's norms). Returns x. */
export function rmsnorm(x: Float64Array, g: Float64Array, eps: number, plusOne = false, off = 0, n = x.length): Float64Array {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i]! ** 2;
  const r = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[off + i] = x[off + i]! * r * (plusOne ? 1 + g[i]! : g[i]!);
  return x;
}

/** W x (+ bias) for W [rows, x.length] row-major. */
export function matvec(W: Float64Array, x: Float64Array, rows: number, bias?: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = bias ? bias[r]! : 0;
    for (let i = 0; i < x.length; i++) s += W[r * x.length + i]! * x[i]!;
    y[r] = s;
  }
  return y;
}

/** Rotates `heads` heads of size d in place (rotate_half pairs (i, i + d/2)) by pos * base^(-2i/d) / factor. */
export function rope(v: Float64Array, heads: number, d: number, pos: number, base: number, factor = 1): void {
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d / 2; i++) {
      const a = (pos * base ** (-(2 * i) / d)) / factor;
      const [x0, x1] = [v[h * d + i]!, v[h * d + i + d / 2]!];
      v[h * d + i] = x0 * Math.cos(a) - x1 * Math.sin(a);
      v[h * d + i + d / 2] = x1 * Math.cos(a) + x0 * Math.sin(a);
    }
  }
}

/**
 * One token's attention: each of H query heads (head g reads KV head g / (H / Hkv)) over the history
 * rows keys/values[first ..] ([Hkv * d] each), softmax of q . k * scale. Returns [H * d].
 * `sinks` (GPT-OSS): head g's softmax also counts a score sinks[g] whose probability is dropped.
 */
export function attend(q: Float64Array, keys: readonly Float64Array[], values: readonly Float64Array[], first: number, H: number, Hkv: number, d: number, scale: number, sinks?: Float64Array): Float64Array {
  const out = new Float64Array(H * d);
  for (let g = 0; g < H; g++) {
    const kv = Math.floor(g / (H / Hkv));
    const s: number[] = [];
    for (let j = first; j < keys.length; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[g * d + i]! * keys[j]![kv * d + i]!;
      s.push(dot * scale);
    }
    const m = Math.max(...s, sinks ? sinks[g]! : -Infinity);
    const e = s.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0) + (sinks ? Math.exp(sinks[g]! - m) : 0);
    for (let j = first; j < keys.length; j++) for (let i = 0; i < d; i++) out[g * d + i]! += (e[j - first]! / z) * values[j]![kv * d + i]!;
  }
  return out;
}

export const silu = (g: number): number => g / (1 + Math.exp(-g));
export const geluTanh = (g: number): number => 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3)));
