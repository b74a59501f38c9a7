// 2-D convolution (stride, padding, dilation, groups; depthwise included) and its dedicated
// data and weight gradient kernels.
import { isGradEnabled, setGradEnabled } from '../grad-mode';
import { apply, apply1, applyInto, defineOp } from '../op';
import { pair, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { add, binary, binaryOp, unary } from './elementwise';
import { runOutputs } from './run';
import { sum } from './reduce';
import { reshape } from './view';

export interface Conv2dOptions {
  stride?: number | number[];
  padding?: number | number[];
  dilation?: number | number[];
  groups?: number;
}

type ConvAttrs = { stride: number[]; padding: number[]; dilation: number[]; groups: number };

export function convOutputSize(size: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((size + 2 * p - d * (k - 1) - 1) / s) + 1;
}

function checkConv(x: Tensor, w: Tensor, b: Tensor | undefined, a: ConvAttrs): number[] {
  if (x.ndim !== 4) throw new Error(`conv2d: input must be 4-D [N, C, H, W], got ${shapeStr(x.shape)}`);
  if (w.ndim !== 4) throw new Error(`conv2d: weight must be 4-D [out, in/groups, kH, kW], got ${shapeStr(w.shape)}`);
  if (x.dtype !== w.dtype || (b && b.dtype !== x.dtype)) throw new Error(`conv2d: dtypes differ (input ${x.dtype}, weight ${w.dtype}${b ? `, bias ${b.dtype}` : ''})`);
  if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`conv2d: expected float tensors, got ${x.dtype}`);
  const [N, C, H, W] = x.shape;
  const [OC, Cg, KH, KW] = w.shape;
  const g = a.groups;
  if (!Number.isInteger(g) || g < 1) throw new Error(`conv2d: groups must be a positive integer, got ${g}`);
  if (C % g !== 0) throw new Error(`conv2d: input channels ${C} are not divisible by groups=${g}`);
  if (OC % g !== 0) throw new Error(`conv2d: output channels ${OC} are not divisible by groups=${g}`);
  if (Cg * g !== C) throw new Error(`conv2d: input has ${C} channels but weight expects ${Cg * g} (groups=${g})`);
  if (b && (b.ndim !== 1 || b.shape[0] !== OC)) throw new Error(`conv2d: bias must be [${OC}], got ${shapeStr(b.shape)}`);
  if (a.stride.some((s) => s < 1)) throw new Error(`conv2d: stride must be >= 1, got ${JSON.stringify(a.stride)}`);
  if (a.dilation.some((d) => d < 1)) throw new Error(`conv2d: dilation must be >= 1, got ${JSON.stringify(a.dilation)}`);
  if (a.padding.some((p) => p < 0)) throw new Error(`conv2d: padding must be >= 0, got ${JSON.stringify(a.padding)}`);
  const OH = convOutputSize(H, KH, a.stride[0], a.padding[0], a.dilation[0]);
  const OW = convOutputSize(W, KW, a.stride[1], a.padding[1], a.dilation[1]);
  if (OH < 1 || OW < 1) throw new Error(`conv2d: kernel ${KH}x${KW} (dilation ${a.dilation.join('x')}) is larger than the padded input ${H + 2 * a.padding[0]}x${W + 2 * a.padding[1]}`);
  return [N, OC, OH, OW];
}

export const conv2dBackwardInputOp = defineOp<ConvAttrs & { inputShape: number[] }>({
  name: 'conv2d_backward_input',
  infer([, w], { inputShape }) {
    return [{ shape: inputShape.slice(), dtype: w.dtype }];
  },
});

export const conv2dBackwardWeightOp = defineOp<ConvAttrs & { weightShape: number[]; withBias: boolean }>({
  name: 'conv2d_backward_weight',
  infer([x], { weightShape, withBias }) {
    const outs = [{ shape: weightShape.slice(), dtype: x.dtype }];
    if (withBias) outs.push({ shape: [weightShape[0]], dtype: x.dtype });
    return outs;
  },
  kernelAttrs: ({ stride, padding, dilation, groups }) => ({ stride, padding, dilation, groups }),
});

/** Multiply-accumulates of a convolution from its weight [OC, C/g, KH, KW] and output. */
const convMacs = ([, w]: Tensor[], [y]: Tensor[]) => y.size * w.shape[1] * w.shape[2] * w.shape[3];

export const conv2dOp = defineOp<ConvAttrs>({
  name: 'conv2d',
  infer([x, w, b], attrs) {
    return [{ shape: checkConv(x, w, b, attrs), dtype: x.dtype }];
  },
  macs: convMacs,
  backward({ inputs: [x, w, b], attrs }, [g]) {
    if (!g) return [null, null, null];
    const gx = x.requiresGrad ? apply1(conv2dBackwardInputOp, [g, w], { ...attrs, inputShape: x.shape }) : null;
    let gw: Tensor | null = null, gb: Tensor | null = null;
    if (w.requiresGrad || (b && b.requiresGrad)) {
      const outs = apply(conv2dBackwardWeightOp, [x, g], { ...attrs, weightShape: w.shape, withBias: !!b });
      gw = outs[0];
      gb = outs[1] ?? null;
    }
    return [gx, gw, gb];
  },
});

/**
 * GELU then convolution, optionally plus a residual (MedNeXt's GELU -> 1x1 conv [+ x]), as one
 * op that keeps only the GELU's input for backward: the GELU output, which the separate ops
 * would hold as the convolution's saved input, is a temporary of forward and recomputed (one
 * elementwise pass) for the weight gradient, and the residual is added into the convolution's
 * output buffer, so neither is held until backward (PyTorch keeps the GELU output).
 * Inputs: x, w[, bias][, residual].
 */
type ActConvAttrs = ConvAttrs & { pre: 'gelu'; hasBias: boolean; hasResidual: boolean };

export const actConv2dOp = defineOp<ActConvAttrs>({
  name: 'act_conv2d',
  forward(inputs, attrs) {
    const { pre, hasBias, hasResidual, ...conv } = attrs;
    if (pre !== 'gelu') throw new Error(`conv2d: preActivation must be 'gelu' or absent, got ${JSON.stringify(pre)}`);
    const x = inputs[0];
    const convInputs = inputs.slice(1, hasBias ? 3 : 2);
    const r = hasResidual ? inputs[inputs.length - 1] : null;
    const prev = setGradEnabled(false);  // the temporaries are not graph nodes
    try {
      const a = unary('gelu', x);
      let y: Tensor;
      try {
        const spec = conv2dOp.infer!([a, ...convInputs], conv);
        if (r && (r.shape.join() !== spec[0].shape.join() || r.dtype !== x.dtype)) {
          throw new Error(`conv2d: residual must be ${x.dtype} ${shapeStr(spec[0].shape)} (the output), got ${r.dtype} ${shapeStr(r.shape)}`);
        }
        [y] = runOutputs(conv2dOp, [a, ...convInputs], spec, conv);
      } finally {
        a.dispose();
      }
      if (r) applyInto(binaryOp, [y, r], { op: 'add' }, y);
      return [y];
    } finally {
      setGradEnabled(prev);
    }
  },
  macs: convMacs,
  backward({ inputs, attrs }, [g]) {
    if (!g) return inputs.map(() => null);
    const { pre: _pre, hasBias, hasResidual, ...conv } = attrs;
    const [x, w] = inputs;
    const b = hasBias ? inputs[2] : null;
    const grads: (Tensor | null)[] = [null, null];
    if (x.requiresGrad) {
      const ga = apply1(conv2dBackwardInputOp, [g, w], { ...conv, inputShape: x.shape });
      grads[0] = binary('gelu_grad', ga, x);
      ga.dispose();
    }
    let gb: Tensor | null = null;
    if (w.requiresGrad || (b && b.requiresGrad)) {
      const a = unary('gelu', x);
      const outs = apply(conv2dBackwardWeightOp, [a, g], { ...conv, weightShape: w.shape, withBias: !!b });
      a.dispose();
      grads[1] = outs[0];
      gb = outs[1] ?? null;
    }
    if (hasBias) grads.push(gb);
    if (hasResidual) grads.push(g);
    return grads;
  },
});

export interface Conv2dActOptions extends Conv2dOptions {
  /** GELU applied to x before the convolution, fused (see actConv2dOp). */
  preActivation?: 'gelu';
  /** With preActivation: a tensor of the output's shape added to the result, fused. */
  residual?: Tensor;
}

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dActOptions = {}): Tensor {
  const attrs: ConvAttrs = {
    stride: pair(opts.stride ?? 1, 'stride', 'conv2d'),
    padding: pair(opts.padding ?? 0, 'padding', 'conv2d'),
    dilation: pair(opts.dilation ?? 1, 'dilation', 'conv2d'),
    groups: opts.groups ?? 1,
  };
  const inputs = bias ? [x, weight, bias] : [x, weight];
  if (opts.residual && opts.preActivation === undefined) throw new Error('conv2d: residual is only fused with preActivation; add it with F.add');
  if (opts.preActivation !== undefined) {
    if (opts.residual) inputs.push(opts.residual);
    return apply1(actConv2dOp, inputs, { ...attrs, pre: opts.preActivation, hasBias: !!bias, hasResidual: !!opts.residual });
  }
  return apply1(conv2dOp, inputs, attrs);
}

export type FusedActivation = 'none' | 'relu' | 'gelu';

type FusedAttrs = ConvAttrs & { act: FusedActivation; hasBias: boolean; hasAffine: boolean };

/**
 * Inference convolution with its epilogue fused: y = act(conv(x, w) + bias) * scale + shift,
 * scale and shift per output channel. Inference plans (src/nn/inference.ts) use it for
 * conv -> BN -> act (BN folded into w and bias) and conv -> act -> BN (BN as scale/shift).
 * It has no backward: it only runs where no gradient is recorded.
 */
export const conv2dFusedOp = defineOp<FusedAttrs>({
  name: 'conv2d_fused',
  infer(inputs, attrs) {
    const want = 2 + (attrs.hasBias ? 1 : 0) + (attrs.hasAffine ? 2 : 0);
    if (inputs.length !== want) throw new Error(`conv2dFused: expected ${want} inputs (x, w${attrs.hasBias ? ', bias' : ''}${attrs.hasAffine ? ', scale, shift' : ''}), got ${inputs.length}`);
    if (!['none', 'relu', 'gelu'].includes(attrs.act)) throw new Error(`conv2dFused: act must be 'none', 'relu' or 'gelu', got '${attrs.act}'`);
    const [x, w] = inputs;
    const shape = checkConv(x, w, attrs.hasBias ? inputs[2] : undefined, attrs);
    if (attrs.hasAffine) {
      for (const [t, what] of [[inputs[want - 2], 'scale'], [inputs[want - 1], 'shift']] as const) {
        if (t.ndim !== 1 || t.shape[0] !== shape[1] || t.dtype !== x.dtype) throw new Error(`conv2dFused: ${what} must be ${x.dtype} [${shape[1]}], got ${t.dtype} ${shapeStr(t.shape)}`);
      }
    }
    return [{ shape, dtype: x.dtype }];
  },
  macs: convMacs,
});

export interface Conv2dFusedOptions extends Conv2dOptions {
  act?: FusedActivation;
  /** Per-output-channel affine applied after the activation. */
  scale?: Tensor | null;
  shift?: Tensor | null;
}

export function conv2dFused(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dFusedOptions = {}): Tensor {
  if (!!opts.scale !== !!opts.shift) throw new Error('conv2dFused: give both scale and shift, or neither');
  const attrs: FusedAttrs = {
    stride: pair(opts.stride ?? 1, 'stride', 'conv2dFused'),
    padding: pair(opts.padding ?? 0, 'padding', 'conv2dFused'),
    dilation: pair(opts.dilation ?? 1, 'dilation', 'conv2dFused'),
    groups: opts.groups ?? 1,
    act: opts.act ?? 'none',
    hasBias: !!bias,
    hasAffine: !!opts.scale,
  };
  const inputs = [x, weight];
  if (bias) inputs.push(bias);
  if (opts.scale && opts.shift) inputs.push(opts.scale, opts.shift);
  if (isGradEnabled() && inputs.some((t) => t instanceof Tensor && t.requiresGrad)) {
    throw new Error('conv2dFused: has no gradient (an inference op); call it under sc.noGrad() or use conv2d');
  }
  return apply1(conv2dFusedOp, inputs, attrs);
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  outputPadding?: number | number[];
}

/**
 * Transposed convolution, weight [in, out/groups, kH, kW] (PyTorch layout). It is the data
 * gradient of a convolution, so it runs on the conv2d kernels in both directions.
 */
export const convTranspose2dOp = defineOp<ConvAttrs & { outputPadding: number[] }>({
  name: 'conv_transpose2d',
  forward([x, w, b], attrs) {
    if (x.ndim !== 4 || w.ndim !== 4) throw new Error(`convTranspose2d: input and weight must be 4-D, got ${shapeStr(x.shape)} and ${shapeStr(w.shape)}`);
    const [N, C, H, W] = x.shape;
    const [Cin, OCg, KH, KW] = w.shape;
    const g = attrs.groups;
    if (C !== Cin) throw new Error(`convTranspose2d: input has ${C} channels but weight expects ${Cin}`);
    if (C % g !== 0) throw new Error(`convTranspose2d: input channels ${C} are not divisible by groups=${g}`);
    const [sh, sw] = attrs.stride, [ph, pw] = attrs.padding, [dh, dw] = attrs.dilation, [oph, opw] = attrs.outputPadding;
    const OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1;
    const OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1;
    if (OH < 1 || OW < 1) throw new Error(`convTranspose2d: output size ${OH}x${OW} is empty`);
    const outShape = [N, OCg * g, OH, OW];
    const y = apply1(conv2dBackwardInputOp, [x, w], { ...attrs, inputShape: outShape });
    if (!b) return [y];
    if (b.ndim !== 1 || b.shape[0] !== outShape[1]) throw new Error(`convTranspose2d: bias must be [${outShape[1]}], got ${shapeStr(b.shape)}`);
    const yb = add(y, reshape(b, [1, outShape[1], 1, 1]));
    y.dispose();
    return [yb];
  },
  macs: ([x, w]) => x.size * w.shape[1] * w.shape[2] * w.shape[3],
  backward({ inputs: [x, w, b], attrs }, [g]) {
    if (!g) return [null, null, null];
    const gx = x.requiresGrad ? conv2d(g, w, null, attrs) : null;
    const gw = w.requiresGrad ? apply(conv2dBackwardWeightOp, [g, x], { ...attrs, weightShape: w.shape, withBias: false })[0] : null;
    const gb = b && b.requiresGrad ? sum(g, [0, 2, 3]) : null;
    return [gx, gw, gb];
  },
});

export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: ConvTranspose2dOptions = {}): Tensor {
  const attrs = {
    stride: pair(opts.stride ?? 1, 'stride', 'convTranspose2d'),
    padding: pair(opts.padding ?? 0, 'padding', 'convTranspose2d'),
    dilation: pair(opts.dilation ?? 1, 'dilation', 'convTranspose2d'),
    outputPadding: pair(opts.outputPadding ?? 0, 'outputPadding', 'convTranspose2d'),
    groups: opts.groups ?? 1,
  };
  return apply1(convTranspose2dOp, bias ? [x, weight, bias] : [x, weight], attrs);
}
