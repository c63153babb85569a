/**
 * The KV trace file: what a generation's KV cache held at every decode step, as JSON lines. Written by
 * `kvsieve generate --trace FILE` and by the demo page, read by the demo page's KV inspector.
 *
 *   {"kind":"kvsieve-trace","version":1,"model":...,"press":...,"budget":...,"layers":L,"kvHeads":H,...}
 *   {"kind":"step","step":1,"token":...,"processed":...,"positions":[[[0,1,...],...],...],"kvBytes":...,...}
 *   ...
 *   {"kind":"result","text":...,"generatedIds":[...],"stopReason":...,"peakKvBytes":...,"compressions":...}
 */
import { KvsieveError } from '../core/errors.js';
import type { GenerationResult } from '../generate/batcher.js';
import type { KvTraceEvent } from '../generate/sequence.js';
import type { GenerateOptions, Model } from './model.js';

export const TRACE_VERSION = 1;

export interface TraceHeader {
  kind: 'kvsieve-trace';
  version: number;
  model: string;
  /** The press's name ('full' for none) and its settings as given. */
  press: string;
  compression: Record<string, unknown> | null;
  layers: number;
  kvHeads: number;
  headDim: number;
  kvDtype: string;
  promptIds: number[];
  prompt: string | null;
}

export interface TraceStep extends KvTraceEvent {
  kind: 'step';
}

export interface TraceResult {
  kind: 'result';
  text: string;
  generatedIds: number[];
  stopReason: string;
  peakKvBytes: number;
  compressions: number;
}

export interface Trace {
  header: TraceHeader;
  steps: TraceStep[];
  result: TraceResult | null;
}

/** The header line of a trace of `model.generate(prompt, options)`. */
export function traceHeader(model: Model, prompt: string | null, options: GenerateOptions): TraceHeader {
  const c = model.config;
  const { press, ...settings } = options.compression ?? { press: 'full' };
  return {
    kind: 'kvsieve-trace',
    version: TRACE_VERSION,
    model: model.info().path,
    press: typeof press === 'string' ? press : press.name,
    compression: options.compression ? JSON.parse(JSON.stringify(settings)) : null,
    layers: c.numLayers,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    kvDtype: options.kvDtype ?? 'f32',
    promptIds: model.encodePrompt(prompt, options),
    prompt,
  };
}

/** The result line of a trace from a generation's result. */
export function traceResult(r: GenerationResult): TraceResult {
  return { kind: 'result', text: r.text, generatedIds: r.generatedIds, stopReason: r.stopReason, peakKvBytes: r.peakKvBytes, compressions: r.compressions };
}

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x));
}

/**
 * Reads a trace file's text; a bad line is a one-line KvsieveError naming `name`, the line and the
 * field. A trace cut short (no result line, a generation still running) is read up to its last step.
 */
export function parseTrace(text: string, name = 'trace'): Trace {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) throw new KvsieveError(`${name}: empty (not a kvsieve trace)`);
  const parse = (line: string, n: number): Record<string, unknown> => {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new KvsieveError(`${name}: line ${n}: not JSON`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new KvsieveError(`${name}: line ${n}: not a JSON object`);
    return v as Record<string, unknown>;
  };
  const h = parse(lines[0]!, 1);
  if (h['kind'] !== 'kvsieve-trace') throw new KvsieveError(`${name}: line 1: "kind" must be "kvsieve-trace" (not a kvsieve trace)`);
  if (h['version'] !== TRACE_VERSION) throw new KvsieveError(`${name}: line 1: "version" ${JSON.stringify(h['version'])} is not ${TRACE_VERSION}`);
  for (const k of ['layers', 'kvHeads']) {
    if (!(Number.isInteger(h[k]) && (h[k] as number) > 0)) throw new KvsieveError(`${name}: line 1: "${k}" must be a whole number > 0`);
  }
  const header = h as unknown as TraceHeader;
  const steps: TraceStep[] = [];
  let result: TraceResult | null = null;
  for (let i = 1; i < lines.length; i++) {
    const o = parse(lines[i]!, i + 1);
    if (o['kind'] === 'result') {
      result = o as unknown as TraceResult;
      continue;
    }
    if (o['kind'] !== 'step') throw new KvsieveError(`${name}: line ${i + 1}: "kind" must be "step" or "result"`);
    const p = o['positions'];
    if (!Array.isArray(p) || p.length !== header.layers || !p.every((l) => Array.isArray(l) && l.length === header.kvHeads && l.every(isIntArray))) {
      throw new KvsieveError(`${name}: line ${i + 1}: "positions" must be ${header.layers} layers of ${header.kvHeads} lists of positions`);
    }
    for (const k of ['step', 'processed', 'kvBytes', 'fullKvBytes']) {
      if (!(typeof o[k] === 'number' && (o[k] as number) >= 0)) throw new KvsieveError(`${name}: line ${i + 1}: "${k}" must be a number >= 0`);
    }
    steps.push(o as unknown as TraceStep);
  }
  return { header, steps, result };
}
