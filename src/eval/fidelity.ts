import type { Model } from '../api.js';
import { pressLabel } from '../press/table.js';
import type { CompressionSettings } from '../generate/compression.js';
import type { Sequence } from '../generate/sequence.js';
import type { FidelityRecord, ResultsFile } from './records.js';

export interface FidelityOptions {
  /** Prompts: texts, or token id arrays. */
  prompts: readonly (string | readonly number[])[];
  /** Compression settings without the budget (press name and options). */
  presses: readonly CompressionSettings[];
  budgets: readonly number[];
  maxTokens: number;
  /** Model label written in records. */
  modelLabel: string;
  /** Results file: items already in it are skipped; new records are appended as they finish. */
  results?: ResultsFile;
  /** Called after each finished item. */
  onItem?: (record: FidelityRecord) => void;
  /** Samples of live KV bytes per run for the memory chart (default 50). */
  traceSamples?: number;
}

/** log-softmax of one logits row into `out` (float64 for stable KL sums). */
function logSoftmax(logits: Float32Array, offset: number, vocab: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i]! - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < vocab; i++) out[i] = logits[offset + i]! - lse;
}

/** KL(p || q) from log-probabilities. */
function kl(logP: Float64Array, logQ: Float64Array): number {
  let s = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]!);
    if (p > 0) s += p * (logP[i]! - logQ[i]!);
  }
  return Math.max(0, s);
}

const itemKey = (prompt: number, press: string, budget: number | null, maxTokens: number) =>
  `fidelity|${prompt}|${press}|${budget ?? 'full'}|${maxTokens}`;

/**
 * Fidelity of compressed generation against the full cache, per prompt x press x budget:
 *  - free greedy run under compression (alone, so its compression time share is its own):
 *    first divergence and the fraction of positions identical to the full-cache greedy run;
 *  - teacher-forced run on the full-cache continuation, in one batch with a full-cache run of the same
 *    tokens: KL(full || compressed) of the next-token distribution at every position, and the
 *    perplexity of the continuation under the compressed cache.
 * Greedy, EOS ignored, so every run has exactly `maxTokens` positions.
 */
export async function runFidelity(model: Model, o: FidelityOptions): Promise<FidelityRecord[]> {
  const records: FidelityRecord[] = [];
  const vocab = model.config.vocabSize;
  const traceEvery = Math.max(1, Math.floor(o.maxTokens / (o.traceSamples ?? 50)));
  const configs: { settings: CompressionSettings | null; press: string; budget: number | null }[] = [
    { settings: null, press: 'full', budget: null },
    ...o.presses.flatMap((p) => o.budgets.map((budget) => ({ settings: { ...p, budget } as CompressionSettings, press: pressLabel(p), budget }))),
  ];
  const emit = (r: FidelityRecord) => {
    records.push(r);
    o.results?.append(r);
    o.onItem?.(r);
  };

  for (let pi = 0; pi < o.prompts.length; pi++) {
    const todo = configs.filter((c) => !o.results?.has(itemKey(pi, c.press, c.budget, o.maxTokens)));
    if (todo.length === 0) continue;
    const prompt = o.prompts[pi]!;
    const promptIds = typeof prompt === 'string' ? model.encodePrompt(prompt) : [...prompt];
    const base = { promptIds, maxTokens: o.maxTokens, ignoreEos: true };

    // Free greedy runs, one at a time: the full-cache reference, then each compressed configuration.
    const free = new Map<(typeof configs)[number], { ids: number[]; trace: [number, number][]; peak: number; cs: number; ds: number }>();
    for (const c of configs) {
      if (c.settings !== null && !todo.includes(c)) continue;
      const trace: [number, number][] = [];
      const onLogits = (seq: Sequence) => {
        if (seq.generated % traceEvery === 0) trace.push([seq.generated, seq.cache.bytes().live]);
      };
      const r = await model.complete(null, { ...base, onLogits, ...(c.settings ? { compression: c.settings } : {}) });
      free.set(c, { ids: r.generatedIds, trace, peak: r.peakKvBytes, cs: r.compressionSeconds, ds: r.decodeSeconds });
    }
    const reference = free.get(configs[0]!)!.ids;

    // Teacher-forced runs on the reference continuation, batched with a full-cache run of the same tokens.
    // Compressed runs may read a long prompt in smaller blocks and lag behind the full run, so the full
    // distribution of each position is kept until every compressed run has used it.
    const fullRows = new Map<number, { log: Float64Array; uses: number }>();
    const tmp = new Float64Array(vocab);
    const stats = todo.map(() => ({ klSum: 0, klMax: 0, nll: 0, n: 0 }));
    const forced = { ...base, forced: reference };
    const batchOptions = [
      {
        ...forced,
        onLogits: (s: Sequence, l: Float32Array, off: number) => {
          const log = new Float64Array(vocab);
          logSoftmax(l, off, vocab, log);
          fullRows.set(s.generated, { log, uses: 0 });
        },
      },
      ...todo.map((c, i) => ({
        ...forced,
        ...(c.settings ? { compression: c.settings } : {}),
        onLogits: (s: Sequence, l: Float32Array, off: number) => {
          logSoftmax(l, off, vocab, tmp);
          const row = fullRows.get(s.generated)!;
          const k = kl(row.log, tmp);
          if (++row.uses === todo.length) fullRows.delete(s.generated);
          const st = stats[i]!;
          st.klSum += k;
          st.klMax = Math.max(st.klMax, k);
          st.nll -= tmp[reference[s.generated]!]!;
          st.n++;
        },
      })),
    ];
    await model.generateBatch(
      batchOptions.map(() => promptIds),
      batchOptions,
    );

    todo.forEach((c, i) => {
      const f = free.get(c)!;
      const st = stats[i]!;
      let same = 0;
      let first = -1;
      for (let t = 0; t < reference.length; t++) {
        if (f.ids[t] === reference[t]) same++;
        else if (first < 0) first = t;
      }
      emit({
        kind: 'fidelity',
        key: itemKey(pi, c.press, c.budget, o.maxTokens),
        model: o.modelLabel,
        press: c.press,
        budget: c.budget,
        time: new Date().toISOString(),
        prompt: pi,
        generated: reference.length,
        firstDivergence: first < 0 ? reference.length : first,
        identical: reference.length > 0 ? same / reference.length : 1,
        meanKl: st.n > 0 ? st.klSum / st.n : 0,
        maxKl: st.klMax,
        perplexity: st.n > 0 ? Math.exp(st.nll / st.n) : 1,
        peakKvBytes: f.peak,
        kvTrace: f.trace,
        compressionSeconds: f.cs,
        decodeSeconds: f.ds,
      });
    });
  }
  return records;
}

export interface FidelitySummary {
  press: string;
  budget: number | null;
  prompts: number;
  identical: number;
  firstDivergence: number;
  meanKl: number;
  maxKl: number;
  perplexity: number;
  peakKvBytes: number;
  compressionShare: number;
}

/** Averages fidelity records per press x budget (in first-seen order). */
export function summariseFidelity(records: readonly FidelityRecord[]): FidelitySummary[] {
  const groups = new Map<string, FidelityRecord[]>();
  for (const r of records) {
    const k = `${r.press}|${r.budget}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [...groups.values()].map((rs) => ({
    press: rs[0]!.press,
    budget: rs[0]!.budget,
    prompts: rs.length,
    identical: mean(rs.map((r) => r.identical)),
    firstDivergence: mean(rs.map((r) => r.firstDivergence)),
    meanKl: mean(rs.map((r) => r.meanKl)),
    maxKl: Math.max(...rs.map((r) => r.maxKl)),
    perplexity: mean(rs.map((r) => r.perplexity)),
    peakKvBytes: Math.max(...rs.map((r) => r.peakKvBytes)),
    compressionShare: rs.reduce((a, r) => a + r.compressionSeconds, 0) / Math.max(1e-12, rs.reduce((a, r) => a + r.decodeSeconds, 0)),
  }));
}
