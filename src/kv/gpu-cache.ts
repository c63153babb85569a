/**
 * The KV cache in GPU buffers (the webgpu backend's sibling of SlotCache): per layer one K and one V
 * storage buffer, [numKvHeads, capacity, headDim] of float32 or of IEEE halves two to a u32
 * (kvDtype f16, GpuKvStore; head dims are even, so every row starts on a word), head h's slots a
 * contiguous region from h * capacity. Lengths and original positions are kept on the CPU. The GPU forward appends through
 * `layerForStep` (the rows are copied by a kernel of the step); growing and eviction are copies on
 * the GPU (compaction: each head's kept runs copied to the front of a fresh region). Heads may hold
 * different counts (ada-kv's keep lists); the buffers' capacity is the longest head's. Keys and values
 * are not readable synchronously, so the views of `heads` carry lengths only; `readLayer` reads a
 * layer back (the compressor's scoring), and a layer may carry running attention sums per slot
 * (`sumsForStep`, [numKvHeads, capacity] float32, h2o's), grown and compacted with its slots.
 */
import { InternalError, KvsieveError } from '../core/errors.js';
import type { KvHeadView } from '../backend/backend.js';
import type { WebGpuBackend } from '../backend/webgpu/backend.js';
import { storeRow, type KvDtype } from '../core/kv-rows.js';
import { f16ArrayToF32 } from '../core/half.js';
import { MAX_KV_HEADS, type GpuKvStore } from '../backend/webgpu/shaders.js';
import type { KvAppend, KvBytes, KvCache } from './cache.js';

export interface GpuCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Most slots each KV head may hold (the context for a full cache); one number, or one per layer. */
  maxSlotsPerHead: number | readonly number[];
  /** Slots per head the first append allocates (capped by maxSlotsPerHead; default 64). */
  initialSlotsPerHead?: number;
  /** f32 or f16 (int8 is refused on the GPU). */
  kvDtype?: KvDtype;
  backend: WebGpuBackend;
}

/** What the GPU forward needs of one layer to append a step's rows and attend over them. */
export interface GpuLayerSlots {
  keys: GPUBuffer;
  values: GPUBuffer;
  /** Slots per head of the buffers. */
  capacity: number;
  /** Per head, its live slots before this step's rows (the slot its first new row goes to). */
  bases: number[];
  /** How the buffers hold K and V. */
  kvStore: GpuKvStore;
}

/** A layer read back: per head its live keys and values ([length, headDim] each), and its attention sums ([length]) where kept. */
export interface GpuLayerRead {
  keys: Float32Array[];
  values: Float32Array[];
  sums: Float32Array[] | null;
}

const EMPTY = { f32: new Float32Array(0), f16: new Uint16Array(0) };

/** One layer: its buffers and each head's length and positions. */
class GpuLayer {
  keys: GPUBuffer | null = null;
  values: GPUBuffer | null = null;
  /** Running attention sums per slot, [numKvHeads, capacity], once asked for. */
  sums: GPUBuffer | null = null;
  capacity = 0;
  readonly lengths: number[];
  positions: Int32Array[];

  constructor(
    readonly numKvHeads: number,
    readonly kvStore: GpuKvStore,
  ) {
    this.lengths = new Array<number>(numKvHeads).fill(0);
    this.positions = Array.from({ length: numKvHeads }, () => new Int32Array(0));
  }

  live(): number {
    return this.lengths.reduce((a, b) => a + b, 0);
  }

  /** The views attention and the engine read: lengths only (the rows are on the GPU). */
  views(): KvHeadView[] {
    const empty = EMPTY[this.kvStore];
    return this.lengths.map((length) => ({ kvDtype: this.kvStore, keys: empty, values: empty, keyScales: null, valueScales: null, length }));
  }
}

export class GpuKvCache implements KvCache {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly kvDtype: GpuKvStore;
  private readonly backend: WebGpuBackend;
  private readonly layers: GpuLayer[];
  /** Most slots per head, per layer. */
  private readonly maxPerHead: number[];
  private readonly initialSlotsPerHead: number;
  /** Bytes of one slot: its K and V rows. */
  private readonly slotBytes: number;
  /** Bytes of one K (or V) row in the buffers. */
  private readonly rowBytes: number;
  private peakLive = 0;
  private peakAllocated = 0;

  constructor(o: GpuCacheOptions) {
    const kvDtype = o.kvDtype ?? 'f32';
    if (kvDtype !== 'f32' && kvDtype !== 'f16') {
      throw new KvsieveError(`kvDtype ${String(kvDtype)} is not available on the webgpu backend (its cache keeps f32 or f16)`, { option: 'kvDtype' });
    }
    if (kvDtype === 'f16' && o.headDim % 2 !== 0) throw new KvsieveError(`kvDtype f16 on the webgpu backend needs an even head dimension, got ${o.headDim}`, { option: 'kvDtype' });
    this.kvDtype = kvDtype;
    if (o.numKvHeads > MAX_KV_HEADS) throw new KvsieveError(`backend webgpu: ${o.numKvHeads} KV heads per layer, above the GPU kernels' ${MAX_KV_HEADS}`, { option: 'backend' });
    this.backend = o.backend;
    this.numLayers = o.numLayers;
    this.numKvHeads = o.numKvHeads;
    this.headDim = o.headDim;
    const max = o.maxSlotsPerHead;
    this.maxPerHead = typeof max === 'number' ? new Array<number>(o.numLayers).fill(max) : [...max];
    if (this.maxPerHead.length !== o.numLayers) throw new InternalError(`kv cache: ${this.maxPerHead.length} slot limits for ${o.numLayers} layers`);
    this.initialSlotsPerHead = o.initialSlotsPerHead ?? 64;
    this.rowBytes = o.headDim * (kvDtype === 'f16' ? 2 : 4);
    this.slotBytes = 2 * this.rowBytes;
    this.layers = Array.from({ length: o.numLayers }, () => new GpuLayer(o.numKvHeads, kvDtype));
  }

  heads(layer: number): readonly KvHeadView[] {
    return this.layers[layer]!.views();
  }

  /**
   * Makes room for `count` rows in `layer` and books them (positions, lengths), returning where the
   * step's kernel copies them: the caller records that copy before any later step reads the layer.
   */
  layerForStep(layer: number, count: number, positions: ArrayLike<number>): GpuLayerSlots {
    const store = this.layers[layer]!;
    if (Math.max(...store.lengths) + count > store.capacity) this.grow(layer, count);
    const bases = [...store.lengths];
    for (let h = 0; h < this.numKvHeads; h++) {
      const base = bases[h]!;
      for (let t = 0; t < count; t++) store.positions[h]![base + t] = positions[t]!;
      store.lengths[h] = base + count;
    }
    this.countBytes();
    return { keys: store.keys!, values: store.values!, capacity: store.capacity, bases, kvStore: this.kvDtype };
  }

  /**
   * The layer's running attention sums ([numKvHeads, capacity] float32, zero for new slots), made on
   * first use: after `layerForStep`, the step's attention adds into it (GpuStep.attentionSums).
   */
  sumsForStep(layer: number): GPUBuffer {
    const store = this.layers[layer]!;
    store.sums ??= this.backend.storage(this.numKvHeads * Math.max(store.capacity, 1) * 4, `kv sums ${layer}`);
    return store.sums;
  }

  append(layer: number, rows: KvAppend): readonly KvHeadView[] {
    const d = this.headDim;
    const width = this.numKvHeads * d;
    const slots = this.layerForStep(layer, rows.count, rows.positions);
    const queue = this.backend.device.queue;
    const Rows = this.kvDtype === 'f16' ? Uint16Array : Float32Array;
    for (let h = 0; h < this.numKvHeads; h++) {
      // each head's rows encoded as the CPU caches store them (kv-rows.ts: f16 rounds to nearest even)
      const k = new Rows(rows.count * d);
      const v = new Rows(rows.count * d);
      for (let t = 0; t < rows.count; t++) {
        const src = (rows.offset + t) * width + h * d;
        storeRow(this.kvDtype, rows.k, src, k, null, t, d);
        storeRow(this.kvDtype, rows.v, src, v, null, t, d);
      }
      const at = (h * slots.capacity + slots.bases[h]!) * this.rowBytes;
      queue.writeBuffer(slots.keys, at, k);
      queue.writeBuffer(slots.values, at, v);
    }
    return this.heads(layer);
  }

  reserve(tokens: number): void {
    this.layers.forEach((store, l) => {
      if (store.lengths.some((n) => n + tokens > store.capacity)) this.grow(l, tokens);
    });
  }

  /** New buffers for `layer` with `capacity` slots per head; each head's first `keep[h]` runs copied over. */
  private relayout(layer: number, capacity: number, runs: readonly (readonly [number, number, number])[][]): void {
    const store = this.layers[layer]!;
    const rowBytes = this.rowBytes;
    const keys = this.backend.storage(this.numKvHeads * capacity * rowBytes, `kv keys ${layer}`);
    const values = this.backend.storage(this.numKvHeads * capacity * rowBytes, `kv values ${layer}`);
    const sums = store.sums ? this.backend.storage(this.numKvHeads * capacity * 4, `kv sums ${layer}`) : null;
    if (store.keys && store.values && runs.some((r) => r.length > 0)) {
      const encoder = this.backend.device.createCommandEncoder({ label: 'kv relayout' });
      runs.forEach((headRuns, h) => {
        // run: [from slot, to slot, slots]
        for (const [from, to, n] of headRuns) {
          const src = (h * store.capacity + from) * rowBytes;
          const dst = (h * capacity + to) * rowBytes;
          encoder.copyBufferToBuffer(store.keys!, src, keys, dst, n * rowBytes);
          encoder.copyBufferToBuffer(store.values!, src, values, dst, n * rowBytes);
          if (sums) encoder.copyBufferToBuffer(store.sums!, (h * store.capacity + from) * 4, sums, (h * capacity + to) * 4, n * 4);
        }
      });
      this.backend.device.queue.submit([encoder.finish()]);
    }
    store.keys?.destroy();
    store.values?.destroy();
    store.sums?.destroy();
    store.keys = keys;
    store.values = values;
    store.sums = sums;
    store.positions = store.positions.map((p) => {
      const grown = new Int32Array(capacity);
      grown.set(p.subarray(0, Math.min(p.length, capacity)));
      return grown;
    });
    store.capacity = capacity;
  }

  /**
   * Room for `extra` more slots in every head, growing by half at least, within the layer's limit
   * (its heads' slots together; a head longer than the others, ada-kv's, widens the buffers).
   */
  private grow(layer: number, extra: number): void {
    const store = this.layers[layer]!;
    const max = this.maxPerHead[layer]!;
    const longest = Math.max(...store.lengths);
    const needed = store.live() + extra * this.numKvHeads;
    if (needed > max * this.numKvHeads) {
      throw new InternalError(`kv cache: layer ${layer} needs ${needed} slots but this sequence may hold at most ${max * this.numKvHeads} there`);
    }
    const first = store.capacity === 0 ? this.initialSlotsPerHead : 0;
    const capacity = Math.max(longest + extra, Math.min(max, longest + Math.max(extra, first, Math.ceil(store.capacity * 0.5), 16)));
    this.relayout(layer, capacity, store.lengths.map((n) => (n > 0 ? [[0, 0, n] as const] : [])));
    this.countBytes();
  }

  evict(layer: number, keep: readonly ArrayLike<number>[]): void {
    const store = this.layers[layer]!;
    if (keep.length !== this.numKvHeads) throw new InternalError(`kv cache: ${keep.length} keep lists for ${this.numKvHeads} KV heads`);
    // Each head's kept slots as runs of consecutive slots, compacted to the front in order.
    const runs = keep.map((list, h) => {
      const out: [number, number, number][] = [];
      let prev = -1;
      for (let i = 0; i < list.length; i++) {
        const s = list[i]!;
        if (!(Number.isInteger(s) && s > prev && s < store.lengths[h]!)) {
          throw new InternalError(`kv cache: keep indices of KV head ${h} must ascend within 0..${store.lengths[h]! - 1}, got ${s} after ${prev}`);
        }
        const last = out[out.length - 1];
        if (last && last[0] + last[2] === s) last[2]++;
        else out.push([s, i, 1]);
        prev = s;
      }
      return out;
    });
    const positions = store.positions.map((p, h) => Int32Array.from(keep[h]!, (s) => p[s]!));
    this.relayout(layer, store.capacity, runs);
    positions.forEach((p, h) => {
      store.positions[h]!.set(p);
      store.lengths[h] = p.length;
    });
    this.countBytes();
  }

  private unreadable(): never {
    throw new InternalError('gpu kv cache: keys and values live on the GPU and are not read back synchronously (readLayer reads them back)');
  }
  keysF32(_layer: number, _head: number): Float32Array {
    this.unreadable();
  }
  valuesF32(_layer: number, _head: number): Float32Array {
    this.unreadable();
  }

  /** The layer's key buffer ([numKvHeads, capacity, headDim]) and each head's live slots: what the GPU scoring kernels read. */
  layerKeys(layer: number): { keys: GPUBuffer | null; kvStore: GpuKvStore; capacity: number; lengths: readonly number[] } {
    const store = this.layers[layer]!;
    return { keys: store.keys, kvStore: this.kvDtype, capacity: store.capacity, lengths: store.lengths };
  }

  /** Reads a layer back: every head's live keys and values, and its attention sums where kept (one submission, one await). */
  async readLayer(layer: number): Promise<GpuLayerRead> {
    const store = this.layers[layer]!;
    const H = this.numKvHeads;
    const rowBytes = this.rowBytes;
    const out: GpuLayerRead = { keys: [], values: [], sums: store.sums ? [] : null };
    const live = store.live();
    if (live === 0 || !store.keys || !store.values) {
      for (let h = 0; h < H; h++) out.keys.push(new Float32Array(0)), out.values.push(new Float32Array(0)), out.sums?.push(new Float32Array(0));
      return out;
    }
    // staging: every head's keys, then every head's values, then every head's sums, each head's rows back to back
    const sumsBytes = store.sums ? live * 4 : 0;
    const device = this.backend.device;
    const staging = device.createBuffer({ size: 2 * live * rowBytes + sumsBytes, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */, label: 'kv layer readback' });
    const encoder = device.createCommandEncoder({ label: 'kv layer readback' });
    let at = 0;
    store.lengths.forEach((n, h) => {
      if (n === 0) return;
      encoder.copyBufferToBuffer(store.keys!, h * store.capacity * rowBytes, staging, at * rowBytes, n * rowBytes);
      encoder.copyBufferToBuffer(store.values!, h * store.capacity * rowBytes, staging, (live + at) * rowBytes, n * rowBytes);
      if (store.sums) encoder.copyBufferToBuffer(store.sums, h * store.capacity * 4, staging, 2 * live * rowBytes + at * 4, n * 4);
      at += n;
    });
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      const mapped = staging.getMappedRange().slice(0);
      const d = this.headDim;
      const rows = this.widen(mapped.slice(0, 2 * live * rowBytes));
      const sums = new Float32Array(mapped, 2 * live * rowBytes);
      at = 0;
      store.lengths.forEach((n) => {
        out.keys.push(rows.slice(at * d, (at + n) * d));
        out.values.push(rows.slice((live + at) * d, (live + at + n) * d));
        out.sums?.push(sums.slice(at, at + n));
        at += n;
      });
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** Reads a layer's running attention sums back: per head [length] (null: the layer keeps none). */
  async readSums(layer: number): Promise<Float32Array[] | null> {
    const store = this.layers[layer]!;
    if (!store.sums) return null;
    const live = store.live();
    if (live === 0) return store.lengths.map(() => new Float32Array(0));
    const device = this.backend.device;
    const staging = device.createBuffer({ size: live * 4, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */, label: 'kv sums readback' });
    const encoder = device.createCommandEncoder({ label: 'kv sums readback' });
    let at = 0;
    store.lengths.forEach((n, h) => {
      if (n > 0) encoder.copyBufferToBuffer(store.sums!, h * store.capacity * 4, staging, at * 4, n * 4);
      at += n;
    });
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      const all = new Float32Array(staging.getMappedRange().slice(0));
      at = 0;
      return store.lengths.map((n) => all.slice(at, (at += n)));
    } finally {
      staging.destroy();
    }
  }

  /** Reads one head's live keys and values back ([length, headDim] each): the asynchronous keysF32/valuesF32. */
  async readHead(layer: number, head: number): Promise<{ keys: Float32Array; values: Float32Array }> {
    const store = this.layers[layer]!;
    const n = store.lengths[head]!;
    const bytes = n * this.rowBytes;
    if (n === 0) return { keys: new Float32Array(0), values: new Float32Array(0) };
    const device = this.backend.device;
    const staging = device.createBuffer({ size: 2 * bytes, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */, label: 'kv readback' });
    const encoder = device.createCommandEncoder({ label: 'kv readback' });
    const from = head * store.capacity * this.rowBytes;
    encoder.copyBufferToBuffer(store.keys!, from, staging, 0, bytes);
    encoder.copyBufferToBuffer(store.values!, from, staging, bytes, bytes);
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      const all = this.widen(staging.getMappedRange().slice(0));
      return { keys: all.slice(0, n * this.headDim), values: all.slice(n * this.headDim) };
    } finally {
      staging.destroy();
    }
  }

  /** Rows read back as float32 (f16: every half widened, exactly). */
  private widen(bytes: ArrayBuffer): Float32Array {
    if (this.kvDtype === 'f32') return new Float32Array(bytes);
    const halves = new Uint16Array(bytes);
    const out = new Float32Array(halves.length);
    f16ArrayToF32(halves, out);
    return out;
  }

  positions(layer: number, head: number): Int32Array {
    const store = this.layers[layer]!;
    return store.positions[head]!.subarray(0, store.lengths[head]!);
  }

  setSlotLimit(slotsPerHead: number): void {
    this.layers.forEach((store, l) => {
      if (slotsPerHead * this.numKvHeads < store.live()) throw new InternalError(`kv cache: layer ${l} holds ${store.live()} slots, above a limit of ${slotsPerHead * this.numKvHeads}`);
      this.maxPerHead[l] = slotsPerHead;
    });
  }

  limitBytes(): number {
    return this.maxPerHead.reduce((a, b) => a + b, 0) * this.numKvHeads * this.slotBytes;
  }

  copyFrom(other: KvCache): void {
    if (!(other instanceof GpuKvCache) || other.layers.length !== this.layers.length || other.numKvHeads !== this.numKvHeads || other.headDim !== this.headDim || other.kvDtype !== this.kvDtype) {
      throw new InternalError('kv cache: copyFrom takes a GpuKvCache of the same shape');
    }
    this.release();
    this.layers.forEach((store, l) => {
      const from = other.layers[l]!;
      const longest = Math.max(...from.lengths);
      if (from.live() > this.maxPerHead[l]! * this.numKvHeads) throw new InternalError(`kv cache: layer ${l} would copy ${from.live()} slots, above its limit of ${this.maxPerHead[l]! * this.numKvHeads}`);
      if (longest === 0) return;
      // The other's buffers become this layer's old ones for one relayout (they are copied, not taken).
      const rowBytes = this.rowBytes;
      const keys = this.backend.storage(this.numKvHeads * longest * rowBytes, `kv keys ${l}`);
      const values = this.backend.storage(this.numKvHeads * longest * rowBytes, `kv values ${l}`);
      const sums = from.sums ? this.backend.storage(this.numKvHeads * longest * 4, `kv sums ${l}`) : null;
      const encoder = this.backend.device.createCommandEncoder({ label: 'kv copy' });
      from.lengths.forEach((n, h) => {
        if (n === 0) return;
        encoder.copyBufferToBuffer(from.keys!, h * from.capacity * rowBytes, keys, h * longest * rowBytes, n * rowBytes);
        encoder.copyBufferToBuffer(from.values!, h * from.capacity * rowBytes, values, h * longest * rowBytes, n * rowBytes);
        if (sums) encoder.copyBufferToBuffer(from.sums!, h * from.capacity * 4, sums, h * longest * 4, n * 4);
      });
      this.backend.device.queue.submit([encoder.finish()]);
      store.keys = keys;
      store.values = values;
      store.sums = sums;
      store.capacity = longest;
      store.positions = from.positions.map((p) => {
        const copy = new Int32Array(longest);
        copy.set(p.subarray(0, longest));
        return copy;
      });
      from.lengths.forEach((n, h) => (store.lengths[h] = n));
    });
    this.countBytes();
  }

  bytes(): KvBytes {
    let live = 0;
    let allocated = 0;
    for (const store of this.layers) {
      live += store.live();
      allocated += store.capacity * this.numKvHeads;
    }
    return { live: live * this.slotBytes, allocated: allocated * this.slotBytes, peakLive: this.peakLive, peakAllocated: this.peakAllocated };
  }

  release(): void {
    for (const store of this.layers) {
      store.keys?.destroy();
      store.values?.destroy();
      store.sums?.destroy();
      store.keys = store.values = store.sums = null;
      store.capacity = 0;
      store.lengths.fill(0);
      store.positions = store.positions.map(() => new Int32Array(0));
    }
    this.countBytes();
  }

  /** Records the peaks after a change. */
  private countBytes(): void {
    const b = this.bytes();
    this.peakLive = Math.max(this.peakLive, b.live);
    this.peakAllocated = Math.max(this.peakAllocated, b.allocated);
  }
}
