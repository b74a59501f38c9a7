// NExNet Seg (Reyes-Angulo and Paheding, CVPRW 2025), its denoising autoencoder, and the SSL
// model with the autoencoder attached. Names and order mirror tools/pytorch/models.py
// (NExNetSeg, NExNetAE); see /work/shared/design/models.md for the definitions.
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module } from '../nn/module';
import { BatchNorm2d, Conv2d, ModuleList } from '../nn/layers';
import { noGrad } from '../autograd/engine';
import { DoubleConv, pool2, releaseIntermediates, TPEN, up2 } from './blocks';

export interface NExNetOptions {
  /** MaSA decay (the layer default 0.9; the authors' training recipe uses 0.8). */
  gamma?: number;
  /** Dropout2d probability on the last decoder stage (0: none). */
  dropout?: number;
  /** Decomposed (row + column) MaSA (default) or the full O((HW)^2) form. */
  decomposed?: boolean;
  /** T-PEN expansion order (3). */
  tpenOrder?: number;
}

/** NEx block: y = tpen(relu(conv_dil2(bn(x)))); att = DoubleConv+MaSA(y) (the skip feature). */
export class NExBlock extends Module {
  readonly bn: BatchNorm2d;
  readonly conv: Conv2d;
  readonly tpen: TPEN;
  readonly att: DoubleConv;
  constructor(cin: number, cout: number, opts: NExNetOptions = {}) {
    super();
    this.bn = this.add('bn', new BatchNorm2d(cin));
    this.conv = this.add('conv', new Conv2d(cin, cout, 3, { padding: 2, dilation: 2 }));
    this.tpen = this.add('tpen', new TPEN(cout, opts.tpenOrder ?? 3));
    this.att = this.add('att', new DoubleConv(cout, cout, { masa: true, gamma: opts.gamma, decomposed: opts.decomposed }));
  }
  /** Returns [y, att] (att null when needAtt is false). */
  forward(x: Tensor, needAtt = true): [Tensor, Tensor | null] {
    const y = this.tpen.forward(F.relu(this.conv.forward(this.bn.forward(x))));
    return [y, needAtt ? this.att.forward(y) : null];
  }
}

/** conv3 512 -> 1024 -> BN -> ReLU (`bottleneck.conv`, `bottleneck.bn`). */
class BNConvReLU extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(cin: number, cout: number) {
    super();
    this.conv = this.add('conv', new Conv2d(cin, cout, 3, { padding: 1 }));
    this.bn = this.add('bn', new BatchNorm2d(cout));
  }
  forward(x: Tensor): Tensor {
    return this.bn.forwardWithActivation(this.conv.forward(x), { post: 'relu' });
  }
}

/**
 * The denoising U-Net autoencoder of the NExNet SSL recipe (32 base filters). forward(x) returns
 * the reconstruction (sigmoid); forwardWithEmbedding also returns the bottleneck embedding
 * [N, 1024, H/32, W/32]; embed(x) computes only the embedding (plain encoder path).
 */
export class NExNetAE extends Module {
  readonly enc: ModuleList<DoubleConv>;
  readonly att: ModuleList<DoubleConv>;
  readonly bottleneck: BNConvReLU;
  readonly dec: ModuleList<DoubleConv>;
  readonly head: Conv2d;
  constructor(readonly inChannels = 3, opts: Pick<NExNetOptions, 'gamma' | 'decomposed'> = {}) {
    super();
    const L = [32, 64, 128, 256, 512];
    const ins = [inChannels, ...L.slice(0, -1)];
    this.enc = this.add('enc', new ModuleList(L.map((o, l) => new DoubleConv(ins[l], o))));
    this.att = this.add('att', new ModuleList(L.slice(0, 3).map((o, l) => new DoubleConv(ins[l], o, { masa: true, gamma: opts.gamma, decomposed: opts.decomposed }))));
    this.bottleneck = this.add('bottleneck', new BNConvReLU(512, 1024));
    let prev = 1024;
    const dec: DoubleConv[] = [];
    for (const w of [512, 256, 128, 64, 32]) {
      dec.push(new DoubleConv(prev + w, w));
      prev = w;
    }
    this.dec = this.add('dec', new ModuleList(dec));
    this.head = this.add('head', new Conv2d(32, inChannels, 1));
  }
  embed(x: Tensor): Tensor {
    let h = x;
    for (const e of this.enc.items) h = pool2(e.forward(h));
    return this.bottleneck.forward(h);
  }
  forwardWithEmbedding(x: Tensor): { image: Tensor; embedding: Tensor } {
    const skips: Tensor[] = [];
    let h = x;
    this.enc.items.forEach((e, l) => {
      const o = e.forward(h);
      skips.push(l < this.att.items.length ? this.att.items[l].forward(h) : o);
      h = pool2(o);
    });
    const embedding = this.bottleneck.forward(h);
    h = embedding;
    this.dec.items.forEach((d, j) => {
      const u = up2(h);
      h = d.forward(F.cat([u, skips[4 - j]], 1));
      releaseIntermediates(u);
    });
    return { image: F.sigmoid(this.head.forward(h)), embedding };
  }
  forward(x: Tensor): Tensor {
    return this.forwardWithEmbedding(x).image;
  }
}

export interface NExNetSegOptions extends NExNetOptions {
  /** Attach the denoising autoencoder (`ae.*`) and feed its bottleneck embedding to the decoder. */
  ssl?: boolean;
  /**
   * SSL only: freeze the autoencoder (default true): its parameters get requiresGrad = false,
   * its embedding runs without autograd, and it stays in eval mode (BN uses its pretrained
   * running statistics) even when the model is put in training mode.
   */
  freezeEncoder?: boolean;
}

export class NExNetSeg extends Module {
  static readonly FILTERS = [32, 64, 128, 256, 256, 512];
  readonly enc: ModuleList<NExBlock>;
  readonly dec: ModuleList<DoubleConv>;
  readonly head: Conv2d;
  readonly ae: NExNetAE | null = null;
  readonly ssl: boolean;
  private frozen: boolean;
  constructor(readonly inChannels = 3, readonly numClasses = 1, opts: NExNetSegOptions = {}) {
    super();
    const Fs = NExNetSeg.FILTERS;
    const ins = [inChannels, ...Fs.slice(0, -1)];
    this.ssl = opts.ssl ?? false;
    this.frozen = this.ssl && (opts.freezeEncoder ?? true);
    this.enc = this.add('enc', new ModuleList(Fs.map((o, i) => new NExBlock(ins[i], o, opts))));
    const W = [256, 256, 128, 64, 32];
    const skips = [Fs[4], Fs[3], Fs[2], Fs[1], Fs[0]];
    let prev = Fs[5] + (this.ssl ? 1024 : 0);
    const dec: DoubleConv[] = [];
    W.forEach((w, j) => {
      dec.push(new DoubleConv(prev + skips[j], w, { dropout: j === 4 ? opts.dropout ?? 0 : 0 }));
      prev = w;
    });
    this.dec = this.add('dec', new ModuleList(dec));
    this.head = this.add('head', new Conv2d(32, numClasses, 1));
    if (this.ssl) {
      this.ae = this.add('ae', new NExNetAE(inChannels, opts));
      if (this.frozen) this.freezeEncoder(true);
    }
  }

  /** SSL only: freezes (or unfreezes) the attached autoencoder. */
  freezeEncoder(freeze = true): this {
    if (!this.ae) throw new Error('NExNetSeg.freezeEncoder: this model has no autoencoder (create it with ssl: true, i.e. nexnet-ssl)');
    this.frozen = freeze;
    this.ae.requiresGrad_(!freeze);
    if (freeze) this.ae.eval();
    else this.ae.train(this.training);
    return this;
  }

  get encoderFrozen(): boolean {
    return this.frozen;
  }

  train(mode = true): this {
    super.train(mode);
    if (this.ae && this.frozen) this.ae.eval();
    return this;
  }

  forward(x: Tensor): Tensor {
    const atts: (Tensor | null)[] = [];
    let h = x;
    const n = this.enc.items.length;
    this.enc.items.forEach((blk, i) => {
      const last = i === n - 1;
      const [y, a] = blk.forward(h, !last || this.ssl);
      atts.push(a);
      h = last ? y : pool2(y);
    });
    if (this.ae) {
      const ae = this.ae;
      const emb = this.frozen ? noGrad(() => ae.embed(x)) : ae.embed(x);
      h = F.cat([atts[5]!, emb], 1);
    }
    this.dec.items.forEach((d, j) => {
      const u = up2(h);
      h = d.forward(F.cat([u, atts[4 - j]!], 1));
      releaseIntermediates(u);
    });
    return this.head.forward(h);
  }
}
