/**
 * kvsieve's two kinds of error.
 *
 * - KvsieveError: bad input, the caller's to fix: an option, a request, a model or data file. Its
 *   message is one line naming the file, tensor, field or option at fault. Options are named as the
 *   library spells them (`maxTokens`, `kvDtype`, `weights`, `compression.budget`), and `option` holds
 *   that path so the layers above can say it their way: the CLI as its flag (`--max-tokens`), the
 *   server as the request parameter (`max_tokens`, `kvsieve.budget`).
 * - InternalError: a fault inside kvsieve, never the caller's: a broken invariant, an allocator or
 *   kernel fault, a wasm trap, an unexpected exception during generation. The CLI prints it as an
 *   internal error with a note on reporting it; the server answers 500.
 *
 * Anything else that escapes (a TypeError, a RangeError) is treated as internal: see `classify`.
 */

export interface KvsieveErrorOptions {
  cause?: unknown;
  /**
   * The library option at fault, as a path through the option objects ('maxTokens', 'weights',
   * 'compression.budget'). The message must name it by this path, as a whole word.
   */
  option?: string;
  /**
   * A stable name for a kind of bad input that callers treat specially (the server's OpenAI `code`):
   * 'context_length_exceeded' for a prompt longer than the model's context.
   */
  code?: string;
}

/** Bad input: the one error type kvsieve throws for something its caller can fix. */
export class KvsieveError extends Error {
  override readonly name = 'KvsieveError';
  /** The library option at fault (see KvsieveErrorOptions.option); undefined for file and other problems. */
  readonly option: string | undefined;
  /** See KvsieveErrorOptions.code. */
  readonly code: string | undefined;

  constructor(message: string, options: KvsieveErrorOptions = {}) {
    super(message, 'cause' in options ? { cause: options.cause } : undefined);
    this.option = options.option;
    this.code = options.code;
  }

  /**
   * The message with the option at fault spelled `name` (a CLI flag, a request parameter) where it
   * names the option's path; `name: message` when it does not; the message itself without an option.
   */
  messageFor(name: string): string {
    if (this.option === undefined) return this.message;
    const at = optionPattern(this.option);
    return at.test(this.message) ? this.message.replace(at, () => name) : `${name}: ${this.message}`;
  }

  /**
   * This error seen from a containing option object: 'budget' under 'compression' becomes
   * 'compression.budget', in `option` and in the message (the original is the cause). Errors without
   * an option come back as they are.
   */
  under(prefix: string): KvsieveError {
    if (this.option === undefined) return this;
    const option = `${prefix}.${this.option}`;
    return new KvsieveError(this.messageFor(option), { option, cause: this, ...(this.code !== undefined ? { code: this.code } : {}) });
  }
}

/** A fault inside kvsieve (a bug or a broken installation), not the caller's. */
export class InternalError extends Error {
  override readonly name = 'InternalError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Throws an InternalError when an internal invariant does not hold (a kvsieve bug when it fires). Input
 * from callers, requests or files is checked with KvsieveError instead.
 */
export function ensure(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new InternalError(typeof message === 'function' ? message() : message);
}

/**
 * A thrown value as one of the two kinds: a KvsieveError or InternalError as it is, anything else
 * (a wasm trap, a TypeError, a thrown string) as an InternalError `what: <its message>` that keeps
 * the original as its cause.
 */
export function classify(e: unknown, what: string): KvsieveError | InternalError {
  if (e instanceof KvsieveError || e instanceof InternalError) return e;
  const kind = e instanceof Error ? (e.name && e.name !== 'Error' ? `${e.name}: ` : '') : '';
  const text = e instanceof Error ? e.message : String(e);
  return new InternalError(`${what}: ${kind}${firstLine(text)}`, { cause: e });
}

function firstLine(s: string): string {
  const line = s.split('\n', 1)[0]!.trim();
  return line.length > 240 ? `${line.slice(0, 237)}...` : line;
}

/** The option path as a whole word: not part of a longer name, a path, or a kebab-case word. */
function optionPattern(option: string): RegExp {
  const escaped = option.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(?<![\\w.$-])${escaped}(?![\\w$-])`);
}
