// Joining and cutting tensors: cat (one kernel for any number of inputs), stack, split (views)
// and pad (constant, reflect, replicate; PyTorch's pad order, last dimension first).
import { apply1, defineOp, OpDef } from '../op';
import { normAxis, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { narrow, unsqueeze } from './view';
import { checkFloat } from './run';

export const catOp = defineOp<{ dim: number }>({
  name: 'cat',
  infer(xs, { dim }) {
    const first = xs[0];
    const shape = first.shape.slice();
    shape[dim] = 0;
    xs.forEach((t, i) => {
      if (t.dtype !== first.dtype) throw new Error(`cat: all tensors must have one dtype, but tensor 0 is ${first.dtype} and tensor ${i} ${t.dtype}`);
      if (t.ndim !== first.ndim || t.shape.some((s, d) => d !== dim && s !== first.shape[d])) {
        throw new Error(`cat: tensor ${i} has shape ${shapeStr(t.shape)}, which does not match ${shapeStr(first.shape)} outside dimension ${dim}`);
      }
      shape[dim] += t.shape[dim];
    });
    return [{ shape, dtype: first.dtype }];
  },
  backward({ inputs, attrs: { dim } }, [g]) {
    if (!g) return inputs.map(() => null);
    let start = 0;
    return inputs.map((t) => {
      const piece = narrow(g, dim, start, t.shape[dim]);
      start += t.shape[dim];
      return piece;
    });
  },
});

/** Concatenates tensors along dim (all equal except along dim). */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('cat: expected a non-empty array of tensors');
  if (!(tensors[0] instanceof Tensor)) throw new Error('cat: expected an array of tensors');
  return apply1(catOp, tensors, { dim: normAxis(dim, tensors[0].ndim, 'cat') });
}

/** Stacks equally shaped tensors along a new dimension dim. */
export function stack(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('stack: expected a non-empty array of tensors');
  const s0 = tensors[0].shape;
  tensors.forEach((t, i) => {
    if (t.shape.join() !== s0.join()) throw new Error(`stack: tensor ${i} has shape ${shapeStr(t.shape)} but tensor 0 has ${shapeStr(s0)}`);
  });
  const d = normAxis(dim, s0.length + 1, 'stack');
  return cat(tensors.map((t) => unsqueeze(t, d)), d);
}

/** Splits into views along dim: pieces of `sizes` (summing to the dimension), or chunks of one size (the last may be smaller). */
export function split(x: Tensor, sizes: number | number[], dim = 0): Tensor[] {
  const d = normAxis(dim, x.ndim, 'split');
  const n = x.shape[d];
  let parts: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes < 1) throw new Error(`split: chunk size must be a positive integer, got ${sizes}`);
    parts = [];
    for (let s = 0; s < n; s += sizes) parts.push(Math.min(sizes, n - s));
    if (n === 0) parts.push(0);
  } else {
    if (!Array.isArray(sizes) || !sizes.every((s) => Number.isInteger(s) && s >= 0)) throw new Error(`split: sizes must be non-negative integers, got ${JSON.stringify(sizes)}`);
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== n) throw new Error(`split: sizes ${JSON.stringify(sizes)} add up to ${total}, but dimension ${dim} has size ${n}`);
    parts = sizes;
  }
  let start = 0;
  return parts.map((len) => {
    const v = narrow(x, d, start, len);
    start += len;
    return v;
  });
}

// ---- pad ----------------------------------------------------------------------------------

export type PadMode = 'constant' | 'reflect' | 'replicate';
type PadAttrs = { before: number[]; after: number[]; mode: PadMode; value: number };

export const padBackwardOp = defineOp<PadAttrs & { inputShape: number[] }>({
  name: 'pad_backward',
  infer([g], { inputShape }) {
    return [{ shape: inputShape.slice(), dtype: g.dtype }];
  },
  kernelAttrs: ({ before, mode }) => ({ before, mode }),
});

export const padOp: OpDef<PadAttrs> = defineOp<PadAttrs>({
  name: 'pad',
  infer([x], { before, after, mode }) {
    checkFloat(x, 'pad');
    const shape = x.shape.map((s, d) => s + before[d] + after[d]);
    x.shape.forEach((s, d) => {
      if (shape[d] < 0) throw new Error(`pad: pads ${before[d]}, ${after[d]} leave a negative size for dimension ${d} of ${shapeStr(x.shape)}`);
      if (mode === 'reflect' && (before[d] >= s || after[d] >= s)) {
        throw new Error(`pad: reflect padding must be smaller than the dimension it pads, got ${before[d]}, ${after[d]} for dimension ${d} of size ${s}`);
      }
      if (mode === 'replicate' && s === 0 && before[d] + after[d] > 0) throw new Error(`pad: cannot replicate-pad the empty dimension ${d}`);
    });
    return [{ shape, dtype: x.dtype }];
  },
  kernelAttrs: ({ before, mode, value }) => ({ before, mode, value }),
  backward({ inputs: [x], attrs }, [g]) {
    if (!g) return [null];
    if (attrs.mode !== 'constant') return [apply1(padBackwardOp, [g], { ...attrs, inputShape: x.shape })];
    // Constant padding: the gradient is the un-padded window of g (a view), or, when some pads
    // are negative (crops), g padded back by the negated pads.
    if (attrs.before.some((b) => b < 0) || attrs.after.some((a) => a < 0)) {
      return [apply1(padOp, [g], { before: attrs.before.map((b) => -b), after: attrs.after.map((a) => -a), mode: 'constant', value: 0 })];
    }
    let v = g;
    x.shape.forEach((s, d) => {
      if (attrs.before[d] !== 0 || attrs.after[d] !== 0) v = narrow(v, d, attrs.before[d], s);
    });
    return [v];
  },
});

/**
 * Pads x. pads lists (before, after) pairs from the last dimension backwards, like PyTorch:
 * [left, right, top, bottom, ...]. Negative pads crop (constant mode only).
 */
export function pad(x: Tensor, pads: number[], opts: { mode?: PadMode; value?: number } = {}): Tensor {
  const mode = opts.mode ?? 'constant';
  if (mode !== 'constant' && mode !== 'reflect' && mode !== 'replicate') throw new Error(`pad: mode must be 'constant', 'reflect' or 'replicate', got ${JSON.stringify(mode)}`);
  if (!Array.isArray(pads) || pads.length % 2 !== 0 || !pads.every((p) => Number.isInteger(p))) throw new Error(`pad: pads must be an even-length list of integers, got ${JSON.stringify(pads)}`);
  if (pads.length / 2 > x.ndim) throw new Error(`pad: ${pads.length / 2} padded dimensions for a ${x.ndim}-D tensor ${shapeStr(x.shape)}`);
  if (mode !== 'constant' && pads.some((p) => p < 0)) throw new Error(`pad: negative pads are only allowed in constant mode, got ${JSON.stringify(pads)}`);
  if (mode !== 'constant' && pads.length / 2 >= x.ndim) throw new Error(`pad: ${mode} padding of ${pads.length / 2} dimensions needs a tensor with at least ${pads.length / 2 + 1} dimensions (batch or channel first), got ${shapeStr(x.shape)}`);
  const before = new Array<number>(x.ndim).fill(0), after = new Array<number>(x.ndim).fill(0);
  for (let i = 0; i < pads.length / 2; i++) {
    before[x.ndim - 1 - i] = pads[2 * i];
    after[x.ndim - 1 - i] = pads[2 * i + 1];
  }
  return apply1(padOp, [x], { before, after, mode, value: opts.value ?? 0 });
}
