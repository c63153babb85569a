/**
 * Mixture-of-experts routing (Qwen3-MoE, GPT-OSS): per token, the router's softmax over the experts,
 * the top k by probability, their weights (renormalised over the k with normTopK: the same as a
 * softmax over the k logits, GPT-OSS's rule). Grouped by expert so a step runs each chosen expert
 * once, over all the rows routed to it.
 */

/**
 * A step's routing, flat: expert e's rows are rows[offsets[e] .. offsets[e + 1]) (ascending), each
 * with its weight at the same index of `weights`. Views of a Router's buffers: valid until its next route.
 */
export interface Routing {
  offsets: Int32Array;
  rows: Int32Array;
  weights: Float32Array;
}

/** Routes rows to experts in buffers it keeps and grows (no allocation per step once grown). */
export class Router {
  private probs: Float64Array;
  private readonly top: Int32Array;
  private chosen = new Int32Array(0); // [T, k] experts
  private chosenWeights = new Float32Array(0); // [T, k]
  private readonly offsets: Int32Array;
  private readonly cursor: Int32Array;
  private rows = new Int32Array(0);
  private weights = new Float32Array(0);

  constructor(
    private readonly E: number,
    private readonly k: number,
    private readonly normTopK: boolean,
  ) {
    this.probs = new Float64Array(E);
    this.top = new Int32Array(k);
    this.offsets = new Int32Array(E + 1);
    this.cursor = new Int32Array(E);
  }

  /**
   * Routes T rows of router logits [T, E]. Ties in probability go to the lower expert index.
   * Probabilities are computed in float64 and the weights rounded to float32.
   */
  route(logits: Float32Array, T: number): Routing {
    const { E, k, probs, top, offsets } = this;
    if (this.chosen.length < T * k) {
      this.chosen = new Int32Array(T * k);
      this.chosenWeights = new Float32Array(T * k);
      this.rows = new Int32Array(T * k);
      this.weights = new Float32Array(T * k);
    }
    offsets.fill(0);
    for (let t = 0; t < T; t++) {
      const row = t * E;
      let max = -Infinity;
      for (let e = 0; e < E; e++) max = Math.max(max, logits[row + e]!);
      let z = 0;
      for (let e = 0; e < E; e++) z += probs[e] = Math.exp(logits[row + e]! - max);
      for (let e = 0; e < E; e++) probs[e] = probs[e]! / z;
      // top k by insertion: k is small (8 of 128 in Qwen3-30B-A3B)
      let n = 0;
      for (let e = 0; e < E; e++) {
        const p = probs[e]!;
        if (n === k && p <= probs[top[k - 1]!]!) continue;
        let j = Math.min(n, k - 1);
        while (j > 0 && probs[top[j - 1]!]! < p) {
          top[j] = top[j - 1]!;
          j--;
        }
        top[j] = e;
        if (n < k) n++;
      }
      let sum = 0;
      for (let i = 0; i < k; i++) sum += probs[top[i]!]!;
      for (let i = 0; i < k; i++) {
        const e = top[i]!;
        this.chosen[t * k + i] = e;
        this.chosenWeights[t * k + i] = this.normTopK ? probs[e]! / sum : probs[e]!;
        offsets[e + 1]!++;
      }
    }
    // counting sort by expert; rows stay ascending within an expert
    for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e + 1]! + offsets[e]!;
    const next = this.cursor;
    next.set(offsets.subarray(0, E));
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < k; i++) {
        const e = this.chosen[t * k + i]!;
        const at = next[e]!++;
        this.rows[at] = t;
        this.weights[at] = this.chosenWeights[t * k + i]!;
      }
    }
    return { offsets, rows: this.rows, weights: this.weights };
  }
}
