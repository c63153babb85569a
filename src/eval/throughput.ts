import type { Model } from '../api.js';
import { slotsPerHeadFor, type CompressionSettings } from '../generate/compression.js';
import { pressLabel } from '../press/table.js';
import type { ThroughputRecord } from './records.js';
import { slotBytes, type KvDtype } from '../core/kv-rows.js';

/**
 * KV bytes one sequence may occupy at its peak: prompt + generated tokens for the full cache; budget +
 * buffer per (layer, KV head) under a decode-time schedule, by the press's own layer budgets.
 */
export function kvBytesPerSequence(
  model: Model,
  settings: CompressionSettings | null,
  promptTokens: number,
  genLen: number,
  kvDtype: KvDtype = 'f32',
): number {
  const c = model.config;
  const perSlot = slotBytes(kvDtype, c.headDim);
  const tokens = promptTokens + genLen;
  const bounded = slotsPerHeadFor(settings, c, tokens, undefined, promptTokens);
  const slots = bounded ? bounded.reduce((a, b) => a + b, 0) : tokens * c.numLayers;
  return slots * c.numKvHeads * perSlot;
}

export interface ThroughputOptions {
  settings: CompressionSettings | null;
  genLen: number;
  /** Requests submitted at once; the model's KV pool (loadModel's kvMemory) decides how many run together. */
  requests: number;
  promptIds: number[];
  modelLabel: string;
  /** KV-cache storage (default f32). */
  kvDtype?: KvDtype;
}

/**
 * `requests` sequences of `genLen` tokens (EOS ignored) submitted at once to a model whose KV pool
 * admits what fits: aggregate tokens/s and time to finish them all, the most that ran together, the
 * pool's peak bytes, preemptions and peak process memory.
 */
export async function runThroughput(model: Model, o: ThroughputOptions): Promise<ThroughputRecord> {
  const kvDtype = o.kvDtype ?? 'f32';
  const press = o.settings ? pressLabel(o.settings) : 'full';
  const limit = model.kvStats().limitBytes;
  let peakRss = process.memoryUsage().rss;
  let peakKv = 0;
  const sample = () => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    peakKv = Math.max(peakKv, model.kvStats().usedBytes);
  };
  const sampler = setInterval(sample, 50);
  const t0 = performance.now();
  const options = { maxTokens: o.genLen, ignoreEos: true, kvDtype, ...(o.settings ? { compression: o.settings } : {}) };
  let results;
  try {
    results = await model.generateBatch(
      Array.from({ length: o.requests }, () => o.promptIds),
      options,
    );
  } finally {
    clearInterval(sampler);
  }
  const seconds = (performance.now() - t0) / 1000;
  sample();
  const tokens = results.reduce((a, r) => a + r.generatedTokens, 0);
  return {
    kind: 'throughput',
    key: `throughput|${press}|${o.settings?.budget ?? 'full'}|${o.genLen}|${limit}|${kvDtype}|${o.requests}`,
    model: o.modelLabel,
    press,
    budget: typeof o.settings?.budget === 'number' ? o.settings.budget : null,
    time: new Date().toISOString(),
    genLen: o.genLen,
    kvMemoryBytes: limit,
    requests: o.requests,
    batch: Math.max(...results.map((r) => r.peakBatchSize)),
    preemptions: results.reduce((a, r) => a + r.preemptions, 0),
    tokensPerSecond: tokens / seconds,
    seconds,
    peakKvBytes: peakKv,
    peakRssBytes: peakRss,
  };
}
