// The worker pool: results identical to single-threaded with 1 and 2 workers, a barrier that
// holds under many back-to-back dispatches, per-job input caching, failures, clean shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureWasm, kernels, rng, randArray, bits } from './helpers.js';
import { repoRoot, tempDir } from '../../helpers.js';
import type { Kernels } from '../../../src/backend/wasm/kernels.js';
import { op, sub, type Matrix, type Vec } from '../../../src/backend/wasm/ops.js';
import { InternalError } from '../../../src/core/errors.js';
import { WorkerPool } from '../../../src/backend/wasm/pool.js';
import { createKernelSet, loadKernelModule, spawnNodeWorker } from '../../../src/backend/wasm/node.js';

/**
 * A layer-like sequence of fused jobs touching every kernel; returns the bits of every output.
 * Shapes are chosen so every thread gets rows of every task.
 */
function scenario(k: Kernels): Uint32Array[] {
  const r = rng(42);
  const dim = 96;
  const ffn = 200;
  const nHeads = 6;
  const nKv = 2;
  const d = 16;
  const x = k.vecFrom(randArray(r, dim, 2));
  const mat = (type: Parameters<Kernels['matrix']>[0], rows: number, cols: number): Matrix =>
    k.matrixFromF32(type, rows, cols, randArray(r, rows * cols));
  const Wq = mat('q8_0', nHeads * d, dim);
  const Wk = mat('q8_0', nKv * d, dim);
  const Wv = mat('f16', nKv * d, dim);
  const W4 = mat('q4_0', 150, dim);
  const Wb = mat('bf16', 130, dim);
  const Wg = mat('q8_0', ffn, dim);
  const Wu = mat('q8_0', ffn, dim);
  const Wd = mat('f32', dim, ffn);
  const bq = k.vecFrom(randArray(r, nHeads * d));
  const q = k.vec(nHeads * d);
  const kk = k.vec(nKv * d);
  const vv = k.vec(nKv * d);
  const y4 = k.vec(150);
  const X5 = k.vecFrom(randArray(r, 5 * dim));
  const Y5 = k.vec(5 * 130);
  const H3 = k.vec(3 * ffn);
  const X3 = k.vecFrom(randArray(r, 3 * dim));
  const ids = k.ints(3);
  k.i32(ids).set([7, 0, 149]);
  const emb = k.vec(3 * dim);
  const normIn = k.vecFrom(randArray(r, 7 * 33, 3));
  const normOut = k.vec(7 * 33);
  const sm = k.vecFrom(randArray(r, 5 * 77, 10));
  const g = k.vecFrom(randArray(r, 1000, 8));
  const u = k.vecFrom(randArray(r, 1000));
  const gu = k.vec(1000);
  const a = k.vecFrom(randArray(r, 1001));
  const ab = k.vec(1001);
  const ex = k.vec(999);
  k.run(
    op.matvec(Wq, x, q, { bias: bq }),
    op.matvec(Wk, x, kk),
    op.matvec(Wv, x, vv),
    op.matvec(W4, x, y4),
    op.matvec(Wb, X5, Y5, { nTok: 5 }),
    op.gateUpSilu(Wg, Wu, X3, H3, { nTok: 3 }),
    op.embed(W4, ids, emb),
    op.rmsnorm(normIn, k.vecFrom(randArray(r, 33)), normOut, 33, 1e-5, { rows: 7 }),
    op.softmax(sm, 77, { rows: 5 }),
    op.siluGate(g, u, gu, 1000),
    op.add(ab, a, g, 999),
    op.exp(sub(a, 0, 999), ex, 999),
  );
  // RoPE + cache append (two layers, int8 with probSums and f16 with a 5-token segment).
  const half = d / 2;
  const cos = k.vecFrom(randArray(r, 5 * half));
  const sin = k.vecFrom(randArray(r, 5 * half));
  k.run(op.rope(q, cos, sin, { nHeads, headDim: d }), op.rope(kk, cos, sin, { nHeads: nKv, headDim: d }));
  const kv1 = k.kvLayer({ type: 'int8', nKvHeads: nKv, headDim: d, capacity: 40, probSums: true });
  const kv2 = k.kvLayer({ type: 'f16', nKvHeads: nKv, headDim: d, capacity: 40 });
  const past = k.vecFrom(randArray(r, 30 * nKv * d));
  const past2 = k.vecFrom(randArray(r, 30 * nKv * d));
  kv1.setLength(0, 30);
  kv1.setLength(1, 24);
  kv2.setLengthAll(30);
  k.run(op.kvStore(kv1, past, past2, { nTok: 24 }), op.kvStore(kv2, past2, past, { nTok: 30 }));
  kv1.setLength(0, 31);
  kv1.setLength(1, 25);
  k.run(op.kvStore(kv1, kk, vv));
  const att1 = k.vec(nHeads * d);
  const probs = k.vec(nHeads * 31);
  const q5 = k.vecFrom(randArray(r, 5 * nHeads * d));
  const att2 = k.vec(5 * nHeads * d);
  k.run(
    op.attention(kv1, q, att1, { nHeads, probs, probsStride: 31 }),
    op.attention(kv2, q5, att2, { nHeads, nq: 5, qChunk: 2 }),
  );
  // o-projection style residual accumulate, then the down projection of the MLP.
  const res = k.vecFrom(randArray(r, dim));
  k.run(op.matvec(Wd, sub(H3, 0, ffn), res, { accumulate: true }));
  // A decode batch: few-token products of every weight type, and the step's attention in one task
  // (a 5-token segment and two one-token ones, one tracking probSums).
  const X11 = k.vecFrom(randArray(r, 11 * ffn));
  const Yq8 = k.vec(8 * nHeads * d);
  const Yq4 = k.vec(11 * 150);
  const Yf16 = k.vec(7 * nKv * d);
  const Yf32 = k.vec(6 * dim);
  k.run(
    op.matvec(Wq, X11, Yq8, { nTok: 8, xStride: ffn, bias: bq }),
    op.matvec(W4, X11, Yq4, { nTok: 11, xStride: ffn }),
    op.matvec(Wv, X11, Yf16, { nTok: 7, xStride: ffn }),
    op.matvec(Wd, X11, Yf32, { nTok: 6 }),
  );
  const kv3 = k.kvLayer({ type: 'f16', nKvHeads: nKv, headDim: d, capacity: 40, probSums: true });
  const kv4 = k.kvLayer({ type: 'f16', nKvHeads: nKv, headDim: d, capacity: 40 });
  kv3.setLength(0, 17);
  kv3.setLength(1, 3);
  kv4.setLengthAll(29);
  k.run(op.kvStore(kv3, past, past2, { nTok: 3 }), op.kvStore(kv4, past2, past, { nTok: 29 }));
  const q7 = k.vecFrom(randArray(r, 7 * nHeads * d));
  const att3 = k.vec(7 * nHeads * d);
  const w = nHeads * d;
  k.run(op.attentions(k.segmentTable(3), [
    { kv: kv2, q: sub(q7, 0, 5 * w), out: sub(att3, 0, 5 * w), nq: 5 },
    { kv: kv3, q: sub(q7, 5 * w, w), out: sub(att3, 5 * w, w), nq: 1 },
    { kv: kv4, q: sub(q7, 6 * w, w), out: sub(att3, 6 * w, w), nq: 1 },
  ], { nHeads, qChunk: 2 }));
  const out = [q, kk, vv, y4, Y5, H3, emb, normOut, sm, gu, ab, ex, att1, probs, att2, res, Yq8, Yq4, Yf16, Yf32, att3].map((v: Vec) => bits(k.read(v)));
  for (let h = 0; h < nKv; h++) out.push(new Uint32Array(kv3.probSums(h)!.slice().buffer));
  for (let h = 0; h < nKv; h++) {
    out.push(new Uint32Array(kv1.keys(h).slice().buffer), new Uint32Array(kv1.keyScales(h)!.slice().buffer));
    out.push(new Uint32Array(kv1.probSums(h)!.slice().buffer));
  }
  return out;
}

test('1 and 2 workers give results identical to single-threaded, for every kernel', async () => {
  const results: Uint32Array[][] = [];
  for (const threads of [1, 2, 3]) {
    const k = await kernels({ threads });
    try {
      assert.equal(k.threads, threads);
      results.push(scenario(k));
    } finally {
      await k.dispose();
    }
  }
  const names = ['q', 'k', 'v', 'q4', 'bf16 matmat', 'gateUp', 'embed', 'rmsnorm', 'softmax', 'siluGate', 'add', 'exp', 'attn int8', 'probs', 'attn f16', 'residual',
    'q8_0 8 tokens', 'q4_0 11 tokens', 'f16 7 tokens', 'f32 6 tokens', 'attentions', 'attentions probSums 0', 'attentions probSums 1'];
  for (const t of [1, 2]) {
    results[t]!.forEach((o, i) => assert.deepEqual(o, results[0]![i], `threads=${t + 1}: ${names[i] ?? `kv ${i}`}`));
  }
  // And the outputs are not trivially equal (e.g. all zero).
  assert.ok(results[0]![0]!.some((v) => v !== 0) && results[0]![14]!.some((v) => v !== 0));
});

test('one pool over three memories (createKernelSet): every memory\'s jobs, in turn, give the single-threaded results', async () => {
  const alone = await kernels({ threads: 1 });
  let want: Uint32Array[];
  try {
    want = scenario(alone);
  } finally {
    await alone.dispose();
  }
  ensureWasm();
  const set = await createKernelSet(3, { threads: 3, minParallelWork: 0, maxBytes: 64 << 20 });
  try {
    assert.equal(set.length, 3);
    assert.ok(set.every((k) => k.threads === 3 && k.maxBytes === 64 << 20));
    assert.ok(set[0]!.memory !== set[1]!.memory && set[1]!.memory !== set[2]!.memory);
    const got = [2, 0, 1].map((i) => scenario(set[i]!));
    got.forEach((r, j) => r.forEach((o, i) => assert.deepEqual(o, want[i], `memory ${[2, 0, 1][j]}, output ${i}`)));
    assert.ok(set[0]!.poolStats()!.dispatches > 0);
  } finally {
    await Promise.all(set.map((k) => k.dispose()));
  }
});

test('the barrier holds over 600 dependent dispatches (each reads what other threads wrote)', async () => {
  const k = await kernels({ threads: 3 });
  try {
    // b = P a + 1 and a = P b + 1 alternately, P a permutation: every output row reads an input
    // row written by another thread in the previous dispatch.
    const n = 96;
    const perm = Array.from({ length: n }, (_, i) => (i * 37 + 11) % n);
    const P = new Float32Array(n * n);
    perm.forEach((j, i) => (P[i * n + j] = 1));
    const W = k.matrixFromF32('f32', n, n, P);
    const one = k.vecFrom(new Float32Array(n).fill(1));
    const a = k.vecFrom(Float32Array.from({ length: n }, (_, i) => i));
    const b = k.vec(n);
    let ref = Array.from({ length: n }, (_, i) => i);
    for (let it = 0; it < 600; it++) {
      const [src, dst] = it % 2 === 0 ? [a, b] : [b, a];
      k.run(op.matvec(W, src, dst, { bias: one }));
      ref = perm.map((j) => ref[j]! + 1);
    }
    assert.deepEqual(Array.from(k.read(a)), ref);
  } finally {
    await k.dispose();
  }
});

test('quantised inputs are cached per job only: same x reused, other x requantised, new contents seen', async () => {
  const k = await kernels({ threads: 2 });
  try {
    const r = rng(5);
    const W = k.matrixFromF32('q8_0', 64, 96, randArray(r, 64 * 96));
    const x1 = k.vecFrom(randArray(r, 96));
    const x2 = k.vecFrom(randArray(r, 96));
    const ys = [k.vec(64), k.vec(64), k.vec(64)];
    k.run(op.matvec(W, x1, ys[0]!), op.matvec(W, x2, ys[1]!), op.matvec(W, x1, ys[2]!));
    const alone = (x: Vec): Uint32Array => {
      const y = k.vec(64);
      k.runLocal(op.matvec(W, x, y));
      return bits(k.read(y));
    };
    assert.deepEqual(bits(k.read(ys[0]!)), alone(x1));
    assert.deepEqual(bits(k.read(ys[1]!)), alone(x2));
    assert.deepEqual(bits(k.read(ys[2]!)), alone(x1));
    assert.notDeepEqual(bits(k.read(ys[0]!)), bits(k.read(ys[1]!)));
    // Same pointer, new contents, next job: must not reuse the previous quantisation.
    k.write(x1, randArray(r, 96));
    k.run(op.matvec(W, x1, ys[0]!));
    assert.deepEqual(bits(k.read(ys[0]!)), alone(x1));
    // Eight tokens of one x against q8_0 (one-token layout per token) and q4_0 (octets) in one job:
    // each task quantises into the layout its weights take.
    const W4 = k.matrixFromF32('q4_0', 64, 96, randArray(r, 64 * 96));
    const x8 = k.vecFrom(randArray(r, 8 * 96));
    const y8 = [k.vec(8 * 64), k.vec(8 * 64), k.vec(8 * 64)];
    k.run(op.matvec(W, x8, y8[0]!, { nTok: 8 }), op.matvec(W4, x8, y8[1]!, { nTok: 8 }), op.matvec(W, x8, y8[2]!, { nTok: 8 }));
    for (const [i, M] of [[0, W], [1, W4], [2, W]] as const) {
      const y = k.vec(8 * 64);
      k.runLocal(op.matvec(M, x8, y, { nTok: 8 }));
      assert.deepEqual(bits(k.read(y8[i]!)), bits(k.read(y)), `8 tokens, task ${i}`);
    }
  } finally {
    await k.dispose();
  }
});

test('a trap in a worker or on the main thread surfaces as an InternalError; the pool stays usable', async () => {
  // Threads claim ranges of rows as they come free, so which thread meets a bad row is a race. A
  // pool whose calling thread takes no share (runShare does nothing) sends every row to the worker.
  const k = await kernels({ threads: 1 });
  const lazy = await WorkerPool.start({ spawn: spawnNodeWorker, module: await loadKernelModule(), memory: k.memory, threads: 2, runShare: () => {} });
  k.setDispatcher(lazy);
  try {
    const W = k.matrixFromF32('f32', 64, 32, new Float32Array(64 * 32).fill(1));
    const x = k.vecFrom(new Float32Array(32).fill(1));
    const y = k.vec(64);
    // Rows 0..39 inside memory, 40.. beyond it.
    const tail: Matrix = { ...W, ptr: k.memoryBytes - 40 * W.rowBytes };
    assert.throws(() => k.run(op.matvec(tail, x, y)), (e: unknown) => e instanceof InternalError && /failed in worker 1/.test(e.message));
    k.run(op.matvec(W, x, y));
    assert.ok(k.read(y).every((v) => v === 32));
  } finally {
    await k.dispose();
  }
  // Both threads taking shares: every row is bad, so the calling thread traps on its first range.
  const k2 = await kernels({ threads: 2 });
  try {
    const W = k2.matrixFromF32('f32', 64, 32, new Float32Array(64 * 32).fill(1));
    const x = k2.vecFrom(new Float32Array(32).fill(1));
    const y = k2.vec(64);
    const wild: Matrix = { ...W, ptr: k2.memoryBytes - 16 };
    assert.throws(() => k2.run(op.matvec(wild, x, y)), (e: unknown) => e instanceof InternalError && /wasm kernel failed/.test(e.message));
    k2.run(op.matvec(W, x, y));
    assert.ok(k2.read(y).every((v) => v === 32));
    await k2.dispose();
    assert.throws(() => k2.run(op.matvec(W, x, y)), /used after dispose/);
  } finally {
    await k2.dispose();
  }
});

test('the process exits after dispose(), and also when dispose() is forgotten', () => {
  const { dir, cleanup } = tempDir();
  try {
    const node = pathToFileURL(join(repoRoot, 'src', 'backend', 'wasm', 'node.ts')).href;
    const ops = pathToFileURL(join(repoRoot, 'src', 'backend', 'wasm', 'ops.ts')).href;
    for (const dispose of [true, false]) {
      const script = join(dir, `child-${dispose}.mts`);
      writeFileSync(script, [
        `import { createKernels } from ${JSON.stringify(node)};`,
        `import { op } from ${JSON.stringify(ops)};`,
        `const k = await createKernels({ threads: 3 });`,
        `const W = k.matrixFromF32('f32', 8, 8, new Float32Array(64).fill(1));`,
        `const y = k.vec(8);`,
        `k.run(op.matvec(W, k.vecFrom(new Float32Array(8).fill(2)), y));`,
        `console.log('sum', k.read(y).reduce((s, v) => s + v, 0));`,
        dispose ? `await k.dispose();` : ``,
      ].join('\n'));
      const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000, cwd: repoRoot });
      assert.equal(r.signal, null, `child (dispose=${dispose}) was killed: did not exit on its own`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /sum 128/);
    }
  } finally {
    cleanup();
  }
});
