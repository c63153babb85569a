import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SequenceCache } from '../../src/kv/cache.js';

const d = 4;
/** Row t of head h holds the values 1000 h + 10 t + i, so any misplaced row shows. */
function rows(T: number, H: number, base: number): Float32Array {
  const x = new Float32Array(T * H * d);
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < d; i++) x[(t * H + h) * d + i] = 1000 * h + 10 * (base + t) + i;
  return x;
}
const keyRow = (c: SequenceCache, l: number, h: number, slot: number) => Array.from(c.heads(l)[h]!.keys.subarray(slot * d, slot * d + d));

test('append, keep and repack move whole rows with their positions, per head', () => {
  const H = 2;
  const c = new SequenceCache({ numLayers: 1, numKvHeads: H, headDim: d, maxLayerSlots: H * 12, initialSlotsPerHead: 12 });
  c.reserve(10);
  const k = rows(10, H, 0);
  c.append(0, k, k, 0, 10, Array.from({ length: 10 }, (_, i) => i));
  const [h0, h1] = c.heads(0);
  h0!.keep([0, 3, 9]);
  h1!.keep([1, 2, 4, 5, 6, 8, 9]);
  assert.deepEqual(Array.from(h0!.positions.subarray(0, 3)), [0, 3, 9]);
  assert.deepEqual(keyRow(c, 0, 0, 1), [30, 31, 32, 33]);
  assert.deepEqual(keyRow(c, 0, 1, 6), [1090, 1091, 1092, 1093]);
  // Uneven heads: 3 + 7 live slots, each given 2 slots of headroom in the same 24-slot store.
  const before = c.allocatedBytes();
  c.repack(0, 2, H * 12);
  assert.equal(c.allocatedBytes(), before, 'the store is reused, not reallocated');
  assert.deepEqual([h0!.capacity, h1!.capacity, h1!.start], [5, 9, 5]);
  assert.deepEqual(keyRow(c, 0, 1, 6), [1090, 1091, 1092, 1093]);
  assert.deepEqual(Array.from(h1!.positions.subarray(0, 7)), [1, 2, 4, 5, 6, 8, 9]);
  c.reserve(2);
  const k2 = rows(2, H, 10);
  c.append(0, k2, k2, 0, 2, [10, 11]);
  assert.deepEqual(keyRow(c, 0, 0, 4), [110, 111, 112, 113]);
  assert.deepEqual(keyRow(c, 0, 1, 8), [1110, 1111, 1112, 1113]);
  assert.deepEqual(keyRow(c, 0, 0, 0), [0, 1, 2, 3], 'the neighbouring region was not touched');
  assert.throws(() => h0!.keep([2, 1]), /ascending/);
  assert.throws(() => c.reserve(30), /needs .* slots but this sequence may hold at most 24/);
});

test('growth keeps every row; live and allocated bytes are counted', () => {
  const c = new SequenceCache({ numLayers: 2, numKvHeads: 1, headDim: d, maxLayerSlots: 1000, initialSlotsPerHead: 4 });
  for (let t = 0; t < 50; t++) {
    c.reserve(1);
    const k = rows(1, 1, t);
    for (let l = 0; l < 2; l++) c.append(l, k, k, 0, 1, [t]);
  }
  for (let t = 0; t < 50; t++) assert.equal(keyRow(c, 1, 0, t)[0], 10 * t);
  assert.equal(c.liveBytes(), 2 * 50 * d * 2 * 4);
  assert.ok(c.allocatedBytes() >= c.liveBytes());
  assert.equal(c.peakLiveBytes, c.liveBytes());
});

test('the observation store returns the last w query rows, oldest first, per query head', () => {
  const c = new SequenceCache({ numLayers: 1, numKvHeads: 1, headDim: 2, maxLayerSlots: 100, observationWindow: 3, queryWidth: 4 });
  const q = (t: number) => Float32Array.from([t, t + 0.5, -t, -t - 0.5]); // head 0 then head 1
  const block = new Float32Array(5 * 4);
  for (let t = 0; t < 5; t++) block.set(q(t), t * 4);
  c.observe(0, block, 0, 5);
  c.observe(0, q(5), 0, 1);
  const { w, queries } = c.observations(0, 2);
  assert.equal(w, 3);
  assert.deepEqual(Array.from(queries[0]!), [3, 3.5, 4, 4.5, 5, 5.5]);
  assert.deepEqual(Array.from(queries[1]!), [-3, -3.5, -4, -4.5, -5, -5.5]);
});
