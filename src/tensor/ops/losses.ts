// Segmentation losses: binary cross-entropy with logits (a fused, numerically stable kernel with
// a dedicated backward kernel), and Dice and MSE composed from existing ops.
import { apply1, defineOp } from '../op';
import { broadcastShapes, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { add, affine, div, mul, sigmoid, square, sub } from './elementwise';
import { mean, sum } from './reduce';

export type Reduction = 'mean' | 'sum' | 'none';
type BceAttrs = { posWeight: number };

function reduceLoss(loss: Tensor, reduction: Reduction, where: string): Tensor {
  if (reduction === 'mean') return mean(loss);
  if (reduction === 'sum') return sum(loss);
  if (reduction === 'none') return loss;
  throw new Error(`${where}: reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
}

function checkPair(a: Tensor, b: Tensor, where: string, names: [string, string]): void {
  if (a.shape.join() !== b.shape.join()) throw new Error(`${where}: ${names[1]} ${shapeStr(b.shape)} must have the same shape as ${names[0]} ${shapeStr(a.shape)}`);
  if (a.dtype !== b.dtype) throw new Error(`${where}: dtypes differ (${names[0]} ${a.dtype}, ${names[1]} ${b.dtype})`);
  if (a.dtype !== 'float32' && a.dtype !== 'float64') throw new Error(`${where}: expected float tensors, got ${a.dtype}`);
}

export const bceWithLogitsBackwardOp = defineOp<BceAttrs>({
  name: 'bce_with_logits_backward',
  inputLayout: 'broadcast',
  infer([, x]) {
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
});

export const bceWithLogitsOp = defineOp<BceAttrs>({
  name: 'bce_with_logits',
  inputLayout: 'broadcast',
  infer([x, t, pw]) {
    checkPair(x, t, 'bceWithLogits', ['logits', 'target']);
    if (pw) {
      if (pw.dtype !== x.dtype) throw new Error(`bceWithLogits: posWeight is ${pw.dtype} but logits are ${x.dtype}`);
      const s = broadcastShapes(x.shape, pw.shape, 'bceWithLogits posWeight');
      if (s.join() !== x.shape.join()) throw new Error(`bceWithLogits: posWeight ${shapeStr(pw.shape)} does not broadcast to the logits' shape ${shapeStr(x.shape)}`);
    }
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  // Gradients flow to the logits only (the target and pos_weight are data, not parameters).
  backward({ inputs: [x, ...rest], attrs }, [g]) {
    if (!g || !x.requiresGrad) return [null, null, null];
    return [apply1(bceWithLogitsBackwardOp, [g, x, ...rest], attrs), null, null];
  },
});

/**
 * Binary cross-entropy on logits, like torch.nn.functional.binary_cross_entropy_with_logits:
 * loss = (1 - t) x + (1 + (pw - 1) t) softplus(-x), stable for any logit. posWeight (a number,
 * or a tensor broadcastable to the logits) weights the positive term.
 */
export function bceWithLogits(logits: Tensor, target: Tensor, { posWeight, reduction = 'mean' }: { posWeight?: number | Tensor; reduction?: Reduction } = {}): Tensor {
  const pwT = posWeight instanceof Tensor ? posWeight : null;
  const pwN = typeof posWeight === 'number' ? posWeight : 1;
  if (!pwT && posWeight !== undefined && (typeof posWeight !== 'number' || !Number.isFinite(posWeight))) throw new Error(`bceWithLogits: posWeight must be a finite number or a Tensor, got ${String(posWeight)}`);
  const loss = apply1(bceWithLogitsOp, pwT ? [logits, target, pwT] : [logits, target], { posWeight: pwN });
  return reduceLoss(loss, reduction, 'bceWithLogits');
}

/**
 * Soft Dice loss 1 - (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth), p = sigmoid(input)
 * when fromLogits. 'batch' pools every pixel of the batch; 'per-image' computes one Dice per
 * image (sums over all but the first axis) and averages them.
 */
export function diceLoss(input: Tensor, target: Tensor, { smooth = 1, fromLogits = true, reduction = 'batch' }: { smooth?: number; fromLogits?: boolean; reduction?: 'batch' | 'per-image' } = {}): Tensor {
  checkPair(input, target, 'diceLoss', ['input', 'target']);
  if (reduction !== 'batch' && reduction !== 'per-image') throw new Error(`diceLoss: reduction must be 'batch' or 'per-image', got '${String(reduction)}'`);
  if (reduction === 'per-image' && input.ndim < 2) throw new Error(`diceLoss: 'per-image' needs a batch axis, got ${shapeStr(input.shape)}`);
  const p = fromLogits ? sigmoid(input) : input;
  const axes = reduction === 'batch' ? null : input.shape.slice(1).map((_, i) => i + 1);
  const num = affine(sum(mul(p, target), axes), 2, smooth);
  const den = affine(add(sum(p, axes), sum(target, axes)), 1, smooth);
  const loss = affine(div(num, den), -1, 1);
  return reduction === 'batch' ? loss : mean(loss);
}

/** Mean squared error between a and b (same shape). */
export function mseLoss(a: Tensor, b: Tensor, { reduction = 'mean' }: { reduction?: Reduction } = {}): Tensor {
  checkPair(a, b, 'mseLoss', ['input', 'target']);
  return reduceLoss(square(sub(a, b)), reduction, 'mseLoss');
}
