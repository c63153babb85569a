import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel } from '../../src/api.js';
import { f32ToF16, f16ToF32 } from '../../src/core/half.js';
import { loadRow, slotBytes, storeRow } from '../../src/core/kv-rows.js';
import { stories260K } from '../helpers.js';

test('f16 and int8 rows: f16 is the rounded half; int8 is within half a step of its per-slot scale', () => {
  const d = 12;
  const src = Float32Array.from({ length: d }, (_, i) => Math.sin(i * 1.7) * (i + 1) * 0.37);
  src[3] = 1e6; // saturates in f16
  const half = new Uint16Array(d);
  storeRow('f16', src, 0, half, null, 0, d);
  const back = new Float32Array(d);
  loadRow('f16', half, null, 0, d, back);
  for (let i = 0; i < d; i++) assert.equal(back[i], i === 3 ? 65504 : f16ToF32(f32ToF16(src[i]!)));

  src[3] = -4.2;
  const q = new Int8Array(2 * d);
  const scales = new Float32Array(2);
  storeRow('int8', src, 0, q, scales, 1, d);
  const amax = Math.max(...Array.from(src, Math.abs));
  assert.equal(scales[1], Math.fround(amax / 127));
  loadRow('int8', q, scales, 1, d, back);
  for (let i = 0; i < d; i++) assert.ok(Math.abs(back[i]! - src[i]!) <= scales[1]! / 2 + 1e-7, `value ${i}`);
  assert.equal(Math.max(...Array.from(q.subarray(d), Math.abs)), 127);
  assert.deepEqual([slotBytes('f32', 64), slotBytes('f16', 64), slotBytes('int8', 64)], [512, 256, 136]);
});

test('generation with f16 and int8 caches: both backends agree, memory shrinks as stored, compression multiplies', async () => {
  const ref = await loadModel(stories260K('stories260K.bin'), { backend: 'reference' });
  const fast = await loadModel(stories260K('stories260K.bin'), { weights: 'f32' });
  try {
    const full = await ref.complete('Once upon a time', { maxTokens: 120, ignoreEos: true });
    for (const kvDtype of ['f16', 'int8'] as const) {
      const a = await ref.complete('Once upon a time', { maxTokens: 120, ignoreEos: true, kvDtype });
      const b = await fast.complete('Once upon a time', { maxTokens: 120, ignoreEos: true, kvDtype });
      // The same stored rows, read by two attention kernels: same greedy tokens (agreement, not identity, for safety).
      let same = 0;
      for (let i = 0; i < 120; i++) same += a.generatedIds[i] === b.generatedIds[i] ? 1 : 0;
      assert.ok(same >= 110, `${kvDtype}: reference and wasm agree on ${same}/120`);
      let vsFull = 0;
      for (let i = 0; i < 120; i++) vsFull += a.generatedIds[i] === full.generatedIds[i] ? 1 : 0;
      assert.ok(vsFull >= 60, `${kvDtype}: ${vsFull}/120 tokens as with the f32 cache`);
      assert.equal(a.peakKvBytes, (124 * 5 * 4 * slotBytes(kvDtype, 8)));
    }
    // A 32 + 16 budget in int8 against the full f32 cache of the same run.
    const small = await fast.complete('Once upon a time', { maxTokens: 400, ignoreEos: true, kvDtype: 'int8', compression: { press: 'r-kv', budget: 32, buffer: 16 } });
    const big = await fast.complete('Once upon a time', { maxTokens: 400, ignoreEos: true });
    assert.ok(small.peakKvBytes <= 48 * 5 * 4 * slotBytes('int8', 8));
    assert.ok(small.peakKvBytes / big.peakKvBytes < 0.05, `ratio ${small.peakKvBytes / big.peakKvBytes}`);
    assert.throws(() => fast.generate('x', { kvDtype: 'int4' as never }), /kvDtype must be one of f32, f16, int8/);
  } finally {
    ref.dispose();
    fast.dispose();
  }
});
