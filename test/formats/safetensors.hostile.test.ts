import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/api.js';
import { KvsieveError } from '../../src/core/errors.js';
import { openGgufWeights, writeGguf, type GgufValue } from '../../src/formats/gguf.js';
import { configFromGguf, configMetadata } from '../../src/formats/gguf-config.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { openSafetensors, writeSafetensors, writeShardedSafetensors, type TensorToWrite } from '../../src/formats/safetensors.js';
import { lazyTensors, oneLineError, stories260K, storiesHfConfig, tempDir, tinyModel } from '../helpers.js';

// Bad input found by fuzzing (scripts/fuzz): each case here was a crash, an unclear error or a file that
// loaded wrongly before the fix it tests.

/** The bytes of a safetensors file split into header length, header text and data. */
function split(file: string): { n: number; header: string; data: Buffer } {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { n, header: b.subarray(8, 8 + n).toString('utf8'), data: b.subarray(8 + n) };
}

function join8(header: string | Buffer, data: Buffer, length?: number): Buffer {
  const h = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(length ?? h.length));
  return Buffer.concat([len, h, data]);
}

test('safetensors: a header length 1 to 7 bytes short (the cut in the padding) is refused, not read shifted', () => {
  const { dir, cleanup } = tempDir();
  try {
    // a header written with 7 bytes of padding (the name length chosen for it), and the real files
    const padded = join(dir, 'padded.safetensors');
    for (let i = 0; i < 8; i++) {
      writeSafetensors(padded, [{ name: `w${'x'.repeat(i)}`, dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) }]);
      if (split(padded).header.endsWith(' '.repeat(7))) break;
    }
    let longest = 0;
    for (const source of [padded, stories260K('hf', 'model.safetensors'), tinyModel('mistral-F16', 'model.safetensors')]) {
      const { n, header, data } = split(source);
      const padding = header.length - header.trimEnd().length;
      longest = Math.max(longest, padding);
      const file = join(dir, 'model.safetensors');
      for (let k = 1; k <= Math.min(7, padding); k++) {
        // the last k spaces of the header now count as data: every tensor would start k bytes early
        writeFileSync(file, join8(header, data, n - k));
        assert.throws(() => openSafetensors(file), oneLineError(new RegExp(`${k} data bytes after the last tensor belong to no tensor`)));
      }
      writeFileSync(file, join8(header, data, n));
      openSafetensors(file).close();
    }
    assert.equal(longest, 7);
  } finally {
    cleanup();
  }
});

test('safetensors: a gap between tensors and trailing bytes are refused', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'x.safetensors');
    const h = (b: number) => JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [b, b + 4] } });
    writeFileSync(file, join8(h(8), Buffer.alloc(12)));
    assert.throws(() => openSafetensors(file), oneLineError(/data bytes \[4, 8\) before tensor "b" belong to no tensor/));
    writeFileSync(file, join8(h(4), Buffer.alloc(9)));
    assert.throws(() => openSafetensors(file), oneLineError(/1 data bytes after the last tensor/));
    writeFileSync(file, join8(h(4), Buffer.alloc(8)));
    assert.deepEqual([...openSafetensors(file).readF32('b')], [0]);
  } finally {
    cleanup();
  }
});

test('safetensors and shard index: deeply nested or huge values give a short error, not a stack overflow', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'x.safetensors');
    const deep = '['.repeat(200_000) + ']'.repeat(200_000);
    writeFileSync(file, join8(`{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`, Buffer.alloc(4)));
    assert.throws(() => openSafetensors(file), oneLineError(/tensor "a": "shape" must be an array of non-negative integers, got \[\[\[… 1 item\]\]\]/));
    const ones = `[${new Array(100_000).fill(1).join(',')}]`;
    writeFileSync(file, join8(`{"a":{"dtype":"F32","shape":${ones},"data_offsets":[0,8]}}`, Buffer.alloc(8)));
    assert.throws(() => openSafetensors(file), oneLineError(/hold 8 bytes but F32 \[1, 1, 1, .*100000 items\] needs 4/));
    writeFileSync(file, join8(`{"a":{"dtype":${deep},"shape":[1],"data_offsets":[0,4]}}`, Buffer.alloc(4)));
    assert.throws(() => openSafetensors(file), oneLineError(/unsupported dtype \[\[\[/));

    const tensors: TensorToWrite[] = ['a', 'b'].map((name) => ({ name, dtype: 'F32', shape: [2], data: new Float32Array(2) }));
    const index = writeShardedSafetensors(join(dir, 'm'), tensors, 2);
    const json = JSON.parse(readFileSync(index, 'utf8'));
    writeFileSync(index, JSON.stringify(json).replace('"model-00002-of-00002.safetensors"', deep));
    assert.throws(() => openSafetensors(index), oneLineError(/tensor "b" maps to \[\[\[… 1 item\]\]\], not a file name/));
    writeFileSync(index, JSON.stringify({ ...json, weight_map: { ...json.weight_map, b: 'x'.repeat(100_000) } }));
    assert.throws(() => openSafetensors(index), oneLineError(/shard "x+"… \(100000 characters\) \(holding tensor "b"\) is missing/));
    writeFileSync(index, '{"weight_map":\n{"a":\n}}');
    assert.throws(() => openSafetensors(index), oneLineError(/not valid JSON \(Unexpected token '}'\)$/));
  } finally {
    cleanup();
  }
});

