// Building blocks shared by the segmentation networks (names mirror tools/pytorch/models.py).
import { Tensor } from '../tensor/tensor';
import { fullOf } from '../tensor/create';
import { isGradEnabled } from '../tensor/grad-mode';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { BatchNorm2d, Conv2d, Dropout2d, Lambda, Linear } from '../nn/layers';

/** Bilinear x2 upsampling with align_corners = true (NExNet, UNet, UNet++). */
export function up2(x: Tensor): Tensor {
  return F.interpolate(x, { scaleFactor: 2, mode: 'bilinear', alignCorners: true });
}

export function pool2(x: Tensor): Tensor {
  return F.maxPool2d(x, { kernelSize: 2, stride: 2 });
}

/**
 * Manhattan self-attention (single head): `q`, `k`, `v` = Linear(d, d) on each pixel's channel
 * vector; decomposed (row pass, then column pass) by default. gamma is a constant.
 */
export class MaSA extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  constructor(readonly d: number, readonly gamma = 0.9, readonly decomposed = true) {
    super();
    this.q = this.add('q', new Linear(d, d));
    this.k = this.add('k', new Linear(d, d));
    this.v = this.add('v', new Linear(d, d));
  }
  forward(x: Tensor): Tensor {
    const p = { wq: this.q.weight, bq: this.q.bias!, wk: this.k.weight, bk: this.k.bias!, wv: this.v.weight, bv: this.v.bias! };
    return F.masa(x, p, { gamma: this.gamma, decomposed: this.decomposed });
  }
}

/**
 * T-PEN, the trainable progressively expanded neuron: y = mix(cat[a1 x, a2 x^2, ..., a_n x^n]),
 * a_k per-channel parameters (`a1`, `a2`, ... each [C], initialised to the Maclaurin coefficients
 * of ln(1 + x): 1, -1/2, 1/3, ...) and `mix` a conv1x1 (order*C -> C, with bias). The expansion
 * runs as one fused op on the stacked coefficients [order, C].
 */
export class TPEN extends Module {
  readonly coeffs: Tensor[] = [];
  readonly mix: Conv2d;
  constructor(readonly channels: number, readonly order = 3) {
    super();
    if (!Number.isInteger(order) || order < 1 || order > 5) throw new Error(`TPEN: order must be an integer in 1..5, got ${order}`);
    for (let n = 1; n <= order; n++) this.coeffs.push(this.param(`a${n}`, fullOf([channels], (n % 2 ? 1 : -1) / n)));
    this.mix = this.add('mix', new Conv2d(order * channels, channels, 1));
  }
  forward(x: Tensor): Tensor {
    return this.mix.forward(F.tpen(x, F.stack(this.coeffs, 0)));
  }
}

export interface DoubleConvOptions {
  mid?: number;
  masa?: boolean;
  gamma?: number;
  dropout?: number;
  decomposed?: boolean;
}

/**
 * conv1 (conv3 in -> mid) -> bn1 -> ReLU -> conv2 (conv3 mid -> out) -> bn2 -> ReLU
 * [-> Dropout2d] [-> masa].
 */
export class DoubleConv extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly dropout: Lambda | null = null;
  readonly masa: MaSA | null = null;
  constructor(cin: number, cout: number, opts: DoubleConvOptions = {}) {
    super();
    const mid = opts.mid ?? cout;
    this.conv1 = this.add('conv1', new Conv2d(cin, mid, 3, { padding: 1 }));
    this.bn1 = this.add('bn1', new BatchNorm2d(mid));
    this.conv2 = this.add('conv2', new Conv2d(mid, cout, 3, { padding: 1 }));
    this.bn2 = this.add('bn2', new BatchNorm2d(cout));
    if ((opts.dropout ?? 0) > 0) this.dropout = this.add('dropout', Dropout2d(opts.dropout));
    if (opts.masa) this.masa = this.add('masa', new MaSA(cout, opts.gamma ?? 0.9, opts.decomposed ?? true));
  }
  forward(x: Tensor): Tensor {
    let h = this.bn1.forwardWithActivation(this.conv1.forward(x), { post: 'relu' });
    h = this.bn2.forwardWithActivation(this.conv2.forward(h), { post: 'relu' });
    if (this.dropout) h = this.dropout.forward(h);
    if (this.masa) h = this.masa.forward(h);
    return h;
  }
}

/** Residual(fn): fn(x) + x, with the wrapped module registered as `fn`. */
export class Residual extends Module {
  readonly fn: Module;
  constructor(fn: Module) {
    super();
    this.fn = this.add('fn', fn);
  }
  forward(x: Tensor): Tensor {
    return F.add(this.fn.forward(x) as Tensor, x);
  }
}

/** [B, C, H, W] -> [B, H*W, C] tokens (the token stages of UNeXt and SegFormer). */
export const toTokens = (m: Tensor): Tensor => F.transpose(F.flatten(m, 2), 1, 2);
/** [B, H*W, C] tokens -> [B, C, H, W]. */
export const toMap = (t: Tensor, h: number, w: number): Tensor => F.permute(F.reshape(t, [t.shape[0], h, w, t.shape[2]]), [0, 3, 1, 2]);

/**
 * While training: frees the values of intermediates that no backward reads once their last
 * consumer has run (Tensor.releaseData): the upsampled half of a U-Net skip join (cat's, pad's
 * and the upsampling's backward need only shapes and inputs), or batch-norm outputs summed by an
 * add / add_relu. Each call site knows its tensors have no other reader. Without autograd the
 * scope frees them as usual.
 */
export function releaseIntermediates(...ts: Tensor[]): void {
  if (!isGradEnabled()) return;
  for (const t of ts) t.releaseData('an intermediate no backward reads is freed once its consumer has run');
}
