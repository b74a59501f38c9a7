// Batch normalisation (running statistics updated in place by the kernel, outside autograd),
// layer and group normalisation, each with a single-kernel backward giving all gradients at once.
import { apply, defineOp } from '../op';
import { isGradEnabled, setGradEnabled } from '../grad-mode';
import { shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { checkFloat, runOutputs } from './run';
import { binary, unary } from './elementwise';

// ---- batch norm ---------------------------------------------------------------------------

type BnAttrs = { training: boolean; momentum: number; eps: number; hasWeight: boolean; hasBias: boolean; hasRunning: boolean };

/** Batch statistics are used when training, and when there are no running statistics. */
const useBatchStats = (a: BnAttrs) => a.training || !a.hasRunning;

// pre/post: the activations act_batch_norm fuses on the CPU (the kernel's inputs then end with
// the forward's output for a ReLU).
export const batchNormBackwardOp = defineOp<{ hasWeight: boolean; training: boolean; pre?: 'none' | 'gelu'; post?: 'none' | 'relu' }>({
  name: 'batch_norm_backward',
  infer([, x]) {
    const c = [x.shape[1]];
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: c, dtype: x.dtype }, { shape: c, dtype: x.dtype }];
  },
});

export const batchNormOp = defineOp<BnAttrs>({
  name: 'batch_norm',
  // Inputs: x, then weight, bias, runningMean, runningVar where present (the has* attrs). In
  // training with running statistics the kernel writes runningMean/runningVar in place; that
  // write is not an autograd event, and runs under noGrad just the same.
  infer(inputs, a) {
    const x = inputs[0];
    checkFloat(x, 'batchNorm');
    if (x.ndim < 2) throw new Error(`batchNorm: input must be [N, C] or [N, C, ...], got ${shapeStr(x.shape)}`);
    const C = x.shape[1];
    const names = [a.hasWeight && 'weight', a.hasBias && 'bias', a.hasRunning && 'runningMean', a.hasRunning && 'runningVar'].filter(Boolean) as string[];
    names.forEach((n, i) => {
      const t = inputs[i + 1];
      if (t.ndim !== 1 || t.shape[0] !== C) throw new Error(`batchNorm: ${n} must be [${C}] for ${C} channels, got ${shapeStr(t.shape)}`);
      if (t.dtype !== x.dtype) throw new Error(`batchNorm: ${n} is ${t.dtype} but the input is ${x.dtype}`);
    });
    if (a.training && a.hasRunning) {
      for (const t of inputs.slice(-2)) {
        if (!t.isContiguous()) throw new Error('batchNorm: running statistics must be contiguous (they are updated in place)');
        if (t.requiresGrad) throw new Error('batchNorm: running statistics must not require grad (they are updated in place)');
      }
    }
    if (useBatchStats(a) && x.size / C <= 1) throw new Error(`batchNorm: expected more than 1 value per channel when training, got input ${shapeStr(x.shape)}`);
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: [C], dtype: x.dtype }, { shape: [C], dtype: x.dtype }];
  },
  kernelAttrs: (a) => ({ ...a, training: useBatchStats(a) }),
  forward(inputs, attrs, saved) {
    const [y, mean, invstd] = runOutputs(batchNormOp, inputs, batchNormOp.infer!(inputs, attrs), attrs);
    const n = 1 + (attrs.hasWeight ? 1 : 0) + (attrs.hasBias ? 1 : 0);
    if (isGradEnabled() && inputs.slice(0, n).some((t) => t.requiresGrad)) Object.assign(saved, { mean, invstd });
    else [mean, invstd].forEach((t) => t.dispose());
    return [y];
  },
  backward({ inputs, attrs, saved }, [g]) {
    if (!g) return inputs.map(() => null);
    const [x, ...rest] = inputs;
    const w = attrs.hasWeight ? rest[0] : null;
    const [dx, dw, db] = apply(batchNormBackwardOp, [g, x, ...(w ? [w] : []), saved.mean as Tensor, saved.invstd as Tensor], { hasWeight: attrs.hasWeight, training: useBatchStats(attrs) });
    const grads: (Tensor | null)[] = [dx];
    if (attrs.hasWeight) grads.push(dw);
    if (attrs.hasBias) grads.push(db);
    if (attrs.hasRunning) grads.push(null, null);
    return grads;
  },
});

/**
 * Batch norm with the activation before it (GELU -> BN, CMUNeXt's order) or after it (BN ->
 * ReLU, UNet's) in one op that keeps only what its backward needs: the BN input x and the
 * per-channel statistics, plus the output for a ReLU (its mask). The activation's other tensor
 * (GELU's output, or BN's output before the ReLU) is never held: on the CPU the batch_norm
 * kernels apply the activations themselves (attrs pre/post: GELU recomputed in backward, in the
 * same passes), and elsewhere they run as separate kernels on temporaries. Either way training
 * keeps one activation fewer per such pair than the separate ops would, and on the CPU the
 * pair costs the memory passes of the batch norm alone.
 */
type ActBnAttrs = BnAttrs & { pre: 'none' | 'gelu'; post: 'none' | 'relu' };

/** Whether x's backend's batch_norm kernels take the activations (attrs pre/post) themselves. */
const kernelsFuseActivations = (x: Tensor) => x.device === 'cpu';

export const actBatchNormOp = defineOp<ActBnAttrs>({
  name: 'act_batch_norm',
  forward(inputs, attrs, saved) {
    const { pre, post, ...bn } = attrs;
    if (pre !== 'none' && pre !== 'gelu') throw new Error(`batchNorm: preActivation must be 'gelu' or absent, got ${JSON.stringify(pre)}`);
    if (post !== 'none' && post !== 'relu') throw new Error(`batchNorm: postActivation must be 'relu' or absent, got ${JSON.stringify(post)}`);
    const [x, ...rest] = inputs;
    const n = 1 + (bn.hasWeight ? 1 : 0) + (bn.hasBias ? 1 : 0);
    const recording = isGradEnabled() && inputs.slice(0, n).some((t) => t.requiresGrad);
    const keep = (mean: Tensor, invstd: Tensor) => {
      if (recording) Object.assign(saved, { mean, invstd });
      else [mean, invstd].forEach((t) => t.dispose());
    };
    if (kernelsFuseActivations(x)) {
      const [y, mean, invstd] = runOutputs(batchNormOp, inputs, batchNormOp.infer!(inputs, bn), { ...bn, pre, post });
      keep(mean, invstd);
      return [y];
    }
    const prev = setGradEnabled(false);  // the temporaries are not graph nodes
    try {
      const a = pre === 'gelu' ? unary('gelu', x) : x;
      const bnInputs = [a, ...rest];
      let y: Tensor, mean: Tensor, invstd: Tensor;
      try {
        [y, mean, invstd] = runOutputs(batchNormOp, bnInputs, batchNormOp.infer!(bnInputs, bn), bn);
      } finally {
        if (a !== x) a.dispose();
      }
      keep(mean, invstd);
      if (post !== 'relu') return [y];
      const out = unary('relu', y);
      y.dispose();
      return [out];
    } finally {
      setGradEnabled(prev);
    }
  },
  backward({ inputs, outputs, attrs, saved }, [g]) {
    if (!g) return inputs.map(() => null);
    const [x, ...rest] = inputs;
    const w = attrs.hasWeight ? rest[0] : null;
    const stats = [saved.mean as Tensor, saved.invstd as Tensor];
    const bnAttrs = { hasWeight: attrs.hasWeight, training: useBatchStats(attrs) };
    let dx: Tensor, dw: Tensor, db: Tensor;
    if (kernelsFuseActivations(x)) {
      [dx, dw, db] = apply(batchNormBackwardOp, [g, x, ...(w ? [w] : []), ...stats, ...(attrs.post === 'relu' ? [outputs[0]] : [])], { ...bnAttrs, pre: attrs.pre, post: attrs.post });
    } else {
      // relu'(y) from the output: out > 0 exactly where y > 0.
      const gy = attrs.post === 'relu' ? binary('relu_grad', g, outputs[0]) : g;
      const a = attrs.pre === 'gelu' ? unary('gelu', x) : x;
      let da: Tensor;
      [da, dw, db] = apply(batchNormBackwardOp, [gy, a, ...(w ? [w] : []), ...stats], bnAttrs);
      dx = attrs.pre === 'gelu' ? binary('gelu_grad', da, x) : da;
    }
    const grads: (Tensor | null)[] = [dx];
    if (attrs.hasWeight) grads.push(dw);
    if (attrs.hasBias) grads.push(db);
    if (attrs.hasRunning) grads.push(null, null);
    return grads;
  },
});

export interface BatchNormOptions {
  training?: boolean;
  momentum?: number;
  eps?: number;
  /** GELU applied to x before normalising, fused (see actBatchNormOp). */
  preActivation?: 'gelu';
  /** ReLU applied to the result, fused. */
  postActivation?: 'relu';
}

/**
 * Batch normalisation of [N, C] or [N, C, ...] per channel. Training (or no running
 * statistics): batch mean and biased variance; running statistics, when given, are updated in
 * place with the unbiased variance (momentum m: r = (1 - m) r + m batch). Inference: running
 * statistics. weight/bias may be null (no affine transform).
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight: Tensor | null = null, bias: Tensor | null = null, opts: BatchNormOptions = {}): Tensor {
  if (!runningMean !== !runningVar) throw new Error('batchNorm: give both runningMean and runningVar, or neither');
  const momentum = opts.momentum ?? 0.1, eps = opts.eps ?? 1e-5;
  if (!(momentum >= 0 && momentum <= 1)) throw new Error(`batchNorm: momentum must be in [0, 1], got ${momentum}`);
  if (!(eps >= 0)) throw new Error(`batchNorm: eps must be >= 0, got ${eps}`);
  const inputs = [x, weight, bias, runningMean, runningVar].filter((t): t is Tensor => !!t);
  const attrs = { training: !!opts.training, momentum, eps, hasWeight: !!weight, hasBias: !!bias, hasRunning: !!runningMean };
  if (opts.preActivation || opts.postActivation) {
    return apply(actBatchNormOp, inputs, { ...attrs, pre: opts.preActivation ?? 'none', post: opts.postActivation ?? 'none' })[0];
  }
  return apply(batchNormOp, inputs, attrs)[0];
}

// ---- layer norm ---------------------------------------------------------------------------

type LnAttrs = { normalizedShape: number[]; eps: number; hasWeight: boolean; hasBias: boolean };

export const layerNormBackwardOp = defineOp<{ normalizedShape: number[]; hasWeight: boolean }>({
  name: 'layer_norm_backward',
  infer([, x], { normalizedShape }) {
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: normalizedShape.slice(), dtype: x.dtype }, { shape: normalizedShape.slice(), dtype: x.dtype }];
  },
  kernelAttrs: ({ normalizedShape, hasWeight }) => ({ d: normalizedShape.reduce((a, b) => a * b, 1), hasWeight }),
});

export const layerNormOp = defineOp<LnAttrs>({
  name: 'layer_norm',
  infer(inputs, { normalizedShape: ns, hasWeight, hasBias }) {
    const x = inputs[0];
    checkFloat(x, 'layerNorm');
    const lead = x.ndim - ns.length;
    if (lead < 0 || ns.some((s, i) => x.shape[lead + i] !== s)) throw new Error(`layerNorm: normalizedShape ${shapeStr(ns)} does not match the trailing dimensions of ${shapeStr(x.shape)}`);
    [hasWeight && 'weight', hasBias && 'bias'].filter(Boolean).forEach((n, i) => {
      const t = inputs[i + 1];
      if (t.shape.join() !== ns.join()) throw new Error(`layerNorm: ${n} must be ${shapeStr(ns)}, got ${shapeStr(t.shape)}`);
      if (t.dtype !== x.dtype) throw new Error(`layerNorm: ${n} is ${t.dtype} but the input is ${x.dtype}`);
    });
    const rows = x.shape.slice(0, lead);
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: rows, dtype: x.dtype }, { shape: rows.slice(), dtype: x.dtype }];
  },
  kernelAttrs: ({ normalizedShape, eps, hasWeight, hasBias }) => ({ d: normalizedShape.reduce((a, b) => a * b, 1), eps, hasWeight, hasBias }),
  forward(inputs, attrs, saved) {
    const [y, mean, invstd] = runOutputs(layerNormOp, inputs, layerNormOp.infer!(inputs, attrs), attrs);
    if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) Object.assign(saved, { mean, invstd });
    else [mean, invstd].forEach((t) => t.dispose());
    return [y];
  },
  backward({ inputs, attrs, saved }, [g]) {
    if (!g) return inputs.map(() => null);
    const [x, ...rest] = inputs;
    const w = attrs.hasWeight ? [rest[0]] : [];
    const [dx, dw, db] = apply(layerNormBackwardOp, [g, x, ...w, saved.mean as Tensor, saved.invstd as Tensor], { normalizedShape: attrs.normalizedShape, hasWeight: attrs.hasWeight });
    return [dx, ...(attrs.hasWeight ? [dw] : []), ...(attrs.hasBias ? [db] : [])];
  },
});

/** Layer normalisation over the trailing dims given by normalizedShape (biased variance). */
export function layerNorm(x: Tensor, normalizedShape: number | number[], weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  const ns = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
  if (!Array.isArray(ns) || ns.length === 0 || !ns.every((s) => Number.isInteger(s) && s >= 1)) throw new Error(`layerNorm: normalizedShape must be a positive integer or a non-empty list of them, got ${JSON.stringify(normalizedShape)}`);
  return apply(layerNormOp, [x, weight, bias].filter((t): t is Tensor => !!t), { normalizedShape: ns.slice(), eps, hasWeight: !!weight, hasBias: !!bias })[0];
}

// ---- group norm -------------------------------------------------------------------------------

type GnAttrs = { groups: number; eps: number; hasWeight: boolean; hasBias: boolean; post?: 'none' | 'relu' };

/**
 * The group-norm kernels: statistics per (image, group), the per-channel affine and a ReLU after
 * it in one pass, and a backward giving dx, dweight and dbias at once. Inputs: x, weight?, bias?
 * (the has* attrs); outputs y, mean and invstd per (image, group).
 */
export const groupNormFusedOp = defineOp<GnAttrs>({
  name: 'group_norm_fused',
  infer([x], { groups }) {
    const rows = [x.shape[0] * groups];
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: rows, dtype: x.dtype }, { shape: rows.slice(), dtype: x.dtype }];
  },
  kernelAttrs: ({ groups, eps, hasWeight, hasBias, post }) => ({ groups, eps, hasWeight, hasBias, post: post ?? 'none' }),
});

/** Inputs: gy, x, weight? (attr hasWeight), mean, invstd, then the forward's output with post 'relu'; outputs dx, dweight, dbias. */
export const groupNormFusedBackwardOp = defineOp<{ groups: number; hasWeight: boolean; post: 'none' | 'relu' }>({
  name: 'group_norm_fused_backward',
  infer([, x]) {
    const c = [x.shape[1]];
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: c, dtype: x.dtype }, { shape: c.slice(), dtype: x.dtype }];
  },
});

/**
 * Group normalisation as one op over the kernels above: forward keeps only the input (which the
 * layer before keeps anyway) and the per-(image, group) statistics; backward reads x again. (As
 * separate ops, each group norm kept two more activation-sized tensors for backward, the
 * normalised values and their scaled copy, and ran five more passes over them: MedNeXt,
 * TransUNet's ResNet trunk.) post 'relu': a ReLU after it, fused (TransUNet's GN -> ReLU); its
 * mask comes from the output in backward.
 */
export const groupNormOp = defineOp<GnAttrs>({
  name: 'group_norm',
  forward(inputs, attrs, saved) {
    const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
    const [y, mean, invstd] = runOutputs(groupNormFusedOp, inputs, groupNormFusedOp.infer!(inputs, attrs), attrs);
    if (recording) Object.assign(saved, { mean, invstd });
    else [mean, invstd].forEach((t) => t.dispose());
    return [y];
  },
  backward({ inputs, outputs, attrs, saved }, [g]) {
    if (!g) return inputs.map(() => null);
    const [x, ...rest] = inputs;
    const w = attrs.hasWeight ? rest[0] : null;
    const relu = attrs.post === 'relu' ? [outputs[0]] : [];
    const [dx, dw, db] = apply(groupNormFusedBackwardOp, [g, x, ...(w ? [w] : []), saved.mean as Tensor, saved.invstd as Tensor, ...relu], { groups: attrs.groups, hasWeight: attrs.hasWeight, post: attrs.post ?? 'none' });
    return [x.requiresGrad ? dx : null, ...(w ? [dw] : []), ...(attrs.hasBias ? [db] : [])];
  },
});

/**
 * Group normalisation (Wu & He, 2018; PyTorch's F.group_norm): the channels of x [N, C, ...]
 * split into `groups` groups, each normalised over its channels and spatial positions (biased
 * variance), then a per-channel affine.
 */
export function groupNorm(x: Tensor, groups: number, weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5, opts: { postActivation?: 'relu' } = {}): Tensor {
  if (!(x instanceof Tensor)) throw new Error('groupNorm: x must be a Tensor');
  if (x.ndim < 2) throw new Error(`groupNorm: expected an input [N, C, ...], got ${shapeStr(x.shape)}`);
  const c = x.shape[1];
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) throw new Error(`groupNorm: ${c} channels cannot be split into ${groups} groups`);
  for (const [t, what] of [[weight, 'weight'], [bias, 'bias']] as const) {
    if (t && (t.ndim !== 1 || t.shape[0] !== c)) throw new Error(`groupNorm: ${what} must have shape [${c}], got ${shapeStr(t.shape)}`);
  }
  checkFloat(x, 'groupNorm');
  if (x.size === 0) throw new Error(`groupNorm: empty input ${shapeStr(x.shape)}`);
  if (!(eps >= 0)) throw new Error(`groupNorm: eps must be >= 0, got ${eps}`);
  if (opts.postActivation !== undefined && opts.postActivation !== 'relu') throw new Error(`groupNorm: postActivation must be 'relu' or absent, got ${JSON.stringify(opts.postActivation)}`);
  return apply(groupNormOp, [x, weight, bias].filter((t): t is Tensor => !!t), { groups, eps, hasWeight: !!weight, hasBias: !!bias, post: opts.postActivation ?? 'none' })[0];
}
