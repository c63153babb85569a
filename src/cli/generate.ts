import { closeSync, openSync, writeSync } from 'node:fs';
import { traceHeader, traceResult } from '../api/trace.js';
import { KvsieveError } from '../core/errors.js';
import type { GenerationResult } from '../generate/batcher.js';
import type { KvTraceEvent } from '../generate/sequence.js';
import type { KvDtype } from '../core/kv-rows.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { idListFlag, numberFlag, parseFlags } from './args.js';
import { compressionFromFlags, pressFlagHelp, pressFlagSpec } from './press-flags.js';

export const generateHelp = `Usage: kvsieve generate [options] PROMPT

Generates text from PROMPT, streaming it to stdout as it is produced.

Options:
${modelFlagHelp}  --chat                 wrap PROMPT in the model's chat template
  --system TEXT          system message (with --chat)
  --prompt-ids 1,2,3     feed these token ids instead of a text prompt
  --max-tokens N         most tokens to generate (default 256)
  --temperature T        0 is greedy (default 0)
  --top-k K              keep the K most likely tokens (0 = off)
  --top-p P              nucleus sampling threshold (1 = off)
  --min-p P              drop tokens below P times the top probability (0 = off)
  --seed S               random seed (default 0)
  --stop TEXT            stop when TEXT appears (repeatable)
  --ignore-eos           keep generating past end-of-sequence tokens
  --kv-dtype T           KV-cache storage f32 (default) | f16 | int8 (per-slot scales); multiplies with
                         compression: a 10% budget in int8 holds about 2.5% of the full f32 cache
  --trace FILE           write what the KV cache holds after every step to FILE (JSON lines: a header,
                         per step the positions each layer and KV head holds and the KV bytes against
                         a full cache, the result); the demo page's KV inspector reads it
  --json                 print one JSON object (ids, text, stop reason, speeds, peak KV bytes) instead
  --debug                show stack traces on errors
  --help                 this text

${pressFlagHelp}`;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...modelFlagSpec,
      chat: { type: 'boolean' },
      system: { type: 'string' },
      'prompt-ids': { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'min-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      'ignore-eos': { type: 'boolean' },
      'kv-dtype': { type: 'string' },
      json: { type: 'boolean' },
      trace: { type: 'string' },
      debug: { type: 'boolean' },
      help: { type: 'boolean' },
      ...pressFlagSpec,
    },
    'generate',
  );
  if (values.help) {
    process.stdout.write(generateHelp);
    return;
  }
  const promptIds = idListFlag('prompt-ids', values['prompt-ids']);
  if (positionals.length > 1) throw new KvsieveError(`generate: expected one PROMPT (quote it), got ${positionals.length} words`);
  const prompt = positionals[0] ?? null;
  if (prompt === null && !promptIds) throw new KvsieveError('generate: give a PROMPT or --prompt-ids (see kvsieve generate --help)');
  if (prompt !== null && promptIds) throw new KvsieveError('generate: give either a PROMPT or --prompt-ids, not both');
  if (values.system !== undefined && !values.chat) throw new KvsieveError('--system needs --chat');

  const options = {
    promptIds,
    chat: values.chat ?? false,
    system: values.system,
    maxTokens: numberFlag('max-tokens', values['max-tokens'], { integer: true, min: 0 }),
    temperature: numberFlag('temperature', values.temperature, { min: 0 }),
    topK: numberFlag('top-k', values['top-k'], { integer: true, min: 0 }),
    topP: numberFlag('top-p', values['top-p'], { min: 0, max: 1 }),
    minP: numberFlag('min-p', values['min-p'], { min: 0, max: 1 }),
    seed: numberFlag('seed', values.seed, { integer: true, min: 0 }),
    stop: values.stop ?? [],
    ignoreEos: values['ignore-eos'] ?? false,
    ...(values['kv-dtype'] !== undefined ? { kvDtype: values['kv-dtype'] as KvDtype } : {}),
  };

  const model = await loadModelFromFlags(values);
  try {
    const compression = compressionFromFlags(values, model.config);
    let traceFd: number | null = null;
    const traceLine = (o: object) => writeSync(traceFd!, `${JSON.stringify(o)}\n`);
    if (values.trace !== undefined) {
      try {
        traceFd = openSync(values.trace, 'w');
      } catch (e) {
        throw new KvsieveError(`--trace: cannot write ${values.trace} (${(e as Error).message.split('\n')[0]})`);
      }
    }
    try {
      if (traceFd !== null) traceLine(traceHeader(model, prompt, { ...options, ...(compression ? { compression } : {}) }));
      const onTrace = traceFd === null ? {} : { onTrace: (e: KvTraceEvent) => traceLine({ kind: 'step', ...e }) };
      const stream = model.generate(prompt, { ...options, ...(compression ? { compression } : {}), ...onTrace });
      for await (const chunk of stream) {
        if (!values.json && chunk.text) process.stdout.write(chunk.text);
      }
      const r = await stream.result;
      if (traceFd !== null) traceLine(traceResult(r));
      report(r, compression?.press);
    } finally {
      if (traceFd !== null) closeSync(traceFd);
    }
  } finally {
    model.dispose();
  }

  function report(r: GenerationResult, press: string | { name: string } | undefined): void {
    if (values.json) {
      process.stdout.write(
        JSON.stringify({
          model: model.info().path,
          promptIds: r.promptIds,
          generatedIds: r.generatedIds,
          text: r.text,
          stopReason: r.stopReason,
          promptTokens: r.promptTokens,
          generatedTokens: r.generatedTokens,
          prefillTokensPerSecond: r.prefillTokensPerSecond,
          decodeTokensPerSecond: r.decodeTokensPerSecond,
          peakKvBytes: r.peakKvBytes,
          peakKvAllocatedBytes: r.peakKvAllocatedBytes,
          kvTokensPerHead: r.finalKvTokensPerHead,
          press: press === undefined ? 'full' : typeof press === 'string' ? press : press.name,
          compressions: r.compressions,
          compressionSeconds: r.compressionSeconds,
        }) + '\n',
      );
    } else {
      process.stdout.write('\n');
      const speed = `prefill ${r.prefillTokensPerSecond.toFixed(1)} tok/s, decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s`;
      process.stderr.write(`[${r.generatedTokens} tokens, stop: ${r.stopReason}, ${speed}, peak KV ${r.peakKvBytes} bytes]\n`);
    }
  }
}
