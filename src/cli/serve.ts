import { createOpenAiServer, listen, type ReasoningFormat, type ServerOptions } from '../server/openai.js';
import { WorkerEngine, type WorkerLoadOptions } from '../server/worker-engine.js';
import { KvsieveError } from '../core/errors.js';
import { describeFailure } from './errors.js';
import { loadOptionsFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { numberFlag, parseFlags } from './args.js';
import { compressionFromFlags, pressFlagHelp, pressFlagSpec } from './press-flags.js';

export const serveHelp = `Usage: kvsieve serve [--model M] [--host 127.0.0.1] [--port 8080] [--max-tokens N] [server flags] [compression flags]

Serves the model over an OpenAI-compatible HTTP API: GET /v1/models, POST /v1/completions and
POST /v1/chat/completions (with "stream": true for server-sent events), GET /health and GET /metrics
(Prometheus). The model runs on an engine thread of its own; concurrent requests share one continuous
batch under the KV memory pool. A request may choose its own compression with "kvsieve": {"press":
"r-kv", "budget": 1024, ...}; otherwise the flags below apply to every request.

Server flags:
  --max-queue N          requests waiting for their first token before new ones get 429 (default 256)
  --api-key KEY          require Authorization: Bearer KEY on /v1/* (also read from KVSIEVE_API_KEY)
  --cors ORIGIN          allow browser calls from ORIGIN ('*' for any); none by default
  --reasoning-format F   deepseek (default): <think> output of chat completions in reasoning_content;
                         none: left in content
  --no-sessions          do not hold chat conversations' KV caches for their next turn
  --quiet                no request log on stderr
  --debug                stack traces of internal errors

${pressFlagHelp}
${modelFlagHelp}`;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    {
      ...modelFlagSpec,
      host: { type: 'string' },
      port: { type: 'string' },
      'max-tokens': { type: 'string' },
      'max-queue': { type: 'string' },
      'api-key': { type: 'string' },
      cors: { type: 'string' },
      'reasoning-format': { type: 'string' },
      'no-sessions': { type: 'boolean' },
      quiet: { type: 'boolean' },
      debug: { type: 'boolean' },
      help: { type: 'boolean' },
      ...pressFlagSpec,
    },
    'serve',
  );
  if (values.help) return void process.stdout.write(serveHelp);
  if (positionals.length > 0) throw new KvsieveError(`serve: unexpected argument "${positionals[0]}"`);
  const flags = values as Record<string, unknown>;
  const str = (k: string) => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  const port = numberFlag('port', str('port'), { integer: true, min: 0, max: 65535 }) ?? 8080;
  const host = str('host') ?? '127.0.0.1';
  const reasoning = str('reasoning-format');
  if (reasoning !== undefined && reasoning !== 'deepseek' && reasoning !== 'none') throw new KvsieveError(`--reasoning-format must be deepseek or none, got "${reasoning}"`);
  const load: WorkerLoadOptions = loadOptionsFromFlags(values);
  const maxQueue = numberFlag('max-queue', str('max-queue'), { integer: true, min: 0 });
  const apiKey = str('api-key') ?? process.env['KVSIEVE_API_KEY'];
  const cors = str('cors');

  // The engine thread loads the model while the server already answers: /health says 503 until then.
  const engine = new WorkerEngine(str('model'), load);
  const options: ServerOptions = {
    engine,
    modelName: str('model') ?? 'stories260K',
    defaultMaxTokens: numberFlag('max-tokens', str('max-tokens'), { integer: true, min: 1 }) ?? 256,
    ...(maxQueue !== undefined ? { maxQueue } : {}),
    ...(apiKey ? { apiKey } : {}),
    ...(cors !== undefined ? { cors } : {}),
    ...(reasoning !== undefined ? { reasoningFormat: reasoning as ReasoningFormat } : {}),
    sessions: values['no-sessions'] !== true,
    ...(values.quiet ? {} : { log: (line: string) => process.stderr.write(`kvsieve: ${line}\n`) }),
    // The client gets a 500 with the message; the operator gets what the CLI prints for an internal error.
    onInternalError: (e, request) => process.stderr.write(`kvsieve: ${request}: 500\n${describeFailure(e, 'serve', values.debug === true).text}`),
  };
  const server = createOpenAiServer(options);
  const addr = await listen(server, port, host);
  process.stderr.write(`kvsieve: listening on http://${addr.address}:${addr.port}/v1, loading the model ...\n`);
  let loaded;
  try {
    loaded = await engine.ready;
    // The default compression is checked against the model's shape, known once it is loaded.
    options.compression = compressionFromFlags(values, loaded.config);
  } catch (e) {
    server.close();
    await engine.close();
    throw e;
  }
  const c = options.compression;
  process.stderr.write(`kvsieve: serving ${loaded.info.path} (${c ? `${c.press}, budget ${c.budget}` : 'full cache'})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await engine.close();
}
