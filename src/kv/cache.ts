import { KvsieveError } from '../errors.js';
import type { Allocator, KvHeadView } from '../backend/backend.js';

/**
 * One (layer, KV head) of one sequence: a region of its layer's slot store. Each head keeps its own
 * tokens, so presses can keep different tokens in different heads (ada-kv gives heads different
 * lengths), and the memory of evicted slots goes back to the layer's store.
 *
 *   keys, values : [capacity, headDim]   views of the layer store (rows < length are live; keys after RoPE)
 *   positions    : [capacity]            each slot's original position, ascending
 *   probSums     : [capacity]            h2o's running attention sum (only when tracked)
 */
export class HeadCache implements KvHeadView {
  keys: Float32Array = new Float32Array(0);
  values: Float32Array = new Float32Array(0);
  positions: Int32Array = new Int32Array(0);
  probSums: Float32Array | null = null;
  /** First slot of this head's region in the layer store. */
  start = 0;
  capacity = 0;
  length = 0;

  /**
   * Keeps only the slots at `indices` (ascending), compacted to the front in the same order.
   * Because indices ascend and index[i] >= i, moving rows forward in place is safe.
   */
  keep(indices: ArrayLike<number>): void {
    const d = this.keys.length / Math.max(1, this.capacity);
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const src = indices[i]!;
      if (!(src > prev && src < this.length)) {
        throw new KvsieveError(`kv cache: keep indices must be ascending and below ${this.length}, got ${src} after ${prev}`);
      }
      prev = src;
      if (src !== i) {
        this.keys.copyWithin(i * d, src * d, (src + 1) * d);
        this.values.copyWithin(i * d, src * d, (src + 1) * d);
        this.positions[i] = this.positions[src]!;
        if (this.probSums) this.probSums[i] = this.probSums[src]!;
      }
    }
    this.length = indices.length;
  }
}

/**
 * The slots of one layer of one sequence: a single K and a single V array shared by the layer's KV
 * heads, each head a contiguous region. Regions are re-laid out when a head needs more room, so the
 * layer's memory is exactly what its heads reserve, whatever their lengths.
 */
export class LayerStore {
  keys: Float32Array;
  values: Float32Array;
  positions: Int32Array;
  probSums: Float32Array | null;
  readonly heads: HeadCache[];

  constructor(
    readonly numKvHeads: number,
    readonly headDim: number,
    slotsPerHead: number,
    readonly trackAttention: boolean,
    private readonly alloc: Allocator,
  ) {
    this.heads = Array.from({ length: numKvHeads }, () => new HeadCache());
    this.keys = new Float32Array(0);
    this.values = new Float32Array(0);
    this.positions = new Int32Array(0);
    this.probSums = null;
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

  /**
   * Gives head h a region of `capacities[h]` slots (at least its length), keeping live rows.
   * The store is reallocated only when `totalSlots` differs from its current size.
   */
  relayout(capacities: number[], totalSlots: number): void {
    const d = this.headDim;
    const needed = capacities.reduce((a, b) => a + b, 0);
    if (needed > totalSlots) throw new KvsieveError(`kv cache: regions need ${needed} slots but the layer has ${totalSlots}`);
    const old = { keys: this.keys, values: this.values, positions: this.positions, probSums: this.probSums };
    const realloc = totalSlots !== this.totalSlots;
    // Live rows are staged through a copy when regions move inside the same store.
    const src = realloc
      ? old
      : {
          keys: old.keys.slice(),
          values: old.values.slice(),
          positions: old.positions.slice(),
          probSums: old.probSums ? old.probSums.slice() : null,
        };
    if (realloc) {
      this.keys = this.alloc.allocF32(totalSlots * d);
      this.values = this.alloc.allocF32(totalSlots * d);
      this.positions = new Int32Array(totalSlots);
      this.probSums = this.trackAttention ? this.alloc.allocF32(totalSlots) : null;
    }
    let start = 0;
    for (let h = 0; h < this.heads.length; h++) {
      const head = this.heads[h]!;
      const cap = capacities[h]!;
      if (cap < head.length) throw new KvsieveError(`kv cache: head ${h} holds ${head.length} slots, cannot shrink to ${cap}`);
      const n = head.length;
      this.keys.set(src.keys.subarray(head.start * d, (head.start + n) * d), start * d);
      this.values.set(src.values.subarray(head.start * d, (head.start + n) * d), start * d);
      this.positions.set(src.positions.subarray(head.start, head.start + n), start);
      if (this.probSums && src.probSums) this.probSums.set(src.probSums.subarray(head.start, head.start + n), start);
      head.start = start;
      head.capacity = cap;
      head.keys = this.keys.subarray(start * d, (start + cap) * d);
      head.values = this.values.subarray(start * d, (start + cap) * d);
      head.positions = this.positions.subarray(start, start + cap);
      head.probSums = this.probSums ? this.probSums.subarray(start, start + cap) : null;
      start += cap;
    }
    if (realloc) this.freeArrays(old.keys, old.values, old.probSums);
  }

  private freeArrays(...arrays: (Float32Array | null)[]): void {
    for (const a of arrays) if (a && a.length > 0) this.alloc.freeF32(a);
  }

  /** Gives the layer's memory back to the allocator; the store is empty afterwards. */
  release(): void {
    this.freeArrays(this.keys, this.values, this.probSums);
    this.keys = new Float32Array(0);
    this.values = new Float32Array(0);
    this.probSums = null;
    this.positions = new Int32Array(0);
    for (const h of this.heads) {
      h.length = 0;
      h.capacity = 0;
      h.start = 0;
      h.keys = this.keys;
      h.values = this.values;
      h.positions = this.positions;
      h.probSums = null;
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

  constructor(o: CacheOptions) {
    this.numLayers = o.numLayers;
    this.numKvHeads = o.numKvHeads;
    this.headDim = o.headDim;
    const max = o.maxLayerSlots;
    this.maxLayerSlots = typeof max === 'number' ? new Array<number>(o.numLayers).fill(max) : [...max];
    this.layers = this.maxLayerSlots.map((m) => {
      const perHead = Math.min(Math.floor(m / o.numKvHeads), o.initialSlotsPerHead ?? 64);
      return new LayerStore(o.numKvHeads, o.headDim, perHead, o.trackAttention ?? false, o.allocator ?? plainMemory);
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
        throw new KvsieveError(`kv cache: layer ${l} needs ${needed} slots but this sequence may hold at most ${max} there`);
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
        hc.keys.set(k.subarray(src, src + d), slot * d);
        hc.values.set(v.subarray(src, src + d), slot * d);
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
    return slots * this.headDim * 2 * 4;
  }

  /** Bytes of K and V allocated now (live or free slots). */
  allocatedBytes(): number {
    let slots = 0;
    for (const layer of this.layers) slots += layer.totalSlots;
    return slots * this.headDim * 2 * 4;
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
