// Deterministic test inputs for the op harness.
import * as sc from '../../src';
import type { InputSpec } from './case';
import type { Ref } from './reference';

export function hostValues(spec: InputSpec, seed: number): Float64Array {
  const g = new sc.Generator(seed);
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    switch (spec.kind ?? 'randn') {
      case 'randn': v[i] = g.normal(); break;
      case 'positive': v[i] = 0.5 + 1.5 * g.next(); break;
      case 'unit': v[i] = g.next(); break;
      case 'mask': v[i] = g.next() < 0.5 ? 1 : 0; break;
      case 'index': v[i] = Math.floor(g.next() * (spec.n ?? 2)); break;
    }
  }
  return v;
}

/** Builds a tensor holding `vals` (row-major for spec.shape), optionally as a transposed view. */
export function makeTensor(spec: InputSpec, vals: Float64Array, dtype: 'float32' | 'float64', device: sc.Device, requiresGrad: boolean): sc.Tensor {
  const shape = spec.shape;
  if (spec.noncontig && shape.length >= 2) {
    // Store the transpose of the last two dims, then transpose back: same values, not contiguous.
    const nd = shape.length;
    const tshape = [...shape.slice(0, -2), shape[nd - 1], shape[nd - 2]];
    const H = shape[nd - 2], W = shape[nd - 1];
    const tv = new Float64Array(vals.length);
    for (let b = 0; b < vals.length / (H * W); b++)
      for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) tv[b * H * W + j * H + i] = vals[b * H * W + i * W + j];
    const base = sc.tensor(tv, tshape, { dtype, device });
    const view = sc.noGrad(() => base.transpose(nd - 2, nd - 1));
    base.dispose();
    if (requiresGrad) view.requiresGrad = true;
    return view;
  }
  return sc.tensor(dtype === 'float32' ? Float32Array.from(vals) : vals, shape, { dtype, device, requiresGrad });
}

export function toRef(vals: Float64Array, shape: number[], dtype: 'float32' | 'float64'): Ref {
  // The reference sees exactly the values the backend sees (rounded to the input dtype).
  return { data: dtype === 'float32' ? Float64Array.from(Float32Array.from(vals)) : vals, shape };
}

/** Normalised mean squared error: sum((a-b)^2) / max(sum(b^2), tiny). */
export function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Number(a[i]) - Number(b[i]);
    num += d * d;
    den += Number(b[i]) * Number(b[i]);
  }
  if (Number.isNaN(num)) return Infinity;
  return num / Math.max(den, 1e-30);
}
