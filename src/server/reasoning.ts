/**
 * Splits a reasoning model's output into `reasoning_content` (inside `<think>` ... `</think>`) and
 * `content`, as text streams in (the DeepSeek-R1 convention that vLLM's and llama.cpp's reasoning
 * parsers follow). A block counts only at the very start of the output (leading whitespace aside),
 * or from the first token when the prompt itself ends with `<think>`. A tag split across chunks is
 * held back until it is whole; whitespace at the start of each part is dropped.
 */
const OPEN = '<think>';
const CLOSE = '</think>';

export class ReasoningSplitter implements Splitter {
  private state: 'start' | 'thinking' | 'content';
  private held = '';
  /** Drop whitespace until the current part's first visible character. */
  private trimming = true;
  /** Whether a reasoning block was seen. */
  sawReasoning: boolean;

  constructor(startsInside: boolean) {
    this.state = startsInside ? 'thinking' : 'start';
    this.sawReasoning = startsInside;
  }

  push(text: string): { reasoning: string; content: string } {
    let s = this.held + text;
    this.held = '';
    let reasoning = '';
    let content = '';
    for (;;) {
      if (this.state === 'start') {
        const t = s.trimStart();
        if (t.startsWith(OPEN)) {
          s = t.slice(OPEN.length);
          this.state = 'thinking';
          this.sawReasoning = true;
          this.trimming = true;
          continue;
        }
        if (OPEN.startsWith(t)) {
          this.held = s; // whitespace or a prefix of <think>: not decided yet
          break;
        }
        this.state = 'content';
        continue;
      }
      if (this.state === 'thinking') {
        const at = s.indexOf(CLOSE);
        if (at >= 0) {
          reasoning += this.trim(s.slice(0, at));
          s = s.slice(at + CLOSE.length);
          this.state = 'content';
          this.trimming = true;
          continue;
        }
        const keep = partialSuffix(s, CLOSE);
        reasoning += this.trim(s.slice(0, s.length - keep));
        this.held = s.slice(s.length - keep);
        break;
      }
      content += this.trim(s);
      break;
    }
    return { reasoning, content };
  }

  /** What is held back at the end: a partial tag is text after all. */
  flush(): { reasoning: string; content: string } {
    const rest = this.held;
    this.held = '';
    if (this.state === 'thinking') return { reasoning: this.trim(rest), content: '' };
    return { reasoning: '', content: this.trim(rest) };
  }

  private trim(s: string): string {
    if (!this.trimming) return s;
    const t = s.trimStart();
    if (t.length > 0) this.trimming = false;
    return t;
  }
}

/** Length of the longest suffix of `s` that is a proper prefix of `tag`. */
function partialSuffix(s: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, s.length); n > 0; n--) if (s.endsWith(tag.slice(0, n))) return n;
  return 0;
}

/** What every splitter of generated text into reasoning and content does. */
export interface Splitter {
  push(text: string): { reasoning: string; content: string };
  flush(): { reasoning: string; content: string };
  /** Whether any reasoning was seen (the reply then has reasoning_content). */
  readonly sawReasoning: boolean;
}

/** The harmony format's markers (`<|name|>`); the longest is a dozen characters. */
const MARKER_OPEN = '<|';
const MARKER_CLOSE = '|>';
const LONGEST_MARKER = 16;

/**
 * Splits a harmony-format reply (GPT-OSS) streamed with its special tokens' text: messages are
 * `<|channel|>NAME<|message|>TEXT<|end|>`, each after `<|start|>ROLE` but the first (the prompt ends
 * with `<|start|>assistant`); the reply ends at `<|return|>` or `<|call|>`. TEXT of the analysis
 * channel is reasoning; of any other channel (final, commentary), content. Markers never reach either.
 * Text before any marker is content (a model that does not use the format), unless the prompt itself
 * opened the analysis channel (`inAnalysis`). A marker split across chunks is held back until it is whole.
 */
export class HarmonySplitter implements Splitter {
  private state: 'message' | 'header' | 'between' | 'done' = 'message';
  private channel: string;
  private header = '';
  private held = '';
  sawReasoning: boolean;

  constructor(inAnalysis = false) {
    this.channel = inAnalysis ? 'analysis' : 'final';
    this.sawReasoning = inAnalysis;
  }

  push(text: string): { reasoning: string; content: string } {
    let s = this.held + text;
    this.held = '';
    const out = { reasoning: '', content: '' };
    while (s.length > 0 && this.state !== 'done') {
      const at = s.indexOf(MARKER_OPEN);
      if (at < 0) {
        // a trailing '<' may start a marker
        const keep = s.endsWith('<') ? 1 : 0;
        this.text(s.slice(0, s.length - keep), out);
        this.held = s.slice(s.length - keep);
        break;
      }
      this.text(s.slice(0, at), out);
      s = s.slice(at);
      const end = s.indexOf(MARKER_CLOSE, MARKER_OPEN.length);
      if (end < 0) {
        if (s.length < LONGEST_MARKER) {
          this.held = s;
          break;
        }
        // no marker after all: the '<|' is text
        this.text(MARKER_OPEN, out);
        s = s.slice(MARKER_OPEN.length);
        continue;
      }
      this.marker(s.slice(MARKER_OPEN.length, end), s.slice(0, end + MARKER_CLOSE.length), out);
      s = s.slice(end + MARKER_CLOSE.length);
    }
    return out;
  }

  flush(): { reasoning: string; content: string } {
    const out = { reasoning: '', content: '' };
    if (this.state !== 'done') this.text(this.held, out);
    this.held = '';
    return out;
  }

  private text(t: string, out: { reasoning: string; content: string }): void {
    if (t.length === 0) return;
    if (this.state === 'header') this.header += t;
    else if (this.state === 'message') {
      if (this.channel === 'analysis') out.reasoning += t;
      else out.content += t;
    } else if (this.state === 'between' && t.trim().length > 0) out.content += t; // outside any message: not the format's
  }

  private marker(name: string, whole: string, out: { reasoning: string; content: string }): void {
    switch (name) {
      case 'start':
        this.state = 'header';
        this.header = '';
        return;
      case 'channel':
        this.state = 'header';
        this.header = ''; // the role before it is not the channel
        return;
      case 'constrain':
        this.header += ' ';
        return;
      case 'message':
        // "analysis", "final", or "commentary to=functions.x ...": the channel is the first word
        this.channel = this.header.trim().split(/\s+/)[0] || 'final';
        if (this.channel === 'analysis') this.sawReasoning = true;
        this.state = 'message';
        return;
      case 'end':
        this.state = 'between';
        return;
      case 'return':
      case 'call':
        this.state = 'done';
        return;
      default:
        this.text(whole, out); // not a harmony marker: text
    }
  }
}
