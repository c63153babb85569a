/**
 * triattention (docs/methods.md Part 2): query-free, attention-free scores from calibrated query
 * statistics. Per (layer l, query head a) and frequency band f (rotate-half pairing: band f is dims f
 * and f + F, F = headDim / 2), the calibration stores the complex mean qbar_f = x + iy of the pre-RoPE
 * query and its mean magnitude m_f. A cached key k~_f = a + ib (after RoPE, as stored) scores
 *
 *   r[j] = sum_f Re(qbar_f conj(k~_f) c_f) + (m_f - |qbar_f|) |k~_f|,   c_f = mean over o of e^{i (T + o) w_f}
 *
 * with o = 1, 2, 4, ..., offsetMax (17 offsets) and T the tokens processed: the mean query's RoPE logit
 * against key j at future positions T + o, plus a norm term; the same as inverting RoPE at the key's
 * position and scoring the pre-RoPE key (the official route), since conj(k_pre) = conj(k~) e^{i p w}.
 * Rows are z-scored over the decode slots (the prompt is not scored), max-pooled over the GQA group,
 * and (default, per-kv-head) averaged over the layers: one keep list per KV head for every layer.
 * The prompt is kept and counted in the budget (protectPrompt on; a prompt of budget tokens or more
 * keeps its first budget - window tokens, as the official code does: promptOverflow truncate).
 */
import { KvsieveError } from '../core/errors.js';
import { readTriAttentionStats, type TriAttentionStats } from '../formats/triattention.js';
import { definePress } from './define.js';
import { ws } from './numeric.js';
import { BUDGET, describeValue, option, window } from './options.js';
import { promptOverflow, protectPrompt } from './prompt.js';
import { processedOf, promptSlots } from './sequence.js';
import type { LayerView, ResolveContext } from './types.js';

export type { TriAttentionStats } from '../formats/triattention.js';

/** The offsets 1, 2, 4, ... up to `max`: the future distances the score averages over. */
export function geometricOffsets(max: number): number[] {
  const out: number[] = [];
  for (let o = 1; o <= max; o *= 2) out.push(o);
  return out;
}

/** A stats tensor [L][Hq][F] given nested or flat, as a Float32Array of L * Hq * F. */
function statsTensor(press: string, name: string, v: unknown, L: number, Hq: number, F: number): Float32Array {
  const size = L * Hq * F;
  const fail = (what: string) => new KvsieveError(`${press}: option "stats": ${name} ${what}`, { option: 'stats' });
  let out: Float32Array;
  if (v instanceof Float32Array) {
    if (v.length !== size) throw fail(`must hold [layers ${L}][query heads ${Hq}][bands ${F}] = ${size} values, got ${v.length}`);
    out = v;
  } else {
    if (!Array.isArray(v) || v.length !== L) throw fail(`must be [layers ${L}][query heads ${Hq}][bands ${F}], got ${describeValue(v)}`);
    out = new Float32Array(size);
    let p = 0;
    for (const layer of v as unknown[]) {
      if (!Array.isArray(layer) || layer.length !== Hq) throw fail(`must hold ${Hq} query heads per layer`);
      for (const head of layer as unknown[]) {
        if (!Array.isArray(head) || head.length !== F) throw fail(`must hold ${F} bands per query head`);
        for (const x of head as unknown[]) out[p++] = typeof x === 'number' ? x : NaN;
      }
    }
  }
  for (const x of out) if (!Number.isFinite(x)) throw fail('holds a non-finite value');
  return out;
}

/** The statistics option: checked against the model (layers, bands, query heads a multiple of the KV heads). */
function convertStats(press: string, v: unknown, ctx: ResolveContext): TriAttentionStats {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new KvsieveError(`${press}: option "stats" must be { qMeanRe, qMeanIm, qAbsMean } [layers][query heads][headDim / 2], got ${describeValue(v)}`, {
      option: 'stats',
    });
  }
  const s = v as Partial<TriAttentionStats>;
  const L = ctx.numLayers;
  const F = ctx.headDim / 2;
  const flat = s.qMeanRe instanceof Float32Array ? s.qMeanRe.length : null;
  const Hq = ctx.numQHeads ?? s.numQHeads ?? (flat !== null ? flat / (L * F) : Array.isArray(s.qMeanRe) ? ((s.qMeanRe[0] as unknown[] | undefined)?.length ?? 0) : 0);
  if (!(Number.isInteger(Hq) && Hq >= ctx.numKvHeads && Hq % ctx.numKvHeads === 0)) {
    throw new KvsieveError(`${press}: option "stats" holds ${Hq} query heads per layer, not a multiple of the model's ${ctx.numKvHeads} KV heads`, { option: 'stats' });
  }
  if (s.numQHeads !== undefined && s.numQHeads !== Hq) {
    throw new KvsieveError(`${press}: option "stats" is for ${s.numQHeads} query heads, the model has ${Hq}`, { option: 'stats' });
  }
  const out: TriAttentionStats = {
    numLayers: L,
    numQHeads: Hq,
    bands: F,
    qMeanRe: statsTensor(press, 'qMeanRe', s.qMeanRe, L, Hq, F),
    qMeanIm: statsTensor(press, 'qMeanIm', s.qMeanIm, L, Hq, F),
    qAbsMean: statsTensor(press, 'qAbsMean', s.qAbsMean, L, Hq, F),
  };
  for (const x of out.qAbsMean) if (x < 0) throw new KvsieveError(`${press}: option "stats": qAbsMean holds a negative magnitude`, { option: 'stats' });
  return out;
}

const STATS = option.custom({
  name: 'stats',
  type: 'tensor',
  flag: 'triattention-stats',
  description:
    'calibrated query statistics { qMeanRe, qMeanIm, qAbsMean } [layers][query heads][headDim/2]: on the CLI a file from kvsieve calibrate triattention, or a published .pt',
  defaultText: 'none (required)',
  range: 'finite values, shape of the model',
  required: true,
  convert: convertStats,
  fromFlag: (_press, raw, ctx) => readTriAttentionStats(raw, ctx),
});

const SELECTION = option.choice({
  name: 'selection',
  description: 'per-kv-head: one list per KV head for all layers (mean over layers of the group max); per-layer: each (layer, KV head); union: one list for all',
  choices: ['per-kv-head', 'per-layer', 'union'],
  default: 'per-kv-head',
});

const GROUP_AGG = option.choice({
  name: 'groupAgg',
  description: "GQA: the max (official) or the mean of the group's query heads' z-scores",
  choices: ['max', 'mean'],
  default: 'max',
});

const OFFSET_MAX = option.integer({ name: 'offsetMax', description: 'the largest future offset (offsets 1, 2, 4, ... up to it)', default: 65536, min: 1 });

const OFFSET_AGG = option.choice({ name: 'offsetAgg', description: 'the score over the offsets: their mean or their max', choices: ['mean', 'max'], default: 'mean' });

const NORMALIZE = option.boolean({ name: 'normalize', description: 'z-score each query head\'s row before the GQA and layer aggregation', default: true });

const NORM_STATS = option.choice({
  name: 'normStats',
  description: 'the z-score\'s mean and sigma: over the scored decode slots, population sigma (official); over all n slots, unbiased sigma (vLLM)',
  choices: ['decode-population', 'all-unbiased'],
  default: 'decode-population',
});

const DISABLE_TRIG = option.boolean({ name: 'disableTrig', description: 'ablation: the norm term only', default: false });
const DISABLE_MLR = option.boolean({ name: 'disableMlr', description: 'ablation: norm term m_f |k_f| instead of (m_f - |qbar_f|) |k_f|', default: false });

/** What a compression shares over a layer's heads: the offset phases of every band. */
interface Prepared {
  /** mean: c_f = C + iS (one row); max: one row per offset. */
  cos: Float64Array[];
  sin: Float64Array[];
}

function prepare(o: { offsetMax: number; offsetAgg: 'mean' | 'max' }, view: LayerView): Prepared {
  const F = view.headDim / 2;
  const inv = view.ropeInvFreq;
  if (!inv) throw new KvsieveError('triattention: the layer view has no ropeInvFreq (select(): give view.ropeInvFreq or view.ropeTheta)');
  if (inv.length !== F) throw new KvsieveError(`triattention: ropeInvFreq holds ${inv.length} bands, headDim / 2 is ${F}`);
  const T = processedOf(view);
  const offsets = geometricOffsets(o.offsetMax);
  const row = (fill: (f: number, w: number) => [number, number]) => {
    const c = new Float64Array(F);
    const s = new Float64Array(F);
    for (let f = 0; f < F; f++) [c[f], s[f]] = fill(f, inv[f]!);
    return [c, s] as const;
  };
  if (o.offsetAgg === 'max') {
    const rows = offsets.map((off) => row((_f, w) => [Math.cos((T + off) * w), Math.sin((T + off) * w)]));
    return { cos: rows.map((r) => r[0]), sin: rows.map((r) => r[1]) };
  }
  // Folding the offsets into one complex factor per band is exact for the mean (float64: the phase
  // reaches ~1e5 rad in the fastest band, where float32 would resolve only ~0.008 rad).
  const [c, s] = row((_f, w) => {
    let C = 0;
    let S = 0;
    for (const off of offsets) (C += Math.cos((T + off) * w)), (S += Math.sin((T + off) * w));
    return [C / offsets.length, S / offsets.length];
  });
  return { cos: [c], sin: [s] };
}

export const triattention = definePress({
  name: 'triattention',
  summary: 'RoPE logits of calibrated mean queries at future positions, z-scored, shared by the layers (no attention)',
  options: [
    BUDGET,
    window(0, 0, 0, 'newest tokens always kept (0: official; the vLLM plugin keeps 128)'),
    STATS,
    SELECTION,
    GROUP_AGG,
    OFFSET_MAX,
    OFFSET_AGG,
    NORMALIZE,
    NORM_STATS,
    DISABLE_TRIG,
    DISABLE_MLR,
    protectPrompt(true),
    promptOverflow('truncate'),
  ],
  across: (o) => (o.selection === 'per-kv-head' ? { layers: 'mean', heads: 'each' } : o.selection === 'union' ? { layers: 'max', heads: 'max' } : null),
  check(o, ctx) {
    if (ctx.numQHeads !== undefined && o.stats.numQHeads !== ctx.numQHeads) {
      throw new KvsieveError(`${o.press}: option "stats" holds ${o.stats.numQHeads} query heads per layer, the model has ${ctx.numQHeads}`, { option: 'stats' });
    }
  },
  prepare: (o, view) => prepare(o, view),
  score(o, view, h, m, out, prepared) {
    const { headDim: d, numQHeads: Q, numKvHeads: H, layer } = view;
    const F = d / 2;
    const st = o.stats;
    if (st.numLayers !== view.numLayers || st.numQHeads !== Q || st.bands !== F) {
      throw new KvsieveError(
        `triattention: stats are for ${st.numLayers} layers x ${st.numQHeads} query heads x ${st.bands} bands, the view has ${view.numLayers} x ${Q} x ${F}`,
        { option: 'stats' },
      );
    }
    const ph = prepared as Prepared;
    const n = view.heads[h]!.n;
    const K = view.heads[h]!.keys;
    const G = Q / H;
    // Slots scored: the decode slots [first, m) (the prompt is kept, never scored) or, for the vLLM
    // statistics, every slot, the window's too.
    const first = o.protectPrompt ? Math.min(promptSlots(view, h), m) : 0;
    const all = o.normalize && o.normStats === 'all-unbiased';
    const lo = all ? 0 : first;
    const hi = all ? n : m;
    const count = hi - lo;
    const rows = ws.f64('tri.rows', G * Math.max(1, count));
    // Per query head of the group: x, y (the mean query) and e (the norm term's weight) per band.
    const coef = ws.f64('tri.coef', 3 * G * F);
    for (let g = 0; g < G; g++) {
      const base = (layer * Q + h * G + g) * F;
      for (let f = 0; f < F; f++) {
        const x = st.qMeanRe[base + f]!;
        const y = st.qMeanIm[base + f]!;
        const mag = Math.hypot(x, y);
        coef[(3 * g) * F + f] = o.disableTrig ? 0 : x;
        coef[(3 * g + 1) * F + f] = o.disableTrig ? 0 : y;
        coef[(3 * g + 2) * F + f] = o.disableMlr ? st.qAbsMean[base + f]! : st.qAbsMean[base + f]! - mag;
      }
    }
    const P = ph.cos.length;
    const alpha = ws.f64('tri.alpha', P * F);
    const beta = ws.f64('tri.beta', P * F);
    const kmag = ws.f64('tri.kmag', F);
    for (let j = lo; j < hi; j++) {
      const o0 = j * d;
      for (let f = 0; f < F; f++) {
        const a = K[o0 + f]!;
        const b = K[o0 + f + F]!;
        kmag[f] = Math.sqrt(a * a + b * b);
        // Re((x + iy)(a - ib)(C + iS)) = x (aC + bS) + y (bC - aS).
        for (let p = 0; p < P; p++) {
          const C = ph.cos[p]![f]!;
          const S = ph.sin[p]![f]!;
          alpha[p * F + f] = a * C + b * S;
          beta[p * F + f] = b * C - a * S;
        }
      }
      for (let g = 0; g < G; g++) {
        const cx = 3 * g * F;
        let norm = 0;
        for (let f = 0; f < F; f++) norm += coef[cx + 2 * F + f]! * kmag[f]!;
        let trig = -Infinity;
        for (let p = 0; p < P; p++) {
          let t = 0;
          for (let f = 0; f < F; f++) t += coef[cx + f]! * alpha[p * F + f]! + coef[cx + F + f]! * beta[p * F + f]!;
          if (t > trig) trig = t;
        }
        rows[g * count + (j - lo)] = trig + norm;
      }
    }
    if (o.normalize) {
      for (let g = 0; g < G; g++) {
        const r = rows.subarray(g * count, (g + 1) * count);
        let mean = 0;
        for (let i = 0; i < count; i++) mean += r[i]!;
        mean /= Math.max(1, count);
        let ss = 0;
        for (let i = 0; i < count; i++) ss += (r[i]! - mean) ** 2;
        let sigma: number;
        if (all) {
          sigma = count > 1 ? Math.sqrt(ss / (count - 1)) : 0;
          if (!(sigma >= 1e-8)) sigma = 1;
        } else sigma = Math.max(Math.sqrt(ss / Math.max(1, count)), 1e-6);
        for (let i = 0; i < count; i++) r[i] = (r[i]! - mean) / sigma;
      }
    }
    for (let j = 0; j < m; j++) {
      if (j < first) {
        out[j] = -Infinity; // a prompt slot the rule does not protect (clamp) loses to every decode slot
        continue;
      }
      let v = o.groupAgg === 'max' ? -Infinity : 0;
      for (let g = 0; g < G; g++) {
        const z = rows[g * count + (j - lo)]!;
        v = o.groupAgg === 'max' ? Math.max(v, z) : v + z / G;
      }
      out[j] = v;
    }
  },
});
