/**
 * The one error type kvsieve throws for bad input. `message` is a single line that names the
 * file, tensor, field or flag at fault; the CLI prints it as is (no stack unless --debug).
 */
export class KvsieveError extends Error {
  override readonly name = 'KvsieveError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Throws a KvsieveError when `condition` is false. */
export function ensure(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new KvsieveError(typeof message === 'function' ? message() : message);
}
