/** The published Q-Filters file layout: `model.safetensors` holding `q_filters` [layers, kv_heads, head_dim]. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvsieveError } from '../core/errors.js';
import { openSafetensors, writeSafetensors } from './safetensors.js';

/** The model dimensions a filter file must match. */
export interface QFilterShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

/**
 * Writes filters in the published Q-Filters layout: `model.safetensors` holding `q_filters`
 * [layers, kv_heads, head_dim] (F32) and a small `config.json`.
 */
export function writeQFilters(dir: string, filters: Float32Array, c: QFilterShape): void {
  mkdirSync(dir, { recursive: true });
  const shape = [c.numLayers, c.numKvHeads, c.headDim];
  writeSafetensors(join(dir, 'model.safetensors'), [{ name: 'q_filters', dtype: 'F32', shape, data: filters }], { format: 'pt' });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ num_layers: c.numLayers, num_kv_heads: c.numKvHeads, kv_head_dim: c.headDim }, null, 2) + '\n',
  );
}

/** Reads filters in that layout (a directory or its safetensors file) and checks them against the model. */
export function readQFilters(path: string, c: QFilterShape): Float32Array {
  const file = existsSync(join(path, 'model.safetensors')) ? join(path, 'model.safetensors') : path;
  if (!existsSync(file)) throw new KvsieveError(`${path}: no Q-Filters file (expected model.safetensors with q_filters)`);
  const src = openSafetensors(file);
  try {
    if (!src.has('q_filters')) throw new KvsieveError(`${file}: no tensor "q_filters"`);
    const { shape } = src.info('q_filters');
    const want = [c.numLayers, c.numKvHeads, c.headDim];
    if (shape.length !== 3 || shape.some((v, i) => v !== want[i])) {
      throw new KvsieveError(
        `${file}: q_filters has shape [${shape.join(', ')}] but this model needs [layers ${want[0]}, kv_heads ${want[1]}, head_dim ${want[2]}]`,
      );
    }
    return src.readF32('q_filters');
  } finally {
    src.close();
  }
}

