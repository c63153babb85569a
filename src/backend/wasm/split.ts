/**
 * A model larger than one wasm memory: the model is split in parts, each a WasmBackend over a memory
 * of its own (wasm32: at most 4 GiB each), all served by one worker pool (pool.ts startKernelSet).
 *
 *   plan:   the embedding, the layers in order, and the final norm + lm_head (with the embedding when
 *           tied) are cut into consecutive parts, as few as fit and then as even in bytes as they can
 *           be; each part's bytes are its weights plus the activations of a block of rows (planParts)
 *   run:    LlamaModel asks partFor(layer) / partFor('embed') / partFor('head') for the part that runs
 *           each stage; the residual rows [T, D] are copied into the next part's memory where the part
 *           changes; each layer's KV slots and attention sums come from its part's allocator
 *
 * SplitBackend is itself a Backend: its operations go to the part that holds their arrays, so a
 * caller that mixes memories gets an InternalError, never a kernel reading another memory's offsets.
 */
import type {
  AttentionArgs, Backend, EmbedArgs, GateUpArgs, MatmulArgs, MemoryUsage, QkvArgs, RmsnormArgs, RopeArgs, ScoreKernels, Weight,
} from '../backend.js';
import { InternalError, KvsieveError } from '../../core/errors.js';
import type { ModelConfig } from '../../core/model-config.js';
import { JOB_HEADER, MAX_TASKS, TASK_BYTES, weightRowBytes, type WeightType } from './abi.js';
import { heldWeightType, WasmBackend } from './backend.js';
import type { Kernels } from './kernels.js';

/** Bytes of one wasm32 memory at most (65536 pages of 64 KiB). */
export const MAX_MEMORY_BYTES = 2 ** 32;

/** Which part holds what: layerPart[l] for each layer, and the parts of the embedding and of the head. */
export interface PartPlan {
  parts: number;
  layerPart: number[];
  embedPart: number;
  headPart: number;
  /** Estimated bytes of each part (weights, activations of `rows` rows, the kernels' own areas). */
  partBytes: number[];
}

/** Token rows whose activations a part is sized for (a prefill block: Sequence's default prefillBlock). */
const PLAN_ROWS = 64;

/**
 * Share of each memory the plan fills at most: the rest is for what grows as sequences run (the
 * layers' KV slots, attention sums and the attention kernel's scratch, which grow with the context).
 */
export const PLAN_FILL = 0.75;

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/** Context length the attention kernel's scratch is sized for in the plan (it grows past it into the room left). */
const PLAN_CONTEXT = 4096;

/**
 * Bytes of a part besides its weights: the module's static data (1 KiB below the heap) and the
 * kernels' own areas (job, tables: 64 KiB allowed), the forward's activations for `rows` rows
 * (LlamaModel's Scratch), and the kernels' per-thread scratch (asm/index.ts task_scratch: the
 * quantised input rows and the gate-up chunks of a block, or attention's scores over PLAN_CONTEXT
 * slots), twice over for what its growth leaves behind (Kernels.ensureScratch).
 */
function partOverhead(c: ModelConfig, weights: WeightType, rows: number, threads: number): number {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const moe = c.moe ? c.moe.numExperts + 2 * c.hiddenSize + 2 * c.moe.expertFfn : 0; // router, expert rows in and out, gate, up
  const floats = rows * (2 * c.hiddenSize + 2 * qDim + 2 * kvDim + 2 * c.intermediateSize + (c.ropeLocalTheta !== undefined ? 2 : 1) * c.headDim + moe);
  const widest = Math.max(c.hiddenSize, qDim, c.intermediateSize);
  const quantisedRows = weights === 'q8_0' || weights === 'q4_0' ? Math.ceil(widest / 32) * rows * 72 + (1 << 16) : 0;
  const gateUpChunks = 2 * 512 * 4 * rows;
  const scores = (c.numHeads / c.numKvHeads) * PLAN_CONTEXT * 4 + 32 * c.headDim * 4;
  const perThread = align64(Math.max(quantisedRows + gateUpChunks, scores));
  return (1 << 16) + align64(JOB_HEADER + MAX_TASKS * TASK_BYTES) + 12 * 64 + floats * 4 + 2 * threads * perThread;
}

/**
 * The parts of a model of config `c` whose matrices are stored as `weights` (or, given `heldOf`, as
 * heldOf says of each matrix by its HF name and columns: a GGUF's K-quant and MXFP4 matrices kept as
 * stored), run on `threads` threads, each part at most
 * PLAN_FILL of `maxBytes`: consecutive stages (embedding, layers, head), the fewest parts that fit,
 * then balanced so that the largest part is as small as it can be with that many parts. One layer (or
 * the embedding, or the head) that does not fit a part on its own is a KvsieveError naming `option`.
 */
export function planParts(
  c: ModelConfig, weights: WeightType, maxBytes: number, threads: number, option = 'maxBytesPerMemory',
  heldOf?: (name: string, cols: number) => WeightType,
): PartPlan {
  const fill = Math.floor(PLAN_FILL * Math.floor(maxBytes / 65536) * 65536); // a memory grows in whole 64 KiB pages
  const storage = (name: string, cols: number): WeightType =>
    heldOf ? heldOf(name, cols) : (weights === 'q8_0' || weights === 'q4_0') && cols % 32 !== 0 ? 'f32' : weights;
  const matrix = (name: string, rows: number, cols: number): number => align64(weightRowBytes(storage(name, cols), cols) * rows);
  const vector = (n: number): number => align64(n * 4);
  const D = c.hiddenSize;
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  const F = c.intermediateSize;
  const m = c.moe;
  // A layer's matrices by their HF names (a GGUF's stacked experts: one name for all of them).
  const layerBytes = (l: number): number => {
    const at = (name: string, rows: number, cols: number) => matrix(`model.layers.${l}.${name}.weight`, rows, cols);
    const attention =
      at('self_attn.q_proj', qDim, D) + at('self_attn.k_proj', kvDim, D) + at('self_attn.v_proj', kvDim, D) + at('self_attn.o_proj', D, qDim) +
      (c.sandwichNorms ? 4 : 2) * vector(D) +
      (c.qkvBias ? vector(qDim) + 2 * vector(kvDim) : 0) + (c.oBias ? vector(D) : 0) + (c.qkNorm ? 2 * vector(c.headDim) : 0);
    if (m?.layers[l]) {
      const experts = m.numExperts * (at('mlp.experts.gate_proj', m.expertFfn, D) + at('mlp.experts.up_proj', m.expertFfn, D) + at('mlp.experts.down_proj', D, m.expertFfn));
      return attention + at('mlp.gate', m.numExperts, D) + experts;
    }
    return attention + at('mlp.gate_proj', F, D) + at('mlp.up_proj', F, D) + at('mlp.down_proj', D, F) + (c.mlpBias ? 2 * vector(F) + vector(D) : 0);
  };
  // The head: its norm, the rows it takes and their logits (and lm_head unless tied to the embedding).
  const headBytes = vector(D) + vector(PLAN_ROWS * D) + vector(PLAN_ROWS * c.vocabSize) + (c.tieWordEmbeddings ? 0 : matrix('lm_head.weight', c.vocabSize, D));
  // Stages in forward order; a tied head goes with the embedding it reads.
  const stages: { what: string; bytes: number }[] = [
    { what: 'the embedding', bytes: matrix('model.embed_tokens.weight', c.vocabSize, D) + (c.tieWordEmbeddings ? headBytes : 0) },
    ...Array.from({ length: c.numLayers }, (_, l) => ({ what: `layer ${l}`, bytes: layerBytes(l) })),
    ...(c.tieWordEmbeddings ? [] : [{ what: 'the final norm and lm_head', bytes: headBytes }]),
  ];
  const overhead = partOverhead(c, weights, PLAN_ROWS, threads);
  for (const s of stages) {
    if (overhead + s.bytes > fill) {
      throw new KvsieveError(
        `${option}: ${s.what} needs about ${overhead + s.bytes} bytes with its activations, more than ${PLAN_FILL * 100}% of one memory's ${maxBytes} (the rest is for its KV cache)`,
        { option },
      );
    }
  }
  // Greedy: each part takes stages while they fit under `limit`; the part index of every stage.
  const cut = (limit: number): number[] => {
    const at: number[] = [];
    let part = 0;
    let used = overhead;
    for (const s of stages) {
      if (used + s.bytes > limit && used > overhead) {
        part++;
        used = overhead;
      }
      used += s.bytes;
      at.push(part);
    }
    return at;
  };
  const fewest = cut(fill);
  const parts = fewest[fewest.length - 1]! + 1;
  // The smallest limit that still needs no more parts: every part as close to the mean as stages allow.
  let lo = Math.max(...stages.map((s) => overhead + s.bytes));
  let hi = fill;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (cut(mid)[stages.length - 1]! + 1 <= parts) hi = mid;
    else lo = mid + 1;
  }
  const at = cut(lo);
  const partBytes = new Array<number>(parts).fill(overhead);
  stages.forEach((s, i) => (partBytes[at[i]!]! += s.bytes));
  const layerPart = at.slice(1, 1 + c.numLayers);
  return { parts, layerPart, embedPart: at[0]!, headPart: c.tieWordEmbeddings ? at[0]! : at[stages.length - 1]!, partBytes };
}

export interface WasmBackendFor {
  threads?: number;
  /** Storage of the weight matrices (default q8_0). */
  weights?: WeightType;
  /** Quantised matrices as the file stores them (WasmBackendOptions.keepStoredQuants). */
  keepStoredQuants?: boolean;
  /** Q4_K / Q5_K / Q6_K matrices as the file stores them, the rest `weights` (WasmBackendOptions.keepStoredKQuants). */
  keepStoredKQuants?: boolean;
  /** Bytes one wasm memory may hold (default and most: 4 GiB); a model that needs more is split over several. */
  maxBytesPerMemory?: number;
  /**
   * The ggml type a GGUF stores a matrix as, by its HF name (null: not in the file), so that the split
   * plan sizes the matrices kept as stored (K-quants, MXFP4) at their own bytes; left out, every matrix
   * is sized as `weights`.
   */
  storedType?: (name: string) => string | null;
}

/**
 * The wasm backend for a model of config `c`, on kernels from `start` (count memories of at most
 * maxBytes each, one worker pool for all; Node's and the browser's entries each give theirs): one
 * WasmBackend when the plan has one part, else a SplitBackend over its parts.
 */
export async function createPlannedBackend(
  c: ModelConfig, o: WasmBackendFor & { threads: number }, start: (count: number, maxBytes: number) => Promise<Kernels[]>,
): Promise<WasmBackend | SplitBackend> {
  const maxBytes = o.maxBytesPerMemory ?? MAX_MEMORY_BYTES;
  if (!(Number.isInteger(maxBytes) && maxBytes >= 1 << 16 && maxBytes <= MAX_MEMORY_BYTES)) {
    throw new KvsieveError(`maxBytesPerMemory must be a whole number of bytes from 64 KiB to 4 GiB, got ${JSON.stringify(o.maxBytesPerMemory)}`, { option: 'maxBytesPerMemory' });
  }
  const weights = o.weights ?? 'q8_0';
  const backendOptions = { weights, ...(o.keepStoredQuants ? { keepStoredQuants: true } : {}), ...(o.keepStoredKQuants ? { keepStoredKQuants: true } : {}) };
  const storedType = o.storedType;
  const heldOf = storedType ? (name: string, cols: number) => heldWeightType(storedType(name), cols, backendOptions) : undefined;
  const plan = planParts(c, weights, maxBytes, o.threads, 'maxBytesPerMemory', heldOf);
  const set = await start(plan.parts, maxBytes);
  if (plan.parts === 1) return new WasmBackend(set[0]!, backendOptions);
  return new SplitBackend(set.map((k) => new WasmBackend(k, backendOptions)), plan);
}

/**
 * The Backend of a model split over several wasm memories: partFor names the part of each stage; the
 * operations themselves go to the part holding their arrays (see the file comment).
 */
export class SplitBackend implements Backend {
  readonly name = 'wasm';
  readonly scoreKernels: ScoreKernels;

  constructor(
    readonly parts: readonly WasmBackend[],
    readonly plan: PartPlan,
  ) {
    if (parts.length !== plan.parts || parts.length < 1) throw new InternalError(`split backend: ${parts.length} parts for a plan of ${plan.parts}`);
    this.scoreKernels = {
      dots: (a, rows, keys, n, d, scale, out) => this.scorer(keys).scoreKernels.dots(a, rows, keys, n, d, scale, out),
      redundancy: (keys, lengths, d, threshold, out) => (keys.length === 0 ? undefined : this.scorer(keys[0]!).scoreKernels.redundancy(keys, lengths, d, threshold, out)),
    };
  }

  get weightType(): WeightType {
    return this.parts[0]!.weightType;
  }

  get heldTypes(): Set<WeightType> {
    return new Set(this.parts.flatMap((p) => [...p.heldTypes]));
  }

  get threads(): number {
    return this.parts[0]!.threads;
  }

  /** Matrices kept in f32, over all parts. */
  get unquantised(): string[] {
    return this.parts.flatMap((p) => p.unquantised);
  }

  partFor(of: number | 'embed' | 'head'): WasmBackend {
    const p = this.plan;
    const i = of === 'embed' ? p.embedPart : of === 'head' ? p.headPart : p.layerPart[of];
    if (i === undefined) throw new InternalError(`split backend: no layer ${String(of)} (the plan has ${p.layerPart.length})`);
    return this.parts[i]!;
  }

  /**
   * The part that scores keys `a`: the one whose memory holds them (read in place), else the first
   * (keys decoded from an f16 or int8 cache live in none of the memories; a part copies them in).
   */
  private scorer(a: ArrayBufferView): WasmBackend {
    return this.parts.find((p) => p.holds(a)) ?? this.parts[0]!;
  }

  /** The part whose memory holds `a` (an InternalError for an array in none of them). */
  private holding(a: ArrayBufferView): WasmBackend {
    const part = this.parts.find((p) => p.holds(a));
    if (!part) throw new InternalError('split backend: an array is in none of the parts\' memories (allocate through partFor)');
    return part;
  }

  allocF32(n: number): Float32Array {
    return this.parts[0]!.allocF32(n);
  }

  freeF32(a: Float32Array): void {
    for (const p of this.parts) if (p.holds(a)) return p.freeF32(a);
  }

  memoryUsage(): MemoryUsage {
    const layers = new Array<number>(this.parts.length).fill(0);
    for (const i of this.plan.layerPart) layers[i]!++;
    const parts = this.parts.map((p, i) => ({ ...p.memoryUsage(), layers: layers[i]! }));
    return {
      limitBytes: parts.reduce((s, p) => s + p.limitBytes, 0),
      usedBytes: parts.reduce((s, p) => s + p.usedBytes, 0),
      parts,
    };
  }

  takesStored(type: string, cols: number): boolean {
    return this.parts[0]!.takesStored(type, cols);
  }

  weight(_data: Float32Array, _rows: number, _cols: number, name = 'weight'): Weight {
    throw new InternalError(`split backend: ${name}: a weight is made by the part that uses it (partFor)`);
  }

  weightFromStored(_type: string, _data: Uint8Array, _rows: number, _cols: number, name = 'weight'): Weight {
    throw new InternalError(`split backend: ${name}: a weight is made by the part that uses it (partFor)`);
  }

  matmul(a: MatmulArgs): void {
    this.holding(a.x).matmul(a);
  }

  qkv(a: QkvArgs): void {
    this.holding(a.x).qkv(a);
  }

  gateUp(a: GateUpArgs): void {
    this.holding(a.x).gateUp(a);
  }

  embed(a: EmbedArgs): void {
    this.holding(a.out).embed(a);
  }

  rmsnorm(a: RmsnormArgs): void {
    this.holding(a.x).rmsnorm(a);
  }

  rope(a: RopeArgs): void {
    this.holding(a.x).rope(a);
  }

  attention(a: AttentionArgs): void {
    this.holding(a.q).attention(a);
  }

  dispose(): void {
    for (const p of this.parts) p.dispose();
  }
}
