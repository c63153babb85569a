import { longestHead } from '../kv/cache.js';
import type { StreamDecoder, Tokenizer } from '../tokenizer/types.js';
import type { LlamaModel } from '../model/llama.js';
import { step } from './scheduler.js';
import { classify } from '../core/errors.js';
import { thrownByCallback, type Sequence, type StopReason } from './sequence.js';
import { StopStringFilter } from './stop.js';

export interface GenerationChunk {
  /** Text made printable by this chunk (may be '' while bytes of a character are pending). */
  text: string;
  /** Token ids generated in this chunk. */
  ids: number[];
}

export interface GenerationResult {
  promptIds: number[];
  generatedIds: number[];
  text: string;
  stopReason: StopReason;
  promptTokens: number;
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

  constructor(
    readonly seq: Sequence,
    tokenizer: Tokenizer | null,
    stopStrings: readonly string[],
  ) {
    this.decoder = tokenizer ? tokenizer.streamDecoder(seq.ids[seq.promptLength - 1]) : null;
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
  }
}

/** A stream of generated chunks; `result` settles when generation ends; `cancel` stops it early. */
export interface GenerationStream extends AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
  cancel(): void;
}

/**
 * Continuous batching: every submitted sequence joins the running batch at the next step, and each
 * forward step advances all of them together (prefill blocks and decode tokens mixed). Sequences
 * leave the batch as they finish. One batcher per model.
 */
export class Batcher {
  private readonly active: { tracker: Tracker; channel: Channel }[] = [];
  private running = false;

  constructor(
    private readonly model: LlamaModel,
    private readonly tokenizer: Tokenizer | null,
  ) {}

  /** Sequences in the batch now. */
  get size(): number {
    return this.active.length;
  }

  submit(seq: Sequence, stopStrings: readonly string[] = []): GenerationStream {
    const tracker = new Tracker(seq, this.tokenizer, stopStrings);
    const channel = new Channel(() => seq.stop('cancelled'));
    this.active.push({ tracker, channel });
    if (!this.running) {
      this.running = true;
      setImmediate(() => void this.loop());
    }
    return channel;
  }

  private async loop(): Promise<void> {
    try {
      while (this.active.length > 0) {
        this.advance();
        await new Promise<void>((r) => setImmediate(r));
      }
    } catch (e) {
      // A step that fails fails every sequence in it (they share the forward pass). What kvsieve did not
      // classify (a wasm trap, a TypeError) is an internal fault; a caller's callback error stays its own.
      const failure = thrownByCallback(e) ? e : classify(e, 'generation step failed');
      for (const a of this.active.splice(0)) {
        try {
          a.tracker.seq.release();
        } catch {
          // after a fault the cache may be in any state; the fault itself is what every caller hears of
        }
        a.channel.abort(failure);
      }
    } finally {
      this.running = false;
    }
  }

  /** One forward step over the batch; charges its time, streams new tokens, retires finished sequences. */
  private advance(): void {
    // Sequences cancelled since the last step leave without another step.
    const batch = this.active.map((a) => a.tracker.seq);
    const doneBefore = batch.map((s) => s.done);
    const decodingBefore = batch.map((s) => s.prefillDone);
    const stepped = doneBefore.filter((d) => !d).length;
    const t0 = performance.now();
    const advanced = new Set(step(this.model, batch));
    const seconds = (performance.now() - t0) / 1000;
    for (let i = this.active.length - 1; i >= 0; i--) {
      const { tracker, channel } = this.active[i]!;
      // The time of a mixed step is charged to each sequence by what it did in it.
      if (!doneBefore[i]) tracker.peakBatchSize = Math.max(tracker.peakBatchSize, stepped);
      if (doneBefore[i]) {
        // cancelled before this step: took no part in it
      } else if (decodingBefore[i]) {
        tracker.decodeSeconds += seconds;
        tracker.decodeSteps++;
      } else {
        tracker.prefillSeconds += seconds;
      }
      if (advanced.has(tracker.seq)) {
        const id = tracker.seq.ids[tracker.seq.ids.length - 1]!;
        channel.push({ text: tracker.take(id), ids: [id] });
      }
    }
    for (let i = this.active.length - 1; i >= 0; i--) {
      const { tracker, channel } = this.active[i]!;
      if (tracker.seq.done) {
        if (!advanced.has(tracker.seq)) {
          const tail = tracker.take(null);
          if (tail) channel.push({ text: tail, ids: [] });
        }
        channel.close(tracker.result());
        tracker.seq.release();
        this.active.splice(i, 1);
      }
    }
  }
}
