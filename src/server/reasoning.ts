/**
 * Splits a reasoning model's output into `reasoning_content` (inside `<think>` ... `</think>`) and
 * `content`, as text streams in (the DeepSeek-R1 convention that vLLM's and llama.cpp's reasoning
 * parsers follow). A block counts only at the very start of the output (leading whitespace aside),
 * or from the first token when the prompt itself ends with `<think>`. A tag split across chunks is
 * held back until it is whole; whitespace at the start of each part is dropped.
 */
const OPEN = '<think>';
const CLOSE = '</think>';

export class ReasoningSplitter {
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
