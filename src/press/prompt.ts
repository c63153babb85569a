/**
 * The prompt rule every press with a budget takes (docs/methods.md, "protect-prompt"): prompt slots are
 * never evicted and the budget counts them. The press scores as it always does; the shared selection
 * (keepByScores, ada-kv, streaming-llm) then keeps the first P' prompt slots, the window, and the
 * press's top B - w - P' of the rest, with P' = min(P, B - w - 1): at least one slot stays the press's
 * own choice. `promptInBudget: false` puts the prompt on top of the budget instead; `promptOverflow`
 * says what happens to a prompt that does not fit (P > B - w - 1).
 */
import { option } from './options.js';
import { promptSlots } from './sequence.js';
import type { LayerView, PressOptions } from './types.js';

/** What a prompt that does not leave the press a free slot (P > B - w - 1) does. */
export type PromptOverflow = 'clamp' | 'skip' | 'truncate';

/** `protectPrompt` with a press's own default (random-pp and triattention protect by default). */
export const protectPrompt = (byDefault: boolean) =>
  option.boolean({
    name: 'protectPrompt',
    description: 'never evict the prompt; the budget counts it (at least one slot stays the press\'s choice)',
    default: byDefault,
  });

export const PROMPT_IN_BUDGET = option.boolean({
  name: 'promptInBudget',
  description: 'with protectPrompt: the budget counts the prompt (false: budget + prompt kept, and the trigger moves with it)',
  default: true,
});

/** `promptOverflow` with a press's own default (triattention truncates, as its official code does). */
export const promptOverflow = (byDefault: PromptOverflow) =>
  option.choice({
    name: 'promptOverflow',
    description:
      'with protectPrompt, a prompt longer than budget - window - 1: clamp (keep its first budget - window - 1 tokens), skip (evict nothing), truncate (keep its first budget - window, no free slot)',
    choices: ['clamp', 'skip', 'truncate'],
    default: byDefault,
  });

/** The three prompt options definePress gives every press that has a budget and does not list its own. */
export const PROMPT_OPTIONS = [protectPrompt(false), PROMPT_IN_BUDGET, promptOverflow('clamp')] as const;

/** The prompt rule of resolved options, or null when the prompt is not protected. */
export interface PromptRule {
  inBudget: boolean;
  overflow: PromptOverflow;
}

export function promptRule(o: PressOptions): PromptRule | null {
  if (o['protectPrompt'] !== true) return null;
  return { inBudget: o['promptInBudget'] !== false, overflow: (o['promptOverflow'] as PromptOverflow | undefined) ?? 'clamp' };
}

/** The budget the selection keeps to: the press's budget, plus the prompt when the rule does not count it. */
export function budgetWithPrompt(rule: PromptRule | null, budget: number, promptLength: number): number {
  return rule && !rule.inBudget ? budget + promptLength : budget;
}

/**
 * One head's share of the prompt rule, with n > B > w (an eviction is due): `protect` leading slots are
 * kept whatever their scores (the clamp: min(held, B - w - 1); truncate: B - w when the prompt does not
 * fit, leaving the press no choice), or `all` when the rule says not to evict (skip).
 */
export function promptShare(rule: PromptRule | null, held: number, budget: number, window: number): { all: true } | { all: false; protect: number } {
  if (!rule || held === 0) return { all: false, protect: 0 };
  const room = budget - window - 1;
  if (held <= room) return { all: false, protect: held };
  if (rule.overflow === 'skip') return { all: true };
  return { all: false, protect: rule.overflow === 'truncate' ? budget - window : room };
}

/** Whether the prompt rule leaves `budget` untouched by a prompt of P slots (skip: a prompt that does not fit). */
export function promptSkips(rule: PromptRule | null, promptLength: number, budget: number, window: number): boolean {
  return rule !== null && rule.overflow === 'skip' && promptLength > budget - window - 1;
}

/**
 * For keep rules that apply the prompt rule themselves: the leading slots of KV head h it keeps when
 * the head is cut to `budget` (the press's; the prompt is added when the rule does not count it) with
 * `window` newest slots kept: 0 when nothing is protected or evicted, n when the rule says not to evict.
 */
export function protectedSlots(o: PressOptions, view: LayerView, h: number, budget: number, window: number): number {
  const rule = promptRule(o);
  if (!rule) return 0;
  const B = budgetWithPrompt(rule, budget, view.promptLength ?? 0);
  const n = view.heads[h]!.n;
  if (n <= B || B <= window) return 0;
  const share = promptShare(rule, promptSlots(view, h), B, window);
  return share.all ? n : share.protect;
}
