/** full: no eviction, the reference for every fidelity metric. */
import { keepAll } from './select-util.js';
import type { LayerView } from './types.js';

export function fullKeep(view: LayerView): Int32Array[] {
  return view.heads.map((head) => keepAll(head.n));
}
