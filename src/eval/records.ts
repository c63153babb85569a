import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KvsieveError } from '../core/errors.js';

/**
 * Evaluation results: one JSON object per line (JSONL), appended as each item finishes, so an
 * interrupted run loses nothing and a rerun skips the items already recorded (matched by `key`).
 *
 * Every record has `kind`, `key` (unique within a results file), `model`, `press`, `budget`
 * (null for the full cache) and `time` (ISO date); the rest depends on the kind.
 */
interface Base {
  key: string;
  model: string;
  press: string;
  budget: number | null;
  time: string;
}

/** One prompt of `eval fidelity`: a compressed run against the full-cache run of the same prompt. */
export interface FidelityRecord extends Base {
  kind: 'fidelity';
  prompt: number;
  generated: number;
  /** Tokens generated before the first difference from the full-cache run (all of them when none). */
  firstDivergence: number;
  /** Fraction of positions whose greedy token equals the full-cache one. */
  identical: number;
  /** KL(full || compressed) of the next-token distribution, teacher-forced on the full continuation. */
  meanKl: number;
  maxKl: number;
  /** Perplexity of the full-cache continuation under the compressed cache. */
  perplexity: number;
  peakKvBytes: number;
  /** [generated tokens, live KV bytes] samples along the run (for the memory chart). */
  kvTrace: [number, number][];
  compressionSeconds: number;
  decodeSeconds: number;
}

/** One sample of one problem of `eval math`. */
export interface MathRecord extends Base {
  kind: 'math';
  dataset: string;
  format: string;
  id: string | number;
  sample: number;
  extracted: string | null;
  truth: string;
  correct: boolean;
  outputTokens: number;
  stopReason: string;
  peakKvBytes: number;
}

/** One cell of `eval needle`. */
export interface NeedleRecord extends Base {
  kind: 'needle';
  /** Prompt length in tokens. */
  length: number;
  /** Depth of the needle in the haystack, 0 (start) to 1 (end). */
  depth: number;
  expected: string;
  answer: string;
  correct: boolean;
}

/** One configuration of `bench throughput`. */
export interface ThroughputRecord extends Base {
  kind: 'throughput';
  genLen: number;
  kvMemoryBytes: number;
  /** Requests submitted at once. */
  requests: number;
  /** The most sequences that ran together. */
  batch: number;
  preemptions: number;
  tokensPerSecond: number;
  seconds: number;
  peakKvBytes: number;
  peakRssBytes: number;
}

export type EvalRecord = FidelityRecord | MathRecord | NeedleRecord | ThroughputRecord;

/** Reads a results file (missing: empty). Malformed lines are errors naming the file and line. */
export function readResults(file: string): EvalRecord[] {
  if (!existsSync(file)) return [];
  const out: EvalRecord[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch (e) {
        throw new KvsieveError(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
      }
      const r = v as Partial<EvalRecord>;
      if (typeof v !== 'object' || v === null || typeof r.kind !== 'string' || typeof r.key !== 'string') {
        throw new KvsieveError(`${file}:${i + 1}: not a results record (needs "kind" and "key")`);
      }
      out.push(r as EvalRecord);
    });
  return out;
}

/** Appends records to a results file, one line each, and remembers which keys are done. */
export class ResultsFile {
  private readonly done: Set<string>;

  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.done = new Set(readResults(file).map((r) => r.key));
  }

  has(key: string): boolean {
    return this.done.has(key);
  }

  get size(): number {
    return this.done.size;
  }

  append(record: EvalRecord): void {
    appendFileSync(this.file, JSON.stringify(record) + '\n');
    this.done.add(record.key);
  }
}
