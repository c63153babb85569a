import type { Backend } from '../src/backend/backend.js';
import { ReferenceBackend } from '../src/backend/reference.js';

/**
 * A reference backend whose attention throws `fault()` while armed: a fault inside the forward pass,
 * injected through the public `backend` option (whatever the operations' argument lists are).
 */
export function faultyBackend(): { backend: Backend; arm: (fault: (() => unknown) | null) => void } {
  const inner = new ReferenceBackend();
  let fault: (() => unknown) | null = null;
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (prop === 'attention') {
        return (...args: unknown[]) => {
          if (fault) throw fault();
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { backend, arm: (f) => (fault = f) };
}
