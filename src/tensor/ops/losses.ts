// Segmentation losses: binary cross-entropy with logits (a fused, numerically stable kernel with
// a dedicated backward kernel), and Dice, Tversky, focal, OHEM BCE and MSE composed from existing ops.
import { apply1, defineOp } from '../op';
import { broadcastShapes, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { add, affine, div, mul, neg, pow, sigmoid, square, sub } from './elementwise';
import { tensor } from '../create';
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

/**
 * Tversky loss 1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth) with soft counts
 * TP = sum(p t), FP = sum(p (1 - t)), FN = sum((1 - p) t), p = sigmoid(input) when fromLogits
 * (Salehi et al. 2017). alpha = beta = 0.5 is the Dice loss (with smooth doubled); beta > alpha weighs missed
 * foreground more than false alarms (the default 0.3 / 0.7 favours recall). Reductions as diceLoss.
 */
export function tverskyLoss(input: Tensor, target: Tensor, { alpha = 0.3, beta = 0.7, smooth = 1, fromLogits = true, reduction = 'batch' }: { alpha?: number; beta?: number; smooth?: number; fromLogits?: boolean; reduction?: 'batch' | 'per-image' } = {}): Tensor {
  checkPair(input, target, 'tverskyLoss', ['input', 'target']);
  for (const [k, v] of [['alpha', alpha], ['beta', beta], ['smooth', smooth]] as const) {
    if (!(Number.isFinite(v) && v >= 0)) throw new Error(`tverskyLoss: ${k} must be a non-negative number, got ${String(v)}`);
  }
  if (reduction !== 'batch' && reduction !== 'per-image') throw new Error(`tverskyLoss: reduction must be 'batch' or 'per-image', got '${String(reduction)}'`);
  if (reduction === 'per-image' && input.ndim < 2) throw new Error(`tverskyLoss: 'per-image' needs a batch axis, got ${shapeStr(input.shape)}`);
  const p = fromLogits ? sigmoid(input) : input;
  const axes = reduction === 'batch' ? null : input.shape.slice(1).map((_, i) => i + 1);
  const tp = sum(mul(p, target), axes);
  const fp = sub(sum(p, axes), tp);
  const fn = sub(sum(target, axes), tp);
  const den = affine(add(add(tp, mul(fp, alpha)), mul(fn, beta)), 1, smooth);
  const loss = affine(div(affine(tp, 1, smooth), den), -1, 1);
  return reduction === 'batch' ? loss : mean(loss);
}

/**
 * Sigmoid focal loss on logits (Lin et al. 2017), as torchvision's sigmoid_focal_loss:
 * alpha_t (1 - p_t)^gamma BCE(x, t), p_t = p t + (1 - p)(1 - t), alpha_t = alpha t + (1 - alpha)(1 - t).
 * `alpha` omitted = no class weighting; gamma = 0 without alpha is plain BCE. 1 - p_t is computed
 * as t sigmoid(-x) + (1 - t) sigmoid(x), which does not cancel for confident pixels.
 */
export function focalLoss(logits: Tensor, target: Tensor, { gamma = 2, alpha, reduction = 'mean' }: { gamma?: number; alpha?: number; reduction?: Reduction } = {}): Tensor {
  checkPair(logits, target, 'focalLoss', ['logits', 'target']);
  if (!(Number.isFinite(gamma) && gamma >= 0)) throw new Error(`focalLoss: gamma must be a non-negative number, got ${String(gamma)}`);
  if (alpha !== undefined && !(Number.isFinite(alpha) && alpha >= 0 && alpha <= 1)) throw new Error(`focalLoss: alpha must be in [0, 1], got ${String(alpha)}`);
  let loss = bceWithLogits(logits, target, { reduction: 'none' });
  if (gamma > 0) {
    const oneMinusPt = add(mul(target, sigmoid(neg(logits))), mul(affine(target, -1, 1), sigmoid(logits)));
    loss = mul(gamma === 1 ? oneMinusPt : gamma === 2 ? square(oneMinusPt) : pow(oneMinusPt, gamma), loss);
  }
  if (alpha !== undefined) loss = mul(affine(target, 2 * alpha - 1, 1 - alpha), loss);
  return reduceLoss(loss, reduction, 'focalLoss');
}

/**
 * Online hard example mining BCE: the mean BCE (with optional posWeight) of the k hardest pixels
 * of the whole batch, k = ceil(ratio * count) (at least 1). The selection is made on the current
 * values and is a constant for the backward pass, so gradients flow to the kept pixels only;
 * ties at the cut-off are broken by position (lower flat index first). ratio = 1 is plain BCE.
 */
export function ohemBce(logits: Tensor, target: Tensor, { ratio = 0.25, posWeight }: { ratio?: number; posWeight?: number } = {}): Tensor {
  checkPair(logits, target, 'ohemBce', ['logits', 'target']);
  if (!(Number.isFinite(ratio) && ratio > 0 && ratio <= 1)) throw new Error(`ohemBce: ratio must be in (0, 1], got ${String(ratio)}`);
  const pixel = bceWithLogits(logits, target, { posWeight, reduction: 'none' });
  const n = pixel.size;
  const k = Math.max(1, Math.ceil(ratio * n));
  if (k >= n) return mean(pixel);
  const values = pixel.toArray() as Float32Array | Float64Array;
  // The k-th largest value, then every value above it and the first ties up to k in index order.
  const sorted = Float64Array.from(values).sort();
  const cut = sorted[n - k];
  const keep = new Float64Array(n);
  let kept = 0;
  for (let i = 0; i < n; i++) if (values[i] > cut) { keep[i] = 1; kept++; }
  for (let i = 0; i < n && kept < k; i++) if (values[i] === cut) { keep[i] = 1; kept++; }
  const mask = tensor(logits.dtype === 'float64' ? keep : Float32Array.from(keep), pixel.shape, { dtype: logits.dtype, device: logits.device });
  return div(sum(mul(pixel, mask)), k);
}
