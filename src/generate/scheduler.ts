import { InternalError } from '../core/errors.js';
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
  const plan = planStep(sequences);
  if (!plan) return [];
  const finishing = finishStep(model, plan, model.forward(plan.segments), forkable);
  for (let r = finishing.next(); ; r = finishing.next()) {
    if (r.done) return r.value;
    if (r.value) throw new InternalError('scheduler: a compression to await in a synchronous step (a GPU cache under a CPU forward)');
  }
}

/** `step` for a model whose forward is awaited (a GPU one: `model.stepsAsync`). */
export async function stepAsync(model: LlamaModel, sequences: readonly Sequence[], forkable: ReadonlySet<Sequence> = new Set()): Promise<Sequence[]> {
  const plan = planStep(sequences);
  if (!plan) return [];
  const finishing = finishStep(model, plan, await model.forwardAsync(plan.segments), forkable);
  for (let r = finishing.next(); ; r = finishing.next()) {
    if (r.done) return r.value;
    if (r.value) await r.value; // a GPU cache's compression: its layers read back, then cut
  }
}

interface StepPlan {
  active: Sequence[];
  segments: Segment[];
  /** Per active sequence: whether its step ends on its newest token (it samples). */
  sampling: boolean[];
}

/** Each unfinished sequence's segment of the step; null when none is left. */
function planStep(sequences: readonly Sequence[]): StepPlan | null {
  const active = sequences.filter((s) => !s.done);
  if (active.length === 0) return null;
  const segments: Segment[] = [];
  const sampling: boolean[] = [];
  for (const seq of active) {
    const tokens = seq.nextTokens();
    const positions = tokens.map((_, i) => seq.processed + i);
    const samples = seq.samplesAfter(tokens.length);
    sampling.push(samples);
    segments.push({ cache: seq.cache, tokens, positions, logits: samples ? 'last' : 'none', ...(seq.compressor ? { observer: seq.compressor } : {}) });
  }
  return { active, segments, sampling };
}

/**
 * After the forward: counts the tokens read, samples, compresses and forks; returns who got a token.
 * Yields each compressor's result: a promise where the compression is awaited (a GPU cache), which
 * the caller awaits before going on (the sequence's forks copy the compressed cache).
 */
function* finishStep(model: LlamaModel, { active, segments, sampling }: StepPlan, logits: Float32Array, forkable: ReadonlySet<Sequence>): Generator<void | Promise<void>, Sequence[], void> {
  const vocab = model.config.vocabSize;
  const advanced: Sequence[] = [];
  let row = 0;
  for (let i = 0; i < active.length; i++) {
    const seq = active[i]!;
    const decoding = seq.prefillDone;
    seq.processed += segments[i]!.tokens.length;
    const freshPrompt = sampling[i] && seq.generated === 0;
    // (a sequence cancelled while an awaited step ran takes no token from it)
    if (sampling[i] && !seq.done) {
      seq.accept(seq.choose(logits, row * vocab, vocab));
      advanced.push(seq);
    }
    yield seq.compressor?.afterStep(seq.cache, { processed: seq.processed, prefillDone: seq.prefillDone, decoding });
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
