// MedNeXt v1 (Roy et al., MICCAI 2023) in 2-D, with the state-dict names and order of its
// authors' code (MIC-DKFZ/MedNeXt, nnunet_mednext/network_architecture/mednextv1/MedNextV1.py and
// blocks.py, dim '2d', do_res and do_res_up_down on, GroupNorm with one group per channel, 32
// base channels; sizes S/B/M/L as create_mednext_v1.py): stem conv1x1, four encoder stages and
// residual down blocks, a bottleneck, four residual (transposed-conv) up blocks and decoder
// stages, out_0 (and out_1..out_4 with deep supervision). `dummy_tensor` is the authors' unused
// root parameter (for their checkpointing), kept so their checkpoints load; it is first in the
// state dict as in PyTorch (a module's own parameters come before its children's).
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/create';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { Conv2d, ConvTranspose2d, GELU, GroupNorm, Lambda, Sequential } from '../nn/layers';

export type MedNeXtSize = 'S' | 'B' | 'M' | 'L';

/** Expansion ratios and block counts per stage (enc 0..3, bottleneck, dec 3..0). */
export const MEDNEXT_SIZES: Record<MedNeXtSize, { exp: number[]; blocks: number[] }> = {
  S: { exp: [2, 2, 2, 2, 2, 2, 2, 2, 2], blocks: [2, 2, 2, 2, 2, 2, 2, 2, 2] },
  B: { exp: [2, 3, 4, 4, 4, 4, 4, 3, 2], blocks: [2, 2, 2, 2, 2, 2, 2, 2, 2] },
  M: { exp: [2, 3, 4, 4, 4, 4, 4, 3, 2], blocks: [3, 4, 4, 4, 4, 4, 4, 4, 3] },
  L: { exp: [3, 4, 8, 8, 8, 8, 8, 4, 3], blocks: [3, 4, 8, 8, 8, 8, 8, 4, 3] },
};

/** conv1 depthwise k -> norm GroupNorm(C, C) -> conv2 1x1 (x r) -> GELU -> conv3 1x1 [+ x]. */
class MedNeXtBlock extends Module {
  readonly conv1: Module;
  readonly norm: GroupNorm;
  readonly conv2: Conv2d;
  readonly act: Lambda;
  readonly conv3: Conv2d;
  /** `conv1` replaces the stride-1 depthwise conv (the down and up blocks' resampling convs, in its slot). */
  constructor(cin: number, cout: number, r: number, k: number, readonly residual = true, conv1?: Module) {
    super();
    this.conv1 = this.add('conv1', conv1 ?? new Conv2d(cin, cin, k, { padding: Math.floor(k / 2), groups: cin }));
    this.norm = this.add('norm', new GroupNorm(cin, cin));
    this.conv2 = this.add('conv2', new Conv2d(cin, r * cin, 1));
    // A module, as the authors' nn.GELU: inference plans fuse it into conv2's epilogue.
    this.act = this.add('act', GELU());
    this.conv3 = this.add('conv3', new Conv2d(r * cin, cout, 1));
  }
  forward(x: Tensor): Tensor {
    // GELU -> conv3 [+ x] through conv3.forwardAfter: while training, neither the expanded GELU
    // output nor conv3's own output is kept for backward.
    const h = this.conv2.forward(this.norm.forward(this.conv1.forward(x) as Tensor));
    return this.conv3.forwardAfter(this.act, h, this.residual ? x : undefined);
  }
}

/** The block with a stride-2 depthwise conv1, plus a stride-2 conv1x1 residual (`res_conv`). */
class MedNeXtDownBlock extends MedNeXtBlock {
  readonly res_conv: Conv2d;
  constructor(cin: number, cout: number, r: number, k: number) {
    super(cin, cout, r, k, false, new Conv2d(cin, cin, k, { stride: 2, padding: Math.floor(k / 2), groups: cin }));
    this.res_conv = this.add('res_conv', new Conv2d(cin, cout, 1, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    return F.add(super.forward(x), this.res_conv.forward(x));
  }
}

/** The block with a stride-2 depthwise transposed conv1 and a transposed 1x1 residual, both padded (1, 0, 1, 0). */
class MedNeXtUpBlock extends MedNeXtBlock {
  readonly res_conv: ConvTranspose2d;
  constructor(cin: number, cout: number, r: number, k: number) {
    super(cin, cout, r, k, false, new ConvTranspose2d(cin, cin, k, { stride: 2, padding: Math.floor(k / 2), groups: cin }));
    this.res_conv = this.add('res_conv', new ConvTranspose2d(cin, cout, 1, { stride: 2 }));
  }
  forward(x: Tensor): Tensor {
    const pad = (t: Tensor) => F.pad(t, [1, 0, 1, 0]);
    return F.add(pad(super.forward(x)), pad(this.res_conv.forward(x)));
  }
}

/** `conv_out`: a transposed 1x1 convolution to the classes (the authors' OutBlock). */
class OutBlock extends Module {
  readonly conv_out: ConvTranspose2d;
  constructor(cin: number, classes: number) {
    super();
    this.conv_out = this.add('conv_out', new ConvTranspose2d(cin, classes, 1));
  }
  forward(x: Tensor): Tensor {
    return this.conv_out.forward(x);
  }
}

export interface MedNeXtOptions {
  size?: MedNeXtSize;
  /** Depthwise kernel of every block: 3 (default), 5 or 7. */
  kernelSize?: 3 | 5 | 7;
  /**
   * Four extra heads (out_1..out_4, 1/2 .. 1/16 resolution): forwardAll returns [full, 1/2, 1/4,
   * 1/8, 1/16]; forward still returns the full-resolution logits only (the authors' do_ds = False,
   * what inference uses), so evaluate / predict / export treat the model like any other.
   */
  deepSupervision?: boolean;
}

const C0 = 32;

export class MedNeXt extends Module {
  readonly dummy_tensor: Tensor;
  readonly stem: Conv2d;
  readonly enc: Sequential[] = [];
  readonly down: MedNeXtDownBlock[] = [];
  readonly bottleneck: Sequential;
  readonly up: MedNeXtUpBlock[] = [];
  readonly dec: Sequential[] = [];
  readonly heads: OutBlock[] = [];
  readonly kernelSize: number;
  readonly deepSupervision: boolean;
  constructor(readonly inChannels = 3, readonly numClasses = 1, opts: MedNeXtOptions = {}) {
    super();
    const size = opts.size ?? 'S';
    const cfg = MEDNEXT_SIZES[size];
    if (!cfg) throw new Error(`MedNeXt: size must be S, B, M or L, got ${JSON.stringify(size)}`);
    const k = opts.kernelSize ?? 3;
    if (k !== 3 && k !== 5 && k !== 7) throw new Error(`MedNeXt: kernelSize must be 3, 5 or 7, got ${JSON.stringify(k)}`);
    this.kernelSize = k;
    this.deepSupervision = opts.deepSupervision ?? false;
    this.dummy_tensor = this.param('dummy_tensor', tensor([1], [1]));
    const stage = (c: number, i: number) => new Sequential(...Array.from({ length: cfg.blocks[i] }, () => new MedNeXtBlock(c, c, cfg.exp[i], k)));
    this.stem = this.add('stem', new Conv2d(inChannels, C0, 1));
    for (let i = 0; i < 4; i++) {
      this.enc.push(this.add(`enc_block_${i}`, stage(C0 << i, i)));
      this.down.push(this.add(`down_${i}`, new MedNeXtDownBlock(C0 << i, C0 << (i + 1), cfg.exp[i + 1], k)));
    }
    this.bottleneck = this.add('bottleneck', stage(C0 << 4, 4));
    [3, 2, 1, 0].forEach((i, j) => {
      this.up.push(this.add(`up_${i}`, new MedNeXtUpBlock(C0 << (i + 1), C0 << i, cfg.exp[5 + j], k)));
      this.dec.push(this.add(`dec_block_${i}`, stage(C0 << i, 5 + j)));
    });
    this.heads.push(this.add('out_0', new OutBlock(C0, numClasses)));
    if (this.deepSupervision) for (let i = 1; i <= 4; i++) this.heads.push(this.add(`out_${i}`, new OutBlock(C0 << i, numClasses)));
  }
  /** Logits [N, classes, H, W] of the full-resolution head (out_0). */
  forward(x: Tensor): Tensor {
    return this.run(x, false)[0];
  }
  /**
   * Every head's logits, full resolution first: [out_0 (H), out_1 (H/2), out_2 (H/4), out_3 (H/8),
   * out_4 (H/16)] with deep supervision (the authors' order), else [out_0]. For training with
   * deep supervision (src/train: each head's loss against the target downsampled to its size).
   */
  forwardAll(x: Tensor): Tensor[] {
    return this.run(x, this.deepSupervision);
  }
  private run(x: Tensor, heads: boolean): Tensor[] {
    if (x.ndim !== 4 || x.shape[2] % 16 !== 0 || x.shape[3] % 16 !== 0) {
      throw new Error(`MedNeXt: expected an input [N, C, H, W] with H and W multiples of 16 (four halvings), got [${x.shape.join(', ')}]`);
    }
    let h = this.stem.forward(x);
    const skips: Tensor[] = [];
    for (let i = 0; i < 4; i++) {
      h = this.enc[i].forward(h);
      skips.push(h);
      h = this.down[i].forward(h);
    }
    h = this.bottleneck.forward(h);
    const ds: Tensor[] = heads ? [this.heads[4].forward(h)] : [];
    this.up.forEach((u, j) => {
      const i = 3 - j;
      h = this.dec[j].forward(F.add(skips[i], u.forward(h)));
      if (heads && i > 0) ds.unshift(this.heads[i].forward(h));
    });
    return [this.heads[0].forward(h), ...ds];
  }
}
