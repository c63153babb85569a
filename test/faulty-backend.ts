import type { Backend } from '../src/backend/backend.js';
import { ReferenceBackend } from '../src/backend/reference.js';

/**
 * A reference backend whose attention throws `fault()` while armed: a fault inside the forward pass,
 * injected through the public `backend` option (whatever the operations' argument lists are).
 * `failNextAlloc()` makes the next allocF32 throw once (memory running out for one allocation).
 */
export function faultyBackend(): { backend: Backend; arm: (fault: (() => unknown) | null) => void; failNextAlloc: () => void } {
  const inner = new ReferenceBackend();
  let fault: (() => unknown) | null = null;
  let allocFails = false;
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'attention') {
        return (...args: unknown[]) => {
          if (fault) throw fault();
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      if (prop === 'allocF32') {
        return (n: number) => {
          if (allocFails) {
            allocFails = false;
            throw new RangeError(`Array buffer allocation failed (${n} floats)`);
          }
          return target.allocF32(n);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { backend, arm: (f) => (fault = f), failNextAlloc: () => (allocFails = true) };
}
