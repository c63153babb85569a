// A tiny random checkpoint in Hugging Face's layout, tensor by tensor: the tests' MoE and GPT-OSS models.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { rng } from '../helpers.js';

/**
 * Float32 tensors of uniform values (mean, std) drawn from `seed` in the order they are added;
 * `write` puts them with `config` as config.json and model.safetensors into `dir`.
 */
export function randomCheckpoint(seed: number) {
  const r = rng(seed);
  const tensors: { name: string; shape: number[]; dtype: 'F32'; data: Float32Array }[] = [];
  return {
    add(name: string, shape: number[], std: number, mean = 0): void {
      const n = shape.reduce((a, b) => a * b, 1);
      tensors.push({ name, shape, dtype: 'F32', data: Float32Array.from({ length: n }, () => mean + (2 * r() - 1) * std * Math.sqrt(3)) });
    },
    write(dir: string, config: object): string {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
      writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
      return dir;
    },
  };
}
