// Gradient checking by central finite differences in float64.
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/create';
import { mul } from '../tensor/ops/elementwise';
import { sum } from '../tensor/ops/reduce';
import { tidy } from '../tensor/tensor';
import { backward, noGrad } from './engine';
import { Generator } from '../tensor/random';

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Check at most this many elements per input (evenly spread); default all up to 400. */
  maxElements?: number;
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  maxAbsError: number;
  worst: string;
}

/**
 * Checks d/dinputs of sum(fn(...inputs) * w) (w fixed random weights) against central
 * differences. Inputs must be float64 tensors; those with requiresGrad are checked.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-3;
  const maxEl = opts.maxElements ?? 400;
  for (const x of inputs) {
    if (x.dtype !== 'float64') throw new Error(`gradcheck: inputs must be float64, got ${x.dtype}`);
  }
  return tidy(() => {
    const hostVals = inputs.map((x) => Float64Array.from(x.toArray() as Float64Array));
    const make = (vals: Float64Array[], grad: boolean) =>
      inputs.map((x, i) => tensor(vals[i], x.shape, { dtype: 'float64', device: x.device, requiresGrad: grad && x.requiresGrad }));
    const probe = noGrad(() => fn(...make(hostVals, false)));
    const g = new Generator(opts.seed ?? 7);
    const w = tensor(Float64Array.from({ length: probe.size }, () => g.next() * 2 - 1), probe.shape, { dtype: 'float64', device: probe.device });
    const objective = (xs: Tensor[]) => sum(mul(fn(...xs), w));

    const leaves = make(hostVals, true);
    backward(objective(leaves));
    let maxAbs = 0, worst = '', ok = true;
    inputs.forEach((x, i) => {
      if (!x.requiresGrad) return;
      const analytic = leaves[i].grad ? (leaves[i].grad!.toArray() as Float64Array) : new Float64Array(x.size);
      const n = x.size;
      const step = Math.max(1, Math.ceil(n / maxEl));
      for (let j = 0; j < n; j += step) {
        const orig = hostVals[i][j];
        hostVals[i][j] = orig + eps;
        const fp = noGrad(() => objective(make(hostVals, false)).item());
        hostVals[i][j] = orig - eps;
        const fm = noGrad(() => objective(make(hostVals, false)).item());
        hostVals[i][j] = orig;
        const numeric = (fp - fm) / (2 * eps);
        const err = Math.abs(numeric - analytic[j]);
        if (err > maxAbs) {
          maxAbs = err;
          worst = `input ${i} element ${j}: analytic ${analytic[j]}, numeric ${numeric}`;
        }
        if (err > atol + rtol * Math.abs(numeric)) ok = false;
      }
    });
    return { ok, maxAbsError: maxAbs, worst };
  });
}
