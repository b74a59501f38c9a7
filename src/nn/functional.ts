// sc.F: the functional API (PyTorch's torch.nn.functional, camelCase).
export { relu, gelu, sigmoid, tanh, exp, log, sqrt, abs, clamp, add, sub, mul, div, pow, where, maximum, minimum } from '../tensor/ops/elementwise';
export { softmax, logSoftmax, sum, mean, max, min, argmax, argmin, variance } from '../tensor/ops/reduce';
export { reshape, permute, transpose, narrow, slice, expand, squeeze, unsqueeze, contiguous, flatten } from '../tensor/ops/view';
export { matmul, bmm, linear } from '../tensor/ops/linalg';
export { conv2d, convTranspose2d } from '../tensor/ops/conv';
export type { Conv2dOptions } from '../tensor/ops/conv';
export { decayAttention, masa } from '../tensor/ops/attention';
export type { MasaParams } from '../tensor/ops/attention';
export { tpen } from '../tensor/ops/tpen';
export { bceWithLogits, diceLoss, mseLoss } from '../tensor/ops/losses';
export type { Reduction } from '../tensor/ops/losses';
