// View ops: new shape/strides/offset over the same storage, no copy. Their backward maps the
// gradient back to the input's shape.
import { apply1, defineOp } from '../op';
import { checkShape, contiguousStrides, normAxis, numel, shapeStr } from '../shape';
import { Tensor, contiguousCopy } from '../tensor';
import { cast, zerosLike } from './elementwise';
import { sumTo } from './reduce';
import { native } from '../../native';
import { DEVICE_IDS } from '../device';

function viewOf(x: Tensor, shape: number[], strides: number[], offset: number): Tensor {
  return new Tensor(x.storage, shape, x.dtype, strides, offset);
}

function resolveShape(x: Tensor, shape: number[], where: string): number[] {
  if (!Array.isArray(shape)) throw new Error(`${where}: shape must be an array, got ${JSON.stringify(shape)}`);
  const out = shape.slice();
  const inferIdx = out.indexOf(-1);
  if (out.filter((s) => s === -1).length > 1) throw new Error(`${where}: only one dimension can be -1, got ${shapeStr(shape)}`);
  if (inferIdx >= 0) {
    const known = numel(out.filter((_, i) => i !== inferIdx));
    if (known === 0 || x.size % known !== 0) throw new Error(`${where}: cannot reshape ${shapeStr(x.shape)} (${x.size} elements) into ${shapeStr(shape)}`);
    out[inferIdx] = x.size / known;
  }
  checkShape(out, where);
  if (numel(out) !== x.size) throw new Error(`${where}: cannot reshape ${shapeStr(x.shape)} (${x.size} elements) into ${shapeStr(shape)} (${numel(out)} elements)`);
  return out;
}

export const reshapeOp = defineOp<{ shape: number[] }>({
  name: 'reshape',
  forward([x], attrs) {
    const shape = resolveShape(x, attrs.shape, 'reshape');
    if (x.isContiguous()) return [viewOf(x, shape, contiguousStrides(shape), x.offset)];
    const c = contiguousCopy(x);
    const v = viewOf(c, shape, contiguousStrides(shape), 0);
    c.dispose();
    return [v];
  },
  backward({ inputs: [x] }, [g]) {
    return [g ? reshape(g, x.shape) : null];
  },
});

export function reshape(x: Tensor, shape: number[]): Tensor {
  return apply1(reshapeOp, [x], { shape });
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  const s = normAxis(startDim, x.ndim, 'flatten');
  const e = normAxis(endDim, x.ndim, 'flatten');
  if (e < s) throw new Error(`flatten: endDim ${endDim} is before startDim ${startDim}`);
  return reshape(x, [...x.shape.slice(0, s), numel(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}

export const permuteOp = defineOp<{ dims: number[] }>({
  name: 'permute',
  forward([x], { dims }) {
    if (!Array.isArray(dims) || dims.length !== x.ndim) throw new Error(`permute: expected ${x.ndim} dimensions for a tensor of shape ${shapeStr(x.shape)}, got ${JSON.stringify(dims)}`);
    const d = dims.map((a) => normAxis(a, x.ndim, 'permute'));
    if (new Set(d).size !== d.length) throw new Error(`permute: repeated dimension in ${JSON.stringify(dims)}`);
    return [viewOf(x, d.map((i) => x.shape[i]), d.map((i) => x.strides[i]), x.offset)];
  },
  backward({ inputs: [x], attrs: { dims } }, [g]) {
    if (!g) return [null];
    const d = dims.map((a) => normAxis(a, x.ndim, 'permute'));
    const inv = new Array<number>(d.length);
    d.forEach((a, i) => (inv[a] = i));
    return [permute(g, inv)];
  },
});

export function permute(x: Tensor, dims: number[]): Tensor {
  return apply1(permuteOp, [x], { dims });
}

export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  const a = normAxis(d0, x.ndim, 'transpose'), b = normAxis(d1, x.ndim, 'transpose');
  const dims = x.shape.map((_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(x, dims);
}

export const narrowOp = defineOp<{ dim: number; start: number; length: number }>({
  name: 'narrow',
  forward([x], { dim, start, length }) {
    const d = normAxis(dim, x.ndim, 'narrow');
    if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[d]) {
      throw new Error(`narrow: range [${start}, ${start + length}) is outside dimension ${dim} of size ${x.shape[d]}`);
    }
    const shape = x.shape.slice();
    shape[d] = length;
    return [viewOf(x, shape, x.strides.slice(), x.offset + start * x.strides[d])];
  },
  backward({ inputs: [x], attrs: { dim, start } }, [g]) {
    if (!g) return [null];
    // Scatter the gradient into zeros shaped like the input.
    const z = zerosLike(x.dtype === g.dtype ? x : cast(x, g.dtype));
    const d = normAxis(dim, x.ndim, 'narrow');
    const dst = viewOf(z, g.shape.slice(), z.strides.slice(), start * z.strides[d]);
    native.run('copy_strided', DEVICE_IDS[g.device], [g.nativeArg()], [dst.nativeArg()], {});
    dst.dispose();
    return [z];
  },
});

export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  return apply1(narrowOp, [x], { dim, start, length });
}

/** Python-style slice on one dimension: x[start:end] along dim (negative indices allowed). */
export function slice(x: Tensor, dim: number, start = 0, end?: number): Tensor {
  const d = normAxis(dim, x.ndim, 'slice');
  const n = x.shape[d];
  const norm = (v: number) => Math.min(n, Math.max(0, v < 0 ? v + n : v));
  const s = norm(start), e = norm(end ?? n);
  return narrow(x, d, s, Math.max(0, e - s));
}

export const expandOp = defineOp<{ shape: number[] }>({
  name: 'expand',
  forward([x], { shape }) {
    if (!Array.isArray(shape) || shape.length < x.ndim) throw new Error(`expand: cannot expand ${shapeStr(x.shape)} to ${JSON.stringify(shape)}`);
    const nd = shape.length;
    const out = shape.slice();
    const strides = new Array<number>(nd).fill(0);
    for (let i = 0; i < nd; i++) {
      const j = i - (nd - x.ndim);
      const src = j >= 0 ? x.shape[j] : 1;
      if (out[i] === -1) {
        if (j < 0) throw new Error(`expand: -1 is not allowed for new leading dimensions`);
        out[i] = src;
      }
      if (src !== out[i] && src !== 1) throw new Error(`expand: cannot expand ${shapeStr(x.shape)} to ${shapeStr(shape)} (dimension ${i}: ${src} vs ${out[i]})`);
      strides[i] = j >= 0 && src === out[i] ? x.strides[j] : 0;
    }
    checkShape(out, 'expand');
    return [viewOf(x, out, strides, x.offset)];
  },
  backward({ inputs: [x] }, [g]) {
    return [g ? sumTo(g, x.shape) : null];
  },
});

export function expand(x: Tensor, shape: number[]): Tensor {
  return apply1(expandOp, [x], { shape });
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normAxis(dim, x.ndim + 1, 'unsqueeze');
  const shape = x.shape.slice();
  shape.splice(d, 0, 1);
  return reshape(x, shape);
}

export function squeeze(x: Tensor, dim?: number): Tensor {
  if (dim === undefined) return reshape(x, x.shape.filter((s) => s !== 1));
  const d = normAxis(dim, x.ndim, 'squeeze');
  if (x.shape[d] !== 1) return reshape(x, x.shape.slice());
  const shape = x.shape.slice();
  shape.splice(d, 1);
  return reshape(x, shape);
}

export const contiguousOp = defineOp({
  name: 'contiguous',
  kernel: 'copy',
  inputLayout: 'strided',
  infer([x]) {
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  backward(_c, [g]) {
    return [g];
  },
});

/** The tensor itself when already contiguous (a new reference), else a contiguous copy. */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous()) return reshape(x, x.shape.slice());
  return apply1(contiguousOp, [x], {});
}
