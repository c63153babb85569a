/**
 * Scores model completions against a reasoning dataset.
 *
 * Predictions are JSONL, one `{"id": ..., "completion": "..."}` per line; ids are those of the
 * dataset (its `id` field, or the 1-based line number when it has none) and match by value, so
 * `3` and `"3"` name the same item. A dataset item without a prediction counts as wrong and is
 * listed in `missing`; a prediction for an id the dataset lacks, or a second prediction for the
 * same id, is an error naming the predictions line.
 */
import { KvsieveError } from '../core/errors.js';
import { answersEqual, extractAnswer, type AnswerFormat } from './answer.js';
import { loadDataset, readJsonl, recordId, type EvalItem } from './datasets.js';

export interface ScoredItem {
  id: string | number;
  /** The answer extracted from the completion (null when none, or when the prediction is missing). */
  extracted: string | null;
  correct: boolean;
  /** The reference answer. */
  truth: string;
  /** No prediction was given for this item. */
  missing: boolean;
}

export interface ScoreResult {
  /** Correct items over all dataset items (missing predictions count as wrong). */
  accuracy: number;
  correct: number;
  total: number;
  /** Ids of dataset items that had no prediction, in dataset order. */
  missing: (string | number)[];
  /** One entry per dataset item, in dataset order. */
  items: ScoredItem[];
}

/** Scores completions (keyed by String(id)) against already loaded dataset items. */
export function scoreCompletions(items: EvalItem[], format: AnswerFormat, completions: ReadonlyMap<string, string>): ScoreResult {
  const scored: ScoredItem[] = items.map((item) => {
    const completion = completions.get(String(item.id));
    if (completion === undefined) return { id: item.id, extracted: null, correct: false, truth: item.answer, missing: true };
    const extracted = extractAnswer(completion, format);
    return { id: item.id, extracted, correct: answersEqual(extracted, item.answer), truth: item.answer, missing: false };
  });
  const correct = scored.filter((s) => s.correct).length;
  return {
    accuracy: scored.length === 0 ? 0 : correct / scored.length,
    correct,
    total: scored.length,
    missing: scored.filter((s) => s.missing).map((s) => s.id),
    items: scored,
  };
}

/** Reads predictions JSONL into completions keyed by String(id), checked against `known` ids. */
export function readPredictions(predictionsFile: string, known: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  const lineOf = new Map<string, number>();
  for (const rec of readJsonl(predictionsFile)) {
    const id = recordId(rec, predictionsFile);
    const key = String(id);
    const completion = rec.value['completion'];
    if (completion === undefined) throw new KvsieveError(`${predictionsFile}:${rec.line}: missing field "completion"`);
    if (typeof completion !== 'string') {
      throw new KvsieveError(`${predictionsFile}:${rec.line}: field "completion" must be a string, got ${JSON.stringify(completion)}`);
    }
    if (!known.has(key)) throw new KvsieveError(`${predictionsFile}:${rec.line}: id ${JSON.stringify(id)} is not in the dataset`);
    const first = lineOf.get(key);
    if (first !== undefined) {
      throw new KvsieveError(`${predictionsFile}:${rec.line}: second prediction for id ${JSON.stringify(id)} (first on line ${first})`);
    }
    lineOf.set(key, rec.line);
    out.set(key, completion);
  }
  return out;
}

/** Extracts and grades every prediction in `predictionsFile` against `datasetFile`. */
export function scorePredictions(datasetFile: string, format: AnswerFormat, predictionsFile: string): ScoreResult {
  const items = loadDataset(datasetFile, format);
  if (items.length === 0) throw new KvsieveError(`${datasetFile}: dataset has no items`);
  const completions = readPredictions(predictionsFile, new Set(items.map((i) => String(i.id))));
  return scoreCompletions(items, format, completions);
}
