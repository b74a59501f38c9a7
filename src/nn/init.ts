// Parameter initialisation (PyTorch's defaults), drawn from the seedable default generator.
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/create';
import { DType } from '../tensor/dtype';
import { defaultGenerator, Generator } from '../tensor/random';

export function fanIn(shape: number[]): number {
  return shape.length < 2 ? shape[0] : shape.slice(1).reduce((a, b) => a * b, 1);
}

export function uniform(shape: number[], bound: number, dtype: DType = 'float32', g: Generator = defaultGenerator): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (g.next() * 2 - 1) * bound;
  return tensor(v, shape, { dtype });
}

export function normal(shape: number[], std: number, dtype: DType = 'float32', g: Generator = defaultGenerator): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = g.normal() * std;
  return tensor(v, shape, { dtype });
}

/** PyTorch's default for Conv/Linear weights: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
export function defaultWeight(shape: number[], dtype: DType = 'float32'): Tensor {
  return uniform(shape, 1 / Math.sqrt(fanIn(shape)), dtype);
}

/** PyTorch's default bias: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) with the weight's fan-in. */
export function defaultBias(n: number, weightFanIn: number, dtype: DType = 'float32'): Tensor {
  return uniform([n], weightFanIn > 0 ? 1 / Math.sqrt(weightFanIn) : 0, dtype);
}

/** He-normal (fan_in, ReLU gain) for users who prefer it. */
export function kaimingNormal(shape: number[], dtype: DType = 'float32'): Tensor {
  return normal(shape, Math.sqrt(2 / fanIn(shape)), dtype);
}
