/**
 * Binary segmentation metrics.
 *
 * Thresholding: a prediction pixel is foreground when its probability is > 0.5,
 * or, with `logits: true`, when its logit is > 0 (the same decision, since
 * sigmoid(0) = 0.5). Target pixels are foreground when > 0.5 (0/1 masks).
 *
 * Conventions for undefined ratios (zero denominator), per image and global:
 *   the value is 1 when the prediction is perfect for that image (fp = fn = 0),
 *   otherwise 0. E.g. empty target + empty prediction: IoU = Dice = precision =
 *   recall = 1; empty target + some false positives: recall (tp+fn = 0) = 0 and
 *   IoU = Dice = 0; non-empty target + empty prediction: precision = 0.
 * HD95 (per image only, in pixels):
 *   boundary pixels are foreground pixels with a 4-neighbour that is background or
 *   outside the image; for each boundary pixel of one mask, the Euclidean distance
 *   to the nearest boundary pixel of the other (pixel centres); HD95 is the larger
 *   of the two directed 95th percentiles (percentile with linear interpolation, as
 *   numpy's default; this is MONAI's symmetric definition).
 *   Both masks empty: 0. Exactly one empty: the image diagonal sqrt(h^2 + w^2), the
 *   largest possible distance, so missed or hallucinated lesions are penalised rather
 *   than silently dropped from the mean; `hd95EmptyCases` counts these images.
 */

export interface Confusion {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

export interface RatioMetrics {
  iou: number;
  dice: number;
  precision: number;
  recall: number;
  specificity: number;
  accuracy: number;
}

export interface ImageMetrics extends Confusion, RatioMetrics {
  hd95: number;
}

export interface MetricSummary {
  /** Number of images added. */
  count: number;
  /** Means of per-image metrics (hd95 included). */
  perImage: RatioMetrics & { hd95: number; hd95EmptyCases: number };
  /** Metrics from confusion counts pooled over all pixels of all images. */
  global: RatioMetrics & Confusion;
}

type NumArray = ArrayLike<number>;

/** 1 for a perfect image, 0 otherwise, when num/den is undefined (see module comment). */
function ratio(num: number, den: number, perfect: boolean): number {
  return den > 0 ? num / den : perfect ? 1 : 0;
}

export function ratiosFromConfusion(c: Confusion): RatioMetrics {
  const perfect = c.fp === 0 && c.fn === 0;
  return {
    iou: ratio(c.tp, c.tp + c.fp + c.fn, perfect),
    dice: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, perfect),
    precision: ratio(c.tp, c.tp + c.fp, perfect),
    recall: ratio(c.tp, c.tp + c.fn, perfect),
    specificity: ratio(c.tn, c.tn + c.fp, perfect),
    accuracy: ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn, perfect),
  };
}

/** Binarise predictions (probabilities, or logits when `logits`) into a 0/1 array. */
export function binarize(pred: NumArray, logits = false, offset = 0, length = pred.length - offset): Uint8Array {
  const out = new Uint8Array(length);
  const t = logits ? 0 : 0.5;
  for (let i = 0; i < length; i++) out[i] = pred[offset + i] > t ? 1 : 0;
  return out;
}

export function confusion(pred: Uint8Array, target: Uint8Array): Confusion {
  let tp = 0, fp = 0, fn = 0, tn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i]) {
      if (target[i]) tp++;
      else fp++;
    } else if (target[i]) fn++;
    else tn++;
  }
  return { tp, fp, fn, tn };
}

/** Foreground pixels with a background (or out-of-image) 4-neighbour. */
export function boundary(mask: Uint8Array, h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      if (y === 0 || x === 0 || y === h - 1 || x === w - 1 || !mask[i - w] || !mask[i + w] || !mask[i - 1] || !mask[i + 1]) out[i] = 1;
    }
  }
  return out;
}

/** 1-D squared-distance transform (lower envelope of parabolas, Felzenszwalb & Huttenlocher). */
function dt1d(f: Float64Array, n: number, d: Float64Array, v: Int32Array, z: Float64Array): void {
  let k = 0;
  v[0] = 0;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = 1; q < n; q++) {
    if (f[q] === Infinity) continue;
    if (f[v[k]] === Infinity) {
      // No finite parabola yet: q becomes the first one.
      v[k] = q;
      continue;
    }
    let s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    while (s <= z[k]) {
      k--;
      s = (f[q] + q * q - (f[v[k]] + v[k] * v[k])) / (2 * q - 2 * v[k]);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1] < q) k++;
    const dq = q - v[k];
    d[q] = f[v[k]] === Infinity ? Infinity : dq * dq + f[v[k]];
  }
}

/** Exact squared Euclidean distance from every pixel to the nearest set pixel of `seeds`. */
export function squaredDistanceTransform(seeds: Uint8Array, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = seeds[i] ? 0 : Infinity;
  const n = Math.max(h, w);
  const f = new Float64Array(n);
  const d = new Float64Array(n);
  const v = new Int32Array(n);
  const z = new Float64Array(n + 1);
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) f[y] = out[y * w + x];
    dt1d(f, h, d, v, z);
    for (let y = 0; y < h; y++) out[y * w + x] = d[y];
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) f[x] = out[y * w + x];
    dt1d(f, w, d, v, z);
    for (let x = 0; x < w; x++) out[y * w + x] = d[x];
  }
  return out;
}

/** Percentile with linear interpolation between order statistics (numpy's default). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Symmetric HD95 between two 0/1 masks (see module comment for definition and empty-mask rules). */
export function hd95(a: Uint8Array, b: Uint8Array, h: number, w: number): number {
  const ba = boundary(a, h, w);
  const bb = boundary(b, h, w);
  let na = 0, nb = 0;
  for (let i = 0; i < ba.length; i++) {
    na += ba[i];
    nb += bb[i];
  }
  if (na === 0 && nb === 0) return 0;
  if (na === 0 || nb === 0) return Math.hypot(h, w);
  const directed = (from: Uint8Array, to: Uint8Array): number => {
    const dt = squaredDistanceTransform(to, h, w);
    const ds: number[] = [];
    for (let i = 0; i < from.length; i++) if (from[i]) ds.push(Math.sqrt(dt[i]));
    return percentile(ds, 95);
  };
  return Math.max(directed(ba, bb), directed(bb, ba));
}

export function imageMetrics(pred: Uint8Array, target: Uint8Array, h: number, w: number, withHd95 = true): ImageMetrics {
  const c = confusion(pred, target);
  return { ...c, ...ratiosFromConfusion(c), hd95: withHd95 ? hd95(pred, target, h, w) : NaN };
}

export interface MetricAccumulatorOptions {
  /** Predictions are logits (threshold 0) instead of probabilities (threshold 0.5). */
  logits?: boolean;
  /** Compute HD95 (the costliest metric); default true. */
  hd95?: boolean;
}

/**
 * Accumulates metrics over batches. `add(pred, target, n, h, w)` takes n images
 * laid out contiguously as [n, h, w] (i.e. [n, 1, h, w] tensors' data).
 */
export class MetricAccumulator {
  readonly records: ImageMetrics[] = [];
  private readonly logits: boolean;
  private readonly withHd95: boolean;

  constructor(opts: MetricAccumulatorOptions = {}) {
    this.logits = opts.logits ?? false;
    this.withHd95 = opts.hd95 ?? true;
  }

  add(pred: NumArray, target: NumArray, n: number, h: number, w: number): ImageMetrics[] {
    const hw = h * w;
    if (pred.length !== n * hw) throw new Error(`MetricAccumulator.add: pred has ${pred.length} values, expected ${n}x${h}x${w}`);
    if (target.length !== n * hw) throw new Error(`MetricAccumulator.add: target has ${target.length} values, expected ${n}x${h}x${w}`);
    const added: ImageMetrics[] = [];
    for (let k = 0; k < n; k++) {
      const p = binarize(pred, this.logits, k * hw, hw);
      const t = binarize(target, false, k * hw, hw);
      const m = imageMetrics(p, t, h, w, this.withHd95);
      this.records.push(m);
      added.push(m);
    }
    return added;
  }

  reset(): void {
    this.records.length = 0;
  }

  get count(): number {
    return this.records.length;
  }

  summary(): MetricSummary {
    const n = this.records.length;
    const total: Confusion = { tp: 0, fp: 0, fn: 0, tn: 0 };
    const sums = { iou: 0, dice: 0, precision: 0, recall: 0, specificity: 0, accuracy: 0, hd95: 0 };
    let hd95EmptyCases = 0;
    for (const r of this.records) {
      total.tp += r.tp;
      total.fp += r.fp;
      total.fn += r.fn;
      total.tn += r.tn;
      for (const k of Object.keys(sums) as (keyof typeof sums)[]) sums[k] += r[k];
      if ((r.tp + r.fp === 0) !== (r.tp + r.fn === 0)) hd95EmptyCases++;
    }
    const mean = (v: number): number => (n > 0 ? v / n : NaN);
    return {
      count: n,
      perImage: {
        iou: mean(sums.iou),
        dice: mean(sums.dice),
        precision: mean(sums.precision),
        recall: mean(sums.recall),
        specificity: mean(sums.specificity),
        accuracy: mean(sums.accuracy),
        hd95: this.withHd95 ? mean(sums.hd95) : NaN,
        hd95EmptyCases,
      },
      global: { ...total, ...ratiosFromConfusion(total) },
    };
  }
}
