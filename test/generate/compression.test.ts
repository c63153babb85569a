import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { ReferenceBackend } from '../../src/backend/reference.js';
import { calibrateQFilters } from '../../src/calibrate/q-filters.js';
import { readQFilters, writeQFilters } from '../../src/formats/q-filters.js';
import { openLlama2cCheckpoint } from '../../src/formats/llama2c.js';
import { compressionFor, type CompressionSettings } from '../../src/generate/compression.js';
import { step } from '../../src/generate/scheduler.js';
import { Sequence } from '../../src/generate/sequence.js';
import { layerLength, SlotCache } from '../../src/kv/cache.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadWeights } from '../../src/model/weights.js';
import { pyramidBudgets } from '../../src/press/pyramidkv.js';
import { BUDGET, definePress } from '../../src/press/index.js';
import { stories260K, tempDir } from '../helpers.js';

const PRESSES = ['streaming-llm', 'h2o', 'tova', 'knorm', 'snapkv', 'pyramidkv', 'ada-kv', 'q-filters', 'r-kv', 'mix-kv', 'triattention', 'random-pp'];
const generations = JSON.parse(readFileSync(stories260K('golden', 'generations.json'), 'utf8')).generations as {
  steps: number;
  prompt_ids: number[];
  ids: number[];
}[];

/** Filters for q-filters tests that need no calibration: a fixed unit direction per (layer, KV head). */
const someFilters = (L: number, H: number, d: number) =>
  Float32Array.from({ length: L * H * d }, (_, i) => Math.cos(i * 0.7) / Math.sqrt(d / 2));

/** TriAttention statistics for tests that need no calibration: fixed mean queries per (layer, query head, band). */
const someStats = (L: number, Hq: number, F: number) => ({
  qMeanRe: Float32Array.from({ length: L * Hq * F }, (_, i) => Math.cos(i * 0.3)),
  qMeanIm: Float32Array.from({ length: L * Hq * F }, (_, i) => Math.sin(i * 0.7)),
  qAbsMean: Float32Array.from({ length: L * Hq * F }, () => 1.5),
});

/** Presses that take a `window` option (q-filters' and random-pp's decode default of 64 is too wide for these budgets). */
const WINDOWED = new Set(['h2o', 'knorm', 'snapkv', 'pyramidkv', 'ada-kv', 'q-filters', 'r-kv', 'mix-kv', 'triattention', 'random-pp']);

function settings(press: string, budget: number, buffer: number, window?: number): CompressionSettings {
  const w = window ?? (press === 'q-filters' || press === 'random-pp' ? 16 : undefined);
  return {
    press,
    budget,
    buffer,
    ...(press === 'q-filters' ? { filters: someFilters(5, 4, 8) } : {}),
    ...(press === 'triattention' ? { stats: someStats(5, 8, 4) } : {}),
    ...(w !== undefined && WINDOWED.has(press) ? { window: w } : {}),
  };
}

test('with a budget at least the generated length, every press reproduces the golden generation exactly', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    for (const g of generations.filter((x) => x.steps === 500)) {
      const maxTokens = g.steps - g.prompt_ids.length + 1;
      for (const press of PRESSES) {
        // pyramidkv's deepest layer keeps budget / beta: give it a base budget whose smallest layer still fits.
        const budget = press === 'pyramidkv' ? 20 * 512 : 512;
        // schedule both: the press runs on the prompt once it is read (keeping all of it), and the decode
        // schedule bounds the cache at budget + buffer, never reached.
        const r = await model.complete(null, { promptIds: g.prompt_ids, maxTokens, compression: { ...settings(press, budget, 64), schedule: 'both' } });
        assert.deepEqual([...r.promptIds, ...r.generatedIds], g.ids, `${press} on a ${g.ids.length}-token golden`);
        assert.equal(r.compressions, 1, `${press}: the prompt's compression ran`);
      }
    }
  } finally {
    model.dispose();
  }
});

test('budget 64, buffer 64: a 500-token generation finishes and peak KV stays within 128 tokens per (layer, KV head)', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  const c = model.config;
  const limit = (64 + 64) * c.numLayers * c.numKvHeads * c.headDim * 2 * 4;
  try {
    for (const press of PRESSES) {
      const r = await model.complete('Once upon a time', { maxTokens: 500, ignoreEos: true, compression: settings(press, 64, 64) });
      assert.equal(r.generatedTokens, 500, press);
      assert.ok(r.compressions >= 3, `${press}: ${r.compressions} compressions`);
      if (press === 'pyramidkv') {
        // Layer budgets differ but sum to L x 64: memory is the same in total.
        const budgets = pyramidBudgets(64, c.numLayers, 20);
        const slots = budgets.reduce((a, b) => a + b + 64, 0) * c.numKvHeads;
        assert.ok(r.peakKvAllocatedBytes <= slots * c.headDim * 2 * 4, `${press}: allocated ${r.peakKvAllocatedBytes}`);
      } else {
        assert.ok(r.peakKvBytes <= limit, `${press}: peak live ${r.peakKvBytes} > ${limit}`);
        assert.ok(r.peakKvAllocatedBytes <= limit, `${press}: peak allocated ${r.peakKvAllocatedBytes} > ${limit}`);
      }
    }
  } finally {
    model.dispose();
  }
});

test('engine invariants under compression: budgets, window, ascending positions, position count, real reuse', () => {
  const { config, tensors } = openLlama2cCheckpoint(stories260K('stories260K.bin'));
  const backend = new ReferenceBackend();
  const llama = new LlamaModel(config, loadWeights(tensors, config, backend), backend);
  tensors.close();
  const B = 40;
  const buffer = 16;
  const L = config.numLayers;
  const H = config.numKvHeads;
  for (const press of PRESSES) {
    const factory = compressionFor(settings(press, B, buffer, 8), config)!;
    const prompt = [1, 403, 407, 261, 378];
    const seq = new Sequence(config, prompt, { maxTokens: 150 }, factory({ config, allocator: backend }), backend);
    const cache = seq.cache as SlotCache;
    const budgets = press === 'pyramidkv' ? pyramidBudgets(B, L, 20) : new Array<number>(L).fill(B);
    const layerSlots = budgets.map((b) => H * (b + buffer) * config.headDim * 2 * 4);
    let sawUneven = false;
    let compressionsSeen = 0;
    while (!seq.done) {
      const before = seq.compressor!.stats.compressions;
      const layerBefore = budgets.map((_, l) => layerLength(cache, l));
      step(llama, [seq]);
      if (seq.compressor!.stats.compressions > before) compressionsSeen++;
      for (let l = 0; l < L; l++) {
        const heads = cache.heads(l);
        const lengths = heads.map((h) => h.length);
        const compressed = layerLength(cache, l) <= layerBefore[l]!;
        if (new Set(lengths).size > 1) sawUneven = true;
        assert.ok(cache.allocatedSlots(l) * config.headDim * 2 * 4 <= layerSlots[l]!, `${press} layer ${l} allocation`);
        if (compressed) {
          if (press === 'ada-kv') assert.equal(lengths.reduce((a, b) => a + b, 0), H * budgets[l]!, `${press} layer ${l} total`);
          else assert.deepEqual(lengths, new Array<number>(H).fill(budgets[l]!), `${press} layer ${l} lengths`);
        }
        for (let h = 0; h < heads.length; h++) {
          const pos = Array.from(cache.positions(l, h));
          for (let i = 1; i < pos.length; i++) assert.ok(pos[i]! > pos[i - 1]!, `${press}: positions ascend`);
          // The newest token's position is the count of tokens processed before it; the window is kept.
          assert.equal(pos[pos.length - 1], seq.processed - 1, `${press}: newest position`);
          const window = press === 'streaming-llm' ? B - 4 : press === 'tova' ? 1 : 8;
          const w = Math.min(window, pos.length);
          assert.deepEqual(pos.slice(pos.length - w), Array.from({ length: w }, (_, i) => seq.processed - w + i), `${press}: window kept`);
        }
      }
    }
    assert.ok(compressionsSeen >= 5, `${press}: ${compressionsSeen} compressions`);
    if (press === 'ada-kv') assert.ok(sawUneven, 'ada-kv gave heads different lengths');
  }
});

test('Q-Filters calibration on stories260K writes filters that load back and give the same keep sets', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  const { dir, cleanup } = tempDir();
  try {
    // Calibration text generated by the model itself.
    const texts: string[] = [];
    for (const [i, p] of ['Once upon a time', 'Tom had a red ball', 'The little cat'].entries()) {
      texts.push(p + (await model.complete(p, { maxTokens: 200, temperature: 1, seed: i })).text);
    }
    const ids = model.tokenizer!.encode(texts.join('\n'), { addBos: false });
    const cal = calibrateQFilters(model, ids, { sequences: 4, seqLen: 128, samples: 200 });
    assert.ok(cal.sequences >= 2 && cal.samplesPerHead === 200);
    const c = model.config;
    assert.equal(cal.filters.length, c.numLayers * c.numKvHeads * c.headDim);
    // Each KV filter is the mean of unit vectors: norm at most 1 (equal when the group agrees).
    for (let i = 0; i < c.numLayers * c.numKvHeads; i++) {
      const f = cal.filters.subarray(i * c.headDim, (i + 1) * c.headDim);
      const norm = Math.hypot(...f);
      assert.ok(norm > 0.1 && norm <= 1 + 1e-6, `filter ${i} norm ${norm}`);
    }
    writeQFilters(join(dir, 'qf'), cal.filters, c);
    const loaded = readQFilters(join(dir, 'qf'), c);
    assert.deepEqual(loaded, cal.filters);
    const run = (filters: Float32Array) =>
      model.complete('Once upon a time', { maxTokens: 200, ignoreEos: true, compression: { press: 'q-filters', budget: 48, buffer: 16, window: 8, filters } });
    const [a, b] = [await run(cal.filters), await run(loaded)];
    assert.deepEqual(a.generatedIds, b.generatedIds);
    assert.ok(a.compressions > 5);
    const wrong = { ...c, numLayers: c.numLayers + 1 };
    assert.throws(() => readQFilters(join(dir, 'qf'), wrong), /q_filters has shape \[5, 4, 8\] but this model needs \[layers 6/);
  } finally {
    cleanup();
    model.dispose();
  }
});

test('the compressor hands a press the last w queries of each layer and attention sums that follow the kept slots', async () => {
  for (const backend of ['reference', 'wasm'] as const) {
    const model = await loadModel(stories260K('stories260K.bin'), { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) });
    try {
      const seen: { layer: number; w: number; q0: Float32Array[]; ns: number[]; sums: Float32Array[]; kept: Int32Array[] }[] = [];
      // Keeps every other older slot and the newest 4, up to the budget: uneven, non-trivial compaction.
      const probe = definePress({
        name: 'probe',
        summary: 'records what the engine hands it',
        options: [BUDGET],
        needs: { queries: () => 3, attentionSums: true },
        keep(o, view) {
          const kept = view.heads.map((hv) => {
            const older = Array.from({ length: hv.n - 4 }, (_, j) => j).filter((j) => j % 2 === 0);
            return Int32Array.from([...older.slice(older.length - (o.budget - 4)), ...[0, 1, 2, 3].map((i) => hv.n - 4 + i)]);
          });
          seen.push({
            layer: view.layer,
            w: view.w,
            q0: view.queries.map((q) => q.slice()),
            ns: view.heads.map((hv) => hv.n),
            sums: view.accumulatedAttention!.map((s) => Float32Array.from(s)),
            kept,
          });
          return kept;
        },
      });
      const r = await model.complete('Once upon a time', { maxTokens: 200, ignoreEos: true, compression: { press: probe, budget: 20, buffer: 8 } });
      assert.ok(r.compressions >= 8, `${backend}: ${r.compressions} compressions`);
      const c = model.config;
      const d = c.headDim;
      // Layer 0's queries do not depend on the cache: they equal a full-cache trace of the same tokens.
      const trace: Float32Array[] = [];
      model.traceQueries([...r.promptIds, ...r.generatedIds], (layer, q, rowOffset, T) => {
        if (layer === 0) for (let t = 0; t < T; t++) trace.push(q.slice((rowOffset + t) * c.numHeads * d, (rowOffset + t + 1) * c.numHeads * d));
      });
      for (let l = 0; l < c.numLayers; l++) {
        const events = seen.filter((e) => e.layer === l);
        let processed = 0;
        let prev: (typeof events)[number] | null = null;
        for (const e of events) {
          // tokens since the previous compression: every token added one slot to every head
          processed += e.ns[0]! - (prev ? prev.kept[0]!.length : 0);
          assert.equal(e.w, 3);
          for (let h = 0; h < c.numKvHeads; h++) {
            // each token's attention over its head's slots sums to 1 (averaged over the group): the mass
            // is what the kept slots held plus one per token since
            const mass = e.sums[h]!.reduce((a, b) => a + b, 0);
            const keptMass = prev ? Array.from(prev.kept[h]!).reduce((a, j) => a + prev!.sums[h]![j]!, 0) : 0;
            const since = e.ns[h]! - (prev ? prev.kept[h]!.length : 0);
            assert.ok(Math.abs(mass - (keptMass + since)) < 1e-3 * (keptMass + since), `${backend} layer ${l} head ${h}: mass ${mass} vs ${keptMass + since}`);
            // a kept slot's sum only grows
            if (prev) prev.kept[h]!.forEach((j, i) => assert.ok(e.sums[h]![i]! >= prev!.sums[h]![j]! - 1e-6, `${backend} layer ${l} head ${h} slot ${i}`));
          }
          if (l === 0) {
            for (let i = 0; i < 3; i++) {
              const want = trace[processed - 3 + i]!;
              for (let g = 0; g < c.numHeads; g++) {
                const got = e.q0[g]!.subarray(i * d, (i + 1) * d);
                for (let a = 0; a < d; a++) assert.ok(Math.abs(got[a]! - want[g * d + a]!) < 1e-5, `${backend} query ${i} head ${g}`);
              }
            }
          }
          prev = e;
        }
      }
    } finally {
      model.dispose();
    }
  }
});
