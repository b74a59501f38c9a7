// Reductions (sum, mean, max, min, argmax, argmin, var), softmax and log-softmax.
import { apply1, defineOp } from '../op';
import { normAxes, normAxis, numel, sameShape, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { affine, cast, div, eq, mul, sub, square } from './elementwise';
import { expand, reshape } from './view';

type ReduceAttrs = { op: 'sum' | 'mean' | 'max' | 'min' | 'argmax' | 'argmin'; axes: number[]; keepdim: boolean };

function keptShape(x: Tensor, axes: number[], keepdim: boolean): number[] {
  const out: number[] = [];
  x.shape.forEach((s, i) => {
    if (!axes.includes(i)) out.push(s);
    else if (keepdim) out.push(1);
  });
  return out;
}

export const reduceOp = defineOp<ReduceAttrs>({
  name: 'reduce',
  inputLayout: 'strided',
  infer([x], { op, axes, keepdim }) {
    if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`${op}: expected a float tensor, got ${x.dtype}`);
    for (const a of axes) {
      if (x.shape[a] === 0 && op !== 'sum' && op !== 'mean') throw new Error(`${op}: cannot reduce over an empty dimension ${a} of ${shapeStr(x.shape)}`);
    }
    return [{ shape: keptShape(x, axes, keepdim), dtype: op === 'argmax' || op === 'argmin' ? 'int32' : x.dtype }];
  },
  kernelAttrs: ({ op, axes }) => ({ op, axes }),
  backward({ inputs: [x], outputs: [y], attrs: { op, axes } }, [g]) {
    if (!g || op === 'argmax' || op === 'argmin') return [null];
    const kshape = keptShape(x, axes, true);
    const gk = reshape(g, kshape);
    if (op === 'sum') return [expand(gk, x.shape)];
    if (op === 'mean') {
      const n = axes.reduce((a, d) => a * x.shape[d], 1);
      return [affine(expand(gk, x.shape), 1 / n, 0)];
    }
    // max/min: the gradient goes to the elements equal to the result, shared between ties.
    const mask = cast(eq(x, reshape(y, kshape)), x.dtype);
    const count = reduce('sum', mask, axes, true);
    return [mul(mask, div(gk, count))];
  },
});

export function reduce(op: ReduceAttrs['op'], x: Tensor, dims?: number | number[] | null, keepdim = false): Tensor {
  const axes = normAxes(dims, x.ndim, op);
  if (x.ndim === 0) return reshape(x, []);
  return apply1(reduceOp, [x], { op, axes, keepdim });
}

export const sum = (x: Tensor, dims?: number | number[] | null, keepdim = false) => reduce('sum', x, dims, keepdim);
export const mean = (x: Tensor, dims?: number | number[] | null, keepdim = false) => reduce('mean', x, dims, keepdim);
export const max = (x: Tensor, dims?: number | number[] | null, keepdim = false) => reduce('max', x, dims, keepdim);
export const min = (x: Tensor, dims?: number | number[] | null, keepdim = false) => reduce('min', x, dims, keepdim);
export const argmax = (x: Tensor, dim: number, keepdim = false) => reduce('argmax', x, normAxis(dim, x.ndim, 'argmax'), keepdim);
export const argmin = (x: Tensor, dim: number, keepdim = false) => reduce('argmin', x, normAxis(dim, x.ndim, 'argmin'), keepdim);

/** Variance over dims; unbiased (divide by n - 1) by default, like PyTorch. */
export function variance(x: Tensor, dims?: number | number[] | null, { unbiased = true, keepdim = false } = {}): Tensor {
  const axes = normAxes(dims, x.ndim, 'var');
  const n = axes.reduce((a, d) => a * x.shape[d], 1);
  const m = mean(x, axes, true);
  const ss = sum(square(sub(x, m)), axes, keepdim);
  return affine(ss, 1 / Math.max(1, unbiased ? n - 1 : n), 0);
}

/** Sums a broadcast gradient back to `shape` (the inverse of broadcasting). */
export function sumTo(g: Tensor, shape: number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return numel(shape) === s.size && !sameShape(s.shape, shape) ? reshape(s, shape) : s;
}

// ---- softmax ------------------------------------------------------------------------------

type SoftmaxAttrs = { dim: number; log: boolean };

export const softmaxBackwardOp = defineOp<SoftmaxAttrs>({
  name: 'softmax_backward',
  infer([g, y]) {
    return [{ shape: y.shape.slice(), dtype: y.dtype }];
  },
});

export const softmaxOp = defineOp<SoftmaxAttrs>({
  name: 'softmax',
  infer([x], { dim }) {
    if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`softmax: expected a float tensor, got ${x.dtype}`);
    normAxis(dim, x.ndim, 'softmax');
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  backward({ outputs: [y], attrs }, [g]) {
    return [g ? apply1(softmaxBackwardOp, [g, y], attrs) : null];
  },
});

export function softmax(x: Tensor, dim = -1): Tensor {
  return apply1(softmaxOp, [x], { dim: normAxis(dim, x.ndim, 'softmax'), log: false });
}

export function logSoftmax(x: Tensor, dim = -1): Tensor {
  return apply1(softmaxOp, [x], { dim: normAxis(dim, x.ndim, 'logSoftmax'), log: true });
}
