// The README's library example. Run: KVSIEVE_MODEL_PATH=../shared/models npx tsx examples/generate.ts
import { loadModel } from '../src/index.js';

const model = await loadModel('stories260K'); // or a directory / file path
const stream = model.generate('Once upon a time', { maxTokens: 100, temperature: 0.8, topP: 0.95, seed: 1 });
for await (const chunk of stream) process.stdout.write(chunk.text);
const result = await stream.result; // ids, text, stopReason, tokens/s, peakKvBytes
console.log('\n', result.stopReason, result.decodeTokensPerSecond.toFixed(1), 'tok/s');

const logits = model.logits([1, 403, 407]); // one Float32Array per position
console.log('logits rows:', logits.length);
const batch = await model.generateBatch(['Tom went', 'The sun'], { maxTokens: 20 });
console.log(batch.map((r) => r.text));
model.dispose();
