/** full: no eviction, the reference for every fidelity metric. */
import { definePress } from './define.js';
import { keepAll } from './keep-lists.js';

export const full = definePress({
  name: 'full',
  summary: 'no eviction; the reference for every fidelity metric',
  options: [],
  keep: (_o, view) => view.heads.map((head) => keepAll(head.n)),
});
