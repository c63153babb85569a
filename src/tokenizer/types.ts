/** One chat message; extra fields (e.g. `reasoning_content`, `name`) are passed to chat templates as they are. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
  [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model continues as the assistant (default false). */
  addGenerationPrompt?: boolean;
  /** Passed to the template as `enable_thinking` when given (Qwen3-style reasoning switch); undefined otherwise. */
  enableThinking?: boolean;
  /** Passed to the template as `reasoning_effort` when given (GPT-OSS's system message: low, medium, high). */
  reasoningEffort?: ReasoningEffort;
}

export type ReasoningEffort = 'low' | 'medium' | 'high';

export interface StreamDecoder {
  /** Text made printable by this id ('' when bytes are still pending or the id prints nothing). */
  push(id: number): string;
  /** Any text still held back (an incomplete UTF-8 sequence comes out as U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: 'llama2c' | 'hf';
  /** Number of token ids the tokenizer knows (largest id + 1). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** The tokenizer's end-of-sequence id (hf: tokenizer_config `eos_token`; llama2c: 2). Stop rules belong to the generator. */
  readonly eosId: number | null;
  /**
   * Encodes text; addBos defaults to the tokenizer's own convention (llama2c: true; hf: `add_bos_token`
   * from tokenizer_config.json, else whether the post-processor adds BOS). Text rendered by a chat template
   * usually carries its own BOS already: encode it with `addBos: false`.
   */
  encode(text: string, options?: { addBos?: boolean }): number[];
  /** skipSpecial defaults to true (what a user should see of generated text). */
  decode(ids: number[], options?: { skipSpecial?: boolean }): string;
  /**
   * Incremental decoding for streaming generated ids after a prompt whose last id was `previousId`; the
   * concatenation of every push() and then flush() equals the text `decode([previousId, ...ids])` adds after
   * `decode([previousId])` (or `decode(ids)` when there is no previousId), with the same skipSpecial
   * (default true: special tokens print nothing; false: their text, as decode gives it).
   */
  streamDecoder(previousId?: number, options?: { skipSpecial?: boolean }): StreamDecoder;
  /** Present when the model ships a chat template. */
  applyChatTemplate?(messages: ChatMessage[], options?: ChatTemplateOptions): string;
  /** The vocabulary piece of an id as a readable string (byte tokens stay `<0xXX>`); undefined out of range. */
  tokenString(id: number): string | undefined;
  /** Whether decode/streaming with skipSpecial leaves this id out. */
  isSpecial(id: number): boolean;
}
