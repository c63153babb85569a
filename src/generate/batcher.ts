import { longestHead } from '../kv/cache.js';
import type { StreamDecoder, Tokenizer } from '../tokenizer/types.js';
import type { LlamaModel } from '../model/llama.js';
import { step, stepAsync } from './scheduler.js';
import { classify, InternalError, KvsieveError } from '../core/errors.js';
import { KvPool, type KvPoolStats } from './pool.js';
import { thrownByCallback, type Sequence, type StopReason, type TokenLogprob } from './sequence.js';
import { StopStringFilter } from './stop.js';

/**
 * Runs `f` on a later turn of the event loop, after pending I/O (setImmediate in Node; in a browser or
 * Web Worker, which have no setImmediate, a MessageChannel message, which unlike setTimeout is not
 * clamped to 4 ms).
 */
const nextTurn: (f: () => void) => void =
  typeof setImmediate === 'function'
    ? (f) => void setImmediate(f)
    : (() => {
        const queue: (() => void)[] = [];
        const channel = new MessageChannel();
        channel.port1.onmessage = () => queue.shift()?.();
        return (f: () => void) => {
          queue.push(f);
          channel.port2.postMessage(null);
        };
      })();

export interface GenerationChunk {
  /** Text made printable by this chunk (may be '' while bytes of a character are pending). */
  text: string;
  /** Token ids generated in this chunk. */
  ids: number[];
  /** Each id's log-probability, when asked for (GenerateOptions.logprobs). */
  logprobs?: TokenLogprob[];
}

export interface GenerationResult {
  promptIds: number[];
  generatedIds: number[];
  text: string;
  stopReason: StopReason;
  promptTokens: number;
  /** Prompt tokens not read again: taken over with a held conversation's cache (GenerateOptions.reuseCache). */
  cachedTokens: number;
  generatedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Peak bytes of K and V in live cache slots. */
  peakKvBytes: number;
  /** Peak bytes of K and V allocated for the sequence (live or free slots). */
  peakKvAllocatedBytes: number;
  /** The most tokens any one (layer, KV head) held at the end. */
  finalKvTokensPerHead: number;
  compressions: number;
  compressionSeconds: number;
  /** The most sequences any forward step of this generation advanced together (1: it ran alone). */
  peakBatchSize: number;
  /** Times its cache was freed to make room for others and recomputed when it was readmitted. */
  preemptions: number;
}

/** Per-sequence bookkeeping around the scheduler: text streaming, stop strings, timings. */
class Tracker {
  readonly decoder: StreamDecoder | null;
  readonly filter: StopStringFilter;
  text = '';
  prefillSeconds = 0;
  decodeSeconds = 0;
  decodeSteps = 0;
  peakBatchSize = 0;
  preemptions = 0;
  cachedTokens = 0;

  constructor(
    readonly seq: Sequence,
    tokenizer: Tokenizer | null,
    stopStrings: readonly string[],
    keepSpecialTokens = false,
  ) {
    this.decoder = tokenizer ? tokenizer.streamDecoder(seq.ids[seq.promptLength - 1], { skipSpecial: !keepSpecialTokens }) : null;
    this.filter = new StopStringFilter(stopStrings);
  }

  /**
   * Text for one new token (stop strings applied); ends the sequence when a stop string appears.
   * `null` flushes what is held back (a sequence stopped from outside).
   */
  take(id: number | null): string {
    if (!this.decoder) return '';
    let shown = id === null ? '' : this.filter.push(this.decoder.push(id));
    if (this.filter.matched !== null) this.seq.stop('stop-string');
    if (this.seq.done) shown += this.finish();
    this.text += shown;
    return shown;
  }

  private finish(): string {
    const rest = this.decoder && this.filter.matched === null ? this.filter.push(this.decoder.flush()) : '';
    return rest + this.filter.flush();
  }

  result(): GenerationResult {
    const s = this.seq;
    const kv = s.cache.bytes();
    return {
      promptIds: s.ids.slice(0, s.promptLength),
      generatedIds: s.ids.slice(s.promptLength),
      text: this.text,
      stopReason: s.stopReason ?? 'max-tokens',
      promptTokens: s.promptLength,
      cachedTokens: this.cachedTokens,
      generatedTokens: s.generated,
      prefillSeconds: this.prefillSeconds,
      decodeSeconds: this.decodeSeconds,
      prefillTokensPerSecond: this.prefillSeconds > 0 ? s.promptLength / this.prefillSeconds : 0,
      decodeTokensPerSecond: this.decodeSeconds > 0 ? this.decodeSteps / this.decodeSeconds : 0,
      peakKvBytes: kv.peakLive,
      peakKvAllocatedBytes: kv.peakAllocated,
      finalKvTokensPerHead: longestHead(s.cache),
      compressions: s.compressor?.stats.compressions ?? 0,
      compressionSeconds: s.compressor?.stats.seconds ?? 0,
      peakBatchSize: this.peakBatchSize,
      preemptions: this.preemptions,
    };
  }
}

/** An async queue of chunks with a result at the end (one per submitted sequence). */
class Channel implements GenerationStream {
  private readonly queue: GenerationChunk[] = [];
  private wake: (() => void) | null = null;
  private closed = false;
  private error: unknown = null;
  readonly result: Promise<GenerationResult>;
  private settle!: (r: GenerationResult) => void;
  private fail!: (e: unknown) => void;

  constructor(private readonly onCancel: () => void) {
    this.result = new Promise<GenerationResult>((res, rej) => {
      this.settle = res;
      this.fail = rej;
    });
    this.result.catch(() => {}); // the iterator reports errors too; an unread result must not crash
  }

  push(chunk: GenerationChunk): void {
    this.queue.push(chunk);
    this.wake?.();
  }

  close(result: GenerationResult): void {
    this.closed = true;
    this.settle(result);
    this.wake?.();
  }

  abort(e: unknown): void {
    this.closed = true;
    this.error = e;
    this.fail(e);
    this.wake?.();
  }

  cancel(): void {
    this.onCancel();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next) {
          yield next;
          continue;
        }
        if (this.error !== null) throw this.error;
        if (this.closed) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
      }
    } finally {
      // Leaving the loop early (break, return, a throw in its body) cancels the generation.
      if (!this.closed) this.onCancel();
    }
  }
}

/**
 * A stream of generated chunks; `result` settles when generation ends. `cancel()` (or leaving a
 * `for await` loop over it early) stops it: its cache is freed at once, or after the step in
 * progress, and `result` resolves with stop reason 'cancelled' and what was generated so far.
 */
export interface GenerationStream extends AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
  cancel(): void;
}

/** One submitted sequence in the batcher: its streaming side, and what it holds of the pool. */
interface Entry {
  tracker: Tracker;
  channel: Channel;
  /** Bytes of the pool reserved for its cache. */
  reserved: number;
  /** Whether to hold its cache when it ends (the settings key a later sequence must match), or null. */
  holdKey: string | null;
  /** Whether it has left the batcher (finished, failed or cancelled). */
  retired: boolean;
}

/**
 * A finished sequence whose cache is kept for a later one that extends its tokens (the next turn of
 * a conversation). Its bytes stay in the pool until it is resumed, or evicted (least recently held
 * first) when running sequences need the room.
 */
interface Held {
  seq: Sequence;
  bytes: number;
  key: string;
}

/** Held caches kept at most, whatever the pool has room for (the pool may have no limit). */
const MAX_HELD = 64;

/** How a sequence uses held caches (GenerateOptions.reuseCache). */
export interface SubmitOptions {
  /**
   * The identity of the sequence's cache settings (dtype, compression): it resumes from the held
   * cache of the same key whose tokens it extends furthest, and its own cache is held when it ends.
   */
  reuseKey?: string;
  /** Stream special tokens' text too (a harmony-format model's channel markers for the server's splitter). */
  keepSpecialTokens?: boolean;
}

export interface BatcherOptions {
  /** KV memory the batch may hold, in bytes (default: no limit). */
  kvMemory?: number;
  /** Tokens a growing cache is granted at a time (default 128). */
  kvBlockTokens?: number;
  /** Called after every step with the pool's gauge (diagnostics, tests). */
  onStep?: (stats: KvPoolStats) => void;
}

/**
 * Continuous batching under a KV memory limit. Every submitted sequence waits in arrival order until
 * its reservation fits the pool, then joins the running batch at the next step; each forward step
 * advances all running sequences together (prefill blocks and decode tokens mixed), and they leave as
 * they finish. A growing cache is granted room in blocks before each step; when the pool has none,
 * the newest running full-cache sequence is preempted (its cache freed, its tokens kept) and goes back
 * to the front of the queue, to be recomputed when readmitted (vLLM's recompute policy). A compressed
 * sequence reserves its whole budget at admission and is never preempted. One batcher per model.
 */
export class Batcher {
  private readonly active: Entry[] = [];
  private readonly waiting: Entry[] = [];
  /** Held caches, least recently held first. */
  private readonly held: Held[] = [];
  private running = false;
  /** True while advance() runs: a cancellation then waits for the step's end to retire its sequence. */
  private stepping = false;
  private readonly pool: KvPool;
  private readonly blockTokens: number;

  constructor(
    private readonly model: LlamaModel,
    private readonly tokenizer: Tokenizer | null,
    private readonly o: BatcherOptions = {},
  ) {
    this.pool = new KvPool(o.kvMemory ?? Infinity);
    this.blockTokens = o.kvBlockTokens ?? 128;
  }

  /** Sequences in the batch now. */
  get size(): number {
    return this.active.length;
  }

  /** The pool's gauge: reserved and used bytes, running and waiting sequences, preemptions. */
  stats(): KvPoolStats {
    let used = 0;
    let allocated = 0;
    for (const e of this.active) {
      const b = e.tracker.seq.cache.bytes();
      used += b.live;
      allocated += b.allocated;
    }
    const heldBytes = this.held.reduce((a, h) => a + h.bytes, 0);
    return {
      limitBytes: this.pool.limitBytes,
      reservedBytes: this.pool.reservedBytes - heldBytes,
      usedBytes: used,
      allocatedBytes: allocated,
      heldBytes,
      held: this.held.length,
      running: this.active.length,
      waiting: this.waiting.length,
      preemptions: this.pool.preemptions,
    };
  }

  /**
   * Queues a sequence. Refused at once (KvsieveError naming kvMemory) when it could not run even
   * alone: a compressed sequence whose budget exceeds the pool, or a prompt whose cache does not fit.
   */
  submit(seq: Sequence, stopStrings: readonly string[] = [], o: SubmitOptions = {}): GenerationStream {
    this.check(seq);
    const tracker = new Tracker(seq, this.tokenizer, stopStrings, o.keepSpecialTokens);
    const entry: Entry = { tracker, channel: new Channel(() => this.cancel(entry)), reserved: 0, holdKey: o.reuseKey ?? null, retired: false };
    if (o.reuseKey !== undefined) this.resume(entry, o.reuseKey);
    this.waiting.push(entry);
    if (!this.running) {
      this.running = true;
      nextTurn(() => void this.loop());
    }
    return entry.channel;
  }

  /**
   * Gives the new sequence the held cache of the same settings whose tokens its own extend furthest.
   * The new tokens must take in the held sequence's whole prompt (a next turn, or the last reply
   * generated again), not merely share a start with it (a BOS, a system prompt): that would spend
   * a conversation's cache on a few tokens. From there a full cache is cut back to the common prefix;
   * a compressed one is taken only whole (its kept slots were chosen with every token it read). The
   * held bytes become its reservation.
   */
  private resume(e: Entry, key: string): void {
    const seq = e.tracker.seq;
    let best: Held | null = null;
    let bestLength = 0;
    for (const h of this.held) {
      if (h.key !== key) continue;
      const ids = h.seq.ids;
      const max = Math.min(h.seq.processed, seq.ids.length - 1);
      let n = 0;
      while (n < max && ids[n] === seq.ids[n]) n++;
      if (n < h.seq.promptLength - 1 || (h.seq.compressor && n < h.seq.processed)) continue;
      if (n < h.seq.processed && !h.seq.canCutBackTo(n)) continue;
      if (n > bestLength) [best, bestLength] = [h, n];
    }
    if (!best) return;
    this.held.splice(this.held.indexOf(best), 1);
    seq.resumeFrom(best.seq, bestLength);
    e.reserved = best.bytes;
    e.tracker.cachedTokens = bestLength;
  }

  /** Frees the held caches whose tokens are a prefix of `ids` (a chat session that closes). */
  forget(ids: readonly number[]): void {
    for (const h of [...this.held]) {
      if (h.seq.ids.slice(0, h.seq.processed).every((id, i) => ids[i] === id)) this.evict(h);
    }
  }

  /** Frees a held cache. */
  private evict(h: Held): void {
    this.held.splice(this.held.indexOf(h), 1);
    h.seq.release();
    this.pool.give(h.bytes);
  }

  /** Whether `bytes` more fit the pool, evicting held caches (least recently held first) to make room. */
  private makeRoom(bytes: number): boolean {
    while (!this.pool.fits(bytes) && this.held.length > 0) this.evict(this.held[0]!);
    return this.pool.fits(bytes);
  }

  /** A cancellation: the sequence leaves at once, or at the end of the step in progress. */
  private cancel(e: Entry): void {
    if (e.retired) return;
    e.tracker.seq.stop('cancelled');
    if (!this.stepping) this.retire(e, false);
  }

  /**
   * Takes a finished sequence out of the batcher: the text held back, its result (or its own
   * failure) to the caller, its cache freed or held, its reservation given back.
   */
  private retire(e: Entry, advancedNow: boolean): void {
    const { tracker, channel } = e;
    const seq = tracker.seq;
    e.retired = true;
    for (const list of [this.active, this.waiting]) {
      const i = list.indexOf(e);
      if (i >= 0) list.splice(i, 1);
    }
    if (seq.failure !== null) {
      seq.release();
      this.pool.give(e.reserved);
      e.reserved = 0;
      channel.abort(seq.failure);
      return;
    }
    if (!advancedNow) {
      const tail = tracker.take(null);
      if (tail) channel.push({ text: tail, ids: [] });
    }
    const result = tracker.result();
    const bytes = seq.cache.bytes().allocated;
    const holdable = seq.stopReason === 'eos' || seq.stopReason === 'max-tokens' || seq.stopReason === 'stop-string';
    if (e.holdKey !== null && holdable && seq.processed > 0 && bytes <= e.reserved) {
      this.pool.give(e.reserved - bytes);
      this.held.push({ seq, bytes, key: e.holdKey });
      if (this.held.length > MAX_HELD) this.evict(this.held[0]!);
    } else {
      seq.release();
      this.pool.give(e.reserved);
    }
    e.reserved = 0;
    channel.close(result);
  }

  /** Refuses a sequence that could not run even alone in the pool (KvsieveError naming kvMemory). */
  check(seq: Sequence): void {
    const need = this.admissionBytes(seq);
    if (need > this.pool.limitBytes) {
      const what = this.growable(seq) ? 'for its prompt' : 'for its budget + buffer in every layer';
      throw new KvsieveError(`kvMemory: the sequence needs ${need} bytes of KV cache ${what}, the pool holds ${this.pool.limitBytes}`, { option: 'kvMemory' });
    }
  }

  /** Bytes of the slots a growing cache needs for `tokens` tokens per KV head, rounded up to a block. */
  private growingBytes(seq: Sequence, tokens: number): number {
    return seq.kvBytesAt(Math.min(seq.config.maxPositions, Math.ceil(tokens / this.blockTokens) * this.blockTokens));
  }

  /** What a sequence reserves to be admitted: its whole limit when compressed, else room for all its tokens. */
  private admissionBytes(seq: Sequence): number {
    return this.growable(seq) ? this.growingBytes(seq, seq.ids.length + 1) : seq.cache.limitBytes();
  }

  /** Whether the cache grows with the sequence (no decode-time compression bounds it). */
  private growable(seq: Sequence): boolean {
    return seq.compressor === null || seq.compressor.slotsPerHead.every((s) => s >= seq.config.maxPositions);
  }

  private async loop(): Promise<void> {
    try {
      while (this.active.length + this.waiting.length > 0) {
        if (this.model.stepsAsync) await this.advanceAsync();
        else this.advance();
        await new Promise<void>((r) => nextTurn(r));
      }
    } catch (e) {
      // A step that fails fails every sequence in it (they share the forward pass). What kvsieve did not
      // classify (a wasm trap, a TypeError) is an internal fault; a caller's callback error stays its own.
      const failure = thrownByCallback(e) ? e : classify(e, 'generation step failed');
      for (const a of [...this.active.splice(0), ...this.waiting.splice(0)]) {
        try {
          a.tracker.seq.release();
          this.pool.give(a.reserved);
        } catch {
          // after a fault the cache may be in any state; the fault itself is what every caller hears of
        }
        a.reserved = 0;
        a.retired = true;
        a.channel.abort(failure);
      }
    } finally {
      this.running = false;
      this.stepping = false;
    }
  }

  /** Admits waiting sequences in arrival order while their reservations fit. */
  private admit(): void {
    while (this.waiting.length > 0) {
      const e = this.waiting[0]!;
      const seq = e.tracker.seq;
      if (seq.done) {
        // stopped while waiting: it leaves without running
        this.waiting.shift();
        this.active.push(e);
        continue;
      }
      // A sequence resumed from a held cache already holds that cache's bytes.
      const more = Math.max(0, this.admissionBytes(seq) - e.reserved);
      if (!this.makeRoom(more)) {
        // Alone it will never fit (a preempted sequence that grew past the pool): it ends here.
        if (this.active.length === 0) seq.stop('kv-memory');
        if (!seq.done) return;
        this.waiting.shift();
        this.active.push(e);
        continue;
      }
      this.pool.take(more);
      e.reserved += more;
      if (this.growable(seq)) seq.cache.setSlotLimit(seq.slotsWithin(e.reserved));
      this.waiting.shift();
      this.active.push(e);
    }
  }

  /**
   * Whether a sample waits for its fork source to read their prompt: only while the source runs (a
   * source that waits for memory itself is not waited for: the sample reads the prompt on its own).
   */
  private waitsForFork(seq: Sequence): boolean {
    return seq.awaitingFork && this.active.some((e) => e.tracker.seq === seq.forkOf);
  }

  /** Frees a running sequence's cache and sends it back to the front of the queue. */
  private preempt(e: Entry): void {
    e.tracker.seq.preempt();
    this.pool.give(e.reserved);
    e.reserved = 0;
    this.pool.preemptions++;
    e.tracker.preemptions++;
    this.active.splice(this.active.indexOf(e), 1);
    this.waiting.unshift(e);
  }

  /**
   * Grants every growing cache the room its next step needs, preempting the newest preemptible
   * sequences when the pool runs out, and returns the sequences that can step now. Room comes in
   * blocks, half as much again as the cache holds while the pool has it (so a long generation's
   * cache is re-laid out a logarithmic number of times). A sequence that cannot grow while no one can
   * make room for it ends with stop reason 'kv-memory'.
   */
  private grant(): Sequence[] {
    const ready: Sequence[] = [];
    const satOut: Sequence[] = [];
    const othersRunning = (e: Entry) => this.active.some((v) => v !== e && !v.tracker.seq.done);
    for (let i = 0; i < this.active.length; i++) {
      const e = this.active[i]!;
      const seq = e.tracker.seq;
      if (seq.done || this.waitsForFork(seq)) continue;
      if (!this.growable(seq)) {
        ready.push(seq);
        continue;
      }
      const tokens = seq.processed + seq.nextTokens().length;
      const need = this.growingBytes(seq, tokens);
      if (need > e.reserved) {
        const want = this.growingBytes(seq, Math.max(tokens, Math.ceil(1.5 * seq.slotsWithin(e.reserved))));
        const grant = this.pool.fits(want - e.reserved) ? want : need;
        this.makeRoom(grant - e.reserved); // held caches go before running sequences are preempted
        while (!this.pool.fits(grant - e.reserved)) {
          const victim = this.active.findLast((v) => v !== e && v.tracker.seq.preemptible && !v.tracker.seq.done);
          if (victim && this.active.indexOf(victim) > i) this.preempt(victim);
          else break;
        }
        if (!this.pool.fits(grant - e.reserved)) {
          if (seq.preemptible && othersRunning(e)) {
            // the newest preemptible itself: it waits for the older ones to finish
            this.preempt(e);
            i--;
          } else if (othersRunning(e)) {
            satOut.push(seq); // not preemptible: it sits this step out while older sequences go on
          } else {
            seq.stop('kv-memory');
          }
          continue;
        }
        this.pool.take(grant - e.reserved);
        e.reserved = grant;
        seq.cache.setSlotLimit(seq.slotsWithin(grant));
      }
      ready.push(seq);
    }
    // What the step will append is allocated now, sequence by sequence: a memory failure ends that
    // sequence alone, before the forward pass the others share.
    for (let i = ready.length - 1; i >= 0; i--) {
      const seq = ready[i]!;
      try {
        seq.prepare(seq.nextTokens().length);
      } catch (err) {
        const fault = classify(err, 'kv cache');
        seq.failure = new InternalError(`KV cache allocation failed for this sequence: ${fault.message}`, { cause: err });
        seq.stop('cancelled');
        ready.splice(i, 1);
      }
    }
    // Sequences that all sit out would wait for each other forever: the newest of them ends.
    if (ready.length === 0 && satOut.length > 0) satOut[satOut.length - 1]!.stop('kv-memory');
    return ready;
  }

  /** One forward step over the batch; charges its time, streams new tokens, retires finished sequences. */
  private advance(): void {
    this.stepping = true;
    try {
      this.stepOnce();
    } finally {
      this.stepping = false;
    }
  }

  /** `advance` for a model whose steps are awaited (a GPU forward); cancellations meanwhile wait for its end. */
  private async advanceAsync(): Promise<void> {
    this.stepping = true;
    try {
      const plan = this.planStep();
      const advanced = plan.stepped > 0 ? await stepAsync(this.model, plan.members, plan.forkable) : [];
      this.endStep(plan, advanced);
    } finally {
      this.stepping = false;
    }
  }

  private stepOnce(): void {
    const plan = this.planStep();
    this.endStep(plan, plan.stepped > 0 ? step(this.model, plan.members, plan.forkable) : []);
  }

  /** Admits and grants, then says which sequences the step takes. */
  private planStep() {
    this.admit();
    const ready = new Set(this.grant());
    const batch = this.active.map((a) => a.tracker.seq);
    // Admitted samples waiting for their source's prompt: the step that reads it forks them.
    const forkable = new Set(batch.filter((s) => this.waitsForFork(s)));
    // Sequences cancelled since the last step (or sitting this one out) leave it without another step.
    const inStep = batch.map((s) => ready.has(s) && !s.done);
    const decodingBefore = batch.map((s) => s.prefillDone);
    const stepped = inStep.filter(Boolean).length;
    const members = batch.filter((_, i) => inStep[i]);
    return { forkable, inStep, decodingBefore, stepped, members, t0: performance.now() };
  }

  /** Charges the step's time, streams new tokens, retires finished sequences. */
  private endStep({ inStep, decodingBefore, stepped, t0 }: ReturnType<Batcher['planStep']>, stepAdvanced: Sequence[]): void {
    const advanced = new Set(stepAdvanced);
    const seconds = (performance.now() - t0) / 1000;
    for (let i = this.active.length - 1; i >= 0; i--) {
      const { tracker, channel } = this.active[i]!;
      // The time of a mixed step is charged to each sequence by what it did in it (a forked sample
      // shares its source's prefill step).
      if (inStep[i] || advanced.has(tracker.seq)) {
        tracker.peakBatchSize = Math.max(tracker.peakBatchSize, stepped);
        if (decodingBefore[i]) {
          tracker.decodeSeconds += seconds;
          tracker.decodeSteps++;
        } else {
          tracker.prefillSeconds += seconds;
        }
      }
      if (advanced.has(tracker.seq)) {
        const seq = tracker.seq;
        const id = seq.ids[seq.ids.length - 1]!;
        const lp = seq.lastLogprob;
        channel.push({ text: tracker.take(id), ids: [id], ...(lp ? { logprobs: [lp] } : {}) });
      }
    }
    for (let i = this.active.length - 1; i >= 0; i--) {
      const e = this.active[i]!;
      if (e.tracker.seq.done) this.retire(e, advanced.has(e.tracker.seq));
    }
    this.o.onStep?.(this.stats());
  }
}
