/**
 * Multi-class losses on logits [N, C, H, W] against one-hot targets of the same shape
 * (src/data/multiclass.ts oneHot), composed from existing ops (softmax over the class axis).
 */
import { Tensor, tensor } from '../tensor';
import * as F from '../nn/functional';

function checkPair(logits: Tensor, target: Tensor, what: string): void {
  if (logits.ndim !== 4) throw new Error(`${what}: logits must be [N, C, H, W], got [${logits.shape.join(', ')}]`);
  if (logits.shape[1] < 2) throw new Error(`${what}: needs at least 2 classes on axis 1, got [${logits.shape.join(', ')}] (use BCE / Dice for one)`);
  if (target.shape.join(',') !== logits.shape.join(',')) throw new Error(`${what}: one-hot target [${target.shape.join(', ')}] must have the logits' shape [${logits.shape.join(', ')}]`);
}

/**
 * Mean over pixels of -sum_c t_c log softmax(x)_c. With `weights` (one per class), PyTorch's
 * weighted mean: sum over pixels of w_y * (-log p_y) divided by the sum of w_y, y the pixel's class
 * (so the loss stays on the scale of the unweighted one whatever the weights' scale).
 */
export function softmaxCrossEntropy(logits: Tensor, target: Tensor, { weights }: { weights?: readonly number[] } = {}): Tensor {
  checkPair(logits, target, 'softmaxCrossEntropy');
  if (weights === undefined) return F.mean(F.sum(F.mul(F.logSoftmax(logits, 1), target), 1)).mul(-1);
  const C = logits.shape[1];
  if (weights.length !== C || !weights.every((w) => Number.isFinite(w) && w >= 0)) throw new Error(`softmaxCrossEntropy: weights must be ${C} non-negative numbers (one per class), got [${weights.join(', ')}]`);
  const w = tensor(Float64Array.from(weights), [1, C, 1, 1], { dtype: logits.dtype, device: logits.device });
  const wt = F.mul(target, w);
  const den = F.sum(wt);
  if (!(den.item() > 0)) throw new Error('softmaxCrossEntropy: every pixel of the batch belongs to a class of weight 0');
  return F.div(F.sum(F.mul(F.logSoftmax(logits, 1), wt)), den).mul(-1);
}

/**
 * Soft Dice loss over classes: 1 - mean over classes of (2 sum(p t) + smooth) / (sum p + sum t + smooth),
 * p = softmax(x) over axis 1, sums over the batch and the pixels; the background (class 0) is left
 * out unless includeBackground.
 */
export function softmaxDiceLoss(logits: Tensor, target: Tensor, { smooth = 1, includeBackground = false }: { smooth?: number; includeBackground?: boolean } = {}): Tensor {
  checkPair(logits, target, 'softmaxDiceLoss');
  if (!(Number.isFinite(smooth) && smooth >= 0)) throw new Error(`softmaxDiceLoss: smooth must be >= 0, got ${smooth}`);
  const p = F.softmax(logits, 1);
  const C = logits.shape[1];
  const from = includeBackground ? 0 : 1;
  const ps = from ? F.narrow(p, 1, from, C - from) : p;
  const ts = from ? F.narrow(target, 1, from, C - from) : target;
  const num = F.sum(F.mul(ps, ts), [0, 2, 3]).mul(2).add(smooth);
  const den = F.add(F.sum(ps, [0, 2, 3]), F.sum(ts, [0, 2, 3])).add(smooth);
  return F.mean(F.div(num, den)).mul(-1).add(1);
}
