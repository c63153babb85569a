import type { Model } from '../api.js';
import { KvsieveError } from '../core/errors.js';
import { slotsPerHeadFor, type CompressionSettings } from '../generate/compression.js';
import { pressName } from '../press/table.js';
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
  const bounded = slotsPerHeadFor(settings, c, tokens);
  const slots = bounded ? bounded.reduce((a, b) => a + b, 0) : tokens * c.numLayers;
  return slots * c.numKvHeads * perSlot;
}

export interface ThroughputOptions {
  settings: CompressionSettings | null;
  genLen: number;
  kvMemoryBytes: number;
  promptIds: number[];
  modelLabel: string;
  /** Upper bound on the batch (default 512). */
  maxBatch?: number;
  /** KV-cache storage (default f32). */
  kvDtype?: KvDtype;
}

/**
 * The largest batch whose KV cache fits `kvMemoryBytes`, decoded `genLen` tokens per sequence (EOS
 * ignored) in one batch: aggregate tokens/s, batch size, peak KV bytes and peak process memory.
 */
export async function runThroughput(model: Model, o: ThroughputOptions): Promise<ThroughputRecord> {
  const kvDtype = o.kvDtype ?? 'f32';
  const perSeq = kvBytesPerSequence(model, o.settings, o.promptIds.length, o.genLen, kvDtype);
  const batch = Math.min(o.maxBatch ?? 512, Math.floor(o.kvMemoryBytes / perSeq));
  const press = o.settings ? pressName(o.settings.press) : 'full';
  if (batch < 1) {
    throw new KvsieveError(`kvMemoryBytes (${o.kvMemoryBytes} bytes) holds no ${press} sequence (one needs ${perSeq} bytes)`, { option: 'kvMemoryBytes' });
  }
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 200);
  const t0 = performance.now();
  const options = { maxTokens: o.genLen, ignoreEos: true, kvDtype, ...(o.settings ? { compression: o.settings } : {}) };
  let results;
  try {
    results = await model.generateBatch(
      Array.from({ length: batch }, () => o.promptIds),
      options,
    );
  } finally {
    clearInterval(sampler);
  }
  const seconds = (performance.now() - t0) / 1000;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  const tokens = results.reduce((a, r) => a + r.generatedTokens, 0);
  return {
    kind: 'throughput',
    key: `throughput|${press}|${o.settings?.budget ?? 'full'}|${o.genLen}|${o.kvMemoryBytes}|${kvDtype}`,
    model: o.modelLabel,
    press,
    budget: o.settings?.budget ?? null,
    time: new Date().toISOString(),
    genLen: o.genLen,
    kvMemoryBytes: o.kvMemoryBytes,
    batch,
    tokensPerSecond: tokens / seconds,
    seconds,
    peakKvBytes: results.reduce((a, r) => a + r.peakKvBytes, 0),
    peakRssBytes: peakRss,
  };
}
