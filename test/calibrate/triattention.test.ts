// TriAttention calibration: the statistics of the query as RoPE receives it (after q_norm), checked against
// queries traced after RoPE and rotated back by hand; the file round trip; the model's own generations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadModel, type Model } from '../../src/api.js';
import { calibrateTriAttention, generatedSequences, textSequences } from '../../src/calibrate/triattention.js';
import { readTriAttentionStats, writeTriAttentionStats } from '../../src/formats/triattention.js';
import { stories260K, tempDir, tinyModel } from '../helpers.js';

/** Per (layer, query head, band): means of the queries traced after RoPE, rotated back at positions 0..N-1 (float64). */
function referenceStats(model: Model, sequences: number[][]) {
  const c = model.config;
  const F = c.headDim / 2;
  const inv = Array.from({ length: F }, (_, f) => Math.pow(c.ropeTheta, (-2 * f) / c.headDim));
  const size = c.numLayers * c.numHeads * F;
  const re = new Float64Array(size);
  const im = new Float64Array(size);
  const abs = new Float64Array(size);
  let N = 0;
  for (const ids of sequences) {
    N += ids.length;
    // A row's position: the prefill blocks of one sequence come in order, so count the rows per layer.
    const seen = new Array<number>(c.numLayers).fill(0);
    model.traceQueries(ids, (layer, q, rowOffset, T) => {
      for (let t = 0; t < T; t++) {
        const p = seen[layer]!++;
        for (let a = 0; a < c.numHeads; a++) {
          const x = (rowOffset + t) * c.numHeads * c.headDim + a * c.headDim;
          for (let f = 0; f < F; f++) {
            // post = pre e^{i p w}: pre = post e^{-i p w}
            const th = p * inv[f]!;
            const pr = q[x + f]! * Math.cos(th) + q[x + f + F]! * Math.sin(th);
            const pi = q[x + f + F]! * Math.cos(th) - q[x + f]! * Math.sin(th);
            const o = (layer * c.numHeads + a) * F + f;
            re[o] = re[o]! + pr;
            im[o] = im[o]! + pi;
            abs[o] = abs[o]! + Math.hypot(pr, pi);
          }
        }
      }
    });
  }
  return { re: re.map((x) => x / N), im: im.map((x) => x / N), abs: abs.map((x) => x / N) };
}

for (const [label, path] of [
  ['qwen3 fixture (q_norm, GQA)', () => tinyModel('qwen3-BF16')],
  ['stories260K', () => stories260K('stories260K.bin')],
] as const) {
  test(`calibrate triattention on ${label}: the RoPE input's band means, as the rotated-back traced queries give them`, async () => {
    const model = await loadModel(path(), { backend: 'reference' });
    try {
      const V = model.config.vocabSize;
      const seqs = [0, 1].map((s) => Array.from({ length: 150 + 40 * s }, (_, i) => (i * 29 + s * 7 + 3) % V));
      const cal = calibrateTriAttention(model, seqs);
      assert.equal(cal.tokens, 340);
      const ref = referenceStats(model, seqs);
      let scale = 0;
      for (const x of ref.abs) scale = Math.max(scale, x);
      for (const [got, want] of [
        [cal.stats.qMeanRe, ref.re],
        [cal.stats.qMeanIm, ref.im],
        [cal.stats.qAbsMean, ref.abs],
      ] as const) {
        for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * scale, `${i}: ${got[i]} vs ${want[i]}`);
      }
      // |qbar_f| <= m_f everywhere (a mean of vectors is no longer than the mean of their lengths)
      for (let i = 0; i < cal.stats.qAbsMean.length; i++) assert.ok(Math.hypot(cal.stats.qMeanRe[i]!, cal.stats.qMeanIm[i]!) <= cal.stats.qAbsMean[i]! * (1 + 1e-6));
      // the file round trip, and the press reads what was written
      const { dir, cleanup } = tempDir();
      try {
        const file = join(dir, 'stats.safetensors');
        writeTriAttentionStats(file, cal.stats, { model: label, tokens: cal.tokens });
        const c = model.config;
        const back = readTriAttentionStats(file, { numLayers: c.numLayers, headDim: c.headDim, numQHeads: c.numHeads });
        assert.deepEqual(back, cal.stats);
        const run = (stats: typeof back) =>
          model.complete(null, { promptIds: seqs[0]!.slice(0, 12), maxTokens: 100, ignoreEos: true, compression: { press: 'triattention', budget: 24, buffer: 8, stats } });
        const [a, b] = [await run(cal.stats), await run(back)];
        assert.ok(a.compressions >= 8);
        assert.deepEqual(a.generatedIds, b.generatedIds);
      } finally {
        cleanup();
      }
    } finally {
      model.dispose();
    }
  });
}

test('calibration data: text in pieces of max-length tokens; the model\'s own generations, prompt + output per sample', async () => {
  const model = await loadModel(stories260K('stories260K.bin'));
  try {
    const text = 'Once upon a time there was a cat. '.repeat(20);
    const ids = model.tokenizer!.encode(text);
    const pieces = textSequences(model, text, 50, 3);
    assert.deepEqual(pieces, [ids.slice(0, 50), ids.slice(50, 100), ids.slice(100, 150)]);
    const traces = await generatedSequences(model, ['Tom went', 'The sun'], { maxTokens: 30, samples: 2, temperature: 1, seed: 4 });
    assert.equal(traces.length, 4);
    const alone = await model.complete('The sun', { maxTokens: 30, temperature: 1, seed: 5 });
    assert.deepEqual(traces[3], [...alone.promptIds, ...alone.generatedIds]);
    assert.throws(() => calibrateTriAttention(model, [[]]), /gives no tokens/);
  } finally {
    model.dispose();
  }
});
