// 2-D pooling (max with saved argmax indices, average, adaptive average) and resizing
// (bilinear / nearest with PyTorch's coordinate rules), each with a dedicated backward kernel.
import { apply1, defineOp } from '../op';
import { isGradEnabled } from '../grad-mode';
import { pair, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { check4d, runOutputs } from './run';

export interface Pool2dOptions {
  kernelSize: number | number[];
  /** Default: kernelSize. */
  stride?: number | number[] | null;
  padding?: number | number[];
  /** avgPool2d only: count padded zeros in the divisor (PyTorch's default, true). */
  countIncludePad?: boolean;
}

type PoolAttrs = { kernelSize: number[]; stride: number[]; padding: number[]; countIncludePad?: boolean };

function poolAttrs(where: string, o: Pool2dOptions): PoolAttrs {
  if (!o || o.kernelSize === undefined) throw new Error(`${where}: kernelSize is required`);
  const kernelSize = pair(o.kernelSize, 'kernelSize', where);
  const stride = o.stride == null ? kernelSize.slice() : pair(o.stride, 'stride', where);
  const padding = pair(o.padding ?? 0, 'padding', where);
  if (kernelSize.some((k) => k < 1)) throw new Error(`${where}: kernelSize must be >= 1, got ${JSON.stringify(o.kernelSize)}`);
  if (stride.some((s) => s < 1)) throw new Error(`${where}: stride must be >= 1, got ${JSON.stringify(o.stride)}`);
  if (padding.some((p, i) => p < 0 || p > kernelSize[i] / 2)) {
    throw new Error(`${where}: padding must be between 0 and half the kernel size, got padding ${JSON.stringify(o.padding)} for kernel ${kernelSize.join('x')}`);
  }
  return { kernelSize, stride, padding };
}

function poolShape(x: Tensor, a: PoolAttrs, where: string): number[] {
  check4d(x, where);
  const [N, C, H, W] = x.shape;
  const out = [H, W].map((n, i) => Math.floor((n + 2 * a.padding[i] - a.kernelSize[i]) / a.stride[i]) + 1);
  if (out[0] < 1 || out[1] < 1) throw new Error(`${where}: kernel ${a.kernelSize.join('x')} is larger than the padded input ${H + 2 * a.padding[0]}x${W + 2 * a.padding[1]}`);
  return [N, C, out[0], out[1]];
}

type GradAttrs = { inputShape: number[] };
const gradShape = ([g]: Tensor[], { inputShape }: GradAttrs) => [{ shape: inputShape.slice(), dtype: g.dtype }];

// ---- max pool -----------------------------------------------------------------------------

export const maxPool2dBackwardOp = defineOp<GradAttrs>({ name: 'max_pool2d_backward', infer: gradShape, kernelAttrs: () => ({}) });

export const maxPool2dOp = defineOp<PoolAttrs>({
  name: 'max_pool2d',
  infer([x], a) {
    const shape = poolShape(x, a, 'maxPool2d');
    return [{ shape, dtype: x.dtype }, { shape, dtype: 'int32' }];
  },
  forward(inputs, attrs, saved) {
    const [y, indices] = runOutputs(maxPool2dOp, inputs, maxPool2dOp.infer!(inputs, attrs), attrs);
    // The argmax indices are only needed when a backward can follow.
    if (isGradEnabled() && inputs[0].requiresGrad) saved.indices = indices;
    else indices.dispose();
    return [y];
  },
  backward({ inputs: [x], saved }, [g]) {
    return [g ? apply1(maxPool2dBackwardOp, [g, saved.indices as Tensor], { inputShape: x.shape }) : null];
  },
});

export function maxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  return apply1(maxPool2dOp, [x], poolAttrs('maxPool2d', opts));
}

// ---- average pool -------------------------------------------------------------------------

export const avgPool2dBackwardOp = defineOp<PoolAttrs & GradAttrs>({ name: 'avg_pool2d_backward', infer: gradShape });

export const avgPool2dOp = defineOp<PoolAttrs>({
  name: 'avg_pool2d',
  infer([x], a) {
    return [{ shape: poolShape(x, a, 'avgPool2d'), dtype: x.dtype }];
  },
  backward({ inputs: [x], attrs }, [g]) {
    return [g ? apply1(avgPool2dBackwardOp, [g], { ...attrs, inputShape: x.shape }) : null];
  },
});

export function avgPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  return apply1(avgPool2dOp, [x], { ...poolAttrs('avgPool2d', opts), countIncludePad: opts.countIncludePad ?? true });
}

// ---- adaptive average pool ----------------------------------------------------------------

export const adaptiveAvgPool2dBackwardOp = defineOp<GradAttrs>({ name: 'adaptive_avg_pool2d_backward', infer: gradShape, kernelAttrs: () => ({}) });

export const adaptiveAvgPool2dOp = defineOp<{ outputSize: number[] }>({
  name: 'adaptive_avg_pool2d',
  infer([x], { outputSize }) {
    check4d(x, 'adaptiveAvgPool2d');
    return [{ shape: [x.shape[0], x.shape[1], ...outputSize], dtype: x.dtype }];
  },
  kernelAttrs: () => ({}),
  backward({ inputs: [x] }, [g]) {
    return [g ? apply1(adaptiveAvgPool2dBackwardOp, [g], { inputShape: x.shape }) : null];
  },
});

/** outputSize: one size for both, or [h, w] where null keeps the input's size. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | (number | null)[]): Tensor {
  check4d(x, 'adaptiveAvgPool2d');
  const req = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
  if (!Array.isArray(req) || req.length !== 2) throw new Error(`adaptiveAvgPool2d: outputSize must be a number or [h, w], got ${JSON.stringify(outputSize)}`);
  const size = req.map((s, i) => (s === null ? x.shape[2 + i] : s));
  if (!size.every((s) => Number.isInteger(s) && s >= 1)) throw new Error(`adaptiveAvgPool2d: output sizes must be positive integers, got ${JSON.stringify(outputSize)}`);
  return apply1(adaptiveAvgPool2dOp, [x], { outputSize: size });
}

// ---- interpolate --------------------------------------------------------------------------

export interface InterpolateOptions {
  size?: number | number[];
  scaleFactor?: number | number[];
  mode?: 'bilinear' | 'nearest';
  alignCorners?: boolean;
}

/** scales: the given scale factors (PyTorch maps coordinates with them), 0 where a size was given. */
type InterpAttrs = { size: number[]; scales: number[]; mode: 'bilinear' | 'nearest'; alignCorners: boolean };

export const interpolateBackwardOp = defineOp<InterpAttrs & GradAttrs>({ name: 'interpolate_backward', infer: gradShape });

export const interpolateOp = defineOp<InterpAttrs>({
  name: 'interpolate',
  infer([x], { size }) {
    check4d(x, 'interpolate');
    return [{ shape: [x.shape[0], x.shape[1], ...size], dtype: x.dtype }];
  },
  kernelAttrs: ({ mode, alignCorners, scales }) => ({ mode, alignCorners, scales }),
  backward({ inputs: [x], attrs }, [g]) {
    return [g ? apply1(interpolateBackwardOp, [g], { ...attrs, inputShape: x.shape }) : null];
  },
});

export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  check4d(x, 'interpolate');
  const mode = opts.mode ?? 'nearest';
  if (mode !== 'bilinear' && mode !== 'nearest') throw new Error(`interpolate: mode must be 'bilinear' or 'nearest', got ${JSON.stringify(mode)}`);
  if (mode === 'nearest' && opts.alignCorners) throw new Error(`interpolate: alignCorners can only be set with mode 'bilinear'`);
  if ((opts.size == null) === (opts.scaleFactor == null)) throw new Error('interpolate: give exactly one of size or scaleFactor');
  const [H, W] = x.shape.slice(2);
  let size: number[], scales = [0, 0];
  if (opts.size != null) {
    size = typeof opts.size === 'number' ? [opts.size, opts.size] : opts.size;
    if (!Array.isArray(size) || size.length !== 2 || !size.every((s) => Number.isInteger(s) && s >= 1)) {
      throw new Error(`interpolate: size must be a positive integer or [h, w], got ${JSON.stringify(opts.size)}`);
    }
  } else {
    scales = typeof opts.scaleFactor === 'number' ? [opts.scaleFactor, opts.scaleFactor] : opts.scaleFactor!;
    if (!Array.isArray(scales) || scales.length !== 2 || !scales.every((s) => typeof s === 'number' && s > 0 && Number.isFinite(s))) {
      throw new Error(`interpolate: scaleFactor must be a positive number or [sh, sw], got ${JSON.stringify(opts.scaleFactor)}`);
    }
    size = [Math.floor(H * scales[0]), Math.floor(W * scales[1])];
    if (size[0] < 1 || size[1] < 1) throw new Error(`interpolate: scaleFactor ${JSON.stringify(opts.scaleFactor)} turns ${H}x${W} into an empty ${size.join('x')} output`);
  }
  return apply1(interpolateOp, [x], { size: size.slice(), scales: scales.slice(), mode, alignCorners: !!opts.alignCorners });
}
