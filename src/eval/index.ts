/**
 * The package's `kvsieve/eval` entry: grading, datasets, the evaluation runners and reports. It needs
 * the optional packages the root entry leaves out (@cortex-js/compute-engine for grading; vega,
 * vega-lite and @resvg/resvg-js for reports): npm install them beside kvsieve.
 */
export { ANSWER_FORMATS, answersEqual, extractAnswer, parseAnswerFormat, type AnswerFormat } from './answer.js';
export { buildMathPrompt, loadDataset, parseDataset, type EvalItem } from './datasets.js';
export { runFidelity, summariseFidelity, type FidelityOptions, type FidelitySummary } from './fidelity.js';
export { modelCompleter, runMath, summariseMath, type Completer, type Completion, type MathEvalOptions } from './math.js';
export { DEFAULT_NEEDLE, runNeedle, type NeedleOptions, type NeedleSettings } from './needle.js';
export { runThroughput, type ThroughputOptions } from './throughput.js';
export { scoreCompletions, scorePredictions, type ScoreResult, type ScoredItem } from './score.js';
export { readResults, ResultsFile, type EvalRecord, type FidelityRecord, type MathRecord, type NeedleRecord, type ThroughputRecord } from './records.js';
export { loadResults, writeReport, type ReportOptions, type ReportResult } from './report.js';
