import { KvsieveError } from '../core/errors.js';
import { downloadSnapshot, type RepoSnapshot } from '../hub/download.js';
import { parseHubModelId, formatHubModelId } from '../model/hub-model.js';
import { downloadModel } from '../model/resolve.js';
import { parseFlags } from './args.js';
import { downloadPrinter } from './download-progress.js';

export const pullHelp = `Usage: kvsieve pull ORG/NAME[/FOLDER][@REVISION] [--revision R] [--include PATTERN ...] [--cache-dir DIR]

Downloads a model from the Hugging Face Hub into the Hugging Face cache (the layout Python's
huggingface_hub uses, so files either one downloaded are shared) and prints the path to load: the
model's folder in the snapshot (or its file), usable as --model. Files already in the cache are not
fetched again; an interrupted download resumes where it stopped; a download of the same file by
another process (kvsieve or Python) is waited for. When the Hub cannot be reached, a cached snapshot
with the files is used, with a note on stderr.

  ORG/NAME/FOLDER     the model in a folder of the repo, e.g. karpathy/tinyllamas/stories260K;
                      ORG/NAME/FILE names one file (a .gguf, a llama2.c .bin)
  @REVISION           branch, tag or commit sha (refs/pr/1 as refs%2Fpr%2F1); or --revision R
  --include PATTERN   fetch exactly these files instead, and print the snapshot directory; repeat
                      for several. '*' and '?' stay within a folder, '**' crosses folders, 'dir/' is
                      everything under dir. e.g. --include '*Q8_0.gguf'
  --cache-dir DIR     cache directory (default HF_HUB_CACHE, else HF_HOME/hub, else
                      ~/.cache/huggingface/hub)

Without --include, the files the model needs: config.json, generation_config.json, tokenizer.json,
tokenizer_config.json, chat_template.jinja and the *.safetensors weights (only the shards that
model.safetensors.index.json names); else the folder's one GGUF file; else its llama2.c checkpoint
(.bin) and tokenizer (tok*.bin).

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

  const spec = positionals[0]!;
  const id = parseHubModelId(spec.startsWith('hf:') ? spec : `hf:${spec}`)!;
  if (values.revision !== undefined) {
    if (id.revision !== null && id.revision !== values.revision) throw new KvsieveError(`pull: ${spec} names revision ${id.revision} and --revision says ${values.revision}`);
    id.revision = values.revision;
  }
  if (include !== undefined && id.path !== null) throw new KvsieveError(`pull: --include takes patterns over the whole repo; name the repo (${id.repo}), not a folder of it`);

  const progress = downloadPrinter();
  const common = {
    ...(values['cache-dir'] !== undefined ? { cacheDir: values['cache-dir'] } : {}),
    onProgress: progress.update,
  };
  let path: string;
  let snapshot: RepoSnapshot;
  try {
    if (include !== undefined) {
      snapshot = await downloadSnapshot(id.repo, { ...(id.revision !== null ? { revision: id.revision } : {}), include, ...common });
      path = snapshot.dir;
    } else {
      ({ path, snapshot } = await downloadModel(formatHubModelId(id), common));
    }
  } finally {
    progress.finish();
  }
  if (snapshot.fromCache?.reason === 'unreachable') {
    process.stderr.write(`kvsieve: the Hub could not be reached (${snapshot.fromCache.message}); using the cached snapshot ${snapshot.commit.slice(0, 12)}\n`);
  }
  process.stdout.write(`${path}\n`);
}
