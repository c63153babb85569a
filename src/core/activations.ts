/** Gate activations of gated feed-forwards, as float64 formulas (the kernels' own are checked against these). */

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU's tanh approximation (PyTorch's gelu(approximate='tanh'), Gemma's gelu_pytorch_tanh). */
export function geluTanh(g: number): number {
  return 0.5 * g * (1 + Math.tanh(SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)));
}

export function silu(g: number): number {
  return g / (1 + Math.exp(-g));
}

/** GPT-OSS's clamped SwiGLU of gate g and up u: c sigmoid(1.702 c) (v + 1), c = min(g, 7), v = clamp(u, -7, 7). */
export function swigluOai(g: number, u: number): number {
  const c = Math.min(g, 7);
  const v = Math.min(Math.max(u, -7), 7);
  return (c / (1 + Math.exp(-1.702 * c))) * (v + 1);
}
