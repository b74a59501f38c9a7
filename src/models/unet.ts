// UNet (Ronneberger et al., 2015), 64 base filters, conv3 -> BN -> ReLU double convs, with
// transposed-conv (`unet`) or bilinear (`unet-bilinear`, halved bottleneck) upsampling.
// Names and order mirror tools/pytorch/models.py (UNet): enc, up (transposed only), dec, head.
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { Conv2d, ConvTranspose2d, ModuleList } from '../nn/layers';
import { DoubleConv, pool2, releaseIntermediates, up2 } from './blocks';

/** Pads u (bottom/right-heavy, like the reference) to the spatial size of s when they differ. */
export function padTo(u: Tensor, s: Tensor): Tensor {
  const dy = s.shape[2] - u.shape[2], dx = s.shape[3] - u.shape[3];
  if (!dy && !dx) return u;
  return F.pad(u, [Math.floor(dx / 2), dx - Math.floor(dx / 2), Math.floor(dy / 2), dy - Math.floor(dy / 2)]);
}

export interface UNetOptions {
  /** Bilinear x2 upsampling (align_corners true) and a halved bottleneck instead of transposed convs. */
  bilinear?: boolean;
}

export class UNet extends Module {
  readonly enc: ModuleList<DoubleConv>;
  readonly up: ModuleList<ConvTranspose2d> | null = null;
  readonly dec: ModuleList<DoubleConv>;
  readonly head: Conv2d;
  readonly bilinear: boolean;
  constructor(readonly inChannels = 3, readonly numClasses = 1, opts: UNetOptions = {}) {
    super();
    this.bilinear = opts.bilinear ?? false;
    const f = this.bilinear ? 2 : 1;
    this.enc = this.add('enc', new ModuleList([
      new DoubleConv(inChannels, 64), new DoubleConv(64, 128), new DoubleConv(128, 256),
      new DoubleConv(256, 512), new DoubleConv(512, 1024 / f),
    ]));
    const chans = [1024, 512, 256, 128];
    if (this.bilinear) {
      const outs = [256, 128, 64, 64];
      this.dec = this.add('dec', new ModuleList(chans.map((c, i) => new DoubleConv(c, outs[i], { mid: c / 2 }))));
    } else {
      this.up = this.add('up', new ModuleList(chans.map((c) => new ConvTranspose2d(c, c / 2, 2, { stride: 2 }))));
      this.dec = this.add('dec', new ModuleList(chans.map((c) => new DoubleConv(c, c / 2))));
    }
    this.head = this.add('head', new Conv2d(64, numClasses, 1));
  }
  forward(x: Tensor): Tensor {
    const skips: Tensor[] = [];
    let h = x;
    this.enc.items.forEach((e, l) => {
      h = e.forward(l === 0 ? h : pool2(h));
      skips.push(h);
    });
    this.dec.items.forEach((d, i) => {
      const s = skips[3 - i];
      const u = this.up ? this.up.items[i].forward(h) : up2(h);
      const up = padTo(u, s);
      h = d.forward(F.cat([s, up], 1));
      releaseIntermediates(u, up);
    });
    return this.head.forward(h);
  }
}
