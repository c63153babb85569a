// What the compressor knows of its sequence and hands every press: the prompt length, T, each slot's
// position, the rope, a sequence id; the prompt rule through generate for every press; random-pp's
// streams independent of the batch; triattention's one list per KV head for every layer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type Model } from '../../src/api.js';
import { calibrateTriAttention } from '../../src/calibrate/triattention.js';
import { sequenceIdOf, type CompressionSettings } from '../../src/generate/compression.js';
import type { Sequence } from '../../src/generate/sequence.js';
import { BUDGET, definePress, pyramidLayerBudget } from '../../src/press/index.js';
import { stories260K, tinyModel } from '../helpers.js';

const prompt = 'Once upon a time, there was a little girl named Lily. She liked to play outside with her dog.';

test('the compressor hands a press P, T, every slot\'s original position, the rope\'s inverse frequencies and the sequence id', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    const c = model.config;
    const seen: { layer: number; P: number; T: number; positions: number[][]; rope: number[]; id: number }[] = [];
    // Keeps the even older slots and the newest 2: positions then have gaps, and differ from slot numbers.
    const probe = definePress({
      name: 'probe',
      summary: 'records the sequence fields of its views',
      options: [BUDGET],
      keep(o, view) {
        seen.push({
          layer: view.layer,
          P: view.promptLength!,
          T: view.processed!,
          positions: view.positions!.map((p) => Array.from(p).slice(0, view.heads[0]!.n)),
          rope: Array.from(view.ropeInvFreq!),
          id: view.sequenceId!,
        });
        return view.heads.map((hv) => {
          const older = Array.from({ length: hv.n - 2 }, (_, j) => j).filter((j) => j % 2 === 0);
          return Int32Array.from([...older.slice(Math.max(0, older.length - (o.budget - 2))), hv.n - 2, hv.n - 1]);
        });
      },
    });
    const r = await model.complete(prompt, { maxTokens: 120, ignoreEos: true, seed: 3, compression: { press: probe, budget: 16, buffer: 8 } });
    assert.ok(r.compressions >= 8, `${r.compressions} compressions`);
    const P = r.promptIds.length;
    // The press's own keep rule, replayed on positions: what each head should hold at each compression.
    let held: number[] = [];
    let next = 0; // the position of the next token the cache receives
    for (const e of seen.filter((x) => x.layer === 0)) {
      assert.equal(e.P, P);
      assert.equal(e.id, sequenceIdOf(r.promptIds, 3));
      // every token since the last compression added one slot (the prompt is read in blocks that fit)
      while (held.length < e.positions[0]!.length) held.push(next++);
      assert.equal(e.T, next, 'T counts the tokens processed');
      for (const pos of e.positions) assert.deepEqual(pos, held);
      const older = held.slice(0, -2).filter((_, j) => j % 2 === 0);
      held = [...older.slice(Math.max(0, older.length - 14)), ...held.slice(-2)];
    }
    // rotate-half inverse frequencies theta^(-2f/d) of stories260K (theta 10000, no scaling)
    for (const e of seen) e.rope.forEach((w, f) => assert.ok(Math.abs(w - Math.pow(c.ropeTheta, (-2 * f) / c.headDim)) < 1e-15));
    // another seed, another id; the same request, the same id
    assert.notEqual(sequenceIdOf(r.promptIds, 4), sequenceIdOf(r.promptIds, 3));
    assert.notEqual(sequenceIdOf([...r.promptIds, 1], 3), sequenceIdOf(r.promptIds, 3));
  } finally {
    model.dispose();
  }
});

/** Checks, after every step, that each (layer, KV head) still holds the first `protect(layer)` prompt positions. */
async function runProtected(model: Model, settings: CompressionSettings, promptIds: number[], protect: (layer: number) => number) {
  let checks = 0;
  const onLogits = (seq: Sequence) => {
    for (let l = 0; l < model.config.numLayers; l++) {
      const p = protect(l);
      for (let h = 0; h < model.config.numKvHeads; h++) {
        const pos = seq.cache.positions(l, h);
        for (let j = 0; j < p; j++) if (pos[j] !== j) assert.fail(`${settings.press} layer ${l} head ${h}: prompt position ${j} evicted (slot holds ${pos[j]})`);
      }
    }
    checks++;
  };
  const r = await model.complete(null, { promptIds, maxTokens: 150, ignoreEos: true, onLogits, compression: settings });
  assert.ok(r.compressions >= 3, `${settings.press}: ${r.compressions} compressions`);
  assert.equal(checks, 150);
  return r;
}

test('protectPrompt through generate: every press keeps the prompt (clamped to budget - window - 1 per layer), prompts longer than the cache too', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const c = model.config;
    const ids = model.encodePrompt(prompt);
    const P = ids.length;
    const stats = calibrateTriAttention(model, [ids]).stats;
    const presses: [CompressionSettings, number][] = [
      [{ press: 'streaming-llm', budget: 40 }, 0],
      [{ press: 'h2o', window: 8 }, 8],
      [{ press: 'tova' }, 1],
      [{ press: 'knorm' }, 0],
      [{ press: 'snapkv', window: 8 }, 8],
      [{ press: 'pyramidkv', window: 8, beta: 2 }, 8],
      [{ press: 'ada-kv', inner: 'snapkv', window: 8 }, 8],
      [{ press: 'q-filters', window: 8, filters: Float32Array.from({ length: c.numLayers * c.numKvHeads * c.headDim }, (_, i) => Math.cos(i)) }, 8],
      [{ press: 'r-kv' }, 8],
      [{ press: 'mix-kv', window: 8 }, 8],
      [{ press: 'triattention', stats, promptOverflow: 'clamp' }, 0],
      [{ press: 'random-pp', window: 8 }, 8],
    ];
    for (const [s, w] of presses) {
      const settings = { budget: 40, buffer: 16, protectPrompt: true, ...s } as CompressionSettings;
      const budget = (l: number) => (s.press === 'pyramidkv' ? pyramidLayerBudget(40, c.numLayers, 2, l) : 40);
      await runProtected(model, settings, ids, (l) => Math.max(0, Math.min(P, budget(l) - w - 1)));
    }
    // A prompt of 150 tokens is read in blocks that never overflow 40 + 16: the first 31 stay.
    const long = [...ids, ...ids, ...ids, ...ids, ...ids, ...ids].slice(0, 150);
    await runProtected(model, { press: 'r-kv', budget: 40, buffer: 16, protectPrompt: true }, long, () => 31);
    await runProtected(model, { press: 'random-pp', budget: 40, buffer: 16, window: 8 }, long, () => 31);
    // promptInBudget false: the prompt on top of the budget (and of the slots); skip: a prompt that does not fit is never cut.
    const onTop = await runProtected(model, { press: 'r-kv', budget: 20, buffer: 16, protectPrompt: true, promptInBudget: false }, ids, () => P);
    assert.equal(onTop.peakKvBytes, (20 + P + 16) * c.numLayers * c.numKvHeads * c.headDim * 2 * 4);
    const skipped = await model.complete(null, { promptIds: ids, maxTokens: 100, ignoreEos: true, compression: { press: 'r-kv', budget: 20, buffer: 16, protectPrompt: true, promptOverflow: 'skip' } });
    assert.equal(skipped.compressions, 0);
    assert.equal(skipped.peakKvBytes, (P + 99) * c.numLayers * c.numKvHeads * c.headDim * 2 * 4);
  } finally {
    model.dispose();
  }
});

test('random-pp draws by sequence: alone or in a batch, the same tokens; the samples of one prompt draw apart', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    const compression = { press: 'random-pp', budget: 24, window: 8, buffer: 8 };
    const alone = await Promise.all([0, 1, 2].map((j) => model.complete(prompt, { maxTokens: 120, ignoreEos: true, seed: j, compression })));
    assert.ok(alone.every((r) => r.compressions >= 10));
    // n samples of one prompt (sample j seeds j), next to another prompt in the batch
    const batch = await model.generateBatch([prompt, 'The little dog'], [{ maxTokens: 120, ignoreEos: true, n: 3, compression }, { maxTokens: 60, compression }]);
    for (let j = 0; j < 3; j++) assert.deepEqual(batch[j]!.generatedIds, alone[j]!.generatedIds, `sample ${j}`);
    // Greedy, so only the evictions tell the samples apart.
    assert.ok(new Set(alone.map((r) => r.generatedIds.join())).size > 1, 'samples evict differently');
    // The press's own seed changes the draws too.
    const reseeded = await model.complete(prompt, { maxTokens: 120, ignoreEos: true, seed: 0, compression: { ...compression, randomSeed: 9 } });
    assert.notDeepEqual(reseeded.generatedIds, alone[0]!.generatedIds);
  } finally {
    model.dispose();
  }
});

test('triattention through generate (qwen3 fixture: GQA, q_norm): one keep list per KV head for every layer, the prompt kept', async () => {
  const model = await loadModel(tinyModel('qwen3-BF16'), { weights: 'f32' });
  try {
    const c = model.config;
    const ids = Array.from({ length: 20 }, (_, i) => (i * 37 + 5) % c.vocabSize);
    const calib = Array.from({ length: 3 }, (_, s) => Array.from({ length: 200 }, (_, i) => (i * 13 + s * 101 + 7) % c.vocabSize));
    const stats = calibrateTriAttention(model, calib).stats;
    for (const selection of ['per-kv-head', 'per-layer', 'union'] as const) {
      let layersApart = 0;
      const onLogits = (seq: Sequence) => {
        const per = Array.from({ length: c.numLayers }, (_, l) => Array.from({ length: c.numKvHeads }, (_, h) => Array.from(seq.cache.positions(l, h))));
        for (const layer of per) for (const pos of layer) assert.deepEqual(pos.slice(0, 20), [...Array(20).keys()], `${selection}: prompt kept`);
        if (per.some((layer) => layer.join('|') !== per[0]!.join('|'))) layersApart++;
        if (selection === 'union') for (let h = 1; h < c.numKvHeads; h++) assert.deepEqual(per[0]![h], per[0]![0], 'union: one list for every head');
      };
      const r = await model.complete(null, { promptIds: ids, maxTokens: 200, ignoreEos: true, onLogits, compression: { press: 'triattention', budget: 48, buffer: 16, stats, selection } });
      assert.ok(r.compressions >= 8, `${selection}: ${r.compressions}`);
      // Shared selections keep every layer alike; per-layer ones (the check's control) do not.
      if (selection === 'per-layer') assert.ok(layersApart > 100, `per-layer: layers apart at ${layersApart} steps`);
      else assert.equal(layersApart, 0, `${selection}: layers hold different slots`);
    }
  } finally {
    model.dispose();
  }
});
