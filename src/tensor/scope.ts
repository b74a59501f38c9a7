// Scoped disposal (tidy/keep): every tensor created inside tidy(fn) is disposed when fn returns,
// except the tensors in its result and those passed to keep().
import type { Tensor } from './tensor';

const scopes: Set<Tensor>[] = [];

export function trackInScope(t: Tensor): void {
  if (scopes.length > 0) scopes[scopes.length - 1].add(t);
}

/** Removes t from every open scope, so no tidy() disposes it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(v: unknown, out: Set<Tensor>, seen: Set<unknown>, isTensor: (x: unknown) => x is Tensor): void {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (isTensor(v)) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collect(x, out, seen, isTensor);
  else if (v instanceof Map) for (const x of v.values()) collect(x, out, seen, isTensor);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, seen, isTensor);
}

export function tidyWith<T>(fn: () => T, isTensor: (x: unknown) => x is Tensor): T {
  if (typeof fn !== 'function') throw new Error('tidy: expected a function');
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new Error('tidy: fn returned a Promise; tidy scopes are synchronous (await outside tidy)');
  }
  const survivors = new Set<Tensor>();
  collect(result, survivors, new Set(), isTensor);
  for (const t of scope) {
    if (survivors.has(t)) {
      if (scopes.length > 0) scopes[scopes.length - 1].add(t);
    } else t.dispose();
  }
  return result;
}
