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
 * ASSD (average symmetric surface distance, pixels) and NSD (normalised surface Dice at a
 *   tolerance of `nsdTolerance` px, default 2), from the same boundary pixels and distances:
 *   ASSD = (sum of A->B distances + sum of B->A distances) / (|dA| + |dB|);
 *   NSD = (#A->B distances <= tol + #B->A distances <= tol) / (|dA| + |dB|).
 *   Both masks empty: ASSD 0, NSD 1. Exactly one empty: every boundary pixel of the other mask
 *   is at the image diagonal (so ASSD = the diagonal, NSD = 0), the same penalty as HD95.
 *   Global ASSD / NSD pool the boundary pixels of all images (those one-empty pixels included);
 *   HD95 has no pooled form here (a percentile over all images' boundaries would be dominated by
 *   the large lesions), so it is per image only.
 * Spread: `perImageStd` holds the sample standard deviation (n - 1) of each per-image metric.
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

export interface SurfaceMetrics {
  hd95: number;
  assd: number;
  nsd: number;
}

/** The per-image sums the global (pooled) ASSD and NSD are made of. */
export interface SurfaceSums {
  /** Boundary pixels of both masks. */
  surfacePixels: number;
  /** Sum of their distances to the other mask's boundary. */
  surfaceDistanceSum: number;
  /** How many of them are within the NSD tolerance. */
  surfaceWithinTolerance: number;
}

export interface ImageMetrics extends Confusion, RatioMetrics, SurfaceMetrics, SurfaceSums {
  /** The image's id when the caller gave one (MetricAccumulator.add's ids). */
  id?: string;
}

/** The per-image metrics that get a mean, a sample std and a CSV column. */
export const PER_IMAGE_METRICS = ['dice', 'iou', 'precision', 'recall', 'specificity', 'accuracy', 'hd95', 'assd', 'nsd'] as const;
export type PerImageMetric = (typeof PER_IMAGE_METRICS)[number];

export interface MetricSummary {
  /** Number of images added. */
  count: number;
  /** Means of per-image metrics (surface metrics included; NaN when they were not computed). */
  perImage: RatioMetrics & SurfaceMetrics & { hd95EmptyCases: number };
  /** Sample standard deviations (n - 1) of the per-image metrics (NaN for fewer than 2 images). */
  perImageStd: Record<PerImageMetric, number>;
  /** The NSD tolerance in pixels. */
  nsdTolerance: number;
  /** Metrics from confusion counts pooled over all pixels of all images; ASSD / NSD pooled over all boundary pixels. */
  global: RatioMetrics & Confusion & { assd: number; nsd: number };
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

export const DEFAULT_NSD_TOLERANCE = 2;

function checkTolerance(tol: number): number {
  if (typeof tol !== 'number' || !Number.isFinite(tol) || tol < 0) throw new Error(`NSD tolerance must be a finite number of pixels >= 0, got ${tol}`);
  return tol;
}

/**
 * HD95, ASSD and NSD between two 0/1 masks, with the sums the pooled ASSD / NSD use
 * (see module comment for the definitions and the empty-mask rules).
 */
export function surfaceMetrics(a: Uint8Array, b: Uint8Array, h: number, w: number, tolerance = DEFAULT_NSD_TOLERANCE): SurfaceMetrics & SurfaceSums {
  checkTolerance(tolerance);
  const ba = boundary(a, h, w);
  const bb = boundary(b, h, w);
  let na = 0, nb = 0;
  for (let i = 0; i < ba.length; i++) {
    na += ba[i];
    nb += bb[i];
  }
  if (na === 0 && nb === 0) return { hd95: 0, assd: 0, nsd: 1, surfacePixels: 0, surfaceDistanceSum: 0, surfaceWithinTolerance: 0 };
  if (na === 0 || nb === 0) {
    const diag = Math.hypot(h, w);
    return { hd95: diag, assd: diag, nsd: 0, surfacePixels: na + nb, surfaceDistanceSum: (na + nb) * diag, surfaceWithinTolerance: 0 };
  }
  let sum = 0, within = 0;
  const directed = (from: Uint8Array, to: Uint8Array): number => {
    const dt = squaredDistanceTransform(to, h, w);
    const ds: number[] = [];
    for (let i = 0; i < from.length; i++) {
      if (!from[i]) continue;
      const d = Math.sqrt(dt[i]);
      ds.push(d);
      sum += d;
      if (d <= tolerance) within++;
    }
    return percentile(ds, 95);
  };
  const hd = Math.max(directed(ba, bb), directed(bb, ba));
  return { hd95: hd, assd: sum / (na + nb), nsd: within / (na + nb), surfacePixels: na + nb, surfaceDistanceSum: sum, surfaceWithinTolerance: within };
}

/** Symmetric HD95 between two 0/1 masks (see module comment for definition and empty-mask rules). */
export function hd95(a: Uint8Array, b: Uint8Array, h: number, w: number): number {
  return surfaceMetrics(a, b, h, w).hd95;
}

/** Average symmetric surface distance in pixels (see module comment). */
export function assd(a: Uint8Array, b: Uint8Array, h: number, w: number): number {
  return surfaceMetrics(a, b, h, w).assd;
}

/** Normalised surface Dice at `tolerance` pixels (see module comment). */
export function nsd(a: Uint8Array, b: Uint8Array, h: number, w: number, tolerance = DEFAULT_NSD_TOLERANCE): number {
  return surfaceMetrics(a, b, h, w, tolerance).nsd;
}

const NO_SURFACE: SurfaceMetrics & SurfaceSums = { hd95: NaN, assd: NaN, nsd: NaN, surfacePixels: 0, surfaceDistanceSum: 0, surfaceWithinTolerance: 0 };

export function imageMetrics(pred: Uint8Array, target: Uint8Array, h: number, w: number, withSurface = true, tolerance = DEFAULT_NSD_TOLERANCE): ImageMetrics {
  const c = confusion(pred, target);
  return { ...c, ...ratiosFromConfusion(c), ...(withSurface ? surfaceMetrics(pred, target, h, w, tolerance) : NO_SURFACE) };
}

/** Sample standard deviation (n - 1); NaN for fewer than two values. */
export function sampleStd(values: number[]): number {
  const n = values.length;
  if (n < 2) return NaN;
  const m = values.reduce((a, b) => a + b, 0) / n;
  return Math.sqrt(values.reduce((a, v) => a + (v - m) * (v - m), 0) / (n - 1));
}

/** RFC 4180 field: quoted when it holds a comma, quote, CR/LF or leading/trailing space. */
function csvField(v: string): string {
  return /[",\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** One row per image: id, dice, iou, precision, recall, hd95, assd, nsd (empty cell for a metric not computed). */
export function perCaseCsv(records: readonly ImageMetrics[]): string {
  const cols = ['dice', 'iou', 'precision', 'recall', 'hd95', 'assd', 'nsd'] as const;
  const lines = [['id', ...cols].join(',')];
  records.forEach((r, i) => lines.push([csvField(r.id ?? String(i)), ...cols.map((c) => (Number.isFinite(r[c]) ? String(r[c]) : ''))].join(',')));
  return lines.join('\n') + '\n';
}

export interface MetricAccumulatorOptions {
  /** Predictions are logits (threshold 0) instead of probabilities (threshold 0.5). */
  logits?: boolean;
  /** Compute the surface metrics HD95, ASSD and NSD (the costliest ones); default true. */
  hd95?: boolean;
  /** NSD tolerance in pixels (default 2). */
  nsdTolerance?: number;
}

/**
 * Accumulates metrics over batches. `add(pred, target, n, h, w)` takes n images
 * laid out contiguously as [n, h, w] (i.e. [n, 1, h, w] tensors' data).
 */
export class MetricAccumulator {
  readonly records: ImageMetrics[] = [];
  private readonly logits: boolean;
  private readonly withHd95: boolean;
  readonly nsdTolerance: number;

  constructor(opts: MetricAccumulatorOptions = {}) {
    this.logits = opts.logits ?? false;
    this.withHd95 = opts.hd95 ?? true;
    this.nsdTolerance = checkTolerance(opts.nsdTolerance ?? DEFAULT_NSD_TOLERANCE);
  }

  /** `ids` (optional, one per image) name the records, e.g. for the per-case CSV. */
  add(pred: NumArray, target: NumArray, n: number, h: number, w: number, ids?: readonly string[]): ImageMetrics[] {
    if (ids !== undefined && ids.length !== n) throw new Error(`MetricAccumulator.add: ${ids.length} ids for ${n} images`);
    const hw = h * w;
    if (pred.length !== n * hw) throw new Error(`MetricAccumulator.add: pred has ${pred.length} values, expected ${n}x${h}x${w}`);
    if (target.length !== n * hw) throw new Error(`MetricAccumulator.add: target has ${target.length} values, expected ${n}x${h}x${w}`);
    const added: ImageMetrics[] = [];
    for (let k = 0; k < n; k++) {
      const p = binarize(pred, this.logits, k * hw, hw);
      const t = binarize(target, false, k * hw, hw);
      const m = imageMetrics(p, t, h, w, this.withHd95, this.nsdTolerance);
      if (ids !== undefined) m.id = ids[k];
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
    const sums = { iou: 0, dice: 0, precision: 0, recall: 0, specificity: 0, accuracy: 0, hd95: 0, assd: 0, nsd: 0 };
    let hd95EmptyCases = 0, surfacePixels = 0, surfaceDistanceSum = 0, surfaceWithinTolerance = 0;
    for (const r of this.records) {
      surfacePixels += r.surfacePixels;
      surfaceDistanceSum += r.surfaceDistanceSum;
      surfaceWithinTolerance += r.surfaceWithinTolerance;
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
        assd: this.withHd95 ? mean(sums.assd) : NaN,
        nsd: this.withHd95 ? mean(sums.nsd) : NaN,
        hd95EmptyCases,
      },
      perImageStd: Object.fromEntries(PER_IMAGE_METRICS.map((k) => [k, sampleStd(this.records.map((r) => r[k]))])) as Record<PerImageMetric, number>,
      nsdTolerance: this.nsdTolerance,
      global: {
        ...total, ...ratiosFromConfusion(total),
        // No boundary pixel anywhere (every image empty in both masks): perfect, as per image.
        assd: !this.withHd95 || n === 0 ? NaN : surfacePixels > 0 ? surfaceDistanceSum / surfacePixels : 0,
        nsd: !this.withHd95 || n === 0 ? NaN : surfacePixels > 0 ? surfaceWithinTolerance / surfacePixels : 1,
      },
    };
  }
}
