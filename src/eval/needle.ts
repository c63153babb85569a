import type { Model } from '../api.js';
import { KvsieveError } from '../core/errors.js';
import type { CompressionSettings } from '../generate/compression.js';
import { configurations } from './math.js';
import type { NeedleRecord, ResultsFile } from './records.js';

/** Filler text of plain sentences (written for kvsieve); `--filler FILE` replaces it. */
export const DEFAULT_FILLER =
  'The garden behind the old house was full of tall grass. A small bird sat on the fence and sang. ' +
  'Every morning the baker opened his shop and the street smelled of warm bread. Children walked to school in pairs. ' +
  'The river ran slowly past the mill, and the wheel turned all day. In the evening the lamps were lit one by one. ' +
  'A cat slept in the sun by the window. The farmer counted his sheep twice before night. ' +
  'Rain fell softly on the roof while the family ate supper. The library kept its books in long wooden rows. ';

export interface NeedleSettings {
  needle: string;
  question: string;
  expected: string;
  filler: string;
}

export const DEFAULT_NEEDLE: NeedleSettings = {
  needle: 'The secret code is 4721.',
  question: 'What is the secret code? The secret code is',
  expected: '4721',
  filler: DEFAULT_FILLER,
};

/**
 * A haystack prompt of about `length` tokens with the needle sentence placed at `depth` (0 = start,
 * 1 = end) at a sentence boundary, followed by the question. Returns the prompt ids.
 */
export function buildNeedlePrompt(model: Model, s: NeedleSettings, length: number, depth: number): number[] {
  const tok = model.tokenizer;
  if (!tok) throw new KvsieveError('eval needle: the model has no tokenizer');
  const sentences = s.filler.match(/[^.!?]+[.!?]+\s*/g)?.map((x) => x.trim()) ?? [];
  if (sentences.length === 0) throw new KvsieveError('eval needle: the filler text has no sentences');
  const cost = sentences.map((x) => tok.encode(' ' + x, { addBos: false }).length);
  const fixed = tok.encode(`${s.needle}\n${s.question}`).length + 1;
  const hay: string[] = [];
  let used = fixed;
  for (let i = 0; used + cost[i % sentences.length]! <= length; i++) {
    hay.push(sentences[i % sentences.length]!);
    used += cost[i % sentences.length]!;
    if (i > 1e6) break;
  }
  hay.splice(Math.round(depth * hay.length), 0, s.needle);
  const ids = tok.encode(`${hay.join(' ')}\n${s.question}`);
  if (ids.length > model.config.maxPositions) {
    throw new KvsieveError(`eval needle: lengths: ${length} gives a ${ids.length}-token prompt, over the context (${model.config.maxPositions})`, { option: 'lengths' });
  }
  return ids;
}

export interface NeedleOptions {
  lengths: readonly number[];
  depths: readonly number[];
  settings: NeedleSettings;
  maxTokens: number;
  presses: readonly CompressionSettings[];
  budgets: readonly number[];
  modelLabel: string;
  results?: ResultsFile;
  onItem?: (r: NeedleRecord) => void;
}

/** Needle in a haystack over a length x depth grid, greedy, scored by exact match of the expected text. */
export async function runNeedle(model: Model, o: NeedleOptions): Promise<NeedleRecord[]> {
  const out: NeedleRecord[] = [];
  for (const cfg of configurations(o.presses, o.budgets)) {
    for (const length of o.lengths) {
      for (const depth of o.depths) {
        const key = `needle|${length}|${depth}|${cfg.press}|${cfg.budget ?? 'full'}|${o.settings.expected}`;
        if (o.results?.has(key)) continue;
        const ids = buildNeedlePrompt(model, o.settings, length, depth);
        const r = await model.complete(null, { promptIds: ids, maxTokens: o.maxTokens, ...(cfg.settings ? { compression: cfg.settings } : {}) });
        const record: NeedleRecord = {
          kind: 'needle',
          key,
          model: o.modelLabel,
          press: cfg.press,
          budget: cfg.budget,
          time: new Date().toISOString(),
          length: ids.length,
          depth,
          expected: o.settings.expected,
          answer: r.text,
          correct: r.text.includes(o.settings.expected),
        };
        o.results?.append(record);
        o.onItem?.(record);
        out.push(record);
      }
    }
  }
  return out;
}
