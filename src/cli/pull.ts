import { KvsieveError } from '../core/errors.js';
import { downloadRepo } from '../hub/download.js';
import { parseFlags } from './args.js';
import { downloadPrinter } from './download-progress.js';

export const pullHelp = `Usage: kvsieve pull ORG/NAME [--revision R] [--include PATTERN ...] [--cache-dir DIR]

Downloads a model from the Hugging Face Hub into the Hugging Face cache (the layout Python's
huggingface_hub uses, so files either one downloaded are shared) and prints the snapshot directory.
Files already in the cache are not fetched again; an interrupted download resumes where it stopped.

  --revision R        branch, tag or commit sha (default main)
  --include PATTERN   files to fetch; repeat for several. '*' and '?' stay within a folder, '**'
                      crosses folders, 'dir/' is everything under dir. Default: config.json,
                      generation_config.json, tokenizer.json, tokenizer_config.json,
                      chat_template.jinja and the *.safetensors weights (only the shards that
                      model.safetensors.index.json names, when there is one). GGUF files only when
                      named, e.g. --include '*Q8_0.gguf'
  --cache-dir DIR     cache directory (default HF_HUB_CACHE, else HF_HOME/hub, else
                      ~/.cache/huggingface/hub)

Environment: HF_TOKEN (gated or private repos), HF_ENDPOINT (a mirror), HF_HUB_OFFLINE=1 (cache only).
`;

export async function pullCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      revision: { type: 'string' },
      include: { type: 'string', multiple: true },
      'cache-dir': { type: 'string' },
      debug: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    'pull',
  );
  if (values.help) {
    process.stdout.write(pullHelp);
    return;
  }
  if (positionals.length === 0) throw new KvsieveError('pull: name the repo to download, e.g. kvsieve pull HuggingFaceTB/SmolLM2-135M-Instruct');
  if (positionals.length > 1) throw new KvsieveError(`pull: unexpected argument "${positionals[1]}" (one repo at a time)`);
  if (values.revision !== undefined && values.revision.trim() === '') throw new KvsieveError('pull: --revision is empty');
  if (values['cache-dir'] !== undefined && values['cache-dir'].trim() === '') throw new KvsieveError('pull: --cache-dir is empty');
  const include = values.include?.flatMap((p) => p.split(',')).map((p) => p.trim()).filter((p) => p.length > 0);
  if (values.include !== undefined && include!.length === 0) throw new KvsieveError('pull: --include is empty');

  const progress = downloadPrinter();
  try {
    const snapshot = await downloadRepo(positionals[0]!, {
      ...(values.revision !== undefined ? { revision: values.revision } : {}),
      ...(include !== undefined ? { include } : {}),
      ...(values['cache-dir'] !== undefined ? { cacheDir: values['cache-dir'] } : {}),
      onProgress: progress.update,
    });
    process.stdout.write(`${snapshot}\n`);
  } finally {
    progress.finish();
  }
}
