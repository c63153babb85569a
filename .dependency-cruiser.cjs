/**
 * The import rules of src/ (docs/architecture.md, "Layers"): rooms stacked bottom to top, and a room
 * imports only rooms of lower layers. Rooms of one layer do not import each other, so no two rooms can
 * form a cycle. `npm test` runs this check (test/architecture.test.ts); `npx depcruise src` prints it.
 *
 * A room is a folder of src/ or a file directly in src/ (api.ts, index.ts). Type-only imports count.
 */
const LAYERS = [
  ['core'], // errors, half floats, the PRNG, ModelConfig, KV row codecs: leaf modules
  ['quant', 'hub'], // block quantisation; the Hugging Face Hub cache and downloads
  ['formats'], // checkpoint files: GGUF, safetensors, llama2.c, config.json
  ['tokenizer', 'backend'], // tokenizers and chat templates; kernels behind the Backend interface
  ['kv', 'press'], // the KV cache implementations; presses (scoring only)
  ['model'], // the forward, weight loading, model resolution
  ['generate'], // sequences, compression schedule, scheduler, batcher
  ['api'], // loadModel / Model
  ['calibrate', 'eval', 'server', 'browser'], // ...; the browser build: fetch loaders, Web Worker engine and client
  ['cli', 'index'],
];

const room = (name) => `^src/${name}(/|\\.ts$)`;
const any = (names) => `^src/(${names.join('|')})(/|\\.ts$)`;

const layerRules = LAYERS.flatMap((layer, i) => {
  const notBelow = LAYERS.slice(i).flat();
  return layer.map((name) => ({
    name: `layer-${name}`,
    comment: `${name} imports only rooms below its layer (${LAYERS.slice(0, i).flat().join(', ') || 'none'})`,
    severity: 'error',
    from: { path: room(name) },
    to: { path: any(notBelow.filter((n) => n !== name)) },
  }));
});

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'no import cycle between modules',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-to-tests',
      comment: 'the library does not import tests, benchmarks or scripts',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts|examples)/' },
    },
    {
      name: 'web-through-browser-entry',
      comment: 'the demo page (web/) uses the engine only through the browser entry, src/browser/index.ts',
      severity: 'error',
      from: { path: '^web/' },
      to: { path: '^src/', pathNot: '^src/browser/index\\.ts$' },
    },
    {
      name: 'known-room',
      comment: 'every folder of src/ has a place in LAYERS (.dependency-cruiser.cjs)',
      severity: 'error',
      from: { path: '^src/', pathNot: any(LAYERS.flat()) },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },

};
