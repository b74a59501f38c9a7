// TransUNet R50-ViT-B/16 (Chen et al., 2021) with the state-dict names and order of its authors'
// PyTorch module (Beckschen/TransUNet networks/vit_seg_modeling.py VisionTransformer with
// vit_seg_modeling_resnet_skip.py ResNetV2 and vit_seg_configs.py get_r50_b16_config; the CMUNeXt
// benchmark repository FengheTan9/Medical-Image-Segmentation-Benchmarks trains the same module,
// unchanged, at img_size 256 with n_skip 3 and patches.grid = (256 / 16, 256 / 16)), so their
// checkpoints load once converted to safetensors:
//   transformer.embeddings: position_embeddings (its own parameter, first in the state dict),
//     hybrid_model (ResNetV2: root StdConv2d 7x7/2 + GroupNorm(32) + ReLU; body.block1..3 of
//     3, 4, 9 pre-activation bottlenecks, width 64; weight-standardised convolutions),
//     patch_embeddings (1x1 conv 1024 -> 768 on the ResNet's 1/16 map: one token per pixel);
//   transformer.encoder: 12 ViT-B blocks (768 wide, 12 heads, MLP 3072) and encoder_norm;
//   decoder (DecoderCup): conv_more (conv3 768 -> 512, BN, ReLU) and four blocks (bilinear x2
//     with align_corners, concat with the skip, two conv3-BN-ReLU) to 256, 128, 64, 16 channels,
//     skips from the ResNet at 1/8, 1/4 and 1/2 (512, 256, 64 channels; the last block has none);
//   segmentation_head: conv3 16 -> classes.
// (The benchmark's TransUnet wrapper holds this module as `net`: its checkpoints' names carry a
// `net.` prefix to strip.)
// 105,322,001 parameters at 256 px, 1 class; order as tools/pytorch/models.py (TransUNet), which is
// checked against the authors' module.
import { Tensor } from '../tensor/tensor';
import * as F from '../nn/functional';
import { Module, copyInto } from '../nn/module';
import { BatchNorm2d, Conv2d, Dropout, GroupNorm, Identity, Lambda, LayerNorm, Linear, ModuleList, ReLU, Sequential, Upsample } from '../nn/layers';
import { defaultBias, defaultWeight, fanIn, normal, uniform } from '../nn/init';
import { zeros } from '../tensor/create';
import { isGradEnabled } from '../tensor/grad-mode';

type Pair = number | [number, number];

/** Per output channel of a conv weight [out, ...]: (w - mean) / sqrt(var + 1e-5), biased variance (a layerNorm over the rest). */
export function standardizeWeight(w: Tensor): Tensor {
  const [o, ...rest] = w.shape;
  const per = rest.reduce((a, b) => a * b, 1);
  return F.reshape(F.layerNorm(F.reshape(w, [o, per]), [per], null, null, 1e-5), w.shape);
}

/**
 * StdConv2d (the authors' weight-standardised convolution, as in BiT): each output channel's
 * weight is normalised to zero mean and unit (biased) variance, eps 1e-5, on every forward, then
 * used as an ordinary convolution. The standardisation is a layerNorm over [in * kh * kw] of the
 * weight viewed as [out, in * kh * kw] (exactly (w - mean) / sqrt(var + eps)), so gradients flow
 * to the raw weight and ONNX export maps it to LayerNormalization. Not a Conv2d subclass: an
 * inference plan must never fold anything into the raw weight.
 */
export class StdConv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, readonly cfg: { stride?: Pair; padding?: Pair; bias?: boolean } = {}) {
    super();
    // Same shapes and PyTorch-default initialisation as a Conv2d (the authors subclass nn.Conv2d).
    const shape = [outChannels, inChannels, kernelSize, kernelSize];
    this.weight = this.param('weight', defaultWeight(shape));
    this.bias = this.param('bias', cfg.bias ? defaultBias(outChannels, fanIn(shape)) : null);
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, standardizeWeight(this.weight), this.bias, { stride: this.cfg.stride, padding: this.cfg.padding });
  }
}

/** Pre-activation (v2) bottleneck as the authors write it: conv -> GN -> ReLU three times, projection on unit1. */
class PreActBottleneck extends Module {
  readonly gn1: GroupNorm; readonly conv1: StdConv2d;
  readonly gn2: GroupNorm; readonly conv2: StdConv2d;
  readonly gn3: GroupNorm; readonly conv3: StdConv2d;
  readonly relu: Lambda;
  readonly downsample: StdConv2d | null = null;
  readonly gn_proj: GroupNorm | null = null;
  constructor(cin: number, cout: number, cmid: number, stride = 1) {
    super();
    this.gn1 = this.add('gn1', new GroupNorm(32, cmid, { eps: 1e-6 }));
    this.conv1 = this.add('conv1', new StdConv2d(cin, cmid, 1));
    this.gn2 = this.add('gn2', new GroupNorm(32, cmid, { eps: 1e-6 }));
    this.conv2 = this.add('conv2', new StdConv2d(cmid, cmid, 3, { stride, padding: 1 }));
    this.gn3 = this.add('gn3', new GroupNorm(32, cout, { eps: 1e-6 }));
    this.conv3 = this.add('conv3', new StdConv2d(cmid, cout, 1));
    this.relu = this.add('relu', ReLU());
    if (stride !== 1 || cin !== cout) {
      this.downsample = this.add('downsample', new StdConv2d(cin, cout, 1, { stride }));
      // One group per channel and PyTorch's default eps (1e-5), as the authors build it.
      this.gn_proj = this.add('gn_proj', new GroupNorm(cout, cout));
    }
  }
  forward(x: Tensor): Tensor {
    const residual = this.downsample ? this.gn_proj!.forward(this.downsample.forward(x)) : x;
    // While training, GN -> ReLU and the residual add -> ReLU run fused: their ReLU inputs are
    // not kept for backward (PyTorch's in-place ReLUs keep none either). A ReLU module whose
    // activation tag is cleared runs as written (separate ops).
    const fuse = isGradEnabled() && this.relu.activation === 'relu';
    const gnRelu = (gn: GroupNorm, t: Tensor) => (fuse ? gn.forwardWithActivation(t, { post: 'relu' }) : this.relu.forward(gn.forward(t)));
    let y = gnRelu(this.gn1, this.conv1.forward(x));
    y = gnRelu(this.gn2, this.conv2.forward(y));
    y = this.gn3.forward(this.conv3.forward(y));
    return fuse ? F.addRelu(residual, y) : this.relu.forward(F.add(residual, y));
  }
}

/** Children under the given names, run in order (PyTorch's nn.Sequential over an OrderedDict). */
class NamedSequential extends Module {
  readonly layers: Module[];
  constructor(entries: [string, Module][]) {
    super();
    this.layers = entries.map(([n, m]) => this.add(n, m));
  }
  forward(x: Tensor): Tensor {
    let y = x;
    for (const m of this.layers) y = m.forward(y) as Tensor;
    return y;
  }
}

/** The ResNet-50 trunk (ResNetV2, block units 3, 4, 9, width 64): the 1/16 map and the skips at 1/8, 1/4, 1/2. */
class ResNetV2 extends Module {
  readonly root: NamedSequential;
  readonly body: NamedSequential;
  constructor(units: readonly number[], readonly width: number) {
    super();
    const w = width;
    this.root = this.add('root', new NamedSequential([
      ['conv', new StdConv2d(3, w, 7, { stride: 2, padding: 3 })],
      ['gn', new GroupNorm(32, w, { eps: 1e-6 })],
      ['relu', ReLU()],
    ]));
    const blocks: [string, Module][] = [];
    let cin = w;
    units.forEach((n, b) => {
      const cout = w * [4, 8, 16][b], cmid = cout / 4, stride = b === 0 ? 1 : 2;
      const unitList: [string, Module][] = [];
      for (let u = 1; u <= n; u++) unitList.push([`unit${u}`, new PreActBottleneck(u === 1 ? cin : cout, cout, cmid, u === 1 ? stride : 1)]);
      blocks.push([`block${b + 1}`, new NamedSequential(unitList)]);
      cin = cout;
    });
    this.body = this.add('body', new NamedSequential(blocks));
  }
  forward(x: Tensor): [Tensor, Tensor[]] {
    const size = x.shape[2];
    let h = this.root.forward(x);
    const features = [h];
    // 3x3 / 2 pooling without padding: a 128 map becomes 63, not 64 (as the authors' code does).
    h = F.maxPool2d(h, { kernelSize: 3, stride: 2 });
    const blocks = this.body.layers;
    for (let i = 0; i < blocks.length - 1; i++) {
      h = blocks[i].forward(h) as Tensor;
      // The authors zero-pad a feature map that came out smaller than size / 4 / (i + 1) at the
      // bottom and right (block1's 63 -> 64 at 256 px), so the decoder's concatenation fits.
      const want = Math.floor(size / 4 / (i + 1));
      const [fh, fw] = [h.shape[2], h.shape[3]];
      features.push(fh === want && fw === want ? h : F.pad(h, [0, want - fw, 0, want - fh]));
    }
    h = blocks[blocks.length - 1].forward(h) as Tensor;
    return [h, features.reverse()];
  }
}

/** Token embeddings: ResNet trunk, 1x1 patch projection to 768, plus a learned position embedding. */
class Embeddings extends Module {
  readonly hybrid_model: ResNetV2;
  readonly patch_embeddings: Conv2d;
  readonly position_embeddings: Tensor;
  readonly dropout: Lambda;
  constructor(readonly imgSize: number, c: TransUNetConfig) {
    super();
    // patches.grid = imgSize / 16 (as the authors' train.py and the benchmark set it), so the
    // patch is imgSize / 16 / grid = 1 pixel of the ResNet's 1/16 map.
    const grid = imgSize / 16;
    this.hybrid_model = this.add('hybrid_model', new ResNetV2(c.resnetUnits, c.width));
    this.patch_embeddings = this.add('patch_embeddings', new Conv2d(c.width * 16, c.hidden, 1));
    this.position_embeddings = this.param('position_embeddings', zeros([1, grid * grid, c.hidden]));
    this.dropout = this.add('dropout', Dropout(c.dropout));
  }
  forward(x: Tensor): [Tensor, Tensor[]] {
    const [h, features] = this.hybrid_model.forward(x);
    const tokens = F.transpose(F.flatten(this.patch_embeddings.forward(h), 2), 1, 2); // [B, N, hidden]
    return [this.dropout.forward(F.add(tokens, this.position_embeddings)), features];
  }
}

/**
 * softmax(q k^T * scale) v with dropout on the probabilities (the authors' attn_dropout), for
 * training with a non-zero attention dropout; otherwise the fused F.scaledDotProductAttention,
 * which never materialises the probabilities.
 */
function attentionWithDropout(q: Tensor, k: Tensor, v: Tensor, scale: number, dropout: Lambda): Tensor {
  const [b, h, lq, d] = q.shape;
  const lk = k.shape[2], dv = v.shape[3];
  const scores = F.bmm(F.reshape(q, [b * h, lq, d]), F.reshape(k, [b * h, lk, d]), false, true);
  const probs = dropout.forward(F.softmax(F.mul(scores, scale), -1));
  return F.reshape(F.bmm(probs, F.reshape(v, [b * h, lk, dv])), [b, h, lq, dv]);
}

/** Multi-head self-attention with the authors' query / key / value / out projections. */
class Attention extends Module {
  readonly query: Linear; readonly key: Linear; readonly value: Linear; readonly out: Linear;
  readonly attn_dropout: Lambda; readonly proj_dropout: Lambda;
  constructor(readonly hidden: number, readonly heads: number, readonly attentionDropout: number) {
    super();
    if (hidden % heads !== 0) throw new Error(`TransUNet attention: hidden size ${hidden} is not divisible by ${heads} heads`);
    this.query = this.add('query', new Linear(hidden, hidden));
    this.key = this.add('key', new Linear(hidden, hidden));
    this.value = this.add('value', new Linear(hidden, hidden));
    this.out = this.add('out', new Linear(hidden, hidden));
    this.attn_dropout = this.add('attn_dropout', Dropout(attentionDropout));
    this.proj_dropout = this.add('proj_dropout', Dropout(attentionDropout));
  }
  forward(x: Tensor): Tensor {
    const [b, n] = x.shape;
    const d = this.hidden / this.heads;
    const heads = (t: Tensor) => F.permute(F.reshape(t, [b, n, this.heads, d]), [0, 2, 1, 3]);
    const q = heads(this.query.forward(x)), k = heads(this.key.forward(x)), v = heads(this.value.forward(x));
    const scale = 1 / Math.sqrt(d);
    const ctx = this.training && this.attentionDropout > 0
      ? attentionWithDropout(q, k, v, scale, this.attn_dropout)
      : F.scaledDotProductAttention(q, k, v, { scale });
    const merged = F.reshape(F.permute(ctx, [0, 2, 1, 3]), [b, n, this.hidden]);
    return this.proj_dropout.forward(this.out.forward(merged));
  }
}

/** fc1 -> GELU -> dropout -> fc2 -> dropout, initialised as the authors' Mlp._init_weights. */
class Mlp extends Module {
  readonly fc1: Linear; readonly fc2: Linear; readonly dropout: Lambda;
  constructor(hidden: number, mlp: number, dropout: number) {
    super();
    this.fc1 = this.add('fc1', new Linear(hidden, mlp));
    this.fc2 = this.add('fc2', new Linear(mlp, hidden));
    this.dropout = this.add('dropout', Dropout(dropout));
    for (const fc of [this.fc1, this.fc2]) {
      // xavier_uniform_ on the weights, normal(std 1e-6) on the biases.
      const [fo, fi] = fc.weight.shape;
      const w = uniform([fo, fi], Math.sqrt(6 / (fi + fo)));
      const bias = normal([fo], 1e-6);
      copyInto(fc.weight, w);
      copyInto(fc.bias!, bias);
      w.dispose();
      bias.dispose();
    }
  }
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.fc2.forward(this.dropout.forward(F.gelu(this.fc1.forward(x)))));
  }
}

/** Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x)); LayerNorm eps 1e-6. */
class Block extends Module {
  readonly attention_norm: LayerNorm; readonly ffn_norm: LayerNorm;
  readonly ffn: Mlp; readonly attn: Attention;
  constructor(hidden: number, heads: number, mlp: number, dropout: number, attentionDropout: number) {
    super();
    this.attention_norm = this.add('attention_norm', new LayerNorm(hidden, { eps: 1e-6 }));
    this.ffn_norm = this.add('ffn_norm', new LayerNorm(hidden, { eps: 1e-6 }));
    this.ffn = this.add('ffn', new Mlp(hidden, mlp, dropout));
    this.attn = this.add('attn', new Attention(hidden, heads, attentionDropout));
  }
  forward(x: Tensor): Tensor {
    const h = F.add(x, this.attn.forward(this.attention_norm.forward(x)));
    return F.add(h, this.ffn.forward(this.ffn_norm.forward(h)));
  }
}

class Encoder extends Module {
  readonly layer: ModuleList<Block>;
  readonly encoder_norm: LayerNorm;
  constructor(hidden: number, layers: number, heads: number, mlp: number, dropout: number, attentionDropout: number) {
    super();
    this.layer = this.add('layer', new ModuleList(Array.from({ length: layers }, () => new Block(hidden, heads, mlp, dropout, attentionDropout))));
    this.encoder_norm = this.add('encoder_norm', new LayerNorm(hidden, { eps: 1e-6 }));
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const b of this.layer.items) h = b.forward(h);
    return this.encoder_norm.forward(h);
  }
}

class Transformer extends Module {
  readonly embeddings: Embeddings;
  readonly encoder: Encoder;
  constructor(imgSize: number, c: TransUNetConfig) {
    super();
    this.embeddings = this.add('embeddings', new Embeddings(imgSize, c));
    this.encoder = this.add('encoder', new Encoder(c.hidden, c.layers, c.heads, c.mlp, c.dropout, c.attentionDropout));
  }
  forward(x: Tensor): [Tensor, Tensor[]] {
    const [tokens, features] = this.embeddings.forward(x);
    return [this.encoder.forward(tokens), features];
  }
}

/** The authors' Conv2dReLU: `0` conv3 without bias, `1` BatchNorm, `2` ReLU. */
const conv2dReLU = (cin: number, cout: number) => new Sequential(new Conv2d(cin, cout, 3, { padding: 1, bias: false }), new BatchNorm2d(cout), ReLU());

class DecoderBlock extends Module {
  readonly conv1: Sequential; readonly conv2: Sequential; readonly up: Lambda;
  constructor(cin: number, cout: number, skip: number) {
    super();
    this.conv1 = this.add('conv1', conv2dReLU(cin + skip, cout));
    this.conv2 = this.add('conv2', conv2dReLU(cout, cout));
    // nn.UpsamplingBilinear2d: bilinear with align_corners = true.
    this.up = this.add('up', Upsample({ scaleFactor: 2, mode: 'bilinear', alignCorners: true }));
  }
  forward(x: Tensor, skip: Tensor | null): Tensor {
    let h = this.up.forward(x);
    if (skip) h = F.cat([h, skip], 1);
    return this.conv2.forward(this.conv1.forward(h));
  }
}

/** DecoderCup: tokens back to a map, conv_more, four upsampling blocks (skips on the first n_skip = 3). */
class DecoderCup extends Module {
  readonly conv_more: Sequential;
  readonly blocks: ModuleList<DecoderBlock>;
  readonly nSkip: number;
  constructor(c: TransUNetConfig) {
    super();
    this.nSkip = c.nSkip;
    const outs = c.decoderChannels, ins = [c.headChannels, ...outs.slice(0, -1)];
    // skip_channels [512, 256, 64, 16] (the ResNet's 8w, 4w, w at width w = 64; the fourth has no
    // feature map behind it) with the entries past n_skip set to 0, as the authors do.
    const skips = [8 * c.width, 4 * c.width, c.width, 16].map((ch, i) => (i < c.nSkip ? ch : 0));
    this.conv_more = this.add('conv_more', conv2dReLU(c.hidden, c.headChannels));
    this.blocks = this.add('blocks', new ModuleList(outs.map((o, i) => new DecoderBlock(ins[i], o, skips[i]))));
  }
  forward(tokens: Tensor, features: Tensor[]): Tensor {
    const [b, n, c] = tokens.shape;
    const s = Math.round(Math.sqrt(n));
    let x = this.conv_more.forward(F.reshape(F.permute(tokens, [0, 2, 1]), [b, c, s, s]));
    this.blocks.items.forEach((blk, i) => {
      x = blk.forward(x, i < this.nSkip ? features[i] : null);
    });
    return x;
  }
}

/**
 * The architecture's hyper-parameters, as the authors' configuration holds them. The model is
 * R50-ViT-B/16 (R50_VIT_B16); smaller settings exist for fast tests of the same code paths.
 */
export interface TransUNetConfig {
  /** ViT width, depth, heads, MLP width, dropout (embeddings and MLP) and attention dropout. */
  hidden: number;
  layers: number;
  heads: number;
  mlp: number;
  dropout: number;
  attentionDropout: number;
  /** ResNetV2 bottleneck units per block and base width (GroupNorm(32): a multiple of 32). */
  resnetUnits: readonly [number, number, number];
  width: number;
  /** DecoderCup: conv_more's output channels, the four blocks' outputs, skips used (0..3). */
  headChannels: number;
  decoderChannels: readonly [number, number, number, number];
  nSkip: number;
}

/** get_r50_b16_config() with n_skip 3: ViT-B/16 (768, 12 layers, 12 heads, MLP 3072), ResNet-50 (3, 4, 9) x 64. */
export const R50_VIT_B16: Readonly<TransUNetConfig> = Object.freeze({
  hidden: 768, layers: 12, heads: 12, mlp: 3072, dropout: 0.1, attentionDropout: 0,
  resnetUnits: [3, 4, 9] as const, width: 64, headChannels: 512, decoderChannels: [256, 128, 64, 16] as const, nSkip: 3,
});

export interface TransUNetOptions {
  /** Square input side the position embedding is sized for: a multiple of 16 (default 256). */
  imgSize?: number;
  /** Overrides of R50_VIT_B16 (tests use a narrow, shallow setting); the default is the paper's model. */
  config?: Partial<TransUNetConfig>;
}

export class TransUNet extends Module {
  readonly transformer: Transformer;
  readonly decoder: DecoderCup;
  readonly segmentation_head: Sequential;
  readonly imgSize: number;
  readonly config: Readonly<TransUNetConfig>;
  constructor(readonly inChannels = 3, readonly numClasses = 1, opts: TransUNetOptions = {}) {
    super();
    const s = opts.imgSize ?? 256;
    if (!Number.isInteger(s) || s < 16 || s % 16 !== 0) throw new Error(`TransUNet: imgSize must be a positive multiple of 16 (the ViT runs on the ResNet's 1/16 map), got ${JSON.stringify(opts.imgSize)}`);
    // The ResNet root takes RGB; a grey input is repeated to three channels in forward, as the authors do.
    if (inChannels !== 1 && inChannels !== 3) throw new Error(`TransUNet: inChannels must be 3 or 1 (a grey image is repeated to RGB, as in the authors' forward), got ${inChannels}`);
    const c: TransUNetConfig = { ...R50_VIT_B16, ...(opts.config ?? {}) };
    const posInt = (v: number) => Number.isInteger(v) && v > 0;
    for (const k of ['hidden', 'layers', 'heads', 'mlp', 'width', 'headChannels'] as const) {
      if (!posInt(c[k])) throw new Error(`TransUNet: config.${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
    }
    if (c.width % 32 !== 0) throw new Error(`TransUNet: config.width must be a multiple of 32 (GroupNorm with 32 groups), got ${c.width}`);
    if (c.hidden % c.heads !== 0) throw new Error(`TransUNet: config.hidden ${c.hidden} is not divisible by config.heads ${c.heads}`);
    if (c.resnetUnits.length !== 3 || !c.resnetUnits.every(posInt)) throw new Error(`TransUNet: config.resnetUnits must be three positive integers, got ${JSON.stringify(c.resnetUnits)}`);
    if (c.decoderChannels.length !== 4 || !c.decoderChannels.every(posInt)) throw new Error(`TransUNet: config.decoderChannels must be four positive integers, got ${JSON.stringify(c.decoderChannels)}`);
    if (!Number.isInteger(c.nSkip) || c.nSkip < 0 || c.nSkip > 3) throw new Error(`TransUNet: config.nSkip must be 0..3 (the ResNet has three skip maps), got ${JSON.stringify(c.nSkip)}`);
    if (!(c.dropout >= 0 && c.dropout < 1)) throw new Error(`TransUNet: config.dropout must be in [0, 1), got ${JSON.stringify(c.dropout)}`);
    // The configuration's attention_dropout_rate is 0: the authors' dropout on the attention
    // probabilities is the identity, so softmax(q k^T / sqrt(d)) v is exact (and a fused kernel can run it).
    if (c.attentionDropout !== 0) throw new Error(`TransUNet: config.attentionDropout must be 0 (dropout on the attention probabilities is not implemented; R50-ViT-B/16 uses 0), got ${JSON.stringify(c.attentionDropout)}`);
    this.config = c;
    this.imgSize = s;
    this.transformer = this.add('transformer', new Transformer(s, c));
    this.decoder = this.add('decoder', new DecoderCup(c));
    this.segmentation_head = this.add('segmentation_head', new Sequential(new Conv2d(c.decoderChannels[3], numClasses, 3, { padding: 1 }), Identity()));
  }
  forward(x: Tensor): Tensor {
    const s = this.imgSize;
    if (x.ndim !== 4 || (x.shape[1] !== 1 && x.shape[1] !== 3) || x.shape[2] !== s || x.shape[3] !== s) {
      throw new Error(`TransUNet: built for inputs [N, 3 (or 1), ${s}, ${s}] (its position embedding holds ${(s / 16) ** 2} tokens of the ${s / 16}x${s / 16} grid), got [${x.shape.join(', ')}]; create it with the option imgSize for another (square) size`);
    }
    const rgb = x.shape[1] === 1 ? F.cat([x, x, x], 1) : x;
    const [tokens, features] = this.transformer.forward(rgb);
    return this.segmentation_head.forward(this.decoder.forward(tokens, features));
  }
}
