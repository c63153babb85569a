// Sliding-window attention through the whole engine, against a plain float64 forward written here
// from the definitions (no engine code but the safetensors reader): first checked against the
// fixture's independent logits with no window, then with a window the engine must match. The
// engine's sliding layers drop their oldest slots as they fill (small prefill blocks make that
// happen every few tokens), so this also checks the cache's trimming against the mask.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { Sequence } from '../../src/generate/sequence.js';
import { tempDir, tinyModel } from '../helpers.js';
import { attend, matvec, rmsnorm, rope, silu } from './naive.js';

interface Expected {
  prompt_ids: number[];
  logits: number[][];
  greedy_ids: number[];
}

/**
 * The Mistral/Qwen2 forward in float64, one token at a time over a full history (no cache tricks):
 * token p of a sliding layer attends to positions p - window + 1 .. p.
 */
function naiveLogits(dir: string, ids: readonly number[], slidingLayers: (l: number) => number): number[][] {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as {
    hidden_size: number; num_attention_heads: number; num_key_value_heads: number; head_dim?: number; num_hidden_layers: number;
    rms_norm_eps: number; rope_theta: number; vocab_size: number; intermediate_size: number;
  };
  const src = openSafetensors(join(dir, 'model.safetensors'));
  const w = (name: string) => Float64Array.from(src.readF32(name));
  const has = (name: string) => src.has(name);
  const D = cfg.hidden_size;
  const H = cfg.num_attention_heads;
  const Hkv = cfg.num_key_value_heads;
  const d = cfg.head_dim ?? D / H;
  const L = cfg.num_hidden_layers;
  const eps = cfg.rms_norm_eps;
  const theta = cfg.rope_theta;
  const V = cfg.vocab_size;
  const layers = Array.from({ length: L }, (_, l) => {
    const p = `model.layers.${l}.`;
    const opt = (n: string) => (has(p + n) ? w(p + n) : undefined);
    return {
      inNorm: w(`${p}input_layernorm.weight`), postNorm: w(`${p}post_attention_layernorm.weight`),
      q: w(`${p}self_attn.q_proj.weight`), k: w(`${p}self_attn.k_proj.weight`), v: w(`${p}self_attn.v_proj.weight`),
      qb: opt('self_attn.q_proj.bias'), kb: opt('self_attn.k_proj.bias'), vb: opt('self_attn.v_proj.bias'),
      o: w(`${p}self_attn.o_proj.weight`),
      gate: w(`${p}mlp.gate_proj.weight`), up: w(`${p}mlp.up_proj.weight`), down: w(`${p}mlp.down_proj.weight`),
    };
  });
  const embed = w('model.embed_tokens.weight');
  const norm = w('model.norm.weight');
  const head = has('lm_head.weight') ? w('lm_head.weight') : embed;
  src.close();
  const F = cfg.intermediate_size;
  const keys: Float64Array[][] = layers.map(() => []);
  const values: Float64Array[][] = layers.map(() => []);
  const out: number[][] = [];
  ids.forEach((id, pos) => {
    let x = embed.slice(id * D, (id + 1) * D);
    layers.forEach((ly, l) => {
      const h = rmsnorm(x.slice(), ly.inNorm, eps);
      const q = matvec(ly.q, h, H * d, ly.qb);
      const k = matvec(ly.k, h, Hkv * d, ly.kb);
      rope(q, H, d, pos, theta);
      rope(k, Hkv, d, pos, theta);
      keys[l]!.push(k);
      values[l]!.push(matvec(ly.v, h, Hkv * d, ly.vb));
      const window = slidingLayers(l);
      const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
      const att = attend(q, keys[l]!, values[l]!, first, H, Hkv, d, 1 / Math.sqrt(d));
      x = x.map((v, i) => v + matvec(ly.o, att, D)[i]!);
      const h2 = rmsnorm(x.slice(), ly.postNorm, eps);
      const gate = matvec(ly.gate, h2, F);
      const up = matvec(ly.up, h2, F);
      const act = gate.map((g, i) => silu(g) * up[i]!);
      const down = matvec(ly.down, act, D);
      x = x.map((v, i) => v + down[i]!);
    });
    out.push(Array.from(matvec(head, rmsnorm(x.slice(), norm, eps), V)));
  });
  return out;
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/** A copy of a fixture with config.json fields replaced. */
function withConfig(name: string, dir: string, fields: Record<string, unknown>): string {
  const cfg = JSON.parse(readFileSync(tinyModel(name, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...fields }));
  copyFileSync(tinyModel(name, 'model.safetensors'), join(dir, 'model.safetensors'));
  return dir;
}

test('the float64 reference forward of this test reproduces the fixtures\' independent logits (no window)', () => {
  for (const name of ['mistral-F16', 'qwen2-F32']) {
    const expected = JSON.parse(readFileSync(tinyModel(name, 'expected.json'), 'utf8')) as Expected;
    const rows = naiveLogits(tinyModel(name), expected.prompt_ids, () => 0);
    const worst = Math.max(...rows.map((r, i) => maxDiff(r, expected.logits[i]!)));
    assert.ok(worst < 1e-4, `${name}: max |diff| ${worst}`);
  }
});

// Mistral's window on every layer; Qwen2's use_sliding_window from max_window_layers (layer 0 full,
// layers 1 and 2 sliding); an explicit layer_types list.
const CASES = [
  { name: 'mistral-F16', fields: { sliding_window: 6 }, window: (_l: number) => 6 },
  { name: 'qwen2-F32', fields: { use_sliding_window: true, sliding_window: 5, max_window_layers: 1 }, window: (l: number) => (l >= 1 ? 5 : 0) },
  { name: 'mistral-F16', fields: { sliding_window: 9, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] }, window: (l: number) => (l === 1 ? 0 : 9) },
];

for (const c of CASES) {
  test(`sliding window ${JSON.stringify(c.fields)} on ${c.name}: logits and greedy ids as the float64 reference, on both backends, whatever the prefill block`, async () => {
    const { dir, cleanup } = tempDir();
    try {
      const model0 = withConfig(c.name, dir, c.fields);
      const expected = JSON.parse(readFileSync(tinyModel(c.name, 'expected.json'), 'utf8')) as Expected;
      const prompt = expected.prompt_ids;
      // The reference's greedy continuation, then logits of prompt + continuation.
      const ids = [...prompt];
      for (let i = 0; i < 12; i++) {
        const last = naiveLogits(model0, ids, c.window).at(-1)!;
        ids.push(last.indexOf(Math.max(...last)));
      }
      const want = naiveLogits(model0, ids, c.window);
      const full = naiveLogits(model0, ids, () => 0);
      // The window must matter, or the test proves nothing.
      assert.ok(maxDiff(want.at(-1)!, full.at(-1)!) > 1e-2, 'the window changes the last logits');
      const tol = c.name.endsWith('F32') ? 1e-4 : 1e-3;
      for (const backend of ['reference', 'wasm'] as const) {
        const model = await loadModel(model0, { backend, ...(backend === 'wasm' ? { weights: 'f32' as const } : {}) });
        try {
          assert.ok(model.config.slidingWindow !== undefined);
          const rows = model.logits(ids);
          const worst = Math.max(...rows.map((r, i) => maxDiff(r, want[i]!)));
          assert.ok(worst < tol, `${backend}: teacher-forced logits, max |diff| ${worst}`);
          // Generation: prompt blocks of 4 (and 64), then decoding; the sliding layers' slots are cut
          // back many times on the way.
          for (const prefillBlock of [4, 64]) {
            const r = await model.complete(null, { promptIds: prompt, maxTokens: 12, ignoreEos: true, prefillBlock });
            assert.deepEqual(r.generatedIds, ids.slice(prompt.length), `${backend}, prefill block ${prefillBlock}`);
          }
        } finally {
          model.dispose();
        }
      }
    } finally {
      cleanup();
    }
  });
}

test('compression with sliding layers: the press cuts only the full-attention layers; sliding layers hold their window; a model whose layers all slide refuses a press', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const W = 5;
    const model = await loadModel(withConfig('qwen2-F32', dir, { use_sliding_window: true, sliding_window: W, max_window_layers: 1 }), { backend: 'wasm', weights: 'f32' });
    const prefillBlock = 4;
    const budget = 12;
    const buffer = 4;
    let steps = 0;
    try {
      const expected = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'expected.json'), 'utf8')) as Expected;
      const r = await model.complete(null, {
        promptIds: expected.prompt_ids,
        maxTokens: 30,
        ignoreEos: true,
        prefillBlock,
        compression: { press: 'r-kv', budget, buffer },
        onTrace: (e) => {
          steps++;
          // Layer 0 is pressed: at most budget + buffer slots per head.
          for (const head of e.positions[0]!) assert.ok(head.length <= budget + buffer, `step ${e.step}: layer 0 holds ${head.length}`);
          // Layers 1 and 2 slide: consecutive positions ending at the newest, at least the window's W - 1
          // before the next token, at most W - 1 plus one step's tokens.
          for (const l of [1, 2]) {
            for (const head of e.positions[l]!) {
              assert.equal(head.at(-1), e.processed - 1);
              head.forEach((p, i) => i > 0 && assert.equal(p, head[i - 1]! + 1));
              assert.ok(head.length >= Math.min(e.processed, W - 1) && head.length <= W - 1 + prefillBlock, `step ${e.step}: layer ${l} holds ${head.length}`);
            }
          }
        },
      });
      assert.equal(r.generatedIds.length, 30);
      assert.equal(steps, 30);
      assert.ok((r.compressions ?? 0) > 0);
    } finally {
      model.dispose();
    }
  } finally {
    cleanup();
  }
  const { dir: dir2, cleanup: cleanup2 } = tempDir();
  try {
    const model = await loadModel(withConfig('mistral-F16', dir2, { sliding_window: 6 }), { backend: 'reference' });
    try {
      await assert.rejects(model.complete(null, { promptIds: [1, 2, 3], maxTokens: 2, compression: { press: 'snapkv', budget: 4 } }), (e: unknown) =>
        e instanceof Error && /option "compression.press": every layer of this model attends through a sliding window of 6 tokens/.test(e.message));
    } finally {
      model.dispose();
    }
  } finally {
    cleanup2();
  }
});

test('memory accounting per layer kind: a growing sequence reserves full layers by its tokens and sliding layers by their cap', () => {
  const cfg = JSON.parse(readFileSync(tinyModel('qwen2-F32', 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = parseHfConfig({ ...cfg, use_sliding_window: true, sliding_window: 5, max_window_layers: 1 });
  const seq = new Sequence(config, [1, 2, 3], { prefillBlock: 4 });
  // Slot bytes: K and V of 16 floats = 128 per (layer, KV head); 2 KV heads. Layer 0 holds `slots`,
  // layers 1 and 2 at most W - 1 + 4 = 8.
  assert.equal(seq.kvBytesAt(100), (100 + 8 + 8) * 2 * 128);
  assert.equal(seq.kvBytesAt(3), (3 + 3 + 3) * 2 * 128);
  assert.equal(seq.slotsWithin((100 + 16) * 256), 100);
  assert.equal(seq.slotsWithin((100 + 16) * 256 - 1), 99);
  assert.equal(seq.slotsWithin(1e12), config.maxPositions);
  // The cache's own limit under a grant agrees.
  seq.cache.setSlotLimit(100);
  assert.equal(seq.cache.limitBytes(), seq.kvBytesAt(100));
  seq.release();
});
