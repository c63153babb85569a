import type {
  AttentionArgs, Backend, EmbedArgs, GateUpArgs, Linear, MatmulArgs, MemoryUsage, QkvArgs, RmsnormArgs, RopeArgs, ScoreKernels, Weight,
} from '../backend.js';
import { InternalError, KvsieveError } from '../../core/errors.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../core/half.js';
import { KV_ENTRY_BYTES, REDUNDANCY_ENTRY_WORDS, weightRowBytes, type WeightType } from './abi.js';
import type { Kernels } from './kernels.js';
import { KvLayer, type SegmentTable } from './kv-layer.js';
import { op, type AttentionSegment as SegmentOf, type Matrix, type Task, type Vec } from './ops.js';

/** Checkpoint element types (ggml's names) whose bytes are already a wasm weight layout. */
const STORED_TYPE: Record<string, WeightType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', Q8_0: 'q8_0', Q4_0: 'q4_0' };

/**
 * K-quant types the kernels read as stored (asm/kquant.ts): with quantised storage (q8_0 / q4_0) such a
 * matrix keeps its file's bytes instead of being dequantised and quantised again.
 */
const K_QUANT: Record<string, WeightType> = { Q4_K: 'q4_k', Q5_K: 'q5_k', Q6_K: 'q6_k' };

/**
 * MXFP4 (GPT-OSS's experts, asm/mxfp4.ts) stays as stored under any quantised storage, the default
 * included: it is 17 bytes per 32 values, half of a q8_0 copy (34), and its kernels decode about as
 * fast as q8_0's per CPU-second (bench/mxfp4.ts, a Qwen2.5-0.5B-shaped file of MXFP4 matrices, one
 * thread: 15-17 tok/CPU-s stored against 15-19 converted, alternating on a shared machine), so a
 * conversion would double the memory and its traffic for no speed. Float storage (f32 / f16 / bf16)
 * dequantises it, as every other quantised input.
 */
const MXFP4_STORED = 'mxfp4' satisfies WeightType;

/** A weight held in the kernels' shared memory, in the backend's layout. */
class WasmWeight implements Weight {
  constructor(
    readonly matrix: Matrix,
    /** The kernels whose memory holds it (a split model has several). */
    readonly kernels: Kernels,
  ) {}
  get rows(): number {
    return this.matrix.rows;
  }
  get cols(): number {
    return this.matrix.cols;
  }
  get bytes(): number {
    return this.matrix.bytes;
  }
  get type(): WeightType {
    return this.matrix.type;
  }
}

/** Bytes of the block behind an allocF32(n): whole 64-byte lines. */
function blockBytes(n: number): number {
  return Math.max(64, Math.ceil((n * 4) / 64) * 64);
}

export interface WasmBackendOptions {
  /** Storage of the weight matrices (default q8_0). Matrices whose rows are not whole 32-blocks stay f32. */
  weights?: WeightType;
  /**
   * With quantised storage: matrices a file stores as Q4_K, Q5_K, Q6_K, Q8_0 or Q4_0 stay as stored (a
   * Q4_K_M file takes its own size), the others take `weights`. Default false: every matrix is
   * converted to `weights` unless keepStoredKQuants keeps the K-quants.
   */
  keepStoredQuants?: boolean;
  /**
   * With q8_0 storage: matrices a file stores as Q4_K, Q5_K or Q6_K stay as stored (read by asm/kquant.ts;
   * 0.53-0.77x the bytes of q8_0; Q4_K faster per core than q8_0, Q5_K and Q6_K slower), every other
   * matrix takes `weights`. loadModel sets this when `weights` is not given.
   */
  keepStoredKQuants?: boolean;
}

/** What options `o` mean for storage (one derivation, for WasmBackend and heldWeightType). */
function storagePolicy(o: WasmBackendOptions): { weights: WeightType; quantised: boolean; keepStored: boolean; keepKQuants: boolean } {
  const weights = o.weights ?? 'q8_0';
  const quantised = weights === 'q8_0' || weights === 'q4_0';
  const keepStored = (o.keepStoredQuants ?? false) && quantised;
  return { weights, quantised, keepStored, keepKQuants: keepStored || ((o.keepStoredKQuants ?? false) && weights === 'q8_0') };
}

/** The type each stored ggml type is held in when it is kept as stored. */
const KEPT_AS: Record<string, WeightType> = { ...STORED_TYPE, ...K_QUANT, MXFP4: MXFP4_STORED };

/**
 * The type a WasmBackend with options `o` holds a matrix of `cols` columns in, given the ggml type its
 * file stores it as (`stored`; null: not known, or not a GGUF): what weightFromStored / weight() end up
 * with, for the split plan to size a model before its backend exists.
 */
export function heldWeightType(stored: string | null, cols: number, o: WasmBackendOptions): WeightType {
  const { weights, quantised, keepStored, keepKQuants } = storagePolicy(o);
  if (stored === 'MXFP4' && quantised && cols % 32 === 0) return MXFP4_STORED;
  const k = stored === null ? undefined : K_QUANT[stored];
  if (k !== undefined && keepKQuants && cols % 256 === 0) return k;
  if (keepStored && (stored === 'Q8_0' || stored === 'Q4_0') && cols % 32 === 0) return STORED_TYPE[stored]!;
  return quantised && cols % 32 !== 0 ? 'f32' : weights;
}

/**
 * The fast CPU backend: WebAssembly SIMD kernels over one shared memory, rows split across worker
 * threads. Activations and KV slots come from `allocF32`, i.e. live in that memory, so kernels read
 * them in place; small constant vectors (norm weights, biases) are copied in once.
 */
export class WasmBackend implements Backend {
  readonly name = 'wasm';
  /** Freed blocks of the kernels' memory, [ptr, bytes] sorted by ptr, neighbours merged. */
  private readonly freeBlocks: [number, number][] = [];
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private readonly constants = new WeakMap<Float32Array, Vec>();
  private ids: Vec = { ptr: 0, length: 0 };
  /** KV head tables of attention's segments (segCapacity x tableHeads entries) and their segment table. */
  private tables = 0;
  private tableHeads = 0;
  private segCapacity = 0;
  private segTable: SegmentTable | null = null;
  readonly weightType: WeightType;
  /** What the options mean for storage (storagePolicy). */
  private readonly policy: ReturnType<typeof storagePolicy>;
  /** Matrices kept in f32 because their rows do not split into quantisation blocks. */
  readonly unquantised: string[] = [];
  /** The types the model's matrices are held in, in the order first met (a Q4_K_M file: q4_k, q6_k). */
  readonly heldTypes = new Set<WeightType>();

  constructor(
    readonly kernels: Kernels,
    private readonly options: WasmBackendOptions = {},
  ) {
    this.policy = storagePolicy(options);
    this.weightType = this.policy.weights;
  }

  get threads(): number {
    return this.kernels.threads;
  }

  // ---- memory -------------------------------------------------------------------------------------

  /**
   * Zero-filled float32 arrays in the kernels' memory, from a first-fit free list: a freed block is merged
   * with free neighbours and reused, split, by any later request that fits (KV stores that grow, sequences
   * of other lengths), so a long-running process does not creep towards wasm32's 4 GiB. The memory itself
   * never shrinks; fresh pages cost no RSS until written.
   */
  allocF32(n: number): Float32Array {
    const bytes = blockBytes(n);
    const fl = this.freeBlocks;
    let ptr = -1;
    for (let i = 0; i < fl.length; i++) {
      const [p, b] = fl[i]!;
      if (b < bytes) continue;
      ptr = p;
      if (b === bytes) fl.splice(i, 1);
      else fl[i] = [p + bytes, b - bytes];
      break;
    }
    const reused = ptr >= 0;
    if (!reused) ptr = this.kernels.alloc(bytes, 64); // may grow the memory: take its buffer after
    const buffer = this.kernels.memory.buffer;
    this.buffers.add(buffer);
    if (reused) new Uint8Array(buffer, ptr, bytes).fill(0);
    return new Float32Array(buffer, ptr, n);
  }

  freeF32(a: Float32Array): void {
    if (!this.buffers.has(a.buffer)) return;
    const fl = this.freeBlocks;
    let ptr = a.byteOffset;
    let bytes = blockBytes(a.length);
    // insertion point, then merge with the block before and after when they touch
    let i = 0;
    while (i < fl.length && fl[i]![0] < ptr) i++;
    if ((i < fl.length && fl[i]![0] < ptr + bytes) || (i > 0 && fl[i - 1]![0] + fl[i - 1]![1] > ptr)) {
      throw new InternalError('wasm backend: freeF32 of an array that is already free');
    }
    if (i > 0 && fl[i - 1]![0] + fl[i - 1]![1] === ptr) {
      ptr = fl[i - 1]![0];
      bytes += fl[i - 1]![1];
      fl.splice(--i, 1);
    }
    if (i < fl.length && ptr + bytes === fl[i]![0]) {
      bytes += fl[i]![1];
      fl.splice(i, 1);
    }
    fl.splice(i, 0, [ptr, bytes]);
  }

  /** Bytes of the kernels' memory that freed blocks hold (ready for reuse). */
  get freeBytes(): number {
    return this.freeBlocks.reduce((s, [, b]) => s + b, 0);
  }

  memoryUsage(): MemoryUsage {
    return { limitBytes: this.kernels.maxBytes, usedBytes: this.kernels.allocated - this.freeBytes };
  }

  /** Whether `a` lives in the kernels' memory (from allocF32, or a view of such an array). */
  holds(a: ArrayBufferView): boolean {
    return this.buffers.has(a.buffer);
  }

  /** The matrix of a weight this backend made (one from another memory would read the wrong bytes). */
  private matrixOf(w: Weight): Matrix {
    if (!(w instanceof WasmWeight) || w.kernels !== this.kernels) {
      throw new InternalError('wasm backend: a weight that another backend or memory made (a split model makes each weight in the part that uses it)');
    }
    return w.matrix;
  }

  /** An activation array from allocF32 (or a view of one) as a kernel vector. */
  private vec(a: Float32Array, offset = 0, length = a.length - offset): Vec {
    return { ptr: this.ptr(a) + offset * 4, length };
  }

  /** Byte offset in the kernels' memory of an array that lives there (from allocF32). */
  private ptr(a: ArrayBufferView): number {
    if (!this.buffers.has(a.buffer)) {
      throw new InternalError('wasm backend: an activation array was not allocated by the backend (allocF32)');
    }
    return a.byteOffset;
  }

  /** A constant vector (norm weight, bias): used in place when it is in the memory, else copied in once. */
  private constant(a: Float32Array): Vec {
    if (this.buffers.has(a.buffer)) return { ptr: a.byteOffset, length: a.length };
    let v = this.constants.get(a);
    if (!v) {
      v = this.kernels.vecFrom(a);
      this.constants.set(a, v);
    }
    return v;
  }

  /** A matrix of the model, its type noted in heldTypes. */
  private held(m: Matrix): WasmWeight {
    this.heldTypes.add(m.type);
    return new WasmWeight(m, this.kernels);
  }

  weight(data: Float32Array, rows: number, cols: number, name = 'weight'): Weight {
    return this.held(this.kernels.matrixFromF32(this.storageFor(null, cols, name), rows, cols, data, name));
  }

  /**
   * Stored bytes in the storage layout itself are copied in; F16/BF16 values are widened piece by
   * piece into the shared memory and converted there (the same values weight() gets from the
   * checkpoint's float32 reader, without a whole-matrix float32 array).
   */
  takesStored(type: string, cols: number): boolean {
    return KEPT_AS[type] === heldWeightType(type, cols, this.options) || type === 'F16' || type === 'BF16';
  }

  weightFromStored(type: string, data: Uint8Array, rows: number, cols: number, name = 'weight'): Weight {
    const k = type === 'MXFP4' && this.policy.quantised ? MXFP4_STORED : this.policy.keepKQuants ? K_QUANT[type] : undefined;
    if (k !== undefined) {
      const block = k === MXFP4_STORED ? 32 : 256;
      if (cols % block !== 0) throw new KvsieveError(`${name}: ${type} needs rows of a multiple of ${block} values, got ${cols}`);
      const bytes = weightRowBytes(k, cols) * rows;
      if (data.byteLength !== bytes) throw new KvsieveError(`${name}: ${type} [${rows}, ${cols}] is ${bytes} bytes, got ${data.byteLength}`);
      return this.held(this.kernels.matrixFromBytes(k, rows, cols, data, name));
    }
    if (!this.takesStored(type, cols)) throw new KvsieveError(`${name}: the wasm backend cannot take ${type} weights as stored (storage ${this.weightType})`);
    const storage = this.storageFor(type, cols, name);
    if (STORED_TYPE[type] === storage) return this.held(this.kernels.matrixFromBytes(storage, rows, cols, data, name));
    if (data.byteLength !== rows * cols * 2) throw new InternalError(`wasm backend: ${name}: ${type} [${rows}, ${cols}] needs ${rows * cols * 2} bytes, got ${data.byteLength}`);
    const aligned = data.byteOffset % 2 === 0 ? data : data.slice();
    const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, rows * cols);
    const widen = type === 'F16' ? f16ArrayToF32 : bf16ArrayToF32;
    return this.held(this.kernels.matrixFromPieces(storage, rows, cols, (offset, out) => widen(halves.subarray(offset, offset + out.length), out), name));
  }

  /**
   * The type a matrix of `cols` columns stored as `stored` (null: float data) is held in
   * (heldWeightType); q8_0/q4_0 need whole 32-blocks per row, else f32, and the matrix `name` is
   * noted as kept unquantised.
   */
  private storageFor(stored: string | null, cols: number, name: string): WeightType {
    const type = heldWeightType(stored, cols, this.options);
    if (type === 'f32' && this.weightType !== 'f32') this.unquantised.push(name);
    return type;
  }

  // ---- operations ---------------------------------------------------------------------------------

  matmul(a: MatmulArgs): void {
    this.kernels.run(this.matvec(a.addTo ?? a.out!, a.x, a, a.tokens, a.addTo !== undefined));
  }

  qkv({ x, tokens, q, k, v }: QkvArgs): void {
    this.kernels.run(this.matvec(q.out, x, q, tokens), this.matvec(k.out, x, k, tokens), this.matvec(v.out, x, v, tokens));
  }

  gateUp({ out, scratch, x, tokens, gate, up, activation = 'silu' }: GateUpArgs): void {
    const G = this.matrixOf(gate.w);
    const U = this.matrixOf(up.w);
    const n = tokens * G.rows;
    if (gate.bias || up.bias || G.type !== U.type || activation !== 'silu') {
      // The fused kernel takes neither biases nor mixed storage nor GELU: two projections, then the gate.
      this.kernels.run(this.matvec(out, x, gate, tokens), this.matvec(scratch, x, up, tokens));
      this.kernels.runLocal(op.siluGate(this.vec(out, 0, n), this.vec(scratch, 0, n), this.vec(out, 0, n), n, activation));
      return;
    }
    this.kernels.run(op.gateUpSilu(G, U, this.vec(x, 0, tokens * G.cols), this.vec(out, 0, n), { nTok: tokens }));
  }

  /** The task of out (+)= x W^T (+ bias) over `tokens` rows. */
  private matvec(out: Float32Array, x: Float32Array, { w, bias }: Linear, tokens: number, accumulate = false): Task {
    const W = this.matrixOf(w);
    return op.matvec(W, this.vec(x, 0, tokens * W.cols), this.vec(out, 0, tokens * W.rows), {
      nTok: tokens,
      ...(bias ? { bias: this.constant(bias) } : {}),
      accumulate,
    });
  }

  embed({ out, w, ids, tokens }: EmbedArgs): void {
    const W = this.matrixOf(w);
    if (this.ids.length < tokens) this.ids = this.kernels.ints(Math.max(tokens, 2 * this.ids.length));
    this.kernels.i32(this.ids).set(ids.subarray(0, tokens));
    this.kernels.runLocal(op.embed(W, this.ids, this.vec(out, 0, tokens * W.cols), { n: tokens }));
  }

  rmsnorm({ out, x, weight, rows, dim, eps }: RmsnormArgs): void {
    this.kernels.runLocal(op.rmsnorm(this.vec(x, 0, rows * dim), this.constant(weight), this.vec(out, 0, rows * dim), dim, eps, { rows }));
  }

  rope({ x, tokens, numHeads, headDim, cos, sin }: RopeArgs): void {
    const half = (tokens * headDim) / 2;
    this.kernels.runLocal(
      op.rope(this.vec(x, 0, tokens * numHeads * headDim), this.vec(cos, 0, half), this.vec(sin, 0, half), { nHeads: numHeads, headDim, nTok: tokens }),
    );
  }

  /**
   * Every segment in one task (one dispatch): each segment's heads go into a KV head table of its own
   * (its cache's slot arrays as they are), and the segment table lists them for the kernel.
   */
  attention(a: AttentionArgs): void {
    const segs = a.segments;
    if (segs.length === 0) return;
    const H = segs[0]!.heads.length;
    const d = a.headDim;
    const dtype = segs[0]!.heads[0]!.kvDtype;
    if (this.segCapacity < segs.length || this.tableHeads < H) {
      // Room for at least twice as many segments: the arena never frees, so grow seldom.
      const n = Math.max(segs.length, 2 * this.segCapacity, 8);
      this.tables = this.kernels.alloc(n * H * KV_ENTRY_BYTES, 64);
      this.segTable = this.kernels.segmentTable(n);
      this.segCapacity = n;
      this.tableHeads = H;
    }
    const width = a.numHeads * d;
    const parts: SegmentOf[] = [];
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!;
      if (seg.heads.length !== H) throw new InternalError(`wasm attention: segment ${i} has ${seg.heads.length} KV heads, segment 0 ${H}`);
      let capacity = 1;
      for (const head of seg.heads) {
        if (head.kvDtype !== dtype) throw new InternalError('wasm attention: the KV heads of a layer differ in dtype');
        capacity = Math.max(capacity, head.length);
      }
      // The head table the kernel reads: each head's slot arrays are its region of the layer store.
      const kv = new KvLayer(this.kernels.memory, dtype, H, d, capacity, this.tables + i * H * KV_ENTRY_BYTES);
      for (let h = 0; h < H; h++) {
        const head = seg.heads[h]!;
        kv.setHead(h, {
          keys: this.ptr(head.keys),
          values: this.ptr(head.values),
          keyScales: head.keyScales ? this.ptr(head.keyScales) : 0,
          valueScales: head.valueScales ? this.ptr(head.valueScales) : 0,
          probSums: seg.probSums ? this.vec(seg.probSums[h]!).ptr : 0,
          length: head.length,
        });
      }
      parts.push({ kv, q: this.vec(a.q, seg.row * width, seg.tokens * width), out: this.vec(a.out, seg.row * width, seg.tokens * width), nq: seg.tokens });
    }
    this.kernels.run(op.attentions(this.segTable!, parts, {
      nHeads: a.numHeads,
      ...(a.window ? { window: a.window } : {}),
      ...(a.scale !== undefined ? { scale: a.scale } : {}),
      ...(a.sinks ? { sinks: this.constant(a.sinks) } : {}),
    }));
  }

  // ---- scoring reductions ---------------------------------------------------------------------------

  /** Scratch areas of the scoring kernels, grown on demand and kept. */
  private readonly areas = new Map<string, Float32Array>();

  private area(name: string, floats: number): Float32Array {
    let a = this.areas.get(name);
    if (!a || a.length < floats) {
      if (a) this.freeF32(a);
      a = this.allocF32(Math.max(floats, Math.ceil((a?.length ?? 0) * 1.5)));
      this.areas.set(name, a);
    }
    return a;
  }

  /** A pointer to `src` in the kernels' memory: in place when it lives there, else copied into area `name`. */
  private resident(name: string, src: Float32Array, floats: number): number {
    if (this.buffers.has(src.buffer)) return src.byteOffset;
    const a = this.area(name, floats);
    a.set(src.subarray(0, floats));
    return a.byteOffset;
  }

  readonly scoreKernels: ScoreKernels = {
    dots: (a, rows, keys, n, d, scale, out) => {
      if (rows === 0 || n === 0) return;
      const ap = this.resident('dots.a', a, rows * d);
      const kp = this.resident('dots.k', keys, n * d);
      const o = this.area('dots.out', rows * n);
      this.kernels.run(op.dots({ ptr: ap, length: rows * d }, rows, { ptr: kp, length: n * d }, n, d, this.vec(o, 0, rows * n), { scale }));
      out.set(o.subarray(0, rows * n));
    },
    redundancy: (keys, lengths, d, threshold, out) => {
      const H = keys.length;
      if (lengths.length !== H || out.length !== H) throw new InternalError('wasm redundancy: keys, lengths and out differ in length');
      const table = new Int32Array(H * REDUNDANCY_ENTRY_WORDS);
      let outFloats = 0;
      let copyFloats = 0;
      for (let h = 0; h < H; h++) {
        if (keys[h]!.length < lengths[h]! * d || out[h]!.length < lengths[h]!) throw new InternalError(`wasm redundancy: head ${h} arrays are shorter than its ${lengths[h]} tokens`);
        outFloats += 2 * lengths[h]!;
        if (!this.buffers.has(keys[h]!.buffer)) copyFloats += lengths[h]! * d;
      }
      const outArea = this.area('red.out', outFloats + 2 * H);
      const copyArea = copyFloats > 0 ? this.area('red.keys', copyFloats) : null;
      const tableArea = this.area('red.table', H * REDUNDANCY_ENTRY_WORDS);
      let o = outArea.byteOffset;
      let c = 0;
      for (let h = 0; h < H; h++) {
        const n = lengths[h]!;
        const e = h * REDUNDANCY_ENTRY_WORDS;
        if (this.buffers.has(keys[h]!.buffer)) {
          table[e] = keys[h]!.byteOffset;
        } else {
          copyArea!.set(keys[h]!.subarray(0, n * d), c);
          table[e] = copyArea!.byteOffset + c * 4;
          c += n * d;
        }
        table[e + 1] = n;
        // (no int32 arithmetic on pointers: a memory's upper 2 GiB would come out negative)
        o = Math.ceil(o / 8) * 8;
        table[e + 2] = o;
        o += n * 8;
      }
      new Int32Array(tableArea.buffer, tableArea.byteOffset, table.length).set(table);
      this.kernels.run(op.redundancy(tableArea.byteOffset, H, d, threshold));
      for (let h = 0; h < H; h++) {
        const n = lengths[h]!;
        out[h]!.set(new Float64Array(this.kernels.memory.buffer, table[h * REDUNDANCY_ENTRY_WORDS + 2]! >>> 0, n));
      }
    },
  };

  dispose(): void {
    void this.kernels.dispose();
  }
}
