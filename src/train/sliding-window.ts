/**
 * Sliding-window inference: an image is predicted at its own resolution in square windows of
 * `window` pixels that overlap by `overlap` of their side, and the windows' probabilities are
 * blended with Gaussian weights (sigma = window / 8, as nnU-Net does), so that each pixel is
 * decided mostly by the windows that see it near their centre, where a convolutional network has
 * the most context. The windows along an axis are spread evenly from edge to edge (the last one
 * flush with the border); an image smaller than the window along an axis is padded by repeating
 * its edge pixels and the padding is cut off again.
 */

export interface SlidingWindowOptions {
  /** Window side in pixels. */
  window: number;
  /** Overlap of neighbouring windows as a fraction of the side, in [0, 1) (default 0.5). */
  overlap?: number;
  /** Windows per model call (default 4). */
  batch?: number;
}

/** Probabilities [n, K, h, w] of a batch of NCHW windows (e.g. ensembleProbabilities). */
export type WindowProbabilities = (x: Float32Array, shape: [number, number, number, number]) => { data: Float32Array; channels: number };

/** Checks window and overlap; throws an Error naming the bad value. */
export function checkWindowOptions(opts: SlidingWindowOptions): { window: number; overlap: number; batch: number } {
  const { window, overlap = 0.5, batch = 4 } = opts;
  if (!(Number.isInteger(window) && window >= 1 && window <= 8192)) throw new Error(`window must be an integer from 1 to 8192 pixels, got ${window}`);
  if (!(typeof overlap === 'number' && overlap >= 0 && overlap < 1)) throw new Error(`overlap must be a fraction in [0, 1), got ${overlap}`);
  if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`window batch must be a positive integer, got ${batch}`);
  return { window, overlap, batch };
}

/**
 * Start offsets of the windows along an axis of `length` pixels: one window when it fits, else
 * enough for a step of at most window * (1 - overlap), spread evenly so the last ends at the border.
 */
export function windowPositions(length: number, window: number, overlap: number): number[] {
  if (length <= window) return [0];
  const maxStep = Math.max(1, Math.floor(window * (1 - overlap)));
  const n = Math.ceil((length - window) / maxStep) + 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.round((i * (length - window)) / (n - 1)));
  return out;
}

/** window x window Gaussian blending weights, sigma = window / 8 per axis, 1 at the centre. */
export function gaussianWeights(window: number): Float64Array {
  const sigma = window / 8;
  const c = (window - 1) / 2;
  const g = new Float64Array(window);
  for (let i = 0; i < window; i++) g[i] = Math.exp(-((i - c) * (i - c)) / (2 * sigma * sigma));
  const w = new Float64Array(window * window);
  for (let y = 0; y < window; y++) for (let x = 0; x < window; x++) w[y * window + x] = g[y] * g[x];
  return w;
}

/**
 * Blended probabilities [K, h, w] of a CHW image (c x h x w, values as the model's input before
 * any normalisation the probability function applies itself).
 */
export function slidingWindowProbabilities(probs: WindowProbabilities, image: Float32Array, c: number, h: number, w: number, opts: SlidingWindowOptions): { data: Float32Array; channels: number } {
  const { window: win, overlap, batch } = checkWindowOptions(opts);
  if (image.length !== c * h * w) throw new Error(`sliding window: ${image.length} values, expected ${c}x${h}x${w}`);
  const ph = Math.max(h, win), pw = Math.max(w, win);
  const ys = windowPositions(ph, win, overlap), xs = windowPositions(pw, win, overlap);
  const weights = gaussianWeights(win);
  const wsum = new Float64Array(ph * pw);
  let acc: Float64Array | null = null;
  let k = 0;
  const tiles: [number, number][] = [];
  for (const y of ys) for (const x of xs) tiles.push([y, x]);
  const tile = win * win;
  for (let t0 = 0; t0 < tiles.length; t0 += batch) {
    const group = tiles.slice(t0, t0 + batch);
    const x = new Float32Array(group.length * c * tile);
    group.forEach(([y0, x0], b) => {
      for (let ch = 0; ch < c; ch++) {
        const src = ch * h * w, dst = (b * c + ch) * tile;
        // Rows and columns past the image repeat its last row / column (edge padding).
        for (let yy = 0; yy < win; yy++) {
          const sy = Math.min(h - 1, y0 + yy);
          for (let xx = 0; xx < win; xx++) x[dst + yy * win + xx] = image[src + sy * w + Math.min(w - 1, x0 + xx)];
        }
      }
    });
    const p = probs(x, [group.length, c, win, win]);
    if (acc === null) {
      k = p.channels;
      acc = new Float64Array(k * ph * pw);
    }
    if (p.channels !== k || p.data.length !== group.length * k * tile) {
      throw new Error(`sliding window: the model gave ${p.data.length} values for ${group.length} windows of ${win}x${win}, expected ${group.length * k * tile}`);
    }
    group.forEach(([y0, x0], b) => {
      for (let yy = 0; yy < win; yy++) {
        for (let xx = 0; xx < win; xx++) {
          const wt = weights[yy * win + xx];
          const pix = (y0 + yy) * pw + x0 + xx;
          for (let ch = 0; ch < k; ch++) acc![ch * ph * pw + pix] += wt * p.data[(b * k + ch) * tile + yy * win + xx];
          wsum[pix] += wt;
        }
      }
    });
  }
  const out = new Float32Array(k * h * w);
  for (let ch = 0; ch < k; ch++) {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[(ch * h + y) * w + x] = acc![ch * ph * pw + y * pw + x] / wsum[y * pw + x];
  }
  return { data: out, channels: k };
}
