/**
 * A WebGPU device, wherever the engine runs: the browser's navigator.gpu, or in Node the optional
 * `webgpu` package (Dawn), imported only when asked for. No Node-only call here: the package is
 * reached through a dynamic import of its name.
 */
import { KvsieveError } from '../../core/errors.js';

export interface GpuDeviceInfo {
  device: GPUDevice;
  /** The adapter's vendor / architecture / description, as far as it tells. */
  adapter: string;
  /** Whether the device was created with shader-f16. */
  shaderF16: boolean;
}

/** The Node binding's instances made in this process (see findGpu). */
const nodeInstances: GPU[] = [];

/** The name of the optional package that brings WebGPU to Node. */
const NODE_PACKAGE = 'webgpu';

/** navigator.gpu where the environment has one, else the Node package's GPU; null when neither exists. */
async function findGpu(): Promise<GPU | null> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = (await import(/* @vite-ignore */ NODE_PACKAGE)) as typeof mod;
  } catch {
    return null;
  }
  // The binding's classes (GPUBufferUsage, ...) are what shader code and constants refer to.
  for (const [name, value] of Object.entries(mod.globals)) {
    if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
  }
  const gpu = mod.create([]);
  // Every instance stays referenced for the life of the process: a Dawn instance collected by the GC
  // while others run made Node abort at exit (std::system_error in Dawn's teardown).
  nodeInstances.push(gpu);
  return gpu;
}

/**
 * Requests an adapter and a device with the adapter's largest storage-buffer limits (weights are
 * bound whole). Throws a one-line KvsieveError naming the `backend` option when there is none.
 */
export async function acquireGpuDevice(): Promise<GpuDeviceInfo> {
  const gpu = await findGpu();
  if (!gpu) {
    throw new KvsieveError(`backend webgpu: this environment has no WebGPU (in Node, install the optional package "${NODE_PACKAGE}")`, { option: 'backend' });
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new KvsieveError('backend webgpu: no WebGPU adapter found (no GPU, or no Vulkan/Metal/D3D12 driver)', { option: 'backend' });
  const shaderF16 = adapter.features.has('shader-f16');
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(8, adapter.limits.maxStorageBuffersPerShaderStage),
    },
    ...(shaderF16 ? { requiredFeatures: ['shader-f16' as GPUFeatureName] } : {}),
  });
  const i = adapter.info;
  const adapterName = [i?.vendor, i?.architecture, i?.description].filter((s) => s).join(' ') || 'unknown adapter';
  return { device, adapter: adapterName, shaderF16 };
}
