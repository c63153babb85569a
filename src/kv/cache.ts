import { InternalError } from '../core/errors.js';
import type { Allocator, KvHeadView } from '../backend/backend.js';
import { rowsAsF32, slotBytes, storeRow, type KvDtype, type KvRows } from '../core/kv-rows.js';

/**
 * One (layer, KV head) of one sequence: a region of its layer's slot store. Each head keeps its own
 * tokens, so presses can keep different tokens in different heads (ada-kv gives heads different
 * lengths), and the memory of evicted slots goes back to the layer's store.
 *
 *   keys, values       : [capacity, headDim] rows in the store's dtype (rows < length live; keys after RoPE)
 *   keyScales, values… : [capacity]          int8 only: each row's scale
 *   positions          : [capacity]          each slot's original position, ascending
 *   probSums           : [capacity]          h2o's running attention sum (only when tracked)
 */
export class HeadCache implements KvHeadView {
  keys: KvRows = new Float32Array(0);
  values: KvRows = new Float32Array(0);
  keyScales: Float32Array | null = null;
  valueScales: Float32Array | null = null;
  positions: Int32Array = new Int32Array(0);
  probSums: Float32Array | null = null;
  /** First slot of this head's region in the layer store. */
  start = 0;
  capacity = 0;
  length = 0;

  constructor(
    readonly kvDtype: KvDtype,
    readonly headDim: number,
  ) {}

  /**
   * Keeps only the slots at `indices` (ascending), compacted to the front in the same order.
   * Because indices ascend and index[i] >= i, moving rows forward in place is safe.
   */
  keep(indices: ArrayLike<number>): void {
    const d = this.headDim;
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const src = indices[i]!;
      if (!(src > prev && src < this.length)) {
        throw new InternalError(`kv cache: keep indices must be ascending and below ${this.length}, got ${src} after ${prev}`);
      }
      prev = src;
      if (src !== i) {
        this.keys.copyWithin(i * d, src * d, (src + 1) * d);
        this.values.copyWithin(i * d, src * d, (src + 1) * d);
        if (this.keyScales) this.keyScales[i] = this.keyScales[src]!;
        if (this.valueScales) this.valueScales[i] = this.valueScales[src]!;
        this.positions[i] = this.positions[src]!;
        if (this.probSums) this.probSums[i] = this.probSums[src]!;
      }
    }
    this.length = indices.length;
  }

  /** The live keys as float32 [length, headDim]: a view for f32 storage, a widened copy otherwise. */
  keysF32(): Float32Array {
    return rowsAsF32(this.kvDtype, this.keys, this.keyScales, this.length, this.headDim);
  }

  valuesF32(): Float32Array {
    return rowsAsF32(this.kvDtype, this.values, this.valueScales, this.length, this.headDim);
  }
}

/** Typed views of one allocation from the backend's allocator, kept so it can be given back. */
interface Block<T> {
  backing: Float32Array;
  view: T;
}

/**
 * The slots of one layer of one sequence: a single K and a single V array shared by the layer's KV
 * heads, each head a contiguous region. Regions are re-laid out when a head needs more room, so the
 * layer's memory is exactly what its heads reserve, whatever their lengths.
 */
export class LayerStore {
  private keys: Block<KvRows> | null = null;
  private values: Block<KvRows> | null = null;
  private keyScales: Block<Float32Array> | null = null;
  private valueScales: Block<Float32Array> | null = null;
  private probSums: Block<Float32Array> | null = null;
  private positions: Int32Array = new Int32Array(0);
  readonly heads: HeadCache[];

  constructor(
    readonly numKvHeads: number,
    readonly headDim: number,
    slotsPerHead: number,
    readonly trackAttention: boolean,
    private readonly alloc: Allocator,
    readonly kvDtype: KvDtype = 'f32',
  ) {
    this.heads = Array.from({ length: numKvHeads }, () => new HeadCache(kvDtype, headDim));
    this.relayout(new Array<number>(numKvHeads).fill(slotsPerHead), numKvHeads * slotsPerHead);
  }

  get totalSlots(): number {
    return this.positions.length;
  }

  liveSlots(): number {
    let n = 0;
    for (const h of this.heads) n += h.length;
    return n;
  }

  private rowsBlock(values: number): Block<KvRows> {
    const bytes = this.kvDtype === 'f32' ? 4 : this.kvDtype === 'f16' ? 2 : 1;
    const backing = this.alloc.allocF32(Math.ceil((values * bytes) / 4));
    const view =
      this.kvDtype === 'f32'
        ? backing
        : this.kvDtype === 'f16'
          ? new Uint16Array(backing.buffer, backing.byteOffset, values)
          : new Int8Array(backing.buffer, backing.byteOffset, values);
    return { backing, view };
  }

  private floatBlock(n: number): Block<Float32Array> {
    const backing = this.alloc.allocF32(n);
    return { backing, view: backing };
  }

  /**
   * Gives head h a region of `capacities[h]` slots (at least its length), keeping live rows.
   * The store is reallocated only when `totalSlots` differs from its current size.
   */
  relayout(capacities: number[], totalSlots: number): void {
    const d = this.headDim;
    const int8 = this.kvDtype === 'int8';
    const needed = capacities.reduce((a, b) => a + b, 0);
    if (needed > totalSlots) throw new InternalError(`kv cache: regions need ${needed} slots but the layer has ${totalSlots}`);
    const old = [this.keys, this.values, this.keyScales, this.valueScales, this.probSums];
    const realloc = totalSlots !== this.totalSlots;
    // Live rows are staged through a copy when regions move inside the same store.
    const copy = <T extends KvRows>(b: Block<T> | null): T | null => (b ? (realloc ? b.view : (b.view.slice() as T)) : null);
    const src = {
      keys: copy(this.keys),
      values: copy(this.values),
      keyScales: copy(this.keyScales),
      valueScales: copy(this.valueScales),
      probSums: copy(this.probSums),
      positions: realloc ? this.positions : this.positions.slice(),
    };
    if (realloc) {
      this.keys = this.rowsBlock(totalSlots * d);
      this.values = this.rowsBlock(totalSlots * d);
      this.keyScales = int8 ? this.floatBlock(totalSlots) : null;
      this.valueScales = int8 ? this.floatBlock(totalSlots) : null;
      this.probSums = this.trackAttention ? this.floatBlock(totalSlots) : null;
      this.positions = new Int32Array(totalSlots);
    }
    const region = <T extends KvRows>(b: Block<T> | null, start: number, cap: number, width: number): T | null =>
      b ? (b.view.subarray(start * width, (start + cap) * width) as T) : null;
    let start = 0;
    for (let h = 0; h < this.heads.length; h++) {
      const head = this.heads[h]!;
      const cap = capacities[h]!;
      if (cap < head.length) throw new InternalError(`kv cache: head ${h} holds ${head.length} slots, cannot shrink to ${cap}`);
      const n = head.length;
      const from = head.start;
      const move = (dst: KvRows | null, from_: KvRows | null, width: number) => {
        if (dst && from_ && n > 0) dst.set(from_.subarray(from * width, (from + n) * width) as never, start * width);
      };
      move(this.keys!.view, src.keys, d);
      move(this.values!.view, src.values, d);
      move(this.keyScales?.view ?? null, src.keyScales, 1);
      move(this.valueScales?.view ?? null, src.valueScales, 1);
      move(this.probSums?.view ?? null, src.probSums, 1);
      if (n > 0) this.positions.set(src.positions.subarray(from, from + n), start);
      head.start = start;
      head.capacity = cap;
      head.keys = region(this.keys, start, cap, d)!;
      head.values = region(this.values, start, cap, d)!;
      head.keyScales = region(this.keyScales, start, cap, 1);
      head.valueScales = region(this.valueScales, start, cap, 1);
      head.probSums = region(this.probSums, start, cap, 1);
      head.positions = this.positions.subarray(start, start + cap);
      start += cap;
    }
    if (realloc) for (const b of old) if (b) this.alloc.freeF32(b.backing);
  }

  /** Gives the layer's memory back to the allocator; the store is empty afterwards. */
  release(): void {
    for (const b of [this.keys, this.values, this.keyScales, this.valueScales, this.probSums]) if (b) this.alloc.freeF32(b.backing);
    this.keys = this.values = this.keyScales = this.valueScales = this.probSums = null;
    this.positions = new Int32Array(0);
    for (const h of this.heads) {
      h.length = 0;
      h.capacity = 0;
      h.start = 0;
      h.keys = new Float32Array(0);
      h.values = new Float32Array(0);
      h.keyScales = h.valueScales = h.probSums = null;
      h.positions = this.positions;
    }
  }
}

export interface CacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /**
   * Most slots each layer may hold over all its heads (numKvHeads x (budget + buffer) when compressed,
   * numKvHeads x context otherwise): one number for every layer, or one per layer.
   */
  maxLayerSlots: number | readonly number[];
  /** Slots to allocate per head up front (capped by maxLayerSlots / numKvHeads). */
  initialSlotsPerHead?: number;
  /** Keep h2o's per-slot running attention sums. */
  trackAttention?: boolean;
  /** Keep the last `observationWindow` query rows of each layer for the presses. */
  observationWindow?: number;
  /** numHeads * headDim: the width of one stored query row. */
  queryWidth?: number;
  /** Where K/V slots live (the backend's memory); plain arrays by default. */
  allocator?: Allocator;
  /** How K and V rows are stored (default f32). */
  kvDtype?: KvDtype;
}

const plainMemory: Allocator = { allocF32: (n) => new Float32Array(n), freeF32: () => {} };

/**
 * The KV cache of one sequence: per layer, per KV head slots, plus the observation store (the
 * last w query rows of each layer, after RoPE) that attention-based presses score with.
 */
export class SequenceCache {
  readonly layers: LayerStore[];
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Most slots each layer may hold, over all its heads. */
  readonly maxLayerSlots: readonly number[];
  /** Per layer ring buffer [observationWindow, queryWidth] of the newest query rows. */
  private readonly obs: Float32Array[];
  private readonly obsCount: number[];
  readonly observationWindow: number;
  readonly queryWidth: number;
  private peakLive = 0;
  private peakAllocated = 0;

  readonly kvDtype: KvDtype;
  private readonly slotBytes: number;

  constructor(o: CacheOptions) {
    this.kvDtype = o.kvDtype ?? 'f32';
    this.slotBytes = slotBytes(this.kvDtype, o.headDim);
    this.numLayers = o.numLayers;
    this.numKvHeads = o.numKvHeads;
    this.headDim = o.headDim;
    const max = o.maxLayerSlots;
    this.maxLayerSlots = typeof max === 'number' ? new Array<number>(o.numLayers).fill(max) : [...max];
    this.layers = this.maxLayerSlots.map((m) => {
      const perHead = Math.min(Math.floor(m / o.numKvHeads), o.initialSlotsPerHead ?? 64);
      return new LayerStore(o.numKvHeads, o.headDim, perHead, o.trackAttention ?? false, o.allocator ?? plainMemory, this.kvDtype);
    });
    this.observationWindow = o.observationWindow ?? 0;
    this.queryWidth = o.queryWidth ?? 0;
    this.obs = Array.from({ length: o.numLayers }, () => new Float32Array(this.observationWindow * this.queryWidth));
    this.obsCount = new Array<number>(o.numLayers).fill(0);
    this.updatePeaks();
  }

  /** Gives all K/V memory back (the sequence is finished). */
  release(): void {
    for (const layer of this.layers) layer.release();
  }

  /** The KV heads of one layer. */
  heads(layer: number): HeadCache[] {
    return this.layers[layer]!.heads;
  }

  /** Slots live in (layer, head). */
  length(layer: number, head: number): number {
    return this.layers[layer]!.heads[head]!.length;
  }

  /**
   * Makes room for `extra` more slots in every head. A layer whose heads lack room is re-laid out
   * with each head growing geometrically, within maxLayerSlots.
   */
  reserve(extra: number): void {
    this.layers.forEach((layer, l) => {
      if (layer.heads.every((h) => h.length + extra <= h.capacity)) return;
      const max = this.maxLayerSlots[l]!;
      const needed = layer.liveSlots() + extra * layer.heads.length;
      if (needed > max) {
        throw new InternalError(`kv cache: layer ${l} needs ${needed} slots but this sequence may hold at most ${max} there`);
      }
      const caps = layer.heads.map((h) => h.length + Math.max(extra, Math.ceil(h.capacity * 0.5), 16));
      const total = caps.reduce((a, b) => a + b, 0);
      if (total > max) {
        // Out of growth room: give every head what it needs and share the rest evenly.
        const share = Math.floor((max - needed) / layer.heads.length);
        layer.relayout(layer.heads.map((h) => h.length + extra + share), max);
      } else {
        layer.relayout(caps, total);
      }
    });
    this.updatePeaks();
  }

  /**
   * After a compression of `layer`: gives each of its heads exactly `length + headroom` slots in a
   * store of `totalSlots`, so the freed slots are what the next appends use.
   */
  repack(layer: number, headroom: number, totalSlots: number): void {
    const store = this.layers[layer]!;
    store.relayout(store.heads.map((h) => h.length + headroom), totalSlots);
  }

  /** Live slots of one layer, over all its heads. */
  layerLength(layer: number): number {
    return this.layers[layer]!.liveSlots();
  }

  /**
   * Appends T tokens to one layer. `k`/`v` rows are [T, numKvHeads * headDim] starting at `rowOffset`
   * rows into the arrays. Call `reserve(T)` first.
   */
  append(layer: number, k: Float32Array, v: Float32Array, rowOffset: number, T: number, positions: ArrayLike<number>): void {
    const d = this.headDim;
    const width = this.numKvHeads * d;
    const heads = this.layers[layer]!.heads;
    for (let h = 0; h < heads.length; h++) {
      const hc = heads[h]!;
      for (let t = 0; t < T; t++) {
        const src = (rowOffset + t) * width + h * d;
        const slot = hc.length + t;
        storeRow(this.kvDtype, k, src, hc.keys, hc.keyScales, slot, d);
        storeRow(this.kvDtype, v, src, hc.values, hc.valueScales, slot, d);
        hc.positions[slot] = positions[t]!;
        if (hc.probSums) hc.probSums[slot] = 0;
      }
      hc.length += T;
    }
    if (layer === this.numLayers - 1) this.updatePeaks();
  }

  /** Stores the query rows [T, queryWidth] (after RoPE) of one layer in the observation ring. */
  observe(layer: number, q: Float32Array, rowOffset: number, T: number): void {
    const w = this.observationWindow;
    if (w === 0) return;
    const ring = this.obs[layer]!;
    const width = this.queryWidth;
    const first = Math.max(0, T - w);
    for (let t = first; t < T; t++) {
      const slot = (this.obsCount[layer]! + t - first) % w;
      ring.set(q.subarray((rowOffset + t) * width, (rowOffset + t + 1) * width), slot * width);
    }
    this.obsCount[layer] = this.obsCount[layer]! + (T - first);
  }

  /**
   * The stored observation queries of one layer, oldest first, split per query head:
   * result[g] is [w, headDim] with w = min(observationWindow, queries seen).
   */
  observations(layer: number, numHeads: number): { w: number; queries: Float32Array[] } {
    const wMax = this.observationWindow;
    const count = this.obsCount[layer]!;
    const w = Math.min(wMax, count);
    const d = this.headDim;
    const width = this.queryWidth;
    const ring = this.obs[layer]!;
    const queries = Array.from({ length: numHeads }, () => new Float32Array(w * d));
    for (let i = 0; i < w; i++) {
      const slot = (count - w + i) % wMax;
      for (let g = 0; g < numHeads; g++) {
        queries[g]!.set(ring.subarray(slot * width + g * d, slot * width + (g + 1) * d), i * d);
      }
    }
    return { w, queries };
  }

  /** Bytes of K and V held in live slots now. */
  liveBytes(): number {
    let slots = 0;
    for (const layer of this.layers) slots += layer.liveSlots();
    return slots * this.slotBytes;
  }

  /** Bytes of K and V allocated now (live or free slots). */
  allocatedBytes(): number {
    let slots = 0;
    for (const layer of this.layers) slots += layer.totalSlots;
    return slots * this.slotBytes;
  }

  /** The most slots any single (layer, head) holds now. */
  maxHeadLength(): number {
    let m = 0;
    for (const layer of this.layers) for (const h of layer.heads) m = Math.max(m, h.length);
    return m;
  }

  /** The most live slots any layer holds now, over all its heads. */
  maxLayerLength(): number {
    let m = 0;
    for (const layer of this.layers) m = Math.max(m, layer.liveSlots());
    return m;
  }

  /** Records the peaks; `append` calls it after the last layer. */
  updatePeaks(): void {
    this.peakLive = Math.max(this.peakLive, this.liveBytes());
    this.peakAllocated = Math.max(this.peakAllocated, this.allocatedBytes());
  }

  get peakLiveBytes(): number {
    return this.peakLive;
  }

  get peakAllocatedBytes(): number {
    return this.peakAllocated;
  }
}
