import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel, type Model } from '../../src/api.js';
import { argmax } from '../../src/generate/sampler.js';
import { stories260K, storiesGoldens, type StoriesGolden } from '../helpers.js';

const generations = storiesGoldens();
const logitsGolden = JSON.parse(readFileSync(stories260K('golden', 'logits_once_upon_a_time.json'), 'utf8')) as {
  ids: number[];
  entries: { pos: number; logits: number[] }[];
};

/** run.c runs at most `steps` forward passes, prompt included: that many tokens after BOS at most. */
const maxNewTokens = (g: StoriesGolden) => g.steps - g.prompt_ids.length + 1;

async function checkLogits(model: Model): Promise<void> {
  const rows = model.logits(logitsGolden.ids.slice(0, 101));
  for (const e of logitsGolden.entries) {
    const row = rows[e.pos]!;
    let worst = 0;
    for (let j = 0; j < e.logits.length; j++) worst = Math.max(worst, Math.abs(row[j]! - e.logits[j]!));
    assert.ok(worst < 1e-4, `position ${e.pos}: max |logit diff| ${worst}`);
  }
}

const BACKENDS = [
  { label: 'reference', options: { backend: 'reference' as const } },
  { label: 'wasm f32', options: { backend: 'wasm' as const, weights: 'f32' as const } },
];

for (const { label, options } of BACKENDS) {
test(`stories260K llama2.c files (${label}): greedy generations reproduce run.c ids and text exactly`, async () => {
  const model = await loadModel(stories260K('stories260K.bin'), options);
  try {
    await checkLogits(model);
    for (const g of generations) {
      assert.deepEqual(model.encodePrompt(g.prompt), g.prompt_ids, `prompt ids of "${g.prompt}"`);
      const r = await model.complete(g.prompt, { maxTokens: maxNewTokens(g) });
      assert.deepEqual([...r.promptIds, ...r.generatedIds], g.ids, `ids of "${g.prompt}" -n ${g.steps}`);
      assert.equal(r.stopReason, g.stopped_on_bos ? 'eos' : 'max-tokens');
      // run.c prints the prompt and then the story.
      const promptText = model.tokenizer!.decode(g.prompt_ids);
      assert.equal(promptText + r.text, g.text, `text of "${g.prompt}" -n ${g.steps}`);
    }
  } finally {
    model.dispose();
  }
});

test(`stories260K hf/ conversion (${label}): logits and greedy ids match run.c up to its BOS stop`, async () => {
  const model = await loadModel(stories260K('hf'), options);
  try {
    await checkLogits(model);
    for (const g of generations) {
      const generated = g.ids.length - g.prompt_ids.length;
      const r = await model.complete(null, { promptIds: g.prompt_ids, maxTokens: generated, ignoreEos: true });
      assert.deepEqual([...r.promptIds, ...r.generatedIds], g.ids);
    }
  } finally {
    model.dispose();
  }
});
}

test('stories260K with q8_0 weights on the wasm backend: teacher-forced logits stay within 0.75 of the f32 oracle, the top token agrees wherever the margin allows', async () => {
  const model = await loadModel(stories260K('stories260K.bin'), { weights: 'q8_0' });
  const oracle = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  try {
    // Measured on the four golden generations: max |diff| 0.49, top-1 agreement 1349 / 1358, and every
    // disagreement at an oracle margin (top-1 minus top-2) under 0.05. A wrong scale, block or activation
    // quantisation moves the logits by far more than the bound.
    const bound = 0.75;
    let agree = 0;
    let total = 0;
    let largest = 0;
    for (const g of generations) {
      const ids = g.ids.slice(0, 512);
      const [q, f] = [model.logits(ids), oracle.logits(ids)];
      for (let i = 0; i < ids.length - 1; i++) {
        const a = q[i]!;
        const b = f[i]!;
        let diff = 0;
        for (let j = 0; j < 512; j++) diff = Math.max(diff, Math.abs(a[j]! - b[j]!));
        assert.ok(diff < bound, `position ${i}: q8_0 logits differ by ${diff}`);
        largest = Math.max(largest, diff);
        const top = argmax(b);
        const margin = b[top]! - Math.max(...Array.from(b).filter((_, j) => j !== top));
        if (argmax(a) === top) agree++;
        else assert.ok(margin < 2 * bound, `position ${i}: q8_0 changed a top token that led by ${margin}`);
        total++;
      }
    }
    assert.ok(agree / total >= 0.98, `teacher-forced top-1 agreement ${agree}/${total}`);
    assert.ok(largest > 0.05, `the weights are quantised: q8_0 moves the logits (largest diff ${largest})`);
    assert.match(model.info().backend, /q8_0 weights/);
    const rows = model.logits(logitsGolden.ids.slice(0, 11));
    let worst = 0;
    for (const e of logitsGolden.entries.filter((x) => x.pos <= 10)) {
      for (let j = 0; j < 512; j++) worst = Math.max(worst, Math.abs(rows[e.pos]![j]! - e.logits[j]!));
    }
    assert.ok(worst < 1, `q8_0 logits within 1 of run.c (max diff ${worst})`);
  } finally {
    model.dispose();
    oracle.dispose();
  }
});
