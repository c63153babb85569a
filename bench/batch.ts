/**
 * Batched decode against the same engine's prefill (not a test): on the random Qwen2.5-0.5B-shaped
 * model (a Q8_0 GGUF written once into .cache/bench/), one run measures
 *
 *   - prefill tokens/s of a --prefill-token prompt (default 512; the engine's own prefill blocks),
 *   - aggregate decode tokens/s of `model.generateBatch` at each batch size of --batches (default
 *     1,2,4,8,16): every sequence a short random prompt (--prompt, default 16) and --gen tokens
 *     (default 64, EOS ignored, full cache), the sum over sequences of their decode tokens/s (they
 *     decode in the same steps, so this is batch x tokens per step-second),
 *   - with --rkv: batch 16 (--rkv-batch) under r-kv (budget 128, buffer 32) for --rkv-gen tokens
 *     (default 256), and the share of decode time spent compressing: the sequences' compression
 *     seconds added up (each compresses inside the step, on the step's time) over the decode seconds,
 *
 * and prints them with the ratios the throughput issue asks about (batch b over batch 1, batch b over
 * prefill). Every run is a child process that measures each figure --reps times (default 3),
 * interleaved in a rotating order so that a change of the machine's load falls on all figures alike,
 * and reports their medians; --rounds N repeats the run and the tables show medians over rounds (the
 * ratios: each run's own, then their median).
 *
 *   npx tsx bench/batch.ts [--rounds 3] [--reps 3] [--threads 2] [--weights q8_0] [--batches 1,2,4,8,16]
 *                          [--gen 64] [--prompt 16] [--prefill 512] [--rkv] [--rkv-gen 256] [--rkv-batch 16]
 *                          [--ab DIR] [--json]
 *
 * --ab DIR: A/B against another checkout of kvsieve (built: `npm run build` there), e.g. a worktree
 * of the base commit: each round runs DIR's engine and this one's in turn (alternating which goes
 * first), both driven by this script and loading the same GGUF. Figures are per side, medians over
 * rounds. Before every child the script notes the 1-minute load average, and each child reports the
 * CPU other processes used while it ran (machine busy time from /proc/stat minus its own): on a shared
 * machine, trust rounds where that stays near 0.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { GenerateOptions } from '../src/api.js';
import type { GenerationResult } from '../src/generate/batcher.js';
import { writeRandomGguf } from './llamacpp.js';

const here = resolve(fileURLToPath(import.meta.url), '..', '..');
const CACHE = join(here, '.cache', 'bench');

interface Params {
  src: string;
  threads: number;
  weights: string;
  batches: number[];
  gen: number;
  prompt: number;
  prefill: number;
  rkv: boolean;
  rkvGen: number;
  rkvBatch: number;
  /** Repetitions of every figure within one run (interleaved). */
  reps: number;
  gguf: string;
}

interface RoundResult {
  prefillTokPerS: number;
  /** Aggregate decode tokens/s per batch size (same order as Params.batches). */
  decodeTokPerS: number[];
  rkv: { decodeTokPerS: number; compressionShare: number; compressions: number } | null;
  /** CPU seconds other processes used while the child measured, and the child's wall seconds. */
  otherCpuSeconds: number;
  wallSeconds: number;
  loadavg: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Machine busy jiffies (all cores) from /proc/stat, or null where there is none. */
function machineBusy(): number | null {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return v.slice(0, 8).reduce((a, b) => a + b, 0) - (v[3]! + v[4]!);
  } catch {
    return null;
  }
}

/** Token ids in [3, vocab) from a seed (the benchmark's prompts: their content does not matter). */
function ids(n: number, seed: number, vocab: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 3 + (s % (vocab - 3));
  });
}

// ---- the child: one round of measurements on one checkout ----------------------------------------

async function child(p: Params): Promise<void> {
  const api = (await import(pathToFileURL(join(p.src, 'src', 'api.ts')).href)) as typeof import('../src/api.js');
  const busy0 = machineBusy();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const load = loadavg()[0]!;
  const model = await api.loadModel(p.gguf, { backend: 'wasm', threads: p.threads, weights: p.weights as 'q8_0' });
  const vocab = model.config.vocabSize;
  const base: GenerateOptions = { ignoreEos: true };
  // Warm-up: page the weights in, start the workers, grow the scratch.
  await model.complete(null, { ...base, promptIds: ids(64, 1, vocab), maxTokens: 4 });
  await model.generateBatch(Array.from({ length: 4 }, (_, i) => ids(p.prompt, 10 + i, vocab)), { ...base, maxTokens: 4 });

  // The figures are measured `reps` times each, interleaved in an order that rotates from one
  // repetition to the next, so a change in the machine's load falls on all of them alike; each
  // figure is the median of its repetitions.
  const prefillRuns: number[] = [];
  const decodeRuns: number[][] = p.batches.map(() => []);
  const phases = [-1, ...p.batches.map((_, i) => i)];
  for (let rep = 0; rep < p.reps; rep++) {
    for (let j = 0; j < phases.length; j++) {
      const phase = phases[(j + rep) % phases.length]!;
      if (phase < 0) {
        const pre = await model.complete(null, { ...base, promptIds: ids(p.prefill, 2 + rep, vocab), maxTokens: 1 });
        prefillRuns.push(pre.prefillTokensPerSecond);
      } else {
        const b = p.batches[phase]!;
        const prompts = Array.from({ length: b }, (_, i) => ids(p.prompt, 100 * b + 10 * rep + i, vocab));
        const res: GenerationResult[] = await model.generateBatch(prompts, { ...base, maxTokens: p.gen });
        decodeRuns[phase]!.push(res.reduce((s, r) => s + r.decodeTokensPerSecond, 0));
      }
    }
  }
  let rkv: RoundResult['rkv'] = null;
  if (p.rkv) {
    const prompts = Array.from({ length: p.rkvBatch }, (_, i) => ids(p.prompt, 7000 + i, vocab));
    const res = await model.generateBatch(prompts, {
      ...base,
      maxTokens: p.rkvGen,
      compression: { press: 'r-kv', budget: 128, buffer: 32 },
    });
    const decodeSeconds = Math.max(...res.map((r) => r.decodeSeconds));
    rkv = {
      decodeTokPerS: res.reduce((s, r) => s + r.decodeTokensPerSecond, 0),
      compressionShare: res.reduce((s, r) => s + r.compressionSeconds, 0) / decodeSeconds,
      compressions: res.reduce((s, r) => s + r.compressions, 0),
    };
  }
  model.dispose();
  const busy1 = machineBusy();
  const own = process.cpuUsage(own0);
  const otherCpuSeconds = busy0 !== null && busy1 !== null ? Math.max(0, (busy1 - busy0) / 100 - (own.user + own.system) / 1e6) : NaN;
  const out: RoundResult = {
    prefillTokPerS: median(prefillRuns),
    decodeTokPerS: decodeRuns.map(median),
    rkv,
    otherCpuSeconds,
    wallSeconds: (performance.now() - t0) / 1000,
    loadavg: load,
  };
  console.log(`RESULT ${JSON.stringify(out)}`);
}

// ---- the parent ------------------------------------------------------------------------------------

function runChild(p: Params): Promise<RoundResult> {
  return new Promise((done, fail) => {
    const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(p)];
    const c = spawn(process.execPath, args, { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', fail);
    c.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) fail(new Error(`bench child (${p.src}) exited ${code}:\n${out}`));
      else done(JSON.parse(line.slice(7)) as RoundResult);
    });
  });
}

function parseArgs(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) m.set(a.slice(2), 'true');
    else {
      m.set(a.slice(2), next);
      i++;
    }
  }
  return m;
}

function table(label: string, p: Params, rounds: RoundResult[]): string[] {
  const pre = median(rounds.map((r) => r.prefillTokPerS));
  const dec = p.batches.map((_, i) => median(rounds.map((r) => r.decodeTokPerS[i]!)));
  const one = p.batches.indexOf(1);
  // Ratios within each run (same moments of the machine), then their median over runs.
  const ratio = (i: number, den: (r: RoundResult) => number) => median(rounds.map((r) => r.decodeTokPerS[i]! / den(r)));
  const lines = [
    `${label}: prefill ${p.prefill} tokens ${pre.toFixed(1)} tok/s (runs: ${rounds.map((r) => r.prefillTokPerS.toFixed(1)).join(', ')})`,
    '',
    '| batch | aggregate decode tok/s | runs | / batch 1 | / prefill |',
    '|---|---|---|---|---|',
  ];
  p.batches.forEach((b, i) => {
    const runs = rounds.map((r) => r.decodeTokPerS[i]!.toFixed(1)).join(', ');
    const perOne = one >= 0 ? ratio(i, (r) => r.decodeTokPerS[one]!) : NaN;
    lines.push(`| ${b} | ${dec[i]!.toFixed(1)} | ${runs} | ${perOne.toFixed(2)}x | ${ratio(i, (r) => r.prefillTokPerS).toFixed(2)}x |`);
  });
  const rk = rounds.map((r) => r.rkv).filter((r) => r !== null);
  if (rk.length) {
    lines.push(
      '',
      `r-kv 128/32, batch ${p.rkvBatch}, ${p.rkvGen} tokens: aggregate decode ${median(rk.map((r) => r.decodeTokPerS)).toFixed(1)} tok/s, ` +
        `compression ${(100 * median(rk.map((r) => r.compressionShare))).toFixed(1)}% of decode time ` +
        `(runs: ${rk.map((r) => (100 * r.compressionShare).toFixed(1) + '%').join(', ')}; ${rk[0]!.compressions} compressions per run)`,
    );
  }
  lines.push(
    '',
    `load (1-min average before each run): ${rounds.map((r) => r.loadavg.toFixed(2)).join(', ')}; CPU s used by other processes during each run: ` +
      `${rounds.map((r) => `${r.otherCpuSeconds.toFixed(0)} of ${r.wallSeconds.toFixed(0)} s x ${availableParallelism()} cores`).join(', ')}`,
  );
  return lines;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(JSON.parse(argv[1]!) as Params);
  const a = parseArgs(argv);
  const int = (k: string, d: number) => {
    const v = a.get(k);
    const n = v === undefined ? d : Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k} must be a whole number >= 1, got ${v}`);
    return n;
  };
  const weights = a.get('weights') ?? 'q8_0';
  const ggufType = { q8_0: 'Q8_0', q4_0: 'Q4_0', f16: 'F16', bf16: 'BF16', f32: 'F32' }[weights];
  if (!ggufType) throw new Error(`--weights must be q8_0, q4_0, f16, bf16 or f32, got ${weights}`);
  const gguf = join(CACHE, `qwen2.5-0.5b-random-${ggufType}.gguf`);
  if (!existsSync(gguf)) {
    console.log(`writing ${gguf} (random weights) ...`);
    writeRandomGguf(gguf, 'qwen2.5-0.5b', ggufType as 'Q8_0');
  }
  const p: Params = {
    src: here,
    threads: int('threads', 2),
    weights,
    batches: (a.get('batches') ?? '1,2,4,8,16').split(',').map(Number),
    gen: int('gen', 64),
    prompt: int('prompt', 16),
    prefill: int('prefill', 512),
    rkv: a.has('rkv'),
    rkvGen: int('rkv-gen', 256),
    rkvBatch: int('rkv-batch', 16),
    reps: int('reps', 3),
    gguf,
  };
  const rounds = int('rounds', 3);
  const other = a.get('ab') ? resolve(a.get('ab')!) : null;
  const sides = other ? [{ label: `A (${other})`, src: other }, { label: `B (${here})`, src: here }] : [{ label: here, src: here }];
  const results = sides.map(() => [] as RoundResult[]);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides.map((_, i) => i) : sides.map((_, i) => i).reverse();
    for (const i of order) {
      const res = await runChild({ ...p, src: sides[i]!.src });
      results[i]!.push(res);
      console.error(
        `round ${r + 1}/${rounds} ${sides[i]!.label}: prefill ${res.prefillTokPerS.toFixed(1)}, decode ${res.decodeTokPerS.map((v) => v.toFixed(1)).join(' / ')}` +
          `${res.rkv ? `, r-kv ${res.rkv.decodeTokPerS.toFixed(1)} tok/s, compression ${(100 * res.rkv.compressionShare).toFixed(1)}%` : ''}` +
          ` (load ${res.loadavg.toFixed(2)}, others ${res.otherCpuSeconds.toFixed(0)} CPU s in ${res.wallSeconds.toFixed(0)} s)`,
      );
    }
  }
  console.log(`\nQwen2.5-0.5B shape (random), ${weights} weights, ${p.threads} threads, prompts of ${p.prompt} tokens, ${p.gen} generated per sequence, medians of ${rounds} rounds\n`);
  sides.forEach((s, i) => console.log(table(s.label, p, results[i]!).join('\n') + '\n'));
  if (other) {
    const ratio = (f: (r: RoundResult) => number) => median(results[1]!.map(f)) / median(results[0]!.map(f));
    console.log(`B / A: prefill ${ratio((r) => r.prefillTokPerS).toFixed(2)}x; decode ${p.batches.map((b, i) => `batch ${b} ${ratio((r) => r.decodeTokPerS[i]!).toFixed(2)}x`).join(', ')}`);
  }
  if (a.has('json')) console.log(JSON.stringify({ params: p, sides: sides.map((s, i) => ({ ...s, rounds: results[i] })) }));
}

await main();
