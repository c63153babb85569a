/** knorm: score = -||k_j||_2 (low-norm keys attract attention). Default window 0 (kvpress KnormPress). */
import { definePress } from './define.js';
import { BUDGET, window } from './options.js';

export const knorm = definePress({
  name: 'knorm',
  summary: 'keep the keys of lowest L2 norm',
  options: [BUDGET, window(0, 0, 0, 'newest tokens always kept')],
  score(_o, view, h, m, out) {
    const d = view.headDim;
    const K = view.heads[h]!.keys;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = j * d; t < (j + 1) * d; t++) s += K[t]! * K[t]!;
      out[j] = -Math.sqrt(s);
    }
  },
});
