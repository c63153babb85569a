/**
 * Micro-benchmark of the K-quant products against q8_0 (not a test): one thread, the matrices of an
 * R1-Distill-Qwen-1.5B layer ([8960, 1536] gate/up, [1536, 8960] down, [1536, 1536] o) as Q4_K, Q5_K, Q6_K
 * and q8_0 of the same values, cycled over a working set well past the caches; for 1, 4 and 16 tokens.
 * Figures are the best of repeated calls' CPU time (process.cpuUsage: one thread, so CPU time is the
 * work done; other processes on a shared machine move it much less than wall time), alternating the
 * types within each round. Prints ns per weight row-block-of-256 and the speed relative to q8_0.
 *
 *   node --import tsx bench/kquant-kernels.ts [--rounds 3] [--wasm path.wasm]
 */
import { createKernels } from '../src/backend/wasm/node.js';
import type { WeightType } from '../src/backend/wasm/abi.js';
import { op, type Matrix } from '../src/backend/wasm/ops.js';
import { quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from '../src/quant/k-quants.js';
import { optionMap } from './args.js';

const args = optionMap(process.argv.slice(2));
const rounds = Number(args.get('rounds') ?? 3);
const wasmPath = args.get('wasm');
const only = args.get('only');
const k = await createKernels({ threads: 1, initialBytes: 64 << 20, ...(wasmPath ? { wasmPath } : {}) });
const SHAPES: [number, number][] = [
  [8960, 1536],
  [1536, 8960],
];
const TYPES: WeightType[] = ['q8_0', 'q4_k', 'q5_k', 'q6_k'];
const TOKENS = (args.get('tokens') ?? '1,4,16').split(',').map(Number);
/** Weight bytes cycled through per call: past any L3. */
const WORKING_SET = 96 << 20;

function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return a;
}

function makeMatrix(type: WeightType, rows: number, cols: number, values: Float32Array): Matrix {
  if (type === 'q4_k') return k.matrixFromBytes(type, rows, cols, quantizeQ4_K(values));
  if (type === 'q5_k') return k.matrixFromBytes(type, rows, cols, quantizeQ5_K(values));
  if (type === 'q6_k') return k.matrixFromBytes(type, rows, cols, quantizeQ6_K(values));
  return k.matrixFromF32(type, rows, cols, values);
}

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Case {
  label: string;
  type: WeightType;
  run: () => void;
  macs: number;
  best: number;
}
const cases: Case[] = [];
for (const [rows, cols] of SHAPES) {
  const values = rand(rows * cols, rows + cols);
  for (const type of TYPES) {
    const one = makeMatrix(type, rows, cols, values);
    const copies = Math.max(1, Math.ceil(WORKING_SET / one.bytes));
    const mats = [one];
    for (let i = 1; i < copies; i++) {
      const m = k.matrix(type, rows, cols);
      k.bytes(m).set(k.bytes(one));
      mats.push(m);
    }
    for (const nTok of TOKENS) {
      const label = `${type} [${rows}, ${cols}] x ${nTok}`;
      if (only && !label.includes(only)) continue;
      const x = k.vecFrom(rand(nTok * cols, 7));
      const y = k.vec(nTok * rows);
      const tasks = mats.map((w) => op.matvec(w, x, y, { nTok }));
      let i = 0;
      cases.push({ label, type, macs: rows * cols * nTok, best: Infinity, run: () => k.run(tasks[i++ % tasks.length]!) });
    }
  }
}
for (let r = 0; r < rounds; r++) {
  for (const c of cases) {
    c.run();
    const reps = Math.max(2, Math.round(2e8 / c.macs));
    for (let j = 0; j < 3; j++) {
      const t0 = cpu();
      for (let i = 0; i < reps; i++) c.run();
      c.best = Math.min(c.best, (cpu() - t0) / reps);
    }
  }
}
const base = new Map(cases.filter((c) => c.type === 'q8_0').map((c) => [c.label.replace('q8_0 ', ''), c.best]));
for (const c of cases) {
  const b = base.get(c.label.replace(/^\S+ /, ''));
  console.log(`${c.label.padEnd(28)} ${(c.best * 1e3).toFixed(3).padStart(8)} ms/call  ${(c.macs / c.best / 1e9).toFixed(2).padStart(6)} GMAC/s  ${b ? `${(b / c.best).toFixed(2)}x q8_0` : ''}`);
}
await k.dispose();
