import { basename } from 'node:path';
import type { Model } from '../api.js';
import { pressLabel, pressName } from '../press/table.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { SamplingOptions } from '../generate/sampler.js';
import { answersEqual, extractAnswer, type AnswerFormat } from './answer.js';
import { buildMathPrompt, type EvalItem } from './datasets.js';
import type { MathRecord, ResultsFile } from './records.js';

/** One finished completion, whoever produced it. */
export interface Completion {
  text: string;
  outputTokens: number;
  stopReason: string;
  peakKvBytes: number;
}

/**
 * Produces completions for one prompt: `samples` of them (sample i seeded with seed + i).
 * The engine's version batches them; tests pass scripted outputs.
 */
export type Completer = (prompt: string, samples: number, compression: CompressionSettings | null) => Promise<Completion[]>;

export interface MathEvalOptions {
  items: readonly EvalItem[];
  format: AnswerFormat;
  /** Label of the dataset in records (the file name). */
  dataset: string;
  modelLabel: string;
  samples: number;
  /** Press configurations without budget; `full` runs once with no budget. */
  presses: readonly CompressionSettings[];
  budgets: readonly number[];
  /** Distinguishes runs with other generation settings in the same results file. */
  settingsKey: string;
  results?: ResultsFile;
  onItem?: (records: MathRecord[]) => void;
}

/** The press x budget configurations of a run: `full` once, every other press at every budget. */
export function configurations(presses: MathEvalOptions['presses'], budgets: readonly number[]) {
  return presses.flatMap((p) =>
    pressName(p.press) === 'full'
      ? [{ press: 'full', budget: null as number | null, settings: null as CompressionSettings | null }]
      : budgets.map((budget) => ({ press: pressLabel(p), budget: budget as number | null, settings: { ...p, budget } as CompressionSettings | null })),
  );
}

/**
 * Reasoning accuracy: every problem x press x budget, `samples` completions graded against the
 * ground truth; one record per sample, appended as each problem finishes (a rerun skips them).
 */
export async function runMath(complete: Completer, o: MathEvalOptions): Promise<MathRecord[]> {
  const out: MathRecord[] = [];
  for (const cfg of configurations(o.presses, o.budgets)) {
    for (const item of o.items) {
      const key = (sample: number) =>
        `math|${o.dataset}|${item.id}|${sample}|${cfg.press}|${cfg.budget ?? 'full'}|${o.settingsKey}`;
      if (o.results && Array.from({ length: o.samples }, (_, s) => key(s)).every((k) => o.results!.has(k))) continue;
      const completions = await complete(buildMathPrompt(item.problem), o.samples, cfg.settings);
      const records = completions.map((c, sample): MathRecord => {
        const extracted = extractAnswer(c.text, o.format);
        return {
          kind: 'math',
          key: key(sample),
          model: o.modelLabel,
          press: cfg.press,
          budget: cfg.budget,
          time: new Date().toISOString(),
          dataset: o.dataset,
          format: o.format,
          id: item.id,
          sample,
          extracted,
          truth: item.answer,
          correct: answersEqual(extracted, item.answer),
          outputTokens: c.outputTokens,
          stopReason: c.stopReason,
          peakKvBytes: c.peakKvBytes,
        };
      });
      for (const r of records) o.results?.append(r);
      out.push(...records);
      o.onItem?.(records);
    }
  }
  return out;
}

/** pass@1 averaged over samples, per press x budget. */
export function summariseMath(records: readonly MathRecord[]) {
  const groups = new Map<string, MathRecord[]>();
  for (const r of records) {
    const k = `${r.press}|${r.budget}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((rs) => ({
    press: rs[0]!.press,
    budget: rs[0]!.budget,
    problems: new Set(rs.map((r) => String(r.id))).size,
    samples: rs.length,
    accuracy: rs.filter((r) => r.correct).length / rs.length,
    meanOutputTokens: rs.reduce((a, r) => a + r.outputTokens, 0) / rs.length,
  }));
}

/**
 * The engine's completer: the prompt through the model's chat template when it has one, the
 * samples of one problem decoded together in one batch.
 */
export function modelCompleter(model: Model, sampling: SamplingOptions & { maxTokens: number }): Completer {
  return async (prompt, samples, compression) => {
    const chat = model.tokenizer?.applyChatTemplate !== undefined;
    const ids = model.encodePrompt(prompt, { chat });
    // The samples read the prompt once and fork; sample i draws with seed (seed ?? 0) + i.
    const results = await model.generateBatch([ids], { ...sampling, n: samples, ...(compression ? { compression } : {}) });
    return results.map((r) => ({ text: r.text, outputTokens: r.generatedTokens, stopReason: r.stopReason, peakKvBytes: r.peakKvBytes }));
  };
}

export const datasetLabel = (file: string) => basename(file);
