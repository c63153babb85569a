/**
 * The compression schedule of one sequence, and what the press needs collected while it runs: the
 * observation queries (the last w query rows of each layer) and, for h2o-like presses, the running
 * attention sums per slot. The forward hands both over through the segment's observer; the cache
 * and the model know no press.
 */
import type { Allocator, KvHeadView, ScoreKernels } from '../backend/backend.js';
import { InternalError, KvsieveError } from '../core/errors.js';
import { layerWindow, type ModelConfig } from '../core/model-config.js';
import { layerLength, type KvCache } from '../kv/cache.js';
import { GpuKvCache } from '../kv/gpu-cache.js';
import { WebGpuBackend } from '../backend/webgpu/backend.js';
import type { LayerObserver } from '../model/llama.js';
import type { GpuLayerObserver } from '../model/gpu-llama.js';
import { gpuScores, gpuScoringOf } from './gpu-scoring.js';
import { ropeInverseFrequencies } from '../model/rope.js';
import { acrossOf, compressAcrossLayers, compressWith, layerBudget, needsOf, windowOf } from '../press/define.js';
import { describeValue } from '../press/options.js';
import { budgetWithPrompt, promptRule, promptSkips } from '../press/prompt.js';
import { lookupPress, resolvePressOptions } from '../press/table.js';
import type { LayerView, PressDefinition, PressOptions, PressOptionsInput } from '../press/types.js';

/** When a sequence's cache is compressed. */
export type CompressionSchedule = 'decode' | 'prefill' | 'both';
/** What starts a decode-time compression. */
export type CompressionTrigger = 'length' | 'r-kv';

export interface CompressionSettings extends PressOptionsInput {
  /** A built-in press by name (`kvsieve presses`), or a definition from `definePress`. */
  press: string | PressDefinition;
  /**
   * decode (default): the cache grows to budget + buffer and is cut back to budget, during decoding and
   * (in blocks of at most `buffer` tokens) while reading a long prompt; prefill: the prompt is compressed
   * to the budget once it is read, then the cache grows freely; both: prefill, then decode.
   */
  schedule?: CompressionSchedule;
  /** Tokens the cache may grow past the budget before a decode-time compression (default: the press's, else 128). */
  buffer?: number;
  /**
   * length (default): compress when the cache reaches budget + buffer; r-kv: when the total processed
   * length is a multiple of the buffer and the cache holds at least the budget (R-KV's own schedule).
   */
  trigger?: CompressionTrigger;
}

/**
 * The compression schedule of one sequence: the only place that decides when to compress. It
 * observes every forward step of its sequence (a `LayerObserver`) and acts after it (`afterStep`).
 */
export interface Compressor extends LayerObserver {
  /**
   * Per layer, the slots each KV head may hold: budget + buffer under a decode-time schedule. A layer's
   * heads share numKvHeads x slotsPerHead[l] slots (ada-kv gives heads different shares).
   */
  readonly slotsPerHead: readonly number[];
  /** How many more tokens may be appended before the schedule must compress (prefill blocks are cut to it). */
  room(cache: KvCache): number;
  /**
   * Compresses when the schedule says so. On a GPU cache (GpuKvCache) a compression reads the layers
   * back and is awaited (the returned promise; the step's caller awaits it before the next step).
   */
  afterStep(cache: KvCache, step: { processed: number; prefillDone: boolean; decoding: boolean }): void | Promise<void>;
  /** Compressions run and seconds spent in them. */
  readonly stats: { compressions: number; seconds: number };
  /** Allocates now the per-slot state the next step's `tokens` appended rows will need (see KvCache.reserve). */
  reserve(cache: KvCache, tokens: number): void;
  /** Gives back the memory it holds (the attention sums). */
  release(): void;
  /**
   * Takes over `other`'s state (observation queries, attention sums, counts): a forked sample's.
   * `cache` is the cache it serves, already a copy of other's.
   */
  copyFrom(other: Compressor, cache: KvCache): void;
}

/** What a compressor is built for: the model, where its per-slot state lives, the backend's scoring kernels, its sequence. */
export interface CompressorContext {
  config: ModelConfig;
  allocator: Allocator;
  kernels?: ScoreKernels;
  /**
   * The sequence's prompt length (the prompt rule protects it; promptInBudget false adds it to the
   * slots, promptOverflow skip may leave them unbounded: both need it). Left out, the compressor takes
   * the tokens read when the prompt is done (until then, all tokens read are prompt).
   */
  promptLength?: number;
  /** The sequence's id for random streams (sequenceIdOf); left out, 0. */
  sequenceId?: number;
}

/**
 * A sequence's id for the presses' random streams: a hash of its prompt ids and its sampling seed
 * (sample j of n draws with seed + j), so a rerun of the same request draws the same keep sets,
 * whatever else shares its batch, and two prompts draw differently.
 */
export function sequenceIdOf(promptIds: readonly number[], seed: number): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (const id of promptIds) h = Math.imul(h ^ id, 0x01000193) >>> 0;
  h = Math.imul(h ^ Math.floor(seed / 4294967296), 0x01000193) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

const SCHEDULES: readonly CompressionSchedule[] = ['decode', 'prefill', 'both'];
const TRIGGERS: readonly CompressionTrigger[] = ['length', 'r-kv'];

/** The last `window` query rows of each layer (after RoPE), in a ring per layer. */
class ObservationStore {
  private readonly rings: Float32Array[];
  private readonly counts: number[];

  constructor(
    numLayers: number,
    readonly window: number,
    private readonly width: number,
  ) {
    this.rings = Array.from({ length: numLayers }, () => new Float32Array(window * width));
    this.counts = new Array<number>(numLayers).fill(0);
  }

  copyFrom(other: ObservationStore): void {
    other.rings.forEach((r, l) => this.rings[l]!.set(r));
    other.counts.forEach((c, l) => (this.counts[l] = c));
  }

  /** Stores rows [T, width] of `q` from `rowOffset`. */
  add(layer: number, q: Float32Array, rowOffset: number, T: number): void {
    const w = this.window;
    if (w === 0) return;
    const ring = this.rings[layer]!;
    const first = Math.max(0, T - w);
    for (let t = first; t < T; t++) {
      const slot = (this.counts[layer]! + t - first) % w;
      ring.set(q.subarray((rowOffset + t) * this.width, (rowOffset + t + 1) * this.width), slot * this.width);
    }
    this.counts[layer] = this.counts[layer]! + (T - first);
  }

  /** The stored rows of `layer`, oldest first, split per query head: result[g] is [w, headDim]. */
  get(layer: number, numHeads: number, headDim: number): { w: number; queries: Float32Array[] } {
    return ringQueries(this.rings[layer]!, this.counts[layer]!, this.window, numHeads, headDim);
  }
}

/** A ring of query rows ([window, numHeads * headDim], `count` rows stored so far) as the view takes them: per query head [w, headDim], oldest first. */
function ringQueries(ring: Float32Array, count: number, window: number, numHeads: number, headDim: number): { w: number; queries: Float32Array[] } {
  const w = Math.min(window, count);
  const width = numHeads * headDim;
  const queries = Array.from({ length: numHeads }, () => new Float32Array(w * headDim));
  for (let i = 0; i < w; i++) {
    const slot = (count - w + i) % window;
    for (let g = 0; g < numHeads; g++) {
      queries[g]!.set(ring.subarray(slot * width + g * headDim, slot * width + (g + 1) * headDim), i * headDim);
    }
  }
  return { w, queries };
}

/**
 * The observation store of a sequence on the webgpu backend: per layer a ring [window, width] in a
 * GPU buffer, which the forward fills (RING_STORE) as it runs; read back only when a compression
 * scores the layer.
 */
class GpuObservationStore {
  private readonly rings: (GPUBuffer | null)[];
  private readonly counts: number[];

  constructor(
    numLayers: number,
    readonly window: number,
    private readonly width: number,
    private readonly backend: WebGpuBackend,
  ) {
    this.rings = new Array<GPUBuffer | null>(numLayers).fill(null);
    this.counts = new Array<number>(numLayers).fill(0);
  }

  /** Where the last of `T` new rows of `layer` go (counted as stored); null when no window is kept. */
  slot(layer: number, T: number): { ring: GPUBuffer; window: number; start: number; rows: number } | null {
    if (this.window === 0) return null;
    const ring = (this.rings[layer] ??= this.backend.storage(this.window * this.width * 4, `observation ring ${layer}`));
    const rows = Math.min(this.window, T);
    const start = this.counts[layer]! % this.window;
    this.counts[layer] = this.counts[layer]! + rows;
    return { ring, window: this.window, start, rows };
  }

  /** The ring of `layer` on the GPU and the rows stored in it so far (null: none yet). */
  ringOf(layer: number): { ring: GPUBuffer; window: number; count: number } | null {
    const ring = this.rings[layer];
    return ring ? { ring, window: this.window, count: this.counts[layer]! } : null;
  }

  /** The stored rows of `layer` as ObservationStore.get gives them (one readback). */
  async get(layer: number, numHeads: number, headDim: number): Promise<{ w: number; queries: Float32Array[] }> {
    const ring = this.rings[layer];
    if (!ring) return { w: 0, queries: Array.from({ length: numHeads }, () => new Float32Array(0)) };
    const device = this.backend.device;
    const staging = device.createBuffer({ size: ring.size, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */, label: 'observation readback' });
    const encoder = device.createCommandEncoder({ label: 'observation readback' });
    encoder.copyBufferToBuffer(ring, 0, staging, 0, ring.size);
    device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */);
      const rows = new Float32Array(staging.getMappedRange().slice(0));
      return ringQueries(rows, this.counts[layer]!, this.window, numHeads, headDim);
    } finally {
      staging.destroy();
    }
  }

  copyFrom(other: GpuObservationStore): void {
    this.release();
    const encoder = this.backend.device.createCommandEncoder({ label: 'observation copy' });
    other.rings.forEach((r, l) => {
      this.counts[l] = other.counts[l]!;
      if (!r) return;
      const ring = (this.rings[l] = this.backend.storage(r.size, `observation ring ${l}`));
      encoder.copyBufferToBuffer(r, 0, ring, 0, r.size);
    });
    this.backend.device.queue.submit([encoder.finish()]);
  }

  release(): void {
    this.rings.forEach((r, l) => {
      r?.destroy();
      this.rings[l] = null;
      this.counts[l] = 0;
    });
  }
}

/** What a layer view is built from: the cache's rows (or their copies read back from the GPU), the observation queries, the attention sums. */
interface LayerSources {
  keys: (head: number) => Float32Array;
  values: (head: number) => Float32Array;
  observed: { w: number; queries: Float32Array[] };
  sums: ((head: number, n: number) => Float32Array) | null;
}

/**
 * Per (layer, KV head), the running sum of the attention each slot received, one float per slot in
 * the allocator's memory (the attention kernel adds into it). Kept aligned with the cache's slots:
 * grown as heads grow, compacted by the same keep lists.
 */
class AttentionSums {
  private readonly sums: Float32Array[][];

  /** Each layer's allocator: the attention kernel adds into its sums, so they live in that layer's memory (part). */
  private readonly allocs: Allocator[];

  constructor(
    numLayers: number,
    numKvHeads: number,
    alloc: Allocator,
  ) {
    this.sums = Array.from({ length: numLayers }, () => Array.from({ length: numKvHeads }, () => new Float32Array(0)));
    this.allocs = Array.from({ length: numLayers }, (_, l) => alloc.partFor?.(l) ?? alloc);
  }

  /** The layer's arrays, each holding at least its head's length + `extra` (new slots start at 0). */
  forHeads(layer: number, heads: readonly KvHeadView[], extra = 0): Float32Array[] {
    const row = this.sums[layer]!;
    for (let h = 0; h < row.length; h++) {
      const need = heads[h]!.length + extra;
      const old = row[h]!;
      if (old.length >= need) continue;
      const grown = this.allocs[layer]!.allocF32(Math.max(need, Math.ceil(old.length * 1.5), 64));
      grown.set(old);
      if (old.length > 0) this.allocs[layer]!.freeF32(old);
      row[h] = grown;
    }
    return row;
  }

  /** Holds `other`'s sums of the first lengths[l][h] slots of each head. */
  copyFrom(other: AttentionSums, lengths: readonly (readonly number[])[]): void {
    this.release();
    this.sums.forEach((row, l) =>
      row.forEach((_, h) => {
        const n = lengths[l]![h]!;
        if (n === 0) return;
        row[h] = this.allocs[l]!.allocF32(Math.max(n, 64));
        row[h]!.set(other.sums[l]![h]!.subarray(0, n));
      }),
    );
  }

  /** The first n sums of one head. */
  of(layer: number, head: number, n: number): Float32Array {
    return this.sums[layer]![head]!.subarray(0, n);
  }

  /** Keeps the sums of the kept slots, compacted like the cache; the freed tail is zeroed for new slots. */
  keep(layer: number, head: number, keep: ArrayLike<number>, oldLength: number): void {
    const s = this.sums[layer]![head]!;
    for (let i = 0; i < keep.length; i++) s[i] = s[keep[i]!]!;
    s.fill(0, keep.length, oldLength);
  }

  release(): void {
    this.sums.forEach((row, l) => {
      for (let h = 0; h < row.length; h++) if (row[h]!.length > 0) this.allocs[l]!.freeF32(row[h]!), (row[h] = new Float32Array(0));
    });
  }
}

class ScheduledCompressor implements Compressor, GpuLayerObserver {
  readonly slotsPerHead: readonly number[];
  readonly stats = { compressions: 0, seconds: 0 };
  /** Budget per layer (pyramidkv shrinks it with depth; the prompt on top when the rule does not count it). */
  private readonly budgets: number[];
  private readonly decodeSlots: number[];
  private readonly observations: ObservationStore;
  private readonly sums: AttentionSums | null;
  /** On the webgpu backend: the queries' rings on the GPU, and whether the attention keeps running sums (in the GpuKvCache). */
  private readonly gpuObservations: GpuObservationStore | null;
  private readonly gpuSums: boolean;
  /** The RoPE of the keys, for presses that score in frequency bands (triattention). */
  private readonly invFreq: Float64Array;
  /** The prompt's length once known (the context's, or the tokens read when the prompt is done). */
  private promptLength: number | null;
  /** The prompt rule makes this sequence keep every token: its prompt does not fit (promptOverflow skip). */
  private readonly skipped: boolean;
  /** The layers the press cuts: every layer but the sliding-window ones (those drop their own old slots). */
  private readonly pressed: readonly number[];
  private readonly isPressed: readonly boolean[];

  constructor(
    private readonly ctx: CompressorContext,
    private readonly press: PressDefinition,
    private readonly decodeOptions: PressOptions | null,
    private readonly prefillOptions: PressOptions | null,
    private readonly buffer: number,
    private readonly trigger: CompressionTrigger,
  ) {
    const c = ctx.config;
    const ref = (decodeOptions ?? prefillOptions)!;
    const L = c.numLayers;
    this.promptLength = ctx.promptLength ?? null;
    const rule = promptRule(ref);
    // Both size the cache before the prompt is read.
    if (rule && (!rule.inBudget || rule.overflow === 'skip') && ctx.promptLength === undefined) {
      throw new InternalError('compressor: promptInBudget false and promptOverflow skip need the prompt length in the compressor context');
    }
    const P = ctx.promptLength ?? 0;
    this.budgets = Array.from({ length: L }, (_, l) => budgetWithPrompt(rule, layerBudget(press, ref, l, L), P));
    this.decodeSlots = this.budgets.map((b) => b + buffer);
    const w = windowOf(press.wraps ? (ref['inner'] as PressDefinition) : press, ref);
    this.skipped = ctx.promptLength !== undefined && this.budgets.some((b) => promptSkips(rule, P, b, w));
    // A prefill-only schedule lets the cache grow after the prompt is compressed; so does a skipped one.
    this.slotsPerHead = decodeOptions && !this.skipped ? this.decodeSlots : new Array<number>(L).fill(c.maxPositions);
    this.invFreq = ropeInverseFrequencies(c);
    this.isPressed = Array.from({ length: L }, (_, l) => layerWindow(c, l) === 0);
    this.pressed = this.isPressed.flatMap((p, l) => (p ? [l] : []));
    const needs = [decodeOptions, prefillOptions].flatMap((o) => (o ? [needsOf(press, o)] : []));
    const window = Math.max(...needs.map((n) => n.queries));
    const wantsSums = needs.some((n) => n.attentionSums);
    const gpu = ctx.allocator instanceof WebGpuBackend ? ctx.allocator : null;
    this.observations = new ObservationStore(L, gpu ? 0 : window, c.numHeads * c.headDim);
    this.sums = wantsSums && !gpu ? new AttentionSums(L, c.numKvHeads, ctx.allocator) : null;
    this.gpuObservations = gpu ? new GpuObservationStore(L, window, c.numHeads * c.headDim, gpu) : null;
    this.gpuSums = wantsSums && gpu !== null;
  }

  gpuQueryRing(layer: number, T: number): ReturnType<GpuLayerObserver['gpuQueryRing']> {
    if (!this.gpuObservations) throw new InternalError('compressor: a GPU forward observed a compressor built for a CPU backend');
    return this.isPressed[layer] ? this.gpuObservations.slot(layer, T) : null;
  }

  gpuAttentionSums(layer: number): boolean {
    return this.gpuSums && this.isPressed[layer]!;
  }

  queries(layer: number, q: Float32Array, rowOffset: number, T: number): void {
    if (this.isPressed[layer]) this.observations.add(layer, q, rowOffset, T);
  }

  attentionSums(layer: number, heads: readonly KvHeadView[]): Float32Array[] | undefined {
    return this.isPressed[layer] ? this.sums?.forHeads(layer, heads) : undefined;
  }

  /** Tokens layer l can still take before its slots (budget + buffer per head) are full. */
  private layerRoom(cache: KvCache, l: number): number {
    const H = this.ctx.config.numKvHeads;
    return Math.floor((H * this.decodeSlots[l]! - layerLength(cache, l)) / H);
  }

  room(cache: KvCache): number {
    if (!this.decodeOptions || this.skipped) return Number.MAX_SAFE_INTEGER;
    let room = Number.MAX_SAFE_INTEGER;
    for (const l of this.pressed) room = Math.min(room, this.layerRoom(cache, l));
    return room;
  }

  afterStep(cache: KvCache, step: { processed: number; prefillDone: boolean; decoding: boolean }): void | Promise<void> {
    const promptJustRead = step.prefillDone && !step.decoding;
    if (promptJustRead && this.promptLength === null) this.promptLength = step.processed;
    if (this.skipped) return;
    if (promptJustRead && this.prefillOptions) return this.compress(cache, this.prefillOptions, () => true, step.processed);
    if (!this.decodeOptions) return;
    // Each layer is cut back when its own slots are full (layers differ under pyramidkv); the R-KV
    // trigger cuts every layer holding at least its budget when the processed length is a multiple of the buffer.
    const rkvDue = this.trigger === 'r-kv' && step.processed % this.buffer === 0;
    const H = this.ctx.config.numKvHeads;
    const due = (l: number) => this.isPressed[l]! && (this.layerRoom(cache, l) <= 0 || (rkvDue && layerLength(cache, l) >= H * this.budgets[l]!));
    if (this.pressed.some(due)) return this.compress(cache, this.decodeOptions, due, step.processed);
  }

  /** Layer l as the press sees it now; `processed` is T, the tokens read so far. */
  private view(cache: KvCache, l: number, processed: number): LayerView {
    const c = this.ctx.config;
    return this.viewOf(cache, l, processed, {
      keys: (h) => cache.keysF32(l, h),
      values: (h) => cache.valuesF32(l, h),
      observed: this.observations.get(l, c.numHeads, c.headDim),
      sums: this.sums ? (h, n) => this.sums!.of(l, h, n) : null,
    });
  }

  /** Layer l of a GPU cache as the press sees it: its rows, queries and sums read back (awaited). */
  private async gpuView(cache: GpuKvCache, l: number, processed: number): Promise<LayerView> {
    const c = this.ctx.config;
    const [read, observed] = await Promise.all([cache.readLayer(l), this.gpuObservations!.get(l, c.numHeads, c.headDim)]);
    const sums = read.sums;
    return this.viewOf(cache, l, processed, {
      keys: (h) => read.keys[h]!,
      values: (h) => read.values[h]!,
      observed,
      sums: this.gpuSums ? (h, n) => (sums ? sums[h]!.subarray(0, n) : new Float32Array(n)) : null,
    });
  }

  private viewOf(cache: KvCache, l: number, processed: number, from: LayerSources): LayerView {
    const c = this.ctx.config;
    const lengths = cache.heads(l).map((h) => h.length);
    const { w, queries } = from.observed;
    return {
      layer: l,
      numLayers: c.numLayers,
      numKvHeads: c.numKvHeads,
      numQHeads: c.numHeads,
      headDim: c.headDim,
      heads: lengths.map((n, h) => ({ n, keys: from.keys(h), values: from.values(h) })),
      queries,
      w,
      ...(from.sums ? { accumulatedAttention: lengths.map((n, h) => from.sums!(h, n)) } : {}),
      ...(this.ctx.kernels ? { kernels: this.ctx.kernels } : {}),
      // Before the prompt is done every token read is prompt.
      promptLength: this.promptLength ?? processed,
      processed,
      positions: lengths.map((_, h) => cache.positions(l, h)),
      ropeInvFreq: this.invFreq,
      sequenceId: this.ctx.sequenceId ?? 0,
    };
  }

  /** Cuts layer l to the keep lists (and the attention sums with it). */
  private evict(cache: KvCache, l: number, keep: Int32Array[]): void {
    const lengths = cache.heads(l).map((h) => h.length);
    cache.evict(l, keep);
    if (this.sums) for (let h = 0; h < lengths.length; h++) if (keep[h]!.length < lengths[h]!) this.sums.keep(l, h, keep[h]!, lengths[h]!);
  }

  private compress(cache: KvCache, options: PressOptions, due: (layer: number) => boolean, processed: number): void | Promise<void> {
    if (cache instanceof GpuKvCache) return this.compressGpu(cache, options, due, processed);
    const t0 = performance.now();
    const layers = this.pressed;
    if (acrossOf(this.press, options)) {
      // One keep list per KV head for every pressed layer: they are cut together (their budgets are
      // equal, so they are due together).
      const keep = compressAcrossLayers(this.press, options, layers.length, (i) => this.view(cache, layers[i]!, processed));
      for (const l of layers) this.evict(cache, l, keep);
    } else {
      for (const l of layers) if (due(l)) this.evict(cache, l, compressWith(this.press, options, this.view(cache, l, processed)));
    }
    this.stats.compressions++;
    this.stats.seconds += (performance.now() - t0) / 1000;
  }

  /**
   * `compress` on a GPU cache: the layers to cut are read back (rows, observation queries, sums), the
   * press selects on the CPU as on the other backends (so every press, a user's too, keeps the same
   * slots), and the cache compacts its buffers (and the sums with them) on the GPU.
   */
  private async compressGpu(cache: GpuKvCache, options: PressOptions, due: (layer: number) => boolean, processed: number): Promise<void> {
    const t0 = performance.now();
    const across = acrossOf(this.press, options);
    const layers = across ? this.pressed : this.pressed.filter(due);
    if (across) {
      const views = await Promise.all(layers.map((l) => this.gpuView(cache, l, processed)));
      const keep = compressAcrossLayers(this.press, options, layers.length, (i) => views[i]!);
      for (const l of layers) cache.evict(l, keep);
    } else {
      const keeps = await Promise.all(layers.map((l) => this.gpuScoredKeep(cache, l, processed, options) ?? this.gpuView(cache, l, processed).then((v) => compressWith(this.press, options, v))));
      layers.forEach((l, i) => cache.evict(l, keeps[i]!));
    }
    this.stats.compressions++;
    this.stats.seconds += (performance.now() - t0) / 1000;
  }

  /**
   * Layer l's keep lists from scores computed on the GPU (gpu-scoring.ts), for a press that has GPU
   * scoring (itself or ada-kv's inner): the selection runs on a view that carries lengths and positions
   * (its keys and values zeros the press never reads: its scores come from the GPU); null: none.
   */
  private gpuScoredKeep(cache: GpuKvCache, l: number, processed: number, options: PressOptions): Promise<Int32Array[]> | null {
    const scoredPress = this.press.wraps ? (options['inner'] as PressDefinition) : this.press;
    const scoring = gpuScoringOf(scoredPress, options);
    if (!scoring) return null;
    const c = this.ctx.config;
    const lengths = cache.heads(l).map((h) => h.length);
    const w = windowOf(scoredPress, options);
    const scored = lengths.map((n) => n - Math.min(w, n));
    const backend = this.ctx.allocator as WebGpuBackend;
    const zeros = new Float32Array(Math.max(...lengths) * c.headDim);
    const viewWith = (sums: Float32Array[] | null) =>
      this.viewOf(cache, l, processed, { keys: () => zeros, values: () => zeros, observed: { w: 0, queries: [] }, sums: sums ? (h, n) => sums[h]!.subarray(0, n) : null });
    if (scoring.kind === 'view') return Promise.resolve(compressWith(this.press, options, viewWith(null)));
    if (scoring.kind === 'sums') {
      return cache.readSums(l).then((sums) => {
        if (!sums) throw new InternalError(`compressor: layer ${l} of a GPU cache keeps no attention sums for ${this.press.name}`);
        return compressWith(this.press, options, viewWith(sums));
      });
    }
    return gpuScores(scoring, { backend, cache, layer: l, numHeads: c.numHeads, headDim: c.headDim, scored, ring: this.gpuObservations!.ringOf(l) }).then((scores) => {
      const fromGpu: PressDefinition = { ...scoredPress, score: (_o, _v, h, m, out) => out.set(scores[h]!.subarray(0, m)) };
      delete (fromGpu as { prepare?: unknown }).prepare;
      const view = viewWith(null);
      return this.press.wraps ? compressWith(this.press, { ...options, inner: fromGpu }, view) : compressWith(fromGpu, options, view);
    });
  }

  reserve(cache: KvCache, tokens: number): void {
    if (this.sums) for (const l of this.pressed) this.sums.forHeads(l, cache.heads(l), tokens);
  }

  release(): void {
    this.sums?.release();
    this.gpuObservations?.release();
  }

  copyFrom(other: Compressor, cache: KvCache): void {
    if (!(other instanceof ScheduledCompressor)) throw new InternalError('compressor: copyFrom takes a compressor of the same kind');
    this.observations.copyFrom(other.observations);
    if (this.gpuObservations && other.gpuObservations) this.gpuObservations.copyFrom(other.gpuObservations);
    if (this.promptLength === null) this.promptLength = other.promptLength;
    if (this.sums && other.sums) {
      const lengths = Array.from({ length: this.ctx.config.numLayers }, (_, l) => cache.heads(l).map((h) => (this.isPressed[l] ? h.length : 0)));
      this.sums.copyFrom(other.sums, lengths);
    }
    this.stats.compressions = other.stats.compressions;
    this.stats.seconds = other.stats.seconds;
  }
}

/** Builds the compressor of one sequence (null: the full cache). */
export type CompressorFactory = (ctx: CompressorContext) => Compressor;

/**
 * Validates compression settings for a model and returns the factory `generate` calls per sequence
 * (null for the full cache). `presses` is the table a press name is looked up in (the built-in one by
 * default). Errors name the option at fault.
 */
export function compressionFor(settings: CompressionSettings, config: ModelConfig, presses?: readonly PressDefinition[]): CompressorFactory | null {
  const { press, schedule = 'decode', buffer: givenBuffer, trigger = 'length', ...pressInput } = settings;
  if (!SCHEDULES.includes(schedule)) throw new KvsieveError(`option "schedule" must be one of ${SCHEDULES.join(', ')}, got ${describeValue(schedule)}`, { option: 'schedule' });
  if (!TRIGGERS.includes(trigger)) throw new KvsieveError(`option "trigger" must be one of ${TRIGGERS.join(', ')}, got ${describeValue(trigger)}`, { option: 'trigger' });
  const def = lookupPress(press, presses);
  if (def.name !== 'full' && config.slidingWindow !== undefined && config.slidingLayers?.every(Boolean)) {
    throw new KvsieveError(
      `option "press": every layer of this model attends through a sliding window of ${config.slidingWindow} tokens, which bounds its cache already; there is no full-attention layer for ${def.name} to compress`,
      { option: 'press' },
    );
  }
  const buffer = givenBuffer ?? def.buffer ?? 128;
  if (!Number.isInteger(buffer) || buffer < 1) throw new KvsieveError(`option "buffer" must be a whole number >= 1, got ${describeValue(buffer)}`, { option: 'buffer' });
  const ctx = resolveContext(config, presses);
  const decode = schedule !== 'prefill' ? resolvePressOptions(def, { ...pressInput, phase: 'decode' }, ctx) : null;
  const prefill = schedule !== 'decode' ? resolvePressOptions(def, { ...pressInput, phase: 'prefill' }, ctx) : null;
  if (def.name === 'full') return null;
  return (c) => new ScheduledCompressor(c, def, decode, prefill, buffer, trigger);
}

/** What resolving a press's options needs to know of the model. */
function resolveContext(config: ModelConfig, presses?: readonly PressDefinition[]) {
  return { numLayers: config.numLayers, numKvHeads: config.numKvHeads, numQHeads: config.numHeads, headDim: config.headDim, ...(presses ? { presses } : {}) };
}

/**
 * Slots per (layer, KV head) one compressed sequence may hold at its peak under `settings` (budget +
 * buffer per layer, by the press's layer rule; the prompt on top when the prompt rule does not count
 * it), capped at `tokens` (prompt + generated); null when the cache is not bounded by the schedule
 * (full cache, prefill-only, a prompt the rule says not to cut).
 */
export function slotsPerHeadFor(
  settings: CompressionSettings | null,
  config: ModelConfig,
  tokens: number,
  presses?: readonly PressDefinition[],
  promptTokens = 0,
): number[] | null {
  if (!settings || settings.schedule === 'prefill') return null;
  const def = lookupPress(settings.press, presses);
  if (def.name === 'full') return null;
  const { press: _p, schedule: _s, buffer = def.buffer ?? 128, trigger: _t, ...pressInput } = settings;
  const o = resolvePressOptions(def, { ...pressInput, phase: 'decode' }, resolveContext(config, presses));
  const rule = promptRule(o);
  const budgets = Array.from({ length: config.numLayers }, (_, l) => budgetWithPrompt(rule, layerBudget(def, o, l, config.numLayers), promptTokens));
  const w = windowOf(def.wraps ? (o['inner'] as PressDefinition) : def, o);
  if (budgets.some((b) => promptSkips(rule, promptTokens, b, w))) return null;
  return budgets.map((b) => Math.min(b + buffer, tokens));
}
