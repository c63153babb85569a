/**
 * ada-kv: per layer, pool the scores of all KV heads and keep the global top H * (B - w) older tokens plus each
 * head's window, after first guaranteeing every head a floor of floor(alpha * (B - w)) of its own best tokens.
 * Heads end up with different lengths. Wraps any scored press (its scores, window and layer budget).
 *
 * Layer rule for "nothing evicted": when the heads together hold no more than H * B tokens (in particular when
 * every head holds n <= B) all are kept. When B <= w every head keeps its newest B.
 *
 * protectPrompt: each head's protected prompt slots P'_h = min(P_h, B - w - 1) leave the pooled competition
 * (kept, and counted in H * B); the floor is alpha * (B - w - P'_h) of the head's own best remaining tokens.
 */
import { KvsieveError } from '../core/errors.js';
import { definePress, isScored, layerBudget, windowOf } from './define.js';
import { kthLargest, keepAll, keepNewest, sv, topKAscending } from './keep-lists.js';
import { ws } from './numeric.js';
import { describeValue, option } from './options.js';
import { budgetWithPrompt, promptRule, promptShare } from './prompt.js';
import { promptSlots } from './sequence.js';
import type { LayerView, PressDefinition, PressOptions } from './types.js';

/**
 * Per-head keep lists (ascending) from per-head scores. scores[h][0..m_h) scores the m_h = n_h - min(w, n_h)
 * oldest slots of head h (higher = keep); the first prompt[h] slots of head h are kept outside the
 * competition (the protected prompt). Among the tokens competing globally, ties keep the earlier one in
 * head-major order (lower head, then lower index).
 */
export function adaKvKeep(scores: ArrayLike<number>[], ns: ArrayLike<number>, budget: number, window: number, alpha: number, prompt?: ArrayLike<number>): Int32Array[] {
  const H = ns.length;
  let total = 0;
  for (let h = 0; h < H; h++) total += ns[h]!;
  if (total <= H * budget) return Array.from({ length: H }, (_, h) => keepAll(ns[h]!));
  if (budget <= window) return Array.from({ length: H }, (_, h) => keepNewest(ns[h]!, budget));

  const ms: number[] = [];
  let T = H * budget;
  let sumM = 0;
  for (let h = 0; h < H; h++) {
    const wh = Math.min(window, ns[h]!);
    T -= wh;
    ms.push(ns[h]! - wh);
    sumM += ns[h]! - wh;
  }
  // chosen[off_h + j] = 1 when slot j of head h is kept.
  const chosen = new Uint8Array(sumM);
  const idx = ws.i32('ada.idx', Math.max(1, budget));
  let rest = T;
  let off = 0;
  for (let h = 0; h < H; h++) {
    const p = Math.min(prompt?.[h] ?? 0, ms[h]!);
    chosen.fill(1, off, off + p);
    rest -= p;
    const f = Math.min(Math.floor(alpha * (budget - window - p)), ms[h]! - p);
    if (f > 0) {
      const s = scores[h]!;
      topKAscending(ArrayBuffer.isView(s) ? (s as Float32Array).subarray(p) : Array.from(s).slice(p), ms[h]! - p, f, idx, 0);
      for (let t = 0; t < f; t++) chosen[off + p + idx[t]!] = 1;
      rest -= f;
    }
    off += ms[h]!;
  }
  if (rest > 0) {
    // Global top `rest` among the tokens not yet chosen.
    const cand = ws.f64('ada.cand', sumM);
    let c = 0;
    off = 0;
    for (let h = 0; h < H; h++) {
      const s = scores[h]!;
      for (let j = 0; j < ms[h]!; j++) if (!chosen[off + j]) cand[c++] = s[j]!;
      off += ms[h]!;
    }
    const t = kthLargest(cand, c, rest);
    let greater = 0;
    for (let i = 0; i < c; i++) if (sv(cand[i]!) > t) greater++;
    let ties = rest - greater;
    off = 0;
    for (let h = 0; h < H; h++) {
      const s = scores[h]!;
      for (let j = 0; j < ms[h]!; j++) {
        if (chosen[off + j]) continue;
        const v = sv(s[j]!);
        if (v > t || (v === t && ties-- > 0)) chosen[off + j] = 1;
      }
      off += ms[h]!;
    }
  }
  const out: Int32Array[] = [];
  off = 0;
  for (let h = 0; h < H; h++) {
    const m = ms[h]!;
    let k = 0;
    for (let j = 0; j < m; j++) k += chosen[off + j]!;
    const n = ns[h]!;
    const keep = new Int32Array(k + n - m);
    let p = 0;
    for (let j = 0; j < m; j++) if (chosen[off + j]) keep[p++] = j;
    for (let j = m; j < n; j++) keep[p++] = j;
    out.push(keep);
    off += m;
  }
  return out;
}

/** ada-kv over the inner press's scores for one layer (its layer budget and window), with the prompt rule. */
export function adaKvLayer(inner: PressDefinition, o: PressOptions & { readonly alpha: number }, view: LayerView): Int32Array[] {
  const rule = promptRule(o);
  const B = budgetWithPrompt(rule, layerBudget(inner, o, view.layer, view.numLayers), view.promptLength ?? 0);
  const w = windowOf(inner, o);
  const ns = view.heads.map((hv) => hv.n);
  const H = ns.length;
  const total = ns.reduce((a, b) => a + b, 0);
  if (total <= H * B || B <= w) return adaKvKeep([], ns, B, w, o.alpha);
  // The prompt's share per head; a head whose prompt skips the compression leaves the layer as it is.
  const shares = ns.map((_, h) => promptShare(rule, promptSlots(view, h), B, w));
  if (shares.some((s) => s.all)) return ns.map((n) => keepAll(n));
  const prompt = shares.map((s) => (s.all ? 0 : s.protect));
  const ms = ns.map((n) => n - Math.min(w, n));
  const buf = ws.f32('ada.scores', ms.reduce((a, b) => a + b, 0));
  const prepared = inner.prepare?.(o, view);
  const scores: Float32Array[] = [];
  let off = 0;
  for (let h = 0; h < H; h++) {
    const s = buf.subarray(off, off + ms[h]!);
    inner.score!(o, view, h, ms[h]!, s, prepared);
    scores.push(s);
    off += ms[h]!;
  }
  return adaKvKeep(scores, ns, B, w, o.alpha, prompt);
}

/** The scored press ada-kv wraps: a name in the press table (or a definition), resolved to its definition. */
const INNER = option.custom({
  name: 'inner',
  type: 'press',
  description: 'the scored press whose scores ada-kv pools over the heads (its options apply too)',
  defaultText: 'snapkv',
  range: 'a scored press (kvsieve presses)',
  required: true,
  defaultFor: () => 'snapkv' as unknown as PressDefinition,
  convert(press, v, ctx): PressDefinition {
    const table = ctx.presses ?? [];
    const def = typeof v === 'string' ? table.find((p) => p.name === v) : (v as PressDefinition | null);
    const scored = table.filter((p) => isScored(p)).map((p) => p.name);
    if (!def || typeof def !== 'object' || !isScored(def)) {
      throw new KvsieveError(`${press}: option "inner" must name a scored press (${scored.join(', ')}), got ${describeValue(typeof v === 'object' && v ? (v as { name?: unknown }).name : v)}`, {
        option: 'inner',
      });
    }
    return def;
  },
  fromFlag: (_press, raw) => raw,
});

const ALPHA = option.number({
  name: 'alpha',
  description: 'share of (budget - window) every head keeps of its own best tokens before the global pick',
  default: 0.2,
  min: 0,
  max: 1,
});

export const adaKv = definePress({
  name: 'ada-kv',
  summary: 'wraps a scored press: heads share the layer budget by pooled scores, each keeps a floor',
  options: [INNER, ALPHA],
  wraps: true,
  keep: (o, view) => adaKvLayer(o.inner, o, view),
});
