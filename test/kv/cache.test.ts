import { test } from 'node:test';
import assert from 'node:assert/strict';
import { layerLength, longestHead, SlotCache, type KvCache } from '../../src/kv/cache.js';
import type { KvDtype } from '../../src/core/kv-rows.js';

const d = 4;
/** Row t of head h holds the values 1000 h + 10 t + i, so any misplaced row shows. */
function rows(T: number, H: number, base: number): Float32Array {
  const x = new Float32Array(T * H * d);
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let i = 0; i < d; i++) x[(t * H + h) * d + i] = 1000 * h + 10 * (base + t) + i;
  return x;
}
const append = (c: KvCache, l: number, T: number, base: number) => {
  const k = rows(T, c.numKvHeads, base);
  return c.append(l, { k, v: k, offset: 0, count: T, positions: Array.from({ length: T }, (_, i) => base + i) });
};
const keyRow = (c: KvCache, l: number, h: number, slot: number) => Array.from(c.keysF32(l, h).subarray(slot * d, slot * d + d));

test('append and evict move whole rows with their positions, per head; the store is reused after an eviction', () => {
  const H = 2;
  const c = new SlotCache({ numLayers: 1, numKvHeads: H, headDim: d, maxSlotsPerHead: 12, initialSlotsPerHead: 12 });
  const views = append(c, 0, 10, 0);
  assert.deepEqual(views.map((v) => v.length), [10, 10]);
  const allocated = c.bytes().allocated;
  c.evict(0, [[0, 3, 9], [1, 2, 4, 5, 6, 8, 9]]);
  assert.deepEqual(Array.from(c.positions(0, 0)), [0, 3, 9]);
  assert.deepEqual(Array.from(c.positions(0, 1)), [1, 2, 4, 5, 6, 8, 9]);
  assert.deepEqual(keyRow(c, 0, 0, 1), [30, 31, 32, 33]);
  assert.deepEqual(keyRow(c, 0, 1, 6), [1090, 1091, 1092, 1093]);
  assert.equal(c.bytes().allocated, allocated, 'the store is reused, not reallocated');
  assert.equal(c.bytes().live, 10 * d * 2 * 4);
  // Uneven heads (3 + 7 live slots) share the 14 free slots of the 24-slot store: both take new rows.
  append(c, 0, 2, 10);
  assert.deepEqual(keyRow(c, 0, 0, 4), [110, 111, 112, 113]);
  assert.deepEqual(keyRow(c, 0, 1, 8), [1110, 1111, 1112, 1113]);
  assert.deepEqual(keyRow(c, 0, 0, 0), [0, 1, 2, 3], 'the neighbouring region was not touched');
  assert.deepEqual(keyRow(c, 0, 1, 0), [1010, 1011, 1012, 1013]);
  assert.equal(c.bytes().allocated, allocated);
  assert.deepEqual([layerLength(c, 0), longestHead(c)], [14, 9]);
  assert.throws(() => c.evict(0, [[2, 1], [0]]), /ascend/);
  assert.throws(() => c.evict(0, [[0, 9], [0]]), /ascend within 0\.\.4/);
  assert.throws(() => append(c, 0, 6, 12), /needs 26 slots but this sequence may hold at most 24/);
});

test('growth keeps every row; live, allocated and peak bytes are counted', () => {
  const c = new SlotCache({ numLayers: 2, numKvHeads: 1, headDim: d, maxSlotsPerHead: 1000, initialSlotsPerHead: 4 });
  for (let t = 0; t < 50; t++) for (let l = 0; l < 2; l++) append(c, l, 1, t);
  for (let t = 0; t < 50; t++) assert.equal(keyRow(c, 1, 0, t)[0], 10 * t);
  const b = c.bytes();
  assert.equal(b.live, 2 * 50 * d * 2 * 4);
  assert.ok(b.allocated >= b.live);
  assert.equal(b.peakLive, b.live);
  c.evict(0, [Int32Array.from({ length: 10 }, (_, i) => 40 + i)]);
  assert.equal(c.bytes().live, 60 * d * 2 * 4);
  assert.equal(c.bytes().peakLive, b.live, 'the peak stays');
  c.release();
  assert.deepEqual([c.bytes().live, c.bytes().allocated], [0, 0]);
});

test('f16 and int8 rows read back within their rounding, scales kept through an eviction', () => {
  for (const kvDtype of ['f16', 'int8'] as KvDtype[]) {
    const c = new SlotCache({ numLayers: 1, numKvHeads: 2, headDim: d, maxSlotsPerHead: 8, kvDtype });
    append(c, 0, 6, 0);
    c.evict(0, [[1, 5], [0, 2, 4]]);
    const tol = kvDtype === 'f16' ? 0.5 : 8; // |x| < 1100: half's spacing is 1, int8's scale is amax / 127
    const want = [[10, 50], [1000, 1020, 1040]];
    for (let h = 0; h < 2; h++) {
      const k = c.keysF32(0, h);
      want[h]!.forEach((base, slot) => {
        for (let i = 0; i < d; i++) assert.ok(Math.abs(k[slot * d + i]! - (base + i)) <= tol, `${kvDtype} head ${h} slot ${slot}: ${k[slot * d + i]} vs ${base + i}`);
      });
    }
  }
});
