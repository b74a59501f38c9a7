// CMUNeXt (Tang et al., ISBI 2024) with the state-dict names of the authors' code
// (FengheTan9/CMUNeXt, network/CMUNeXt.py), so that their converted checkpoints load.
// Names and order: /work/shared/reference/cmunext*.params.txt and tools/pytorch/models.py.
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { BatchNorm2d, Conv2d, GELU, ReLU, Sequential, Upsample } from '../nn/layers';
import { pool2, Residual } from './blocks';

export interface CMUNeXtConfig {
  dims: number[];
  depths: number[];
  kernels: number[];
}

export const CMUNEXT_VARIANTS: Record<'cmunext-s' | 'cmunext' | 'cmunext-l', CMUNeXtConfig> = {
  'cmunext-s': { dims: [8, 16, 32, 64, 128], depths: [1, 1, 1, 1, 1], kernels: [3, 3, 7, 7, 9] },
  cmunext: { dims: [16, 32, 128, 160, 256], depths: [1, 1, 1, 3, 1], kernels: [3, 3, 7, 7, 7] },
  'cmunext-l': { dims: [32, 64, 128, 256, 512], depths: [1, 1, 1, 6, 3], kernels: [3, 3, 7, 7, 7] },
};

/** `conv.0` conv3, `conv.1` BN, `conv.2` ReLU. */
class ConvBNReLU extends Module {
  readonly conv: Sequential;
  constructor(cin: number, cout: number) {
    super();
    this.conv = this.add('conv', new Sequential(new Conv2d(cin, cout, 3, { padding: 1 }), new BatchNorm2d(cout), ReLU()));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/** One CMUNeXt block: Residual(dwconv k -> GELU -> BN) -> pw 4x expand -> GELU -> BN -> pw -> GELU -> BN. */
function cmunextBlock(c: number, k: number): Sequential {
  return new Sequential(
    new Residual(new Sequential(new Conv2d(c, c, k, { groups: c, padding: Math.floor(k / 2) }), GELU(), new BatchNorm2d(c))),
    new Conv2d(c, 4 * c, 1), GELU(), new BatchNorm2d(4 * c),
    new Conv2d(4 * c, c, 1), GELU(), new BatchNorm2d(c),
  );
}

/** `block` (depth CMUNeXt blocks at width cin), then `up` (conv3 cin -> cout, BN, ReLU). */
class CMUNeXtStage extends Module {
  readonly block: Sequential;
  readonly up: ConvBNReLU;
  constructor(cin: number, cout: number, depth: number, k: number) {
    super();
    this.block = this.add('block', new Sequential(...Array.from({ length: depth }, () => cmunextBlock(cin, k))));
    this.up = this.add('up', new ConvBNReLU(cin, cout));
  }
  forward(x: Tensor): Tensor {
    return this.up.forward(this.block.forward(x));
  }
}

/** `up.0` bilinear x2 (align_corners false), `up.1` conv3, `up.2` BN, `up.3` ReLU. */
class CMUNeXtUp extends Module {
  readonly up: Sequential;
  constructor(cin: number, cout: number) {
    super();
    this.up = this.add('up', new Sequential(Upsample({ scaleFactor: 2, mode: 'bilinear', alignCorners: false }), new Conv2d(cin, cout, 3, { padding: 1 }), new BatchNorm2d(cout), ReLU()));
  }
  forward(x: Tensor): Tensor {
    return this.up.forward(x);
  }
}

/** Fusion: grouped conv3 (g=2) -> GELU -> BN -> conv1x1 -> GELU -> BN -> conv1x1 -> GELU -> BN. */
class CMUNeXtFusion extends Module {
  readonly conv: Sequential;
  constructor(cin: number, cout: number) {
    super();
    this.conv = this.add('conv', new Sequential(
      new Conv2d(cin, cin, 3, { padding: 1, groups: 2 }), GELU(), new BatchNorm2d(cin),
      new Conv2d(cin, 4 * cout, 1), GELU(), new BatchNorm2d(4 * cout),
      new Conv2d(4 * cout, cout, 1), GELU(), new BatchNorm2d(cout),
    ));
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

export class CMUNeXt extends Module {
  readonly stem: ConvBNReLU;
  readonly encoders: CMUNeXtStage[];
  readonly ups: CMUNeXtUp[] = [];
  readonly fusions: CMUNeXtFusion[] = [];
  readonly Conv_1x1: Conv2d;
  constructor(readonly inChannels = 3, readonly numClasses = 1, readonly config: CMUNeXtConfig = CMUNEXT_VARIANTS.cmunext) {
    super();
    const { dims: d, depths, kernels } = config;
    if (d.length !== 5 || depths.length !== 5 || kernels.length !== 5) throw new Error('CMUNeXt: dims, depths and kernels must each have 5 entries');
    this.stem = this.add('stem', new ConvBNReLU(inChannels, d[0]));
    const ins = [d[0], d[0], d[1], d[2], d[3]];
    this.encoders = [0, 1, 2, 3, 4].map((i) => this.add(`encoder${i + 1}`, new CMUNeXtStage(ins[i], d[i], depths[i], kernels[i])));
    for (const u of [5, 4, 3, 2]) {
      this.ups.push(this.add(`Up${u}`, new CMUNeXtUp(d[u - 1], d[u - 2])));
      this.fusions.push(this.add(`Up_conv${u}`, new CMUNeXtFusion(2 * d[u - 2], d[u - 2])));
    }
    this.Conv_1x1 = this.add('Conv_1x1', new Conv2d(d[0], numClasses, 1));
  }
  forward(x: Tensor): Tensor {
    const skips: Tensor[] = [];
    let h = this.stem.forward(x);
    for (let i = 0; i < 5; i++) {
      h = this.encoders[i].forward(i === 0 ? h : pool2(h));
      skips.push(h);
    }
    for (let j = 0; j < 4; j++) h = this.fusions[j].forward(F.cat([skips[3 - j], this.ups[j].forward(h)], 1));
    return this.Conv_1x1.forward(h);
  }
}
