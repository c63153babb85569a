import type { ScoreKernels } from '../backend/backend.js';
import { KvsieveError } from '../core/errors.js';
import type { SequenceCache } from '../kv/cache.js';
import type { ModelConfig } from '../core/model-config.js';
import { compressLayer } from '../press/compress.js';
import { resolvePressOptions } from '../press/options.js';
import { pyramidLayerBudget } from '../press/pyramidkv.js';
import type { LayerView, PressOptions, PressOptionsInput } from '../press/types.js';
import type { Compressor } from './sequence.js';

/** When a sequence's cache is compressed. */
export type CompressionSchedule = 'decode' | 'prefill' | 'both';
/** What starts a decode-time compression. */
export type CompressionTrigger = 'length' | 'r-kv';

export interface CompressionSettings extends PressOptionsInput {
  press: string;
  /**
   * decode (default): the cache grows to budget + buffer and is cut back to budget, during decoding and
   * (in blocks of at most `buffer` tokens) while reading a long prompt; prefill: the prompt is compressed
   * to the budget once it is read, then the cache grows freely; both: prefill, then decode.
   */
  schedule?: CompressionSchedule;
  /** Tokens the cache may grow past the budget before a decode-time compression (default 128). */
  buffer?: number;
  /**
   * length (default): compress when the cache reaches budget + buffer; r-kv: when the total processed
   * length is a multiple of the buffer and the cache holds at least the budget (R-KV's own schedule).
   */
  trigger?: CompressionTrigger;
}

const SCHEDULES: readonly CompressionSchedule[] = ['decode', 'prefill', 'both'];
const TRIGGERS: readonly CompressionTrigger[] = ['length', 'r-kv'];

/** Presses that score with the observation queries, and how many of them the store must keep. */
function observationNeed(o: PressOptions): number {
  const target = o.inner ?? o.press;
  if (target === 'tova') return 1;
  if (target === 'snapkv' || target === 'pyramidkv' || target === 'r-kv' || target === 'mix-kv') return Math.max(1, o.window);
  return 0;
}

class ScheduledCompressor implements Compressor {
  readonly slotsPerHead: readonly number[];
  readonly observationWindow: number;
  readonly trackAttention: boolean;
  readonly stats = { compressions: 0, seconds: 0 };
  /** Budget per layer (pyramidkv shrinks it with depth). */
  private readonly budgets: number[];
  private readonly decodeSlots: number[];

  constructor(
    private readonly config: ModelConfig,
    private readonly press: string,
    private readonly decodeOptions: PressOptions | null,
    private readonly prefillOptions: PressOptions | null,
    private readonly buffer: number,
    private readonly trigger: CompressionTrigger,
    private readonly kernels: ScoreKernels | undefined,
  ) {
    const ref = (decodeOptions ?? prefillOptions)!;
    const L = config.numLayers;
    const pyramid = (ref.inner ?? ref.press) === 'pyramidkv';
    this.budgets = Array.from({ length: L }, (_, l) => (pyramid ? pyramidLayerBudget(ref.budget, L, ref.beta, l) : ref.budget));
    this.decodeSlots = this.budgets.map((b) => b + buffer);
    // A prefill-only schedule lets the cache grow after the prompt is compressed.
    this.slotsPerHead = decodeOptions ? this.decodeSlots : new Array<number>(L).fill(config.maxPositions);
    this.observationWindow = Math.max(
      decodeOptions ? observationNeed(decodeOptions) : 0,
      prefillOptions ? observationNeed(prefillOptions) : 0,
    );
    const target = ref.inner ?? ref.press;
    this.trackAttention = target === 'h2o';
  }

  /** Tokens layer l can still take before its slots (budget + buffer per head) are full. */
  private layerRoom(cache: SequenceCache, l: number): number {
    const H = this.config.numKvHeads;
    return Math.floor((H * this.decodeSlots[l]! - cache.layerLength(l)) / H);
  }

  room(cache: SequenceCache): number {
    if (!this.decodeOptions) return Number.MAX_SAFE_INTEGER;
    let room = Number.MAX_SAFE_INTEGER;
    for (let l = 0; l < this.config.numLayers; l++) room = Math.min(room, this.layerRoom(cache, l));
    return room;
  }

  afterStep(cache: SequenceCache, step: { processed: number; prefillDone: boolean; decoding: boolean }): void {
    const promptJustRead = step.prefillDone && !step.decoding;
    if (promptJustRead && this.prefillOptions) {
      this.compress(cache, this.prefillOptions, () => true);
      return;
    }
    if (!this.decodeOptions) return;
    // Each layer is cut back when its own slots are full (layers differ under pyramidkv); the R-KV
    // trigger cuts every layer holding at least its budget when the processed length is a multiple of the buffer.
    const rkvDue = this.trigger === 'r-kv' && step.processed % this.buffer === 0;
    const H = this.config.numKvHeads;
    const due = (l: number) =>
      this.layerRoom(cache, l) <= 0 || (rkvDue && cache.layerLength(l) >= H * this.budgets[l]!);
    if (this.budgets.some((_, l) => due(l))) this.compress(cache, this.decodeOptions, due);
  }

  private compress(cache: SequenceCache, options: PressOptions, due: (layer: number) => boolean): void {
    const t0 = performance.now();
    const c = this.config;
    const H = c.numKvHeads;
    for (let l = 0; l < c.numLayers; l++) {
      if (!due(l)) continue;
      const heads = cache.heads(l);
      const { w, queries } = cache.observations(l, c.numHeads);
      const view: LayerView = {
        layer: l,
        numLayers: c.numLayers,
        numKvHeads: H,
        numQHeads: c.numHeads,
        headDim: c.headDim,
        heads: heads.map((h) => ({ n: h.length, keys: h.keysF32(), values: h.valuesF32() })),
        queries,
        w,
        ...(this.trackAttention ? { accumulatedAttention: heads.map((h) => h.probSums!.subarray(0, h.length)) } : {}),
        ...(this.kernels ? { kernels: this.kernels } : {}),
      };
      const keep = compressLayer(this.press, options, view);
      for (let h = 0; h < H; h++) {
        if (keep[h]!.length < heads[h]!.length) heads[h]!.keep(keep[h]!);
      }
      // The freed slots become each head's room for the next `buffer` tokens (decode schedule), or
      // the layer keeps growing from its new length (prefill-only).
      if (this.decodeOptions) cache.repack(l, this.buffer, H * this.decodeSlots[l]!);
    }
    cache.updatePeaks();
    this.stats.compressions++;
    this.stats.seconds += (performance.now() - t0) / 1000;
  }
}

/**
 * Validates compression settings for a model and returns the factory `generate` calls per sequence
 * (null for the full cache). Errors name the option at fault.
 */
export function compressionFor(
  settings: CompressionSettings,
  config: ModelConfig,
): ((config: ModelConfig, promptLength: number, kernels?: ScoreKernels) => Compressor | null) | null {
  const { press, schedule = 'decode', buffer = 128, trigger = 'length', ...pressInput } = settings;
  if (!SCHEDULES.includes(schedule)) throw new KvsieveError(`option "schedule" must be one of ${SCHEDULES.join(', ')}, got "${schedule}"`, { option: 'schedule' });
  if (!TRIGGERS.includes(trigger)) throw new KvsieveError(`option "trigger" must be one of ${TRIGGERS.join(', ')}, got "${trigger}"`, { option: 'trigger' });
  if (!Number.isInteger(buffer) || buffer < 1) throw new KvsieveError(`option "buffer" must be a whole number >= 1, got ${buffer}`, { option: 'buffer' });
  const ctx = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim };
  const decode = schedule !== 'prefill' ? resolvePressOptions(press, { ...pressInput, phase: 'decode' }, ctx) : null;
  const prefill = schedule !== 'decode' ? resolvePressOptions(press, { ...pressInput, phase: 'prefill' }, ctx) : null;
  if (press === 'full') return null;
  return (cfg, _promptLength, kernels) => new ScheduledCompressor(cfg, press, decode, prefill, buffer, trigger, kernels);
}
