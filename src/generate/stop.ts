/**
 * Holds back streamed text that could still become a stop string, and reports a match.
 * `push` returns the text that is safe to show; after a match, nothing more is shown.
 */
export class StopStringFilter {
  private held = '';
  matched: string | null = null;

  constructor(private readonly stops: readonly string[]) {}

  push(text: string): string {
    if (this.matched !== null) return '';
    if (this.stops.length === 0) return text;
    this.held += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.held.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        this.matched = s;
      }
    }
    if (cut >= 0) {
      const out = this.held.slice(0, cut);
      this.held = '';
      return out;
    }
    // Keep the longest suffix that is a prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.held.length); k > keep; k--) {
        if (this.held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return out;
  }

  /** Text still held back at the end of generation (never part of a stop string). */
  flush(): string {
    const out = this.matched === null ? this.held : '';
    this.held = '';
    return out;
  }
}
