// sc.models: the segmentation networks by name.
import { Module } from '../nn/module';
import { CMUNeXt, CMUNEXT_VARIANTS } from './cmunext';
import { NExNetAE, NExNetSeg } from './nexnet';
import { UNet } from './unet';
import { UNetPlusPlus } from './unetpp';
import { AttUNet } from './attunet';
import { UNeXt } from './unext';
import { MedNeXt, type MedNeXtSize } from './mednext';
import { SegFormer } from './segformer';
import { TransUNet } from './transunet';

export { CMUNeXt, CMUNEXT_VARIANTS } from './cmunext';
export type { CMUNeXtConfig } from './cmunext';
export { NExNetSeg, NExNetAE, NExBlock } from './nexnet';
export type { NExNetOptions, NExNetSegOptions } from './nexnet';
export { UNet } from './unet';
export type { UNetOptions } from './unet';
export { UNetPlusPlus } from './unetpp';
export { AttUNet } from './attunet';
export { UNeXt } from './unext';
export { MedNeXt, MEDNEXT_SIZES } from './mednext';
export type { MedNeXtOptions, MedNeXtSize } from './mednext';
export { SegFormer, SegFormerHead, MixVisionTransformer, SEGFORMER_VARIANTS } from './segformer';
export type { SegFormerConfig, SegFormerVariant } from './segformer';
export { TransUNet, StdConv2d, R50_VIT_B16, standardizeWeight } from './transunet';
export type { TransUNetOptions, TransUNetConfig } from './transunet';
export { upkern } from './upkern';
export type { UpKernReport } from './upkern';
export type { UNetPPOptions } from './unetpp';
export { DoubleConv, MaSA, TPEN, Residual } from './blocks';

export interface CreateOptions {
  inChannels?: number;
  numClasses?: number;
  /** unetpp, mednext-*: extra supervised heads. */
  deepSupervision?: boolean;
  /** mednext-*: depthwise kernel size, 3 (default), 5 or 7. */
  kernelSize?: 3 | 5 | 7;
  /** unetpp: the five encoder widths (default [32, 64, 128, 256, 512]). */
  filters?: number[];
  /** nexnet*: MaSA decay gamma (0.9). */
  gamma?: number;
  /** nexnet, nexnet-ssl: Dropout2d on the last decoder stage (0). */
  dropout?: number;
  /** nexnet*: decomposed MaSA (true) or the full O((HW)^2) form. */
  decomposed?: boolean;
  /** nexnet, nexnet-ssl: T-PEN expansion order (3). */
  tpenOrder?: number;
  /** nexnet-ssl: freeze the attached autoencoder (true). */
  freezeEncoder?: boolean;
  /** transunet: the square input side its position embedding is sized for, a multiple of 16 (256). */
  imgSize?: number;
}

export interface ModelInfo {
  name: string;
  description: string;
  /** Default input [C, H, W]. */
  inputSize: [number, number, number];
  /** Extra options the model accepts besides inChannels and numClasses. */
  options: string[];
}

interface Entry extends ModelInfo {
  build(o: Required<Pick<CreateOptions, 'inChannels' | 'numClasses'>> & CreateOptions): Module;
}

const NEX = ['gamma', 'dropout', 'decomposed', 'tpenOrder'];
const REGISTRY: Entry[] = [
  { name: 'unet', description: 'UNet, 64 base filters, transposed-conv upsampling (31.04 M params)', inputSize: [3, 256, 256], options: [], build: (o) => new UNet(o.inChannels, o.numClasses, { bilinear: false }) },
  { name: 'unet-bilinear', description: 'UNet, 64 base filters, bilinear upsampling, halved bottleneck (17.27 M params)', inputSize: [3, 256, 256], options: [], build: (o) => new UNet(o.inChannels, o.numClasses, { bilinear: true }) },
  { name: 'unetpp', description: 'UNet++ (nested dense skips), filters 32..512, optional deep supervision (9.16 M params)', inputSize: [3, 256, 256], options: ['deepSupervision', 'filters'], build: (o) => new UNetPlusPlus(o.inChannels, o.numClasses, { deepSupervision: o.deepSupervision, filters: o.filters }) },
  { name: 'attunet', description: 'Attention U-Net as in the CMUNeXt benchmark repository, filters 64..1024, additive attention gates (34.88 M params, 66.42 GMAC at 256 counted from the ops; 66.63 published)', inputSize: [3, 256, 256], options: [], build: (o) => new AttUNet(o.inChannels, o.numClasses) },
  { name: 'unext', description: 'UNeXt: conv stages 16..128, tokenised shifted-MLP stages 160/256 (1.47 M params, 0.562 GMAC at 256 counted from the ops; 0.58 published); H and W multiples of 32', inputSize: [3, 256, 256], options: [], build: (o) => new UNeXt(o.inChannels, o.numClasses) },
  { name: 'mednext-s', description: 'MedNeXt-S 2-D (MIC-DKFZ/MedNeXt v1: GroupNorm, residual up/down, 32 channels; 5.47 M params at kernel 3), kernelSize 3/5/7, deep supervision', inputSize: [3, 256, 256], options: ['kernelSize', 'deepSupervision'], build: (o) => new MedNeXt(o.inChannels, o.numClasses, { size: 'S' as MedNeXtSize, kernelSize: o.kernelSize, deepSupervision: o.deepSupervision }) },
  { name: 'mednext-b', description: 'MedNeXt-B 2-D (MIC-DKFZ/MedNeXt v1: GroupNorm, residual up/down, 32 channels; 10.45 M params at kernel 3), kernelSize 3/5/7, deep supervision', inputSize: [3, 256, 256], options: ['kernelSize', 'deepSupervision'], build: (o) => new MedNeXt(o.inChannels, o.numClasses, { size: 'B' as MedNeXtSize, kernelSize: o.kernelSize, deepSupervision: o.deepSupervision }) },
  { name: 'mednext-m', description: 'MedNeXt-M 2-D (MIC-DKFZ/MedNeXt v1: GroupNorm, residual up/down, 32 channels; 17.42 M params at kernel 3), kernelSize 3/5/7, deep supervision', inputSize: [3, 256, 256], options: ['kernelSize', 'deepSupervision'], build: (o) => new MedNeXt(o.inChannels, o.numClasses, { size: 'M' as MedNeXtSize, kernelSize: o.kernelSize, deepSupervision: o.deepSupervision }) },
  { name: 'mednext-l', description: 'MedNeXt-L 2-D (MIC-DKFZ/MedNeXt v1: GroupNorm, residual up/down, 32 channels; 61.56 M params at kernel 3), kernelSize 3/5/7, deep supervision', inputSize: [3, 256, 256], options: ['kernelSize', 'deepSupervision'], build: (o) => new MedNeXt(o.inChannels, o.numClasses, { size: 'L' as MedNeXtSize, kernelSize: o.kernelSize, deepSupervision: o.deepSupervision }) },
  { name: 'cmunext-s', description: 'CMUNeXt-S, dims 8..128 (0.418 M params, 1.01 GMAC at 256)', inputSize: [3, 256, 256], options: [], build: (o) => new CMUNeXt(o.inChannels, o.numClasses, CMUNEXT_VARIANTS['cmunext-s']) },
  { name: 'cmunext', description: 'CMUNeXt, dims 16..256 (3.149 M params, 7.23 GMAC at 256)', inputSize: [3, 256, 256], options: [], build: (o) => new CMUNeXt(o.inChannels, o.numClasses, CMUNEXT_VARIANTS.cmunext) },
  { name: 'cmunext-l', description: 'CMUNeXt-L, dims 32..512 (8.287 M params, 16.85 GMAC at 256)', inputSize: [3, 256, 256], options: [], build: (o) => new CMUNeXt(o.inChannels, o.numClasses, CMUNEXT_VARIANTS['cmunext-l']) },
  { name: 'segformer-b0', description: 'SegFormer with the MiT-B0 encoder (dims 32/64/160/256, depths 2/2/2/2, spatial-reduction attention) and the all-MLP decoder (E = 256); 1/4-resolution logits upsampled bilinearly to the input (3.714 M params at 1 class, 3.753 M at 150); H and W multiples of 32', inputSize: [3, 256, 256], options: [], build: (o) => new SegFormer(o.inChannels, o.numClasses, 'b0') },
  { name: 'segformer-b1', description: 'SegFormer with the MiT-B1 encoder (dims 64/128/320/512, depths 2/2/2/2) and the all-MLP decoder (E = 256); 1/4-resolution logits upsampled bilinearly to the input (13.678 M params at 1 class, 13.716 M at 150); H and W multiples of 32', inputSize: [3, 256, 256], options: [], build: (o) => new SegFormer(o.inChannels, o.numClasses, 'b1') },
  { name: 'segformer-b2', description: 'SegFormer with the MiT-B2 encoder (dims 64/128/320/512, depths 3/4/6/3) and the all-MLP decoder (E = 768); 1/4-resolution logits upsampled bilinearly to the input (27.347 M params at 1 class, 27.462 M at 150); H and W multiples of 32', inputSize: [3, 256, 256], options: [], build: (o) => new SegFormer(o.inChannels, o.numClasses, 'b2') },
  { name: 'transunet', description: 'TransUNet R50-ViT-B/16 (Beckschen/TransUNet, n_skip 3): ResNet-50 trunk with weight-standardised convs + GroupNorm, 12-layer ViT-B on the 1/16 map, cascaded upsampler (105.32 M params at 256); input must be imgSize x imgSize (option imgSize, default 256, a multiple of 16)', inputSize: [3, 256, 256], options: ['imgSize'], build: (o) => new TransUNet(o.inChannels, o.numClasses, { imgSize: o.imgSize }) },
  { name: 'nexnet', description: 'NExNet Seg: NEx blocks with T-PEN and decomposed MaSA (17.04 M params)', inputSize: [3, 224, 224], options: NEX, build: (o) => new NExNetSeg(o.inChannels, o.numClasses, { ...pick(o, NEX), ssl: false }) },
  { name: 'nexnet-ae', description: 'NExNet denoising U-Net autoencoder for SSL pretraining (22.37 M params; output = sigmoid image)', inputSize: [3, 224, 224], options: ['gamma', 'decomposed'], build: (o) => new NExNetAE(o.inChannels, pick(o, ['gamma', 'decomposed'])) },
  { name: 'nexnet-ssl', description: 'NExNet Seg with the autoencoder attached, encoder frozen by default (41.76 M params)', inputSize: [3, 224, 224], options: [...NEX, 'freezeEncoder'], build: (o) => new NExNetSeg(o.inChannels, o.numClasses, { ...pick(o, [...NEX, 'freezeEncoder']), ssl: true }) },
];

function pick(o: CreateOptions, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if ((o as Record<string, unknown>)[k] !== undefined) out[k] = (o as Record<string, unknown>)[k];
  return out;
}

const positiveInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
const CHECKS: Record<string, [(v: unknown) => boolean, string]> = {
  inChannels: [positiveInt, 'a positive integer'],
  numClasses: [positiveInt, 'a positive integer'],
  deepSupervision: [(v) => typeof v === 'boolean', 'a boolean'],
  kernelSize: [(v) => v === 3 || v === 5 || v === 7, '3, 5 or 7'],
  gamma: [(v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1, 'a number in [0, 1]'],
  dropout: [(v) => typeof v === 'number' && v >= 0 && v < 1, 'a number in [0, 1)'],
  decomposed: [(v) => typeof v === 'boolean', 'a boolean'],
  tpenOrder: [(v) => positiveInt(v) && (v as number) <= 5, 'an integer in 1..5'],
  freezeEncoder: [(v) => typeof v === 'boolean', 'a boolean'],
  filters: [(v) => Array.isArray(v) && v.length === 5 && v.every(positiveInt), 'an array of 5 positive integers'],
  imgSize: [(v) => positiveInt(v) && (v as number) % 16 === 0, 'a positive multiple of 16'],
};

/** The available models: name, one-line description, default input size and extra options. */
export function list(): ModelInfo[] {
  return REGISTRY.map(({ name, description, inputSize, options }) => ({ name, description, inputSize: [...inputSize] as [number, number, number], options: [...options] }));
}

/**
 * Builds a model by name with PyTorch-default random initialisation:
 * create('cmunext-s', { inChannels: 3, numClasses: 1 }).
 */
export function create(name: string, options: CreateOptions = {}): Module {
  const entry = REGISTRY.find((e) => e.name === name);
  if (!entry) throw new Error(`models.create: unknown model ${JSON.stringify(name)}; valid names: ${REGISTRY.map((e) => e.name).join(', ')}`);
  if (options === null || typeof options !== 'object') throw new Error(`models.create('${name}'): options must be an object`);
  const allowed = ['inChannels', 'numClasses', ...entry.options];
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    if (!allowed.includes(k)) throw new Error(`models.create('${name}'): unknown option '${k}'; valid options: ${allowed.join(', ')}`);
    const [ok, what] = CHECKS[k];
    if (!ok(v)) throw new Error(`models.create('${name}'): option '${k}' must be ${what}, got ${JSON.stringify(v)}`);
  }
  return entry.build({ ...options, inChannels: options.inChannels ?? 3, numClasses: options.numClasses ?? 1 });
}
