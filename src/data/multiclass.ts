/**
 * Multi-class segmentation helpers on plain arrays: class-index masks (0 = background,
 * 1..classes-1 = structures), their one-hot planes, and per-class Dice / IoU.
 *
 * Conventions as in metrics.ts: a ratio with a zero denominator (the class absent from both the
 * prediction and the target of an image) is 1 for that image; global values pool the counts of
 * all images. The mean over classes leaves out the background (class 0). The optional surface
 * metrics (HD95, ASSD, NSD per foreground class, per image) follow metrics.ts's empty-mask rules
 * (absent from both: 0 px / NSD 1; from one: the image diagonal / NSD 0); the background's entry is NaN.
 */

import { PostSpec, postprocessMask } from './postprocess';
import { DEFAULT_NSD_TOLERANCE, surfaceMetrics } from './metrics';

type NumArray = ArrayLike<number>;

function checkClasses(classes: number, what: string): void {
  if (!(Number.isInteger(classes) && classes >= 2 && classes <= 256)) throw new Error(`${what}: classes must be an integer in [2, 256], got ${classes}`);
}

/** [n, h, w] class indices -> [n, classes, h, w] 0/1 planes; an index outside 0..classes-1 is an error naming it. */
export function oneHot(indices: NumArray, n: number, classes: number, h: number, w: number): Float32Array {
  checkClasses(classes, 'oneHot');
  const hw = h * w;
  if (indices.length !== n * hw) throw new Error(`oneHot: ${indices.length} indices, expected ${n}x${h}x${w}`);
  const out = new Float32Array(n * classes * hw);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < hw; i++) {
      const c = indices[k * hw + i];
      if (!(Number.isInteger(c) && c >= 0 && c < classes)) throw new Error(`oneHot: image ${k} pixel ${i} has class ${c}, expected an integer in 0..${classes - 1}`);
      out[(k * classes + c) * hw + i] = 1;
    }
  }
  return out;
}

/** [n, classes, h, w] scores (logits or probabilities) -> [n, h, w] class indices (argmax; ties to the lower class). */
export function argmaxClasses(scores: NumArray, n: number, classes: number, h: number, w: number): Uint8Array {
  checkClasses(classes, 'argmaxClasses');
  const hw = h * w;
  if (scores.length !== n * classes * hw) throw new Error(`argmaxClasses: ${scores.length} scores, expected ${n}x${classes}x${h}x${w}`);
  const out = new Uint8Array(n * hw);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < hw; i++) {
      let best = 0, bv = scores[k * classes * hw + i];
      for (let c = 1; c < classes; c++) {
        const v = scores[(k * classes + c) * hw + i];
        if (v > bv) { bv = v; best = c; }
      }
      out[k * hw + i] = best;
    }
  }
  return out;
}

export interface ClassMetrics {
  /** Per class 0..classes-1. */
  dice: number[];
  iou: number[];
  /** Mean over the foreground classes 1..classes-1. */
  meanDice: number;
  meanIou: number;
  /** With the surface option (per image and the per-image means only; NaN for the background 0). */
  hd95?: number[];
  assd?: number[];
  nsd?: number[];
  meanHd95?: number;
  meanAssd?: number;
  meanNsd?: number;
}

export interface MultiClassSummary {
  count: number;
  classes: number;
  /** Means over images of each class's per-image Dice / IoU. */
  perImage: ClassMetrics;
  /** From the counts pooled over all images. */
  global: ClassMetrics;
}

const ratio = (num: number, den: number): number => (den > 0 ? num / den : 1);
/** Mean over the foreground classes 1..n-1. */
const fgMean = (a: number[]): number => a.slice(1).reduce((s, v) => s + v, 0) / (a.length - 1);

function classMetrics(tp: number[], fp: number[], fn: number[]): ClassMetrics {
  const dice = tp.map((t, c) => ratio(2 * t, 2 * t + fp[c] + fn[c]));
  const iou = tp.map((t, c) => ratio(t, t + fp[c] + fn[c]));
  const fg = (a: number[]) => a.slice(1).reduce((s, v) => s + v, 0) / (a.length - 1);
  return { dice, iou, meanDice: fg(dice), meanIou: fg(iou) };
}

/** Accumulates per-class Dice / IoU over batches of [n, h, w] predicted and target class indices. */
export class MultiClassMetricAccumulator {
  readonly records: ClassMetrics[] = [];
  private readonly tp: number[];
  private readonly fp: number[];
  private readonly fn: number[];
  /** Per-class HD95 / ASSD / NSD per image (the costliest part: two distance transforms per class and image). */
  readonly surface: boolean;
  readonly nsdTolerance: number;

  constructor(readonly classes: number, opts: { surface?: boolean; nsdTolerance?: number } = {}) {
    checkClasses(classes, 'MultiClassMetricAccumulator');
    this.surface = opts.surface ?? false;
    this.nsdTolerance = opts.nsdTolerance ?? DEFAULT_NSD_TOLERANCE;
    this.tp = new Array(classes).fill(0);
    this.fp = new Array(classes).fill(0);
    this.fn = new Array(classes).fill(0);
  }

  add(pred: NumArray, target: NumArray, n: number, h: number, w: number): ClassMetrics[] {
    const hw = h * w, C = this.classes;
    if (pred.length !== n * hw) throw new Error(`MultiClassMetricAccumulator.add: pred has ${pred.length} values, expected ${n}x${h}x${w}`);
    if (target.length !== n * hw) throw new Error(`MultiClassMetricAccumulator.add: target has ${target.length} values, expected ${n}x${h}x${w}`);
    const added: ClassMetrics[] = [];
    for (let k = 0; k < n; k++) {
      const tp = new Array(C).fill(0), fp = new Array(C).fill(0), fn = new Array(C).fill(0);
      for (let i = k * hw; i < (k + 1) * hw; i++) {
        const p = pred[i], t = target[i];
        for (const [v, what] of [[p, 'pred'], [t, 'target']] as const) {
          if (!(Number.isInteger(v) && v >= 0 && v < C)) throw new Error(`MultiClassMetricAccumulator.add: ${what} of image ${k} pixel ${i - k * hw} is ${v}, expected a class in 0..${C - 1}`);
        }
        if (p === t) tp[p]++;
        else {
          fp[p]++;
          fn[t]++;
        }
      }
      for (let c = 0; c < C; c++) {
        this.tp[c] += tp[c];
        this.fp[c] += fp[c];
        this.fn[c] += fn[c];
      }
      const m = classMetrics(tp, fp, fn);
      if (this.surface) {
        const hd = [NaN], as = [NaN], ns = [NaN];
        for (let c = 1; c < C; c++) {
          const pm = new Uint8Array(hw), tm = new Uint8Array(hw);
          for (let i = 0; i < hw; i++) {
            pm[i] = pred[k * hw + i] === c ? 1 : 0;
            tm[i] = target[k * hw + i] === c ? 1 : 0;
          }
          const sm = surfaceMetrics(pm, tm, h, w, this.nsdTolerance);
          hd.push(sm.hd95);
          as.push(sm.assd);
          ns.push(sm.nsd);
        }
        Object.assign(m, { hd95: hd, assd: as, nsd: ns, meanHd95: fgMean(hd), meanAssd: fgMean(as), meanNsd: fgMean(ns) });
      }
      this.records.push(m);
      added.push(m);
    }
    return added;
  }

  summary(): MultiClassSummary {
    const n = this.records.length, C = this.classes;
    const avg = (get: (r: ClassMetrics) => number[]) => Array.from({ length: C }, (_, c) => (n ? this.records.reduce((s, r) => s + get(r)[c], 0) / n : NaN));
    const dice = avg((r) => r.dice), iou = avg((r) => r.iou);
    const perImage: ClassMetrics = { dice, iou, meanDice: fgMean(dice), meanIou: fgMean(iou) };
    if (this.surface) {
      const hd95 = avg((r) => r.hd95!), assd = avg((r) => r.assd!), nsd = avg((r) => r.nsd!);
      Object.assign(perImage, { hd95, assd, nsd, meanHd95: fgMean(hd95), meanAssd: fgMean(assd), meanNsd: fgMean(nsd) });
    }
    return { count: n, classes: C, perImage, global: classMetrics(this.tp, this.fp, this.fn) };
  }
}

/**
 * Flat metric names of a summary, as the training logs, cv.json and the validation lines use them:
 * dice / iou = the pooled mean over the foreground classes (the headline, used to select the best
 * checkpoint), dice_img / iou_img = the per-image means over the foreground classes, and per class c
 * (background 0 included) dice_c<c>, iou_c<c> (pooled) and dice_img_c<c>, iou_img_c<c>. With surface
 * metrics: hd95_img, assd_img, nsd_img (foreground means) and hd95_img_c<c> etc. per foreground class.
 */
export function multiClassRecord(s: MultiClassSummary): Record<string, number> {
  const r: Record<string, number> = { dice: s.global.meanDice, iou: s.global.meanIou, dice_img: s.perImage.meanDice, iou_img: s.perImage.meanIou };
  for (let c = 0; c < s.classes; c++) {
    r[`dice_c${c}`] = s.global.dice[c];
    r[`iou_c${c}`] = s.global.iou[c];
    r[`dice_img_c${c}`] = s.perImage.dice[c];
    r[`iou_img_c${c}`] = s.perImage.iou[c];
  }
  const p = s.perImage;
  if (p.hd95 && p.assd && p.nsd) {
    Object.assign(r, { hd95_img: p.meanHd95, assd_img: p.meanAssd, nsd_img: p.meanNsd });
    for (let c = 1; c < s.classes; c++) Object.assign(r, { [`hd95_img_c${c}`]: p.hd95[c], [`assd_img_c${c}`]: p.assd[c], [`nsd_img_c${c}`]: p.nsd[c] });
  }
  return r;
}

const csvId = (v: string): string => (/[",\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/**
 * One row per image: id, mean_dice, mean_iou (foreground classes), then dice_c<c> and iou_c<c> per
 * class; with surface metrics also mean_hd95, mean_assd, mean_nsd and hd95_c<c>, assd_c<c>,
 * nsd_c<c> per foreground class.
 */
export function multiClassCsv(ids: readonly string[], records: readonly ClassMetrics[]): string {
  if (ids.length !== records.length) throw new Error(`multiClassCsv: ${ids.length} ids for ${records.length} records`);
  const C = records[0]?.dice.length ?? 0;
  const surface = records.length > 0 && records.every((r) => r.hd95 && r.assd && r.nsd);
  const cols = ['id', 'mean_dice', 'mean_iou', ...(surface ? ['mean_hd95', 'mean_assd', 'mean_nsd'] : [])];
  for (const m of ['dice', 'iou']) for (let c = 0; c < C; c++) cols.push(`${m}_c${c}`);
  if (surface) for (const m of ['hd95', 'assd', 'nsd']) for (let c = 1; c < C; c++) cols.push(`${m}_c${c}`);
  const lines = [cols.join(',')];
  records.forEach((r, i) => {
    const row: (string | number)[] = [csvId(ids[i]), r.meanDice, r.meanIou];
    if (surface) row.push(r.meanHd95!, r.meanAssd!, r.meanNsd!);
    row.push(...r.dice, ...r.iou);
    if (surface) row.push(...r.hd95!.slice(1), ...r.assd!.slice(1), ...r.nsd!.slice(1));
    lines.push(row.map(String).join(','));
  });
  return lines.join('\n') + '\n';
}

/**
 * Post-processing of a class-index map, one foreground class at a time (1, 2, ...): the steps run
 * on the class's binary mask; pixels a step removes (lcc, min-area) become background, and a
 * filled hole only takes background pixels, so a class nested inside another is never overwritten.
 */
export function postprocessClasses(labels: NumArray, h: number, w: number, classes: number, steps: PostSpec): Uint8Array {
  checkClasses(classes, 'postprocessClasses');
  const n = h * w;
  if (labels.length !== n) throw new Error(`postprocessClasses: ${labels.length} labels, expected ${h}x${w}`);
  const out = Uint8Array.from(labels);
  for (let c = 1; c < classes; c++) {
    const bin = new Uint8Array(n);
    let any = false;
    for (let i = 0; i < n; i++) if (out[i] === c) { bin[i] = 1; any = true; }
    if (!any) continue;
    const kept = postprocessMask(bin, h, w, steps);
    for (let i = 0; i < n; i++) {
      if (bin[i] && !kept[i]) out[i] = 0;
      else if (!bin[i] && kept[i] && out[i] === 0) out[i] = c;
    }
  }
  return out;
}
