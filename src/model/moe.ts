/**
 * Mixture-of-experts routing (Qwen3-MoE): per token, the router's softmax over the experts, the top k
 * by probability, their weights (renormalised over the k with normTopK). Grouped by expert so a step
 * runs each chosen expert once, over all the rows routed to it.
 */

/** A step's routing: for expert e, the rows routed to it and each row's weight. */
export interface Routing {
  rows: Int32Array[];
  weights: Float32Array[];
}

/**
 * Routes T rows of router logits [T, E] to k experts each. Ties in probability go to the lower expert
 * index. Probabilities are computed in float64 and the weights rounded to float32.
 */
export function routeTokens(logits: Float32Array, T: number, E: number, k: number, normTopK: boolean): Routing {
  const chosenRows: number[][] = Array.from({ length: E }, () => []);
  const chosenWeights: number[][] = Array.from({ length: E }, () => []);
  const probs = new Float64Array(E);
  const top = new Int32Array(k);
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
      chosenRows[e]!.push(t);
      chosenWeights[e]!.push(normTopK ? probs[e]! / sum : probs[e]!);
    }
  }
  return { rows: chosenRows.map((r) => Int32Array.from(r)), weights: chosenWeights.map((w) => Float32Array.from(w)) };
}
