// SegFormer (Xie et al., NeurIPS 2021) with MiT-B0 / B1 / B2 encoders, with the state-dict names
// and order of its authors' modules (NVlabs/SegFormer: mmseg/models/backbones/mix_transformer.py,
// mmseg/models/decode_heads/segformer_head.py; configurations from local_configs/segformer/B0..B2):
//
//   backbone  four stages; stage s: an overlapping patch embedding (conv 7x7 stride 4 for s = 1,
//             3x3 stride 2 after, then LayerNorm over channels), depth_s transformer blocks, and a
//             LayerNorm. A block is  x + dropPath(attn(norm1(x))), then x + dropPath(mlp(norm2(x))):
//             attn = efficient self-attention whose keys and values come from the map reduced by
//             a conv r x r stride r (+ LayerNorm), r = 8, 4, 2, 1 per stage; heads 1, 2, 5, 8;
//             mlp = Mix-FFN: fc1 (C -> 4C), depthwise conv 3x3, GELU, fc2 (4C -> C).
//   decode_head  all-MLP decoder: each stage's map through a Linear to E channels (E = 256 for
//             B0 / B1, 768 for B2), upsampled bilinearly (align_corners false) to 1/4 of the input,
//             concatenated as [c4, c3, c2, c1], linear_fuse (1x1 conv without bias, BN, ReLU),
//             Dropout2d(0.1), linear_pred (1x1 conv to the classes).
//   The 1/4-resolution logits are then resized bilinearly (align_corners false) to the input
//   size, as the authors' EncoderDecoder does at inference.
//
// LayerNorm eps: 1e-6 for the blocks' norm1 / norm2 and the stage norms (the authors'
// norm_layer), 1e-5 (PyTorch's default) inside the patch embeddings and after the reduction conv,
// as their modules construct them. Stochastic depth rises linearly from 0 to 0.1 over all blocks;
// the attention / projection / MLP dropout rates are 0 in the authors' configs, so those layers
// are not built. The authors' BaseDecodeHead also registers conv_seg (1x1 128 -> classes), which
// SegFormerHead never calls; it is left out (an authors' checkpoint loads after dropping
// decode_head.conv_seg.*), so every parameter here is used and trained.
// Weight init as the authors' _init_weights: Linear weights N(0, 0.02) (their trunc_normal_ cuts
// at +-2, i.e. 100 standard deviations: never reached in float32) with zero bias; convolutions
// N(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups, zero bias; LayerNorm 1 / 0. In the head,
// linear_fuse.conv is He-normal over fan_out (mmcv's ConvModule init), the Linear layers and
// linear_pred keep PyTorch's defaults (mmseg leaves them alone).
import { Tensor } from '../tensor/tensor';
import { isGradEnabled } from '../tensor/grad-mode';
import * as F from '../nn/functional';
import { releaseIntermediates, toMap, toTokens } from './blocks';
import { Module } from '../nn/module';
import { copyInto } from '../nn/module';
import { normal } from '../nn/init';
import { fill_ } from '../tensor/ops/elementwise';
import { noGrad } from '../autograd/engine';
import { BatchNorm2d, Conv2d, Dropout2d, GELU, LayerNorm, Lambda, Linear, ModuleList, ReLU } from '../nn/layers';

export type SegFormerVariant = 'b0' | 'b1' | 'b2';

export interface SegFormerConfig {
  dims: [number, number, number, number];
  depths: [number, number, number, number];
  /** Decoder embedding dimension E. */
  embed: number;
}

export const SEGFORMER_VARIANTS: Record<SegFormerVariant, SegFormerConfig> = {
  b0: { dims: [32, 64, 160, 256], depths: [2, 2, 2, 2], embed: 256 },
  b1: { dims: [64, 128, 320, 512], depths: [2, 2, 2, 2], embed: 256 },
  b2: { dims: [64, 128, 320, 512], depths: [3, 4, 6, 3], embed: 768 },
};
const HEADS = [1, 2, 5, 8];
const SR_RATIOS = [8, 4, 2, 1];
const DROP_PATH_RATE = 0.1;
const DECODER_DROPOUT = 0.1;


/** `proj` conv (k, stride s, padding k // 2) -> tokens -> `norm`. */
class OverlapPatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly norm: LayerNorm;
  constructor(cin: number, cout: number, k: number, stride: number) {
    super();
    this.proj = this.add('proj', new Conv2d(cin, cout, k, { stride, padding: Math.floor(k / 2) }));
    this.norm = this.add('norm', new LayerNorm(cout));
  }
  forward(x: Tensor): [Tensor, number, number] {
    const m = this.proj.forward(x);
    return [this.norm.forward(toTokens(m)), m.shape[2], m.shape[3]];
  }
}

/** Multi-head self-attention with keys / values from the map reduced by `sr` (ratio r > 1). */
class EfficientSelfAttention extends Module {
  readonly q: Linear;
  readonly kv: Linear;
  readonly proj: Linear;
  readonly sr: Conv2d | null = null;
  readonly norm: LayerNorm | null = null;
  constructor(readonly dim: number, readonly heads: number, readonly ratio: number) {
    super();
    this.q = this.add('q', new Linear(dim, dim));
    this.kv = this.add('kv', new Linear(dim, 2 * dim));
    this.proj = this.add('proj', new Linear(dim, dim));
    if (ratio > 1) {
      this.sr = this.add('sr', new Conv2d(dim, dim, ratio, { stride: ratio }));
      this.norm = this.add('norm', new LayerNorm(dim));
    }
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    const [B, N, C] = t.shape;
    const nh = this.heads, d = C / nh;
    const q = F.permute(F.reshape(this.q.forward(t), [B, N, nh, d]), [0, 2, 1, 3]);
    const src = this.sr ? this.norm!.forward(toTokens(this.sr.forward(toMap(t, h, w)))) : t;
    const M = src.shape[1];
    // kv's output channels are [k heads | v heads]: [B, M, 2, nh, d] -> [2, B, nh, M, d].
    const kv = F.permute(F.reshape(this.kv.forward(src), [B, M, 2, nh, d]), [2, 0, 3, 1, 4]);
    const k = F.squeeze(F.narrow(kv, 0, 0, 1), 0);
    const v = F.squeeze(F.narrow(kv, 0, 1, 1), 0);
    const a = F.scaledDotProductAttention(q, k, v, { scale: 1 / Math.sqrt(d) });
    return this.proj.forward(F.reshape(F.permute(a, [0, 2, 1, 3]), [B, N, C]));
  }
}

/** The authors' DWConv wrapper: `dwconv`, a depthwise 3x3 conv on the token map. */
class DWConv extends Module {
  readonly dwconv: Conv2d;
  constructor(c: number) {
    super();
    this.dwconv = this.add('dwconv', new Conv2d(c, c, 3, { padding: 1, groups: c }));
  }
  /** Tokens [B, H*W, C] in, the convolved map [B, C, H, W] out. */
  forward(t: Tensor, h: number, w: number): Tensor {
    return this.dwconv.forward(toMap(t, h, w));
  }
}

/** Mix-FFN: fc1 -> depthwise conv 3x3 -> GELU -> fc2. */
class MixFFN extends Module {
  readonly fc1: Linear;
  readonly dwconv: DWConv;
  readonly act: Lambda;
  readonly fc2: Linear;
  constructor(c: number, hidden: number) {
    super();
    this.fc1 = this.add('fc1', new Linear(c, hidden));
    this.dwconv = this.add('dwconv', new DWConv(hidden));
    this.act = this.add('act', GELU());
    this.fc2 = this.add('fc2', new Linear(hidden, c));
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    // GELU on the conv's (contiguous) map, before the tokens view: the same values, a contiguous
    // elementwise pass, and sc.inference.optimize can run it in the conv's epilogue.
    const m = this.act.forward(this.dwconv.forward(this.fc1.forward(t), h, w));
    return this.fc2.forward(toTokens(m));
  }
}

class Block extends Module {
  readonly norm1: LayerNorm;
  readonly attn: EfficientSelfAttention;
  readonly norm2: LayerNorm;
  readonly mlp: MixFFN;
  constructor(dim: number, heads: number, ratio: number, readonly dropPathRate: number) {
    super();
    this.norm1 = this.add('norm1', new LayerNorm(dim, { eps: 1e-6 }));
    this.attn = this.add('attn', new EfficientSelfAttention(dim, heads, ratio));
    this.norm2 = this.add('norm2', new LayerNorm(dim, { eps: 1e-6 }));
    this.mlp = this.add('mlp', new MixFFN(dim, 4 * dim));
  }
  forward(t: Tensor, h: number, w: number): Tensor {
    const dp = (y: Tensor) => F.dropPath(y, this.dropPathRate, this.training);
    const x = F.add(t, dp(this.attn.forward(this.norm1.forward(t), h, w)));
    return F.add(x, dp(this.mlp.forward(this.norm2.forward(x), h, w)));
  }
}

/** The Mix Transformer encoder: four stages, each returning a [B, C_s, H/2^(s+1), W/2^(s+1)] map. */
export class MixVisionTransformer extends Module {
  readonly embeds: OverlapPatchEmbed[] = [];
  readonly blocks: ModuleList<Block>[] = [];
  readonly norms: LayerNorm[] = [];
  constructor(inChannels: number, readonly config: SegFormerConfig) {
    super();
    const { dims, depths } = config;
    config.dims.forEach((c, s) => {
      const [k, stride] = s === 0 ? [7, 4] : [3, 2];
      this.embeds.push(this.add(`patch_embed${s + 1}`, new OverlapPatchEmbed(s === 0 ? inChannels : dims[s - 1], c, k, stride)));
    });
    // torch.linspace(0, 0.1, total) over all blocks, in stage order.
    const total = depths.reduce((a, b) => a + b, 0);
    const rate = (i: number) => (total > 1 ? (DROP_PATH_RATE * i) / (total - 1) : 0);
    let first = 0;
    dims.forEach((c, s) => {
      const blocks = Array.from({ length: depths[s] }, (_, j) => new Block(c, HEADS[s], SR_RATIOS[s], rate(first + j)));
      this.blocks.push(this.add(`block${s + 1}`, new ModuleList(blocks)));
      this.norms.push(this.add(`norm${s + 1}`, new LayerNorm(c, { eps: 1e-6 })));
      first += depths[s];
    });
  }
  forward(x: Tensor): Tensor[] {
    const feats: Tensor[] = [];
    let m = x;
    for (let s = 0; s < 4; s++) {
      let [t, h, w] = this.embeds[s].forward(m);
      for (const b of this.blocks[s].items) t = b.forward(t, h, w);
      m = toMap(this.norms[s].forward(t), h, w);
      feats.push(m);
    }
    return feats;
  }
}

/** The authors' decoder `MLP`: `proj`, a Linear over the channels of each position. */
class LinearEmbed extends Module {
  readonly proj: Linear;
  constructor(cin: number, cout: number) {
    super();
    this.proj = this.add('proj', new Linear(cin, cout));
  }
  forward(m: Tensor): Tensor {
    return toMap(this.proj.forward(toTokens(m)), m.shape[2], m.shape[3]);
  }
}

/** mmcv's ConvModule as linear_fuse builds it: conv (1x1, no bias), bn, ReLU. */
class ConvBNReLU extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  readonly activate: Lambda;
  constructor(cin: number, cout: number) {
    super();
    this.conv = this.add('conv', new Conv2d(cin, cout, 1, { bias: false }));
    this.bn = this.add('bn', new BatchNorm2d(cout));
    this.activate = this.add('activate', ReLU());
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    // Training: BN -> ReLU as one op (keeps one activation fewer); eval: the separate modules
    // (what inference plans fuse into the conv and ONNX export traces).
    if (this.training && isGradEnabled()) return this.bn.forwardWithActivation(y, { post: 'relu' });
    return this.activate.forward(this.bn.forward(y));
  }
}

export class SegFormerHead extends Module {
  readonly linears: LinearEmbed[] = [];  // c1..c4
  readonly linear_fuse: ConvBNReLU;
  readonly dropout: Lambda;
  readonly linear_pred: Conv2d;
  constructor(dims: number[], embed: number, numClasses: number) {
    super();
    const byStage: LinearEmbed[] = [];
    // Registered c4, c3, c2, c1 as in the authors' __init__.
    for (const s of [4, 3, 2, 1]) byStage[s - 1] = this.add(`linear_c${s}`, new LinearEmbed(dims[s - 1], embed));
    this.linears.push(...byStage);
    this.linear_fuse = this.add('linear_fuse', new ConvBNReLU(4 * embed, embed));
    this.dropout = this.add('dropout', Dropout2d(DECODER_DROPOUT));
    this.linear_pred = this.add('linear_pred', new Conv2d(embed, numClasses, 1));
  }
  forward(feats: Tensor[]): Tensor {
    const [h, w] = [feats[0].shape[2], feats[0].shape[3]];
    const ups = [3, 2, 1, 0].map((s) => {
      const e = this.linears[s].forward(feats[s]);
      return s === 0 ? e : F.interpolate(e, { size: [h, w], mode: 'bilinear', alignCorners: false });
    });
    const fused = F.cat(ups, 1);
    releaseIntermediates(...ups);
    return this.linear_pred.forward(this.dropout.forward(this.linear_fuse.forward(fused)));
  }
}

export class SegFormer extends Module {
  readonly backbone: MixVisionTransformer;
  readonly decode_head: SegFormerHead;
  constructor(readonly inChannels = 3, readonly numClasses = 1, readonly variant: SegFormerVariant = 'b0') {
    super();
    const cfg = SEGFORMER_VARIANTS[variant];
    if (!cfg) throw new Error(`SegFormer: unknown variant '${variant}'; valid: ${Object.keys(SEGFORMER_VARIANTS).join(', ')}`);
    this.backbone = this.add('backbone', new MixVisionTransformer(inChannels, cfg));
    this.decode_head = this.add('decode_head', new SegFormerHead(cfg.dims, cfg.embed, numClasses));
    this.initWeights();
  }

  /** The authors' initialisation (see the top of this file). */
  private initWeights(): void {
    noGrad(() => {
      const set = (t: Tensor, std: number) => {
        const v = normal(t.shape, std, t.dtype);
        copyInto(t, v);
        v.dispose();
      };
      for (const [, m] of this.backbone.namedModules()) {
        if (m instanceof Linear) {
          set(m.weight, 0.02);
          if (m.bias) fill_(m.bias, 0);
        } else if (m instanceof Conv2d) {
          const [o, , kh, kw] = m.weight.shape;
          set(m.weight, Math.sqrt(2 / ((kh * kw * o) / (m.cfg.groups ?? 1))));
          if (m.bias) fill_(m.bias, 0);
        }
      }
      set(this.decode_head.linear_fuse.conv.weight, Math.sqrt(2 / this.decode_head.linear_fuse.conv.weight.shape[0]));
    });
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[2] % 32 !== 0 || x.shape[3] % 32 !== 0 || x.shape[2] === 0 || x.shape[3] === 0) {
      throw new Error(`SegFormer: expected an input [N, C, H, W] with H and W positive multiples of 32 (the encoder's 1/32 stage), got [${x.shape.join(', ')}]`);
    }
    if (x.shape[1] !== this.inChannels) throw new Error(`SegFormer: expected ${this.inChannels} input channels, got [${x.shape.join(', ')}]`);
    const logits = this.decode_head.forward(this.backbone.forward(x));
    return F.interpolate(logits, { size: [x.shape[2], x.shape[3]], mode: 'bilinear', alignCorners: false });
  }
}
