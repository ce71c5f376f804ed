// Helpers for the NestJS interop scripts: plain ESM, so decorators are
// applied by hand (what the TypeScript compiler would emit).
import 'reflect-metadata';

/** Applies method decorators to `Class.prototype[name]`. */
export function decorateMethod(Class, name, ...decorators) {
  const proto = Class.prototype;
  let descriptor = Object.getOwnPropertyDescriptor(proto, name);
  for (const d of decorators.reverse()) {
    descriptor = d(proto, name, descriptor) ?? descriptor;
  }
  Object.defineProperty(proto, name, descriptor);
}

/** Applies class decorators. */
export function decorateClass(Class, ...decorators) {
  let out = Class;
  for (const d of decorators.reverse()) {
    out = d(out) ?? out;
  }
  return out;
}
