// The torch.save reader and TriAttention's statistics files. The .pt fixtures were written by CPython's
// own pickle and zipfile (fixtures/make-torch-fixtures.py, stand-ins carrying torch's module paths), so
// they carry the opcodes torch.save emits; their values follow a formula recomputed here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, readTorchFile, TorchTensor } from '../../src/formats/torch-pickle.js';
import { readTriAttentionStats, writeTriAttentionStats } from '../../src/formats/triattention.js';
import { repoRoot, tempDir } from '../helpers.js';

const fixture = (name: string) => join(repoRoot, 'test', 'formats', 'fixtures', name);
const stat = (kind: number, l: number, a: number, f: number) => Math.fround(kind * 1000 + l * 100 + a * 10 + f + 0.25);
const L = 2;
const H = 4;
const F = 3;

test('readTorchFile: dicts, lists, strings, ints and float tensors of a torch.save archive (stored and deflated)', () => {
  for (const name of ['triattention-tiny.pt', 'triattention-tiny-deflated.pt']) {
    const payload = readTorchFile(fixture(name)) as Map<string, Map<string, unknown>>;
    const meta = payload.get('metadata')!;
    assert.equal(meta.get('rope_style'), 'half');
    assert.equal(meta.get('head_dim'), 2 * F);
    assert.equal(meta.get('model_name'), 'tiny/fixture');
    assert.equal((meta.get('sampled_heads') as number[][]).length, L * H);
    assert.deepEqual((meta.get('sampled_heads') as number[][])[0], [0, 1]); // the file's order, not layer-major
    const stats = payload.get('stats')! as Map<string, Map<string, TorchTensor>>;
    for (let l = 0; l < L; l++) {
      for (let a = 0; a < H; a++) {
        const e = stats.get(`layer0${l}_head0${a}`)!;
        ['q_mean_real', 'q_mean_imag', 'q_abs_mean'].forEach((k, kind) => {
          const t = e.get(k)!;
          assert.ok(t instanceof TorchTensor);
          assert.deepEqual(t.shape, [F]);
          // (1,2) real is a strided view into a shared storage; (0,1) real is float16 (exact for these values)
          assert.deepEqual(Array.from(t.data), [0, 1, 2].map((f) => stat(kind, l, a, f)), `${name} ${l} ${a} ${k}`);
        });
      }
    }
  }
});

test('readTorchFile refuses what it must not run or cannot trust: foreign globals, corrupt data, non-zips', () => {
  assert.throws(() => readTorchFile(fixture('torch-evil.pt')), /refuses global os\.system/);
  const { dir, cleanup } = tempDir();
  try {
    // Flip one byte of a stored storage (right after its local header's name): its CRC no longer matches.
    const bytes = Buffer.from(readFileSync(fixture('triattention-tiny.pt')));
    const at = bytes.indexOf(Buffer.from('tiny/data/0'));
    const bad = join(dir, 'bad.pt');
    const copy = Buffer.from(bytes);
    copy[at + 'tiny/data/0'.length + 1]! ^= 0xff;
    writeFileSync(bad, copy);
    assert.throws(() => readTorchFile(bad), /bad\.pt: not a readable zip archive \(tiny\/data\/0 fails its CRC check\)/);
    const text = join(dir, 'text.pt');
    writeFileSync(text, 'not a zip at all');
    assert.throws(() => readTorchFile(text), /text\.pt: not a readable zip archive/);
    writeFileSync(join(dir, 'cut.pt'), bytes.subarray(0, bytes.length - 30));
    assert.throws(() => readTorchFile(join(dir, 'cut.pt')), /cut\.pt/);
  } finally {
    cleanup();
  }
  // CRC-32 of the standard check string.
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('TriAttention statistics: a published .pt reads keyed by (layer, head); kvsieve layout round trip; shape checks', () => {
  const s = readTriAttentionStats(fixture('triattention-tiny.pt'), { numLayers: L, headDim: 2 * F, numQHeads: H });
  assert.equal(s.numLayers, L);
  assert.equal(s.numQHeads, H);
  assert.equal(s.bands, F);
  for (let l = 0; l < L; l++)
    for (let a = 0; a < H; a++)
      for (let f = 0; f < F; f++) {
        const i = (l * H + a) * F + f;
        assert.deepEqual([s.qMeanRe[i], s.qMeanIm[i], s.qAbsMean[i]], [stat(0, l, a, f), stat(1, l, a, f), stat(2, l, a, f)]);
      }
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'stats.safetensors');
    writeTriAttentionStats(out, s, { model: 'tiny', source: 'fixture' });
    const back = readTriAttentionStats(out, { numLayers: L, headDim: 2 * F });
    assert.deepEqual(back, s);
    // The model must match: layers, head dim, query heads.
    assert.throws(() => readTriAttentionStats(out, { numLayers: 3, headDim: 6 }), /cover 2 layers, the model has 3/);
    assert.throws(() => readTriAttentionStats(fixture('triattention-tiny.pt'), { numLayers: 2, headDim: 8 }), /head_dim 6, the model's is 8/);
    assert.throws(() => readTriAttentionStats(out, { numLayers: 2, headDim: 6, numQHeads: 8 }), /cover 4 query heads per layer, the model has 8/);
    // A .pt under another name is recognised by its bytes.
    copyFileSync(fixture('triattention-tiny.pt'), join(dir, 'stats.bin'));
    assert.deepEqual(readTriAttentionStats(join(dir, 'stats.bin'), {}), s);
    assert.throws(() => readTriAttentionStats(join(dir, 'missing.pt'), {}), /missing\.pt: cannot read TriAttention statistics/);
  } finally {
    cleanup();
  }
});
