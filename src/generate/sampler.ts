import { KvsieveError } from '../core/errors.js';
import { Random } from '../core/random.js';

export interface SamplingOptions {
  /** 0 (the default) is greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1 = off). */
  topP?: number;
  /** Drop tokens whose probability is below minP times the top one (0 = off). */
  minP?: number;
  /** Seed of the random stream; the same seed gives the same tokens. */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const t = o.temperature ?? 0;
  if (!(t >= 0) || !Number.isFinite(t)) throw new KvsieveError(`temperature must be a number >= 0, got ${t}`, { option: 'temperature' });
  const k = o.topK ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new KvsieveError(`topK must be a whole number >= 0, got ${k}`, { option: 'topK' });
  const p = o.topP ?? 1;
  if (!(p > 0 && p <= 1)) throw new KvsieveError(`topP must be a number in (0, 1], got ${p}`, { option: 'topP' });
  const m = o.minP ?? 0;
  if (!(m >= 0 && m <= 1)) throw new KvsieveError(`minP must be a number in [0, 1], got ${m}`, { option: 'minP' });
}

/**
 * Index of the largest value (the lowest index among equal ones; NaN never wins; 0 when nothing
 * beats -Infinity). Greedy decoding runs it over the whole vocabulary every token, so it takes two
 * passes: the maximum over four independent chains (no branch that depends on the previous
 * element), then the first index holding it: 121 us against 440 us for one pass keeping the index
 * (151936 logits, measured once on a 2-core EPYC).
 */
export function argmax(x: Float32Array, offset = 0, n = x.length - offset): number {
  const y = x.subarray(offset, offset + n);
  let m0 = -Infinity;
  let m1 = -Infinity;
  let m2 = -Infinity;
  let m3 = -Infinity;
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const a = y[i]!;
    const b = y[i + 1]!;
    const c = y[i + 2]!;
    const d = y[i + 3]!;
    if (a > m0) m0 = a;
    if (b > m1) m1 = b;
    if (c > m2) m2 = c;
    if (d > m3) m3 = d;
  }
  for (let i = n4; i < n; i++) if (y[i]! > m0) m0 = y[i]!;
  const m = Math.max(m0, m1, m2, m3); // none is NaN: a NaN never passes a > test
  if (m === -Infinity) return 0;
  return y.indexOf(m);
}

/**
 * Picks the next token from one row of logits. Filters apply in the order top-k, top-p, min-p on
 * the temperature-scaled distribution, then one uniform draw chooses among what is left.
 */
export class Sampler {
  private readonly random: Random;
  private probs = new Float32Array(0);
  private order = new Int32Array(0);

  constructor(readonly options: SamplingOptions = {}) {
    validateSampling(options);
    this.random = new Random(options.seed ?? 0);
  }

  sample(logits: Float32Array, offset: number, vocab: number): number {
    const temperature = this.options.temperature ?? 0;
    if (temperature === 0) return argmax(logits, offset, vocab);
    if (this.probs.length < vocab) {
      this.probs = new Float32Array(vocab);
      this.order = new Int32Array(vocab);
    }
    const probs = this.probs;
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]!);
    let sum = 0;
    for (let i = 0; i < vocab; i++) {
      const e = Math.exp((logits[offset + i]! - max) / temperature);
      probs[i] = e;
      sum += e;
    }
    for (let i = 0; i < vocab; i++) probs[i] = probs[i]! / sum;

    const topK = this.options.topK ?? 0;
    const topP = this.options.topP ?? 1;
    const minP = this.options.minP ?? 0;
    if (topK === 0 && topP >= 1 && minP === 0) return this.draw(probs, null, vocab);

    // Candidates sorted by probability, descending (ties: lower id first).
    const order = this.order.subarray(0, vocab);
    for (let i = 0; i < vocab; i++) order[i] = i;
    order.sort((a, b) => probs[b]! - probs[a]! || a - b);
    let keep = topK > 0 ? Math.min(topK, vocab) : vocab;
    if (topP < 1) {
      let cum = 0;
      for (let i = 0; i < keep; i++) {
        cum += probs[order[i]!]!;
        if (cum >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    if (minP > 0) {
      const floor = minP * probs[order[0]!]!;
      let i = 1;
      while (i < keep && probs[order[i]!]! >= floor) i++;
      keep = i;
    }
    return this.draw(probs, order, keep);
  }

  /** Draws among the first `count` candidates (ids from `order`, or 0..count-1), renormalised. */
  private draw(probs: Float32Array, order: Int32Array | null, count: number): number {
    let total = 0;
    for (let i = 0; i < count; i++) total += probs[order ? order[i]! : i]!;
    const r = this.random.next() * total;
    let cum = 0;
    for (let i = 0; i < count; i++) {
      const id = order ? order[i]! : i;
      cum += probs[id]!;
      if (r < cum) return id;
    }
    return order ? order[count - 1]! : count - 1;
  }
}
