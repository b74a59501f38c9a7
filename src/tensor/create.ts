// Creating tensors: from arrays and typed arrays, constants, ranges, random values, ndarrays.
import ndarray from 'ndarray';
import { native } from '../native';
import { Device, checkDevice } from './device';
import { DType, DTYPES, TypedArray, checkDType, dtypeOfArray } from './dtype';
import { checkShape, numel, shapeStr } from './shape';
import { Tensor } from './tensor';
import { Storage } from './storage';
import { full } from './ops/elementwise';
import { Generator, defaultGenerator } from './random';

export interface TensorOptions {
  dtype?: DType;
  device?: Device | string;
  requiresGrad?: boolean;
}

function flattenNested(v: unknown, shape: number[], out: number[], depth: number): void {
  if (Array.isArray(v)) {
    if (shape.length <= depth) shape.push(v.length);
    else if (shape[depth] !== v.length) throw new Error(`tensor: ragged nested array (dimension ${depth} has lengths ${shape[depth]} and ${v.length})`);
    for (const x of v) flattenNested(x, shape, out, depth + 1);
  } else {
    if (typeof v !== 'number' && typeof v !== 'boolean') throw new Error(`tensor: values must be numbers, got ${typeof v}`);
    if (depth !== shape.length) throw new Error('tensor: ragged nested array');
    out.push(Number(v));
  }
}

/** Copies host values into a new tensor on `device`. */
export function fromTyped(data: TypedArray, shape: number[], dtype: DType, device: Device): Tensor {
  const t = Tensor.empty(shape, dtype, device);
  if (t.size > 0) native.copyIn(t.storage.nativeHandle, 0, data);
  return t;
}

function finish(t: Tensor, opts: TensorOptions): Tensor {
  if (opts.requiresGrad) {
    if (t.dtype !== 'float32' && t.dtype !== 'float64') throw new Error(`requiresGrad needs a float dtype, got ${t.dtype}`);
    t.requiresGrad = true;
  }
  return t;
}

/**
 * sc.tensor(values, shape?, opts): values may be a (nested) array, a typed array or a number.
 * The dtype defaults to the typed array's, else float32.
 */
export function tensor(values: unknown, shape?: number[] | TensorOptions | null, opts: TensorOptions = {}): Tensor {
  if (shape && !Array.isArray(shape)) {
    opts = shape;
    shape = undefined;
  }
  const device = checkDevice(opts.device ?? 'cpu', 'tensor');
  let flat: ArrayLike<number> | TypedArray;
  let inferred: number[];
  if (typeof values === 'number') {
    flat = [values];
    inferred = [];
  } else if (ArrayBuffer.isView(values)) {
    flat = values as TypedArray;
    inferred = [(values as TypedArray).length];
  } else if (Array.isArray(values)) {
    const out: number[] = [];
    inferred = [];
    flattenNested(values, inferred, out, 0);
    flat = out;
  } else {
    throw new Error(`tensor: expected an array, a typed array or a number, got ${values === null ? 'null' : typeof values}`);
  }
  const dtype = checkDType(opts.dtype ?? dtypeOfArray(flat as TypedArray) ?? 'float32', 'tensor');
  const finalShape = shape ? checkShape(shape, 'tensor') : inferred;
  if (numel(finalShape) !== flat.length) {
    throw new Error(`tensor: ${flat.length} values do not fill shape ${shapeStr(finalShape)} (${numel(finalShape)} elements)`);
  }
  const Arr = DTYPES[dtype].array;
  let typed: TypedArray;
  if (dtypeOfArray(flat as TypedArray) === dtype) typed = flat as TypedArray;
  else if (dtype === 'int64') typed = BigInt64Array.from(Array.from(flat as ArrayLike<number>, (v) => BigInt(Math.trunc(Number(v)))));
  else {
    typed = new Arr(flat.length);
    for (let i = 0; i < flat.length; i++) (typed as Float64Array)[i] = Number((flat as ArrayLike<number>)[i]);
  }
  return finish(fromTyped(typed, finalShape, dtype, device), opts);
}

function constant(shape: number[], value: number, opts: TensorOptions, where: string): Tensor {
  const s = checkShape(shape, where);
  const dtype = checkDType(opts.dtype ?? 'float32', where);
  const device = checkDevice(opts.device ?? 'cpu', where);
  return finish(full(s, value, dtype, device), opts);
}

export const zeros = (shape: number[], opts: TensorOptions = {}) => constant(shape, 0, opts, 'zeros');
export const ones = (shape: number[], opts: TensorOptions = {}) => constant(shape, 1, opts, 'ones');
export function fullOf(shape: number[], value: number, opts: TensorOptions = {}): Tensor {
  return constant(shape, value, opts, 'full');
}
export const zerosLike = (t: Tensor, opts: TensorOptions = {}) => zeros(t.shape, { dtype: t.dtype, device: t.device, ...opts });
export const onesLike = (t: Tensor, opts: TensorOptions = {}) => ones(t.shape, { dtype: t.dtype, device: t.device, ...opts });
export const fullLike = (t: Tensor, v: number, opts: TensorOptions = {}) => fullOf(t.shape, v, { dtype: t.dtype, device: t.device, ...opts });

export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new Error(`arange: step must be a non-zero finite number, got ${step}`);
  const n = Math.max(0, Math.ceil((end - start) / step));
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) vals[i] = start + i * step;
  return tensor(vals, [n], { dtype: opts.dtype ?? 'float32', ...opts });
}

function randomTensor(shape: number[], opts: TensorOptions & { generator?: Generator }, where: string, draw: (g: Generator) => number): Tensor {
  const s = checkShape(shape, where);
  const dtype = checkDType(opts.dtype ?? 'float32', where);
  if (dtype !== 'float32' && dtype !== 'float64') throw new Error(`${where}: dtype must be float32 or float64, got ${dtype}`);
  const g = opts.generator ?? defaultGenerator;
  const n = numel(s);
  const vals = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) vals[i] = draw(g);
  return finish(fromTyped(vals, s, dtype, checkDevice(opts.device ?? 'cpu', where)), opts);
}

/** Uniform [0, 1). */
export const rand = (shape: number[], opts: TensorOptions & { generator?: Generator } = {}) => randomTensor(shape, opts, 'rand', (g) => g.next());
/** Standard normal. */
export const randn = (shape: number[], opts: TensorOptions & { generator?: Generator } = {}) => randomTensor(shape, opts, 'randn', (g) => g.normal());

/**
 * A tensor over an ndarray's values. Zero-copy when the data is a typed array (any strides) and
 * the tensor stays on the CPU with the same dtype: the tensor then shares the ndarray's memory;
 * otherwise the values are copied.
 */
export function fromNdarray(a: ndarray.NdArray, opts: TensorOptions = {}): Tensor {
  if (!a || !Array.isArray(a.shape) || !a.data) throw new Error('fromNdarray: expected an ndarray');
  const dt = dtypeOfArray(a.data as TypedArray);
  const device = checkDevice(opts.device ?? 'cpu', 'fromNdarray');
  if (dt && dt !== 'int64' && device === 'cpu' && (opts.dtype ?? dt) === dt && a.shape.length <= 8) {
    const data = a.data as unknown as TypedArray;
    const bytes = DTYPES[dt].bytes;
    const storage = Storage.wrap(data.buffer as ArrayBuffer);
    const t = new Tensor(storage, a.shape.slice(), dt, a.stride.slice(), a.offset + data.byteOffset / bytes);
    return finish(t, opts);
  }
  const n = numel(a.shape);
  const out = new Float64Array(n);
  const idx = new Array<number>(a.shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    out[i] = a.get(...idx) as number;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d] < a.shape[d]) break;
      idx[d] = 0;
    }
  }
  return tensor(out, a.shape.slice(), { dtype: opts.dtype ?? dt ?? 'float32', ...opts });
}

/**
 * An ndarray over the tensor's values. On the CPU this is zero-copy (the ndarray shares the
 * tensor's memory and keeps it alive); on other devices it is a copy.
 */
export function toNdarray(t: Tensor): ndarray.NdArray {
  t.assertAlive('toNdarray');
  if (t.device === 'cpu' && t.dtype !== 'int64') {
    const ab = native.hostView(t.storage.nativeHandle);
    const Arr = DTYPES[t.dtype].array;
    const data = new Arr(ab) as unknown as ndarray.Data<number>;
    return ndarray(data, t.shape.slice(), t.strides.slice(), t.offset);
  }
  return ndarray(t.toArray() as unknown as ndarray.Data<number>, t.shape.slice());
}
