import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stories260K } from '../helpers.js';

/** A chat template in the shape of most: role tags, the assistant's turn opened at the end. */
export const TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/** A DeepSeek-R1-style template: the assistant's turn opens a reasoning block for the model. */
export const THINK_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}";

/**
 * stories260K's Hugging Face files in `dir` with a chat template. `closesThinking`: the token "."
 * decodes as `</think>` (an added token over its id), so the model ends its reasoning block at its
 * first full stop: a reasoning model from a story model, with the same weights.
 */
export function writeChatModel(dir: string, template = TEMPLATE, closesThinking = false): string {
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) copyFileSync(stories260K('hf', f), join(dir, f));
  const tok = JSON.parse(readFileSync(stories260K('hf', 'tokenizer.json'), 'utf8'));
  if (closesThinking) {
    tok.added_tokens.push({ id: tok.model.vocab['.'], content: '</think>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: false });
  }
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  const cfg = JSON.parse(readFileSync(stories260K('hf', 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: template }));
  return dir;
}
