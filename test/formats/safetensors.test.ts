import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../../src/core/errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/core/half.js';
import {
  openSafetensors,
  writeSafetensors,
  writeShardedSafetensors,
  type TensorToWrite,
} from '../../src/formats/safetensors.js';
import type { DType, TensorSource } from '../../src/formats/tensors.js';
import { parseHfConfig } from '../../src/formats/hf-config.js';
import { rng, tempDir, tinyModel, TINY_MODELS } from '../helpers.js';

type Json = Record<string, any>;

/** Parses a (small) safetensors file by hand, independently of the reader under test. */
function rawParse(path: string): { header: Json; data: Buffer } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

/** Decodes one tensor from raw bytes with DataView and the IEEE formulas written out here. */
function rawDecode(data: Buffer, entry: Json): number[] {
  const [begin, end] = entry.data_offsets as [number, number];
  const dv = new DataView(data.buffer, data.byteOffset + begin, end - begin);
  const out: number[] = [];
  if (entry.dtype === 'F32') for (let i = 0; i < dv.byteLength; i += 4) out.push(dv.getFloat32(i, true));
  else if (entry.dtype === 'BF16') {
    const tmp = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < dv.byteLength; i += 2) {
      tmp.setUint32(0, dv.getUint16(i, true) * 65536);
      out.push(tmp.getFloat32(0));
    }
  } else {
    for (let i = 0; i < dv.byteLength; i += 2) {
      const h = dv.getUint16(i, true);
      const s = h >= 0x8000 ? -1 : 1;
      const e = Math.floor(h / 1024) % 32;
      const m = h % 1024;
      out.push(e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15));
    }
  }
  return out;
}

/** Writes a safetensors-like file by hand: length prefix (overridable), header text, data bytes. */
function rawWrite(path: string, header: string | object, data: number | Uint8Array = 0, lengthField?: bigint): void {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(h.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  writeFileSync(path, Buffer.concat([len, h, body]));
}

function bitsEqual(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), what);
}

function readAll(src: TensorSource): Map<string, Float32Array> {
  return new Map(src.list().map((t) => [t.name, src.readF32(t.name)]));
}

/** Asserts `fn` throws a KvsieveError whose one-line message contains every string in `parts`. */
function throwsNaming(fn: () => unknown, parts: string[], pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof KvsieveError, `expected KvsieveError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), `message is one line: ${e.message}`);
    for (const p of parts) assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} names ${p}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}


// ------------------------------------------------------------------------------------------------
// The shared fixtures

test('tiny fixtures: names, shapes and dtypes agree with config.json', () => {
  for (const m of TINY_MODELS) {
    const c = parseHfConfig(JSON.parse(readFileSync(tinyModel(m, 'config.json'), 'utf8')));
    const dtype = m.split('-')[1] as DType;
    const want = new Map<string, number[]>();
    const H = c.hiddenSize;
    const qd = c.numHeads * c.headDim;
    const kvd = c.numKvHeads * c.headDim;
    want.set('model.embed_tokens.weight', [c.vocabSize, H]);
    want.set('model.norm.weight', [H]);
    if (!c.tieWordEmbeddings) want.set('lm_head.weight', [c.vocabSize, H]);
    for (let l = 0; l < c.numLayers; l++) {
      const p = `model.layers.${l}`;
      want.set(`${p}.input_layernorm.weight`, [H]);
      want.set(`${p}.post_attention_layernorm.weight`, [H]);
      want.set(`${p}.self_attn.q_proj.weight`, [qd, H]);
      want.set(`${p}.self_attn.k_proj.weight`, [kvd, H]);
      want.set(`${p}.self_attn.v_proj.weight`, [kvd, H]);
      want.set(`${p}.self_attn.o_proj.weight`, [H, qd]);
      want.set(`${p}.mlp.gate_proj.weight`, [c.intermediateSize, H]);
      want.set(`${p}.mlp.up_proj.weight`, [c.intermediateSize, H]);
      want.set(`${p}.mlp.down_proj.weight`, [H, c.intermediateSize]);
      if (c.qkvBias) {
        want.set(`${p}.self_attn.q_proj.bias`, [qd]);
        want.set(`${p}.self_attn.k_proj.bias`, [kvd]);
        want.set(`${p}.self_attn.v_proj.bias`, [kvd]);
      }
      if (c.qkNorm) {
        want.set(`${p}.self_attn.q_norm.weight`, [c.headDim]);
        want.set(`${p}.self_attn.k_norm.weight`, [c.headDim]);
      }
    }
    const src = openSafetensors(tinyModel(m));
    try {
      const list = src.list();
      assert.deepEqual(new Set(list.map((t) => t.name)), new Set(want.keys()), m);
      for (const t of list) {
        assert.deepEqual(t.shape, want.get(t.name), `${m} ${t.name}`);
        assert.equal(t.dtype, dtype, `${m} ${t.name}`);
        assert.equal(t.file, tinyModel(m, 'model.safetensors'));
        assert.equal(src.readF32(t.name).length, t.shape.reduce((a, b) => a * b, 1));
      }
      // Norm weights are 1 + 0.1 N(0, 1): a misread dtype would not average near 1.
      const norm = src.readF32('model.layers.0.input_layernorm.weight');
      const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
      assert.ok(mean > 0.95 && mean < 1.05, `${m} norm mean ${mean}`);
    } finally {
      src.close();
    }
  }
});

test('tiny fixtures: every value equals an independent decode of the raw bytes', () => {
  for (const m of TINY_MODELS) {
    const { header, data } = rawParse(tinyModel(m, 'model.safetensors'));
    const src = openSafetensors(tinyModel(m, 'model.safetensors'));
    try {
      for (const [name, entry] of Object.entries(header)) {
        if (name === '__metadata__') continue;
        const got = src.readF32(name);
        const want = rawDecode(data, entry);
        assert.equal(got.length, want.length);
        for (let i = 0; i < want.length; i++) {
          if (!Object.is(got[i], want[i])) assert.fail(`${m} ${name}[${i}]: ${got[i]} != ${want[i]}`);
        }
      }
    } finally {
      src.close();
    }
  }
});

test('mistral-F16 fixture: subnormal halves decode to mantissa * 2^-24', () => {
  const { header, data } = rawParse(tinyModel('mistral-F16', 'model.safetensors'));
  const src = openSafetensors(tinyModel('mistral-F16'));
  let subnormals = 0;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const got = src.readF32(name);
    const begin = entry.data_offsets[0] as number;
    for (let i = 0; i < got.length; i++) {
      const h = data.readUInt16LE(begin + 2 * i);
      if ((h & 0x7c00) === 0 && (h & 0x3ff) !== 0) {
        subnormals++;
        assert.equal(got[i], (h & 0x8000 ? -1 : 1) * (h & 0x3ff) * 2 ** -24, `${name}[${i}] 0x${h.toString(16)}`);
      }
    }
  }
  src.close();
  assert.ok(subnormals > 0, 'the fixture holds subnormal halves');
});

test('qwen3-BF16 fixture: the first embedding values match their bit patterns', () => {
  const { header, data } = rawParse(tinyModel('qwen3-BF16', 'model.safetensors'));
  const begin = header['model.embed_tokens.weight'].data_offsets[0] as number;
  const src = openSafetensors(tinyModel('qwen3-BF16'));
  const emb = src.readF32('model.embed_tokens.weight');
  src.close();
  for (let i = 0; i < 16; i++) {
    const bits = data.readUInt16LE(begin + 2 * i);
    // bf16 is the top half of a float32: the value's own float32 bits must be bits << 16 exactly.
    const back = Buffer.alloc(4);
    back.writeFloatLE(emb[i]!);
    assert.equal(back.readUInt32LE(0), bits * 65536, `element ${i}`);
  }
});

test('chunked reading (tiny chunk and read sizes) gives the same bits as the defaults', () => {
  for (const m of TINY_MODELS) {
    const plain = openSafetensors(tinyModel(m));
    const chunked = openSafetensors(tinyModel(m), { chunkBytes: 6, maxReadBytes: 5 });
    for (const t of plain.list()) bitsEqual(chunked.readF32(t.name), plain.readF32(t.name), `${m} ${t.name}`);
    plain.close();
    chunked.close();
  }
});

test('path forms, has/info/list, missing tensor, read after close', () => {
  const dir = tinyModel('qwen2-F32');
  const byFile = openSafetensors(join(dir, 'model.safetensors'));
  const byDir = openSafetensors(dir);
  assert.deepEqual(byDir.list(), byFile.list());
  assert.ok(byDir.has('model.norm.weight'));
  assert.ok(!byDir.has('lm_head.weight'));
  assert.deepEqual(byDir.info('model.layers.2.self_attn.k_proj.bias'), {
    name: 'model.layers.2.self_attn.k_proj.bias',
    dtype: 'F32',
    shape: [32],
    file: join(dir, 'model.safetensors'),
  });
  // list() hands out copies: mutating them does not change the source
  byDir.list()[0]!.shape.push(99);
  assert.deepEqual(byDir.info(byDir.list()[0]!.name).shape, byFile.list()[0]!.shape);
  throwsNaming(() => byDir.info('lm_head.weight'), ['lm_head.weight', join(dir, 'model.safetensors')]);
  throwsNaming(() => byDir.readF32('nope'), ['"nope"']);
  byDir.close();
  byDir.close(); // idempotent
  throwsNaming(() => byDir.readF32('model.norm.weight'), ['model.norm.weight', 'close']);
  assert.equal(byFile.readF32('model.norm.weight').length, 64);
  byFile.close();
  throwsNaming(() => openSafetensors(join(dir, 'nothing-here.safetensors')), ['nothing-here.safetensors']);
  const t = tempDir();
  try {
    throwsNaming(() => openSafetensors(t.dir), [t.dir, 'model.safetensors']);
  } finally {
    t.cleanup();
  }
});

test('tensors past 4 GiB in a (sparse) file are read with 64-bit positions', (t) => {
  const d = tempDir();
  try {
    const far = 5 * 2 ** 30 + 6; // past 2^32, not aligned
    const across = 2 ** 32 - 4; // spans byte 2^32 of the data section
    // The data section is covered back to back (the reader refuses gaps): two large fillers in between.
    const header = {
      near: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      fill1: { dtype: 'BF16', shape: [(across - 4) / 2], data_offsets: [4, across] },
      across: { dtype: 'BF16', shape: [4], data_offsets: [across, across + 8] },
      fill2: { dtype: 'F16', shape: [(far - across - 8) / 2], data_offsets: [across + 8, far] },
      far: { dtype: 'F16', shape: [3], data_offsets: [far, far + 6] },
    };
    const p = join(d.dir, 'big.safetensors');
    rawWrite(p, header, 4);
    const n = Number(readFileSync(p).readBigUInt64LE(0));
    truncateSync(p, 8 + n + far + 6); // a hole: no disk space used where the file system allows it
    if (statSync(p).blocks * 512 > 64 * 2 ** 20) {
      t.skip('file system without sparse files');
      return;
    }
    const fd = openSync(p, 'r+');
    const put = (pos: number, halves: number[]) => {
      const b = Buffer.alloc(2 * halves.length);
      halves.forEach((h, i) => b.writeUInt16LE(h, 2 * i));
      writeSync(fd, b, 0, b.length, 8 + n + pos);
    };
    put(across, [0x3f80, 0xc000, 0x3e80, 0x7f80]); // 1, -2, 0.25, inf
    put(far, [0x3c00, 0x0001, 0xfbff]); // 1, 2^-24, -65504
    closeSync(fd);
    for (const opts of [{}, { chunkBytes: 2, maxReadBytes: 3 }]) {
      const src = openSafetensors(p, opts);
      assert.deepEqual([...src.readF32('across')], [1, -2, 0.25, Infinity]);
      assert.deepEqual([...src.readF32('far')], [1, 2 ** -24, -65504]);
      assert.deepEqual([...src.readF32('near')], [0]);
      src.close();
    }
  } finally {
    d.cleanup();
  }
});

// ------------------------------------------------------------------------------------------------
// Writing

test('write-then-read round trips for F32, F16 and BF16 (exact for representable values)', () => {
  const t = tempDir();
  try {
    const rand = rng(7);
    const f32 = new Float32Array(35).map(() => (rand() - 0.5) * 1e3);
    f32.set([0, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38], 0);
    // Every value below is exactly representable in its dtype.
    const f16 = new Float32Array(40).map(() => {
      let h: number;
      do h = Math.floor(rand() * 65536);
      while ((h & 0x7c00) === 0x7c00);
      return f16ToF32(h);
    });
    f16.set([2 ** -24, -(1023 * 2 ** -24), 65504, -65504, Infinity, -0], 0);
    const bf16 = new Float32Array(24).map(() => {
      let h: number;
      do h = Math.floor(rand() * 65536);
      while ((h & 0x7f80) === 0x7f80);
      return bf16ToF32(h);
    });
    bf16.set([2 ** -133, -Infinity, 1], 0);
    const tensors: TensorToWrite[] = [
      { name: 'a.f32', dtype: 'F32', shape: [5, 7], data: f32 },
      { name: 'b.f16', dtype: 'F16', shape: [2, 4, 5], data: f16 },
      { name: 'c.bf16', dtype: 'BF16', shape: [24], data: () => bf16 },
      { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([42.5]) },
      { name: 'empty', dtype: 'F16', shape: [0, 3], data: new Float32Array(0) },
      { name: 'odd', dtype: 'BF16', shape: [3], data: new Float32Array([1, 2, 3]) },
    ];
    const path = join(t.dir, 'x.safetensors');
    writeSafetensors(path, tensors, { format: 'pt', note: 'hi' });
    assert.ok(!existsSync(`${path}.tmp`));
    const src = openSafetensors(path);
    assert.deepEqual(
      src.list().map((i) => [i.name, i.dtype, i.shape]),
      tensors.map((i) => [i.name, i.dtype, i.shape]),
    );
    bitsEqual(src.readF32('a.f32'), f32, 'f32');
    bitsEqual(src.readF32('b.f16'), f16, 'f16');
    bitsEqual(src.readF32('c.bf16'), bf16, 'bf16');
    assert.deepEqual([...src.readF32('scalar')], [42.5]);
    assert.equal(src.readF32('empty').length, 0);
    assert.deepEqual([...src.readF32('odd')], [1, 2, 3]);
    src.close();

    // The layout on disk, checked by hand: header padded with spaces to 8, data packed in order.
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    assert.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text);
    assert.deepEqual(header.__metadata__, { format: 'pt', note: 'hi' });
    const sizes = [35 * 4, 40 * 2, 24 * 2, 4, 0, 6];
    let off = 0;
    tensors.forEach((tt, i) => {
      assert.deepEqual(header[tt.name].data_offsets, [off, off + sizes[i]!]);
      off += sizes[i]!;
    });
    assert.equal(buf.length, 8 + n + off);
    // The f16 bytes are exactly f32ToF16 of the inputs.
    const b0 = 8 + n + 35 * 4;
    for (let i = 0; i < 40; i++) assert.equal(buf.readUInt16LE(b0 + 2 * i), f32ToF16(f16[i]!));
  } finally {
    t.cleanup();
  }
});

test('writing rounds unrepresentable values to nearest even', () => {
  const t = tempDir();
  try {
    const xs = new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 1e-8, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1]);
    const path = join(t.dir, 'r.safetensors');
    writeSafetensors(path, [
      { name: 'h', dtype: 'F16', shape: [7], data: xs },
      { name: 'b', dtype: 'BF16', shape: [7], data: xs },
    ]);
    const src = openSafetensors(path);
    const h = src.readF32('h');
    const b = src.readF32('b');
    src.close();
    assert.deepEqual([...h.subarray(0, 4)], [1, 1 + 2 ** -9, Infinity, 0]);
    assert.equal(h[6], 0.0999755859375); // nearest half to 0.1 (0x2e66)
    assert.deepEqual([...b.subarray(4, 6)], [1, 1 + 2 ** -6]);
    assert.equal(b[6], 0.10009765625); // nearest bfloat16 to 0.1 (0x3dcd)
    for (let i = 0; i < 7; i++) {
      assert.equal(h[i], f16ToF32(f32ToF16(xs[i]!)));
      assert.equal(b[i], bf16ToF32(f32ToBf16(xs[i]!)));
    }
  } finally {
    t.cleanup();
  }
});

test('a failed write leaves neither a partial file nor the .tmp, and keeps the old file', () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'm.safetensors');
    writeSafetensors(path, [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const before = readFileSync(path);
    const boom: TensorToWrite[] = [
      { name: 'a', dtype: 'F32', shape: [100], data: new Float32Array(100) },
      { name: 'b', dtype: 'F16', shape: [100], data: () => { throw new Error('generator failed'); } },
    ];
    throwsNaming(() => writeSafetensors(path, boom), [path, 'generator failed']);
    assert.ok(readFileSync(path).equals(before));
    assert.ok(!existsSync(`${path}.tmp`));
    const wrongLength: TensorToWrite[] = [{ name: 'w', dtype: 'BF16', shape: [4], data: () => new Float32Array(3) }];
    throwsNaming(() => writeSafetensors(join(t.dir, 'n.safetensors'), wrongLength), ['n.safetensors', '"w"']);
    assert.deepEqual(readdirSync(t.dir), ['m.safetensors']);
    throwsNaming(
      () => writeSafetensors(join(t.dir, 'd.safetensors'), [
        { name: 'z', dtype: 'F32', shape: [1], data: new Float32Array(1) },
        { name: 'z', dtype: 'F32', shape: [1], data: new Float32Array(1) },
      ]),
      ['d.safetensors', '"z"'],
    );
  } finally {
    t.cleanup();
  }
});

test('sharded write-then-read equals the single-file read; index and shard names as HF writes them', () => {
  const t = tempDir();
  try {
    const src = openSafetensors(tinyModel('llama3-F32'));
    const tensors: TensorToWrite[] = src.list().map((i, k) => ({
      name: i.name,
      dtype: (['F32', 'F16', 'BF16'] as const)[k % 3]!,
      shape: i.shape,
      data: src.readF32(i.name),
    }));
    src.close();
    const single = join(t.dir, 'single.safetensors');
    writeSafetensors(single, tensors);
    const dir = join(t.dir, 'sharded');
    const indexPath = writeShardedSafetensors(dir, tensors, 3);
    assert.equal(indexPath, join(dir, 'model.safetensors.index.json'));
    const names = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    assert.deepEqual(readdirSync(dir).sort(), [...names, 'model.safetensors.index.json']);
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    const bytes = tensors.reduce((a, x) => a + x.shape.reduce((p, d) => p * d, 1) * (x.dtype === 'F32' ? 4 : 2), 0);
    assert.equal(index.metadata.total_size, bytes);
    assert.deepEqual(Object.keys(index.weight_map), tensors.map((x) => x.name));
    // Every shard is used, by one contiguous run of tensors, in order.
    const shardOf = tensors.map((x) => names.indexOf(index.weight_map[x.name]));
    assert.deepEqual([...new Set(shardOf)], [0, 1, 2]);
    for (let i = 1; i < shardOf.length; i++) assert.ok(shardOf[i]! >= shardOf[i - 1]!);

    const one = readAll(openSafetensors(single));
    for (const path of [dir, indexPath]) {
      const sharded = openSafetensors(path);
      const all = readAll(sharded);
      assert.deepEqual([...all.keys()].sort(), [...one.keys()].sort());
      for (const [name, v] of one) bitsEqual(all.get(name)!, v, name);
      assert.equal(sharded.info(tensors[0]!.name).file, join(dir, names[0]!));
      assert.equal(sharded.info(tensors.at(-1)!.name).file, join(dir, names[2]!));
      sharded.close();
    }
    throwsNaming(() => writeShardedSafetensors(join(t.dir, 'bad'), tensors.slice(0, 2), 3), ['shardCount', '3']);
  } finally {
    t.cleanup();
  }
});

// ------------------------------------------------------------------------------------------------
// Bad input, one case each

function badFile(t: { dir: string }, name: string, header: string | object, data?: number | Uint8Array, len?: bigint): string {
  const path = join(t.dir, name);
  rawWrite(path, header, data, len);
  return path;
}

test('bad: file shorter than 8 bytes', () => {
  const t = tempDir();
  try {
    const p = join(t.dir, 'short.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
    throwsNaming(() => openSafetensors(p), [p], /truncated/);
  } finally {
    t.cleanup();
  }
});

test('bad: header length runs past the end of the file', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'past.safetensors', '{}', 0, 1000n);
    throwsNaming(() => openSafetensors(p), [p, '1000'], /end of the file/);
  } finally {
    t.cleanup();
  }
});

test('bad: absurdly large header length', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'huge.safetensors', '{}', 0, 2n ** 62n);
    throwsNaming(() => openSafetensors(p), [p, String(2n ** 62n)], /absurdly large/);
  } finally {
    t.cleanup();
  }
});

test('bad: header is not valid JSON', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'json.safetensors', '{"a": {"dtype": "F32",', 16);
    throwsNaming(() => openSafetensors(p), [p], /not valid JSON/);
  } finally {
    t.cleanup();
  }
});

test('bad: header is JSON but not an object', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'array.safetensors', '[1, 2, 3]');
    throwsNaming(() => openSafetensors(p), [p], /not a JSON object/);
  } finally {
    t.cleanup();
  }
});

test('bad: tensor entry missing dtype, shape or data_offsets', () => {
  const t = tempDir();
  try {
    const full = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
    for (const key of ['dtype', 'shape', 'data_offsets'] as const) {
      const entry: Json = { ...full };
      delete entry[key];
      const p = badFile(t, `no-${key}.safetensors`, { __metadata__: { format: 'pt' }, 'w.weight': entry }, 8);
      throwsNaming(() => openSafetensors(p), [p, '"w.weight"', key], /missing/);
    }
  } finally {
    t.cleanup();
  }
});

test('bad: unknown dtype names the file and the tensor', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'i8.safetensors', { ok: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, 'q.weight': { dtype: 'I8', shape: [4], data_offsets: [4, 8] } }, 8);
    throwsNaming(() => openSafetensors(p), [p, '"q.weight"', 'I8'], /unsupported dtype/);
  } finally {
    t.cleanup();
  }
});

test('bad: data_offsets length disagrees with dtype x shape', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'len.safetensors', { 'w.weight': { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 24] } }, 24);
    throwsNaming(() => openSafetensors(p), [p, '"w.weight"', '24', '12']);
    const q = badFile(t, 'order.safetensors', { 'v.weight': { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, 8);
    throwsNaming(() => openSafetensors(q), [q, '"v.weight"', 'data_offsets']);
  } finally {
    t.cleanup();
  }
});

test('bad: offsets past the end of the file (truncated file)', () => {
  const t = tempDir();
  try {
    const p = join(t.dir, 'cut.safetensors');
    writeSafetensors(p, [
      { name: 'a', dtype: 'F32', shape: [4], data: new Float32Array(4) },
      { name: 'b.weight', dtype: 'F16', shape: [8], data: new Float32Array(8) },
    ]);
    truncateSync(p, readFileSync(p).length - 2);
    throwsNaming(() => openSafetensors(p), [p, '"b.weight"'], /truncated/);
  } finally {
    t.cleanup();
  }
});

test('bad: overlapping tensors', () => {
  const t = tempDir();
  try {
    const p = badFile(t, 'overlap.safetensors', {
      first: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      second: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
    }, 24);
    throwsNaming(() => openSafetensors(p), [p, '"first"', '"second"'], /overlap/);
  } finally {
    t.cleanup();
  }
});

test('bad: shard index naming a missing shard, or a tensor absent from its shard', () => {
  const t = tempDir();
  try {
    const tensors: TensorToWrite[] = ['a', 'b', 'c'].map((name) => ({ name, dtype: 'F32', shape: [2], data: new Float32Array(2) }));
    const dir = join(t.dir, 'm');
    const index = writeShardedSafetensors(dir, tensors, 3);
    const json = JSON.parse(readFileSync(index, 'utf8'));
    json.weight_map.ghost = 'model-00001-of-00003.safetensors';
    writeFileSync(index, JSON.stringify(json));
    throwsNaming(() => openSafetensors(dir), [index, '"ghost"', 'model-00001-of-00003.safetensors']);
    delete json.weight_map.ghost;
    writeFileSync(index, JSON.stringify(json));
    unlinkSync(join(dir, 'model-00002-of-00003.safetensors'));
    throwsNaming(() => openSafetensors(index), [index, 'model-00002-of-00003.safetensors', '"b"'], /missing/);
  } finally {
    t.cleanup();
  }
});
