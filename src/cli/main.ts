#!/usr/bin/env node
/**
 * The `scalpel` command line: a thin layer over the training API (src/train).
 *   scalpel train [--recipe cmunext|nexnet] [--data DIR] [--fold K] ...
 *   scalpel evaluate --checkpoint FILE --data DIR [--fold K]
 *   scalpel predict --checkpoint FILE --input DIR --out DIR
 *   scalpel cv --folds K [train options] [--ensemble]
 *   scalpel split DIR --val 0.2 [--test 0.1] --seed N
 *   scalpel summary MODEL --size 256
 *   scalpel convert --pth IN.pth --out OUT.safetensors [--key K] [--strip-prefix module.]
 *   scalpel pretrain [--data DIR] ...
 * User errors (bad flags, missing files, bad data) print one line to stderr and exit with 2 (flags)
 * or 1 (everything else); set SCALPEL_DEBUG=1 for stack traces.
 */
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { fit, evaluate, predict, crossValidate, formatMetricsTable, formatClassTable, UserError, TrainConfig, FitOptions, RECIPES, LIMITS, TTA_MODES, TtaMode } from '../train';
import { describeModels } from '../train/models';
import { loadModelCheckpoint } from '../train/checkpoint';
import * as onnx from '../onnx';
import { parseLossSpec } from '../train/losses';
import { loadPth, PTH_WRAPPER_KEYS } from '../nn/pth';
import { saveSafetensors } from '../nn/safetensors';
import type { Tensor } from '../tensor';
import { DataError, writeSplit, AugmentOptions, STRONG_AUGMENT, parsePostSpec, PostSpec, validateAugmentOptions } from '../data';

const num = (what: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a number, got '${v}'`);
  return n;
};
const int = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${what} must be an integer, got '${v}'`);
  return n;
};
const posInt = (what: string, [max, why]: [number, string] = [Number.MAX_SAFE_INTEGER, '']) => (v: string): number => {
  const n = int(what)(v);
  if (n < 1) throw new InvalidArgumentError(`${what} must be at least 1, got '${v}'`);
  if (n > max) throw new InvalidArgumentError(`${what} ${n} is above the limit of ${max} (${why})`);
  return n;
};
const workersInt = (what: string) => (v: string): number => {
  const n = int(what)(v);
  if (n < 0 || n > LIMITS.workers[0]) throw new InvalidArgumentError(`${what} must be between 0 and ${LIMITS.workers[0]} (${LIMITS.workers[1]}), got '${v}'`);
  return n;
};
const frac = (what: string) => (v: string): number => {
  const n = num(what)(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError(`${what} must be in [0, 1), got '${v}'`);
  return n;
};
const nonNegNumber = (what: string) => (v: string): number => {
  const n = num(what)(v);
  if (!(n >= 0)) throw new InvalidArgumentError(`${what} must be a number >= 0, got '${v}'`);
  return n;
};

const classesInt = posInt('--classes', LIMITS.classes);
const CLASSES_HELP = 'number of classes: 1 (default) = binary segmentation (one sigmoid output, masks 0/255); N >= 2 = N mutually exclusive ' +
  'classes including the background 0 (N softmax outputs; masks are class-index PNGs whose pixel values are the classes 0..N-1, a value >= N is an error ' +
  'naming the file and pixel; the default loss is ce+dice; the best checkpoint is chosen by the mean Dice over the foreground classes 1..N-1)';
const CHECKPOINT_CLASSES_HELP = 'the number of classes the checkpoint must have been trained with (default: whatever it was; a different number is an error). ' +
  'Multi-class checkpoints are read from the checkpoint itself: the prediction is the argmax of the softmax probabilities (averaged over --tta and ensembles)';

const foldsInt = (v: string): number => {
  const n = posInt('--folds', [100, 'one training per fold'])(v);
  if (n < 2) throw new InvalidArgumentError(`--folds must be at least 2 (one part held out, the others trained on), got '${v}'`);
  return n;
};

const AUGMENTS: Record<string, AugmentOptions> = {
  none: {},
  flips: { hflip: 0.5, vflip: 0.5 },
  cmunext: { hflip: 0.5, vflip: 0.5, rot90: 0.5 },
  nexnet: { hflip: 0.5, vflip: 0.5, rotate: { maxDeg: 15, p: 1 }, brightness: 0.2, contrast: 0.2 },
  strong: STRONG_AUGMENT,
};
const parseAugment = (v: string): AugmentOptions => {
  if (v in AUGMENTS) return AUGMENTS[v];
  let o: unknown;
  try {
    o = JSON.parse(v);
  } catch { /* fall through */ }
  if (o && typeof o === 'object' && !Array.isArray(o)) {
    try {
      return validateAugmentOptions(o);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  }
  throw new InvalidArgumentError(`expected one of ${Object.keys(AUGMENTS).join(', ')} or a JSON object, got '${v}'`);
};
const parseJsonObject = (v: string): Record<string, unknown> => {
  try {
    const o = JSON.parse(v);
    if (o && typeof o === 'object' && !Array.isArray(o)) return o;
  } catch { /* fall through */ }
  throw new InvalidArgumentError(`expected a JSON object, got '${v}'`);
};

const parsePost = (v: string): PostSpec => {
  try {
    return parsePostSpec(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const POST_HELP = "post-process each thresholded mask: comma-separated steps applied in order: lcc (keep the largest " +
  '8-connected component), min-area=N (drop components under N pixels), fill (fill holes: 4-connected background not ' +
  "touching the border); e.g. 'lcc,min-area=64,fill'. Multi-class: applied to each foreground class in turn, removed pixels " +
  'become background and fill only fills background pixels';
const parseLoss = (v: string): string => {
  try {
    parseLossSpec(v);
    return v;
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const LOSS_HELP = "loss as a sum of terms [weight*]name[:key=value,...] joined by '+': bce (pos-weight), dice (smooth), " +
  'focal (gamma, default 2; alpha, default none), tversky (alpha 0.3, beta 0.7, smooth 1), ohem (BCE of the hardest pixels: ratio, default 0.25; ' +
  "pos-weight); e.g. 'focal:gamma=2,alpha=0.25+dice', '0.5*bce:pos-weight=3+tversky:beta=0.8'. BCE and OHEM terms without a pos-weight use " +
  '--pos-weight. Replaces --bce-weight / --dice-weight (default: bce+dice with those weights). With --classes N >= 2: ce (softmax cross-entropy; ' +
  "weights=w0/w1/... one per class, background first) and dice (softmax Dice over the foreground classes), default ce+dice, e.g. 'ce:weights=0.5/1/2+dice'; " +
  'bce, focal, tversky and ohem are binary only';
const CHECKPOINT_HELP = 'model checkpoint (best.safetensors) or run folder; repeat it (--checkpoint a --checkpoint b) or give a ' +
  'comma-separated list for an ensemble: the probabilities of the models (each with its own normalisation, and --tta inside each) ' +
  'are averaged, then thresholded at 0.5 and post-processed. The checkpoints must agree on input size, channels and task';
const collectCheckpoints = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];
const LIST_HELP = "list file of ids, one per line, relative to --data (CMUNeXt's busi_train.txt / busi_val.txt; ids with or without " +
  "the extension, e.g. 'benign (10)' or 'benign (10).png'), replacing split files and fold CSVs";
const ttaOption = () => new Option('--tta <mode>', 'test-time augmentation: average the probabilities over flips (identity, horizontal, vertical, both: 4 passes) ' +
  'or d4 (the 4 rotations by 90 degrees, each with and without a flip: 8 passes); none = one pass').choices(TTA_MODES as string[]).default('none');

/** The options shared by `train` and `pretrain` (no commander defaults: recipes and the API fill them). */
function trainOptions(cmd: Command): Command {
  return cmd
    .option('--recipe <name>', `start from an authors' recipe (${Object.keys(RECIPES).join(', ')}); other flags override it`)
    .option('--model <name>', 'model name (see `scalpel summary --list`)')
    .option('--model-opts <json>', 'model constructor options as JSON', parseJsonObject)
    .option('--data <dir>', 'dataset folder (default: a built-in synthetic dataset generated under <out>/data)')
    .option('--fold <k>', 'fold of a dataset with a fold CSV (BUS-BRA)', posInt('--fold'))
    .option('--train-list <file>', `${LIST_HELP}: the training ids (with --val-list)`)
    .option('--val-list <file>', `${LIST_HELP}: the validation ids (with --train-list)`)
    .option('--size <px>', 'input side in pixels', posInt('--size', LIMITS.size))
    .addOption(new Option('--channels <n>', 'image channels fed to the model').choices(['1', '3']).argParser((v) => Number(v) as 1 | 3))
    .option('--epochs <n>', 'epochs', posInt('--epochs'))
    .option('--batch <n>', 'batch size', posInt('--batch', LIMITS.batch))
    .addOption(new Option('--optimizer <name>', 'optimiser').choices(['sgd', 'adam', 'adamw']))
    .option('--lr <x>', 'learning rate', num('--lr'))
    .option('--momentum <x>', 'SGD momentum', num('--momentum'))
    .option('--nesterov', 'Nesterov momentum (SGD)')
    .option('--weight-decay <x>', 'weight decay', num('--weight-decay'))
    .option('--schedule <name>', 'lr schedule: constant, poly, cosine, plateau, warmup+poly, warmup+cosine, warmup+plateau')
    .option('--poly-power <x>', 'poly decay power', num('--poly-power'))
    .option('--warmup-epochs <n>', 'warm-up epochs for warmup+X schedules', int('--warmup-epochs'))
    .option('--plateau-factor <x>', 'ReduceLROnPlateau factor', num('--plateau-factor'))
    .option('--plateau-patience <n>', 'ReduceLROnPlateau patience (epochs)', int('--plateau-patience'))
    .option('--clip <norm>', 'clip the gradient norm (0 = off)', num('--clip'))
    .option('--early-stop <n>', 'early-stopping patience in epochs (0 = off)', int('--early-stop'))
    .option('--time-limit <minutes>', 'wall-clock budget for training + validation; stops after the last epoch that fits (0 = none)', num('--time-limit'))
    .option('--pos-weight <x|auto>', "BCE positive weight, or 'auto' (background/foreground ratio of the training masks); binary only (with --classes >= 2 use --loss ce:weights=...)", (v: string) => (v === 'auto' ? 'auto' : num('--pos-weight')(v)))
    .option('--bce-weight <x>', 'weight of the BCE term (with --classes >= 2: of the cross-entropy term)', num('--bce-weight'))
    .option('--dice-weight <x>', 'weight of the Dice term (with --classes >= 2: of the softmax Dice term)', num('--dice-weight'))
    .option('--augment <spec>', `augmentation: a preset (${Object.keys(AUGMENTS).join(', ')}; strong = flips, rot90, affine, elastic, gamma, CLAHE, jitter) ` +
      'or JSON AugmentOptions: hflip/vflip/rot90 (probabilities), rotate {maxDeg,p}, brightness, contrast, gamma {range:[lo,hi],p}, ' +
      'clahe {clipLimit,tiles,p} (simplified CLAHE), elastic {alpha (px),sigma (px),p}, affine {scale:[lo,hi],shift (fraction),rotate (deg),p}', parseAugment)
    .addOption(new Option('--normalize <mode>', 'input normalisation').choices(['dataset', 'none']))
    .option('--seed <n>', 'random seed (runs with the same seed are identical)', int('--seed'))
    .option('--out <dir>', 'run folder (checkpoints, logs, plots)')
    .option('--workers <n>', 'data-loading worker threads', workersInt('--workers'))
    .addOption(new Option('--device <name>', 'compute device').choices(['cpu', 'cuda']))
    .option('--synthetic-count <n>', 'images in the built-in synthetic dataset', posInt('--synthetic-count'))
    .option('--resume <path>', 'resume from a run folder or a checkpoint state (last.json)')
    .option('--hd95', 'compute HD95 at every validation (multi-class: per foreground class)')
    .option('--deep-supervision', 'train on every head of a model with deep supervision. unetpp: four full-resolution heads, losses weighted 8/15, 4/15, 2/15, 1/15 from the final head ' +
      "X0,4 to the shallowest X0,1 (nnU-Net's halving per level); validation, evaluate and predict use the mean of the heads' logits. mednext-*: heads at 1, 1/2, 1/4, 1/8, 1/16 " +
      "resolution, each against the mask downsampled to its size by nearest sampling, weighted nnU-Net's way (1/2^i, the 1/16 head zeroed, normalised: 8/15, 4/15, 2/15, 1/15, 0); " +
      'validation, evaluate and predict use the full-resolution head only. Kept in the run state and the checkpoints')
    .option('--resize-masks', 'stretch a mask whose size differs from its image (default: an error naming both files)')
    .option('--activation-checkpointing', "keep only each model stage's input for backward and recompute the stage there (less training memory, " +
      'about one extra forward per step, same results)')
    .option('--overlays <n>', 'validation overlays to draw at the end', int('--overlays'))
    .option('--no-progress', 'no progress bar')
    .option('--quiet', 'no per-epoch lines');
}

function toFitOptions(o: Record<string, unknown>): FitOptions {
  const c: Partial<TrainConfig> & { recipe?: string } = {
    recipe: o.recipe as string | undefined,
    model: o.model as string | undefined,
    modelOptions: o.modelOpts as Record<string, unknown> | undefined,
    data: o.data as string | undefined,
    fold: o.fold as number | undefined,
    trainList: o.trainList as string | undefined,
    valList: o.valList as string | undefined,
    size: o.size as number | undefined,
    channels: o.channels as 1 | 3 | undefined,
    epochs: o.epochs as number | undefined,
    batch: o.batch as number | undefined,
    optimizer: o.optimizer as TrainConfig['optimizer'] | undefined,
    lr: o.lr as number | undefined,
    momentum: o.momentum as number | undefined,
    nesterov: o.nesterov as boolean | undefined,
    weightDecay: o.weightDecay as number | undefined,
    schedule: o.schedule as string | undefined,
    polyPower: o.polyPower as number | undefined,
    warmupEpochs: o.warmupEpochs as number | undefined,
    plateauFactor: o.plateauFactor as number | undefined,
    plateauPatience: o.plateauPatience as number | undefined,
    clip: o.clip as number | undefined,
    earlyStop: o.earlyStop as number | undefined,
    timeLimit: o.timeLimit as number | undefined,
    posWeight: o.posWeight as number | 'auto' | undefined,
    bceWeight: o.bceWeight as number | undefined,
    diceWeight: o.diceWeight as number | undefined,
    classes: o.classes as number | undefined,
    augment: o.augment as AugmentOptions | undefined,
    deepSupervision: o.deepSupervision as boolean | undefined,
    normalize: o.normalize as 'dataset' | 'none' | undefined,
    seed: o.seed as number | undefined,
    out: o.out as string | undefined,
    workers: o.workers as number | undefined,
    device: o.device as 'cpu' | 'cuda' | undefined,
    syntheticCount: o.syntheticCount as number | undefined,
    resume: o.resume as string | undefined,
    hd95: o.hd95 as boolean | undefined,
    activationCheckpointing: o.activationCheckpointing as boolean | undefined,
    resizeMasks: o.resizeMasks as boolean | undefined,
    overlays: o.overlays as number | undefined,
    progress: o.progress === false ? false : undefined,
    verbose: o.quiet ? false : undefined,
  };
  return c;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('scalpel')
    .description('Train, evaluate and run lightweight medical image segmentation networks (scalpel tensor engine)')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  program.configureOutput({ outputError: (s, write) => write(s) });

  trainOptions(program.command('train').description('train a segmentation model (default: a quick demo on built-in synthetic data)'))
    .option('--classes <n>', `${CLASSES_HELP}; without --data the synthetic demo set gets N - 1 kinds of shapes`, classesInt)
    .option('--encoder <ckpt>', 'pretrained autoencoder checkpoint (nexnet-ssl)')
    .option('--freeze-encoder', 'freeze the pretrained autoencoder (nexnet-ssl)')
    .option('--upkern <ckpt>', 'UpKern: start from a trained checkpoint of the same network with smaller kernels (e.g. mednext-s k3 for --model-opts \'{"kernelSize":5}\'); kernels resampled bilinearly, the rest copied')
    .option('--loss <spec>', LOSS_HELP, parseLoss)
    .option('--init-weights <file>', 'start from these weights: a PyTorch checkpoint (.pth/.pt, torch.save; read without Python by a restricted unpickler that ' +
      'accepts tensors and dicts only) or a .safetensors file; loaded strictly (every entry of the model, nothing else); not applied on --resume')
    .option('--init-key <key>', "with --init-weights FILE.pth: the checkpoint's entry holding the state dict (default: the file itself when it is one, else the first of " +
      `${PTH_WRAPPER_KEYS.join(', ')})`)
    .option('--init-strip-prefix <prefix>', "with --init-weights FILE.pth: remove this prefix from the names, e.g. 'module.' (DataParallel)")
    .action(async (o: Record<string, unknown>) => {
      const opts = toFitOptions(o);
      if (o.initWeights !== undefined) opts.initWeights = path.resolve(String(o.initWeights));
      else if (o.initKey !== undefined || o.initStripPrefix !== undefined) throw new UserError('--init-key and --init-strip-prefix need --init-weights <file>', 2);
      if (o.initKey !== undefined) opts.initKey = String(o.initKey);
      if (o.initStripPrefix !== undefined) opts.initStripPrefix = String(o.initStripPrefix);
      if (o.loss !== undefined) {
        if (o.bceWeight !== undefined || o.diceWeight !== undefined) throw new UserError('--loss replaces --bce-weight and --dice-weight: put the weights in the spec, e.g. --loss 0.5*bce+dice', 2);
        opts.loss = o.loss as string;
      }
      if (o.encoder !== undefined) opts.encoder = path.resolve(String(o.encoder));
      if (o.freezeEncoder) opts.freezeEncoder = true;
      if (o.upkern !== undefined) opts.upkern = path.resolve(String(o.upkern));
      if (opts.out === undefined && opts.resume === undefined) opts.out = path.join('runs', `${opts.recipe ?? 'train'}-${(opts.model ?? 'default').replace(/[^\w.-]/g, '_')}`);
      await fit(opts);
    });

  trainOptions(program.command('pretrain').description('pretrain the NExNet denoising autoencoder (noisy input, clean target, MSE)'))
    .option('--noise <std>', 'Gaussian noise std added to the inputs (clamped to [0, 1])', num('--noise'), 0.1)
    .action(async (o: Record<string, unknown>) => {
      const opts = toFitOptions(o);
      const f: FitOptions = {
        model: 'nexnet-ae', size: 224, optimizer: 'adam', lr: 1e-4, schedule: 'constant', augment: {}, posWeight: undefined,
        ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
        normalize: 'none', overlays: 0, task: 'autoencoder', noiseStd: o.noise as number,
      };
      if (f.out === undefined && f.resume === undefined) f.out = path.join('runs', `pretrain-${String(f.model).replace(/[^\w.-]/g, '_')}`);
      await fit(f);
    });

  trainOptions(program.command('cv').description('k-fold cross-validation: trains each fold into <out>/fold-<k>, evaluates it on its held-out part, ' +
    'writes <out>/cv.json and <out>/cv.md (per-fold metrics, mean ± sample std). Takes the train options (not --fold or --resume); ' +
    'with --train-list/--val-list their ids are folded'))
    .option('--classes <n>', CLASSES_HELP, classesInt)
    .option('--folds <k>', "number of folds; the dataset's <k>-fold-cv.csv is used when it has one (BUS-BRA), else folds are generated from --fold-seed", foldsInt, 5)
    .addOption(new Option('--fold-source <kind>', 'auto: the fold CSV when there is one with --folds folds, else generated; generated; csv (an error without one)').choices(['auto', 'generated', 'csv']).default('auto'))
    .option('--fold-seed <n>', 'seed of the generated folds (default: --seed)', int('--fold-seed'))
    .option('--cv-val <fraction>', "validation share of each generated fold's training part, for checkpoint selection", frac('--cv-val'), 0.2)
    .option('--test-list <file>', `${LIST_HELP}: test ids kept out of every fold, for --ensemble (default: the dataset's test split, if any)`)
    .option('--ensemble', "also evaluate the fold models' averaged probabilities (and each fold model) on the test split")
    .option('--loss <spec>', LOSS_HELP, parseLoss)
    .addOption(ttaOption())
    .option('--post <spec>', `${POST_HELP} (in the held-out and test evaluations)`, parsePost)
    .action(async (o: Record<string, unknown>) => {
      const opts = toFitOptions(o);
      if (o.loss !== undefined) {
        if (o.bceWeight !== undefined || o.diceWeight !== undefined) throw new UserError('--loss replaces --bce-weight and --dice-weight: put the weights in the spec, e.g. --loss 0.5*bce+dice', 2);
        opts.loss = o.loss as string;
      }
      if (opts.out === undefined) opts.out = path.join('runs', `cv-${(opts.model ?? 'default').replace(/[^\w.-]/g, '_')}`);
      if ((o.cvVal as number) <= 0) throw new UserError('--cv-val must be above 0: each fold needs validation images to choose its checkpoint', 2);
      await crossValidate(opts, {
        folds: o.folds as number, source: o.foldSource as 'auto', foldSeed: o.foldSeed as number | undefined, valFraction: o.cvVal as number,
        testList: o.testList as string | undefined, ensemble: Boolean(o.ensemble), tta: o.tta as TtaMode, post: o.post as PostSpec | undefined,
      });
    });

  program
    .command('evaluate')
    .description('evaluate a checkpoint: metrics at threshold 0.5 (global and per-image mean); writes JSON')
    .requiredOption('--checkpoint <file>', CHECKPOINT_HELP, collectCheckpoints)
    .requiredOption('--data <dir>', 'dataset folder')
    .option('--fold <k>', 'fold of a dataset with a fold CSV', posInt('--fold'))
    .addOption(new Option('--split <name>', 'split to evaluate (default: test when present, else val)').choices(['train', 'val', 'test']))
    .option('--val-list <file>', `${LIST_HELP}: evaluate these ids`)
    .option('--batch <n>', 'batch size', posInt('--batch', LIMITS.batch), 8)
    .option('--workers <n>', 'data-loading worker threads', workersInt('--workers'), 1)
    .option('--classes <n>', CHECKPOINT_CLASSES_HELP, classesInt)
    .option('--no-hd95', 'skip the surface metrics (HD95, ASSD, NSD; multi-class: per foreground class, and for the foreground (any class) against the background)')
    .option('--nsd-tolerance <px>', 'tolerance of the normalised surface Dice, in pixels (default 2)', nonNegNumber('--nsd-tolerance'))
    .option('--resize-masks', 'stretch a mask whose size differs from its image (default: an error naming both files)')
    .option('--json <file>', 'where to write the metrics JSON (default: next to the checkpoint)')
    .option('--csv <file>', 'per-case CSV: id, dice, iou, precision, recall, hd95, assd, nsd; multi-class: id, mean_dice, mean_iou, mean_hd95, mean_assd, mean_nsd, then dice_c<k> and iou_c<k> per class and hd95_c<k>, assd_c<k>, nsd_c<k> per foreground class (default: next to the metrics JSON, .csv)')
    .addOption(ttaOption())
    .option('--post <spec>', `${POST_HELP} (at the model's input size, before the metrics)`, parsePost)
    .action(async (o: Record<string, unknown>) => {
      const r = await evaluate({
        checkpoint: o.checkpoint as string[], data: o.data as string, fold: o.fold as number | undefined, split: o.split as 'test' | undefined, valList: o.valList as string | undefined,
        batch: o.batch as number, workers: o.workers as number, hd95: o.hd95 as boolean, resizeMasks: o.resizeMasks as boolean | undefined, out: o.json as string | undefined,
        nsdTolerance: o.nsdTolerance as number | undefined, csv: o.csv as string | undefined,
        post: o.post as PostSpec | undefined, tta: o.tta as TtaMode, classes: o.classes as number | undefined,
      });
      const who = r.checkpoints.length > 1 ? `ensemble of ${r.checkpoints.length} checkpoints (${r.meta.model})` : `${r.meta.model} (epoch ${r.meta.epoch})`;
      const how = r.classSummary ? `${r.classes} classes (argmax)` : 'threshold 0.5';
      console.log(`${who} on the ${r.split} split: ${r.count} images, ${how}${r.tta !== 'none' ? `, tta ${r.tta}` : ''}${r.post ? `, post ${r.post}` : ''}`);
      if (r.classSummary) {
        console.log(formatClassTable(r.classSummary));
        const g = r.summary.global, p = r.summary.perImage;
        console.log(`foreground (any class) vs background: dice ${g.dice.toFixed(4)} iou ${g.iou.toFixed(4)}${Number.isFinite(p.hd95) ? ` hd95 ${p.hd95.toFixed(2)} px (per-image mean)` : ''}`);
      } else console.log(formatMetricsTable(r.summary));
      if (r.file) console.log(`metrics written to ${r.file}`);
      if (r.csvFile) console.log(`per-case metrics written to ${r.csvFile}`);
    });

  program
    .command('predict')
    .description('predict masks for a folder of images: <out>/<id>.png (mask: 0/255, or for a multi-class checkpoint an 8-bit class-index map 0..N-1 ' +
      'at the image\'s size: probabilities resized bilinearly, then the argmax) and <out>/<id>_overlay.png')
    .requiredOption('--checkpoint <file>', CHECKPOINT_HELP, collectCheckpoints)
    .requiredOption('--input <dir>', 'folder of images')
    .requiredOption('--out <dir>', 'output folder')
    .addOption(ttaOption())
    .option('--post <spec>', `${POST_HELP} (at each image's original size)`, parsePost)
    .option('--window <px>', "sliding-window inference: predict each image at its own resolution in <px> x <px> windows fed to the model as they are " +
      "(use the size the model was trained at for the same scale), blended with Gaussian weights (sigma = px/8); images smaller than a window are " +
      "edge-padded. Default: the whole image resized to the model's size and the probabilities resized back", posInt('--window', LIMITS.size))
    .option('--classes <n>', CHECKPOINT_CLASSES_HELP, classesInt)
    .option('--overlap <fraction>', 'overlap of neighbouring windows as a fraction of their side (default 0.5; needs --window)', frac('--overlap'))
    .action(async (o: Record<string, unknown>) => {
      const r = await predict({
        checkpoint: o.checkpoint as string[], input: o.input as string, out: o.out as string, post: o.post as PostSpec | undefined, tta: o.tta as TtaMode,
        window: o.window as number | undefined, overlap: o.overlap as number | undefined, classes: o.classes as number | undefined,
      });
      console.log(`wrote masks and overlays for ${r.count} images to ${path.resolve(o.out as string)}`);
    });

  program
    .command('export')
    .description("write a checkpoint's model as an ONNX file: its eval-mode forward traced at one input shape [1, C, N, N] (fixed in the file). " +
      'The input is the normalised image the model saw in training (the normalisation is not part of the graph); the output is what the model returns (logits for the segmentation models)')
    .requiredOption('--checkpoint <file>', 'model checkpoint (best.safetensors) or run folder')
    .requiredOption('--onnx <file>', 'output .onnx file (written atomically)')
    .option('--size <px>', 'input side N (default: the size the model was trained at)', posInt('--size', LIMITS.size))
    .option('--opset <n>', 'ONNX opset, 13..21', int('--opset'), 17)
    .action(async (o: Record<string, unknown>) => {
      const { model, meta } = loadModelCheckpoint(o.checkpoint as string);
      const size = (o.size as number | undefined) ?? meta.size;
      let r: onnx.ExportResult;
      try {
        r = onnx.export(model, [1, meta.channels, size, size], o.onnx as string, { opset: o.opset as number, docString: `scalpel ${meta.model}, epoch ${meta.epoch}` });
      } catch (e) {
        throw new UserError((e as Error).message.replace(/^sc\.onnx\.export: /, ''));
      } finally {
        model.dispose();
      }
      const norm = meta.normalize ? `normalised with mean ${JSON.stringify(meta.normalize.mean)} std ${JSON.stringify(meta.normalize.std)}` : 'not normalised';
      console.log(`wrote ${path.resolve(r.file)} (${meta.model}, ${(r.bytes / 1e6).toFixed(1)} MB, ${r.nodes} nodes, opset ${o.opset}): ` +
        `input 'input' [${r.inputShape.join(', ')}] (${norm}), output 'output' [${r.outputShapes[0].join(', ')}]`);
    });

  program
    .command('convert')
    .description('convert a PyTorch checkpoint (torch.save, PyTorch >= 1.6) to .safetensors, without Python: a restricted unpickler reads tensors and dicts only ' +
      '(any other Python global in the file is refused, nothing in it is executed); float16/bfloat16 become float32, int16/int8 int32, bool uint8')
    .requiredOption('--pth <file>', 'input .pth / .pt checkpoint')
    .requiredOption('--out <file>', 'output .safetensors file (written atomically)')
    .option('--key <key>', `the checkpoint's entry holding the state dict (default: the file itself when it is one, else the first of ${PTH_WRAPPER_KEYS.join(', ')})`)
    .option('--strip-prefix <prefix>', "remove this prefix from the names, e.g. 'module.' (DataParallel)")
    .action(async (o: Record<string, unknown>) => {
      const notes: string[] = [];
      let sd: Record<string, Tensor>;
      try {
        sd = loadPth(o.pth as string, { key: o.key as string | undefined, stripPrefix: o.stripPrefix as string | undefined, onNote: (n) => notes.push(n) });
      } catch (e) {
        throw new UserError((e as Error).message);
      }
      for (const n of notes) process.stderr.write(`scalpel: note: ${n}\n`);
      const ts = Object.values(sd);
      const dtypes = [...new Set(ts.map((t) => t.dtype))].join(', ');
      const values = ts.reduce((a, t) => a + t.size, 0);
      try {
        saveSafetensors(o.out as string, sd, { format: 'pt', source: path.basename(o.pth as string) });
      } catch (e) {
        throw new UserError((e as Error).message);
      } finally {
        ts.forEach((t) => t.dispose());
      }
      console.log(`wrote ${path.resolve(o.out as string)}: ${ts.length} tensors, ${values.toLocaleString('en-US')} values (${dtypes || 'none'})`);
    });

  program
    .command('split')
    .description('write reproducible train/val(/test) split files for a dataset folder')
    .argument('<dir>', 'dataset folder (images/ + masks/)')
    .option('--val <fraction>', 'validation fraction', frac('--val'), 0.2)
    .option('--test <fraction>', 'test fraction', frac('--test'), 0)
    .option('--seed <n>', 'random seed', int('--seed'), 0)
    .option('--name <prefix>', 'file prefix: <name>_train.txt etc.')
    .action(async (dir: string, o: Record<string, unknown>) => {
      const s = writeSplit(dir, { val: o.val as number, test: o.test as number, seed: o.seed as number, name: o.name as string | undefined });
      console.log(`${path.resolve(dir)}: train ${s.train.length}, val ${s.val.length}${s.test ? `, test ${s.test.length}` : ''}`);
    });

  program
    .command('summary')
    .description('layer-by-layer summary of a model: output shapes, parameters, MACs')
    .argument('[model]', 'model name')
    .option('--size <px>', 'input side', posInt('--size', LIMITS.size), 256)
    .option('--channels <n>', 'input channels', posInt('--channels', [64, 'input channels of an image']), 3)
    .option('--model-opts <json>', 'model options as JSON', parseJsonObject)
    .option('--list', 'list the available models')
    .action(async (name: string | undefined, o: Record<string, unknown>) => {
      if (o.list || !name) {
        console.log(describeModels().join('\n'));
        return;
      }
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const sc = require('../index') as Record<string, unknown>;
      const { createModel, withImageSize } = await import('../train/models');
      const model = createModel(name, withImageSize(name, { inChannels: o.channels, ...((o.modelOpts as object) ?? {}) }, o.size as number));
      const summary = sc.summary as ((m: unknown, shape: number[]) => unknown) | undefined;
      const format = sc.formatSummary as ((s: unknown) => string) | undefined;
      if (typeof summary !== 'function' || typeof format !== 'function') {
        console.log(`${name}: ${model.numParameters().toLocaleString('en-US')} parameters (layer summary needs sc.summary, not in this build)`);
        return;
      }
      console.log(format(summary(model, [1, o.channels as number, o.size as number, o.size as number])));
    });
  return program;
}

function isUserError(e: unknown): e is Error {
  return e instanceof UserError || e instanceof DataError;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has already printed its message (or the help).
      return e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version' ? 0 : 2;
    }
    if (process.env.SCALPEL_DEBUG) console.error(e);
    else {
      const msg = (e as Error)?.message ?? String(e);
      process.stderr.write(`scalpel: ${isUserError(e) ? '' : 'error: '}${msg.split('\n')[0]}\n`);
    }
    return e instanceof UserError ? e.exitCode : 1;
  }
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}
