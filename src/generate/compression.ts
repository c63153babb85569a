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
import type { LayerObserver } from '../model/llama.js';
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
  afterStep(cache: KvCache, step: { processed: number; prefillDone: boolean; decoding: boolean }): void;
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
    const count = this.counts[layer]!;
    const w = Math.min(this.window, count);
    const ring = this.rings[layer]!;
    const queries = Array.from({ length: numHeads }, () => new Float32Array(w * headDim));
    for (let i = 0; i < w; i++) {
      const slot = (count - w + i) % this.window;
      for (let g = 0; g < numHeads; g++) {
        queries[g]!.set(ring.subarray(slot * this.width + g * headDim, slot * this.width + (g + 1) * headDim), i * headDim);
      }
    }
    return { w, queries };
  }
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

class ScheduledCompressor implements Compressor {
  readonly slotsPerHead: readonly number[];
  readonly stats = { compressions: 0, seconds: 0 };
  /** Budget per layer (pyramidkv shrinks it with depth; the prompt on top when the rule does not count it). */
  private readonly budgets: number[];
  private readonly decodeSlots: number[];
  private readonly observations: ObservationStore;
  private readonly sums: AttentionSums | null;
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
    this.observations = new ObservationStore(L, Math.max(...needs.map((n) => n.queries)), c.numHeads * c.headDim);
    this.sums = needs.some((n) => n.attentionSums) ? new AttentionSums(L, c.numKvHeads, ctx.allocator) : null;
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

  afterStep(cache: KvCache, step: { processed: number; prefillDone: boolean; decoding: boolean }): void {
    const promptJustRead = step.prefillDone && !step.decoding;
    if (promptJustRead && this.promptLength === null) this.promptLength = step.processed;
    if (this.skipped) return;
    if (promptJustRead && this.prefillOptions) {
      this.compress(cache, this.prefillOptions, () => true, step.processed);
      return;
    }
    if (!this.decodeOptions) return;
    // Each layer is cut back when its own slots are full (layers differ under pyramidkv); the R-KV
    // trigger cuts every layer holding at least its budget when the processed length is a multiple of the buffer.
    const rkvDue = this.trigger === 'r-kv' && step.processed % this.buffer === 0;
    const H = this.ctx.config.numKvHeads;
    const due = (l: number) => this.isPressed[l]! && (this.layerRoom(cache, l) <= 0 || (rkvDue && layerLength(cache, l) >= H * this.budgets[l]!));
    if (this.pressed.some(due)) this.compress(cache, this.decodeOptions, due, step.processed);
  }

  /** Layer l as the press sees it now; `processed` is T, the tokens read so far. */
  private view(cache: KvCache, l: number, processed: number): LayerView {
    const c = this.ctx.config;
    const lengths = cache.heads(l).map((h) => h.length);
    const { w, queries } = this.observations.get(l, c.numHeads, c.headDim);
    return {
      layer: l,
      numLayers: c.numLayers,
      numKvHeads: c.numKvHeads,
      numQHeads: c.numHeads,
      headDim: c.headDim,
      heads: lengths.map((n, h) => ({ n, keys: cache.keysF32(l, h), values: cache.valuesF32(l, h) })),
      queries,
      w,
      ...(this.sums ? { accumulatedAttention: lengths.map((n, h) => this.sums!.of(l, h, n)) } : {}),
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

  private compress(cache: KvCache, options: PressOptions, due: (layer: number) => boolean, processed: number): void {
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

  reserve(cache: KvCache, tokens: number): void {
    if (this.sums) for (const l of this.pressed) this.sums.forHeads(l, cache.heads(l), tokens);
  }

  release(): void {
    this.sums?.release();
  }

  copyFrom(other: Compressor, cache: KvCache): void {
    if (!(other instanceof ScheduledCompressor)) throw new InternalError('compressor: copyFrom takes a compressor of the same kind');
    this.observations.copyFrom(other.observations);
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
