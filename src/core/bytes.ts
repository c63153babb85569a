/** Memory sizes as people write them. */

/**
 * Bytes a memory size means: a number of bytes ("1e9", "65536"), or a number with a unit: KiB, MiB,
 * GiB, TiB and the bare K, M, G, T are powers of 1024; KB, MB, GB, TB powers of 1000.
 */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(text);
  if (!m) return null;
  const unit = m[2]!.toLowerCase();
  const suffix = m[3]!.toLowerCase();
  const binary = suffix !== 'b';
  const power = ['', 'k', 'm', 'g', 't'].indexOf(unit);
  const v = Number(m[1]) * (binary ? 1024 : 1000) ** power;
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : null;
}
