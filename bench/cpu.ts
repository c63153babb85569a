/**
 * CPU speed of kvsieve against llama.cpp (not a test), on random-weight models with the exact shapes of
 * Qwen2.5-0.5B and DeepSeek-R1-Distill-Qwen-1.5B, both engines measured in the same run:
 *
 *   - prefill tokens/s on a 512-token prompt,
 *   - decode tokens/s at context 1k and 8k with the full cache, and kvsieve's decode at 8k with r-kv
 *     (budget 1024, buffer 128) against llama.cpp's full-cache decode at 8k,
 *   - peak memory (each engine runs in its own child process, which reports its peak RSS per phase),
 *   - decode as a fraction of the bandwidth bound: read bandwidth measured in the same run (the wasm
 *     kernels' op.sum probe) over the weight bytes a decode step streams,
 *   - the share of a kvsieve decode step (at 1k) that is not matmul: decode steps against the same
 *     step's matmuls alone (the model's own matrices and kernel dispatches), the two timed in turn
 *     (a matmul pass after every generated token), so a host whose speed drifts over minutes moves
 *     both alike; and, in the same turns, the step against reading its weight bytes with the streaming
 *     sum (the bandwidth bound of that moment, paired).
 *
 *   npm run bench [-- --shapes qwen2.5-0.5b,r1-distill-qwen-1.5b] [--weights q8_0] [--threads 2]
 *                 [--runs 3] [--runs-8k 1] [--quick] [--skip-llamacpp] [--kvsieve-model gguf|safetensors]
 *                 [--max-wait 60] [--prompt 512] [--depth-1k 1024] [--depth-8k 8192] [--decode-tokens 32]
 *                 [--budget 1024] [--buffer 128] [--prefill-block N] [--kv-dtype f32|f16|int8] [--gguf Q4_K_M]
 *
 * --gguf Q4_K_M: the GGUF both engines load is llama.cpp's Q4_K_M mix (Q4_K, Q6_K for output and some
 * attn_v / ffn_down; rows that are not whole 256-value superblocks Q8_0); kvsieve keeps the K-quant
 * blocks as stored (its --weights storage, q8_0 or q4_0, applies to the rest). Default: the GGUF type of
 * --weights. The 1.5B shape (1536 / 8960) is all superblocks; the 0.5B one (896) only in ffn_down.
 *
 * --kv-dtype: kvsieve's KV storage (default f32, kvsieve's own default; llama.cpp keeps its default f16 cache).
 * --weights: q8_0 (default), f16, f32 (also bf16, q4_0); a shape whose weights exceed wasm32's 4 GiB
 * (f32 of the 1.5B shape) is skipped with a note. --quick: prompt 128, depths 256 and 1024, r-kv
 * 256/64, 2 runs: a smoke run of a few minutes.
 *
 * Models are written once into .cache/bench/ (gitignored) and reused: a GGUF of the weight type
 * (`<shape>-random-<TYPE>.gguf`, what llama.cpp loads) and, with --kvsieve-model safetensors, a BF16
 * safetensors checkpoint that kvsieve quantises at load. By default kvsieve loads the same GGUF as
 * llama.cpp (same bytes; a Q8_0 GGUF re-quantised to q8_0 gives the same blocks).
 *
 * It waits (up to --max-wait s) for an idle machine before starting, before each engine and before each
 * run, and reports for every phase the CPU other processes used meanwhile (machine busy time from
 * /proc/stat minus the engine's own): on a small machine shared with other work the figures are only
 * meaningful where that stays near 0. Prefill and 1k figures are min/median over --runs runs; the 8k
 * figures over --runs-8k runs (default 1: an 8k prefill takes minutes on 2 cores). kvsieve's decode
 * figure is its own (generated tokens over decode time, compressions included), llama.cpp's the
 * harness's (1 / median step). Prints markdown tables and ends with one JSON line holding every number.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, type GenerateOptions, type WeightStorage as AnyWeightStorage } from '../src/api.js';
import { optionMap } from './args.js';
import { cpuTimes, sampleBusyCores, sleep } from './machine.js';
import type { Backend, Weight } from '../src/backend/backend.js';
import type { Kernels } from '../src/backend/wasm/kernels.js';
import { op, type Matrix } from '../src/backend/wasm/ops.js';
import { createKernels, kernelWasmPath } from '../src/backend/wasm/node.js';
import { KvsieveError } from '../src/core/errors.js';
import type { GgufWeightType } from '../src/formats/gguf.js';
import type { GenerationResult } from '../src/generate/batcher.js';
import { slotBytes, type KvDtype } from '../src/core/kv-rows.js';
import { Random } from '../src/core/random.js';
import { kvBytesPerToken, type ModelConfig } from '../src/core/model-config.js';
import { parseHfConfig } from '../src/formats/hf-config.js';
import type { LlamaModel } from '../src/model/llama.js';
import { MODEL_SHAPES, writeRandomModel, type ModelShape } from '../src/model/random.js';
import { ensureNodeLlamaCpp, NODE_LLAMA_CPP_VERSION } from './llamacpp-env.js';
import { llamaCppSpeed, writeRandomGguf } from './llamacpp.js';

/** The storages a benchmark writes its random GGUF in ('stored' keeps a file's own: not a format). */
type WeightStorage = Exclude<AnyWeightStorage, 'stored'>;

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = resolve(THIS_FILE, '..', '..');
const CACHE = join(REPO, '.cache', 'bench');
const RESULT_TAG = '@@cpu-bench-result ';
const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** wasm32's memory limit. */
const WASM_MAX_BYTES = 4 * GiB;

const GGUF_TYPE: Record<WeightStorage, GgufWeightType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' };
const BYTES_PER_PARAM: Record<WeightStorage, number> = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32, q4_0: 18 / 32 };

// ------------------------------------------------------------------------------------------------
// small helpers

const sorted = (xs: readonly number[]) => [...xs].sort((a, b) => a - b);
function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const min = (xs: readonly number[]) => (xs.length ? Math.min(...xs) : NaN);
const max = (xs: readonly number[]) => (xs.length ? Math.max(...xs) : NaN);
const round = (x: number, digits = 3) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

function fmt(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}
function ratio(a: number | null | undefined, b: number | null | undefined): number {
  return a === null || a === undefined || b === null || b === undefined || !(b > 0) ? NaN : a / b;
}

/** Random token ids in [lo, hi): content does not matter for speed. */
function randomIds(n: number, seed: number, lo: number, hi: number): number[] {
  const r = new Random(seed);
  return Array.from({ length: n }, () => lo + Math.floor(r.next() * (hi - lo)));
}

// ---- memory of this process (Linux /proc; elsewhere the life-time maxRSS) ------------------------

function procStatusBytes(field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resets the kernel's peak-RSS mark of this process (VmHWM) to the current RSS; false where it cannot. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

interface PhaseMemory {
  /** Peak RSS during the phase (bytes); the process's life-time peak when `resettable` is false. */
  peakRssBytes: number;
  resettable: boolean;
}

/** A full garbage collection where the process runs with --expose-gc (the children do). */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function withPeak<T>(fn: () => Promise<T>): Promise<{ value: T; memory: PhaseMemory }> {
  collectGarbage();
  const resettable = resetPeakRss();
  const value = await fn();
  const hwm = resettable ? procStatusBytes('VmHWM') : null;
  return { value, memory: { peakRssBytes: hwm ?? process.resourceUsage().maxRSS * 1024, resettable: hwm !== null } };
}

// ---- machine load (/proc/stat) -------------------------------------------------------------------


interface IdleReport {
  idle: boolean;
  busyCores: number;
  waitedSeconds: number;
  loadavg: number[];
}

/** Waits until the machine is idle (under 0.25 busy cores over 2 s), at most `maxSeconds`. */
async function waitForIdle(maxSeconds: number, log: (m: string) => void): Promise<IdleReport> {
  const t0 = performance.now();
  let busy = await sampleBusyCores(2000);
  let said = false;
  while (busy > 0.25 && (performance.now() - t0) / 1000 < maxSeconds) {
    if (!said) log(`machine busy (${busy.toFixed(2)} of ${availableParallelism()} cores in use); waiting up to ${maxSeconds} s for it to go idle ...`);
    said = true;
    busy = await sampleBusyCores(2000);
  }
  const waited = (performance.now() - t0) / 1000;
  return { idle: busy <= 0.25, busyCores: busy, waitedSeconds: waited, loadavg: loadavg() };
}

/** Waits seen before each run of a child (only those that found the machine busy). */
const runWaits: IdleReport[] = [];
/** Time spent in quietBeforeRun, with the machine's and this process's CPU time meanwhile. */
const waited = { seconds: 0, machineBusySeconds: 0, ownSeconds: 0 };

/** Before a run: waits (up to maxSeconds) for other processes to leave the machine, and logs the load when they do not. */
async function quietBeforeRun(maxSeconds: number, log: (m: string) => void): Promise<void> {
  const t0 = performance.now();
  const machine0 = cpuTimes();
  const own0 = process.cpuUsage();
  const busy = await sampleBusyCores(500);
  const w = busy <= 0.25 ? null : await waitForIdle(maxSeconds, () => {});
  // the wait is not part of the measurement: runPhase leaves it out of the phase's other-process load
  const machine1 = cpuTimes();
  const own = process.cpuUsage(own0);
  waited.seconds += (performance.now() - t0) / 1000;
  waited.machineBusySeconds += machine0 && machine1 ? (machine1.busy - machine0.busy) / 100 : 0;
  waited.ownSeconds += (own.user + own.system) / 1e6;
  if (!w) return;
  runWaits.push(w);
  log(w.idle ? `  (waited ${w.waitedSeconds.toFixed(0)} s for an idle machine)` : `  (machine still busy after ${w.waitedSeconds.toFixed(0)} s: ${w.busyCores.toFixed(2)} cores; running anyway)`);
}

// ------------------------------------------------------------------------------------------------
// options

interface Options {
  shapes: ModelShape[];
  weights: WeightStorage;
  threads: number;
  runs: number;
  runs8k: number;
  quick: boolean;
  skipLlamacpp: boolean;
  kvsieveModel: 'gguf' | 'safetensors';
  prompt: number;
  depth1k: number;
  depth8k: number;
  decodeTokens: number;
  budget: number;
  buffer: number;
  prefillBlock: number | null;
  kvDtype: KvDtype;
  /** The GGUF file's weight type (both engines load it). */
  ggufType: GgufWeightType;
  /** Seconds to wait for an idle machine before each run. */
  maxWait: number;
}

function parseOptions(argv: string[]): Options {
  const m = optionMap(argv, {
    names: [
      'shapes', 'weights', 'threads', 'runs', 'runs-8k', 'quick', 'skip-llamacpp', 'kvsieve-model',
      'prompt', 'depth-1k', 'depth-8k', 'decode-tokens', 'budget', 'buffer', 'prefill-block', 'kv-dtype', 'max-wait', 'help',
    ],
    docs: 'the top of bench/cpu.ts',
  });
  const quick = m.has('quick');
  const int = (k: string, d: number, lo = 1) => {
    const v = m.get(k);
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo) throw new KvsieveError(`--${k} must be a whole number >= ${lo}, got ${v}`);
    return n;
  };
  const shapes = (m.get('shapes') ?? Object.keys(MODEL_SHAPES).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of shapes) {
    if (!(s in MODEL_SHAPES)) throw new KvsieveError(`--shapes: unknown shape ${s} (${Object.keys(MODEL_SHAPES).join(', ')})`);
  }
  const weights = (m.get('weights') ?? 'q8_0') as WeightStorage;
  if (!(weights in GGUF_TYPE)) throw new KvsieveError(`--weights must be one of ${Object.keys(GGUF_TYPE).join(', ')}, got ${weights}`);
  const kvDtype = (m.get('kv-dtype') ?? 'f32') as KvDtype;
  if (!['f32', 'f16', 'int8'].includes(kvDtype)) throw new KvsieveError(`--kv-dtype must be f32, f16 or int8, got ${kvDtype}`);
  const kvsieveModel = m.get('kvsieve-model') ?? 'gguf';
  if (kvsieveModel !== 'gguf' && kvsieveModel !== 'safetensors') throw new KvsieveError(`--kvsieve-model must be gguf or safetensors`);
  const o: Options = {
    shapes: shapes as ModelShape[],
    weights,
    threads: int('threads', 2),
    runs: int('runs', quick ? 2 : 3),
    runs8k: int('runs-8k', 1),
    quick,
    skipLlamacpp: m.has('skip-llamacpp'),
    kvsieveModel,
    prompt: int('prompt', quick ? 128 : 512),
    depth1k: int('depth-1k', quick ? 256 : 1024),
    depth8k: int('depth-8k', quick ? 1024 : 8192),
    decodeTokens: int('decode-tokens', quick ? 16 : 32, 2),
    budget: int('budget', quick ? 256 : 1024),
    buffer: int('buffer', quick ? 64 : 128),
    prefillBlock: m.has('prefill-block') ? int('prefill-block', 64) : null,
    kvDtype,
    ggufType: GGUF_TYPE[weights],
    maxWait: int('max-wait', 60, 0),
  };
  const gguf = m.get('gguf');
  if (gguf !== undefined) {
    if (gguf !== 'Q4_K_M' && gguf !== GGUF_TYPE[weights]) throw new KvsieveError(`--gguf must be Q4_K_M or ${GGUF_TYPE[weights]} (the type of --weights), got ${gguf}`);
    if (gguf === 'Q4_K_M' && weights !== 'q8_0' && weights !== 'q4_0') throw new KvsieveError('--gguf Q4_K_M needs --weights q8_0 or q4_0 (float storage dequantises the K-quants)');
    o.ggufType = gguf;
  }
  if (o.prompt > o.depth1k || o.depth1k > o.depth8k) throw new KvsieveError('need --prompt <= --depth-1k <= --depth-8k');
  if (m.has('help')) {
    console.log(readFileSync(THIS_FILE, 'utf8').split('*/')[0]);
    process.exit(0);
  }
  return o;
}

// ------------------------------------------------------------------------------------------------
// child processes: each engine (and the bandwidth probe) runs alone in its own process

interface ChildRun<T> {
  result: T;
  wallSeconds: number;
  /** Average cores other processes kept busy while it ran (machine busy time minus the child's own CPU time). */
  otherCores: number | null;
}

interface ChildCpu {
  cpuSeconds: number;
}

async function runChild<T extends ChildCpu>(kind: string, params: unknown, label: string): Promise<ChildRun<T>> {
  const before = cpuTimes();
  const t0 = performance.now();
  // --expose-gc: phases start from a collected heap, so load-time garbage does not count as their peak
  const child = spawn(process.execPath, [...process.execArgv, '--expose-gc', THIS_FILE, '--child', kind, JSON.stringify(params)], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let result = null as T | null;
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith(RESULT_TAG)) result = JSON.parse(line.slice(RESULT_TAG.length)) as T;
      else if (line.trim()) process.stderr.write(`  [${label}] ${line}\n`);
    }
  });
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  const wall = (performance.now() - t0) / 1000;
  const after = cpuTimes();
  if (code !== 0 || result === null) throw new KvsieveError(`${label}: child process failed (exit ${code})`);
  const r: T = result;
  let otherCores: number | null = null;
  if (before && after && after.total > before.total) {
    const machineBusy = (after.busy - before.busy) / 100; // USER_HZ
    otherCores = Math.max(0, (machineBusy - r.cpuSeconds) / wall);
  }
  return { result: r, wallSeconds: wall, otherCores };
}

function report(result: unknown): void {
  const cpu = process.cpuUsage();
  console.log(RESULT_TAG + JSON.stringify({ ...(result as object), cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
}

// ---- bandwidth probe -----------------------------------------------------------------------------

interface BandwidthResult extends ChildCpu {
  bytes: number;
  threads: number;
  /** GB/s, best pass: four streams per thread (as the matvec tiles read rows) and one. */
  fourStreamGBs: number;
  oneStreamGBs: number;
}

async function childBandwidth(p: { threads: number }): Promise<void> {
  // ~511 MiB of f32: larger than any cache; not a power of two (quarters apart would alias DRAM banks).
  const n = 134_000_000;
  const k = await createKernels({ threads: p.threads, initialBytes: n * 4 + 16 * MiB });
  try {
    const x = k.vec(n);
    k.f32(x).fill(1);
    const partials = k.vec(64);
    const best = (streams: 1 | 4) => {
      const task = op.sum(x, n, partials, streams);
      k.run(task); // warm-up
      let t = Infinity;
      const t0 = performance.now();
      for (let i = 0; i < 3 || performance.now() - t0 < 2000; i++) {
        const s = performance.now();
        k.run(task);
        t = Math.min(t, performance.now() - s);
      }
      return (n * 4) / (t / 1000) / 1e9;
    };
    const four = best(4);
    const one = best(1);
    report({ bytes: n * 4, threads: p.threads, fourStreamGBs: four, oneStreamGBs: one } satisfies Omit<BandwidthResult, 'cpuSeconds'>);
  } finally {
    await k.dispose();
  }
}

// ---- kvsieve -------------------------------------------------------------------------------------

/** What both engines' child processes are told: the machine wait, threads, and the runs to make. */
interface RunParams {
  maxWait: number;
  threads: number;
  prompt: number;
  depth1k: number;
  depth8k: number;
  runs: number;
  runs8k: number;
  decodeTokens: number;
}

interface KvsieveParams extends RunParams {
  path: string;
  /** 'stored' for a Q4_K_M file: its K-quant matrices as stored. */
  weights: AnyWeightStorage;
  budget: number;
  buffer: number;
  prefillBlock: number | null;
  kvDtype: KvDtype;
}

interface Phase {
  seconds: number;
  memory: PhaseMemory;
  /** Average cores other processes kept busy during the phase (machine busy time minus this process's CPU time). */
  otherCores: number | null;
  error?: string;
}

/** Runs one measured phase: its peak RSS, the CPU other processes used meanwhile, and any failure (kept, not thrown). */
async function runPhase<T extends object>(name: string, init: T, fn: (acc: T) => Promise<void>, log: (m: string) => void): Promise<T & Phase> {
  const s = performance.now();
  const machine0 = cpuTimes();
  const own0 = process.cpuUsage();
  const waited0 = { ...waited };
  let error: string | undefined;
  const { memory } = await withPeak(async () => {
    try {
      await fn(init);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
      log(`${name}: failed: ${error}`);
    }
  });
  const seconds = (performance.now() - s) / 1000;
  const machine1 = cpuTimes();
  const own = process.cpuUsage(own0);
  const waitSeconds = waited.seconds - waited0.seconds;
  const measured = seconds - waitSeconds;
  const otherCores =
    machine0 && machine1 && measured > 0
      ? Math.max(
          0,
          ((machine1.busy - machine0.busy) / 100 - (waited.machineBusySeconds - waited0.machineBusySeconds) -
            ((own.user + own.system) / 1e6 - (waited.ownSeconds - waited0.ownSeconds))) / measured,
        )
      : null;
  log(
    `${name}: ${seconds.toFixed(1)} s${waitSeconds > 5 ? ` (${waitSeconds.toFixed(0)} s of it waiting for an idle machine)` : ''}, peak RSS ${(memory.peakRssBytes / MiB).toFixed(0)} MiB` +
      (otherCores !== null ? `, other processes ${otherCores.toFixed(2)} cores` : ''),
  );
  return { ...init, seconds, memory, otherCores, ...(error !== undefined ? { error } : {}) };
}

interface KvsieveResult extends ChildCpu {
  runWaits: IdleReport[];
  /** The kernels the child loaded (sha256 prefix of the .wasm). */
  wasmSha256: string;
  backend: string;
  dtype: string;
  loadSeconds: number;
  loadPeakRssBytes: number;
  maxRssBytes: number;
  weightBytes: number;
  /** Weight bytes one decode step reads: everything but the embedding table (lm_head included). */
  streamedBytes: number;
  embedBytes: number;
  lmHeadBytes: number;
  kvBytesPerToken: number;
  unquantised: number;
  prefill: Phase & { tokPerS: number[] };
  /** tokPerS: generated tokens over decode time (the engine's figure, a mean); medianStepTokPerS: 1 / median step. */
  decode1k: Phase & { tokPerS: number[]; prefillTokPerS: number[]; medianStepTokPerS: number[] };
  /**
   * Interleaved: stepMs[i] a decode step, msPerStep[i] the matmul pass run right after it, streamMs[i]
   * the same weight bytes read by op.sum right after that (empty when the backend is not wasm).
   */
  matmul: Phase & { msPerStep: number[]; stepMs: number[]; streamMs: number[]; dispatches: number };
  rkv8k: Phase & { tokPerS: number[]; prefillTokPerS: number[]; medianStepTokPerS: number[]; compressions: number[]; compressionSeconds: number[]; finalKvTokensPerHead: number[]; generated: number };
  full8k: Phase & { tokPerS: number[]; prefillTokPerS: number[]; medianStepTokPerS: number[] };
}

/** The matrices of one decode step with the backend, reached through the loaded model. */
function decodeMatrices(model: object): { llama: LlamaModel; backend: Backend } {
  const llama = (model as { llama?: LlamaModel }).llama;
  if (!llama || !llama.weights || !llama.backend) throw new KvsieveError('bench/cpu.ts: Model no longer keeps its LlamaModel in `llama`; update decodeMatrices()');
  return { llama, backend: llama.backend };
}

/**
 * The matmuls of one decode step alone (step), through the backend the model runs on, with the model's
 * own matrices and the same dispatches as LlamaModel.forward for one token (qkv, o, gate-up, down per
 * layer, then lm_head) on scratch buffers: no norms, RoPE, attention, embedding or sampling. On the
 * wasm backend also `stream`: the same weight bytes read by op.sum in the same dispatches.
 */
function stepMatmuls(model: object): { step: () => void; stream: (() => void) | null; dispose: () => void; dispatches: number } {
  const { llama, backend: be } = decodeMatrices(model);
  const c = llama.config;
  const w = llama.weights;
  const D = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const F = c.intermediateSize;
  const fill = (n: number) => {
    const a = be.allocF32(n);
    for (let i = 0; i < n; i++) a[i] = 0.05 * Math.sin(i * 0.37);
    return a;
  };
  const bufs = {
    x: fill(D), xb: fill(D), q: fill(qDim), k: fill(kvDim), v: fill(kvDim), att: fill(qDim),
    gate: fill(F), up: fill(F), lmIn: fill(D), logits: fill(c.vocabSize),
  };
  const step = () => {
    for (const l of w.layers) {
      be.qkv({
        x: bufs.xb,
        tokens: 1,
        q: { out: bufs.q, w: l.q, bias: l.qBias },
        k: { out: bufs.k, w: l.k, bias: l.kBias },
        v: { out: bufs.v, w: l.v, bias: l.vBias },
      });
      be.matmul({ addTo: bufs.x, x: bufs.att, w: l.o, bias: l.oBias, tokens: 1 });
      be.gateUp({
        out: bufs.gate,
        scratch: bufs.up,
        x: bufs.xb,
        tokens: 1,
        gate: { w: l.gate!, bias: l.gateBias },
        up: { w: l.up!, bias: l.upBias },
      });
      be.matmul({ addTo: bufs.x, x: bufs.gate, w: l.down!, bias: l.downBias, tokens: 1 });
      // keep the accumulated residual from growing over many passes
      bufs.x.fill(0.01);
    }
    be.matmul({ out: bufs.logits, x: bufs.lmIn, w: w.lmHead, tokens: 1 });
  };
  // The same weight bytes read by the kernels' streaming sum (op.sum, four streams per thread, as the
  // matvec tiles read), in the same dispatches: the step's weights at the bandwidth of this moment.
  const kernels = (be as unknown as { kernels?: Kernels }).kernels;
  const matrix = (m: Weight) => (m as unknown as { matrix?: Matrix }).matrix;
  let stream: (() => void) | null = null;
  if (kernels && matrix(w.lmHead)) {
    const partials = kernels.vec(64);
    const sum = (m: Weight) => {
      const mat = matrix(m)!;
      const n = mat.bytes >>> 2;
      return op.sum({ ptr: mat.ptr, length: n }, n, partials, 4);
    };
    const jobs = w.layers.flatMap((l) => [[sum(l.q), sum(l.k), sum(l.v)], [sum(l.o)], [sum(l.gate!), sum(l.up!)], [sum(l.down!)]]);
    jobs.push([sum(w.lmHead)]);
    stream = () => {
      for (const tasks of jobs) kernels.run(...tasks);
    };
  }
  return { step, stream, dispose: () => Object.values(bufs).forEach((a) => be.freeF32(a)), dispatches: 4 * w.layers.length + 1 };
}

function streamedWeightBytes(model: object): { streamed: number; embed: number; lmHead: number } {
  const { llama } = decodeMatrices(model);
  const w = llama.weights;
  const bytes = (m: Weight) => m.bytes;
  // weightBytes counts a tied embedding once (as the embedding); lm_head reads all of it, the embedding one row.
  const streamed = llama.weightBytes() - bytes(w.embed) + bytes(w.lmHead);
  return { streamed, embed: bytes(w.embed), lmHead: bytes(w.lmHead) };
}

async function childKvsieve(p: KvsieveParams): Promise<void> {
  const log = (m: string) => console.log(m);
  const phase = <T extends object>(name: string, init: T, fn: (acc: T) => Promise<void>) => runPhase(name, init, fn, log);
  const wasmSha256 = createHash('sha256').update(readFileSync(kernelWasmPath())).digest('hex').slice(0, 12);
  resetPeakRss();
  const t0 = performance.now();
  const model = await loadModel(p.path, { backend: 'wasm', threads: p.threads, weights: p.weights });
  const loadSeconds = (performance.now() - t0) / 1000;
  const loadPeak = procStatusBytes('VmHWM') ?? process.resourceUsage().maxRSS * 1024;
  collectGarbage();
  const info = model.info();
  const vocab = model.config.vocabSize;
  log(`loaded ${p.path} in ${loadSeconds.toFixed(1)} s: ${info.backend}, ${(info.weightBytes / MiB).toFixed(0)} MiB of weights`);
  const block = { kvDtype: p.kvDtype, ...(p.prefillBlock !== null ? { prefillBlock: p.prefillBlock } : {}) };
  const ids = (n: number, seed: number) => randomIds(n, seed, 3, vocab);
  /** One generation; besides the engine's own figures, the median interval between generated tokens (a decode step). */
  const generate = async (o: GenerateOptions): Promise<GenerationResult & { medianStepTokPerS: number }> => {
    const stream = model.generate(null, o);
    const at: number[] = [];
    for await (const chunk of stream) if (chunk.ids.length) at.push(performance.now());
    const res = await stream.result;
    const steps = at.slice(1).map((t, i) => t - at[i]!);
    return { ...res, medianStepTokPerS: steps.length ? 1000 / median(steps) : NaN };
  };

  const prefill = await phase(`prefill ${p.prompt}`, { tokPerS: [] as number[] }, async (acc) => {
    for (let r = 0; r < p.runs; r++) {
      await quietBeforeRun(p.maxWait, log);
      const res = await generate({ promptIds: ids(p.prompt, 100 + r), maxTokens: 1, ignoreEos: true, ...block });
      acc.tokPerS.push(res.prefillTokensPerSecond);
      log(`  prefill run ${r + 1}/${p.runs}: ${res.prefillTokensPerSecond.toFixed(1)} tok/s`);
    }
  });
  const decode1k = await phase(`decode at ${p.depth1k}`, { tokPerS: [] as number[], prefillTokPerS: [] as number[], medianStepTokPerS: [] as number[] }, async (acc) => {
    for (let r = 0; r < p.runs; r++) {
      await quietBeforeRun(p.maxWait, log);
      const res = await generate({ promptIds: ids(p.depth1k, 200 + r), maxTokens: p.decodeTokens, ignoreEos: true, ...block });
      acc.tokPerS.push(res.decodeTokensPerSecond);
      acc.prefillTokPerS.push(res.prefillTokensPerSecond);
      acc.medianStepTokPerS.push(res.medianStepTokPerS);
      log(`  decode@${p.depth1k} run ${r + 1}/${p.runs}: ${res.decodeTokensPerSecond.toFixed(2)} tok/s (prefill ${res.prefillTokensPerSecond.toFixed(1)} tok/s)`);
    }
  });
  const matmul = await phase(`decode steps at ${p.depth1k}, their matmuls alone and their weights streamed, in turn`, { msPerStep: [] as number[], stepMs: [] as number[], streamMs: [] as number[], dispatches: 0 }, async (acc) => {
    await quietBeforeRun(p.maxWait, log);
    const mm = stepMatmuls(model);
    acc.dispatches = mm.dispatches;
    mm.step();
    mm.step();
    mm.stream?.();
    // The engine steps only while this loop waits for the next token, so the time from the end of a
    // matmul pass to the next token is one decode step (sampling and the event loop included).
    const stream = model.generate(null, { promptIds: ids(p.depth1k, 250), maxTokens: 2 * p.decodeTokens + 1, ignoreEos: true, ...block });
    let since = NaN;
    for await (const chunk of stream) {
      if (!chunk.ids.length) continue;
      const now = performance.now();
      if (!Number.isNaN(since)) acc.stepMs.push(now - since);
      const s0 = performance.now();
      mm.step();
      const s1 = performance.now();
      acc.msPerStep.push(s1 - s0);
      if (mm.stream) {
        mm.stream();
        acc.streamMs.push(performance.now() - s1);
      }
      since = performance.now();
    }
    await stream.result;
    mm.dispose();
    log(`  ${acc.stepMs.length} steps: median ${median(acc.stepMs).toFixed(1)} ms; matmuls alone: median ${median(acc.msPerStep).toFixed(1)} ms` +
      `${acc.streamMs.length ? `; their weights streamed: median ${median(acc.streamMs).toFixed(1)} ms` : ''}`);
  });
  const rkvGenerated = p.buffer + p.decodeTokens;
  const rkv8k = await phase(
    `r-kv decode at ${p.depth8k}`,
    {
      tokPerS: [] as number[], prefillTokPerS: [] as number[], medianStepTokPerS: [] as number[], compressions: [] as number[], compressionSeconds: [] as number[],
      finalKvTokensPerHead: [] as number[], generated: rkvGenerated,
    },
    async (acc) => {
      for (let r = 0; r < p.runs8k; r++) {
        await quietBeforeRun(p.maxWait, log);
        const res = await generate({
          promptIds: ids(p.depth8k, 300 + r),
          maxTokens: rkvGenerated,
          ignoreEos: true,
          ...block,
          compression: { press: 'r-kv', budget: p.budget, buffer: p.buffer },
        });
        acc.tokPerS.push(res.decodeTokensPerSecond);
        acc.prefillTokPerS.push(res.prefillTokensPerSecond);
        acc.medianStepTokPerS.push(res.medianStepTokPerS);
        acc.compressions.push(res.compressions);
        acc.compressionSeconds.push(res.compressionSeconds);
        acc.finalKvTokensPerHead.push(res.finalKvTokensPerHead);
        log(
          `  r-kv decode@${p.depth8k} run ${r + 1}/${p.runs8k}: ${res.decodeTokensPerSecond.toFixed(2)} tok/s over ${res.generatedTokens} tokens ` +
            `(prefill ${res.prefillTokensPerSecond.toFixed(1)} tok/s, ${res.compressions} compressions, ${res.compressionSeconds.toFixed(1)} s in them)`,
        );
      }
    },
  );
  const full8k = await phase(`full-cache decode at ${p.depth8k}`, { tokPerS: [] as number[], prefillTokPerS: [] as number[], medianStepTokPerS: [] as number[] }, async (acc) => {
    for (let r = 0; r < p.runs8k; r++) {
      await quietBeforeRun(p.maxWait, log);
      const res = await generate({ promptIds: ids(p.depth8k, 400 + r), maxTokens: p.decodeTokens, ignoreEos: true, ...block });
      acc.tokPerS.push(res.decodeTokensPerSecond);
      acc.prefillTokPerS.push(res.prefillTokensPerSecond);
      acc.medianStepTokPerS.push(res.medianStepTokPerS);
      log(`  decode@${p.depth8k} run ${r + 1}/${p.runs8k}: ${res.decodeTokensPerSecond.toFixed(2)} tok/s (prefill ${res.prefillTokensPerSecond.toFixed(1)} tok/s)`);
    }
  });
  const sw = streamedWeightBytes(model);
  const unquantised = (decodeMatrices(model).backend as Backend & { unquantised?: string[] }).unquantised?.length ?? 0;
  model.dispose();
  report({
    runWaits,
    wasmSha256,
    backend: info.backend,
    dtype: info.dtype,
    loadSeconds,
    loadPeakRssBytes: loadPeak,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    weightBytes: info.weightBytes,
    streamedBytes: sw.streamed,
    embedBytes: sw.embed,
    lmHeadBytes: sw.lmHead,
    kvBytesPerToken: model.config.numLayers * model.config.numKvHeads * slotBytes(p.kvDtype, model.config.headDim),
    unquantised,
    prefill,
    decode1k,
    matmul,
    rkv8k,
    full8k,
  } satisfies Omit<KvsieveResult, 'cpuSeconds'>);
}

// ---- llama.cpp -----------------------------------------------------------------------------------

interface LlamaParams extends RunParams {
  gguf: string;
}

interface LlamaResult extends ChildCpu {
  runWaits: IdleReport[];
  maxRssBytes: number;
  prefill: Phase & { tokPerS: number[] };
  decode1k: Phase & { tokPerS: number[] };
  full8k: Phase & { tokPerS: number[]; prefillAtDepthTokPerS: number[] };
}

async function childLlamaCpp(p: LlamaParams): Promise<void> {
  const log = (m: string) => console.log(m);
  const phase = <T extends object>(name: string, init: T, fn: (acc: T) => Promise<void>) => runPhase(name, init, fn, log);
  const base = { model: p.gguf, threads: p.threads, prompt: p.prompt, gen: p.decodeTokens };
  const prefill = await phase(`prefill ${p.prompt}`, { tokPerS: [] as number[] }, async (acc) => {
    await quietBeforeRun(p.maxWait, log);
    const r = await llamaCppSpeed({ ...base, depth: 0, runs: p.runs, seed: 100 });
    acc.tokPerS.push(...r.prefillRunsTokPerS);
    log(`  prefill runs: ${r.prefillRunsTokPerS.map((x) => x.toFixed(1)).join(', ')} tok/s (load ${r.loadSeconds.toFixed(1)} s)`);
  });
  // Decode at depth d: d - prompt tokens, then the prompt, then single-token steps (context d onwards).
  const decode1k = await phase(`decode at ${p.depth1k}`, { tokPerS: [] as number[] }, async (acc) => {
    for (let r = 0; r < p.runs; r++) {
      await quietBeforeRun(p.maxWait, log);
      const res = await llamaCppSpeed({ ...base, depth: p.depth1k - p.prompt, runs: 1, seed: 200 + r });
      acc.tokPerS.push(res.decodeTokPerS);
      log(`  decode@${p.depth1k} run ${r + 1}/${p.runs}: ${res.decodeTokPerS.toFixed(2)} tok/s`);
    }
  });
  const full8k = await phase(`decode at ${p.depth8k}`, { tokPerS: [] as number[], prefillAtDepthTokPerS: [] as number[] }, async (acc) => {
    for (let r = 0; r < p.runs8k; r++) {
      await quietBeforeRun(p.maxWait, log);
      const res = await llamaCppSpeed({ ...base, depth: p.depth8k - p.prompt, runs: 1, seed: 400 + r });
      acc.tokPerS.push(res.decodeTokPerS);
      acc.prefillAtDepthTokPerS.push(res.prefillTokPerS);
      log(`  decode@${p.depth8k} run ${r + 1}/${p.runs8k}: ${res.decodeTokPerS.toFixed(2)} tok/s (prefill of the last ${p.prompt}: ${res.prefillTokPerS.toFixed(1)} tok/s)`);
    }
  });
  report({ runWaits, maxRssBytes: process.resourceUsage().maxRSS * 1024, prefill, decode1k, full8k } satisfies Omit<LlamaResult, 'cpuSeconds'>);
}

// ------------------------------------------------------------------------------------------------
// the parent: models, children, tables

/** Bytes the wasm memory needs for the weights (a lower bound on what loading takes). */
function estimatedWeightBytes(config: ModelConfig, weights: WeightStorage, ggufType: GgufWeightType): number {
  const D = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const F = config.intermediateSize;
  const perLayer = qDim * D + 2 * kvDim * D + D * qDim + 3 * F * D;
  const matrices = config.numLayers * perLayer + config.vocabSize * D * (config.tieWordEmbeddings ? 1 : 2);
  return matrices * (ggufType === 'Q4_K_M' ? 160 / 256 : BYTES_PER_PARAM[weights]); // Q4_K_M: Q4_K with some Q6_K, at most 0.63 B
}

function ensureModels(shape: ModelShape, o: Options, log: (m: string) => void): { gguf: string; kvsievePath: string } {
  const wt = o.ggufType;
  const gguf = join(CACHE, `${shape}-random-${wt}.gguf`);
  if (!existsSync(gguf)) {
    log(`writing ${gguf} (random weights, ${wt}) ...`);
    const t0 = performance.now();
    writeRandomGguf(gguf, shape, wt);
    log(`  written in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  let kvsievePath = gguf;
  if (o.kvsieveModel === 'safetensors') {
    const dir = join(CACHE, 'cpu', `${shape}-random-bf16`);
    if (!existsSync(join(dir, 'model.safetensors'))) log(`writing ${dir} (random weights, BF16 safetensors) ...`);
    const t0 = performance.now();
    kvsievePath = writeRandomModel(dir, shape, 'BF16');
    log(`  ready in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  return { gguf, kvsievePath };
}

interface ShapeOutcome {
  shape: ModelShape;
  skipped?: string;
  gguf?: string;
  kvsievePath?: string;
  kvsieve?: ChildRun<KvsieveResult>;
  kvsieveError?: string;
  llamacpp?: ChildRun<LlamaResult>;
  llamacppError?: string;
  waits?: IdleReport[];
}

interface Stat {
  min: number;
  median: number;
  max: number;
  n: number;
}
const stat = (xs: readonly number[] | undefined): Stat => ({ min: min(xs ?? []), median: median(xs ?? []), max: max(xs ?? []), n: xs?.length ?? 0 });

function table(out: ShapeOutcome, o: Options, bandwidthGBs: number): { lines: string[]; json: Record<string, unknown> } {
  const k = out.kvsieve?.result;
  const l = out.llamacpp?.result;
  const lines: string[] = [];
  const boundTokPerS = k ? (bandwidthGBs * 1e9) / k.streamedBytes : NaN;
  const rows: string[][] = [];
  const head = [
    'figure', 'kvsieve min', 'kvsieve median', 'llama.cpp min', 'llama.cpp median', 'kvsieve / llama.cpp (median)',
    'kvsieve of bound', 'llama.cpp of bound', 'other CPU load (cores) kvsieve / llama.cpp',
  ];
  const speedRow = (label: string, ks: Stat, ls: Stat, bound: boolean, digits: number, kp?: Phase, lp?: Phase) => {
    rows.push([
      label,
      fmt(ks.min, digits), fmt(ks.median, digits), fmt(ls.min, digits), fmt(ls.median, digits),
      `${fmt(ratio(ks.median, ls.median), 2)}x${(kp?.otherCores ?? 0) > 0.2 || (lp?.otherCores ?? 0) > 0.2 ? ' (disturbed)' : ''}`,
      bound ? fmt(ks.median / boundTokPerS, 2) : '',
      bound ? fmt(ls.median / boundTokPerS, 2) : '',
      `${fmt(kp?.otherCores, 2)} / ${fmt(lp?.otherCores, 2)}`,
    ]);
  };
  // tok/s: "min" is the slowest run, "median" the typical one
  const kPre = stat(k?.prefill.tokPerS);
  const lPre = stat(l?.prefill.tokPerS);
  const k1 = stat(k?.decode1k.tokPerS);
  const l1 = stat(l?.decode1k.tokPerS);
  const k8 = stat(k?.full8k.tokPerS);
  const l8 = stat(l?.full8k.tokPerS);
  const kr = stat(k?.rkv8k.tokPerS);
  speedRow(`prefill ${o.prompt} tokens (tok/s)`, kPre, lPre, false, 1, k?.prefill, l?.prefill);
  speedRow(`decode at ${o.depth1k}, full cache (tok/s)`, k1, l1, true, 2, k?.decode1k, l?.decode1k);
  speedRow(`decode at ${o.depth8k}, full cache (tok/s)`, k8, l8, true, 2, k?.full8k, l?.full8k);
  speedRow(`decode at ${o.depth8k}, kvsieve r-kv ${o.budget}/${o.buffer} vs llama.cpp full (tok/s)`, kr, l8, true, 2, k?.rkv8k, l?.full8k);
  const mem = (label: string, kb: number | undefined, lb: number | undefined) =>
    rows.push([label, fmt(kb !== undefined ? kb / MiB : NaN, 0), '', fmt(lb !== undefined ? lb / MiB : NaN, 0), '', `${fmt(ratio(kb, lb), 2)}x`, '', '', '']);
  mem(`peak RSS, prefill + decode at ${o.depth1k} (MiB)`, k ? Math.max(k.prefill.memory.peakRssBytes, k.decode1k.memory.peakRssBytes) : undefined,
    l ? Math.max(l.prefill.memory.peakRssBytes, l.decode1k.memory.peakRssBytes) : undefined);
  mem(`peak RSS, decode at ${o.depth8k}, full cache (MiB)`, k?.full8k.memory.peakRssBytes, l?.full8k.memory.peakRssBytes);
  mem(`peak RSS, decode at ${o.depth8k}, kvsieve r-kv vs llama.cpp full (MiB)`, k?.rkv8k.memory.peakRssBytes, l?.full8k.memory.peakRssBytes);

  lines.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`);
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  lines.push('');
  lines.push(`Runs: prefill and decode at ${o.depth1k}: ${o.runs} per engine; decode at ${o.depth8k}: ${o.runs8k} per engine (min = slowest run). ` +
    `Memory rows: the child process's peak RSS (VmHWM) during those runs, model loaded; the ratio is kvsieve / llama.cpp (lower is less memory).`);

  const json: Record<string, unknown> = { shape: out.shape, gguf: out.gguf, kvsieveModel: out.kvsievePath };
  if (k) {
    const stepMs = median(k.matmul.stepMs);
    const mm = median(k.matmul.msPerStep);
    const overhead = (stepMs - mm) / stepMs;
    // Each step against the matmul pass right after it.
    const pairedOverhead = median(k.matmul.stepMs.map((st, i) => 1 - k.matmul.msPerStep[i + 1]! / st).filter(Number.isFinite));
    const streamMs = (k.streamedBytes / (bandwidthGBs * 1e9)) * 1000;
    const kvAt8k = k.kvBytesPerToken * o.depth8k;
    const boundWithKv8k = (bandwidthGBs * 1e9) / (k.streamedBytes + kvAt8k);
    const rkvRatio = ratio(kr.median, l8.median);
    lines.push(
      `kvsieve: ${k.backend}, ${o.kvDtype} KV cache (kernels ${k.wasmSha256}), loaded from ${out.kvsievePath} (${k.dtype}) in ${k.loadSeconds.toFixed(1)} s; ${(k.weightBytes / MiB).toFixed(0)} MiB of weights held` +
        `${k.unquantised ? ` (${k.unquantised} matrices kept f32)` : ''}, ${(k.streamedBytes / MiB).toFixed(0)} MiB streamed per decode step ` +
        `(embedding table ${(k.embedBytes / MiB).toFixed(0)} MiB left out, lm_head ${(k.lmHeadBytes / MiB).toFixed(0)} MiB in${k.embedBytes === k.lmHeadBytes && out.shape === 'qwen2.5-0.5b' ? ', tied' : ''}); ` +
        `peak RSS while loading ${(k.loadPeakRssBytes / MiB).toFixed(0)} MiB; all kvsieve runs took ${(out.kvsieve!.wallSeconds / 60).toFixed(1)} min.`,
    );
    lines.push(
      `Bandwidth bound: ${bandwidthGBs.toFixed(2)} GB/s / ${(k.streamedBytes / 1e6).toFixed(0)} MB per token = ${boundTokPerS.toFixed(2)} tok/s ` +
        `(weights only; at ${o.depth8k} a full ${o.kvDtype} cache adds ${(kvAt8k / MiB).toFixed(0)} MiB of K/V per step in kvsieve: bound with it ${boundWithKv8k.toFixed(2)} tok/s).`,
    );
    lines.push(
      `Non-matmul share of a kvsieve decode step at ${o.depth1k}, steps and their matmuls alone timed in turn (${k.matmul.stepMs.length} steps): ` +
        `step median ${stepMs.toFixed(1)} ms, matmuls alone median ${mm.toFixed(1)} ms (min ${fmt(min(k.matmul.msPerStep), 1)} ms; ${k.matmul.dispatches} dispatches, ` +
        `same matrices; streaming them at the measured bandwidth would take ${streamMs.toFixed(1)} ms) -> overhead ${(overhead * 100).toFixed(1)}% ` +
        `(norms, RoPE, attention, embedding, sampling, other dispatch; target < 10%); median over the pairs of 1 - matmuls/step: ${fmt(pairedOverhead * 100, 1)}%.`,
    );
    // Each step against the streaming of its weights right after it; each matmul pass against the one right after it.
    const ms = k.matmul;
    const stepOfStream = median(ms.stepMs.map((st, i) => ms.streamMs[i + 1]! / st).filter(Number.isFinite));
    const matmulOfStream = median(ms.msPerStep.map((m, i) => ms.streamMs[i]! / m).filter(Number.isFinite));
    if (ms.streamMs.length) {
      const streamGBs = k.streamedBytes / (median(ms.streamMs) / 1000) / 1e9;
      lines.push(
        `Decode step at ${o.depth1k} as a fraction of its bandwidth bound, measured in turn: after every step and its matmul pass, op.sum ` +
          `(four streams per thread) reads the same ${(k.streamedBytes / 1e6).toFixed(0)} MB of weights in the same ${ms.dispatches} dispatches ` +
          `(median ${median(ms.streamMs).toFixed(1)} ms, ${streamGBs.toFixed(2)} GB/s; min ${fmt(min(ms.streamMs), 1)} ms). ` +
          `Median over the pairs of stream time / step time: ${fmt(stepOfStream, 3)} (target >= 0.85 for f32 weights); ` +
          `stream time / matmul pass time: ${fmt(matmulOfStream, 3)}.`,
      );
    }
    lines.push(
      `Long reasoning at ${o.depth8k}: kvsieve r-kv (budget ${o.budget}, buffer ${o.buffer}; ${k.rkv8k.generated} tokens generated, mean over them, ` +
        `the compressions among them included; ${median(k.rkv8k.compressions)} compressions in the whole run, prompt included, ` +
        `${fmt(median(k.rkv8k.compressionSeconds) / Math.max(1, median(k.rkv8k.compressions)), 2)} s each) / llama.cpp full cache = ${fmt(rkvRatio, 2)}x (target >= 2x)` +
        `${(k.rkv8k.otherCores ?? 0) > 0.2 || (l?.full8k.otherCores ?? 0) > 0.2 ? ' — DISTURBED by other processes, not a valid comparison' : ''}` +
        `${k.rkv8k.prefillTokPerS.length ? `; kvsieve ${o.depth8k}-token prefill ${fmt(median(k.rkv8k.prefillTokPerS))} tok/s with r-kv, ${fmt(median(k.full8k.prefillTokPerS))} tok/s full` : ''}.`,
    );
    lines.push(
      `kvsieve decode figures are generated tokens over decode time (a mean, compressions included); 1 / median step instead: ` +
        `${fmt(median(k.decode1k.medianStepTokPerS), 2)} at ${o.depth1k}, ${fmt(median(k.full8k.medianStepTokPerS), 2)} at ${o.depth8k} full, ` +
        `${fmt(median(k.rkv8k.medianStepTokPerS), 2)} at ${o.depth8k} r-kv tok/s.`,
    );
    for (const [name, ph] of Object.entries({ prefill: k.prefill, decode1k: k.decode1k, matmul: k.matmul, rkv8k: k.rkv8k, full8k: k.full8k })) {
      if (ph.error) lines.push(`kvsieve ${name} failed: ${ph.error}`);
    }
    json['kvsieve'] = {
      ...k,
      stepMsAt1k: round(stepMs),
      matmulMsPerStep: round(mm),
      nonMatmulShare: round(overhead, 4),
      nonMatmulSharePaired: round(pairedOverhead, 4),
      decode1kOfStreamPaired: round(stepOfStream, 4),
      matmulOfStreamPaired: round(matmulOfStream, 4),
      boundTokPerS: round(boundTokPerS),
      boundWithKvAt8kTokPerS: round(boundWithKv8k),
      rkv8kOverLlamaCppFull8k: round(rkvRatio),
      wallSeconds: round(out.kvsieve!.wallSeconds, 1),
      otherCoresWholeChild: round(out.kvsieve!.otherCores ?? NaN, 2),
    };
  } else if (out.kvsieveError) {
    lines.push(`kvsieve failed: ${out.kvsieveError}`);
  }
  if (l) {
    lines.push(
      `llama.cpp: node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, CPU, ${o.threads} threads, f16 KV cache, flash attention auto, ${out.gguf}; ` +
        `decode = median single-token step over ${o.decodeTokens} steps; at ${o.depth8k} the last ${o.prompt} tokens were prefilled at ` +
        `${fmt(median(l.full8k.prefillAtDepthTokPerS))} tok/s; all llama.cpp runs took ${(out.llamacpp!.wallSeconds / 60).toFixed(1)} min.`,
    );
    for (const [name, ph] of Object.entries({ prefill: l.prefill, decode1k: l.decode1k, full8k: l.full8k })) {
      if (ph.error) lines.push(`llama.cpp ${name} failed: ${ph.error}`);
    }
    json['llamacpp'] = { ...l, wallSeconds: round(out.llamacpp!.wallSeconds, 1), otherCoresWholeChild: round(out.llamacpp!.otherCores ?? NaN, 2) };
  } else if (out.llamacppError) {
    lines.push(`llama.cpp failed: ${out.llamacppError}`);
  } else if (o.skipLlamacpp) {
    lines.push('llama.cpp: skipped (--skip-llamacpp): ratios are blank.');
  }
  const phases: [string, Phase][] = [
    ...(k ? ([['kvsieve prefill', k.prefill], [`kvsieve decode ${o.depth1k}`, k.decode1k], ['kvsieve matmuls', k.matmul], [`kvsieve r-kv ${o.depth8k}`, k.rkv8k], [`kvsieve full ${o.depth8k}`, k.full8k]] as [string, Phase][]) : []),
    ...(l ? ([['llama.cpp prefill', l.prefill], [`llama.cpp decode ${o.depth1k}`, l.decode1k], [`llama.cpp full ${o.depth8k}`, l.full8k]] as [string, Phase][]) : []),
  ];
  const disturbed = phases.filter(([, ph]) => (ph.otherCores ?? 0) > 0.2);
  if (phases.length) {
    lines.push(
      disturbed.length
        ? `NOT an idle machine: other processes kept cores busy during ${disturbed.map(([n, ph]) => `${n} (${fmt(ph.otherCores, 2)})`).join(', ')}; ` +
            `with ${o.threads} threads on ${availableParallelism()} cores those figures are disturbed (llama.cpp's decode steps especially): rerun when idle.`
        : `Other processes stayed under 0.2 cores during every phase (waits for an idle machine left out).`,
    );
  }
  const waitsIn = [...(k?.runWaits ?? []), ...(l?.runWaits ?? [])];
  if (waitsIn.length) {
    lines.push(
      `Waited for an idle machine before ${waitsIn.length} run(s), ${waitsIn.reduce((a, w) => a + w.waitedSeconds, 0).toFixed(0)} s in all` +
        `${waitsIn.some((w) => !w.idle) ? `; ${waitsIn.filter((w) => !w.idle).length} of them ran on a busy machine after ${o.maxWait} s` : ''}.`,
    );
  }
  for (const w of out.waits ?? []) if (!w.idle) lines.push(`Before a child: machine still busy after waiting ${w.waitedSeconds.toFixed(0)} s (${w.busyCores.toFixed(2)} cores busy).`);
  json['ratios'] = {
    prefill: round(ratio(kPre.median, lPre.median)),
    decode1k: round(ratio(k1.median, l1.median)),
    decode8kFull: round(ratio(k8.median, l8.median)),
    decode8kRkvOverFull: round(ratio(kr.median, l8.median)),
    decode1kOfBound: round(k1.median / boundTokPerS),
    decode8kFullOfBound: round(k8.median / boundTokPerS),
    llamacppDecode1kOfBound: round(l1.median / boundTokPerS),
  };
  return { lines, json };
}

/** Which kernels and sources were measured: the .wasm's hash and build time, the git commit and whether the tree differs from it. */
function buildInfo(): { wasm: string; wasmSha256: string | null; wasmBuilt: string | null; git: string | null; dirty: boolean | null } {
  const wasm = kernelWasmPath();
  let wasmSha256: string | null = null;
  let wasmBuilt: string | null = null;
  try {
    wasmSha256 = createHash('sha256').update(readFileSync(wasm)).digest('hex').slice(0, 12);
    wasmBuilt = statSync(wasm).mtime.toISOString();
  } catch {
    // missing: the kvsieve child will say so
  }
  const git = (args: string[]) => {
    const r = spawnSync('git', args, { cwd: REPO, encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const head = git(['rev-parse', '--short', 'HEAD']);
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  return { wasm, wasmSha256, wasmBuilt, git: head, dirty: status === null ? null : status.length > 0 };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const log = (m: string) => console.error(m);
  const tStart = performance.now();
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  log(`kvsieve CPU benchmark: ${o.shapes.join(', ')}, ${o.weights} weights (GGUF ${o.ggufType}), ${o.threads} threads, ${o.quick ? 'quick' : 'full'} (${availableParallelism()} cores, ${cpu})`);

  const build = buildInfo();
  const idle = await waitForIdle(o.maxWait, log);
  log(idle.idle
    ? `machine idle (${idle.busyCores.toFixed(2)} cores busy)`
    : `machine still busy after ${idle.waitedSeconds.toFixed(0)} s (${idle.busyCores.toFixed(2)} cores busy, load average ${idle.loadavg.map((x) => x.toFixed(2)).join(' ')}); measuring anyway`);

  if (!o.skipLlamacpp) await ensureNodeLlamaCpp(log);

  const bw0 = await runChild<BandwidthResult>('bandwidth', { threads: o.threads }, 'bandwidth');
  log(`read bandwidth (op.sum, ${(bw0.result.bytes / MiB).toFixed(0)} MiB, ${o.threads} threads): ${bw0.result.fourStreamGBs.toFixed(2)} GB/s four streams, ${bw0.result.oneStreamGBs.toFixed(2)} GB/s one`);

  const outcomes: ShapeOutcome[] = [];
  for (const shape of o.shapes) {
    const config = parseHfConfig(MODEL_SHAPES[shape] as unknown as Record<string, unknown>, `shape ${shape}`);
    const need = estimatedWeightBytes(config, o.weights, o.ggufType);
    if (need + 64 * MiB > WASM_MAX_BYTES) {
      const note = `${o.weights} weights of ${shape} take ${(need / GiB).toFixed(2)} GiB, more than wasm32's 4 GiB memory: skipped`;
      log(note);
      outcomes.push({ shape, skipped: note });
      continue;
    }
    const kvAt8k = kvBytesPerToken(config) * (o.depth8k + o.buffer + o.decodeTokens);
    if (need + kvAt8k + 64 * MiB > WASM_MAX_BYTES) log(`note: ${shape} with ${o.weights} weights and a full f32 cache at ${o.depth8k} may not fit wasm32's 4 GiB`);
    const { gguf, kvsievePath } = ensureModels(shape, o, log);
    const out: ShapeOutcome = { shape, gguf, kvsievePath };
    const common: RunParams = { maxWait: o.maxWait, threads: o.threads, prompt: o.prompt, depth1k: o.depth1k, depth8k: o.depth8k, runs: o.runs, runs8k: o.runs8k, decodeTokens: o.decodeTokens };
    out.waits = [];
    if (!o.skipLlamacpp) {
      out.waits.push(await waitForIdle(o.maxWait, log));
      log(`${shape}: llama.cpp ...`);
      try {
        out.llamacpp = await runChild<LlamaResult>('llamacpp', { gguf, ...common } satisfies LlamaParams, `llama.cpp ${shape}`);
      } catch (e) {
        out.llamacppError = (e as Error).message;
      }
    }
    out.waits.push(await waitForIdle(o.maxWait, log));
    log(`${shape}: kvsieve ...`);
    try {
      out.kvsieve = await runChild<KvsieveResult>(
        'kvsieve',
        { path: kvsievePath, weights: o.ggufType === 'Q4_K_M' ? 'stored' : o.weights, budget: o.budget, buffer: o.buffer, prefillBlock: o.prefillBlock, kvDtype: o.kvDtype, ...common } satisfies KvsieveParams,
        `kvsieve ${shape}`,
      );
    } catch (e) {
      out.kvsieveError = (e as Error).message;
    }
    outcomes.push(out);
  }

  const bw1 = await runChild<BandwidthResult>('bandwidth', { threads: o.threads }, 'bandwidth');
  const bandwidth = Math.max(bw0.result.fourStreamGBs, bw1.result.fourStreamGBs);
  const minutes = (performance.now() - tStart) / 60000;

  const print = (s = '') => console.log(s);
  print();
  print(`## kvsieve vs llama.cpp on CPU (${o.weights}, GGUF ${o.ggufType}, ${o.threads} threads${o.quick ? ', quick: small depths' : ''})`);
  print();
  print(`Machine: ${availableParallelism()} cores, ${cpu}, Node ${process.version}. ` +
    (idle.idle ? `Idle at the start (${idle.busyCores.toFixed(2)} cores busy over 2 s${idle.waitedSeconds > 2.5 ? `, after waiting ${idle.waitedSeconds.toFixed(0)} s` : ''}).`
      : `NOT idle at the start: ${idle.busyCores.toFixed(2)} cores busy after waiting ${idle.waitedSeconds.toFixed(0)} s (load average ${idle.loadavg.map((x) => x.toFixed(2)).join(' ')}).`));
  print(`Kernels: ${build.wasm} sha256 ${build.wasmSha256 ?? '?'} (built ${build.wasmBuilt ?? '?'}); git ${build.git ?? '?'}` +
    `${build.dirty ? ' with uncommitted changes to tracked files' : ''}.`);
  print(`Read bandwidth (wasm op.sum over ${(bw0.result.bytes / MiB).toFixed(0)} MiB, ${o.threads} threads, four streams per thread, best pass): ` +
    `${bw0.result.fourStreamGBs.toFixed(2)} GB/s at the start, ${bw1.result.fourStreamGBs.toFixed(2)} GB/s at the end; the bound uses ${bandwidth.toFixed(2)} GB/s ` +
    `(one stream: ${bw0.result.oneStreamGBs.toFixed(2)} / ${bw1.result.oneStreamGBs.toFixed(2)} GB/s).`);
  const all: Record<string, unknown>[] = [];
  for (const out of outcomes) {
    print();
    print(`### ${out.shape}`);
    print();
    if (out.skipped) {
      print(`Skipped: ${out.skipped}.`);
      all.push({ shape: out.shape, skipped: out.skipped });
      continue;
    }
    const t = table(out, o, bandwidth);
    for (const line of t.lines) print(line);
    all.push(t.json);
  }
  print();
  print(`Took ${minutes.toFixed(1)} min.`);
  print(
    JSON.stringify({
      bench: 'cpu',
      options: o,
      machine: { cores: availableParallelism(), cpu, node: process.version },
      build,
      idle,
      bandwidthGBs: { start: bw0.result, end: bw1.result, used: bandwidth },
      minutes: round(minutes, 2),
      shapes: all,
    }),
  );
}

// ------------------------------------------------------------------------------------------------

async function child(kind: string, params: string): Promise<void> {
  const p: unknown = JSON.parse(params);
  if (kind === 'bandwidth') return childBandwidth(p as { threads: number });
  if (kind === 'kvsieve') return childKvsieve(p as KvsieveParams);
  if (kind === 'llamacpp') return childLlamaCpp(p as LlamaParams);
  throw new KvsieveError(`unknown child ${kind}`);
}

const argv = process.argv.slice(2);
const run = argv[0] === '--child' ? child(argv[1]!, argv[2]!) : main();
run.then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof KvsieveError ? `error: ${e.message}` : e);
    process.exit(1);
  },
);
