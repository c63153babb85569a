/**
 * compressLayer: the engine-facing entry point. Per layer, per KV head, the ascending slot indices to keep.
 * Scores are computed only for heads that must evict; scratch memory is reused between calls.
 */
import { KvsieveError } from '../core/errors.js';
import { adaKvLayer } from './ada-kv.js';
import { fullKeep } from './full.js';
import { SCORERS } from './scorers.js';
import { keepTopPlusWindow, trivialKeep, ws } from './select-util.js';
import { streamingKeep } from './streaming-llm.js';
import type { LayerView, PressOptions, ScoredPressName } from './types.js';

function checkView(press: string, view: LayerView): void {
  const { numKvHeads: H, numQHeads, headDim: d } = view;
  const fail = (what: string) => new KvsieveError(`${press}: layer view: ${what}`);
  if (!(H >= 1) || view.heads.length !== H) throw fail(`heads holds ${view.heads.length} KV heads, numKvHeads is ${H}`);
  if (!(numQHeads >= H) || numQHeads % H !== 0) throw fail(`numQHeads ${numQHeads} is not a multiple of numKvHeads ${H}`);
  if (!(view.layer >= 0 && view.layer < view.numLayers)) throw fail(`layer ${view.layer} is outside 0..${view.numLayers - 1}`);
  for (let h = 0; h < H; h++) {
    const hv = view.heads[h]!;
    if (!(hv.n >= 0) || hv.keys.length < hv.n * d) throw fail(`KV head ${h} holds ${hv.keys.length} key entries, needs n * headDim = ${hv.n * d}`);
  }
  if (view.w > 0) {
    if (view.queries.length !== numQHeads) throw fail(`queries holds ${view.queries.length} query heads, numQHeads is ${numQHeads}`);
    for (const q of view.queries) if (q.length < view.w * d) throw fail(`a query head holds ${q.length} entries, needs w * headDim = ${view.w * d}`);
  }
}

/**
 * Per KV head, the ascending indices of the slots to keep. `options` must come from
 * `resolvePressOptions(press, ...)`. A head holding n <= budget keeps everything; when budget <= window a head
 * keeps its newest budget tokens; otherwise exactly budget (ada-kv: the layer shares H * budget).
 */
export function compressLayer(press: string, options: PressOptions, view: LayerView): Int32Array[] {
  if (!options || options.press !== press) {
    throw new KvsieveError(`${press}: options: not resolved for this press (call resolvePressOptions("${press}", ...))`);
  }
  checkView(press, view);
  if (press === 'full') return fullKeep(view);
  if (press === 'streaming-llm') return view.heads.map((hv) => streamingKeep(hv.n, options.budget, options.sinks));
  if (press === 'ada-kv') return adaKvLayer(SCORERS[options.inner!], options, view);

  const scorer = SCORERS[press as ScoredPressName];
  const B = scorer.budget(options, view);
  const w = scorer.window(options);
  const out: (Int32Array | null)[] = view.heads.map((hv) => trivialKeep(hv.n, B, w));
  if (out.every((k) => k !== null)) return out as Int32Array[];
  const prepared = scorer.prepare?.(options, view);
  for (let h = 0; h < out.length; h++) {
    if (out[h]) continue;
    const n = view.heads[h]!.n;
    const scores = ws.f32('compress.scores', n - w);
    scorer.score(options, view, h, n - w, scores, prepared);
    out[h] = keepTopPlusWindow(scores, n, B, w);
  }
  return out as Int32Array[];
}
