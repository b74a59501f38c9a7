// Tensor methods, attached to the prototype from the op table so that tensor.ts does not
// depend on the ops (PyTorch semantics, camelCase names).
import { Device, checkDevice } from './device';
import { DType, checkDType } from './dtype';
import { Tensor } from './tensor';
import * as E from './ops/elementwise';
import * as R from './ops/reduce';
import * as V from './ops/view';
import * as L from './ops/linalg';
import { toDevice } from './ops/transfer';
import { toNdarray } from './create';
import { backward, detach, BackwardOptions } from '../autograd/engine';
import type ndarray from 'ndarray';

type Dims = number | number[] | null | undefined;

declare module './tensor' {
  interface Tensor {
    add(o: Tensor | number): Tensor;
    sub(o: Tensor | number): Tensor;
    mul(o: Tensor | number): Tensor;
    div(o: Tensor | number): Tensor;
    pow(o: Tensor | number): Tensor;
    maximum(o: Tensor | number): Tensor;
    minimum(o: Tensor | number): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    abs(): Tensor;
    square(): Tensor;
    relu(): Tensor;
    gelu(): Tensor;
    sigmoid(): Tensor;
    tanh(): Tensor;
    clamp(min?: number | null, max?: number | null): Tensor;
    eq(o: Tensor | number): Tensor;
    ne(o: Tensor | number): Tensor;
    lt(o: Tensor | number): Tensor;
    le(o: Tensor | number): Tensor;
    gt(o: Tensor | number): Tensor;
    ge(o: Tensor | number): Tensor;
    sum(dims?: Dims, keepdim?: boolean): Tensor;
    mean(dims?: Dims, keepdim?: boolean): Tensor;
    max(dims?: Dims, keepdim?: boolean): Tensor;
    min(dims?: Dims, keepdim?: boolean): Tensor;
    argmax(dim: number, keepdim?: boolean): Tensor;
    argmin(dim: number, keepdim?: boolean): Tensor;
    var(dims?: Dims, opts?: { unbiased?: boolean; keepdim?: boolean }): Tensor;
    softmax(dim?: number): Tensor;
    logSoftmax(dim?: number): Tensor;
    matmul(o: Tensor): Tensor;
    reshape(...shape: (number | number[])[]): Tensor;
    view(...shape: (number | number[])[]): Tensor;
    flatten(startDim?: number, endDim?: number): Tensor;
    permute(...dims: (number | number[])[]): Tensor;
    transpose(d0: number, d1: number): Tensor;
    narrow(dim: number, start: number, length: number): Tensor;
    slice(dim: number, start?: number, end?: number): Tensor;
    expand(...shape: (number | number[])[]): Tensor;
    squeeze(dim?: number): Tensor;
    unsqueeze(dim: number): Tensor;
    contiguous(): Tensor;
    clone(): Tensor;
    to(target: Device | DType | string): Tensor;
    cpu(): Tensor;
    cuda(): Tensor;
    detach(): Tensor;
    backward(grad?: Tensor | null, opts?: BackwardOptions): void;
    requiresGrad_(v?: boolean): Tensor;
    zeroGrad(): void;
    toNdarray(): ndarray.NdArray;
  }
}

const flat = (args: (number | number[])[]): number[] => (args.length === 1 && Array.isArray(args[0]) ? args[0] : (args as number[]));

const P = Tensor.prototype;
P.add = function (o) { return E.add(this, o); };
P.sub = function (o) { return E.sub(this, o); };
P.mul = function (o) { return E.mul(this, o); };
P.div = function (o) { return E.div(this, o); };
P.pow = function (o) { return E.pow(this, o); };
P.maximum = function (o) { return E.maximum(this, o); };
P.minimum = function (o) { return E.minimum(this, o); };
P.neg = function () { return E.neg(this); };
P.exp = function () { return E.exp(this); };
P.log = function () { return E.log(this); };
P.sqrt = function () { return E.sqrt(this); };
P.abs = function () { return E.abs(this); };
P.square = function () { return E.square(this); };
P.relu = function () { return E.relu(this); };
P.gelu = function () { return E.gelu(this); };
P.sigmoid = function () { return E.sigmoid(this); };
P.tanh = function () { return E.tanh(this); };
P.clamp = function (min, max) { return E.clamp(this, min, max); };
P.eq = function (o) { return E.eq(this, o); };
P.ne = function (o) { return E.ne(this, o); };
P.lt = function (o) { return E.lt(this, o); };
P.le = function (o) { return E.le(this, o); };
P.gt = function (o) { return E.gt(this, o); };
P.ge = function (o) { return E.ge(this, o); };
P.sum = function (d, k) { return R.sum(this, d, k); };
P.mean = function (d, k) { return R.mean(this, d, k); };
P.max = function (d, k) { return R.max(this, d, k); };
P.min = function (d, k) { return R.min(this, d, k); };
P.argmax = function (d, k) { return R.argmax(this, d, k); };
P.argmin = function (d, k) { return R.argmin(this, d, k); };
P.var = function (d, o) { return R.variance(this, d, o); };
P.softmax = function (d = -1) { return R.softmax(this, d); };
P.logSoftmax = function (d = -1) { return R.logSoftmax(this, d); };
P.matmul = function (o) { return L.matmul(this, o); };
P.reshape = function (...s) { return V.reshape(this, flat(s)); };
P.view = function (...s) {
  if (!this.isContiguous()) throw new Error('view: tensor is not contiguous; use reshape() (which copies) or contiguous() first');
  return V.reshape(this, flat(s));
};
P.flatten = function (s = 0, e = -1) { return V.flatten(this, s, e); };
P.permute = function (...d) { return V.permute(this, flat(d)); };
P.transpose = function (a, b) { return V.transpose(this, a, b); };
P.narrow = function (d, s, l) { return V.narrow(this, d, s, l); };
P.slice = function (d, s, e) { return V.slice(this, d, s, e); };
P.expand = function (...s) { return V.expand(this, flat(s)); };
P.squeeze = function (d) { return V.squeeze(this, d); };
P.unsqueeze = function (d) { return V.unsqueeze(this, d); };
P.contiguous = function () { return V.contiguous(this); };
P.clone = function () { return E.cast(this, this.dtype); };
P.to = function (target) {
  if (target === 'cpu' || target === 'cuda' || (typeof target === 'string' && target.startsWith('cuda:'))) {
    const d = checkDevice(target, 'to');
    return d === this.device ? V.reshape(this, this.shape) : toDevice(this, d);
  }
  const dt = checkDType(target, 'to');
  return dt === this.dtype ? V.reshape(this, this.shape) : E.cast(this, dt);
};
P.cpu = function () { return this.to('cpu'); };
P.cuda = function () { return this.to('cuda'); };
P.detach = function () { return detach(this); };
P.backward = function (g, o) { backward(this, g, o); };
P.requiresGrad_ = function (v = true) {
  if (v && this.dtype !== 'float32' && this.dtype !== 'float64') throw new Error(`requiresGrad needs a float dtype, got ${this.dtype}`);
  if (!v && !this.isLeaf) throw new Error('requiresGrad_(false) is only allowed on leaf tensors; use detach()');
  this.requiresGrad = v;
  return this;
};
P.zeroGrad = function () {
  if (this.grad) {
    this.grad.dispose();
    this.grad = null;
  }
};
P.toNdarray = function () { return toNdarray(this); };
