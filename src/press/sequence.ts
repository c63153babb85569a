/**
 * The sequence fields of a layer view (docs/architecture.md, "Press"), read with their defaults: a view
 * built by hand (select) may leave them out.
 */
import type { LayerView } from './types.js';

/** The slots of KV head h that hold prompt tokens: the leading slots whose position is below P. */
export function promptSlots(view: LayerView, h: number): number {
  const P = view.promptLength ?? 0;
  const n = view.heads[h]!.n;
  const pos = view.positions?.[h];
  if (!pos) return Math.min(P, n);
  let k = 0;
  while (k < n && pos[k]! < P) k++;
  return k;
}

/** The compression's T in a view: `processed`, else the largest position held + 1 (n when positions are absent). */
export function processedOf(view: LayerView): number {
  if (view.processed !== undefined) return view.processed;
  let t = 0;
  view.heads.forEach((hv, h) => {
    const p = view.positions?.[h];
    t = Math.max(t, p && hv.n > 0 ? p[hv.n - 1]! + 1 : hv.n);
  });
  return t;
}
