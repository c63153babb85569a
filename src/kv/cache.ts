import { KvsieveError } from '../errors.js';
import type { KvHeadView } from '../backend/backend.js';

/**
 * One (layer, KV head) of one sequence: its own slots, so presses can keep different tokens in
 * different heads and the memory of evicted slots is reused by the next appends.
 *
 *   keys, values : [capacity, headDim]   (rows < length are live; keys after RoPE)
 *   positions    : [capacity]            (each slot's original position, ascending)
 *   probSums     : [capacity]            (h2o's running attention sum, only when tracked)
 */
export class HeadCache implements KvHeadView {
  keys: Float32Array;
  values: Float32Array;
  positions: Int32Array;
  probSums: Float32Array | null;
  length = 0;

  constructor(
    readonly headDim: number,
    capacity: number,
    trackAttention: boolean,
  ) {
    this.keys = new Float32Array(capacity * headDim);
    this.values = new Float32Array(capacity * headDim);
    this.positions = new Int32Array(capacity);
    this.probSums = trackAttention ? new Float32Array(capacity) : null;
  }

  get capacity(): number {
    return this.positions.length;
  }

  /** Grows the slot arrays (copying live rows) to hold at least `capacity` slots. */
  reserve(capacity: number): void {
    if (capacity <= this.capacity) return;
    const d = this.headDim;
    const keys = new Float32Array(capacity * d);
    keys.set(this.keys.subarray(0, this.length * d));
    const values = new Float32Array(capacity * d);
    values.set(this.values.subarray(0, this.length * d));
    const positions = new Int32Array(capacity);
    positions.set(this.positions.subarray(0, this.length));
    this.keys = keys;
    this.values = values;
    this.positions = positions;
    if (this.probSums) {
      const sums = new Float32Array(capacity);
      sums.set(this.probSums.subarray(0, this.length));
      this.probSums = sums;
    }
  }

  /**
   * Keeps only the slots at `indices` (ascending), compacted to the front in the same order.
   * Because indices ascend and index[i] >= i, moving rows forward in place is safe.
   */
  keep(indices: ArrayLike<number>): void {
    const d = this.headDim;
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const src = indices[i]!;
      if (src <= prev || src >= this.length) {
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

export interface CacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Largest number of slots one head may ever hold (budget + buffer when compressed, else the context). */
  maxSlots: number;
  /** Slots to allocate up front per head. */
  initialSlots?: number;
  /** Keep h2o's per-slot running attention sums. */
  trackAttention?: boolean;
  /** Keep the last `observationWindow` query rows of each layer for the presses. */
  observationWindow?: number;
  /** numHeads * headDim: the width of one stored query row. */
  queryWidth?: number;
}

/**
 * The KV cache of one sequence: per layer, per KV head slots, plus the observation store (the
 * last w query rows of each layer, after RoPE) that attention-based presses score with.
 */
export class SequenceCache {
  readonly heads: HeadCache[][];
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly maxSlots: number;
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
    this.maxSlots = o.maxSlots;
    const initial = Math.min(o.maxSlots, o.initialSlots ?? 64);
    this.heads = Array.from({ length: o.numLayers }, () =>
      Array.from({ length: o.numKvHeads }, () => new HeadCache(o.headDim, initial, o.trackAttention ?? false)),
    );
    this.observationWindow = o.observationWindow ?? 0;
    this.queryWidth = o.queryWidth ?? 0;
    this.obs = Array.from({ length: o.numLayers }, () => new Float32Array(this.observationWindow * this.queryWidth));
    this.obsCount = new Array<number>(o.numLayers).fill(0);
    this.updatePeaks();
  }

  /** Slots live in (layer, head). */
  length(layer: number, head: number): number {
    return this.heads[layer]![head]!.length;
  }

  /** Makes room for `extra` more slots in every head, growing geometrically up to maxSlots. */
  reserve(extra: number): void {
    for (const layer of this.heads) {
      for (const h of layer) {
        const needed = h.length + extra;
        if (needed > this.maxSlots) {
          throw new KvsieveError(
            `kv cache: ${needed} slots needed in one head but this sequence may hold at most ${this.maxSlots}`,
          );
        }
        if (needed > h.capacity) h.reserve(Math.min(this.maxSlots, Math.max(needed, Math.ceil(h.capacity * 1.5))));
      }
    }
    this.updatePeaks();
  }

  /**
   * Appends T tokens to one layer. `k`/`v` rows are [T, numKvHeads * headDim] starting at `rowOffset`
   * rows into the arrays. Call `reserve(T)` first.
   */
  append(layer: number, k: Float32Array, v: Float32Array, rowOffset: number, T: number, positions: ArrayLike<number>): void {
    const d = this.headDim;
    const width = this.numKvHeads * d;
    const heads = this.heads[layer]!;
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
    for (const layer of this.heads) for (const h of layer) slots += h.length;
    return slots * this.headDim * 2 * 4;
  }

  /** Bytes of K and V allocated now (live or free). */
  allocatedBytes(): number {
    let slots = 0;
    for (const layer of this.heads) for (const h of layer) slots += h.capacity;
    return slots * this.headDim * 2 * 4;
  }

  /** The most slots any single (layer, head) holds now. */
  maxHeadLength(): number {
    let m = 0;
    for (const layer of this.heads) for (const h of layer) m = Math.max(m, h.length);
    return m;
  }

  /** Records the peaks; call after appends (done by `append` on the last layer). */
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
