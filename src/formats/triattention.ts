/**
 * TriAttention's calibrated query statistics: per (layer l, query head a) and frequency band f (the
 * rotate-half pairing: band f is dims f and f + headDim / 2), the complex mean of the pre-RoPE query
 * (re, im) and its mean magnitude.
 *
 * kvsieve's layout: one safetensors file with three F32 tensors [layers, query heads, headDim / 2]
 * (`q_mean_re`, `q_mean_im`, `q_abs_mean`) and metadata (format "kvsieve-triattention", pairing "half",
 * head_dim, model, source, tokens). The published files (torch.save of {metadata: {sampled_heads,
 * head_dim, rope_style, ...}, stats: {"layer05_head17": {q_mean_real, q_mean_imag, q_abs_mean}}}) are
 * read directly, and `kvsieve calibrate triattention --from FILE.pt --out FILE.safetensors` converts one.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { KvsieveError } from '../core/errors.js';
import { openSafetensors, writeSafetensors } from './safetensors.js';
import { readTorchFile, TorchTensor } from './torch-pickle.js';

export interface TriAttentionStats {
  numLayers: number;
  numQHeads: number;
  /** Frequency bands: headDim / 2. */
  bands: number;
  /** [layers * query heads * bands], layer-major: (l * numQHeads + a) * bands + f. */
  qMeanRe: Float32Array;
  qMeanIm: Float32Array;
  qAbsMean: Float32Array;
}

/** What a statistics file must match: the model's layers, head dim and query heads, those given. */
export interface TriAttentionShape {
  numLayers?: number;
  headDim?: number;
  numQHeads?: number;
}

/** Descriptive metadata stored with kvsieve's layout. */
export interface TriAttentionMeta {
  model?: string;
  source?: string;
  tokens?: number;
}

const TENSORS = ['q_mean_re', 'q_mean_im', 'q_abs_mean'] as const;

export function writeTriAttentionStats(file: string, s: TriAttentionStats, meta: TriAttentionMeta = {}): void {
  const shape = [s.numLayers, s.numQHeads, s.bands];
  writeSafetensors(
    file,
    [
      { name: 'q_mean_re', dtype: 'F32', shape, data: s.qMeanRe },
      { name: 'q_mean_im', dtype: 'F32', shape, data: s.qMeanIm },
      { name: 'q_abs_mean', dtype: 'F32', shape, data: s.qAbsMean },
    ],
    {
      format: 'kvsieve-triattention',
      pairing: 'half',
      head_dim: String(2 * s.bands),
      ...(meta.model !== undefined ? { model: meta.model } : {}),
      ...(meta.source !== undefined ? { source: meta.source } : {}),
      ...(meta.tokens !== undefined ? { tokens: String(meta.tokens) } : {}),
    },
  );
}

/** The `__metadata__` strings of a safetensors file (the file is validated by openSafetensors first). */
function safetensorsMetadata(file: string): Record<string, string> {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    readSync(fd, header, 0, header.length, 8);
    const m = (JSON.parse(header.toString('utf8')) as Record<string, unknown>)['__metadata__'];
    return m && typeof m === 'object' ? (m as Record<string, string>) : {};
  } finally {
    closeSync(fd);
  }
}

function checkShape(file: string, L: number, Hq: number, F: number, want: TriAttentionShape): void {
  const bad = (what: string) => new KvsieveError(`${file}: TriAttention statistics ${what}`);
  if (want.numLayers !== undefined && L !== want.numLayers) throw bad(`cover ${L} layers, the model has ${want.numLayers}`);
  if (want.headDim !== undefined && 2 * F !== want.headDim) throw bad(`are for head_dim ${2 * F}, the model's is ${want.headDim}`);
  if (want.numQHeads !== undefined && Hq !== want.numQHeads) throw bad(`cover ${Hq} query heads per layer, the model has ${want.numQHeads}`);
}

function readSafetensorsStats(file: string, want: TriAttentionShape): TriAttentionStats {
  const src = openSafetensors(file);
  try {
    for (const t of TENSORS) if (!src.has(t)) throw new KvsieveError(`${file}: no tensor "${t}" (expected kvsieve's TriAttention layout: q_mean_re, q_mean_im, q_abs_mean)`);
    const shape = src.info('q_mean_re').shape;
    for (const t of TENSORS) {
      const s = src.info(t).shape;
      if (s.length !== 3 || s.some((v, i) => v !== shape[i])) throw new KvsieveError(`${file}: ${t} has shape [${s.join(', ')}], q_mean_re [${shape.join(', ')}]: each must be [layers, query heads, headDim / 2]`);
    }
    const [L, Hq, F] = shape as [number, number, number];
    const pairing = safetensorsMetadata(file)['pairing'];
    if (pairing !== undefined && pairing !== 'half') throw new KvsieveError(`${file}: statistics in "${pairing}" pairing; kvsieve reads the rotate-half ("half") pairing`);
    checkShape(file, L, Hq, F, want);
    return { numLayers: L, numQHeads: Hq, bands: F, qMeanRe: src.readF32('q_mean_re'), qMeanIm: src.readF32('q_mean_im'), qAbsMean: src.readF32('q_abs_mean') };
  } finally {
    src.close();
  }
}

/**
 * A published statistics file (torch.save). Rows are keyed by (layer, head) from the stats dict,
 * never by the order of `sampled_heads`; every head of the model must be there (the official code
 * would fall back for missing layers; kvsieve refuses a partial file).
 */
export function readPublishedStats(file: string, want: TriAttentionShape): TriAttentionStats {
  const payload = readTorchFile(file);
  const bad = (what: string) => new KvsieveError(`${file}: not a TriAttention statistics file (${what})`);
  if (!(payload instanceof Map)) throw bad('the payload is not a dict');
  const meta = payload.get('metadata');
  const stats = payload.get('stats');
  if (!(meta instanceof Map) || !(stats instanceof Map)) throw bad('no metadata and stats dicts');
  const style = meta.get('rope_style');
  if (style !== undefined && style !== 'half') throw new KvsieveError(`${file}: statistics in "${String(style)}" RoPE pairing; kvsieve reads "half"`);
  const sampled = meta.get('sampled_heads');
  if (!Array.isArray(sampled) || sampled.some((x) => !Array.isArray(x) || x.length !== 2 || !x.every((v) => Number.isInteger(v) && v >= 0))) {
    throw bad('metadata.sampled_heads is not a list of [layer, head] pairs');
  }
  const heads = sampled as [number, number][];
  const L = Math.max(...heads.map((x) => x[0])) + 1;
  const Hq = Math.max(...heads.map((x) => x[1])) + 1;
  const headDim = meta.get('head_dim');
  let F = typeof headDim === 'number' && Number.isInteger(headDim / 2) ? headDim / 2 : NaN;
  const present = new Set(heads.map(([l, a]) => l * Hq + a));
  if (present.size !== L * Hq) throw new KvsieveError(`${file}: sampled_heads lists ${present.size} of ${L} x ${Hq} heads; kvsieve needs every (layer, head)`);
  const out = { qMeanRe: [] as Float32Array[], qMeanIm: [] as Float32Array[], qAbsMean: [] as Float32Array[] };
  for (let l = 0; l < L; l++) {
    for (let a = 0; a < Hq; a++) {
      const key = `layer${String(l).padStart(2, '0')}_head${String(a).padStart(2, '0')}`;
      const entry = stats.get(key);
      if (!(entry instanceof Map)) throw new KvsieveError(`${file}: sampled head ${key} has no stats entry`);
      for (const [from, to] of [['q_mean_real', 'qMeanRe'], ['q_mean_imag', 'qMeanIm'], ['q_abs_mean', 'qAbsMean']] as const) {
        const t = entry.get(from);
        if (!(t instanceof TorchTensor) || t.shape.length !== 1) throw new KvsieveError(`${file}: ${key}.${from} is not a 1-D tensor`);
        if (Number.isNaN(F)) F = t.shape[0]!;
        if (t.shape[0] !== F) throw new KvsieveError(`${file}: ${key}.${from} holds ${t.shape[0]} bands, head_dim / 2 is ${F}`);
        out[to].push(t.data);
      }
    }
  }
  checkShape(file, L, Hq, F, want);
  const cat = (parts: Float32Array[]) => {
    const r = new Float32Array(parts.length * F);
    parts.forEach((p, i) => r.set(p, i * F));
    return r;
  };
  return { numLayers: L, numQHeads: Hq, bands: F, qMeanRe: cat(out.qMeanRe), qMeanIm: cat(out.qMeanIm), qAbsMean: cat(out.qAbsMean) };
}

/** Statistics from either layout (a torch.save zip is recognised by its bytes), checked against the model. */
export function readTriAttentionStats(file: string, want: TriAttentionShape): TriAttentionStats {
  let magic = Buffer.alloc(0);
  try {
    const fd = openSync(file, 'r');
    try {
      magic = Buffer.alloc(4);
      readSync(fd, magic, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw new KvsieveError(`${file}: cannot read TriAttention statistics (${(e as Error).message})`);
  }
  return magic.readUInt32LE(0) === 0x04034b50 ? readPublishedStats(file, want) : readSafetensorsStats(file, want);
}
