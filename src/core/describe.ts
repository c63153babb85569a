/**
 * Short one-line descriptions of values read from files, for error messages.
 *
 * A bad value can be anything a file holds: an array of 100,000 numbers, JSON nested a million deep, a
 * tensor name of a megabyte. JSON.stringify of such a value gives a message as long as the value, or
 * overflows the stack on deep nesting, so messages never echo a file's value whole: they describe it
 * here, within a fixed number of characters, looking at most a few levels and a few items deep.
 */

/** Characters a described value takes at most (the message around it names file and field). */
export const DESCRIBE_MAX = 60;

/** Folds `text` onto one line and cuts it to `max` characters (an ellipsis marks the cut). */
export function oneLine(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, Math.max(0, max - 1))}…`;
}

/**
 * A name from a file (tensor, key, shard), quoted as JSON and cut to about `max` characters of the
 * quoted form (control characters take six each there: a binary name is cut sooner).
 */
export function quoted(name: string, max = 80): string {
  const q = JSON.stringify(name.length > max ? name.slice(0, max) : name);
  if (q.length <= max + 2 && name.length <= max) return q;
  return `${q.length <= max + 2 ? q : `${q.slice(0, max + 1)}"`}… (${name.length} characters)`;
}

/**
 * A value as a short string: numbers and booleans as they print, strings quoted and cut, arrays and
 * objects by their first items and their size (`[1, 1, 1, … 100000 items]`, `{"a": …, 3 keys}`).
 * Never longer than about `max` characters, whatever the value's size or depth.
 */
export function describeValue(v: unknown, max = DESCRIBE_MAX): string {
  const s = describe(v, Math.max(8, max), 2);
  return s.length <= max + 24 ? s : `${s.slice(0, max)}…`;
}

const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function describe(v: unknown, budget: number, depth: number): string {
  switch (typeof v) {
    case 'undefined':
      return 'nothing';
    case 'number':
    case 'boolean':
      return String(v);
    case 'bigint':
      return `${v}`;
    case 'string':
      return quoted(v, Math.max(4, budget - 2));
    case 'function':
    case 'symbol':
      return typeof v;
  }
  if (v === null) return 'null';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    if (depth === 0) return `[… ${count(v.length, 'item')}]`;
    const parts: string[] = [];
    let used = 2;
    for (let i = 0; i < v.length && i < 8; i++) {
      const part = describe(v[i], Math.max(8, (budget - used) >> 1), depth - 1);
      if (used + part.length + 2 > budget) break;
      parts.push(part);
      used += part.length + 2;
    }
    if (parts.length === v.length) return `[${parts.join(', ')}]`;
    return `[${parts.map((p) => `${p}, `).join('')}… ${count(v.length, 'item')}]`;
  }
  if (ArrayBuffer.isView(v)) return `${v.constructor.name} of ${count((v as unknown as ArrayLike<unknown>).length ?? v.byteLength, 'item')}`;
  const keys = Object.keys(v as object);
  if (keys.length === 0) return '{}';
  if (depth === 0) return `{… ${count(keys.length, 'key')}}`;
  const parts: string[] = [];
  let used = 2;
  for (const k of keys.slice(0, 4)) {
    const part = `${quoted(k, 20)}: ${describe((v as Record<string, unknown>)[k], Math.max(8, (budget - used) >> 1), depth - 1)}`;
    if (used + part.length + 2 > budget) break;
    parts.push(part);
    used += part.length + 2;
  }
  if (parts.length === keys.length) return `{${parts.join(', ')}}`;
  return `{${parts.map((p) => `${p}, `).join('')}… ${count(keys.length, 'key')}}`;
}

/**
 * The reason JSON.parse gave for refusing a text, on one line and short: V8 quotes the text around the
 * fault (newlines and all), which is dropped here.
 */
export function jsonErrorReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const excerpt = /^(.*?), (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s.exec(message);
  return oneLine(excerpt ? excerpt[1]! : message, 100);
}
