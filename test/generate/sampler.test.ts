import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, Sampler } from '../../src/generate/sampler.js';
import { Random } from '../../src/core/random.js';
import { StopStringFilter } from '../../src/generate/stop.js';

const logits = Float32Array.from([1.0, 3.0, 2.0, 0.5, 2.9]);

function histogram(s: Sampler, n: number): number[] {
  const h = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) h[s.sample(logits, 0, logits.length)]!++;
  return h;
}

test('greedy picks the argmax, lowest index on ties', () => {
  assert.equal(new Sampler().sample(logits, 0, 5), 1);
  assert.equal(argmax(Float32Array.from([2, 5, 5, 1])), 1);
});

test('argmax agrees with the one-pass definition (ties, NaN, infinities, -0, any length and offset)', () => {
  // The definition: the first index whose value beats every earlier one, starting from -Infinity.
  const reference = (x: Float32Array, offset: number, n: number) => {
    let best = 0;
    let bestValue = -Infinity;
    for (let i = 0; i < n; i++) {
      if (x[offset + i]! > bestValue) {
        bestValue = x[offset + i]!;
        best = i;
      }
    }
    return best;
  };
  const rnd = new Random(7);
  const pool = [NaN, -Infinity, Infinity, -0, 0, 1, 1, -1, 3.5, 3.5];
  for (let trial = 0; trial < 3000; trial++) {
    const len = 1 + Math.floor(rnd.next() * 23);
    const x = Float32Array.from({ length: len }, () => (rnd.next() < 0.6 ? pool[Math.floor(rnd.next() * pool.length)]! : rnd.next() * 8 - 4));
    const offset = Math.floor(rnd.next() * len);
    const n = Math.floor(rnd.next() * (len - offset + 1));
    assert.equal(argmax(x, offset, n), reference(x, offset, n), `[${Array.from(x)}] offset ${offset} n ${n}`);
  }
  assert.equal(argmax(Float32Array.from([NaN, NaN])), 0);
  assert.equal(argmax(Float32Array.from([-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 2])), 5);
  assert.equal(argmax(Float32Array.from([-0, 0, 0, 0])), 0);
});

test('the same seed gives the same draws; another seed differs', () => {
  const a = histogram(new Sampler({ temperature: 1, seed: 3 }), 200);
  const b = histogram(new Sampler({ temperature: 1, seed: 3 }), 200);
  const c = new Sampler({ temperature: 1, seed: 4 });
  const d = new Sampler({ temperature: 1, seed: 3 });
  assert.deepEqual(a, b);
  const seqC = Array.from({ length: 50 }, () => c.sample(logits, 0, 5));
  const seqD = Array.from({ length: 50 }, () => d.sample(logits, 0, 5));
  assert.notDeepEqual(seqC, seqD);
});

test('temperature sampling follows softmax(logits / T) (chi-square bound)', () => {
  const n = 20000;
  const h = histogram(new Sampler({ temperature: 0.7, seed: 1 }), n);
  const e = Array.from(logits, (x) => Math.exp(x / 0.7));
  const z = e.reduce((a, b) => a + b, 0);
  let chi = 0;
  e.forEach((v, i) => {
    const expected = (n * v) / z;
    chi += (h[i]! - expected) ** 2 / expected;
  });
  assert.ok(chi < 20, `chi-square ${chi} (4 dof; p < 0.001 above 18.5)`);
});

test('top-k, top-p and min-p keep exactly the tokens their definitions allow', () => {
  // probs at T=1: ids by probability 1 (3.0), 4 (2.9), 2 (2.0), 0 (1.0), 3 (0.5)
  const seen = (o: object) => histogram(new Sampler({ temperature: 1, seed: 9, ...o }), 3000).map((c) => c > 0);
  assert.deepEqual(seen({ topK: 2 }), [false, true, false, false, true]);
  assert.deepEqual(seen({ topK: 1 }), [false, true, false, false, false]);
  const p = Array.from(logits, (x) => Math.exp(x));
  const z = p.reduce((a, b) => a + b, 0);
  const p1 = p[1]! / z;
  const p14 = (p[1]! + p[4]!) / z;
  // top-p just above p(1) needs both 1 and 4; just below p(1)+p(4) too; above it adds id 2.
  assert.deepEqual(seen({ topP: p1 + 0.01 }), [false, true, false, false, true]);
  assert.deepEqual(seen({ topP: p14 + 0.01 }), [false, true, true, false, true]);
  // min-p 0.3: keep ids with p >= 0.3 * p(1): exp(2.9-3)=0.90, exp(2-3)=0.37, exp(1-3)=0.135
  assert.deepEqual(seen({ minP: 0.3 }), [false, true, true, false, true]);
  assert.deepEqual(seen({ minP: 0.5 }), [false, true, false, false, true]);
});

test('bad sampling options are refused by name', () => {
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler({ topP: 0 }), /topP/);
  assert.throws(() => new Sampler({ topK: 1.5 }), /topK/);
  assert.throws(() => new Sampler({ minP: 2 }), /minP/);
});

test('Random is uniform enough and deterministic', () => {
  const r = new Random(42);
  let sum = 0;
  for (let i = 0; i < 10000; i++) sum += r.next();
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
  assert.equal(new Random(42).next(), new Random(42).next());
});

test('stop strings: text is cut before the match and partial matches are held back', () => {
  const f = new StopStringFilter(['THE END', '\n\n']);
  let out = '';
  for (const piece of ['Once', ' upon THE', ' E', 'ND and more']) out += f.push(piece);
  assert.equal(out, 'Once upon ');
  assert.equal(f.matched, 'THE END');
  const g = new StopStringFilter(['xyz']);
  assert.equal(g.push('abx'), 'ab');
  assert.equal(g.push('y'), '');
  assert.equal(g.push('q'), 'xyq');
  assert.equal(g.flush(), '');
  const h = new StopStringFilter(['xyz']);
  h.push('abxy');
  assert.equal(h.flush(), 'xy');
});
