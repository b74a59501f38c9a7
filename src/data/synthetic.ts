/**
 * Built-in synthetic ultrasound-like segmentation dataset, so the toolkit can be
 * tried and tested without downloading anything.
 *
 * Each image is tissue texture with depth attenuation and speckle (the magnitude
 * of a smoothed complex Gaussian field, i.e. correlated Rayleigh noise, which is
 * what fully developed ultrasound speckle looks like) plus one lesion: an ellipse
 * whose radius is modulated by a few random harmonics (irregular border), usually
 * hypoechoic (dark) with posterior shadowing or enhancement, sometimes bright.
 * The mask is exactly the lesion region. Output is the flat layout
 * `<dir>/images/<id>.png` + `<dir>/masks/<id>.png` (0/255), deterministic for a seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng, mixSeed } from './augment';
import { writeClassPng, writePng } from './decode';

export interface SyntheticOptions {
  /** Number of images (default 96). */
  count?: number;
  /** Square side in pixels (default 128), or [height, width]. */
  size?: number | [number, number];
  seed?: number;
  /** Fraction of images with no lesion (empty mask), default 0. */
  emptyFraction?: number;
  /**
   * 1 (default): the binary set above, masks 0/255. N >= 2: a multi-class set whose masks are
   * class-index PNGs (0 = background): class 1 is the lesion above, classes 2..N-1 extra shapes
   * (see addClassShapes).
   */
  classes?: number;
}

export interface SyntheticSample {
  /** HW grey image 0..1. */
  image: Float32Array;
  /** HW 0/1. */
  mask: Uint8Array;
}

/** Separable box blur with clamped borders (radius r), used to give speckle a grain size. */
function boxBlur(src: Float32Array, h: number, w: number, r: number): Float32Array {
  if (r <= 0) return src;
  const tmp = new Float32Array(src.length);
  const out = new Float32Array(src.length);
  const norm = 1 / (2 * r + 1);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += src[y * w + Math.min(w - 1, Math.max(0, x + k))];
      tmp[y * w + x] = s * norm;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += tmp[Math.min(h - 1, Math.max(0, y + k)) * w + x];
      out[y * w + x] = s * norm;
    }
  }
  return out;
}

/** Render one sample; exported so tests and demos can get arrays without touching disk. */
export function renderSyntheticSample(h: number, w: number, rng: Rng, withLesion = true): SyntheticSample {
  const n = h * w;
  const scale = Math.min(h, w);

  // Lesion geometry in pixel units.
  const cx = w * rng.uniform(0.3, 0.7);
  const cy = h * rng.uniform(0.3, 0.65);
  const a = scale * rng.uniform(0.1, 0.24);
  const b = a * rng.uniform(0.5, 1.0);
  const theta = rng.uniform(0, Math.PI);
  const harmonics: { k: number; amp: number; phase: number }[] = [];
  const nh = 2 + rng.int(3);
  for (let i = 0; i < nh; i++) harmonics.push({ k: 2 + rng.int(6), amp: rng.uniform(0.03, 0.12), phase: rng.uniform(0, 2 * Math.PI) });
  const dark = rng.next() < 0.8;
  // Lesion echogenicity relative to the surrounding tissue, so depth attenuation never hides it.
  const lesionRatio = dark ? rng.uniform(0.2, 0.45) : rng.uniform(1.45, 1.8);
  const posterior = dark ? rng.uniform(-0.35, 0.3) : 0; // <0 shadowing, >0 enhancement
  const tissue = rng.uniform(0.35, 0.5);
  const attenuation = rng.uniform(0.2, 0.5);
  const grain = 1 + rng.int(2);

  // Speckle: |smoothed complex Gaussian|, normalised to mean ~1.
  const re = new Float32Array(n);
  const im = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    re[i] = rng.normal();
    im[i] = rng.normal();
  }
  const sre = boxBlur(re, h, w, grain);
  const sim = boxBlur(im, h, w, grain);
  const speckle = new Float32Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    // Square root mimics the log compression of B-mode display, which tames speckle contrast.
    speckle[i] = Math.sqrt(Math.hypot(sre[i], sim[i]));
    mean += speckle[i];
  }
  mean /= n;
  for (let i = 0; i < n; i++) speckle[i] /= mean;

  // Slow tissue layering so the background is not uniform.
  const bands = 1 + rng.int(3);
  const bandPhase = rng.uniform(0, 2 * Math.PI);
  const bandAmp = rng.uniform(0.05, 0.15);

  const image = new Float32Array(n);
  const mask = new Uint8Array(n);
  const cosT = Math.cos(theta);
  const sinT = Math.sin(theta);
  for (let y = 0; y < h; y++) {
    const depth = y / h;
    const layer = tissue * (1 - attenuation * depth) + bandAmp * Math.sin(2 * Math.PI * bands * depth + bandPhase);
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      let level = layer;
      if (withLesion) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        const u = (dx * cosT + dy * sinT) / a;
        const v = (-dx * sinT + dy * cosT) / b;
        const rho = Math.hypot(u, v);
        const phi = Math.atan2(v, u);
        let border = 1;
        for (const hm of harmonics) border += hm.amp * Math.sin(hm.k * phi + hm.phase);
        // Signed distance in units of the local radius; soft edge for the image, hard for the mask.
        const d = rho - border;
        const t = 1 / (1 + Math.exp(d * 12));
        level = level * (1 - t + lesionRatio * t);
        if (d < 0) mask[i] = 1;
        // Posterior acoustic effect: a column below the lesion, fading with distance.
        if (posterior !== 0 && y + 0.5 > cy && Math.abs(dx) < a * 0.9) {
          const fall = Math.exp(-(y + 0.5 - cy) / (scale * 0.5)) * (1 - t);
          level *= 1 + posterior * fall * (1 - Math.abs(dx) / (a * 0.9));
        }
      }
      const val = level * speckle[i];
      image[i] = val < 0 ? 0 : val > 1 ? 1 : val;
    }
  }
  return { image, mask };
}

/**
 * Adds one shape of each class 2..classes-1 to a rendered sample, in place (mask values become
 * class indices): even classes are bright disks, odd ones bright squares, each a little brighter
 * than the last, so shape and echogenicity tell the classes apart from the (usually dark,
 * irregular) class-1 lesion. A shape is placed where it does not touch what is already drawn
 * (a few seeded tries; after them it only takes background pixels), and keeps the speckle texture.
 */
export function addClassShapes(sample: SyntheticSample, h: number, w: number, classes: number, rng: Rng): SyntheticSample {
  const { image, mask } = sample;
  const scale = Math.min(h, w);
  for (let c = 2; c < classes; c++) {
    const r = scale * rng.uniform(0.08, 0.13);
    let cx = 0, cy = 0;
    for (let attempt = 0; attempt < 12; attempt++) {
      cx = rng.uniform(r + 1, w - r - 1);
      cy = rng.uniform(r + 1, h - r - 1);
      let clash = false;
      for (let y = Math.max(0, Math.floor(cy - r - 2)); y < Math.min(h, Math.ceil(cy + r + 2)) && !clash; y++) {
        for (let x = Math.max(0, Math.floor(cx - r - 2)); x < Math.min(w, Math.ceil(cx + r + 2)); x++) {
          if (mask[y * w + x]) { clash = true; break; }
        }
      }
      if (!clash) break;
    }
    const gain = 1.6 + 0.25 * (c - 2);
    const square = c % 2 === 1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        const inside = square ? Math.max(Math.abs(dx), Math.abs(dy)) < r * 0.85 : dx * dx + dy * dy < r * r;
        const i = y * w + x;
        if (!inside || mask[i]) continue;
        mask[i] = c;
        image[i] = Math.min(1, image[i] * gain + 0.05);
      }
    }
  }
  return sample;
}

/**
 * Write a synthetic dataset to `dir` (created if needed). Ids are `syn_0000`...;
 * returns them. Sample i depends only on (seed, i), so changing `count` keeps the
 * earlier samples identical.
 */
export async function generateSyntheticDataset(dir: string, opts: SyntheticOptions = {}): Promise<string[]> {
  const count = opts.count ?? 96;
  const [h, w] = typeof opts.size === 'number' || opts.size === undefined ? [opts.size ?? 128, opts.size ?? 128] : opts.size;
  const seed = opts.seed ?? 0;
  const emptyFraction = opts.emptyFraction ?? 0;
  const classes = opts.classes ?? 1;
  if (!(Number.isInteger(classes) && classes >= 1 && classes <= 256)) throw new Error(`generateSyntheticDataset: classes must be an integer from 1 to 256, got ${classes}`);
  if (!Number.isInteger(count) || count <= 0) throw new Error(`generateSyntheticDataset: count must be a positive integer, got ${count}`);
  if (!(h >= 16 && w >= 16)) throw new Error(`generateSyntheticDataset: size must be at least 16, got ${h}x${w}`);
  const imgDir = path.join(dir, 'images');
  const maskDir = path.join(dir, 'masks');
  await fs.promises.mkdir(imgDir, { recursive: true });
  await fs.promises.mkdir(maskDir, { recursive: true });
  const ids: string[] = [];
  const digits = Math.max(4, String(count - 1).length);
  // A few files in flight at a time: sharp encodes off the main thread.
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  for (let i = 0; i < count; i++) {
    const rng = new Rng(mixSeed(seed, i));
    const withLesion = rng.next() >= emptyFraction;
    const sample = renderSyntheticSample(h, w, rng, withLesion);
    // The extra shapes draw from the sample's rng after the lesion, so the binary samples are unchanged.
    const { image, mask } = classes >= 2 ? addClassShapes(sample, h, w, classes, rng) : sample;
    const id = `syn_${String(i).padStart(digits, '0')}`;
    ids.push(id);
    const m = new Uint8Array(mask.length);
    for (let k = 0; k < m.length; k++) m[k] = classes >= 2 ? mask[k] : mask[k] ? 255 : 0;
    const p: Promise<void> = Promise.all([
      writePng(path.join(imgDir, `${id}.png`), image, { width: w, height: h, channels: 1 }),
      // Class-index masks as grey label maps; the binary 0/255 masks as they always were.
      classes >= 2 ? writeClassPng(path.join(maskDir, `${id}.png`), m, w, h) : writePng(path.join(maskDir, `${id}.png`), m, { width: w, height: h, channels: 1 }),
    ]).then(
      () => void inFlight.delete(p),
      (e: unknown) => {
        // Recorded instead of rejecting so no write is left as an unhandled rejection.
        failure ??= e;
        inFlight.delete(p);
      },
    );
    inFlight.add(p);
    if (inFlight.size >= 8) await Promise.race(inFlight);
    if (failure !== undefined) break;
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  return ids;
}
