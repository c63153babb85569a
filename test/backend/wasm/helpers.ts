// Helpers for the wasm kernel tests: building the module, seeded random data, and plain-TS
// references written independently of the kernels (float64 unless a test needs float32 steps).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../helpers.js';
import { createKernels, type CreateKernelsOptions } from '../../../src/backend/wasm/node.js';
import type { Kernels } from '../../../src/backend/wasm/kernels.js';

let built = false;

/** Builds dist/wasm/kernels.wasm when missing or older than asm/ (the script checks). */
export function ensureWasm(): void {
  if (built) return;
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-wasm.mjs')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-wasm failed:\n${r.stdout}\n${r.stderr}`);
  built = true;
}

/** Kernels for the tests: jobs are split over the threads however small (minParallelWork 0). */
export async function kernels(o: CreateKernelsOptions = {}): Promise<Kernels> {
  ensureWasm();
  return createKernels({ threads: 1, minParallelWork: 0, ...o });
}

import { rng } from '../../helpers.js';

export { rng };

/** n values uniform in [-scale, scale), as float32. */
export function randArray(r: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** Unit roundoff of float32. */
export const U32 = 2 ** -24;

/** Round half to even, as wasm's f32.nearest. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The kernels' input quantisation for q8_0/q4_0 dot products, one 32-block: d = amax/127 (f32),
 * id = 1/d, q = round-half-even(x * id) in float32 steps.
 */
export function quantBlockRef(x: Float32Array, off: number): { d: number; q: Int32Array } {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[off + j]!));
  const d = Math.fround(amax / 127);
  const id = d !== 0 ? Math.fround(1 / d) : 0;
  const q = new Int32Array(32);
  for (let j = 0; j < 32; j++) q[j] = roundHalfEven(Math.fround(x[off + j]! * id));
  return { d, q };
}

/** Bits of a float32 array, for bit-for-bit comparisons. */
export function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

/** Asserts |got[i] - want[i]| <= tol[i] for all i, naming the first offender. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number> | number, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    const t = typeof tol === 'number' ? tol : tol[i]!;
    const g = got[i]!;
    const w = want[i]!;
    if (!(Math.abs(g - w) <= t)) {
      throw new Error(`${what}: element ${i} is ${g}, expected ${w} within ${t} (diff ${Math.abs(g - w)})`);
    }
  }
}
