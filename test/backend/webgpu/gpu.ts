import type { TestContext } from 'node:test';
import { WebGpuBackend } from '../../../src/backend/webgpu/backend.js';

let probe: Promise<string | null> | null = null;

/**
 * Why WebGPU tests cannot run here (no `webgpu` package, no adapter), or null when they can. Under
 * KVSIEVE_REQUIRE_WEBGPU (.ci/run sets it, with SwiftShader's ICD) a missing adapter is a failure.
 */
function unavailable(): Promise<string | null> {
  probe ??= WebGpuBackend.create().then(
    (b) => {
      b.dispose();
      return null;
    },
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );
  return probe;
}

/** Skips the test, saying why, where no WebGPU adapter exists (outside CI); true when it may run. */
export async function withGpu(t: TestContext): Promise<boolean> {
  const reason = await unavailable();
  if (reason === null) return true;
  if (process.env['KVSIEVE_REQUIRE_WEBGPU']) throw new Error(`WebGPU required here (KVSIEVE_REQUIRE_WEBGPU) but unavailable: ${reason}`);
  console.log(`skipping WebGPU test: ${reason}`);
  t.skip(reason);
  return false;
}
