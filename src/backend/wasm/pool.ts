/**
 * A pool of worker threads running the kernel module on the same shared WebAssembly.Memory: Node's
 * worker threads (node.ts spawns them) or a browser's Web Workers (browser.ts).
 *
 * dispatch(job): bumps a generation counter (notifying only workers that went to sleep), runs
 * the calling thread's share (the ranges of rows it claims; asm/index.ts run), then waits for the workers' done count: a short spin, then
 * Atomics.wait. Idle workers likewise spin for `spinMicros` (250 us) after each job and then sleep in
 * Atomics.wait, so a pool between tokens costs no CPU and back-to-back dispatches inside a step
 * skip the futex wake-up. A trap in a worker is caught there, recorded, and rethrown by dispatch()
 * after the barrier as an InternalError.
 *
 * The worker body is an inline script (no file to locate, identical under tsx, in dist/ and in a
 * bundle): `start(data)` with the module, the memory and the control buffers, which the spawner's
 * prelude calls (workerSource). This file is platform-neutral; the Node-only part of the wasm backend
 * is node.ts.
 */
import { InternalError, KvsieveError } from '../../core/errors.js';
import { Kernels, type Dispatcher, type KernelsOptions } from './kernels.js';
import type { WasmMemory, WasmModule } from './wasm-api.js';

// Control words (Int32Array over a SharedArrayBuffer).
const GEN = 0; // job generation, bumped per dispatch
const DONE = 1; // workers finished with the current generation
const SLEEPERS = 2; // workers inside Atomics.wait on GEN
const CMD = 3; // 0 run, 1 exit
const JOB = 4; // job pointer
const ERR = 5; // 0, or 1 + tid of the first worker that failed
const ERR_LEN = 6; // bytes of its message in the error area
const READY = 7; // workers instantiated
const SLEEPS = 8; // times a worker went to sleep waiting for a job (diagnostics)
const MEM = 9; // which of the pool's memories the job is in (its instance runs it)
const CTRL_WORDS = 16;
const DEFAULT_SPIN_MICROS = 250;
const ERR_BYTES = 1024;

const WORKER_START = `
'use strict';
function start({ module, memories, ctrlBuf, errBuf, tid, threads, spinMicros }) {
const ctrl = new Int32Array(ctrlBuf);
const errText = new Uint8Array(errBuf);
const GEN = ${GEN}, DONE = ${DONE}, SLEEPERS = ${SLEEPERS}, CMD = ${CMD}, JOB = ${JOB}, ERR = ${ERR}, ERR_LEN = ${ERR_LEN}, READY = ${READY}, SLEEPS = ${SLEEPS}, MEM = ${MEM};
const runs = memories.map((memory) => new WebAssembly.Instance(module, { env: { memory } }).exports.run);
let gen = Atomics.load(ctrl, GEN);
Atomics.add(ctrl, READY, 1);
Atomics.notify(ctrl, READY);
for (;;) {
  let g = Atomics.load(ctrl, GEN);
  if (g === gen) {
    const until = performance.now() + spinMicros / 1000;
    let spins = 0;
    while ((g = Atomics.load(ctrl, GEN)) === gen) {
      if ((++spins & 255) === 0 && performance.now() > until) {
        Atomics.add(ctrl, SLEEPERS, 1);
        Atomics.add(ctrl, SLEEPS, 1);
        Atomics.wait(ctrl, GEN, gen);
        Atomics.sub(ctrl, SLEEPERS, 1);
      }
    }
  }
  gen = g;
  if (Atomics.load(ctrl, CMD) === 1) break;
  try {
    runs[Atomics.load(ctrl, MEM)](Atomics.load(ctrl, JOB), tid, threads);
  } catch (e) {
    if (Atomics.compareExchange(ctrl, ERR, 0, tid + 1) === 0) {
      const r = new TextEncoder().encodeInto(String(e && e.message || e), errText);
      Atomics.store(ctrl, ERR_LEN, r.written);
    }
  }
  if (Atomics.add(ctrl, DONE, 1) === threads - 2) Atomics.notify(ctrl, DONE);
}
}
`;

/** A worker's script: the pool's `start(data)`, then `prelude`, which hands the worker its data. */
export function workerSource(prelude: string): string {
  return `${WORKER_START}\n${prelude}\n`;
}

/** What each worker is started with (structured-cloned to it). */
export interface PoolWorkerData {
  module: WasmModule;
  /** The memories jobs run in: the worker instantiates the module once over each. */
  memories: WasmMemory[];
  ctrlBuf: SharedArrayBuffer;
  errBuf: SharedArrayBuffer;
  tid: number;
  threads: number;
  spinMicros: number;
}

/** One started worker, as the pool sees it. */
export interface PoolThread {
  /** Rejects when the worker fails to start or run (never resolves otherwise). */
  failed: Promise<never>;
  /** Ends the worker once it has left its loop (after the pool's exit command). */
  stop(): Promise<void>;
  /** Called once every worker has started: lets an idle worker not keep the process alive (Node). */
  unref?(): void;
}

/** Starts a worker running `workerSource(...)` with `data`: Node's in node.ts, Web Workers' in browser.ts. */
export type SpawnWorker = (data: PoolWorkerData) => PoolThread;

/** Atomics.waitAsync (Node 20 has it; lib ES2022 does not declare it). */
function waitAsync(a: Int32Array, i: number, v: number, timeoutMs: number): Promise<unknown> {
  const r = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { value: unknown } })
    .waitAsync(a, i, v, timeoutMs);
  return Promise.resolve(r.value);
}

export interface WorkerPoolOptions {
  /** How workers are started (node.ts: worker threads; browser.ts: Web Workers). */
  spawn: SpawnWorker;
  module: WasmModule;
  /**
   * The memory jobs run in; or several (a model split over several wasm memories): each worker
   * instantiates the module once over each, and one pool serves them all (dispatchOn).
   */
  memory: WasmMemory | readonly WasmMemory[];
  /** Threads in all, the dispatching one included (so threads - 1 workers); at least 2. */
  threads: number;
  /** Runs share tid of a job in the (first) memory on the dispatching thread (Kernels.runShare). */
  runShare: (jobPtr: number, tid: number, nThreads: number) => void;
  /**
   * How long idle threads spin before sleeping, in microseconds (default 250). Within a decode step the
   * gaps between parallel jobs (JS between kernels, a garbage collection) often pass 50 us: with a 50 us
   * spin the workers of a Qwen2.5-0.5B-shaped model slept 16.5 times per token, with 250 us about 3 (the
   * gaps between tokens), each sleep costing a futex wake-up on the next job.
   */
  spinMicros?: number;
}

export class WorkerPool implements Dispatcher {
  readonly threads: number;
  private readonly ctrl: Int32Array;
  private readonly errText: Uint8Array;
  private readonly workers: PoolThread[];
  private readonly runShare: WorkerPoolOptions['runShare'];
  private readonly spinMs: number;
  private disposed = false;

  private constructor(o: WorkerPoolOptions, ctrl: Int32Array, errText: Uint8Array, workers: PoolThread[]) {
    this.threads = o.threads;
    this.ctrl = ctrl;
    this.errText = errText;
    this.workers = workers;
    this.runShare = o.runShare;
    this.spinMs = (o.spinMicros ?? DEFAULT_SPIN_MICROS) / 1000;
  }

  /** Starts threads - 1 workers and waits until each has instantiated the module. */
  static async start(o: WorkerPoolOptions): Promise<WorkerPool> {
    if (!(Number.isInteger(o.threads) && o.threads >= 2 && o.threads <= 256)) {
      throw new InternalError(`wasm pool: threads must be an integer 2..256, got ${o.threads}`);
    }
    const ctrlBuf = new SharedArrayBuffer(CTRL_WORDS * 4);
    const errBuf = new SharedArrayBuffer(ERR_BYTES);
    const ctrl = new Int32Array(ctrlBuf);
    const workers: PoolThread[] = [];
    for (let tid = 1; tid < o.threads; tid++) {
      const memories = Array.isArray(o.memory) ? [...(o.memory as readonly WasmMemory[])] : [o.memory as WasmMemory];
      workers.push(o.spawn({ module: o.module, memories, ctrlBuf, errBuf, tid, threads: o.threads, spinMicros: o.spinMicros ?? DEFAULT_SPIN_MICROS }));
    }
    const failures = workers.map((w, i) =>
      w.failed.catch((e: unknown) => {
        throw new InternalError(`wasm pool: worker ${i + 1} failed to start: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }),
    );
    const ready = (async () => {
      for (;;) {
        const n = Atomics.load(ctrl, READY);
        if (n === o.threads - 1) return;
        await waitAsync(ctrl, READY, n, 10_000);
      }
    })();
    try {
      await Promise.race([ready, ...failures]);
    } catch (e) {
      Atomics.store(ctrl, CMD, 1); // those that did start leave their loop
      Atomics.add(ctrl, GEN, 1);
      Atomics.notify(ctrl, GEN);
      await Promise.all(workers.map((w) => w.stop()));
      throw e;
    }
    // Idle workers must not keep the process alive; dispose() is still the clean way out.
    for (const w of workers) w.unref?.();
    return new WorkerPool(o, ctrl, new Uint8Array(errBuf), workers);
  }

  /** Times workers have gone to sleep waiting for a job since the pool started (each costs a futex wake-up). */
  get sleeps(): number {
    return Atomics.load(this.ctrl, SLEEPS);
  }

  /** Jobs dispatched since the pool started. */
  get dispatches(): number {
    return Atomics.load(this.ctrl, GEN);
  }

  dispatch(jobPtr: number): void {
    this.dispatchOn(0, jobPtr, this.runShare);
  }

  /**
   * The dispatcher of the pool's memory `memory` (a Kernels over it takes it): jobs in that memory,
   * run on the calling thread by its own `runShare`. Disposing it disposes the pool.
   */
  dispatcherFor(memory: number, runShare: WorkerPoolOptions['runShare']): Dispatcher {
    const pool = this;
    return {
      threads: this.threads,
      dispatch: (jobPtr) => this.dispatchOn(memory, jobPtr, runShare),
      get dispatches() {
        return pool.dispatches;
      },
      get sleeps() {
        return pool.sleeps;
      },
      dispose: () => this.dispose(),
    };
  }

  /** Runs a job that lives in memory `memory` (0 for a pool over one memory) on every thread. */
  dispatchOn(memory: number, jobPtr: number, runShare: WorkerPoolOptions['runShare']): void {
    if (this.disposed) throw new KvsieveError('wasm pool: used after dispose()');
    const c = this.ctrl;
    const nWorkers = this.threads - 1;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, JOB, jobPtr | 0);
    Atomics.store(c, MEM, memory);
    Atomics.add(c, GEN, 1);
    if (Atomics.load(c, SLEEPERS) > 0) Atomics.notify(c, GEN);
    let failure: unknown = null;
    try {
      runShare(jobPtr, 0, this.threads);
    } catch (e) {
      failure = e;
    }
    // Barrier: spin briefly, then sleep until the last worker notifies.
    let d = Atomics.load(c, DONE);
    if (d !== nWorkers) {
      const until = performance.now() + this.spinMs;
      let spins = 0;
      while ((d = Atomics.load(c, DONE)) !== nWorkers) {
        if ((++spins & 255) === 0 && performance.now() > until) break;
      }
      while ((d = Atomics.load(c, DONE)) !== nWorkers) Atomics.wait(c, DONE, d);
    }
    // Every worker is past its share: read and clear a worker failure before reporting any.
    const err = Atomics.load(c, ERR);
    let workerFailure: InternalError | null = null;
    if (err !== 0) {
      const msg = new TextDecoder().decode(this.errText.slice(0, Atomics.load(c, ERR_LEN)));
      Atomics.store(c, ERR, 0);
      workerFailure = new InternalError(`wasm kernel failed in worker ${err - 1}: ${msg}`);
    }
    if (failure) throw failure;
    if (workerFailure) throw workerFailure;
  }

  /** Stops the workers (they finish nothing: dispatch is synchronous, so none is mid-job). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const c = this.ctrl;
    Atomics.store(c, CMD, 1);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    await Promise.all(this.workers.map((w) => w.stop()));
  }
}

/**
 * Kernels over `module` on a fresh shared memory, with a pool of threads - 1 workers started by
 * `spawn` when threads > 1 (the calling thread computes as one of them). node.ts and browser.ts check
 * their platform's limits and call this.
 */
export async function startKernels(module: WasmModule, o: KernelsOptions & { spinMicros?: number }, threads: number, spawn: SpawnWorker): Promise<Kernels> {
  const k = new Kernels(module, o);
  if (threads > 1) {
    const pool = await WorkerPool.start({
      spawn,
      module,
      memory: k.memory,
      threads,
      runShare: k.runShare,
      ...(o.spinMicros !== undefined ? { spinMicros: o.spinMicros } : {}),
    });
    k.setDispatcher(pool);
  }
  return k;
}

/**
 * `count` Kernels, each over a fresh shared memory of its own (a model split over several wasm
 * memories), served by one pool of threads - 1 workers when threads > 1: each worker holds one
 * instance of the module per memory, and a job runs on the instance of the memory it lives in. One
 * pool rather than one per memory: the memories run one after another (layer groups), so a second
 * pool would only spin or sleep beside the first.
 */
export async function startKernelSet(module: WasmModule, o: KernelsOptions & { spinMicros?: number }, count: number, threads: number, spawn: SpawnWorker): Promise<Kernels[]> {
  const set = Array.from({ length: count }, () => new Kernels(module, o));
  if (threads > 1) {
    const pool = await WorkerPool.start({
      spawn,
      module,
      memory: set.map((k) => k.memory),
      threads,
      runShare: set[0]!.runShare,
      ...(o.spinMicros !== undefined ? { spinMicros: o.spinMicros } : {}),
    });
    set.forEach((k, i) => k.setDispatcher(pool.dispatcherFor(i, k.runShare)));
  }
  return set;
}
