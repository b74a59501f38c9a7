/** evaluate(): metrics of a checkpoint on a dataset split; predict(): masks and overlays for a folder of images. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tidy } from '../tensor/tensor';
import { Tensor, tensor } from '../tensor';
import { noGrad } from '../autograd/engine';
import { DataError, DataLoader, IMAGE_EXTENSIONS, MetricAccumulator, MetricSummary, MultiClassMetricAccumulator, MultiClassSummary, PostSpec, argmaxClasses, binarize, perCaseCsv, formatPostSpec, multiClassCsv, openDataset, parsePostSpec, postprocessClasses, postprocessMask, readImage, resizeBilinear, writeClassPng, writeMaskPng } from '../data';
import { writeFileAtomic } from '../io/atomic';
import { ModelMeta, metaClasses } from './checkpoint';
import { Ensemble, ensembleProbabilities, loadEnsemble, normalizeFor, resolveCheckpoints } from './ensemble';
import { overlay, overlayClasses } from './plot';
import { UserError, makeOutputFolder } from './errors';
import { parseTtaMode, TtaMode } from './tta';
import { checkWindowOptions, slidingWindowProbabilities } from './sliding-window';


export interface EvaluateOptions {
  /**
   * A checkpoint (file or run folder), or several for an ensemble (an array, or a comma-separated
   * list): their probabilities are averaged, then thresholded at 0.5 (see src/train/ensemble.ts).
   */
  checkpoint: string | string[];
  data: string;
  fold?: number;
  /** 'test' (default when the dataset has one), 'val' or 'train'. */
  split?: 'train' | 'val' | 'test';
  /**
   * A list file of the ids to evaluate (e.g. CMUNeXt's `busi_val.txt`), relative to `data` or
   * absolute; it is the 'val' split then (split may only be 'val' or unset).
   */
  valList?: string;
  batch?: number;
  workers?: number;
  /** Compute the surface metrics HD95, ASSD and NSD (default true). */
  hd95?: boolean;
  /** NSD tolerance in pixels (default 2). */
  nsdTolerance?: number;
  /**
   * Per-case CSV (id, dice, iou, precision, recall, hd95, assd, nsd), written atomically.
   * Default: next to the metrics JSON with a .csv extension; null: none.
   */
  csv?: string | null;
  /** Stretch masks whose size differs from their image's (default: that is an error). */
  resizeMasks?: boolean;
  /** Write the metrics JSON here (default: next to the checkpoint, eval-<split>.json). */
  out?: string | null;
  /**
   * Post-processing of each thresholded mask before the metrics, e.g. 'lcc,min-area=64,fill'
   * (see src/data/postprocess.ts); applied at the model's input size, where the metrics are computed.
   */
  post?: string | PostSpec;
  /** Test-time augmentation: 'none' (default), 'flips' or 'd4' (see src/train/tta.ts); probabilities are averaged, then thresholded at 0.5. */
  tta?: TtaMode;
  /**
   * The classes the checkpoint must segment (default: whatever it was trained with); a checkpoint
   * trained with another number is an error. With classes >= 2 the masks are class-index PNGs, the
   * prediction is the argmax of the (averaged) softmax probabilities, and the metrics are per class.
   */
  classes?: number;
}

export interface EvaluateResult {
  split: string;
  count: number;
  summary: MetricSummary;
  /** The first checkpoint's metadata. */
  meta: ModelMeta;
  /** The checkpoints evaluated (more than one: an ensemble). */
  checkpoints: string[];
  file: string | null;
  /** The per-case CSV written (null: none). */
  csvFile: string | null;
  /** The post-processing applied ('' = none). */
  post: string;
  tta: TtaMode;
  /** The checkpoint's classes (1 = binary). */
  classes: number;
  /**
   * classes >= 2: per-class Dice / IoU (per image and pooled; means over the foreground classes).
   * `summary` then holds the binary metrics of the foreground (any class > 0) against the background.
   */
  classSummary: MultiClassSummary | null;
}

/** Checks a classes option (1..256 integer) and that it matches the checkpoint's; UserErrors name both. */
export function checkClassesOption(classes: number | undefined, meta: ModelMeta, checkpoint: string): number {
  const trained = metaClasses(meta);
  if (classes === undefined) return trained;
  if (!(Number.isInteger(classes) && classes >= 1 && classes <= 256)) throw new UserError(`--classes must be an integer from 1 to 256, got ${classes}`);
  if (classes !== trained) {
    const what = (k: number) => (k >= 2 ? `${k} classes` : 'binary segmentation (1 class)');
    throw new UserError(`${checkpoint} was trained for ${what(trained)}, but --classes ${classes} asks for ${what(classes)}: drop --classes or pass --classes ${trained}`);
  }
  return trained;
}

function resolveTta(tta: TtaMode | undefined): TtaMode {
  if (tta === undefined) return 'none';
  try {
    return parseTtaMode(tta);
  } catch (e) {
    throw new UserError(`--tta: ${(e as Error).message}`);
  }
}

/**
 * Foreground scores of an un-normalised batch, > 0 meaning foreground: the logits for one model
 * without TTA (logit > 0 is probability > 0.5), otherwise the 0/1 masks of the mean probability
 * (over the TTA transforms and the ensemble's models) > 0.5.
 */
function batchScores(ens: Ensemble, images: Float32Array, shape: [number, number, number, number], tta: TtaMode): Float32Array | Uint8Array {
  if (tta === 'none' && ens.members.length === 1) {
    const { model, meta } = ens.members[0];
    const device = model.parameters()[0]?.device ?? 'cpu';
    const x = normalizeFor(meta, images, shape);
    return noGrad(() => tidy(() => (model.forward(tensor(x, shape, { device })) as Tensor).toArray() as Float32Array));
  }
  return binarize(ensembleProbabilities(ens, images, shape, tta).data);
}

/** A spec string or parsed steps -> steps (null for none); a bad spec is a UserError. */
function resolvePost(post: string | PostSpec | undefined): PostSpec | null {
  if (post === undefined) return null;
  try {
    const steps = typeof post === 'string' ? parsePostSpec(post) : post;
    if (!Array.isArray(steps)) throw new Error(`post-processing must be a spec string or an array of steps, got ${typeof steps}`);
    return steps.length ? steps : null;
  } catch (e) {
    throw new UserError(`--post: ${(e as Error).message}`);
  }
}

/** Thresholds n logit maps of h x w (logit > 0, i.e. probability > 0.5) and post-processes each mask. */
function postprocessBatch(logits: Float32Array | Uint8Array, n: number, h: number, w: number, steps: PostSpec): Uint8Array {
  const hw = h * w;
  const out = new Uint8Array(n * hw);
  for (let k = 0; k < n; k++) out.set(postprocessMask(binarize(logits, true, k * hw, hw), h, w, steps), k * hw);
  return out;
}

export async function evaluate(opts: EvaluateOptions): Promise<EvaluateResult> {
  const post = resolvePost(opts.post);
  const tta = resolveTta(opts.tta);
  if (opts.nsdTolerance !== undefined && !(Number.isFinite(opts.nsdTolerance) && opts.nsdTolerance >= 0)) {
    throw new UserError(`--nsd-tolerance must be a number of pixels >= 0, got ${opts.nsdTolerance}`);
  }
  const checkpoints = resolveCheckpoints(opts.checkpoint);
  const ens = loadEnsemble(checkpoints);
  const meta = ens.meta;
  let classes: number;
  try {
    classes = checkClassesOption(opts.classes, meta, checkpoints[0]);
  } catch (e) {
    ens.dispose();
    throw e;
  }
  let loader: DataLoader | null = null;
  // Multi-class: this accumulator gets the class maps, scoring the foreground (any class) against the background.
  const acc = new MetricAccumulator({ logits: true, hd95: opts.hd95 ?? true, nsdTolerance: opts.nsdTolerance });
  const mcAcc = classes >= 2 ? new MultiClassMetricAccumulator(classes, { surface: opts.hd95 ?? true, nsdTolerance: opts.nsdTolerance }) : null;
  const mcIds: string[] = [];
  let csvFile: string | null = null;
  let ds: ReturnType<typeof openDataset>;
  let split: 'train' | 'val' | 'test';
  let file: string | null;
  try {
    if (meta.task !== 'segmentation') throw new UserError(`${checkpoints[0]}: an ${meta.task} checkpoint cannot be evaluated for segmentation`);
    if (opts.valList !== undefined && opts.split !== undefined && opts.split !== 'val') {
      throw new UserError(`--val-list ${opts.valList} is the split to evaluate: --split ${opts.split} cannot be used with it`);
    }
    ds = openDataset(opts.data, { fold: opts.fold, val: 0.2, seed: 0, valList: opts.valList });
    split = opts.split ?? (opts.valList !== undefined ? 'val' : ds.ids.test && ds.ids.test.length ? 'test' : 'val');
    const ids = ds.ids[split];
    if (!ids || ids.length === 0) throw new UserError(`${ds.root}: empty ${split} split`);
    // The metrics file's folder is made (or found unwritable) before the evaluation, not after it.
    const listTag = ds.listFiles?.val ? `-${path.basename(ds.listFiles.val).replace(/\.[^.]*$/, '').replace(/[^\w.-]/g, '_')}` : '';
    const ensTag = checkpoints.length > 1 ? `-ensemble${checkpoints.length}` : '';
    file = opts.out === null ? null : opts.out ?? path.join(path.dirname(path.resolve(checkpoints[0])), `eval-${split}${ds.fold ? `-fold${ds.fold}` : ''}${listTag}${ensTag}.json`);
    if (file !== null) makeOutputFolder(path.dirname(path.resolve(file)));
    csvFile = opts.csv === null ? null : opts.csv ?? (file !== null ? file.replace(/\.json$/i, '') + '.csv' : null);
    if (csvFile !== null) makeOutputFolder(path.dirname(path.resolve(csvFile)));
    // Un-normalised images: each model of an ensemble normalises with its own statistics.
    loader = new DataLoader(ds, ids, {
      batchSize: opts.batch ?? 8, size: [meta.size, meta.size], channels: meta.channels, shuffle: false, augment: null,
      workers: opts.workers ?? 1, resizeMasks: opts.resizeMasks ?? false, classes,
    });
    for await (const b of loader.epoch(0)) {
      if (mcAcc) {
        // Argmax of the softmax probabilities (averaged over the TTA transforms and the ensemble's models).
        const shape: [number, number, number, number] = [b.size, b.channels, b.height, b.width];
        const hw = b.height * b.width;
        let labels = argmaxClasses(ensembleProbabilities(ens, b.images, shape, tta).data, b.size, classes, b.height, b.width);
        if (post) {
          const cleaned = new Uint8Array(labels.length);
          for (let k = 0; k < b.size; k++) cleaned.set(postprocessClasses(labels.subarray(k * hw, (k + 1) * hw), b.height, b.width, classes, post), k * hw);
          labels = cleaned;
        }
        mcAcc.add(labels, b.masks, b.size, b.height, b.width);
        mcIds.push(...b.ids);
        acc.add(labels, b.masks, b.size, b.height, b.width, b.ids);
        continue;
      }
      const scores = batchScores(ens, b.images, [b.size, b.channels, b.height, b.width], tta);
      // 0/1 masks go through the accumulator's logit threshold unchanged (1 > 0, 0 is not).
      acc.add(post ? postprocessBatch(scores, b.size, b.height, b.width, post) : scores, b.masks, b.size, b.height, b.width, b.ids);
    }
  } finally {
    await loader?.close();
    ens.dispose();
  }
  const summary = acc.summary();
  const classSummary = mcAcc ? mcAcc.summary() : null;
  if (file !== null) {
    const head = { checkpoint: path.resolve(checkpoints[0]), checkpoints: checkpoints.map((c) => path.resolve(c)), data: ds.root, fold: ds.fold ?? null, split, list: ds.listFiles?.[split] ?? null, model: meta.model, epoch: meta.epoch, size: meta.size };
    const body = classSummary
      // Per class (index = class, 0 = background) and the means over the foreground classes; 'foreground' scores any class against the background.
      ? { ...head, prediction: 'argmax of the softmax probabilities', tta, post: post ? formatPostSpec(post) : null, ...classSummary, foreground: summary }
      : { ...head, threshold: 0.5, tta, post: post ? formatPostSpec(post) : null, ...summary };
    writeFileAtomic(file, JSON.stringify(body, null, 1) + '\n');
  }
  if (csvFile !== null) writeFileAtomic(csvFile, mcAcc ? multiClassCsv(mcIds, mcAcc.records) : perCaseCsv(acc.records));
  return { split, count: summary.count, summary, meta, checkpoints, file, csvFile, post: post ? formatPostSpec(post) : '', tta, classes, classSummary };
}

/** A metrics table (global and per-image mean +- sample std) for the terminal. */
export function formatMetricsTable(s: MetricSummary): string {
  const rows: [string, string, string][] = [['metric', 'global', 'per-image mean +- std']];
  const sd = (v: number | undefined, digits: number): string => (v !== undefined && Number.isFinite(v) ? ` +- ${v.toFixed(digits)}` : '');
  for (const k of ['dice', 'iou', 'precision', 'recall', 'specificity', 'accuracy'] as const) rows.push([k, s.global[k].toFixed(4), s.perImage[k].toFixed(4) + sd(s.perImageStd?.[k], 4)]);
  if (Number.isFinite(s.perImage.hd95)) {
    rows.push(['hd95 (px)', '-', s.perImage.hd95.toFixed(2) + sd(s.perImageStd?.hd95, 2)]);
    rows.push(['assd (px)', s.global.assd.toFixed(2), s.perImage.assd.toFixed(2) + sd(s.perImageStd?.assd, 2)]);
    rows.push([`nsd@${s.nsdTolerance}px`, s.global.nsd.toFixed(4), s.perImage.nsd.toFixed(4) + sd(s.perImageStd?.nsd, 4)]);
  }
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((v, i) => (i === 0 ? v.padEnd(w[i]) : v.padStart(w[i]))).join('  ');
  return [line(rows[0]), w.map((n) => '-'.repeat(n)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/**
 * A per-class table: one row per class (0 = background) and the mean over the foreground classes:
 * Dice and IoU pooled and per-image mean, and when computed the per-image mean HD95, ASSD and NSD.
 */
export function formatClassTable(s: MultiClassSummary): string {
  const p = s.perImage;
  const surface = p.hd95 !== undefined && p.assd !== undefined && p.nsd !== undefined;
  const head = ['class', 'dice', 'dice per-image', 'iou', 'iou per-image'];
  const rows: string[][] = [surface ? [...head, 'hd95 px', 'assd px', 'nsd'] : head];
  const surf = (hd: number, as: number, ns: number) => (surface ? (Number.isFinite(hd) ? [hd.toFixed(2), as.toFixed(2), ns.toFixed(4)] : ['-', '-', '-']) : []);
  for (let c = 0; c < s.classes; c++) {
    rows.push([c === 0 ? '0 (background)' : String(c), s.global.dice[c].toFixed(4), p.dice[c].toFixed(4), s.global.iou[c].toFixed(4), p.iou[c].toFixed(4),
      ...(surface ? surf(p.hd95![c], p.assd![c], p.nsd![c]) : [])]);
  }
  rows.push([`mean (1..${s.classes - 1})`, s.global.meanDice.toFixed(4), p.meanDice.toFixed(4), s.global.meanIou.toFixed(4), p.meanIou.toFixed(4),
    ...(surface ? surf(p.meanHd95!, p.meanAssd!, p.meanNsd!) : [])]);
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((v, i) => (i === 0 ? v.padEnd(w[i]) : v.padStart(w[i]))).join('  ');
  return [line(rows[0]), w.map((n) => '-'.repeat(n)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export interface PredictOptions {
  /** A checkpoint, or several for an ensemble (see EvaluateOptions.checkpoint). */
  checkpoint: string | string[];
  input: string;
  out: string;
  /** Post-processing of each mask at the image's original size, e.g. 'lcc,fill' (see EvaluateOptions.post). */
  post?: string | PostSpec;
  /** Test-time augmentation (see EvaluateOptions.tta); the averaged probabilities are resized to the image's size, then thresholded. */
  tta?: TtaMode;
  /**
   * Sliding-window inference (src/train/sliding-window.ts): predict each image at its own
   * resolution in windows of this many pixels, blended with Gaussian weights, instead of resizing
   * it to the model's size. Unset: the whole image resized to the model's size and back.
   */
  window?: number;
  /** Overlap of the windows as a fraction of their side, in [0, 1) (default 0.5; needs window). */
  overlap?: number;
  /** The classes the checkpoint must segment (see EvaluateOptions.classes). */
  classes?: number;
}

/**
 * Writes `<out>/<id>.png` (0/255 mask at the input's size; with a multi-class checkpoint an 8-bit
 * class-index map 0..classes-1: the probabilities resized bilinearly to the input's size, then the
 * argmax) and `<out>/<id>_overlay.png` per image.
 */
export async function predict(opts: PredictOptions): Promise<{ count: number; files: string[] }> {
  const inDir = path.resolve(opts.input);
  if (!fs.existsSync(inDir) || !fs.statSync(inDir).isDirectory()) throw new UserError(`${opts.input}: input folder not found`);
  const names = fs.readdirSync(inDir).filter((n) => !n.startsWith('.') && IMAGE_EXTENSIONS.includes(path.extname(n).slice(1).toLowerCase())).sort();
  if (names.length === 0) throw new UserError(`${inDir}: no images (${IMAGE_EXTENSIONS.join('/')})`);
  const post = resolvePost(opts.post);
  const tta = resolveTta(opts.tta);
  if (opts.overlap !== undefined && opts.window === undefined) throw new UserError('--overlap needs --window (the overlap of the sliding windows)');
  let windowOpts: { window: number; overlap: number } | null = null;
  if (opts.window !== undefined) {
    try {
      windowOpts = checkWindowOptions({ window: opts.window, overlap: opts.overlap ?? 0.5 });
    } catch (e) {
      throw new UserError(`--window/--overlap: ${(e as Error).message}`);
    }
  }
  const checkpoints = resolveCheckpoints(opts.checkpoint);
  const ens = loadEnsemble(checkpoints);
  const meta = ens.meta;
  const files: string[] = [];
  try {
    if (meta.task !== 'segmentation') throw new UserError(`${checkpoints[0]}: an ${meta.task} checkpoint cannot predict masks`);
    const classes = checkClassesOption(opts.classes, meta, checkpoints[0]);
    const outDir = path.resolve(opts.out);
    makeOutputFolder(outDir);
    for (const name of names) {
      const id = name.slice(0, name.length - path.extname(name).length);
      const full = await readImage(path.join(inDir, name), { channels: meta.channels });
      const C = meta.channels, S = meta.size, n = S * S;
      const maskFile = path.join(outDir, `${id}.png`);
      const ovFile = path.join(outDir, `${id}_overlay.png`);
      if (classes >= 2) {
        // Probabilities [classes, H, W] at the image's size (blended windows, or resized bilinearly), then the argmax.
        let probs: Float32Array;
        if (windowOpts) {
          probs = slidingWindowProbabilities((t, shape) => ensembleProbabilities(ens, t, shape, tta), full.data, C, full.height, full.width, { ...windowOpts, batch: 4 }).data;
        } else {
          const x = resizeBilinear(full.data, C, full.height, full.width, S, S);
          probs = resizeBilinear(ensembleProbabilities(ens, x, [1, C, S, S], tta).data, classes, S, S, full.height, full.width);
        }
        let labels = argmaxClasses(probs, 1, classes, full.height, full.width);
        if (post) labels = postprocessClasses(labels, full.height, full.width, classes, post);
        await writeClassPng(maskFile, labels, full.width, full.height);
        await overlayClasses(full.data, C, full.height, full.width, labels).save(ovFile);
        files.push(maskFile, ovFile);
        continue;
      }
      let up: Float32Array;
      if (windowOpts) {
        // Windows at the image's resolution; each window's probabilities as below, blended.
        const blended = slidingWindowProbabilities((t, shape) => ensembleProbabilities(ens, t, shape, tta), full.data, C, full.height, full.width, { ...windowOpts, batch: 4 });
        up = blended.data.subarray(0, full.height * full.width);
      } else {
        const x = resizeBilinear(full.data, C, full.height, full.width, S, S);
        // Probabilities (averaged over the TTA transforms and the ensemble's models) back to the input's size (bilinear), then threshold 0.5.
        const prob = ensembleProbabilities(ens, x, [1, C, S, S], tta).data.subarray(0, n);
        up = resizeBilinear(prob, 1, S, S, full.height, full.width);
      }
      let mask: Uint8Array = new Uint8Array(up.length);
      for (let i = 0; i < up.length; i++) mask[i] = up[i] > 0.5 ? 1 : 0;
      if (post) mask = postprocessMask(mask, full.height, full.width, post);
      await writeMaskPng(maskFile, mask, full.width, full.height);
      await overlay(full.data, C, full.height, full.width, mask).save(ovFile);
      files.push(maskFile, ovFile);
    }
  } finally {
    ens.dispose();
  }
  return { count: names.length, files };
}
