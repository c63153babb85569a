import type { StreamDecoder, Tokenizer } from '../tokenizer/types.js';
import type { LlamaModel } from '../model/llama.js';
import { step } from './scheduler.js';
import type { Sequence, StopReason } from './sequence.js';
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
}

/** Per-sequence bookkeeping around the scheduler: text streaming, stop strings, timings. */
class Tracker {
  readonly decoder: StreamDecoder | null;
  readonly filter: StopStringFilter;
  text = '';
  prefillSeconds = 0;
  decodeSeconds = 0;
  decodeSteps = 0;

  constructor(
    readonly seq: Sequence,
    tokenizer: Tokenizer | null,
    stopStrings: readonly string[],
  ) {
    this.decoder = tokenizer ? tokenizer.streamDecoder(seq.ids[seq.promptLength - 1]) : null;
    this.filter = new StopStringFilter(stopStrings);
  }

  /** Text for one new token (stop strings applied); ends the sequence when a stop string appears. */
  take(id: number): string {
    if (!this.decoder) return '';
    let shown = this.filter.push(this.decoder.push(id));
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
    const c = s.cache;
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
      peakKvBytes: c.peakLiveBytes,
      peakKvAllocatedBytes: c.peakAllocatedBytes,
      finalKvTokensPerHead: c.maxHeadLength(),
      compressions: s.compressor?.stats.compressions ?? 0,
      compressionSeconds: s.compressor?.stats.seconds ?? 0,
    };
  }
}

/**
 * Runs sequences together until all are done, calling `onChunk` for each new token. Yields to the
 * event loop between steps (so streams flush and servers stay responsive).
 */
export async function* runSequences(
  model: LlamaModel,
  sequences: readonly Sequence[],
  tokenizer: Tokenizer | null,
  /** Stop strings of each sequence. */
  stopStrings: readonly (readonly string[])[],
): AsyncGenerator<{ index: number; chunk: GenerationChunk }, GenerationResult[]> {
  const trackers = sequences.map((s, i) => new Tracker(s, tokenizer, stopStrings[i] ?? []));
  const index = new Map(sequences.map((s, i) => [s, i]));
  while (sequences.some((s) => !s.done)) {
    const activeBefore = sequences.map((s) => !s.done);
    const decodingBefore = sequences.map((s) => s.prefillDone);
    const t0 = performance.now();
    const advanced = step(model, sequences);
    const seconds = (performance.now() - t0) / 1000;
    // Time of a mixed step is charged to each sequence by what it did in it.
    sequences.forEach((s, i) => {
      if (!activeBefore[i]) return;
      const tr = trackers[i]!;
      if (decodingBefore[i]) {
        tr.decodeSeconds += seconds;
        tr.decodeSteps++;
      } else {
        tr.prefillSeconds += seconds;
      }
    });
    for (const seq of advanced) {
      const i = index.get(seq)!;
      const id = seq.ids[seq.ids.length - 1]!;
      const text = trackers[i]!.take(id);
      yield { index: i, chunk: { text, ids: [id] } };
    }
    await new Promise<void>((r) => setImmediate(r));
  }
  return trackers.map((t) => t.result());
}
