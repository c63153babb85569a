import { createOpenAiServer, listen } from '../server/openai.js';
import { KvsieveError } from '../core/errors.js';
import { describeFailure } from './errors.js';
import { loadModelFromFlags, modelFlagHelp, modelFlagSpec } from './model-flags.js';
import { numberFlag, parseFlags } from './args.js';
import { compressionFromFlags, pressFlagHelp, pressFlagSpec } from './press-flags.js';

export const serveHelp = `Usage: kvsieve serve [--model M] [--host 127.0.0.1] [--port 8080] [--max-tokens N] [compression flags]

Serves the model over an OpenAI-compatible HTTP API: GET /v1/models, POST /v1/completions and
POST /v1/chat/completions (with "stream": true for server-sent events). Concurrent requests share one
continuous batch. A request may choose its own compression with "kvsieve": {"press": "r-kv",
"budget": 1024, ...}; otherwise the flags below apply to every request.

${pressFlagHelp}
${modelFlagHelp}`;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    argv,
    { ...modelFlagSpec, host: { type: 'string' }, port: { type: 'string' }, 'max-tokens': { type: 'string' }, debug: { type: 'boolean' }, help: { type: 'boolean' }, ...pressFlagSpec },
    'serve',
  );
  if (values.help) return void process.stdout.write(serveHelp);
  if (positionals.length > 0) throw new KvsieveError(`serve: unexpected argument "${positionals[0]}"`);
  const port = numberFlag('port', values.port as string | undefined, { integer: true, min: 0, max: 65535 }) ?? 8080;
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const model = await loadModelFromFlags(values);
  const compression = compressionFromFlags(values, model.config);
  const server = createOpenAiServer({
    model,
    modelName: (values.model as string | undefined) ?? 'stories260K',
    compression,
    defaultMaxTokens: numberFlag('max-tokens', values['max-tokens'] as string | undefined, { integer: true, min: 1 }) ?? 256,
    // The client gets a 500 with the message; the operator gets what the CLI prints for an internal error.
    onInternalError: (e, request) => process.stderr.write(`kvsieve: ${request}: 500\n${describeFailure(e, 'serve', values.debug === true).text}`),
  });
  const addr = await listen(server, port, host);
  process.stderr.write(`kvsieve: serving ${model.info().path} on http://${addr.address}:${addr.port}/v1 (${compression ? `${compression.press}, budget ${compression.budget}` : 'full cache'})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  model.dispose();
}
