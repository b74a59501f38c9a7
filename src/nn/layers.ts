// The standard layers, with PyTorch's parameter names, shapes and default initialisation.
import { Tensor } from '../tensor/tensor';
import { zeros, ones, tensor } from '../tensor/create';
import { fill_ } from '../tensor/ops/elementwise';
import * as F from './functional';
import { Module } from './module';
import { isGradEnabled } from '../tensor/grad-mode';
import { isRecomputing } from '../autograd/checkpoint';
import { defaultBias, defaultWeight, fanIn } from './init';

type Pair = number | [number, number];
const pairOf = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

export interface Conv2dConfig {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/**
 * What sc.inference.optimize (src/nn/inference.ts) attaches: a convolution with the batch
 * norm and activation after it fused in, and, on the modules it absorbed, a pass-through that
 * checks it receives the fused convolution's output (else the plan no longer fits the forward).
 * Both apply only in eval mode without gradient recording.
 */
export interface FusedConvForward {
  forward(x: Tensor): Tensor;
  dispose(): void;
}
export interface AbsorbedForward {
  pass(x: Tensor): Tensor;
}
const inferenceActive = (m: Module) => !m.training && !isGradEnabled();

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  fused: FusedConvForward | null = null;
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, readonly cfg: Conv2dConfig = {}) {
    super();
    const [kh, kw] = pairOf(kernelSize);
    const groups = cfg.groups ?? 1;
    if (!Number.isInteger(inChannels) || !Number.isInteger(outChannels) || inChannels < 1 || outChannels < 1) throw new Error(`Conv2d: channel counts must be positive integers, got ${inChannels} -> ${outChannels}`);
    if (inChannels % groups || outChannels % groups) throw new Error(`Conv2d: channels ${inChannels} -> ${outChannels} are not divisible by groups=${groups}`);
    const shape = [outChannels, inChannels / groups, kh, kw];
    this.weight = this.param('weight', defaultWeight(shape));
    this.bias = cfg.bias === false ? this.param('bias', null) : this.param('bias', defaultBias(outChannels, fanIn(shape)));
  }
  forward(x: Tensor): Tensor {
    if (this.fused && inferenceActive(this)) return this.fused.forward(x);
    return F.conv2d(x, this.weight, this.bias, { stride: this.cfg.stride, padding: this.cfg.padding, dilation: this.cfg.dilation, groups: this.cfg.groups });
  }
  /**
   * this(act(x)) [+ residual] for an activation module act. A GELU under autograd runs with this
   * convolution (and the residual add) as one op that keeps one activation fewer for backward
   * and never materialises the convolution's own output (F.conv2d's preActivation / residual);
   * otherwise the modules and the add run as they are, so eval forwards, traces and inference
   * plans are unchanged.
   */
  forwardAfter(act: Lambda, x: Tensor, residual?: Tensor): Tensor {
    if (act.activation !== 'gelu' || !isGradEnabled()) {
      const y = this.forward(act.forward(x));
      return residual ? F.add(residual, y) : y;
    }
    return F.conv2d(x, this.weight, this.bias, { stride: this.cfg.stride, padding: this.cfg.padding, dilation: this.cfg.dilation, groups: this.cfg.groups, preActivation: 'gelu', residual });
  }
  dropInference(): void {
    this.fused?.dispose();
    this.fused = null;
  }
}

export class ConvTranspose2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, readonly cfg: Conv2dConfig & { outputPadding?: Pair } = {}) {
    super();
    const [kh, kw] = pairOf(kernelSize);
    const groups = cfg.groups ?? 1;
    const shape = [inChannels, outChannels / groups, kh, kw];
    // PyTorch computes fan-in from weight.size(1) * k * k for transposed convs too.
    this.weight = this.param('weight', defaultWeight(shape));
    this.bias = cfg.bias === false ? this.param('bias', null) : this.param('bias', defaultBias(outChannels, fanIn(shape)));
  }
  forward(x: Tensor): Tensor {
    return F.convTranspose2d(x, this.weight, this.bias, this.cfg);
  }
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, { bias = true } = {}) {
    super();
    this.weight = this.param('weight', defaultWeight([outFeatures, inFeatures]));
    this.bias = this.param('bias', bias ? defaultBias(outFeatures, inFeatures) : null);
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  private batches = 0;
  absorbed: AbsorbedForward | null = null;
  constructor(readonly numFeatures: number, readonly cfg: { eps?: number; momentum?: number; affine?: boolean; trackRunningStats?: boolean } = {}) {
    super();
    const affine = cfg.affine ?? true;
    const track = cfg.trackRunningStats ?? true;
    this.weight = this.param('weight', affine ? ones([numFeatures]) : null);
    this.bias = this.param('bias', affine ? zeros([numFeatures]) : null);
    this.runningMean = this.buffer('running_mean', track ? zeros([numFeatures]) : null);
    this.runningVar = this.buffer('running_var', track ? ones([numFeatures]) : null);
    this.numBatchesTracked = this.buffer('num_batches_tracked', track ? tensor([0], [], { dtype: 'int64' }) : null);
  }
  /** The batch counter continues from a loaded num_batches_tracked (checkpoints, resume). */
  protected onStateLoaded(): void {
    if (this.numBatchesTracked) this.batches = this.numBatchesTracked.item();
  }
  dropInference(): void {
    this.absorbed = null;
  }
  forward(x: Tensor): Tensor {
    if (this.absorbed && inferenceActive(this)) return this.absorbed.pass(x);
    return this.normalise(x, {});
  }
  /**
   * GELU -> this BN and/or this BN -> ReLU. While training under autograd this is one fused op
   * that keeps one activation fewer for backward (F.batchNorm's preActivation/postActivation);
   * otherwise the separate ops, so eval forwards, traces and inference plans are unchanged.
   */
  forwardWithActivation(x: Tensor, act: { pre?: 'gelu'; post?: 'relu' }): Tensor {
    if (this.training && isGradEnabled()) return this.normalise(x, { preActivation: act.pre, postActivation: act.post });
    const y = this.forward(act.pre ? F.gelu(x) : x);
    return act.post ? F.relu(y) : y;
  }
  private normalise(x: Tensor, act: Pick<F.BatchNormOptions, 'preActivation' | 'postActivation'>): Tensor {
    if (x.ndim >= 2 && x.shape[1] !== this.numFeatures) throw new Error(`BatchNorm2d(${this.numFeatures}): input has ${x.shape[1]} channels (shape [${x.shape.join(', ')}])`);
    const training = this.training || !this.runningMean;
    // A checkpointed block's recomputation in backward sees the same batch again: the running
    // statistics (momentum 0 leaves them exactly as they are) and the counter move once.
    const again = isRecomputing();
    if (this.training && this.numBatchesTracked && !again) fill_(this.numBatchesTracked, ++this.batches);
    return F.batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, { training, momentum: again ? 0 : this.cfg.momentum ?? 0.1, eps: this.cfg.eps ?? 1e-5, ...act });
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(normalizedShape: number | number[], readonly cfg: { eps?: number; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    const affine = cfg.elementwiseAffine ?? true;
    this.weight = this.param('weight', affine ? ones(this.normalizedShape) : null);
    this.bias = this.param('bias', affine ? zeros(this.normalizedShape) : null);
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.cfg.eps ?? 1e-5);
  }
}

/** PyTorch's nn.GroupNorm(numGroups, numChannels): `weight` (ones) and `bias` (zeros) per channel. */
export class GroupNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly cfg: { eps?: number; affine?: boolean } = {}) {
    super();
    if (!Number.isInteger(numGroups) || numGroups < 1 || numChannels % numGroups !== 0) throw new Error(`GroupNorm: ${numChannels} channels cannot be split into ${numGroups} groups`);
    const affine = cfg.affine ?? true;
    this.weight = this.param('weight', affine ? ones([numChannels]) : null);
    this.bias = this.param('bias', affine ? zeros([numChannels]) : null);
  }
  forward(x: Tensor): Tensor {
    return this.normalise(x, {});
  }
  /**
   * This GN -> ReLU. Under autograd one fused op that keeps one activation fewer for backward
   * (F.groupNorm's postActivation); otherwise the separate ops.
   */
  forwardWithActivation(x: Tensor, act: { post: 'relu' }): Tensor {
    if (!isGradEnabled()) return F.relu(this.forward(x));
    return this.normalise(x, { postActivation: act.post });
  }
  private normalise(x: Tensor, act: { postActivation?: 'relu' }): Tensor {
    if (x.ndim < 2 || x.shape[1] !== this.numChannels) throw new Error(`GroupNorm(${this.numGroups}, ${this.numChannels}): expected an input [N, ${this.numChannels}, ...], got [${x.shape.join(', ')}]`);
    return F.groupNorm(x, this.numGroups, this.weight, this.bias, this.cfg.eps ?? 1e-5, act);
  }
}

/** A module from a function of one tensor (activations and other parameter-free layers). */
export class Lambda extends Module {
  absorbed: AbsorbedForward | null = null;
  /** Set by ReLU() and GELU(): Sequential may fuse them with a neighbouring BatchNorm2d. */
  activation: 'relu' | 'gelu' | null = null;
  constructor(readonly name: string, private readonly fn: (x: Tensor, m: Lambda) => Tensor) {
    super();
  }
  forward(x: Tensor): Tensor {
    if (this.absorbed && inferenceActive(this)) return this.absorbed.pass(x);
    return this.fn(x, this);
  }
  dropInference(): void {
    this.absorbed = null;
  }
}

const activation = (l: Lambda, kind: 'relu' | 'gelu') => Object.assign(l, { activation: kind });
export const ReLU = () => activation(new Lambda('ReLU', (x) => F.relu(x)), 'relu');
export const GELU = () => activation(new Lambda('GELU', (x) => F.gelu(x)), 'gelu');
export const Sigmoid = () => new Lambda('Sigmoid', (x) => F.sigmoid(x));
export const Identity = () => new Lambda('Identity', (x) => x);
export const MaxPool2d = (kernelSize: number, stride?: number) => new Lambda('MaxPool2d', (x) => F.maxPool2d(x, { kernelSize, stride }));
export const Dropout = (p = 0.5) => new Lambda('Dropout', (x, m) => F.dropout(x, p, m.training));
export const Dropout2d = (p = 0.5) => new Lambda('Dropout2d', (x, m) => F.dropout2d(x, p, m.training));
export const Upsample = (opts: { scaleFactor: number; mode?: 'bilinear' | 'nearest'; alignCorners?: boolean }) =>
  new Lambda('Upsample', (x) => F.interpolate(x, { scaleFactor: opts.scaleFactor, mode: opts.mode ?? 'nearest', alignCorners: opts.alignCorners }));

/** Children named 0, 1, 2, ... run in order (PyTorch's nn.Sequential). */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers.map((m, i) => this.add(String(i), m));
  }
  forward(x: Tensor): Tensor {
    let y = x;
    // Training: GELU -> BN, BN -> ReLU, GN -> ReLU and GELU -> conv pairs run as one fused op
    // (less memory kept for backward).
    const fuse = this.training && isGradEnabled();
    const act = (m: Module | undefined) => (m instanceof Lambda ? m.activation : null);
    for (let i = 0; i < this.layers.length; i++) {
      const m = this.layers[i], next = this.layers[i + 1];
      if (fuse && act(m) === 'gelu' && next instanceof BatchNorm2d && next.training) {
        const post = act(this.layers[i + 2]) === 'relu' ? 'relu' : undefined;
        y = next.forwardWithActivation(y, { pre: 'gelu', post });
        i += post ? 2 : 1;
      } else if (fuse && m instanceof BatchNorm2d && m.training && act(next) === 'relu') {
        y = m.forwardWithActivation(y, { post: 'relu' });
        i += 1;
      } else if (fuse && m instanceof GroupNorm && act(next) === 'relu') {
        y = m.forwardWithActivation(y, { post: 'relu' });
        i += 1;
      } else if (fuse && act(m) === 'gelu' && next instanceof Conv2d) {
        y = next.forwardAfter(m as Lambda, y);
        i += 1;
      } else {
        y = m.forward(y) as Tensor;
      }
    }
    return y;
  }
}

/** Children named 0, 1, 2, ... without a forward of their own (PyTorch's nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items.map((m, i) => this.add(String(i), m));
  }
  forward(): never {
    throw new Error('ModuleList has no forward(); iterate over .items');
  }
}
