// UNeXt (Valanarasu & Patel, MICCAI 2022) with the state-dict names of its authors' `UNext`
// (jeya-maria-jose/UNeXt-pytorch archs.py; the same module in FengheTan9/Medical-Image-
// Segmentation-Benchmarks, which the CMUNeXt tables use): three conv stages (16, 32, 128),
// two tokenised shifted-MLP stages (160, 256), a mirrored decoder with tokenised stages at 160
// and 128, bilinear x2 upsampling (align_corners false) and additive skips. 1,471,921
// parameters at 3 -> 1 channels; order as tools/pytorch/models.py (UNeXt).
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { toMap, toTokens } from './blocks';
import { Module } from '../nn/module';
import { BatchNorm2d, Conv2d, LayerNorm, Linear, ModuleList } from '../nn/layers';


const SHIFT = 5;

/**
 * The shifted MLP's token shift: the channels split into SHIFT chunks of ceil(C / SHIFT)
 * (torch.chunk), chunk j moved by j - 2 pixels along H (axis 2) or W (axis 3), zero-filled
 * (the authors pad by 2, roll and crop, which is the same thing).
 */
function shiftTokens(t: Tensor, h: number, w: number, axis: 2 | 3): Tensor {
  const [b, , c] = t.shape;
  const m = F.reshape(F.transpose(t, 1, 2), [b, c, h, w]);
  const size = Math.ceil(c / SHIFT), half = Math.floor(SHIFT / 2);
  const parts: Tensor[] = [];
  for (let j = 0, c0 = 0; c0 < c; j++, c0 += size) {
    const chunk = F.slice(m, 1, c0, Math.min(c, c0 + size));
    const s = j - half;
    parts.push(s === 0 ? chunk : F.pad(chunk, axis === 3 ? [s, -s] : [0, 0, s, -s]));
  }
  return F.transpose(F.reshape(F.cat(parts, 1), [b, c, h * w]), 1, 2);
}

/** `dwconv`: depthwise conv3 on the token map. */
class DWConv extends Module {
  readonly dwconv: Conv2d;
  constructor(c: number) {
    super();
    this.dwconv = this.add('dwconv', new Conv2d(c, c, 3, { padding: 1, groups: c }));
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    return toTokens(this.dwconv.forward(toMap(t, h, w)));
  }
}

/** shift(H) -> fc1 -> dwconv -> GELU -> shift(W) -> fc2 (hidden = C: the authors' mlp_ratio 1). */
class ShiftMLP extends Module {
  readonly fc1: Linear;
  readonly dwconv: DWConv;
  readonly fc2: Linear;
  constructor(c: number) {
    super();
    this.fc1 = this.add('fc1', new Linear(c, c));
    this.dwconv = this.add('dwconv', new DWConv(c));
    this.fc2 = this.add('fc2', new Linear(c, c));
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    const x = F.gelu(this.dwconv.forward(this.fc1.forward(shiftTokens(t, h, w, 2)), h, w));
    return this.fc2.forward(shiftTokens(x, h, w, 3));
  }
}

/** x + mlp(norm2(x)). */
class ShiftedBlock extends Module {
  readonly norm2: LayerNorm;
  readonly mlp: ShiftMLP;
  constructor(c: number) {
    super();
    this.norm2 = this.add('norm2', new LayerNorm(c));
    this.mlp = this.add('mlp', new ShiftMLP(c));
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    return F.add(t, this.mlp.forward(this.norm2.forward(t), h, w));
  }
}

/** `proj` conv3 stride 2 -> tokens -> `norm` LayerNorm. */
class OverlapPatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly norm: LayerNorm;
  constructor(cin: number, cout: number) {
    super();
    this.proj = this.add('proj', new Conv2d(cin, cout, 3, { stride: 2, padding: 1 }));
    this.norm = this.add('norm', new LayerNorm(cout));
  }
  forward(x: Tensor): [Tensor, number, number] {
    const m = this.proj.forward(x);
    return [this.norm.forward(toTokens(m)), m.shape[2], m.shape[3]];
  }
}

const up2 = (x: Tensor) => F.interpolate(x, { scaleFactor: 2, mode: 'bilinear', alignCorners: false });

export class UNeXt extends Module {
  readonly encoder1: Conv2d; readonly encoder2: Conv2d; readonly encoder3: Conv2d;
  readonly ebn1: BatchNorm2d; readonly ebn2: BatchNorm2d; readonly ebn3: BatchNorm2d;
  readonly norm3: LayerNorm; readonly norm4: LayerNorm; readonly dnorm3: LayerNorm; readonly dnorm4: LayerNorm;
  readonly block1: ModuleList<ShiftedBlock>; readonly block2: ModuleList<ShiftedBlock>;
  readonly dblock1: ModuleList<ShiftedBlock>; readonly dblock2: ModuleList<ShiftedBlock>;
  readonly patch_embed3: OverlapPatchEmbed; readonly patch_embed4: OverlapPatchEmbed;
  readonly decoders: Conv2d[] = [];
  readonly dbns: BatchNorm2d[] = [];
  readonly final: Conv2d;
  constructor(readonly inChannels = 3, readonly numClasses = 1) {
    super();
    this.encoder1 = this.add('encoder1', new Conv2d(inChannels, 16, 3, { padding: 1 }));
    this.encoder2 = this.add('encoder2', new Conv2d(16, 32, 3, { padding: 1 }));
    this.encoder3 = this.add('encoder3', new Conv2d(32, 128, 3, { padding: 1 }));
    this.ebn1 = this.add('ebn1', new BatchNorm2d(16));
    this.ebn2 = this.add('ebn2', new BatchNorm2d(32));
    this.ebn3 = this.add('ebn3', new BatchNorm2d(128));
    this.norm3 = this.add('norm3', new LayerNorm(160));
    this.norm4 = this.add('norm4', new LayerNorm(256));
    this.dnorm3 = this.add('dnorm3', new LayerNorm(160));
    this.dnorm4 = this.add('dnorm4', new LayerNorm(128));
    this.block1 = this.add('block1', new ModuleList([new ShiftedBlock(160)]));
    this.block2 = this.add('block2', new ModuleList([new ShiftedBlock(256)]));
    this.dblock1 = this.add('dblock1', new ModuleList([new ShiftedBlock(160)]));
    this.dblock2 = this.add('dblock2', new ModuleList([new ShiftedBlock(128)]));
    this.patch_embed3 = this.add('patch_embed3', new OverlapPatchEmbed(128, 160));
    this.patch_embed4 = this.add('patch_embed4', new OverlapPatchEmbed(160, 256));
    ([[256, 160], [160, 128], [128, 32], [32, 16], [16, 16]] as const).forEach(([a, b], i) => this.decoders.push(this.add(`decoder${i + 1}`, new Conv2d(a, b, 3, { padding: 1 }))));
    [160, 128, 32, 16].forEach((c, i) => this.dbns.push(this.add(`dbn${i + 1}`, new BatchNorm2d(c))));
    this.final = this.add('final', new Conv2d(16, numClasses, 1));
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[2] % 32 !== 0 || x.shape[3] % 32 !== 0) {
      throw new Error(`UNeXt: expected an input [N, C, H, W] with H and W multiples of 32 (five halvings), got [${x.shape.join(', ')}]`);
    }
    const stage = (conv: Conv2d, bn: BatchNorm2d, h: Tensor) => F.relu(F.maxPool2d(bn.forward(conv.forward(h)), { kernelSize: 2, stride: 2 }));
    const t1 = stage(this.encoder1, this.ebn1, x);
    const t2 = stage(this.encoder2, this.ebn2, t1);
    const t3 = stage(this.encoder3, this.ebn3, t2);
    let [tok, h, w] = this.patch_embed3.forward(t3);
    const t4 = toMap(this.norm3.forward(this.block1.items[0].forward(tok, h, w)), h, w);
    [tok, h, w] = this.patch_embed4.forward(t4);
    let out = toMap(this.norm4.forward(this.block2.items[0].forward(tok, h, w)), h, w);
    const decode = (i: number, m: Tensor) => F.relu(up2(this.dbns[i].forward(this.decoders[i].forward(m))));
    // Tokenised decoder stages at 1/16 and 1/8 of the input.
    for (const [i, skip, block, norm] of [[0, t4, this.dblock1, this.dnorm3], [1, t3, this.dblock2, this.dnorm4]] as const) {
      out = F.add(decode(i, out), skip);
      [h, w] = [out.shape[2], out.shape[3]];
      out = toMap(norm.forward(block.items[0].forward(toTokens(out), h, w)), h, w);
    }
    out = F.add(decode(2, out), t2);
    out = F.add(decode(3, out), t1);
    return this.final.forward(F.relu(up2(this.decoders[4].forward(out))));
  }
}
