/** Gate activations of gated feed-forwards, as float64 formulas (the kernels' own are checked against these). */

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU's tanh approximation (PyTorch's gelu(approximate='tanh'), Gemma's gelu_pytorch_tanh). */
export function geluTanh(g: number): number {
  return 0.5 * g * (1 + Math.tanh(SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)));
}

export function silu(g: number): number {
  return g / (1 + Math.exp(-g));
}
