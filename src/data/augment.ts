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

  if (opts.normalize) normalize(image, c, h, w, opts.normalize.mean, opts.normalize.std);
  return { image, mask: m };
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
