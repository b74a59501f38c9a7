// Attention U-Net (Oktay et al., 2018) as the CMUNeXt benchmark repository defines it
// (FengheTan9/Medical-Image-Segmentation-Benchmarks, src/network/conv_based/AttU_Net.py), with
// its state-dict names so converted checkpoints load: Conv1..Conv5 double convs (64..1024),
// then per level k = 5..2 Up<k> (nearest x2 -> conv3 -> BN -> ReLU), Att<k> (additive attention
// gate: x * sigmoid(BN(conv1x1(ReLU(BN(W_g g) + BN(W_x x)))))) and Up_conv<k>, then Conv_1x1.
// 34,878,573 parameters at 3 -> 1 channels; order as tools/pytorch/models.py (AttUNet).
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { BatchNorm2d, Conv2d, ReLU, Sequential, Sigmoid, Upsample } from '../nn/layers';
import { pool2, releaseIntermediates } from './blocks';
import { isGradEnabled } from '../tensor/grad-mode';

/** `conv.0` conv3 -> `conv.1` BN -> ReLU -> `conv.3` conv3 -> `conv.4` BN -> ReLU. */
class ConvBlock extends Module {
  readonly conv: Sequential;
  constructor(cin: number, cout: number) {
    super();
    this.conv = this.add('conv', new Sequential(
      new Conv2d(cin, cout, 3, { padding: 1 }), new BatchNorm2d(cout), ReLU(),
      new Conv2d(cout, cout, 3, { padding: 1 }), new BatchNorm2d(cout), ReLU(),
    ));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/** `up.0` nearest x2 -> `up.1` conv3 -> `up.2` BN -> ReLU. */
class UpConv extends Module {
  readonly up: Sequential;
  constructor(cin: number, cout: number) {
    super();
    this.up = this.add('up', new Sequential(Upsample({ scaleFactor: 2 }), new Conv2d(cin, cout, 3, { padding: 1 }), new BatchNorm2d(cout), ReLU()));
  }
  forward(x: Tensor): Tensor {
    return this.up.forward(x);
  }
}

/** Additive attention gate: the skip x weighted per pixel by a map computed from x and the gating g. */
class AttentionBlock extends Module {
  readonly W_g: Sequential;
  readonly W_x: Sequential;
  readonly psi: Sequential;
  constructor(fg: number, fl: number, fint: number) {
    super();
    this.W_g = this.add('W_g', new Sequential(new Conv2d(fg, fint, 1), new BatchNorm2d(fint)));
    this.W_x = this.add('W_x', new Sequential(new Conv2d(fl, fint, 1), new BatchNorm2d(fint)));
    this.psi = this.add('psi', new Sequential(new Conv2d(fint, 1, 1), new BatchNorm2d(1), Sigmoid()));
  }
  forward(g: Tensor, x: Tensor): Tensor {
    const a = this.W_g.forward(g), b = this.W_x.forward(x);
    if (!isGradEnabled()) return F.mul(x, this.psi.forward(F.relu(F.add(a, b))));
    // While training: relu(a + b) as one op, and the two batch-norm outputs freed once summed
    // (neither the sum nor batch norm differentiates from them).
    const r = F.addRelu(a, b);
    releaseIntermediates(a, b);
    return F.mul(x, this.psi.forward(r));
  }
}

const FILTERS = [64, 128, 256, 512, 1024];

export class AttUNet extends Module {
  readonly encoders: ConvBlock[] = [];
  readonly levels: { up: UpConv; att: AttentionBlock; conv: ConvBlock }[] = [];
  readonly Conv_1x1: Conv2d;
  constructor(readonly inChannels = 3, readonly numClasses = 1) {
    super();
    FILTERS.forEach((c, i) => this.encoders.push(this.add(`Conv${i + 1}`, new ConvBlock(i === 0 ? inChannels : FILTERS[i - 1], c))));
    for (const k of [5, 4, 3, 2]) {
      const c = FILTERS[k - 2];
      this.levels.push({
        up: this.add(`Up${k}`, new UpConv(2 * c, c)),
        att: this.add(`Att${k}`, new AttentionBlock(c, c, c / 2)),
        conv: this.add(`Up_conv${k}`, new ConvBlock(2 * c, c)),
      });
    }
    this.Conv_1x1 = this.add('Conv_1x1', new Conv2d(64, numClasses, 1));
  }
  forward(x: Tensor): Tensor {
    const skips: Tensor[] = [];
    let h = x;
    this.encoders.forEach((e, i) => {
      h = e.forward(i === 0 ? h : pool2(h));
      skips.push(h);
    });
    this.levels.forEach(({ up, att, conv }, i) => {
      const d = up.forward(h);
      const gated = att.forward(d, skips[3 - i]);
      h = conv.forward(F.cat([gated, d], 1));
      releaseIntermediates(gated);  // d stays: W_g's convolution keeps it for backward
    });
    return this.Conv_1x1.forward(h);
  }
}
