// UNet++ (Zhou et al., DLMIA 2018): nested dense skip pathways over a VGG-style encoder, in the
// configuration of the common re-implementations (e.g. 4uiiurz1/pytorch-nested-unet NestedUNet):
// filters [32, 64, 128, 256, 512], each node X^{i,j} a VGG block (conv3 -> BN -> ReLU twice;
// names conv1, bn1, conv2, bn2), MaxPool 2x2 down, bilinear x2 (align_corners true) up,
//   X^{i,0} = block(pool(X^{i-1,0})),  X^{i,j} = block(cat[X^{i,0}, ..., X^{i,j-1}, up(X^{i+1,j-1})]).
// Nodes are registered as conv{i}_{j} in the reference's order; the head is `final` (1x1 on
// X^{0,4}) or, with deep supervision, `final1`..`final4` on X^{0,1..4}.
// With 3 input channels and 1 class: 9,163,329 parameters (9,163,428 with deep supervision).
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { Conv2d } from '../nn/layers';
import { DoubleConv, pool2, releaseIntermediates, up2 } from './blocks';

export interface UNetPPOptions {
  /** Four 1x1 heads on X^{0,1..4} (forwardAll returns all four; forward their mean). */
  deepSupervision?: boolean;
  filters?: number[];
}

const NODES: [number, number][] = [
  [0, 0], [1, 0], [2, 0], [3, 0], [4, 0],
  [0, 1], [1, 1], [2, 1], [3, 1],
  [0, 2], [1, 2], [2, 2],
  [0, 3], [1, 3],
  [0, 4],
];

export class UNetPlusPlus extends Module {
  readonly nodes = new Map<string, DoubleConv>();
  readonly heads: Conv2d[] = [];
  readonly deepSupervision: boolean;
  readonly filters: number[];
  constructor(readonly inChannels = 3, readonly numClasses = 1, opts: UNetPPOptions = {}) {
    super();
    this.deepSupervision = opts.deepSupervision ?? false;
    const f = (this.filters = opts.filters ?? [32, 64, 128, 256, 512]);
    if (f.length !== 5 || !f.every((v) => Number.isInteger(v) && v > 0)) throw new Error(`UNet++: filters must be 5 positive integers, got ${JSON.stringify(f)}`);
    for (const [i, j] of NODES) {
      const cin = j === 0 ? (i === 0 ? inChannels : f[i - 1]) : f[i] * j + f[i + 1];
      this.nodes.set(`${i}_${j}`, this.add(`conv${i}_${j}`, new DoubleConv(cin, f[i])));
    }
    if (this.deepSupervision) for (let k = 1; k <= 4; k++) this.heads.push(this.add(`final${k}`, new Conv2d(f[0], numClasses, 1)));
    else this.heads.push(this.add('final', new Conv2d(f[0], numClasses, 1)));
  }
  private node(i: number, j: number): DoubleConv {
    return this.nodes.get(`${i}_${j}`)!;
  }
  /** All outputs: the four deep-supervision logit maps, or the single map in a 1-element array. */
  forwardAll(x: Tensor): Tensor[] {
    const X: Tensor[][] = [[], [], [], [], []];
    for (let i = 0; i < 5; i++) X[i][0] = this.node(i, 0).forward(i === 0 ? x : pool2(X[i - 1][0]));
    for (let j = 1; j <= 4; j++) {
      for (let i = 0; i + j <= 4; i++) {
        const u = up2(X[i + 1][j - 1]);
        X[i][j] = this.node(i, j).forward(F.cat([...X[i].slice(0, j), u], 1));
        releaseIntermediates(u);
      }
    }
    if (!this.deepSupervision) return [this.heads[0].forward(X[0][4])];
    return this.heads.map((h, k) => h.forward(X[0][k + 1]));
  }
  /**
   * Logits [N, classes, H, W]. With deep supervision this is the mean of the four heads' logits
   * (the usual inference rule); train the heads individually with forwardAll().
   */
  forward(x: Tensor): Tensor {
    const outs = this.forwardAll(x);
    if (outs.length === 1) return outs[0];
    return F.div(outs.reduce((a, b) => F.add(a, b)), outs.length);
  }
}
