/**
 * The KV cache of one sequence, behind a narrow interface (the shape of mlx-lm's cache protocol):
 * append a step's rows to a layer, evict a layer to per-head keep lists, read-only views for
 * attention and presses, bytes. Implementations differ by where the slots live: `SlotCache` keeps
 * them in memory from the backend's allocator (the wasm memory, or plain arrays); a GPU-resident
 * cache is a sibling implementation. Nothing here knows a press or the forward.
 */
import { InternalError } from '../core/errors.js';
import type { Allocator, KvHeadView } from '../backend/backend.js';
import { rowsAsF32, slotBytes, storeRow, type KvDtype, type KvRows } from '../core/kv-rows.js';

/** One step's new rows for one layer: `count` rows [count, numKvHeads * headDim] from row `offset`. */
export interface KvAppend {
  /** Keys after RoPE. */
  k: Float32Array;
  v: Float32Array;
  offset: number;
  count: number;
  /** The original position of each row. */
  positions: ArrayLike<number>;
}

export interface KvBytes {
  /** K and V bytes in live slots now. */
  live: number;
  /** K and V bytes allocated now (live or free slots). */
  allocated: number;
  peakLive: number;
  peakAllocated: number;
}

export interface KvCache {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly kvDtype: KvDtype;
  /**
   * Appends the rows to every KV head of `layer` (growing its store as needed) and returns the
   * layer's heads as attention reads them.
   */
  append(layer: number, rows: KvAppend): readonly KvHeadView[];
  /** The heads of `layer`: views valid until the next append or evict of that layer. */
  heads(layer: number): readonly KvHeadView[];
  /**
   * Keeps, in head h of `layer`, the slots keep[h] (ascending), compacted to the front in that order,
   * with their positions; the layer's free slots are then shared evenly among its heads, so the next
   * appends reuse the evicted memory whatever the heads' new lengths.
   */
  evict(layer: number, keep: readonly ArrayLike<number>[]): void;
  /** Live keys of one head as float32 [length, headDim] (a view for f32 storage, a widened copy otherwise). */
  keysF32(layer: number, head: number): Float32Array;
  valuesF32(layer: number, head: number): Float32Array;
  /** The original positions of one head's live slots (a view). */
  positions(layer: number, head: number): Int32Array;
  bytes(): KvBytes;
  /**
   * Raises (or lowers, not below what is allocated) the most slots each KV head of every layer may
   * hold: a memory pool grants a growing cache its room in steps.
   */
  setSlotLimit(slotsPerHead: number): void;
  /** Bytes the cache may allocate at most under its limits: what a memory pool reserves for it. */
  limitBytes(): number;
  /**
   * Makes this cache hold exactly the slots `other` holds now (rows, scales, positions), each head
   * allocated to its length: samples forked from one prefilled prompt. Both caches have the same
   * shape and dtype; an implementation may take only its own kind.
   */
  copyFrom(other: KvCache): void;
  /**
   * Allocates now whatever the next append of `tokens` rows to every layer would, so that append
   * allocates nothing: the batcher calls it for each sequence before a step, and a memory failure then
   * belongs to that sequence alone instead of failing the step every sequence shares.
   */
  reserve(tokens: number): void;
  /** Gives all memory back; the cache holds nothing afterwards (appends start it again). */
  release(): void;
}

/** Live slots of `layer`, over all its heads. */
export function layerLength(cache: KvCache, layer: number): number {
  let n = 0;
  for (const h of cache.heads(layer)) n += h.length;
  return n;
}

/** The most slots any single (layer, KV head) holds now. */
export function longestHead(cache: KvCache): number {
  let m = 0;
  for (let l = 0; l < cache.numLayers; l++) for (const h of cache.heads(l)) m = Math.max(m, h.length);
  return m;
}

/**
 * One (layer, KV head): a contiguous region of its layer's store.
 *   keys, values         : [capacity, headDim] rows in the store's dtype (rows < length live; keys after RoPE)
 *   keyScales, values…   : [capacity]          int8 only: each row's scale
 *   positions            : [capacity]          each slot's original position, ascending
 */
class HeadRegion implements KvHeadView {
  keys: KvRows = new Float32Array(0);
  values: KvRows = new Float32Array(0);
  keyScales: Float32Array | null = null;
  valueScales: Float32Array | null = null;
  positions: Int32Array = new Int32Array(0);
  /** First slot of this head's region in the layer store. */
  start = 0;
  capacity = 0;
  length = 0;

  constructor(readonly kvDtype: KvDtype) {}
}

/** Typed views of one allocation from the backend's allocator, kept so it can be given back. */
interface Block<T> {
  backing: Float32Array;
  view: T;
}

/**
 * The slots of one layer: a single K and a single V array shared by the layer's KV heads, each head a
 * contiguous region. Regions are re-laid out when a head needs more room or after an eviction, so
 * the layer's memory is exactly what its heads reserve, whatever their lengths.
 */
class LayerStore {
  private keys: Block<KvRows> | null = null;
  private values: Block<KvRows> | null = null;
  private keyScales: Block<Float32Array> | null = null;
  private valueScales: Block<Float32Array> | null = null;
  private positions: Int32Array = new Int32Array(0);
  readonly heads: HeadRegion[];

  constructor(
    numKvHeads: number,
    private readonly headDim: number,
    private readonly alloc: Allocator,
    private readonly kvDtype: KvDtype,
  ) {
    this.heads = Array.from({ length: numKvHeads }, () => new HeadRegion(kvDtype));
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
  relayout(capacities: readonly number[], totalSlots: number): void {
    const d = this.headDim;
    const int8 = this.kvDtype === 'int8';
    const needed = capacities.reduce((a, b) => a + b, 0);
    if (needed > totalSlots) throw new InternalError(`kv cache: regions need ${needed} slots but the layer has ${totalSlots}`);
    const old = [this.keys, this.values, this.keyScales, this.valueScales];
    const realloc = totalSlots !== this.totalSlots;
    // Live rows are staged through a copy when regions move inside the same store.
    const copy = <T extends KvRows>(b: Block<T> | null): T | null => (b ? (realloc ? b.view : (b.view.slice() as T)) : null);
    const src = {
      keys: copy(this.keys),
      values: copy(this.values),
      keyScales: copy(this.keyScales),
      valueScales: copy(this.valueScales),
      positions: realloc ? this.positions : this.positions.slice(),
    };
    if (realloc) {
      this.keys = this.rowsBlock(totalSlots * d);
      this.values = this.rowsBlock(totalSlots * d);
      this.keyScales = int8 ? this.floatBlock(totalSlots) : null;
      this.valueScales = int8 ? this.floatBlock(totalSlots) : null;
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
      if (n > 0) this.positions.set(src.positions.subarray(from, from + n), start);
      head.start = start;
      head.capacity = cap;
      head.keys = region(this.keys, start, cap, d)!;
      head.values = region(this.values, start, cap, d)!;
      head.keyScales = region(this.keyScales, start, cap, 1);
      head.valueScales = region(this.valueScales, start, cap, 1);
      head.positions = this.positions.subarray(start, start + cap);
      start += cap;
    }
    if (realloc) for (const b of old) if (b) this.alloc.freeF32(b.backing);
  }

  /**
   * Keeps the slots `indices` (ascending) of head h, compacted to the front in the same order.
   * Because indices ascend and index[i] >= i, moving rows forward in place is safe.
   */
  keep(h: number, indices: ArrayLike<number>): void {
    const head = this.heads[h]!;
    const d = this.headDim;
    let prev = -1;
    for (let i = 0; i < indices.length; i++) {
      const src = indices[i]!;
      if (!(Number.isInteger(src) && src > prev && src < head.length)) {
        throw new InternalError(`kv cache: keep indices of KV head ${h} must ascend within 0..${head.length - 1}, got ${src} after ${prev}`);
      }
      prev = src;
      if (src !== i) {
        head.keys.copyWithin(i * d, src * d, (src + 1) * d);
        head.values.copyWithin(i * d, src * d, (src + 1) * d);
        if (head.keyScales) head.keyScales[i] = head.keyScales[src]!;
        if (head.valueScales) head.valueScales[i] = head.valueScales[src]!;
        head.positions[i] = head.positions[src]!;
      }
    }
    head.length = indices.length;
  }

  /** Drops the oldest `n` slots of head h: the rest move to the front, in order (one block copy). */
  dropOldest(h: number, n: number): void {
    const head = this.heads[h]!;
    if (n <= 0) return;
    const d = this.headDim;
    const rest = head.length - n;
    head.keys.copyWithin(0, n * d, head.length * d);
    head.values.copyWithin(0, n * d, head.length * d);
    head.keyScales?.copyWithin(0, n, head.length);
    head.valueScales?.copyWithin(0, n, head.length);
    head.positions.copyWithin(0, n, head.length);
    head.length = rest;
  }

  /** Makes this store hold `src`'s live rows, each head allocated to exactly its length. */
  copyFrom(src: LayerStore): void {
    const lengths = src.heads.map((h) => h.length);
    this.release();
    const total = lengths.reduce((a, b) => a + b, 0);
    if (total === 0) return;
    this.relayout(lengths, total);
    const d = this.headDim;
    this.heads.forEach((head, h) => {
      const from = src.heads[h]!;
      const n = from.length;
      head.keys.set(from.keys.subarray(0, n * d) as never);
      head.values.set(from.values.subarray(0, n * d) as never);
      head.keyScales?.set(from.keyScales!.subarray(0, n));
      head.valueScales?.set(from.valueScales!.subarray(0, n));
      head.positions.set(from.positions.subarray(0, n));
      head.length = n;
    });
  }

  /** Gives the layer's memory back to the allocator; the store is empty afterwards. */
  release(): void {
    for (const b of [this.keys, this.values, this.keyScales, this.valueScales]) if (b) this.alloc.freeF32(b.backing);
    this.keys = this.values = this.keyScales = this.valueScales = null;
    this.positions = new Int32Array(0);
    for (const h of this.heads) {
      h.length = h.capacity = h.start = 0;
      h.keys = h.values = new Float32Array(0);
      h.keyScales = h.valueScales = null;
      h.positions = this.positions;
    }
  }
}

export interface SlotCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /**
   * Most slots each KV head may hold: budget + buffer when compressed, the context otherwise; one
   * number for every layer, or one per layer. A layer's heads share numKvHeads times this, so heads
   * of uneven lengths (ada-kv) use what the others leave.
   */
  maxSlotsPerHead: number | readonly number[];
  /** Slots per head the first append allocates (capped by maxSlotsPerHead; default 64): nothing is allocated before. */
  initialSlotsPerHead?: number;
  /** Where slots live (the backend's memory; each layer's part of a split one); plain arrays by default. */
  allocator?: Allocator;
  /**
   * Per layer, its sliding window W (0: the layer attends to everything). A sliding layer keeps only
   * what its next tokens can see: before an append that would not fit, its heads drop all but their
   * newest W - 1 slots (the oldest first, in one block move, so slots stay consecutive positions).
   * Its maxSlotsPerHead should be W - 1 plus the most tokens one step appends; presses never cut it.
   */
  windows?: readonly number[];
  /** How K and V rows are stored (default f32). */
  kvDtype?: KvDtype;
}

const plainMemory: Allocator = { allocF32: (n) => new Float32Array(n), freeF32: () => {} };

/** The KV cache in memory from an allocator: per layer one slot store shared by its KV heads. */
export class SlotCache implements KvCache {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly kvDtype: KvDtype;
  private readonly layers: LayerStore[];
  /** Most slots each layer may hold, over all its heads. */
  private readonly maxLayerSlots: number[];
  private readonly initialSlotsPerHead: number;
  private readonly slotBytes: number;
  /** Per layer: its sliding window (0: none) and the most slots per head it may ever hold. */
  private readonly windows: readonly number[];
  private readonly capPerHead: readonly number[];
  private liveSlots = 0;
  private totalSlots = 0;
  private peakLive = 0;
  private peakAllocated = 0;

  constructor(o: SlotCacheOptions) {
    this.kvDtype = o.kvDtype ?? 'f32';
    this.slotBytes = slotBytes(this.kvDtype, o.headDim);
    this.numLayers = o.numLayers;
    this.numKvHeads = o.numKvHeads;
    this.headDim = o.headDim;
    const max = o.maxSlotsPerHead;
    const perHead = typeof max === 'number' ? new Array<number>(o.numLayers).fill(max) : [...max];
    if (perHead.length !== o.numLayers) throw new InternalError(`kv cache: ${perHead.length} slot limits for ${o.numLayers} layers`);
    this.maxLayerSlots = perHead.map((m) => m * o.numKvHeads);
    this.capPerHead = perHead;
    this.windows = o.windows ?? new Array<number>(o.numLayers).fill(0);
    if (this.windows.length !== o.numLayers) throw new InternalError(`kv cache: ${this.windows.length} windows for ${o.numLayers} layers`);
    this.initialSlotsPerHead = o.initialSlotsPerHead ?? 64;
    // Each layer's slots live where its attention runs: a split backend's part for that layer.
    const memory = o.allocator ?? plainMemory;
    this.layers = perHead.map((_, l) => new LayerStore(o.numKvHeads, o.headDim, memory.partFor?.(l) ?? memory, this.kvDtype));
  }

  heads(layer: number): readonly KvHeadView[] {
    return this.layers[layer]!.heads;
  }

  /** Whether `layer` is a sliding-window layer (never compressed; it drops its own old slots). */
  isSliding(layer: number): boolean {
    return this.windows[layer]! > 0;
  }

  /** Room for `T` more slots in every head of `layer`: a sliding layer drops what no token will see, then it grows. */
  private makeRoom(layer: number, T: number): void {
    const store = this.layers[layer]!;
    if (!store.heads.some((h) => h.length + T > h.capacity)) return;
    const w = this.windows[layer]!;
    if (w > 0) {
      for (let h = 0; h < store.heads.length; h++) store.dropOldest(h, store.heads[h]!.length - (w - 1));
      this.count();
      if (!store.heads.some((h) => h.length + T > h.capacity)) return;
    }
    this.grow(layer, T);
  }

  append(layer: number, rows: KvAppend): readonly KvHeadView[] {
    const store = this.layers[layer]!;
    const T = rows.count;
    this.makeRoom(layer, T);
    const d = this.headDim;
    const width = this.numKvHeads * d;
    for (let h = 0; h < store.heads.length; h++) {
      const head = store.heads[h]!;
      for (let t = 0; t < T; t++) {
        const src = (rows.offset + t) * width + h * d;
        const slot = head.length + t;
        storeRow(this.kvDtype, rows.k, src, head.keys, head.keyScales, slot, d);
        storeRow(this.kvDtype, rows.v, src, head.values, head.valueScales, slot, d);
        head.positions[slot] = rows.positions[t]!;
      }
      head.length += T;
    }
    this.liveSlots += T * store.heads.length;
    this.peakLive = Math.max(this.peakLive, this.liveSlots * this.slotBytes);
    return store.heads;
  }

  reserve(tokens: number): void {
    for (let l = 0; l < this.layers.length; l++) this.makeRoom(l, tokens);
  }

  /** Makes room for `extra` more slots in every head: each grows geometrically, within the layer's limit. */
  private grow(layer: number, extra: number): void {
    const store = this.layers[layer]!;
    const max = this.maxLayerSlots[layer]!;
    const needed = store.liveSlots() + extra * store.heads.length;
    if (needed > max) {
      throw new InternalError(`kv cache: layer ${layer} needs ${needed} slots but this sequence may hold at most ${max} there`);
    }
    const first = store.totalSlots === 0 ? this.initialSlotsPerHead : 0;
    const caps = store.heads.map((h) => h.length + Math.max(extra, first, Math.ceil(h.capacity * 0.5), 16));
    const total = caps.reduce((a, b) => a + b, 0);
    if (total > max) {
      // Out of growth room: give every head what it needs and share the rest evenly.
      const share = Math.floor((max - needed) / store.heads.length);
      store.relayout(store.heads.map((h) => h.length + extra + share), max);
    } else {
      store.relayout(caps, total);
    }
    this.count();
  }

  evict(layer: number, keep: readonly ArrayLike<number>[]): void {
    const store = this.layers[layer]!;
    if (keep.length !== store.heads.length) throw new InternalError(`kv cache: ${keep.length} keep lists for ${store.heads.length} KV heads`);
    for (let h = 0; h < keep.length; h++) if (keep[h]!.length < store.heads[h]!.length) store.keep(h, keep[h]!);
    const share = Math.floor((store.totalSlots - store.liveSlots()) / store.heads.length);
    store.relayout(store.heads.map((h) => h.length + share), store.totalSlots);
    this.count();
  }

  keysF32(layer: number, head: number): Float32Array {
    const h = this.layers[layer]!.heads[head]!;
    return rowsAsF32(this.kvDtype, h.keys, h.keyScales, h.length, this.headDim);
  }

  valuesF32(layer: number, head: number): Float32Array {
    const h = this.layers[layer]!.heads[head]!;
    return rowsAsF32(this.kvDtype, h.values, h.valueScales, h.length, this.headDim);
  }

  positions(layer: number, head: number): Int32Array {
    const h = this.layers[layer]!.heads[head]!;
    return h.positions.subarray(0, h.length);
  }

  setSlotLimit(slotsPerHead: number): void {
    this.layers.forEach((store, l) => {
      // A sliding layer never needs more than its own cap, whatever the grant.
      const slots = (this.windows[l]! > 0 ? Math.min(slotsPerHead, this.capPerHead[l]!) : slotsPerHead) * store.heads.length;
      if (slots < store.totalSlots) throw new InternalError(`kv cache: layer ${l} holds ${store.totalSlots} slots, above a limit of ${slots}`);
      this.maxLayerSlots[l] = slots;
    });
  }

  limitBytes(): number {
    return this.maxLayerSlots.reduce((a, b) => a + b, 0) * this.slotBytes;
  }

  copyFrom(other: KvCache): void {
    if (!(other instanceof SlotCache) || other.kvDtype !== this.kvDtype || other.layers.length !== this.layers.length || other.numKvHeads !== this.numKvHeads || other.headDim !== this.headDim) {
      throw new InternalError('kv cache: copyFrom takes a SlotCache of the same shape and dtype');
    }
    this.layers.forEach((store, l) => {
      const need = other.layers[l]!.liveSlots();
      if (need > this.maxLayerSlots[l]!) throw new InternalError(`kv cache: layer ${l} would copy ${need} slots, above its limit of ${this.maxLayerSlots[l]}`);
      store.copyFrom(other.layers[l]!);
    });
    this.count();
  }

  /** Slots allocated for `layer` now, over all its heads (live or free). */
  allocatedSlots(layer: number): number {
    return this.layers[layer]!.totalSlots;
  }

  bytes(): KvBytes {
    return {
      live: this.liveSlots * this.slotBytes,
      allocated: this.totalSlots * this.slotBytes,
      peakLive: this.peakLive,
      peakAllocated: this.peakAllocated,
    };
  }

  release(): void {
    for (const layer of this.layers) layer.release();
    this.count();
  }

  /** Recounts live and allocated slots after a relayout or eviction, and records the peaks. */
  private count(): void {
    let live = 0;
    let total = 0;
    for (const layer of this.layers) {
      live += layer.liveSlots();
      total += layer.totalSlots;
    }
    this.liveSlots = live;
    this.totalSlots = total;
    this.peakLive = Math.max(this.peakLive, live * this.slotBytes);
    this.peakAllocated = Math.max(this.peakAllocated, total * this.slotBytes);
  }
}
