/**
 * random-pp (Random Attention, docs/methods.md Part 2): keep the prompt and the newest w = 64 tokens,
 * and a uniformly random subset of the rest, drawn anew at every compression, independently per
 * sequence, layer and KV head. A scored press whose scores are uniforms: the shared selection keeps
 * the protected prompt P' = min(P, B - w - 1) (protectPrompt is on by default), the window, and the
 * B - w - P' highest draws, which is a uniform subset without replacement.
 *
 * Draws: one uniform per candidate slot [0, n - w) in ascending slot order (the reference's
 * torch.rand over the candidates; the protected ones are overridden), from the stream of
 * (randomSeed, sequence id, T, layer, KV head), so a sequence draws the same whatever else shares its batch.
 * Schedule: buffer 64 by default, so with a budget that is a multiple of 64 the cache is cut from
 * B + 64 to B exactly when the reference's "n > B and n mod 64 = 0" fires.
 */
import { Random } from '../core/random.js';
import { definePress } from './define.js';
import { BUDGET, option, window } from './options.js';
import { protectPrompt } from './prompt.js';
import { processedOf } from './sequence.js';

/** One step of a 32-bit hash (murmur3's finaliser over the running value xor the word). */
function mix(h: number, x: number): number {
  let z = (h ^ Math.imul(x >>> 0, 0x9e3779b1)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** The seed of the stream of one (seed, sequence, compression at T, layer, KV head). */
export function randomStreamSeed(seed: number, sequenceId: number, processed: number, layer: number, head: number): number {
  let h = mix(0x52414e44, seed);
  for (const x of [sequenceId, processed, layer, head]) h = mix(h, x);
  return h;
}

// Not `seed`: the CLI's --seed is the sampling seed, which reaches the draws through the sequence id.
const RANDOM_SEED = option.integer({
  name: 'randomSeed',
  description: 'seed of the random draws (with the sequence, the step, the layer and the KV head)',
  default: 0,
  min: 0,
  max: 0xffffffff,
});

export const randomPp = definePress({
  name: 'random-pp',
  summary: 'keep the prompt and the window, and a uniformly random subset of the rest per KV head',
  options: [BUDGET, window(64, 64, 0, 'newest tokens always kept'), protectPrompt(true), RANDOM_SEED],
  buffer: 64,
  score(o, view, h, m, out) {
    const rnd = new Random(randomStreamSeed(o.randomSeed, view.sequenceId ?? 0, processedOf(view), view.layer, h));
    for (let j = 0; j < m; j++) out[j] = rnd.next();
  },
});
