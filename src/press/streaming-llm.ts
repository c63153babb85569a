/**
 * streaming-llm: keep the first `sinks` tokens (attention sinks) and the most recent budget - sinks.
 * protectPrompt: the sinks lie inside the prompt, so the first max(sinks, P') slots are kept (P' the
 * protected prompt, min(P, budget - 1) under the clamp) and the newest budget - that many.
 */
import { definePress } from './define.js';
import { keepAll } from './keep-lists.js';
import { BUDGET, SINKS } from './options.js';
import { budgetWithPrompt, promptRule, protectedSlots } from './prompt.js';

/**
 * Keep list of one head: all when n <= budget; else 0..s-1 and n-(budget-s)..n-1 with s = min(sinks, budget),
 * or s = max(that, prompt) with `prompt` protected slots.
 */
export function streamingKeep(n: number, budget: number, sinks: number, prompt = 0): Int32Array {
  if (n <= budget) return keepAll(n);
  const s = Math.min(budget, Math.max(Math.min(sinks, budget), prompt));
  const out = new Int32Array(budget);
  for (let i = 0; i < s; i++) out[i] = i;
  for (let i = s; i < budget; i++) out[i] = n - budget + i;
  return out;
}

export const streamingLlm = definePress({
  name: 'streaming-llm',
  summary: 'keep the first sinks tokens and the most recent budget - sinks',
  options: [BUDGET, SINKS],
  keep(o, view) {
    const B = budgetWithPrompt(promptRule(o), o.budget, view.promptLength ?? 0);
    return view.heads.map((hv, h) => {
      const prompt = protectedSlots(o, view, h, o.budget, 0);
      return prompt >= hv.n ? keepAll(hv.n) : streamingKeep(hv.n, B, o.sinks, prompt);
    });
  },
});
