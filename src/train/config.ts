/** Training configuration: defaults, the authors' recipes, validation. */
import type { AugmentOptions } from '../data';
import { defaultModelName, ModelOptions } from './models';
import { UserError } from './errors';
import { bceDiceTerms, checkLossForClasses, deepSupervisionWeights, nnunetDeepSupervisionWeights, parseLossSpec } from './losses';

export type OptimizerName = 'sgd' | 'adam' | 'adamw';
/** 'constant' | 'poly' | 'cosine' | 'plateau' | 'warmup+poly' | 'warmup+cosine' | 'warmup+plateau' | 'warmup' */
export type ScheduleName = string;

export interface TrainConfig {
  /** Model name for createModel / sc.models.create, and its options. */
  model: string;
  modelOptions: ModelOptions;
  /** Pretrained autoencoder checkpoint (from `pretrain`) loaded into the matching sub-module (nexnet-ssl). */
  encoder?: string;
  /** UpKern: initialise the model from a checkpoint of the same network with smaller kernels (MedNeXt k3 -> k5/k7). */
  upkern?: string;
  /**
   * Initial weights for a new run (not applied on resume): a PyTorch checkpoint (.pth / .pt /
   * .bin, read by sc.loadPth, no Python) or a .safetensors file, loaded strictly (every entry of
   * the model, nothing else). initKey / initStripPrefix: loadPth's key and stripPrefix.
   */
  initWeights?: string;
  initKey?: string;
  initStripPrefix?: string;
  /** Freeze the loaded autoencoder's parameters. */
  freezeEncoder?: boolean;
  /** Dataset root; omitted = the built-in synthetic dataset (generated into `<out>/data`, or syntheticDir). */
  data?: string;
  syntheticDir?: string;
  syntheticCount: number;
  /** BUS-BRA fold (1-based) for datasets with a fold CSV. */
  fold?: number;
  /**
   * Train / validation list files (CMUNeXt's `busi_train.txt`, `busi_val.txt`), relative to `data`
   * or absolute; given together, they choose the split instead of split files or a fold CSV.
   */
  trainList?: string;
  valList?: string;
  /**
   * Output classes. 1 (default): binary segmentation, one sigmoid channel, masks thresholded
   * (0/255). N >= 2: N mutually exclusive classes including the background 0, N softmax
   * channels, masks are class-index PNGs (pixel value = class, 0..N-1), loss ce+dice by default.
   */
  classes: number;
  /** Square input side in pixels. */
  size: number;
  /** Image channels fed to the model (grey images are replicated to 3). */
  channels: 1 | 3;
  epochs: number;
  batch: number;
  optimizer: OptimizerName;
  lr: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  schedule: ScheduleName;
  polyPower: number;
  warmupEpochs: number;
  plateauFactor: number;
  plateauPatience: number;
  /** Gradient clipping max norm; 0 = off. */
  clip: number;
  /** Early-stopping patience in epochs; 0 = off. */
  earlyStop: number;
  /**
   * Wall-clock budget in minutes for training + validation (0 = none): training stops after the
   * epoch whose successor would not fit (estimated from the mean epoch time so far). The lr
   * schedule still follows `epochs`, so set both for a fully decayed schedule.
   */
  timeLimit: number;
  /**
   * BCE positive-class weight: none, a number, or 'auto' (background/foreground pixel ratio of the
   * training masks). Binary only: with classes >= 2, 'auto' is not used and a number is an error.
   */
  posWeight?: number | 'auto';
  /** Weight of the BCE term (with classes >= 2: of the softmax cross-entropy term). */
  bceWeight: number;
  /** Weight of the Dice term (with classes >= 2: of the softmax Dice term). */
  diceWeight: number;
  /**
   * Loss spec, e.g. 'focal:gamma=2,alpha=0.25+dice' or '0.5*bce:pos-weight=3+tversky:alpha=0.3,beta=0.7'
   * (terms bce, dice, focal, tversky, ohem; with classes >= 2: ce, dice; see src/train/losses.ts).
   * When set it replaces bceWeight / diceWeight; unset = bceWeight * BCE + diceWeight * Dice
   * (classes >= 2: bceWeight * CE + diceWeight * softmax Dice).
   */
  loss?: string;
  augment: AugmentOptions;
  /**
   * Deep supervision (models that have it: unetpp, mednext-*): the model is built with its extra
   * heads and trained on the weighted sum of every head's loss (see deepSupervisionWeightsFor;
   * MedNeXt's lower-resolution heads against the target downsampled to their size); validation,
   * evaluate and predict use the model's forward (UNet++: the mean of the heads' logits; MedNeXt:
   * the full-resolution head only).
   */
  deepSupervision: boolean;
  /** 'dataset' = per-channel mean/std of the training images; 'none'; or explicit values. */
  normalize: 'dataset' | 'none' | { mean: number[]; std: number[] };
  seed: number;
  out: string;
  workers: number;
  /** 'cpu' (default) or 'cuda'. */
  device: 'cpu' | 'cuda';
  /** Resume from a run folder or a state JSON (last.json / best.json). */
  resume?: string;
  /** Compute HD95 during validation (slower). */
  hd95: boolean;
  /**
   * Activation checkpointing: each stage of the model (its direct children with parameters)
   * keeps only its input for backward and is recomputed there; less memory, about one more
   * forward per step. Results are the same as without.
   */
  activationCheckpointing: boolean;
  /** Stretch masks whose size differs from their image's (default: that is an error). */
  resizeMasks: boolean;
  /** Number of validation images to draw prediction overlays for. */
  overlays: number;
  /** Show a progress bar (default: when stderr is a TTY). */
  progress?: boolean;
  /** Print the per-epoch summary lines (default true). */
  verbose: boolean;
  /** Recipe the config started from, if any. */
  recipe?: string;
}

export const RECIPES: Record<string, Partial<TrainConfig>> = {
  cmunext: {
    model: 'cmunext',
    optimizer: 'sgd',
    lr: 0.01,
    momentum: 0.9,
    nesterov: false,
    weightDecay: 1e-4,
    schedule: 'poly',
    polyPower: 0.9,
    batch: 8,
    size: 256,
    epochs: 300,
    augment: { hflip: 0.5, vflip: 0.5, rot90: 0.5 },
    posWeight: undefined,
    bceWeight: 1,
    diceWeight: 1,
    clip: 0,
    earlyStop: 0,
  },
  nexnet: {
    model: 'nexnet',
    optimizer: 'adam',
    lr: 1e-4,
    weightDecay: 1e-4,
    schedule: 'warmup+plateau',
    warmupEpochs: 5,
    plateauFactor: 0.5,
    plateauPatience: 10,
    earlyStop: 30,
    clip: 0.5,
    posWeight: 'auto',
    bceWeight: 1,
    diceWeight: 1,
    augment: { hflip: 0.5, vflip: 0.5, rotate: { maxDeg: 15, p: 1 }, brightness: 0.2, contrast: 0.2 },
    size: 224,
    batch: 8,
    epochs: 200,
  },
};

/** Defaults: a quick demo (about two minutes on two cores) on the built-in synthetic data. */
export function defaultConfig(): TrainConfig {
  const model = defaultModelName();
  return {
    model,
    modelOptions: {},
    classes: 1,
    syntheticCount: 96,
    size: 96,
    channels: 3,
    epochs: model === 'tiny' ? 40 : 20,
    batch: 4,
    optimizer: 'adam',
    lr: 3e-3,
    momentum: 0.9,
    nesterov: false,
    weightDecay: 1e-4,
    schedule: 'cosine',
    polyPower: 0.9,
    warmupEpochs: 0,
    plateauFactor: 0.5,
    plateauPatience: 10,
    clip: 0,
    earlyStop: 0,
    timeLimit: 0,
    posWeight: 'auto',
    bceWeight: 1,
    diceWeight: 1,
    augment: { hflip: 0.5, vflip: 0.5, rot90: 0.5 },
    normalize: 'dataset',
    seed: 0,
    out: 'runs/train',
    workers: 1,
    device: 'cpu',
    hd95: false,
    activationCheckpointing: false,
    deepSupervision: false,
    resizeMasks: false,
    overlays: 4,
    verbose: true,
  };
}

const SCHEDULES = ['constant', 'poly', 'cosine', 'plateau', 'warmup', 'warmup+poly', 'warmup+cosine', 'warmup+plateau', 'warmup+constant'];

/** Defaults < recipe < overrides (undefined values in overrides are ignored). Validates the result. */
export function resolveConfig(overrides: Partial<TrainConfig> & { recipe?: string } = {}): TrainConfig {
  const base = defaultConfig();
  let recipe: Partial<TrainConfig> = {};
  if (overrides.recipe !== undefined) {
    const r = RECIPES[overrides.recipe];
    if (!r) throw new UserError(`unknown recipe '${overrides.recipe}' (available: ${Object.keys(RECIPES).join(', ')})`);
    recipe = { ...r, recipe: overrides.recipe };
  }
  const cfg = { ...base, ...recipe } as TrainConfig;
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) (cfg as unknown as Record<string, unknown>)[k] = v;
  validateConfig(cfg);
  return cfg;
}

/** Models with deep-supervision heads (a forwardAll returning every head's logits). */
export const DEEP_SUPERVISION_MODELS = ['unetpp', 'mednext-s', 'mednext-b', 'mednext-m', 'mednext-l'];

/**
 * The loss weights of a deep-supervised model's forwardAll outputs, in that order. UNet++: four
 * full-resolution heads of increasing depth, halving per level from the final one
 * (deepSupervisionWeights). MedNeXt: five heads from full resolution down to 1/16, nnU-Net's rule
 * (nnunetDeepSupervisionWeights: 1/2^i, the lowest resolution zeroed, normalised).
 */
export function deepSupervisionWeightsFor(model: string, n: number): number[] {
  if (model.startsWith('mednext-')) return nnunetDeepSupervisionWeights(n);
  return deepSupervisionWeights(n);
}

/** Upper bounds of the flags that size memory, with the reason each error gives. */
export const LIMITS = {
  size: [8192, 'each image is resized to size x size, and the activations grow with its square'] as [number, string],
  batch: [4096, 'a batch is held in memory with all its activations'] as [number, string],
  workers: [256, 'one thread per worker'] as [number, string],
  batchElements: 2 ** 31,
  classes: [256, 'class-index masks are 8-bit PNGs'] as [number, string],
};

export function validateConfig(c: TrainConfig): void {
  const posInt = (k: keyof TrainConfig, min: number, [max, why]: [number, string]) => {
    const v = c[k] as unknown as number;
    if (!Number.isInteger(v) || v < min) throw new UserError(`invalid ${k}: expected an integer >= ${min}, got ${v}`);
    if (v > max) throw new UserError(`invalid ${k}: ${v} is above the limit of ${max} (${why})`);
  };
  posInt('classes', 1, LIMITS.classes);
  posInt('epochs', 1, [1_000_000, 'a run that long is a typo']);
  posInt('batch', 1, LIMITS.batch);
  posInt('size', 16, LIMITS.size);
  posInt('syntheticCount', 4, [100_000, 'the synthetic set is generated on disk']);
  posInt('workers', 0, LIMITS.workers);
  posInt('overlays', 0, [100_000, 'one PNG per image']);
  const elements = c.batch * c.channels * c.size * c.size;
  if (elements > LIMITS.batchElements) {
    throw new UserError(`invalid batch/size: a batch of ${c.batch} x ${c.channels} x ${c.size} x ${c.size} is ${elements.toExponential(2)} values, above the ${LIMITS.batchElements.toExponential(0)} one input tensor may hold (lower --batch or --size)`);
  }
  if (!Number.isInteger(c.seed)) throw new UserError(`invalid seed: expected an integer, got ${c.seed}`);
  if (c.device !== 'cpu' && c.device !== 'cuda') throw new UserError(`invalid device '${c.device}' (expected cpu or cuda)`);
  if (c.channels !== 1 && c.channels !== 3) throw new UserError(`invalid channels: expected 1 or 3, got ${c.channels}`);
  if (!['sgd', 'adam', 'adamw'].includes(c.optimizer)) throw new UserError(`invalid optimizer '${c.optimizer}' (expected sgd, adam or adamw)`);
  if (!SCHEDULES.includes(c.schedule)) throw new UserError(`invalid schedule '${c.schedule}' (expected one of ${SCHEDULES.join(', ')})`);
  for (const k of ['lr', 'weightDecay', 'momentum', 'clip', 'polyPower', 'bceWeight', 'diceWeight'] as const) {
    if (!(Number.isFinite(c[k]) && c[k] >= 0)) throw new UserError(`invalid ${k}: expected a non-negative number, got ${c[k]}`);
  }
  if (!(c.lr > 0)) throw new UserError(`invalid lr: must be positive, got ${c.lr}`);
  if (!(c.plateauFactor > 0 && c.plateauFactor < 1)) throw new UserError(`invalid plateau factor ${c.plateauFactor} (expected 0 < f < 1)`);
  if (!Number.isInteger(c.warmupEpochs) || c.warmupEpochs < 0) throw new UserError(`invalid warmup epochs ${c.warmupEpochs}`);
  if (!(Number.isFinite(c.timeLimit) && c.timeLimit >= 0)) throw new UserError(`invalid time limit ${c.timeLimit}`);
  if (!Number.isInteger(c.earlyStop) || c.earlyStop < 0) throw new UserError(`invalid early-stop patience ${c.earlyStop}`);
  if (!Number.isInteger(c.plateauPatience) || c.plateauPatience < 0) throw new UserError(`invalid plateau patience ${c.plateauPatience}`);
  if (c.posWeight !== undefined && c.posWeight !== 'auto' && !(Number.isFinite(c.posWeight) && c.posWeight > 0)) {
    throw new UserError(`invalid pos-weight '${c.posWeight}' (expected a positive number or 'auto')`);
  }
  if (c.fold !== undefined && !(Number.isInteger(c.fold) && c.fold >= 1)) throw new UserError(`invalid fold ${c.fold}`);
  for (const k of ['trainList', 'valList'] as const) {
    if (c[k] !== undefined && (typeof c[k] !== 'string' || c[k]!.trim() === '')) throw new UserError(`invalid ${k}: expected a file name, got '${String(c[k])}'`);
  }
  if ((c.trainList === undefined) !== (c.valList === undefined)) {
    throw new UserError(`${c.trainList === undefined ? '--val-list' : '--train-list'} needs ${c.trainList === undefined ? '--train-list' : '--val-list'} too: training reads its split from both list files`);
  }
  if (c.trainList !== undefined && c.fold !== undefined) throw new UserError('--fold and --train-list/--val-list both choose the split: pass one of them');
  if (c.loss !== undefined) checkLossForClasses(parseLossSpec(c.loss), c.classes);
  else if (bceDiceTerms(c.bceWeight, c.diceWeight).length === 0) throw new UserError('invalid loss: the BCE and Dice weights are both 0');
  if (c.classes >= 2 && typeof c.posWeight === 'number') {
    throw new UserError(`--pos-weight ${c.posWeight} is a binary BCE weight: it cannot be used with --classes ${c.classes} (weigh classes with --loss ce:weights=w0/w1/...)`);
  }
  const numClasses = (c.modelOptions as { numClasses?: unknown } | undefined)?.numClasses;
  if (numClasses !== undefined && numClasses !== c.classes) {
    throw new UserError(`model option numClasses ${JSON.stringify(numClasses)} disagrees with --classes ${c.classes}: set the number of classes with --classes (it sizes the model's output)`);
  }
  if (c.nesterov && !(c.momentum > 0)) throw new UserError('nesterov needs momentum > 0');
  if (typeof c.deepSupervision !== 'boolean') throw new UserError(`invalid deepSupervision: expected true or false, got ${JSON.stringify(c.deepSupervision)}`);
  if (typeof c.activationCheckpointing !== 'boolean') throw new UserError(`invalid activationCheckpointing: expected true or false, got ${JSON.stringify(c.activationCheckpointing)}`);
  if (c.deepSupervision && !DEEP_SUPERVISION_MODELS.includes(c.model)) {
    throw new UserError(`--deep-supervision: model '${c.model}' has no deep-supervision heads (models with them: ${DEEP_SUPERVISION_MODELS.join(', ')})`);
  }
  if (c.deepSupervision && c.modelOptions?.deepSupervision === false) {
    throw new UserError('--deep-supervision contradicts the model option deepSupervision: false (--model-opts); drop one of them');
  }
  // MedNeXt halves the input four times; checked here so the run fails before any data is read.
  if (c.model.startsWith('mednext-') && c.size % 16 !== 0) {
    throw new UserError(`--size ${c.size}: ${c.model} needs a multiple of 16 (four halvings, and deep supervision's heads at 1/2 .. 1/16 resolution)`);
  }
  if (c.initWeights !== undefined && c.upkern !== undefined) throw new UserError('--upkern and --init-weights both initialise the model: give one');
}
