import type { LlamaModel, Segment } from '../model/llama.js';
import type { Sequence } from './sequence.js';

/**
 * Advances every unfinished sequence by one forward step, all in one batch: a prefill block for
 * sequences still reading their prompt (or recomputing after a preemption), one token for the others.
 * Samples the next token of each sequence whose step ended on its newest token, then lets its
 * compressor act. A sequence in `forkable` waiting for its fork source takes that source's state when
 * the source has just read their shared prompt, and samples from the same logits row.
 * Returns the sequences that received a new token.
 */
export function step(model: LlamaModel, sequences: readonly Sequence[], forkable: ReadonlySet<Sequence> = new Set()): Sequence[] {
  const active = sequences.filter((s) => !s.done);
  if (active.length === 0) return [];
  const segments: Segment[] = [];
  const sampling: boolean[] = [];
  for (const seq of active) {
    const tokens = seq.nextTokens();
    const positions = tokens.map((_, i) => seq.processed + i);
    const samples = seq.samplesAfter(tokens.length);
    sampling.push(samples);
    segments.push({ cache: seq.cache, tokens, positions, logits: samples ? 'last' : 'none', ...(seq.compressor ? { observer: seq.compressor } : {}) });
  }
  const logits = model.forward(segments);
  const vocab = model.config.vocabSize;
  const advanced: Sequence[] = [];
  let row = 0;
  for (let i = 0; i < active.length; i++) {
    const seq = active[i]!;
    const decoding = seq.prefillDone;
    seq.processed += segments[i]!.tokens.length;
    const freshPrompt = sampling[i] && seq.generated === 0;
    if (sampling[i]) {
      seq.accept(seq.choose(logits, row * vocab, vocab));
      advanced.push(seq);
    }
    seq.compressor?.afterStep(seq.cache, { processed: seq.processed, prefillDone: seq.prefillDone, decoding });
    // Samples of the same prompt waiting for this one take its state and choose from the same logits.
    if (freshPrompt) {
      for (const child of forkable) {
        if (child.forkOf !== seq || child.processed !== 0 || child.done) continue;
        try {
          child.adopt(seq); // allocates the copy: a failure ends this sample alone
        } catch (e) {
          child.failure = e;
          child.stop('cancelled');
          continue;
        }
        child.accept(child.choose(logits, row * vocab, vocab));
        advanced.push(child);
      }
    }
    if (sampling[i]) row++;
  }
  for (const seq of advanced) seq.trace();
  return advanced;
}
