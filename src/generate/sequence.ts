import type { Allocator } from '../backend/backend.js';
import { InternalError, KvsieveError } from '../core/errors.js';
import { SlotCache, type KvCache } from '../kv/cache.js';
import { KV_DTYPES, slotBytes, type KvDtype } from '../core/kv-rows.js';
import { layerWindow, type ModelConfig } from '../core/model-config.js';
import type { Compressor } from './compression.js';
import { Sampler, type SamplingOptions } from './sampler.js';

/** Generated tokens a full cache makes room for up front (it grows past them on demand). */
const RESERVE_TOKENS = 8192;

/** Errors the caller's own callbacks (onLogits) threw: they reach the caller as they are, not as internal faults. */
const callbackErrors = new WeakSet<object>();

/** Whether `e` was thrown by a caller's callback (SequenceOptions.onLogits) rather than by kvsieve. */
export function thrownByCallback(e: unknown): boolean {
  return typeof e === 'object' && e !== null && callbackErrors.has(e);
}

/**
 * Why a generation ended. 'kv-memory': its cache could not grow within the KV memory limit while it
 * ran alone (a length limit, like 'context').
 */
export type StopReason = 'eos' | 'stop-string' | 'max-tokens' | 'context' | 'cancelled' | 'kv-memory';

export interface SequenceOptions extends SamplingOptions {
  maxTokens?: number;
  /** Token ids that end generation (the model's EOS ids by default). */
  stopIds?: readonly number[];
  /** Do not stop on EOS ids (benchmarks). */
  ignoreEos?: boolean;
  /** Tokens per prefill step. */
  prefillBlock?: number;
  /** How the KV cache stores K and V: f32 (default), f16, or int8 with per-slot scales. */
  kvDtype?: KvDtype;
  /** Teacher forcing: these ids are taken as the generated tokens instead of sampling (evaluation). */
  forced?: readonly number[];
  /** Sees the logits row of every generated position before the token is chosen (evaluation). */
  onLogits?: (seq: Sequence, logits: Float32Array, offset: number, vocab: number) => void;
  /**
   * Record each generated token's log-probability under the model (log-softmax of the raw logits,
   * before temperature and filters) and that of the `logprobs` most likely tokens (0 to 20).
   */
  logprobs?: number;
  /**
   * Called after every step that generates a token with what the KV cache holds then (after any
   * compression of that step): see KvTraceEvent. For inspecting presses (`kvsieve generate --trace`,
   * the demo page's KV inspector).
   */
  onTrace?: (event: KvTraceEvent) => void;
}

/**
 * What a sequence's KV cache holds after one decode step: for every layer and KV head the original
 * token positions of its slots (ascending), and its bytes against a full cache's.
 */
export interface KvTraceEvent {
  /** Generated tokens so far (1 after the first token). */
  step: number;
  /** The token this step generated (not yet in the cache: it is fed by the next step). */
  token: number;
  /** Tokens the cache has seen: positions 0 .. processed - 1. */
  processed: number;
  /** positions[layer][kvHead]: the positions that (layer, KV head) holds, ascending. */
  positions: number[][][];
  /** Bytes of K and V in live slots now. */
  kvBytes: number;
  /** The most live K and V bytes so far (the result's peakKvBytes when the generation ends). */
  peakKvBytes: number;
  /** Bytes a full cache of the same dtype would hold for `processed` tokens. */
  fullKvBytes: number;
  /** Compressions so far. */
  compressions: number;
}

/** A generated token's log-probability, and the most likely alternatives at its position. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The most likely tokens at this position, most likely first (SequenceOptions.logprobs of them). */
  top: { id: number; logprob: number }[];
}

/** The log-softmax of one logits row at `id`, and its `k` largest entries. */
export function logprobOf(logits: Float32Array, offset: number, vocab: number, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[offset + i]! - max);
  const lse = max + Math.log(sum);
  // The k largest by insertion into a short sorted list: k is at most 20, one pass over the row.
  const top: { id: number; logprob: number }[] = [];
  for (let i = 0; i < vocab && k > 0; i++) {
    const v = logits[offset + i]!;
    if (top.length === k) {
      if (v <= top[k - 1]!.logprob) continue;
      top.pop();
    }
    let j = top.length;
    top.push({ id: i, logprob: v });
    while (j > 0 && top[j - 1]!.logprob < v) {
      top[j] = top[j - 1]!;
      j--;
    }
    top[j] = { id: i, logprob: v };
  }
  for (const t of top) t.logprob -= lse;
  return { id, logprob: logits[offset + id]! - lse, top };
}

/** One generation: its tokens, cache, sampler and stopping state. */
export class Sequence {
  /** Its cache: created empty, or taken over from a held conversation (resumeFrom). */
  cache: KvCache;
  readonly sampler: Sampler;
  /** Prompt ids followed by the generated ids. */
  readonly ids: number[];
  readonly promptLength: number;
  /** Tokens fed to the model so far (the next token's position). */
  processed = 0;
  stopReason: StopReason | null = null;
  readonly maxTokens: number;
  readonly stopIds: ReadonlySet<number>;
  readonly prefillBlock: number;
  /** Per layer, the most slots per KV head a sliding layer ever holds (W - 1 + one step); Infinity for the others. */
  private readonly slidingCaps: readonly number[];
  /** What ended it alone (a failed allocation of its own): its caller hears this instead of a result. */
  failure: unknown = null;
  /** The log-probability of the newest generated token (SequenceOptions.logprobs). */
  lastLogprob: TokenLogprob | null = null;

  constructor(
    readonly config: ModelConfig,
    promptIds: readonly number[],
    readonly options: SequenceOptions,
    public compressor: Compressor | null = null,
    allocator?: Allocator,
  ) {
    if (promptIds.length === 0) throw new KvsieveError('prompt is empty: give at least one token', { option: 'prompt' });
    for (const id of promptIds) {
      if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
        throw new KvsieveError(`prompt token id ${id} is outside the vocabulary (0..${config.vocabSize - 1})`, { option: 'prompt' });
      }
    }
    if (promptIds.length > config.maxPositions) {
      throw new KvsieveError(
        `prompt has ${promptIds.length} tokens but the model's context is ${config.maxPositions} (max_position_embeddings); shorten it`,
        { option: 'prompt', code: 'context_length_exceeded' },
      );
    }
    this.ids = [...promptIds];
    this.promptLength = promptIds.length;
    this.maxTokens = options.maxTokens ?? (options.forced ? options.forced.length : 256);
    if (!Number.isInteger(this.maxTokens) || this.maxTokens < 0) {
      throw new KvsieveError(`maxTokens must be a whole number >= 0, got ${this.maxTokens}`, { option: 'maxTokens' });
    }
    if (options.kvDtype !== undefined && !KV_DTYPES.includes(options.kvDtype)) {
      throw new KvsieveError(`kvDtype must be one of ${KV_DTYPES.join(', ')}, got ${JSON.stringify(options.kvDtype)}`, { option: 'kvDtype' });
    }
    this.stopIds = new Set(options.ignoreEos ? [] : (options.stopIds ?? config.eosTokenIds));
    this.sampler = new Sampler(options);
    const lp = options.logprobs;
    if (lp !== undefined && !(Number.isInteger(lp) && lp >= 0 && lp <= 20)) {
      throw new KvsieveError(`logprobs must be a whole number from 0 to 20, got ${JSON.stringify(lp)}`, { option: 'logprobs' });
    }
    this.prefillBlock = options.prefillBlock ?? 64;
    if (!Number.isInteger(this.prefillBlock) || this.prefillBlock < 1) {
      throw new KvsieveError(`prefillBlock must be a whole number >= 1, got ${this.prefillBlock}`, { option: 'prefillBlock' });
    }
    // A sliding layer holds its window's W - 1 slots plus one step's tokens, compressed or not.
    const windows = Array.from({ length: config.numLayers }, (_, l) => layerWindow(config, l));
    this.slidingCaps = windows.map((w) => (w > 0 ? Math.min(config.maxPositions, w - 1 + this.prefillBlock) : Infinity));
    const cappedSlots = compressor ? compressor.slotsPerHead : config.maxPositions;
    const maxSlots = windows.some((w) => w > 0)
      ? this.slidingCaps.map((cap, l) => (cap < Infinity ? cap : typeof cappedSlots === 'number' ? cappedSlots : cappedSlots[l]!))
      : cappedSlots;
    this.cache = new SlotCache({
      numLayers: config.numLayers,
      numKvHeads: config.numKvHeads,
      headDim: config.headDim,
      maxSlotsPerHead: maxSlots,
      ...(windows.some((w) => w > 0) ? { windows } : {}),
      // Room for the prompt and up to RESERVE_TOKENS generated tokens up front (untouched memory costs no
      // RSS), growing beyond that only when a long generation gets there: short and medium runs never copy
      // their cache, and a request for a huge max_tokens does not claim wasm32's 4 GiB before it needs it.
      initialSlotsPerHead: Math.min(
        typeof maxSlots === 'number' ? maxSlots : Math.max(...maxSlots),
        Math.max(16, promptIds.length + Math.min(this.maxTokens, RESERVE_TOKENS)),
      ),
      kvDtype: options.kvDtype ?? 'f32',
      ...(allocator ? { allocator } : {}),
    });
    if (this.maxTokens === 0) this.stopReason = 'max-tokens';
  }

  /**
   * K and V bytes its cache holds when each (layer, KV head) has `slots` slots, a sliding layer at most
   * its own cap: what a growing sequence reserves in a memory pool for that many tokens.
   */
  kvBytesAt(slots: number): number {
    let perHead = 0;
    for (const cap of this.slidingCaps) perHead += Math.min(slots, cap);
    return perHead * this.config.numKvHeads * slotBytes(this.cache.kvDtype, this.config.headDim);
  }

  /** The most slots per head (up to the context) whose kvBytesAt fits in `bytes`. */
  slotsWithin(bytes: number): number {
    let [lo, hi] = [0, this.config.maxPositions];
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.kvBytesAt(mid) <= bytes) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  get generated(): number {
    return this.ids.length - this.promptLength;
  }

  get done(): boolean {
    return this.stopReason !== null;
  }

  /**
   * Whether every token but the newest is in the cache: the prompt is read and the sequence decodes
   * one token per step. False while reading the prompt, or while recomputing after a preemption.
   */
  get prefillDone(): boolean {
    return this.processed >= this.promptLength && this.processed >= this.ids.length - 1;
  }

  /**
   * The tokens to feed next: ids[processed ..] in blocks (the prompt, or everything after a preemption
   * freed the cache), one token at a time once caught up. A step samples when it feeds the newest id.
   */
  nextTokens(): number[] {
    if (this.prefillDone) return [this.ids[this.ids.length - 1]!];
    const block = this.compressor ? Math.max(1, Math.min(this.prefillBlock, this.compressor.room(this.cache))) : this.prefillBlock;
    return this.ids.slice(this.processed, Math.min(this.ids.length, this.processed + block));
  }

  /** Whether a step feeding `tokens` (from nextTokens) ends on the newest id, so its logits choose the next. */
  samplesAfter(tokens: number): boolean {
    return this.processed + tokens >= this.ids.length;
  }

  /**
   * Whether a preemption can free this sequence's cache and recompute it later to the same state: a
   * full cache can (the same tokens give the same keys and values); a compressed one cannot (its
   * compressions happened at other moments), so it keeps its cache.
   */
  get preemptible(): boolean {
    return this.compressor === null;
  }

  /**
   * The sequence whose prompt this one shares (n samples of one prompt): while that one reads the
   * prompt for the first time, this one waits, and takes a copy of its cache when it is read.
   */
  forkOf: Sequence | null = null;

  /** Whether this sequence waits for its fork source to finish reading their shared prompt. */
  get awaitingFork(): boolean {
    const src = this.forkOf;
    return src !== null && this.processed === 0 && !this.done && !src.done && src.generated === 0 && src.processed < src.promptLength;
  }

  /** Takes the state of `source`, which has just read their shared prompt: the cache, the compressor's state. */
  adopt(source: Sequence): void {
    this.cache.copyFrom(source.cache);
    if (this.compressor && source.compressor) this.compressor.copyFrom(source.compressor, this.cache);
    this.processed = source.processed;
  }

  /**
   * Continues from `held`, a finished sequence whose ids[0, length) are this one's first tokens: takes
   * over its cache and compressor (same shape and settings) instead of reading those tokens again. A
   * cache holding more than `length` tokens is cut back to the slots of positions below `length`, which
   * is exact for a full cache (slot i holds position i); a compressed cache is only resumed whole.
   */
  resumeFrom(held: Sequence, length: number): void {
    if (!(length >= 1 && length <= held.processed && length < this.ids.length)) {
      throw new InternalError(`resume: ${length} tokens from a sequence that processed ${held.processed}, for ${this.ids.length} ids`);
    }
    if (length < held.processed && held.compressor) throw new InternalError('resume: a compressed cache can only be resumed whole');
    this.cache.release();
    this.compressor?.release();
    this.cache = held.cache;
    this.compressor = held.compressor;
    if (length < held.processed) {
      for (let l = 0; l < this.cache.numLayers; l++) {
        const keep = this.cache.heads(l).map((_, h) => {
          const pos = this.cache.positions(l, h);
          let n = 0;
          while (n < pos.length && pos[n]! < length) n++; // positions ascend
          return Int32Array.from({ length: n }, (_, i) => i);
        });
        this.cache.evict(l, keep);
      }
    }
    this.processed = length;
  }

  /**
   * Whether its cache can be cut back to the first `length` tokens (resumeFrom): a full-attention layer
   * holds every position, but a sliding layer has dropped its oldest, and the token at `length` needs
   * the window's positions before it.
   */
  canCutBackTo(length: number): boolean {
    for (let l = 0; l < this.config.numLayers; l++) {
      const w = layerWindow(this.config, l);
      if (w === 0) continue;
      for (let h = 0; h < this.config.numKvHeads; h++) {
        const first = this.cache.positions(l, h)[0];
        if (first !== undefined && first > Math.max(0, length - w + 1)) return false;
      }
    }
    return true;
  }

  /**
   * Allocates what its next step (`tokens` rows) will need in its cache and compressor, so a memory
   * failure is this sequence's own and happens before the shared forward pass.
   */
  prepare(tokens: number): void {
    this.cache.reserve(tokens);
    this.compressor?.reserve(this.cache, tokens);
  }

  /** Frees the cache; the tokens stay, and the next steps feed them again from the start. */
  preempt(): void {
    if (!this.preemptible) throw new InternalError('a compressed sequence cannot be preempted');
    this.cache.release();
    this.processed = 0;
  }

  /** Chooses the next token from a logits row (the forced one under teacher forcing). */
  choose(logits: Float32Array, offset: number, vocab: number): number {
    const onLogits = this.options.onLogits;
    if (onLogits) {
      try {
        onLogits(this, logits, offset, vocab);
      } catch (e) {
        if (typeof e === 'object' && e !== null) callbackErrors.add(e);
        throw e;
      }
    }
    const forced = this.options.forced;
    let id: number;
    if (forced) {
      const f = forced[this.generated];
      if (f === undefined) {
        throw new KvsieveError(`forced holds ${forced.length} tokens, fewer than generation needs (maxTokens ${this.maxTokens}, no stop met)`, {
          option: 'forced',
        });
      }
      id = f;
    } else {
      id = this.sampler.sample(logits, offset, vocab);
    }
    if (this.options.logprobs !== undefined) this.lastLogprob = logprobOf(logits, offset, vocab, id, this.options.logprobs);
    return id;
  }

  /** Records a sampled token and decides whether generation ends. */
  accept(id: number): void {
    this.ids.push(id);
    if (this.stopIds.has(id)) this.stopReason = 'eos';
    else if (this.generated >= this.maxTokens) this.stopReason = 'max-tokens';
    else if (this.processed >= this.config.maxPositions) this.stopReason = 'context';
  }

  /** Hands SequenceOptions.onTrace what the cache holds now (nothing when there is no onTrace). */
  trace(): void {
    const onTrace = this.options.onTrace;
    if (!onTrace) return;
    const c = this.cache;
    const positions: number[][][] = [];
    for (let l = 0; l < c.numLayers; l++) positions.push(c.heads(l).map((_, h) => Array.from(c.positions(l, h))));
    const bytes = c.bytes();
    const cfg = this.config;
    const event: KvTraceEvent = {
      step: this.generated,
      token: this.ids[this.ids.length - 1]!,
      processed: this.processed,
      positions,
      kvBytes: bytes.live,
      peakKvBytes: bytes.peakLive,
      fullKvBytes: this.processed * cfg.numLayers * cfg.numKvHeads * slotBytes(this.options.kvDtype ?? 'f32', cfg.headDim),
      compressions: this.compressor?.stats.compressions ?? 0,
    };
    try {
      onTrace(event);
    } catch (e) {
      if (typeof e === 'object' && e !== null) callbackErrors.add(e);
      throw e;
    }
  }

  stop(reason: StopReason): void {
    if (this.stopReason === null) this.stopReason = reason;
  }

  /** Gives back the cache's memory and the compressor's (the sequence is finished). */
  release(): void {
    this.cache.release();
    this.compressor?.release();
  }
}
