// The README's library example. Run: npx tsx examples/generate.ts (the default model is downloaded
// from the Hugging Face Hub on first use unless KVSIEVE_MODEL_PATH=../shared/models has it).
import { loadModel } from '../src/index.js';

const model = await loadModel(); // the default model (stories260K); or a path, a name, a Hugging Face id
const stream = model.generate('Once upon a time', { maxTokens: 100, temperature: 0.8, topP: 0.95, seed: 1 });
let story = '';
for await (const chunk of stream) story += chunk.text; // as tokens come (Node: process.stdout.write(chunk.text))
const result = await stream.result; // ids, text, stopReason, tokens/s, peakKvBytes
console.log(story, '\n', result.stopReason, result.decodeTokensPerSecond.toFixed(1), 'tok/s');

const logits = model.logits([1, 403, 407]); // one Float32Array per position
const batch = await model.generateBatch(['Tom went', 'The sun'], { maxTokens: 20 }); // one forward step per token for all
console.log(logits.length, batch.map((r) => r.text));
model.dispose();
