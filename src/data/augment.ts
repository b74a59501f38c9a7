/**
 * Seeded random numbers and paired image/mask augmentation.
 *
 * Everything here works on plain typed arrays: images are Float32Array in CHW
 * layout (values nominally 0..1 before normalisation), masks are single-channel
 * HW arrays (Uint8Array or Float32Array holding 0/1).
 */
import { Xoshiro128, rotl } from '../tensor/random';

/**
 * The data pipeline's generator: the engine's xoshiro128** core with no cached values (no spare
 * Box-Muller normal), so its whole state is four uint32 words that a checkpoint saves
 * (`getState`) and restores bit-exactly (`setState`).
 */
export class Rng extends Xoshiro128 {
  constructor(seed: number | string = 0) {
    super();
    this.seed(seed);
  }

  /** Re-seed from a number or a string (strings are hashed, so `new Rng('val')` works). */
  seed(seed: number | string): void {
    this.seedWord(typeof seed === 'string' ? hashString(seed) : (Math.floor(seed) >>> 0) ^ Math.floor(seed / 4294967296));
  }

  /** Uniform float in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!(n > 0)) throw new RangeError(`Rng.int: n must be positive, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  /** Standard normal via Box-Muller (uses two uniforms, keeps no spare so state stays 4 words). */
  normal(mean = 0, std = 1): number {
    const u1 = 1 - this.next(); // (0,1] so log is finite
    const u2 = this.next();
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** In-place Fisher-Yates shuffle; returns the array for chaining. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** JSON-serialisable snapshot of the generator state. */
  getState(): number[] {
    return this.words();
  }

  setState(state: readonly number[]): void {
    if (!Array.isArray(state) || state.length !== 4) throw new Error('Rng.setState: expected an array of 4 uint32 words');
    this.setWords(state);
  }

  clone(): Rng {
    const r = new Rng(0);
    r.setState(this.getState());
    return r;
  }
}


/** FNV-1a 32-bit hash; used to turn strings into seeds. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * Combine integers into one 32-bit seed. Used to derive independent streams such
 * as (loader seed, epoch, sample position) so that results do not depend on the
 * order in which workers finish.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x12345678;
  for (const p of parts) {
    let k = (Math.floor(p) >>> 0) ^ Math.floor(p / 4294967296);
    k = Math.imul(k, 0xcc9e2d51) >>> 0;
    k = rotl(k, 15);
    k = Math.imul(k, 0x1b873593) >>> 0;
    h ^= k;
    h = rotl(h, 13);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export type MaskArray = Uint8Array | Float32Array;

export interface AugmentOptions {
  /** Probability of a horizontal flip (mirror left-right). */
  hflip?: number;
  /** Probability of a vertical flip (upside down). */
  vflip?: number;
  /**
   * Probability of a rotation by a random multiple of 90 degrees. For non-square
   * images only 180 degrees is used, because 90/270 would swap height and width.
   */
  rot90?: number;
  /** Small rotation by a uniform angle in [-maxDeg, maxDeg], applied with probability p. */
  rotate?: { maxDeg: number; p?: number };
  /** Additive brightness jitter: image += U(-b, b) (image only, clamped to 0..1). */
  brightness?: number;
  /** Contrast jitter: image = (image - mean) * U(1-c, 1+c) + mean (image only, clamped to 0..1). */
  contrast?: number;
  /**
   * Gamma: image = clamp(image, 0, 1) ^ g with g uniform in [range[0], range[1]] (both > 0),
   * applied with probability p (default 1). g = 1 leaves the image exactly as it was.
   */
  gamma?: { range: [number, number]; p?: number };
  /**
   * CLAHE-like local contrast, simplified: per channel, the image (clamped to 0..1) is cut into a
   * tiles x tiles grid (default 8); each tile's 256-bin histogram is clipped at clipLimit times the
   * mean bin count (the excess spread evenly over all bins) and its cumulative distribution maps
   * the pixel values; each pixel blends the mappings of the four nearest tile centres bilinearly.
   * Unlike OpenCV's CLAHE it does not interpolate within bins or rescale the output range.
   * Applied with probability p (default 1).
   */
  clahe?: { clipLimit: number; tiles?: number; p?: number };
  /**
   * Elastic deformation: a random displacement field (uniform -1..1 per pixel and axis) smoothed
   * by a Gaussian of `sigma` px and scaled so its largest displacement is `alpha` px; the image
   * is resampled bilinearly, the mask with nearest neighbour, both at the same positions (zero
   * outside the image). Applied with probability p (default 1). alpha = 0 is the identity.
   */
  elastic?: { alpha: number; sigma: number; p?: number };
  /**
   * One combined affine transform about the image centre: scale uniform in scale[0..1]
   * (default [1, 1]), rotation uniform in [-rotate, rotate] degrees (default 0), shift uniform
   * in [-shift, shift] times the width / height on each axis (default 0). Image bilinear, mask
   * nearest at the same positions, zero outside the image. Applied with probability p (default 1).
   */
  affine?: { scale?: [number, number]; shift?: number; rotate?: number; p?: number };
  /** Per-channel normalisation applied last: (x - mean[c]) / std[c]. */
  normalize?: { mean: number[]; std: number[] };
}

/** Augmentations in the spirit of CMUNeXt's training pipeline (rot90 + flips) plus mild jitter. */
export const DEFAULT_AUGMENT: Readonly<AugmentOptions> = Object.freeze({
  hflip: 0.5,
  vflip: 0.5,
  rot90: 0.5,
  rotate: { maxDeg: 10, p: 0.3 },
  brightness: 0.1,
  contrast: 0.1,
});

/**
 * The 'strong' preset (`--augment strong`): flips and quarter turns, one affine transform
 * (scale 0.85..1.15, shift up to 6.25 %, rotation up to 15 degrees) half of the time, mild
 * elastic deformation, gamma 0.7..1.5, occasional CLAHE-like contrast and brightness/contrast jitter.
 */
export const STRONG_AUGMENT: Readonly<AugmentOptions> = Object.freeze<AugmentOptions>({
  hflip: 0.5,
  vflip: 0.5,
  rot90: 0.5,
  affine: { scale: [0.85, 1.15], shift: 0.0625, rotate: 15, p: 0.5 },
  elastic: { alpha: 4, sigma: 8, p: 0.2 },
  brightness: 0.1,
  contrast: 0.1,
  gamma: { range: [0.7, 1.5], p: 0.3 },
  clahe: { clipLimit: 2, tiles: 8, p: 0.2 },
});

export interface AugmentedPair<M extends MaskArray> {
  image: Float32Array;
  mask: M;
}

/**
 * Apply the same random geometric transform to an image (CHW, c channels) and its
 * mask (HW), then intensity jitter and normalisation to the image only.
 *
 * Inputs are not modified; new arrays are returned. Height and width never change
 * (rot90 on non-square images is restricted to 180 degrees), so batches keep their shape.
 * The number of random draws for a given `opts` is fixed, so a sample's result
 * depends only on the rng state it is given.
 */
export function augmentPair<M extends MaskArray>(
  img: Float32Array,
  mask: M,
  h: number,
  w: number,
  c: number,
  opts: AugmentOptions,
  rng: Rng,
): AugmentedPair<M> {
  if (img.length !== c * h * w) throw new Error(`augmentPair: image has ${img.length} values, expected ${c}x${h}x${w}`);
  if (mask.length !== h * w) throw new Error(`augmentPair: mask has ${mask.length} values, expected ${h}x${w}`);
  let image: Float32Array = Float32Array.from(img);
  let m = mask.slice() as M;

  // Flips and quarter turns are exact pixel permutations, so image and mask stay
  // pixel-for-pixel aligned; they are composed into one index remap.
  const doH = opts.hflip !== undefined && rng.next() < opts.hflip;
  const doV = opts.vflip !== undefined && rng.next() < opts.vflip;
  let quarter = 0;
  if (opts.rot90 !== undefined) {
    const apply = rng.next() < opts.rot90;
    const k = 1 + rng.int(3);
    if (apply) quarter = h === w ? k : 2;
  }
  if (doH || doV || quarter !== 0) {
    image = permute(image, h, w, c, doH, doV, quarter);
    m = permute(m, h, w, 1, doH, doV, quarter);
  }

  if (opts.rotate !== undefined) {
    const p = opts.rotate.p ?? 1;
    const apply = rng.next() < p;
    const deg = rng.uniform(-opts.rotate.maxDeg, opts.rotate.maxDeg);
    if (apply && deg !== 0) {
      image = rotateBilinear(image, h, w, c, deg);
      m = rotateNearest(m, h, w, deg);
    }
  }

  // The affine transform and the elastic deformation are composed into one set of source
  // positions, so the image is interpolated once and the mask's nearest pixels match it.
  let affine: AffineTransform | null = null;
  if (opts.affine !== undefined) {
    const a = opts.affine;
    const apply = rng.next() < (a.p ?? 1);
    const scale = a.scale ? rng.uniform(a.scale[0], a.scale[1]) : 1;
    const deg = a.rotate ? rng.uniform(-a.rotate, a.rotate) : 0;
    const tx = a.shift ? rng.uniform(-a.shift, a.shift) * w : 0;
    const ty = a.shift ? rng.uniform(-a.shift, a.shift) * h : 0;
    if (apply && (scale !== 1 || deg !== 0 || tx !== 0 || ty !== 0)) affine = { scale, rotate: deg, shiftX: tx, shiftY: ty };
  }
  let displaced: SampleCoords | null = null;
  if (opts.elastic !== undefined) {
    const e = opts.elastic;
    const apply = rng.next() < (e.p ?? 1);
    // The field is always drawn, so the number of draws does not depend on `apply`.
    const coords = elasticCoords(h, w, e.alpha, e.sigma, rng);
    if (apply && e.alpha > 0) displaced = coords;
  }
  if (affine || displaced) {
    // out(p) = affined(p + d(p)) = img(A^-1(p + d(p))).
    const coords = affine ? affineCoords(h, w, affine, displaced ?? undefined) : (displaced as SampleCoords);
    image = sampleBilinear(image, h, w, c, coords);
    m = sampleNearest(m, h, w, coords);
  }

  if (opts.brightness !== undefined || opts.contrast !== undefined) {
    const b = opts.brightness !== undefined ? rng.uniform(-opts.brightness, opts.brightness) : 0;
    const f = opts.contrast !== undefined ? rng.uniform(1 - opts.contrast, 1 + opts.contrast) : 1;
    const hw = h * w;
    for (let ch = 0; ch < c; ch++) {
      let mean = 0;
      for (let i = 0; i < hw; i++) mean += image[ch * hw + i];
      mean /= hw;
      for (let i = 0; i < hw; i++) {
        const v = (image[ch * hw + i] - mean) * f + mean + b;
        image[ch * hw + i] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }

  if (opts.gamma !== undefined) {
    const apply = rng.next() < (opts.gamma.p ?? 1);
    const g = rng.uniform(opts.gamma.range[0], opts.gamma.range[1]);
    if (apply && g !== 1) applyGamma(image, g);
  }

  if (opts.clahe !== undefined) {
    const apply = rng.next() < (opts.clahe.p ?? 1);
    if (apply) image = localContrast(image, h, w, c, opts.clahe.clipLimit, opts.clahe.tiles ?? 8);
  }

  if (opts.normalize) normalize(image, c, h, w, opts.normalize.mean, opts.normalize.std);
  return { image, mask: m };
}

/** Source positions (x, y interleaved) for each destination pixel, row-major. */
export type SampleCoords = Float64Array;

/* Affine conventions: rotate in degrees (the same sense as rotateBilinear), shifts in pixels
 * (+x right, +y down); each destination pixel reads from the inverse transform of its position. */
export interface AffineTransform {
  scale?: number;
  /** Degrees. */
  rotate?: number;
  /** Pixels. */
  shiftX?: number;
  shiftY?: number;
}

/**
 * Source positions of the affine transform `p' = R(rotate) * scale * (p - centre) + centre + shift`
 * for each destination pixel (or, with `at`, for the positions `at` instead of the pixel grid).
 */
export function affineCoords(h: number, w: number, t: AffineTransform, at?: SampleCoords): SampleCoords {
  const s = t.scale ?? 1;
  if (!(s > 0)) throw new Error(`affineCoords: scale must be > 0, got ${s}`);
  const a = ((t.rotate ?? 0) * Math.PI) / 180;
  const cos = Math.cos(a) / s, sin = Math.sin(a) / s;
  const cx = (w - 1) / 2 + (t.shiftX ?? 0), cy = (h - 1) / 2 + (t.shiftY ?? 0);
  const out = new Float64Array(2 * h * w);
  if (at !== undefined && at.length !== 2 * h * w) throw new Error(`affineCoords: ${at.length / 2} positions for ${h}x${w}`);
  for (let y = 0, k = 0; y < h; y++) {
    for (let x = 0; x < w; x++, k += 2) {
      const dx = (at ? at[k] : x) - cx, dy = (at ? at[k + 1] : y) - cy;
      out[k] = cos * dx + sin * dy + (w - 1) / 2;
      out[k + 1] = -sin * dx + cos * dy + (h - 1) / 2;
    }
  }
  return out;
}

/** In-place separable Gaussian blur of an h x w field (edge-clamped). */
function gaussianBlur(f: Float64Array, h: number, w: number, sigma: number): void {
  const r = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float64Array(2 * r + 1);
  let ks = 0;
  for (let i = -r; i <= r; i++) ks += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= ks;
  const tmp = new Float64Array(Math.max(h, w));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r] * f[y * w + Math.min(w - 1, Math.max(0, x + i))];
      tmp[x] = v;
    }
    for (let x = 0; x < w; x++) f[y * w + x] = tmp[x];
  }
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      let v = 0;
      for (let i = -r; i <= r; i++) v += k[i + r] * f[Math.min(h - 1, Math.max(0, y + i)) * w + x];
      tmp[y] = v;
    }
    for (let y = 0; y < h; y++) f[y * w + x] = tmp[y];
  }
}

/** Source positions of an elastic deformation (see AugmentOptions.elastic); draws 2*h*w uniforms. */
export function elasticCoords(h: number, w: number, alpha: number, sigma: number, rng: Rng): SampleCoords {
  const n = h * w;
  const dx = new Float64Array(n), dy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    dx[i] = rng.uniform(-1, 1);
    dy[i] = rng.uniform(-1, 1);
  }
  gaussianBlur(dx, h, w, sigma);
  gaussianBlur(dy, h, w, sigma);
  let peak = 0;
  for (let i = 0; i < n; i++) peak = Math.max(peak, Math.abs(dx[i]), Math.abs(dy[i]));
  const f = peak > 0 ? alpha / peak : 0;
  const out = new Float64Array(2 * n);
  for (let y = 0, i = 0; y < h; y++) {
    for (let x = 0; x < w; x++, i++) {
      out[2 * i] = x + f * dx[i];
      out[2 * i + 1] = y + f * dy[i];
    }
  }
  return out;
}

/** Bilinear resampling of a CHW image at `coords` (zero outside the image); integer positions copy the pixel exactly. */
export function sampleBilinear(src: Float32Array, h: number, w: number, c: number, coords: SampleCoords): Float32Array {
  const dst = new Float32Array(src.length);
  const hw = h * w;
  for (let di = 0; di < hw; di++) {
    const sx = coords[2 * di], sy = coords[2 * di + 1];
    const x0 = Math.floor(sx), y0 = Math.floor(sy);
    if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) continue;
    const fx = sx - x0, fy = sy - y0;
    const in00 = y0 >= 0 && x0 >= 0, in01 = y0 >= 0 && x0 + 1 < w && fx > 0, in10 = y0 + 1 < h && x0 >= 0 && fy > 0, in11 = y0 + 1 < h && x0 + 1 < w && fx > 0 && fy > 0;
    const w00 = in00 ? (1 - fy) * (1 - fx) : 0, w01 = in01 ? (1 - fy) * fx : 0, w10 = in10 ? fy * (1 - fx) : 0, w11 = in11 ? fy * fx : 0;
    const i00 = y0 * w + x0;
    for (let ch = 0, b = 0; ch < c; ch++, b += hw) {
      let v = 0;
      if (in00) v += w00 * src[b + i00];
      if (in01) v += w01 * src[b + i00 + 1];
      if (in10) v += w10 * src[b + i00 + w];
      if (in11) v += w11 * src[b + i00 + w + 1];
      dst[b + di] = v;
    }
  }
  return dst;
}

/** Nearest-neighbour resampling of an HW mask at `coords` (0 outside), so it stays binary and aligned with sampleBilinear's image. */
export function sampleNearest<M extends MaskArray>(src: M, h: number, w: number, coords: SampleCoords): M {
  const dst = new (src.constructor as { new (n: number): M })(src.length);
  for (let di = 0; di < h * w; di++) {
    const sx = Math.round(coords[2 * di]), sy = Math.round(coords[2 * di + 1]);
    if (sy >= 0 && sy < h && sx >= 0 && sx < w) dst[di] = src[sy * w + sx];
  }
  return dst;
}

/** In-place gamma on values clamped to 0..1. */
export function applyGamma(img: Float32Array, g: number): Float32Array {
  for (let i = 0; i < img.length; i++) {
    const v = img[i];
    img[i] = v <= 0 ? 0 : v >= 1 ? 1 : Math.pow(v, g);
  }
  return img;
}

/** Simplified CLAHE (see AugmentOptions.clahe); values clamped to 0..1; returns a new image. */
export function localContrast(src: Float32Array, h: number, w: number, c: number, clipLimit: number, tiles = 8): Float32Array {
  if (!(clipLimit > 0)) throw new Error(`clahe: clipLimit must be > 0, got ${clipLimit}`);
  const B = 256;
  const ty = Math.max(1, Math.min(Math.floor(tiles), h)), tx = Math.max(1, Math.min(Math.floor(tiles), w));
  const th = h / ty, tw = w / tx;
  const hw = h * w;
  const dst = new Float32Array(src.length);
  const bin = (v: number): number => (v <= 0 ? 0 : v >= 1 ? B - 1 : Math.min(B - 1, Math.floor(v * B)));
  const maps = new Float64Array(ty * tx * B);
  for (let ch = 0; ch < c; ch++) {
    const base = ch * hw;
    for (let iy = 0; iy < ty; iy++) {
      for (let ix = 0; ix < tx; ix++) {
        const hist = new Float64Array(B);
        const y0 = Math.floor(iy * th), y1 = Math.floor((iy + 1) * th), x0 = Math.floor(ix * tw), x1 = Math.floor((ix + 1) * tw);
        for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) hist[bin(src[base + y * w + x])]++;
        const n = (y1 - y0) * (x1 - x0);
        const clip = Math.max(1, (clipLimit * n) / B);
        let excess = 0;
        for (let b = 0; b < B; b++) if (hist[b] > clip) { excess += hist[b] - clip; hist[b] = clip; }
        const m = maps.subarray((iy * tx + ix) * B, (iy * tx + ix + 1) * B);
        let cdf = 0;
        for (let b = 0; b < B; b++) {
          cdf += hist[b] + excess / B;
          m[b] = cdf / n;
        }
      }
    }
    for (let y = 0; y < h; y++) {
      // Position in tile-centre units: tile i's centre is at (i + 0.5) * th - 0.5.
      const gy = Math.min(ty - 1, Math.max(0, (y + 0.5) / th - 0.5));
      const iy0 = Math.floor(gy), iy1 = Math.min(ty - 1, iy0 + 1), fy = gy - iy0;
      for (let x = 0; x < w; x++) {
        const gx = Math.min(tx - 1, Math.max(0, (x + 0.5) / tw - 0.5));
        const ix0 = Math.floor(gx), ix1 = Math.min(tx - 1, ix0 + 1), fx = gx - ix0;
        const b = bin(src[base + y * w + x]);
        const at = (iy: number, ix: number): number => maps[(iy * tx + ix) * B + b];
        const v = (1 - fy) * ((1 - fx) * at(iy0, ix0) + fx * at(iy0, ix1)) + fy * ((1 - fx) * at(iy1, ix0) + fx * at(iy1, ix1));
        dst[base + y * w + x] = v > 1 ? 1 : v;
      }
    }
  }
  return dst;
}

const isProb = (v: unknown): boolean => typeof v === 'number' && v >= 0 && v <= 1;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isRange = (v: unknown, min: number): v is [number, number] => Array.isArray(v) && v.length === 2 && isNum(v[0]) && isNum(v[1]) && v[0] > min && v[0] <= v[1];

/**
 * Checks AugmentOptions (unknown keys, probabilities in [0, 1], ranges, positive sizes) and throws an
 * Error naming the option and the value; returns the options unchanged.
 */
export function validateAugmentOptions(opts: unknown): AugmentOptions {
  if (!opts || typeof opts !== 'object' || Array.isArray(opts)) throw new Error(`augment options must be an object, got ${JSON.stringify(opts)}`);
  const o = opts as Record<string, unknown>;
  const known = ['hflip', 'vflip', 'rot90', 'rotate', 'brightness', 'contrast', 'gamma', 'clahe', 'elastic', 'affine', 'normalize'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new Error(`augment: unknown option '${k}' (known: ${known.join(', ')})`);
  const bad = (what: string, want: string, v: unknown): never => {
    throw new Error(`augment: ${what} must be ${want}, got ${JSON.stringify(v)}`);
  };
  const obj = (k: string, keys: string[]): Record<string, unknown> | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (!v || typeof v !== 'object' || Array.isArray(v)) bad(k, `an object with ${keys.join(', ')}`, v);
    for (const kk of Object.keys(v as object)) if (!keys.includes(kk)) throw new Error(`augment: unknown option '${k}.${kk}' (known: ${keys.join(', ')})`);
    const r = v as Record<string, unknown>;
    if (r.p !== undefined && !isProb(r.p)) bad(`${k}.p`, 'a probability in [0, 1]', r.p);
    return r;
  };
  for (const k of ['hflip', 'vflip', 'rot90'] as const) if (o[k] !== undefined && !isProb(o[k])) bad(k, 'a probability in [0, 1]', o[k]);
  if (o.brightness !== undefined && !(isNum(o.brightness) && o.brightness >= 0 && o.brightness <= 1)) bad('brightness', 'a number in [0, 1]', o.brightness);
  if (o.contrast !== undefined && !(isNum(o.contrast) && o.contrast >= 0 && o.contrast <= 1)) bad('contrast', 'a number in [0, 1]', o.contrast);
  const rot = obj('rotate', ['maxDeg', 'p']);
  if (rot && !(isNum(rot.maxDeg) && rot.maxDeg >= 0 && rot.maxDeg <= 180)) bad('rotate.maxDeg', 'a number of degrees in [0, 180]', rot.maxDeg);
  const gam = obj('gamma', ['range', 'p']);
  if (gam && !isRange(gam.range, 0)) bad('gamma.range', '[lo, hi] with 0 < lo <= hi', gam.range);
  const cl = obj('clahe', ['clipLimit', 'tiles', 'p']);
  if (cl && !(isNum(cl.clipLimit) && cl.clipLimit > 0)) bad('clahe.clipLimit', 'a number > 0 (times the mean bin count)', cl.clipLimit);
  if (cl && cl.tiles !== undefined && !(Number.isInteger(cl.tiles) && (cl.tiles as number) >= 1 && (cl.tiles as number) <= 64)) bad('clahe.tiles', 'an integer in [1, 64]', cl.tiles);
  const el = obj('elastic', ['alpha', 'sigma', 'p']);
  if (el && !(isNum(el.alpha) && el.alpha >= 0)) bad('elastic.alpha', 'a displacement in pixels >= 0', el.alpha);
  if (el && !(isNum(el.sigma) && el.sigma > 0 && el.sigma <= 64)) bad('elastic.sigma', 'a smoothing in pixels in (0, 64]', el.sigma);
  const af = obj('affine', ['scale', 'shift', 'rotate', 'p']);
  if (af && af.scale !== undefined && !isRange(af.scale, 0)) bad('affine.scale', '[lo, hi] with 0 < lo <= hi', af.scale);
  if (af && af.shift !== undefined && !(isNum(af.shift) && af.shift >= 0 && af.shift < 1)) bad('affine.shift', 'a fraction of the side in [0, 1)', af.shift);
  if (af && af.rotate !== undefined && !(isNum(af.rotate) && af.rotate >= 0 && af.rotate <= 180)) bad('affine.rotate', 'a number of degrees in [0, 180]', af.rotate);
  const nm = o.normalize as { mean?: unknown; std?: unknown } | undefined;
  if (nm !== undefined && !(nm && Array.isArray(nm.mean) && Array.isArray(nm.std) && nm.mean.every(isNum) && nm.std.every((s) => isNum(s) && s > 0))) bad('normalize', '{mean: number[], std: number[] > 0}', nm);
  return o as AugmentOptions;
}

/**
 * Remap by flips then `quarter` counter-clockwise quarter turns (shape preserved,
 * so quarter is 0 or 2 unless h === w).
 */
function permute<A extends Float32Array | Uint8Array>(
  src: A,
  h: number,
  w: number,
  c: number,
  hflip: boolean,
  vflip: boolean,
  quarter: number,
): A {
  const dst = new (src.constructor as { new (n: number): A })(src.length);
  const hw = h * w;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // Destination (y, x) reads from the source position obtained by undoing the
      // rotation then the flips.
      let sy = y;
      let sx = x;
      switch (quarter & 3) {
        case 1: { const t = sy; sy = sx; sx = w - 1 - t; break; }
        case 2: sy = h - 1 - sy; sx = w - 1 - sx; break;
        case 3: { const t = sy; sy = h - 1 - sx; sx = t; break; }
      }
      if (vflip) sy = h - 1 - sy;
      if (hflip) sx = w - 1 - sx;
      const si = sy * w + sx;
      const di = y * w + x;
      for (let ch = 0; ch < c; ch++) dst[ch * hw + di] = src[ch * hw + si];
    }
  }
  return dst;
}

/** Rotate about the image centre; samples outside the source read as 0 (black, like the ultrasound background). */
function rotateBilinear(src: Float32Array, h: number, w: number, c: number, deg: number): Float32Array {
  const dst = new Float32Array(src.length);
  const a = (deg * Math.PI) / 180;
  const cos = Math.cos(a);
  const sin = Math.sin(a);
  const cy = (h - 1) / 2;
  const cx = (w - 1) / 2;
  const hw = h * w;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const sx = cos * dx + sin * dy + cx;
      const sy = -sin * dx + cos * dy + cy;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) continue; // wholly outside: stays 0
      const fx = sx - x0;
      const fy = sy - y0;
      // Out-of-image neighbours get weight 0 (zero padding).
      const w00 = y0 >= 0 && x0 >= 0 ? (1 - fy) * (1 - fx) : 0;
      const w01 = y0 >= 0 && x0 + 1 < w ? (1 - fy) * fx : 0;
      const w10 = y0 + 1 < h && x0 >= 0 ? fy * (1 - fx) : 0;
      const w11 = y0 + 1 < h && x0 + 1 < w ? fy * fx : 0;
      const i00 = Math.max(0, y0) * w + Math.max(0, x0);
      const i01 = Math.max(0, y0) * w + Math.min(w - 1, x0 + 1);
      const i10 = Math.min(h - 1, y0 + 1) * w + Math.max(0, x0);
      const i11 = Math.min(h - 1, y0 + 1) * w + Math.min(w - 1, x0 + 1);
      const di = y * w + x;
      for (let ch = 0, base = 0; ch < c; ch++, base += hw) {
        dst[base + di] = w00 * src[base + i00] + w01 * src[base + i01] + w10 * src[base + i10] + w11 * src[base + i11];
      }
    }
  }
  return dst;
}

/** Same geometry as rotateBilinear but nearest-neighbour, so the mask stays binary. */
function rotateNearest<M extends MaskArray>(src: M, h: number, w: number, deg: number): M {
  const dst = new (src.constructor as { new (n: number): M })(src.length);
  const a = (deg * Math.PI) / 180;
  const cos = Math.cos(a);
  const sin = Math.sin(a);
  const cy = (h - 1) / 2;
  const cx = (w - 1) / 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const sx = Math.round(cos * dx + sin * dy + cx);
      const sy = Math.round(-sin * dx + cos * dy + cy);
      if (sy >= 0 && sy < h && sx >= 0 && sx < w) dst[y * w + x] = src[sy * w + sx];
    }
  }
  return dst;
}

/** In-place per-channel normalisation (x - mean[c]) / std[c]; a single mean/std entry applies to all channels. */
export function normalize(img: Float32Array, c: number, h: number, w: number, mean: readonly number[], std: readonly number[]): Float32Array {
  const hw = h * w;
  for (let ch = 0; ch < c; ch++) {
    const m = mean.length === 1 ? mean[0] : mean[ch];
    const s = std.length === 1 ? std[0] : std[ch];
    if (m === undefined || s === undefined || !(s > 0)) throw new Error(`normalize: need mean/std for channel ${ch} with std > 0`);
    const inv = 1 / s;
    for (let i = ch * hw, e = i + hw; i < e; i++) img[i] = (img[i] - m) * inv;
  }
  return img;
}

/** Per-channel mean and (population) standard deviation over a set of CHW images, e.g. to fill `normalize`. */
export function channelStats(images: Iterable<Float32Array>, c: number): { mean: number[]; std: number[] } {
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  let n = 0;
  for (const img of images) {
    const hw = img.length / c;
    for (let ch = 0; ch < c; ch++) {
      for (let i = ch * hw, e = i + hw; i < e; i++) {
        sum[ch] += img[i];
        sq[ch] += img[i] * img[i];
      }
    }
    n += hw;
  }
  if (n === 0) throw new Error('channelStats: no images');
  const mean = Array.from(sum, (s) => s / n);
  const std = Array.from(sq, (s, ch) => Math.sqrt(Math.max(0, s / n - mean[ch] * mean[ch])));
  return { mean, std };
}
