/**
 * The WebGPU backend: weights resident on the GPU, and whole forward steps recorded into one command
 * buffer (GpuStep) and submitted once, with one awaited readback of the logits rows. Its Backend
 * methods over CPU arrays are not used: a GPU readback cannot be synchronous, so the model runs its
 * GPU forward (src/model/gpu-llama.ts) through GpuStep, and the KV cache lives in GPU buffers
 * (src/kv/gpu-cache.ts). Same code in Node (the `webgpu` package) and in a browser (navigator.gpu).
 */
import type {
  AttentionArgs,
  Backend,
  EmbedArgs,
  GateUpArgs,
  MatmulArgs,
  QkvArgs,
  RmsnormArgs,
  RopeArgs,
  Weight,
} from '../backend.js';
import { InternalError, KvsieveError } from '../../core/errors.js';
import { acquireGpuDevice, type GpuDeviceInfo } from './device.js';
import * as wgsl from './shaders.js';
import type { GpuKvStore, GpuWeightType } from './shaders.js';
import { f32ArrayToF16 } from '../../core/half.js';
import { quantizeQ8_0, Q8_0_BLOCK_BYTES } from '../../quant/q8_0.js';
import { quantizeQ4_0, Q4_0_BLOCK_BYTES } from '../../quant/q4_0.js';

/** A [rows, cols] matrix in a GPU storage buffer: float32, f16 packed two to a u32, or q8_0/q4_0 blocks (see GpuWeightType). */
export class GpuWeight implements Weight {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly type: GpuWeightType,
    readonly buffer: GPUBuffer,
  ) {}

  get bytes(): number {
    return this.buffer.size;
  }
}

/** Bytes of one dispatch's uniform block in the step's parameter arena (the uniform offset alignment). */
const PARAM_SLOT = 256;

type Kernel =
  | `${'matmul' | 'qkv' | 'gateUp' | 'embed'}:${GpuWeightType}`
  | 'rmsnorm'
  | 'rmsnormInPlace'
  | 'rope'
  | `${'kvAppend' | 'attention' | 'attentionSums' | 'obsProbs' | 'keyNorms' | 'keyProjections' | 'rkvRows' | 'rkvColumns'}:${GpuKvStore}`
  | 'ringStore'
  | 'obsReduce'
  | 'gatherRows';

const WEIGHT_TYPES: readonly GpuWeightType[] = ['f32', 'f16', 'q8_0', 'q4_0'];
const KV_STORES: readonly GpuKvStore[] = ['f32', 'f16'];

/** A kernel's WGSL, built on first use. */
const SOURCES: Record<Kernel, () => string> = {
  ...Object.fromEntries(
    WEIGHT_TYPES.flatMap((t) => [
      [`matmul:${t}`, () => wgsl.MATMUL(t)],
      [`qkv:${t}`, () => wgsl.QKV(t)],
      [`gateUp:${t}`, () => wgsl.GATE_UP(t)],
      [`embed:${t}`, () => wgsl.EMBED(t)],
    ]),
  ),
  rmsnorm: () => wgsl.RMSNORM,
  rmsnormInPlace: () => wgsl.RMSNORM_IN_PLACE,
  rope: () => wgsl.ROPE,
  ...Object.fromEntries(
    KV_STORES.flatMap((kv) => [
      [`kvAppend:${kv}`, () => wgsl.KV_APPEND(kv)],
      [`attention:${kv}`, () => wgsl.ATTENTION(kv)],
      [`attentionSums:${kv}`, () => wgsl.ATTENTION_SUMS(kv)],
      [`obsProbs:${kv}`, () => wgsl.OBS_PROBS(kv)],
      [`keyNorms:${kv}`, () => wgsl.KEY_NORMS(kv)],
      [`keyProjections:${kv}`, () => wgsl.KEY_PROJECTIONS(kv)],
      [`rkvRows:${kv}`, () => wgsl.RKV_ROWS(kv)],
      [`rkvColumns:${kv}`, () => wgsl.RKV_COLUMNS(kv)],
    ]),
  ),
  ringStore: () => wgsl.RING_STORE,
  obsReduce: () => wgsl.OBS_REDUCE,
  gatherRows: () => wgsl.GATHER_ROWS,
} as Record<Kernel, () => string>;

/** ggml's stored block: bytes, and where its values start (after the f16 scale). */
const STORED_BLOCK = { q8_0: { bytes: Q8_0_BLOCK_BYTES, quantBytes: 32 }, q4_0: { bytes: Q4_0_BLOCK_BYTES, quantBytes: 16 } };

/**
 * ggml q8_0 / q4_0 blocks (`blocks` of them, as stored: f16 scale then the values) in the GPU
 * layout of GpuWeightType: every scale first, two to a u32, then every block's value bytes. Bytes
 * are moved, not converted: the GPU reads the stored values.
 */
export function packQuantBlocks(type: 'q8_0' | 'q4_0', data: Uint8Array, blocks: number): Uint32Array {
  const { bytes, quantBytes } = STORED_BLOCK[type];
  if (data.byteLength !== blocks * bytes) throw new InternalError(`webgpu ${type}: ${data.byteLength} bytes for ${blocks} blocks`);
  const scaleWords = Math.ceil(blocks / 2);
  const out = new Uint32Array(scaleWords + blocks * wgsl.QUANT_WORDS[type]);
  const outBytes = new Uint8Array(out.buffer);
  const quants = scaleWords * 4;
  for (let b = 0; b < blocks; b++) {
    const at = b * bytes;
    outBytes[2 * b] = data[at]!;
    outBytes[2 * b + 1] = data[at + 1]!;
    outBytes.set(data.subarray(at + 2, at + bytes), quants + b * quantBytes);
  }
  return out;
}

/** Each KV head's slot base as uniform fields (at most MAX_KV_HEADS, the block's room). */
function headBases(bases: readonly number[], kvHeads: number): number[] {
  if (kvHeads > wgsl.MAX_KV_HEADS || bases.length < kvHeads) throw new InternalError(`webgpu: ${bases.length} slot bases for ${kvHeads} KV heads (at most ${wgsl.MAX_KV_HEADS})`);
  return bases.slice(0, kvHeads);
}

/** Workgroups for n threads of 64: [x, y] with x <= 65535 (kernels index g.y * 65535 * 64 + g.x). */
function linearGroups(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wgsl.WORKGROUP));
  return groups <= 65535 ? [groups, 1] : [65535, Math.ceil(groups / 65535)];
}

const STORAGE = 0x80; // GPUBufferUsage.STORAGE
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const UNIFORM = 0x40;
const MAP_READ = 0x01;

export interface WebGpuOptions {
  /**
   * How weight matrices are stored on the GPU (default f32; f16 halves the memory, converted at load;
   * q8_0 / q4_0 are dequantised in the shaders, matrices whose rows are not whole 32-blocks kept f32).
   */
  weights?: GpuWeightType;
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly device: GPUDevice;
  readonly adapter: string;
  private readonly pipelines = new Map<Kernel, GPUComputePipeline>();
  /** Norm weights and biases (CPU arrays in the model's weights), uploaded on first use. */
  private readonly vectors = new WeakMap<Float32Array, GPUBuffer>();
  private readonly joined = new WeakMap<Float32Array, GPUBuffer>();
  /** Bound where a kernel's optional input is absent (a bias the model does not have). */
  readonly none: GPUBuffer;
  private arena: GPUBuffer | null = null;
  private arenaSlots = 0;
  private disposed = false;

  /** How weight() stores matrices. */
  readonly weightType: GpuWeightType;

  private constructor(info: GpuDeviceInfo, o: WebGpuOptions) {
    this.weightType = o.weights ?? 'f32';
    this.device = info.device;
    this.adapter = info.adapter;
    this.none = this.storage(4);
  }

  /** A backend on the environment's GPU (see acquireGpuDevice for the errors). */
  static async create(o: WebGpuOptions = {}): Promise<WebGpuBackend> {
    if (o.weights !== undefined && !WEIGHT_TYPES.includes(o.weights)) {
      throw new KvsieveError(`weights ${String(o.weights)} is not available on the webgpu backend (f32, f16, q8_0 or q4_0)`, { option: 'weights' });
    }
    return new WebGpuBackend(await acquireGpuDevice(), o);
  }

  /** What info() shows. */
  get description(): string {
    return `webgpu (${this.adapter}; ${this.weightType} weights)`;
  }

  /** A storage buffer of `bytes` (rounded up to 4) that copies may read and write. */
  storage(bytes: number, label?: string): GPUBuffer {
    return this.device.createBuffer({ size: Math.max(4, Math.ceil(bytes / 4) * 4), usage: STORAGE | COPY_SRC | COPY_DST, ...(label ? { label } : {}) });
  }

  /** A storage buffer holding `data`. */
  upload(data: Float32Array | Uint32Array, label?: string): GPUBuffer {
    const buffer = this.device.createBuffer({
      size: Math.max(4, data.byteLength),
      usage: STORAGE | COPY_SRC | COPY_DST,
      mappedAtCreation: true,
      ...(label ? { label } : {}),
    });
    new (data.constructor as Float32ArrayConstructor)(buffer.getMappedRange()).set(data as Float32Array);
    buffer.unmap();
    return buffer;
  }

  /** The GPU copy of a small CPU vector (a norm weight, a bias), uploaded once. */
  vector(a: Float32Array): GPUBuffer {
    let b = this.vectors.get(a);
    if (!b) {
      b = this.upload(a);
      this.vectors.set(a, b);
    }
    return b;
  }

  /**
   * Several vectors end to end on the GPU (zeros for an absent one, `lengths` each), uploaded once:
   * the q/k/v biases of a layer for the fused projection. Cached by the first vector present.
   */
  joinedVector(parts: readonly (Float32Array | null)[], lengths: readonly number[]): GPUBuffer {
    const key = parts.find((p) => p)!;
    let b = this.joined.get(key);
    if (!b) {
      const all = new Float32Array(lengths.reduce((a, n) => a + n, 0));
      let at = 0;
      parts.forEach((p, i) => {
        if (p) all.set(p, at);
        at += lengths[i]!;
      });
      b = this.upload(all);
      this.joined.set(key, b);
    }
    return b;
  }

  weight(data: Float32Array, rows: number, cols: number, name?: string): Weight {
    if (data.length !== rows * cols) throw new InternalError(`webgpu weight ${name ?? ''}: ${data.length} values for [${rows}, ${cols}]`);
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (data.byteLength > max) {
      throw new KvsieveError(`weights: tensor ${name ?? ''} is ${data.byteLength} bytes, above this GPU's ${max}-byte storage binding limit`, { option: 'weights' });
    }
    const type = this.weightType;
    if (type === 'f32' || ((type === 'q8_0' || type === 'q4_0') && cols % 32 !== 0)) return new GpuWeight(rows, cols, 'f32', this.upload(data, name));
    if (type === 'q8_0' || type === 'q4_0') {
      // the blocks the wasm backend gets (src/quant), then repacked
      const blocks = type === 'q8_0' ? quantizeQ8_0(data) : quantizeQ4_0(data);
      return this.quantWeight(type, blocks, rows, cols, name);
    }
    // f16: IEEE halves, two to a u32 (element 2i in the low half), the last word padded with zero
    const halves = new Uint16Array(data.length + (data.length & 1));
    f32ArrayToF16(data, halves);
    return new GpuWeight(rows, cols, 'f16', this.upload(new Uint32Array(halves.buffer), name));
  }

  /** Stored Q8_0 / Q4_0 blocks go in as they are when they are this backend's storage type (rows of whole blocks). */
  takesStored(type: string, cols: number): boolean {
    return cols % 32 === 0 && ((type === 'Q8_0' && this.weightType === 'q8_0') || (type === 'Q4_0' && this.weightType === 'q4_0'));
  }

  weightFromStored(type: string, data: Uint8Array, rows: number, cols: number, name = 'weight'): Weight {
    if (!this.takesStored(type, cols)) throw new KvsieveError(`${name}: the webgpu backend cannot take ${type} weights as stored (storage ${this.weightType})`, { option: 'weights' });
    return this.quantWeight(this.weightType as 'q8_0' | 'q4_0', data, rows, cols, name);
  }

  private quantWeight(type: 'q8_0' | 'q4_0', blocks: Uint8Array, rows: number, cols: number, name: string | undefined): GpuWeight {
    const words = packQuantBlocks(type, blocks, (rows * cols) / 32);
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (words.byteLength > max) {
      throw new KvsieveError(`weights: tensor ${name ?? ''} is ${words.byteLength} bytes, above this GPU's ${max}-byte storage binding limit`, { option: 'weights' });
    }
    return new GpuWeight(rows, cols, type, this.upload(words, name));
  }

  allocF32(n: number): Float32Array {
    return new Float32Array(n);
  }

  freeF32(): void {}

  private cpuKernel(op: string): never {
    throw new InternalError(`webgpu backend: ${op} runs only inside a recorded GPU step (GpuStep), not over CPU arrays`);
  }
  matmul(_: MatmulArgs): void {
    this.cpuKernel('matmul');
  }
  qkv(_: QkvArgs): void {
    this.cpuKernel('qkv');
  }
  gateUp(_: GateUpArgs): void {
    this.cpuKernel('gateUp');
  }
  embed(_: EmbedArgs): void {
    this.cpuKernel('embed');
  }
  rmsnorm(_: RmsnormArgs): void {
    this.cpuKernel('rmsnorm');
  }
  rope(_: RopeArgs): void {
    this.cpuKernel('rope');
  }
  attention(_: AttentionArgs): void {
    this.cpuKernel('attention');
  }

  pipeline(kernel: Kernel): GPUComputePipeline {
    let p = this.pipelines.get(kernel);
    if (!p) {
      const module = this.device.createShaderModule({ code: SOURCES[kernel](), label: kernel });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: kernel });
      this.pipelines.set(kernel, p);
    }
    return p;
  }

  /** The uniform arena with room for `slots` dispatches' parameters (one step's). */
  paramArena(slots: number): GPUBuffer {
    if (!this.arena || this.arenaSlots < slots) {
      this.arena?.destroy();
      this.arenaSlots = Math.max(slots, Math.ceil(this.arenaSlots * 1.5));
      this.arena = this.device.createBuffer({ size: this.arenaSlots * PARAM_SLOT, usage: UNIFORM | COPY_DST, label: 'params' });
    }
    return this.arena;
  }

  /** Starts recording a step of at most `maxDispatches` kernel dispatches. */
  beginStep(maxDispatches: number): GpuStep {
    if (this.disposed) throw new InternalError('webgpu backend: used after dispose');
    return new GpuStep(this, maxDispatches);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.arena?.destroy();
    this.device.destroy();
  }
}

/**
 * One forward step being recorded: every kernel is a dispatch in one compute pass of one command
 * encoder, each with its own uniform block; `finish` submits it once and reads the logits back.
 */
export class GpuStep {
  private readonly device: GPUDevice;
  private readonly encoder: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private readonly params: ArrayBuffer;
  private readonly view: DataView;
  private readonly arena: GPUBuffer;
  private slots = 0;

  constructor(
    private readonly backend: WebGpuBackend,
    private readonly maxDispatches: number,
  ) {
    this.device = backend.device;
    this.arena = backend.paramArena(maxDispatches);
    this.params = new ArrayBuffer(maxDispatches * PARAM_SLOT);
    this.view = new DataView(this.params);
    // Validation errors of the whole step (bindings, sizes) come back from finish as one fault.
    this.device.pushErrorScope('validation');
    this.encoder = this.device.createCommandEncoder({ label: 'step' });
  }

  /** Drops a step whose recording failed (its error scope closed, nothing submitted). */
  abandon(): void {
    void this.device.popErrorScope();
  }

  /** One dispatch: its uniform block from `u32`/`f32` fields in order, its buffers in binding order 1... */
  private dispatch(kernel: Kernel, fields: readonly (number | { f32: number })[], buffers: readonly GPUBuffer[], groups: readonly [number, number]): void {
    if (this.slots >= this.maxDispatches) throw new InternalError(`webgpu step: more than the ${this.maxDispatches} dispatches planned`);
    const base = this.slots * PARAM_SLOT;
    fields.forEach((f, i) => {
      if (typeof f === 'number') this.view.setUint32(base + 4 * i, f, true);
      else this.view.setFloat32(base + 4 * i, f.f32, true);
    });
    const pipeline = this.backend.pipeline(kernel);
    const bindGroup = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: this.arena, offset: base, size: PARAM_SLOT } },
        ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    });
    this.slots++;
    this.pass ??= this.encoder.beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    this.pass.dispatchWorkgroups(groups[0], groups[1]);
  }

  /** out[t, :] = embedding row ids[t] ([tokens, dim]). */
  embed(out: GPUBuffer, w: GpuWeight, ids: GPUBuffer, tokens: number): void {
    this.dispatch(`embed:${w.type}`, [w.cols, tokens, w.rows], [w.buffer, ids, out], [Math.ceil(w.cols / wgsl.WORKGROUP), tokens]);
  }

  /** RMSNorm of `rows` rows of `dim` (out === x: in place). */
  rmsnorm(out: GPUBuffer, x: GPUBuffer, weight: Float32Array, rows: number, dim: number, eps: number): void {
    const groups: [number, number] = [Math.min(rows, 32768), Math.ceil(rows / 32768)];
    const w = this.backend.vector(weight);
    if (out === x) this.dispatch('rmsnormInPlace', [rows, dim, { f32: eps }], [w, out], groups);
    else this.dispatch('rmsnorm', [rows, dim, { f32: eps }], [w, x, out], groups);
  }

  /** out = x W^T (+ bias), or with `add`, out += x W^T (+ bias), over `tokens` rows. */
  matmul(o: { out: GPUBuffer; add?: boolean; x: GPUBuffer; w: GpuWeight; bias?: Float32Array | null; tokens: number }): void {
    const flags = (o.bias ? 1 : 0) | (o.add ? 2 : 0);
    const bias = o.bias ? this.backend.vector(o.bias) : this.backend.none;
    this.dispatch(`matmul:${o.w.type}`, [o.w.rows, o.w.cols, o.tokens, flags], [o.w.buffer, o.x, bias, o.out], [Math.ceil(o.w.rows / wgsl.WORKGROUP), o.tokens]);
  }

  /** out = silu(x Wgate^T (+ bg)) * (x Wup^T (+ bu)). */
  gateUp(o: { out: GPUBuffer; x: GPUBuffer; gate: GpuWeight; up: GpuWeight; gateBias: Float32Array | null; upBias: Float32Array | null; tokens: number }): void {
    if (o.up.type !== o.gate.type) throw new InternalError(`webgpu gateUp: gate ${o.gate.type} and up ${o.up.type} weights`);
    const flags = (o.gateBias ? 1 : 0) | (o.upBias ? 2 : 0);
    const bg = o.gateBias ? this.backend.vector(o.gateBias) : this.backend.none;
    const bu = o.upBias ? this.backend.vector(o.upBias) : this.backend.none;
    this.dispatch(`gateUp:${o.gate.type}`, [o.gate.rows, o.gate.cols, o.tokens, flags], [o.gate.buffer, o.up.buffer, o.x, bg, bu, o.out], [Math.ceil(o.gate.rows / wgsl.WORKGROUP), o.tokens]);
  }

  /** rotate_half RoPE in place over q [tokens, heads, headDim] and k [tokens, kvHeads, headDim] with cos/sin [tokens, headDim/2]. */
  rope(o: { q: GPUBuffer; k: GPUBuffer; tokens: number; heads: number; kvHeads: number; headDim: number; cos: GPUBuffer; sin: GPUBuffer }): void {
    const pairs = (o.tokens * (o.heads + o.kvHeads) * o.headDim) / 2;
    this.dispatch('rope', [o.tokens, o.heads, o.kvHeads, o.headDim / 2], [o.cos, o.sin, o.q, o.k], linearGroups(pairs));
  }

  /** q, k, v = x Wq^T (+ bq), x Wk^T (+ bk), x Wv^T (+ bv) over `tokens` rows, one dispatch. */
  qkv(o: { x: GPUBuffer; tokens: number; q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; wq: GpuWeight; wk: GpuWeight; wv: GpuWeight; biases: readonly (Float32Array | null)[] }): void {
    if (o.wk.type !== o.wq.type || o.wv.type !== o.wq.type) throw new InternalError(`webgpu qkv: q ${o.wq.type}, k ${o.wk.type}, v ${o.wv.type} weights`);
    const rows = o.wq.rows + 2 * o.wk.rows;
    const biased = o.biases.some((b) => b);
    const bias = biased ? this.backend.joinedVector(o.biases, [o.wq.rows, o.wk.rows, o.wv.rows]) : this.backend.none;
    this.dispatch(`qkv:${o.wq.type}`, [o.wq.rows, o.wk.rows, o.wq.cols, o.tokens, biased ? 1 : 0], [o.wq.buffer, o.wk.buffer, o.wv.buffer, o.x, bias, o.q, o.k, o.v], [Math.ceil(rows / wgsl.WORKGROUP), o.tokens]);
  }

  /** Rows row..row+count of k and v ([T, kvHeads * headDim]) into each head h of a layer's cache from its slot bases[h]. */
  kvAppend(o: { k: GPUBuffer; v: GPUBuffer; row: number; count: number; kvHeads: number; headDim: number; keys: GPUBuffer; values: GPUBuffer; capacity: number; bases: readonly number[]; kvStore: GpuKvStore }): void {
    const threads = (o.count * o.kvHeads * o.headDim) / (o.kvStore === 'f16' ? 2 : 1);
    this.dispatch(`kvAppend:${o.kvStore}`, [o.row, o.count, o.kvHeads, o.headDim, o.capacity, 0, 0, 0, ...headBases(o.bases, o.kvHeads)], [o.k, o.v, o.keys, o.values], linearGroups(threads));
  }

  /**
   * One segment's attention: its `count` query rows from `row` over its cache's layer (head h's live
   * slots: bases[h] + count). With `stats` ([T, heads, 2]), each (row, head)'s softmax maximum and sum go there.
   */
  attention(o: {
    q: GPUBuffer;
    out: GPUBuffer;
    row: number;
    count: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    keys: GPUBuffer;
    values: GPUBuffer;
    capacity: number;
    bases: readonly number[];
    kvStore: GpuKvStore;
    stats?: GPUBuffer;
  }): void {
    if (o.headDim > wgsl.MAX_HEAD_DIM) throw new InternalError(`webgpu attention: head dimension ${o.headDim} above ${wgsl.MAX_HEAD_DIM}`);
    const scale = 1 / Math.sqrt(o.headDim);
    this.dispatch(
      `attention:${o.kvStore}`,
      [o.row, o.count, o.heads, o.kvHeads, o.headDim, o.capacity, { f32: scale }, o.stats ? 1 : 0, ...headBases(o.bases, o.kvHeads)],
      [o.q, o.keys, o.values, o.out, o.stats ?? this.backend.none],
      [o.heads, o.count],
    );
  }

  /**
   * After `attention` with `stats`: adds each of the segment's tokens' probabilities over the slots,
   * averaged over the group's query heads, into `sums` ([kvHeads, capacity], the cache's layout).
   */
  attentionSums(o: { q: GPUBuffer; row: number; count: number; heads: number; kvHeads: number; headDim: number; keys: GPUBuffer; capacity: number; bases: readonly number[]; kvStore: GpuKvStore; stats: GPUBuffer; sums: GPUBuffer }): void {
    const longest = Math.max(...o.bases.slice(0, o.kvHeads)) + o.count;
    this.dispatch(
      `attentionSums:${o.kvStore}`,
      [o.row, o.count, o.heads, o.kvHeads, o.headDim, o.capacity, { f32: 1 / Math.sqrt(o.headDim) }, 0, ...headBases(o.bases, o.kvHeads)],
      [o.q, o.keys, o.stats, o.sums],
      [Math.ceil(longest / wgsl.WORKGROUP), o.kvHeads],
    );
  }

  /** Rows row..row+count of x ([T, width]) into ring slots (start + i) % window of `ring` ([window, width]). */
  ringStore(o: { x: GPUBuffer; row: number; count: number; width: number; ring: GPUBuffer; window: number; start: number }): void {
    this.dispatch('ringStore', [o.row, o.count, o.width, o.window, o.start % o.window], [o.x, o.ring], linearGroups(o.count * o.width));
  }

  /**
   * Observation-window attention of a layer's heads (see OBS_PROBS / OBS_REDUCE): per row head (query
   * head, or KV head with maxLogits) the summed probabilities of slots j < m_h into totals
   * [rowHeads, capacity]; probs is scratch of [rowHeads, queries, capacity].
   */
  observationTotals(o: {
    ring: GPUBuffer;
    window: number;
    count: number;
    queries: number;
    keys: GPUBuffer;
    kvStore: GpuKvStore;
    capacity: number;
    shape: GPUBuffer;
    heads: number;
    kvHeads: number;
    headDim: number;
    softmax: 'causal' | 'scored';
    maxLogits: boolean;
    probs: GPUBuffer;
    totals: GPUBuffer;
  }): void {
    const rowHeads = o.maxLogits ? o.kvHeads : o.heads;
    const fields = [rowHeads, o.heads, o.kvHeads, o.headDim, o.capacity, o.queries, o.window, o.count, { f32: 1 / Math.sqrt(o.headDim) }, o.softmax === 'scored' ? 1 : 0, o.maxLogits ? 1 : 0];
    this.dispatch(`obsProbs:${o.kvStore}`, fields, [o.ring, o.keys, o.shape, o.probs], [rowHeads, o.queries]);
    this.dispatch('obsReduce', fields, [o.probs, o.shape, o.totals], [Math.ceil(o.capacity / wgsl.WORKGROUP), rowHeads]);
  }

  /** Each live key's L2 norm into norms [kvHeads, capacity]. */
  keyNorms(o: { keys: GPUBuffer; kvStore: GpuKvStore; capacity: number; shape: GPUBuffer; heads: number; kvHeads: number; headDim: number; norms: GPUBuffer }): void {
    const fields = [o.kvHeads, o.heads, o.kvHeads, o.headDim, o.capacity, 0, 0, 0, { f32: 0 }, 0, 0];
    this.dispatch(`keyNorms:${o.kvStore}`, fields, [o.keys, o.shape, o.norms], [Math.ceil(o.capacity / wgsl.WORKGROUP), o.kvHeads]);
  }

  /** Each live key's projection on its head's filter ([kvHeads, headDim]) into proj [kvHeads, capacity]. */
  keyProjections(o: { keys: GPUBuffer; kvStore: GpuKvStore; capacity: number; shape: GPUBuffer; heads: number; kvHeads: number; headDim: number; filter: GPUBuffer; proj: GPUBuffer }): void {
    const fields = [o.kvHeads, o.heads, o.kvHeads, o.headDim, o.capacity, 0, 0, 0, { f32: 0 }, 0, 0];
    this.dispatch(`keyProjections:${o.kvStore}`, fields, [o.keys, o.shape, o.filter, o.proj], [Math.ceil(o.capacity / wgsl.WORKGROUP), o.kvHeads]);
  }

  /**
   * R-KV's redundancy of each live key (ScoreKernels.redundancy: the column means of the thresholded
   * cosine-similarity matrix) into means [kvHeads, capacity]; norms are KEY_NORMS' (recorded first),
   * pick / picked scratch of [kvHeads, capacity].
   */
  redundancy(o: { keys: GPUBuffer; kvStore: GpuKvStore; capacity: number; shape: GPUBuffer; heads: number; kvHeads: number; headDim: number; threshold: number; norms: GPUBuffer; pick: GPUBuffer; picked: GPUBuffer; means: GPUBuffer }): void {
    const fields = [o.kvHeads, o.heads, o.kvHeads, o.headDim, o.capacity, 0, 0, 0, { f32: o.threshold }, 0, 0];
    const groups: [number, number] = [Math.ceil(o.capacity / wgsl.WORKGROUP), o.kvHeads];
    this.dispatch(`rkvRows:${o.kvStore}`, fields, [o.keys, o.shape, o.norms, o.pick, o.picked], groups);
    this.dispatch(`rkvColumns:${o.kvStore}`, fields, [o.keys, o.shape, o.norms, o.pick, o.picked, o.means], groups);
  }

  /** out[i, :] = x[rows[i], :] for i < count, `dim` floats a row. */
  gatherRows(out: GPUBuffer, x: GPUBuffer, rows: GPUBuffer, count: number, dim: number): void {
    this.dispatch('gatherRows', [dim, count, 0], [rows, x, out], [Math.ceil(dim / wgsl.WORKGROUP), count]);
  }

  /** Records a buffer-to-buffer copy (outside the compute pass). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /**
   * Submits the step (its parameters written first) and, when `floats` > 0, reads back the first
   * `floats` values of `result`: the one await of the step.
   */
  async finish(result: GPUBuffer, floats: number): Promise<Float32Array> {
    this.endPass();
    const bytes = floats * 4;
    const staging = floats > 0 ? this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST, label: 'readback' }) : null;
    if (staging) this.encoder.copyBufferToBuffer(result, 0, staging, 0, bytes);
    const queue = this.device.queue;
    queue.writeBuffer(this.arena, 0, this.params, 0, this.slots * PARAM_SLOT);
    queue.submit([this.encoder.finish()]);
    const error = await this.device.popErrorScope();
    if (error) {
      staging?.destroy();
      throw new InternalError(`webgpu step: ${error.message.split('\n')[0]}`);
    }
    if (!staging) return new Float32Array(0);
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      return new Float32Array(staging.getMappedRange().slice(0));
    } finally {
      staging.destroy();
    }
  }
}
