/** streaming-llm: keep the first `sinks` tokens (attention sinks) and the most recent budget - sinks. */
import { definePress } from './define.js';
import { keepAll } from './keep-lists.js';
import { BUDGET, SINKS } from './options.js';

/** Keep list of one head: all when n <= budget; else 0..s-1 and n-(budget-s)..n-1 with s = min(sinks, budget). */
export function streamingKeep(n: number, budget: number, sinks: number): Int32Array {
  if (n <= budget) return keepAll(n);
  const s = Math.min(sinks, budget);
  const out = new Int32Array(budget);
  for (let i = 0; i < s; i++) out[i] = i;
  for (let i = s; i < budget; i++) out[i] = n - budget + i;
  return out;
}

export const streamingLlm = definePress({
  name: 'streaming-llm',
  summary: 'keep the first sinks tokens and the most recent budget - sinks',
  options: [BUDGET, SINKS],
  keep: (o, view) => view.heads.map((hv) => streamingKeep(hv.n, o.budget, o.sinks)),
});
