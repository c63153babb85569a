// The wasm backend's allocator: freed blocks are merged with free neighbours and reused (split) by later
// requests, arrays come back zero-filled, a double free is refused, and growing stores (the KV cache's
// pattern: allocate bigger, copy, free the old) keep the kernels' memory bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WasmBackend } from '../../../src/backend/wasm/backend.js';
import { kernels } from './helpers.js';

test('wasm allocator: reuse, split, merge, zero fill, double free', async () => {
  const be = new WasmBackend(await kernels());
  try {
    const a = be.allocF32(100); // 448 bytes -> 448 (7 lines)
    const b = be.allocF32(16); // 64
    const c = be.allocF32(100);
    assert.ok(a.byteOffset % 64 === 0 && b.byteOffset % 64 === 0 && c.byteOffset % 64 === 0);
    a.fill(1);
    b.fill(2);
    be.freeF32(a);
    assert.equal(be.freeBytes, 448);
    // a smaller request reuses the front of a's block, zero-filled
    const d = be.allocF32(16);
    assert.equal(d.byteOffset, a.byteOffset);
    assert.ok(d.every((x) => x === 0));
    assert.equal(be.freeBytes, 384);
    // freeing b merges it with the rest of a's block (they touch), and then d's
    be.freeF32(b);
    be.freeF32(d);
    assert.equal(be.freeBytes, 512);
    const top = be.kernels.allocated;
    const e = be.allocF32(128); // exactly the merged block
    assert.equal(e.byteOffset, a.byteOffset);
    assert.equal(be.freeBytes, 0);
    assert.equal(be.kernels.allocated, top, 'served from the free list, not the top of memory');
    assert.ok(e.every((x) => x === 0));
    assert.throws(() => {
      be.freeF32(c);
      be.freeF32(c);
    }, /already free/);
  } finally {
    be.dispose();
  }
});

test('wasm allocator: 24 layer stores growing by half in lockstep stay within 2.5x of their final size', async () => {
  const be = new WasmBackend(await kernels());
  try {
    const start = be.kernels.allocated;
    let stores = Array.from({ length: 24 }, () => be.allocF32(64 * 128));
    let size = 64 * 128;
    for (let step = 0; step < 12; step++) {
      const next = Math.ceil(size * 1.5);
      stores = stores.map((old) => {
        const grown = be.allocF32(next);
        grown.set(old);
        be.freeF32(old);
        return grown;
      });
      size = next;
    }
    const used = be.kernels.allocated - start;
    const final = 24 * size * 4;
    assert.ok(used <= 2.5 * final, `memory used ${used} bytes for ${final} live`);
  } finally {
    be.dispose();
  }
});
