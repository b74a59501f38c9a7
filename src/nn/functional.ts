// sc.F: the functional API (PyTorch's torch.nn.functional, camelCase).
export { relu, gelu, sigmoid, tanh, exp, log, sqrt, abs, clamp, add, sub, mul, div, pow, where, maximum, minimum } from '../tensor/ops/elementwise';
export { softmax, logSoftmax, sum, mean, max, min, argmax, argmin, variance } from '../tensor/ops/reduce';
export { reshape, permute, transpose, narrow, slice, expand, squeeze, unsqueeze, contiguous, flatten } from '../tensor/ops/view';
export { matmul, bmm, linear } from '../tensor/ops/linalg';
export { conv2d } from '../tensor/ops/conv';
export type { Conv2dOptions } from '../tensor/ops/conv';
export { maxPool2d, avgPool2d, adaptiveAvgPool2d, interpolate } from '../tensor/ops/pool';
export type { Pool2dOptions, InterpolateOptions } from '../tensor/ops/pool';
export { cat, stack, split, pad } from '../tensor/ops/concat';
export type { PadMode } from '../tensor/ops/concat';
export { batchNorm, layerNorm } from '../tensor/ops/norm';
export type { BatchNormOptions } from '../tensor/ops/norm';
export { dropout, dropout2d } from '../tensor/ops/dropout';
export type { DropoutOptions } from '../tensor/ops/dropout';
