/**
 * Micro-benchmark of the wasm matvec kernels (not a test). Prints, for 1 and 2 threads:
 *   - memory read bandwidth (a SIMD sum over a buffer much larger than the caches), read as one
 *     stream and as four side by side; the matvec tiles read four rows from four quarters of
 *     their range at once, so the four-stream figure is the reference for the ratios,
 *   - f32 / q8_0 / q4_0 matvec on [4864, 896] and [896, 4864] weights (the Qwen2.5-0.5B MLP
 *     shapes) as GB/s of weights streamed, that as a fraction of the measured bandwidth, and the
 *     decode tokens/s it would give for a Qwen2.5-0.5B-shaped model (494M weights read per token,
 *     tied embedding included),
 *   - matmat (16 and 64 tokens, as in a prefill block) throughput in GMAC/s,
 *   - prefill attention (64 query tokens over 512 slots, 14 query heads on 2 KV heads of 64, f32
 *     cache) in GMAC/s (two MACs per query head and visible slot per dimension).
 * Each figure is the best of repeated passes, and all come from the same process, so ratios between
 * them are meaningful even on a busy machine. Usage: node --import tsx bench/kernels.ts [--quick]
 *
 * With --profile MODEL_DIR [--weights q8_0] [--threads 2] [--prompt 512] [--block 64] [--kv-dtype f32] [--decode 16] [--batch 1] it instead
 * loads the model, completes a prompt of ids 1000.. plus 16 (--decode) generated tokens twice, and prints the
 * second run's prefill/decode tokens/s and where the time went: the wall time of every backend
 * operation, prefill and decode apart, against the forward steps' total (the rest is JS overhead).
 * --batch N decodes N sequences together (`generateBatch`, prompts shifted by one id each); a step
 * counts as decode when every sequence in it brings one token, and the decode rate is their sum.
 *
 * With --compare A.wasm B.wasm [--rounds 5] [--only TEXT] it loads two builds of the kernels side by side (2
 * threads each) and times the decode-critical kernels on both, alternating A and B within every
 * round; it prints each kernel's median B/A speed ratio over the rounds (above 1: B is faster).
 * --only keeps the cases whose label contains TEXT (e.g. 'attention', 'q8_0').
 */
import { createKernels, kernelWasmPath, relaxedSimdAvailable } from '../src/backend/wasm/node.js';
import type { WeightType } from '../src/backend/wasm/abi.js';
import type { KvDtype } from '../src/core/kv-rows.js';
import type { Kernels } from '../src/backend/wasm/kernels.js';
import { op, type Matrix, type Task } from '../src/backend/wasm/ops.js';
import { loadModel, type WeightStorage } from '../src/api.js';
import type { MatmulArgs } from '../src/backend/backend.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 0.25 : 0.6;
/** Weights of a Qwen2.5-0.5B decode step: 24 layers (q, k, v, o, gate, up, down) + tied lm_head. */
const QWEN05_PARAMS = 24 * (896 * 896 * 2 + 128 * 896 * 2 + 4864 * 896 * 3) + 151936 * 896;
const BYTES_PER_PARAM: Record<WeightType, number> = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32, q4_0: 18 / 32, q4_k: 144 / 256, q5_k: 176 / 256, q6_k: 210 / 256, mxfp4: 17 / 32 };
/** Weight bytes cycled through per measurement: well past any L3. */
const WORKING_SET = quick ? 96 << 20 : 160 << 20;

/**
 * Seconds per call: the fastest of the calls made within the time budget (other processes on a
 * shared machine only ever slow a call down, so the minimum is the least disturbed figure).
 */
function timeIt(fn: () => void): number {
  fn(); // warm-up (also tiers the code up)
  let best = Infinity;
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < SECONDS * 1000 || n < 3) {
    const s = performance.now();
    fn();
    best = Math.min(best, performance.now() - s);
    n++;
  }
  return best / 1000;
}

function bandwidth(k: Kernels, local: boolean, streams: 1 | 4): number {
  const n = 60_000_000; // 240 MB of f32 (quarters not a power of two apart: no DRAM bank aliasing)
  const m = k.mark();
  const x = k.vec(n);
  k.f32(x).fill(1);
  const partials = k.vec(64);
  const task = op.sum(x, n, partials, streams);
  const sec = timeIt(() => (local ? k.runLocal(task) : k.run(task)));
  k.release(m);
  return (n * 4) / sec / 1e9;
}

interface Row {
  label: string;
  gbs: number;
  extra: string;
}

function matvecRate(k: Kernels, mats: Matrix[], local: boolean): number {
  const cols = mats[0]!.cols;
  const rows = mats[0]!.rows;
  const m = k.mark();
  const x = k.vec(cols);
  k.f32(x).set(Float32Array.from({ length: cols }, (_, i) => Math.sin(i)));
  const y = k.vec(rows);
  const tasks: Task[] = mats.map((w) => op.matvec(w, x, y));
  const bytes = mats.reduce((s, w) => s + w.bytes, 0);
  const sec = timeIt(() => {
    for (const t of tasks) {
      if (local) k.runLocal(t);
      else k.run(t);
    }
  });
  k.release(m);
  return bytes / sec / 1e9;
}

/** GMAC/s of nTok-token products over w (one matrix, or several cycled: weights streamed from memory as in a decode step). */
function matmatRate(k: Kernels, w: Matrix | Matrix[], nTok: number, local: boolean): number {
  const mats = Array.isArray(w) ? w : [w];
  const { rows, cols } = mats[0]!;
  const m = k.mark();
  const x = k.vec(nTok * cols);
  k.f32(x).set(Float32Array.from({ length: nTok * cols }, (_, i) => Math.sin(i)));
  const y = k.vec(nTok * rows);
  const tasks = mats.map((mat) => op.matvec(mat, x, y, { nTok }));
  const sec = timeIt(() => {
    for (const task of tasks) {
      if (local) k.runLocal(task);
      else k.run(task);
    }
  });
  k.release(m);
  return (rows * cols * nTok * mats.length) / sec / 1e9;
}

/**
 * Attention of a Qwen2.5-0.5B-shaped layer (14 query heads on 2 KV heads of 64): nq new tokens over len
 * slots (prefill: 64 over 512; decode: 1 over 1024), in GMAC/s.
 */
function attentionRate(k: Kernels, local: boolean, nq = 64, len = 512, type: KvDtype = 'f32', layers = 1): number {
  const [nHeads, nKv, d] = [14, 2, 64];
  const m = k.mark();
  const q = k.vecFrom(Float32Array.from({ length: nq * nHeads * d }, (_, i) => Math.sin(i * 0.13)));
  const out = k.vec(nq * nHeads * d);
  const tasks: Task[] = [];
  for (let l = 0; l < layers; l++) {
    const kv = k.kvLayer({ type, nKvHeads: nKv, headDim: d, capacity: len });
    for (let h = 0; h < nKv; h++) {
      if (type === 'f32') {
        (kv.keys(h) as Float32Array).forEach((_, i, a) => (a[i] = Math.sin(i * 0.3 + h + l)));
        (kv.values(h) as Float32Array).forEach((_, i, a) => (a[i] = Math.cos(i * 0.7 + h + l)));
      }
      kv.setLength(h, len);
    }
    tasks.push(op.attention(kv, q, out, { nHeads, nq }));
  }
  const sec = timeIt(() => {
    for (const task of tasks) {
      if (local) k.runLocal(task);
      else k.run(task);
    }
  });
  k.release(m);
  const visible = nq * (len - nq) + (nq * (nq + 1)) / 2;
  return (layers * visible * nHeads * 2 * d) / sec / 1e9;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** --profile: the wall time of each backend operation over one prompt completion. */
async function profile(dir: string): Promise<void> {
  const threads = Number(arg('--threads') ?? 2);
  const weights = (arg('--weights') ?? 'q8_0') as WeightStorage;
  const nPrompt = Number(arg('--prompt') ?? 512);
  const block = Number(arg('--block') ?? 64);
  const nDecode = Number(arg('--decode') ?? 16);
  const kvDtype = (arg('--kv-dtype') ?? 'f32') as KvDtype;
  const batch = Number(arg('--batch') ?? 1);
  const model = await loadModel(dir, { weights, threads });
  type Stage = { be: Record<string, unknown> };
  const llama = (model as unknown as {
    llama: { backend: Record<string, unknown>; embedStage: Stage; layerStages: Stage[]; headStage: Stage; forward: (s: { tokens: ArrayLike<number> }[]) => unknown };
  }).llama;
  const be = llama.backend;
  // a split model's operations run on its parts' backends (one memory each), not on the split one
  const stageBackends = new Set([llama.embedStage, ...llama.layerStages, llama.headStage].map((s) => s.be));
  const times = new Map<string, { n: number; ms: number }>();
  const add = (key: string, ms: number): void => {
    const e = times.get(key) ?? { n: 0, ms: 0 };
    e.n++;
    e.ms += ms;
    times.set(key, e);
  };
  // Operations count towards the phase of the forward step they run in (a step of one token: decode).
  let phase = 'prefill';
  for (const name of ['matmul', 'qkv', 'gateUp', 'embed', 'rmsnorm', 'rope', 'attention']) for (const be of stageBackends) {
    const f = (be[name] as (...a: unknown[]) => void).bind(be);
    be[name] = (...a: unknown[]) => {
      const t0 = performance.now();
      f(...a);
      const ms = performance.now() - t0;
      const w = name === 'matmul' ? ` [${(a[0] as MatmulArgs).w.rows}x${(a[0] as MatmulArgs).w.cols}]` : '';
      add(`${phase} ${name}${w}`, ms);
    };
  }
  const forward = llama.forward.bind(llama);
  llama.forward = (segs) => {
    phase = segs.every((s) => s.tokens.length === 1) ? 'decode ' : 'prefill';
    const t0 = performance.now();
    const r = forward(segs);
    add(`${phase} forward (all)`, performance.now() - t0);
    return r;
  };
  const prompts = Array.from({ length: batch }, (_, b) => Array.from({ length: nPrompt }, (_, i) => 1000 + b + i));
  const options = { maxTokens: nDecode, ignoreEos: true, prefillBlock: block, kvDtype };
  const run = async (): Promise<{ prefill: number; decode: number }> => {
    const results = batch === 1 ? [await model.complete(null, { ...options, promptIds: prompts[0]! })] : await model.generateBatch(prompts, options);
    return {
      prefill: results.reduce((s, r) => s + r.prefillTokensPerSecond, 0),
      decode: results.reduce((s, r) => s + r.decodeTokensPerSecond, 0),
    };
  };
  await run();
  times.clear();
  // a split model's parts share one worker pool: any part's kernels count its jobs
  const kernels = (be as { kernels?: Kernels }).kernels ?? ([...stageBackends][0] as { kernels?: Kernels }).kernels;
  const pool0 = kernels?.poolStats() ?? null;
  const result = await run();
  const pool1 = kernels?.poolStats() ?? null;
  console.log(`${dir} (${weights}, ${kvDtype} KV, ${threads} threads, ${kernelWasmPath()}): ${batch} x ${nPrompt}-token prompt in blocks of ${block}, ${nDecode} generated`);
  console.log(`prefill ${result.prefill.toFixed(1)} tok/s, decode ${result.decode.toFixed(1)} tok/s${batch > 1 ? ' (sums over the sequences)' : ''}\n`);
  for (const phase of ['prefill', 'decode ']) {
    const total = times.get(`${phase} forward (all)`)?.ms ?? 0;
    let ops = 0;
    for (const [key, e] of [...times.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
      if (!key.startsWith(phase) || key.endsWith('(all)')) continue;
      ops += e.ms;
      console.log(`${key.padEnd(36)} ${String(e.n).padStart(5)} calls ${e.ms.toFixed(1).padStart(9)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)}%`);
    }
    console.log(`${`${phase} other (JS, sampling)`.padEnd(48)} ${(total - ops).toFixed(1).padStart(9)} ms ${((100 * (total - ops)) / total).toFixed(1).padStart(5)}%`);
    console.log(`${`${phase} forward steps`.padEnd(48)} ${total.toFixed(1).padStart(9)} ms\n`);
  }
  if (pool0 && pool1) {
    console.log(`worker pool: ${pool1.dispatches - pool0.dispatches} jobs dispatched, workers slept ${pool1.sleeps - pool0.sleeps} times waiting for one (each costs a wake-up)`);
  }
  model.dispose();
}

async function main(): Promise<void> {
  const k = await createKernels({ threads: 2, initialBytes: 64 << 20 });
  try {
    console.log(`wasm kernels micro-benchmark (${quick ? 'quick' : 'full'}); best pass of each, 1T = main thread only, 2T = main + 1 worker\n`);
    const bw1: Record<number, number> = { 1: bandwidth(k, true, 1), 2: bandwidth(k, false, 1) };
    const bw: Record<number, number> = { 1: bandwidth(k, true, 4), 2: bandwidth(k, false, 4) };
    console.log('memory read bandwidth, SIMD sum of 240 MB:');
    console.log(`  one sequential stream per thread:   1 thread ${bw1[1]!.toFixed(2)} GB/s, 2 threads ${bw1[2]!.toFixed(2)} GB/s`);
    console.log(`  four streams per thread (reference): 1 thread ${bw[1]!.toFixed(2)} GB/s, 2 threads ${bw[2]!.toFixed(2)} GB/s\n`);

    const base = k.mark();
    const rows: Row[] = [];
    for (const type of ['f32', 'q8_0', 'q4_0'] as WeightType[]) {
      for (const [r, c] of [[4864, 896], [896, 4864]] as const) {
        const one = r * c * BYTES_PER_PARAM[type];
        const count = Math.max(2, Math.ceil(WORKING_SET / one));
        const data = Float32Array.from({ length: r * c }, (_, i) => Math.sin(i * 0.37) * 0.1);
        const mats: Matrix[] = [];
        for (let i = 0; i < count; i++) mats.push(k.matrixFromF32(type, r, c, data));
        for (const threads of [1, 2]) {
          const gbs = matvecRate(k, mats, threads === 1);
          const tok = (gbs * 1e9) / (QWEN05_PARAMS * BYTES_PER_PARAM[type]);
          rows.push({
            label: `${type.padEnd(5)} matvec [${r}x${c}] ${threads}T`,
            gbs,
            extra: `${(gbs / bw[threads]!).toFixed(2)} of bandwidth, ${tok.toFixed(1)} tok/s-equivalent (Qwen2.5-0.5B shape)`,
          });
        }
        for (const nTok of [16, 64]) {
          for (const threads of [1, 2]) {
            const g = matmatRate(k, mats[0]!, nTok, threads === 1);
            rows.push({ label: `${type.padEnd(5)} matmat ${nTok} tok [${r}x${c}] ${threads}T`, gbs: NaN, extra: `${g.toFixed(2)} GMAC/s` });
          }
        }
        k.release(base);
      }
    }
    for (const threads of [1, 2]) {
      rows.push({ label: `attention 64 q x 512 slots ${threads}T`, gbs: NaN, extra: `${attentionRate(k, threads === 1).toFixed(2)} GMAC/s` });
      for (const type of ['f32', 'f16', 'int8'] as const) {
        const rate = attentionRate(k, threads === 1, 1, 1024, type);
        // per decode step of the 24-layer model
        const ms = (24 * 1024 * 14 * 2 * 64) / (rate * 1e9) * 1e3;
        rows.push({ label: `attention 1 q x 1024 slots ${type} ${threads}T`, gbs: NaN, extra: `${rate.toFixed(2)} GMAC/s (${ms.toFixed(2)} ms per 24-layer step)` });
      }
    }
    for (const r of rows) {
      console.log(`${r.label.padEnd(34)} ${Number.isNaN(r.gbs) ? '' : `${r.gbs.toFixed(2).padStart(6)} GB/s  `}${r.extra}`);
    }
  } finally {
    await k.dispose();
  }
}

/** --compare: two kernel builds timed alternately on the same cases. */
async function compare(pathA: string, pathB: string): Promise<void> {
  relaxedSimdAvailable(); // turns relaxed SIMD on where the engine needs a flag for it
  const rounds = Number(arg('--rounds') ?? 5);
  const builds = [pathA, pathB];
  const ks = await Promise.all(builds.map((wasmPath) => createKernels({ threads: 2, initialBytes: 64 << 20, wasmPath })));
  try {
    // Per build: the same weights (f32 and q8_0 [4864, 896] MLP shape, enough copies to pass L3).
    const cases: { label: string; run: (k: Kernels) => number }[] = [];
    const weights = ks.map((k) => {
      const data = Float32Array.from({ length: 4864 * 896 }, (_, i) => Math.sin(i * 0.37) * 0.1);
      const count = (type: WeightType) => Math.max(2, Math.ceil(WORKING_SET / (4864 * 896 * BYTES_PER_PARAM[type])));
      const make = (type: WeightType) => Array.from({ length: count(type) }, () => k.matrixFromF32(type, 4864, 896, data));
      return { f32: make('f32'), q8_0: make('q8_0') };
    });
    const idx = (k: Kernels) => ks.indexOf(k);
    for (const type of ['f32', 'q8_0'] as const) {
      cases.push({ label: `${type} matvec [4864x896] (GB/s)`, run: (k) => matvecRate(k, weights[idx(k)]![type], false) });
      cases.push({ label: `${type} matmat 64 tok (GMAC/s)`, run: (k) => matmatRate(k, weights[idx(k)]![type][0]!, 64, false) });
      for (const n of [2, 4, 6, 8, 12]) {
        cases.push({ label: `${type} matmat ${n} tok, weights past L3 (GMAC/s)`, run: (k) => matmatRate(k, weights[idx(k)]![type], n, false) });
        cases.push({ label: `${type} matmat ${n} tok, weights past L3, 1T (GMAC/s)`, run: (k) => matmatRate(k, weights[idx(k)]![type], n, true) });
      }
    }
    cases.push({ label: 'attention 64 q x 512 (GMAC/s)', run: (k) => attentionRate(k, false) });
    for (const type of ['f32', 'f16', 'int8'] as const) {
      cases.push({ label: `attention 1 q x 1024 ${type} (GMAC/s)`, run: (k) => attentionRate(k, false, 1, 1024, type) });
      cases.push({ label: `attention 1 q x 1024 ${type} over 96 layers, past L3 (GMAC/s)`, run: (k) => attentionRate(k, false, 1, 1024, type, 96) });
    }
    console.log(`A = ${pathA}\nB = ${pathB}\n${rounds} rounds, A and B alternating, 2 threads each\n`);
    const only = arg('--only');
    for (const c of cases) {
      if (only && !c.label.includes(only)) continue;
      const a: number[] = [];
      const b: number[] = [];
      for (let r = 0; r < rounds; r++) {
        // Alternate which build goes first, so neither always follows the other's cache state.
        if (r % 2 === 0) { a.push(c.run(ks[0]!)); b.push(c.run(ks[1]!)); } else { b.push(c.run(ks[1]!)); a.push(c.run(ks[0]!)); }
      }
      const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const ratios = a.map((x, i) => b[i]! / x);
      console.log(`${c.label.padEnd(54)} A ${med(a).toFixed(2).padStart(7)}  B ${med(b).toFixed(2).padStart(7)}  B/A ${med(ratios).toFixed(3)} (min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)})`);
    }
  } finally {
    await Promise.all(ks.map((k) => k.dispose()));
  }
}

const profileDir = arg('--profile');
const compareAt = process.argv.indexOf('--compare');
if (profileDir) await profile(profileDir);
else if (compareAt >= 0) await compare(process.argv[compareAt + 1]!, process.argv[compareAt + 2]!);
else await main();
