/**
 * A tiny rasteriser for training curves and prediction overlays: an RGB canvas (CHW float 0..1),
 * lines with Bresenham's algorithm, a 3x5 bitmap font for labels, written with writePng.
 */
import { writePng } from '../data';

export type RGB = [number, number, number];

export class Canvas {
  readonly data: Float32Array;
  constructor(readonly width: number, readonly height: number, bg: RGB = [1, 1, 1]) {
    this.data = new Float32Array(3 * width * height);
    for (let c = 0; c < 3; c++) this.data.fill(bg[c], c * width * height, (c + 1) * width * height);
  }
  set(x: number, y: number, col: RGB, alpha = 1): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const n = this.width * this.height;
    const i = y * this.width + x;
    for (let c = 0; c < 3; c++) this.data[c * n + i] = alpha * col[c] + (1 - alpha) * this.data[c * n + i];
  }
  line(x0: number, y0: number, x1: number, y1: number, col: RGB, thick = 1): void {
    x0 = Math.round(x0); y0 = Math.round(y0); x1 = Math.round(x1); y1 = Math.round(y1);
    const dx = Math.abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const dy = -Math.abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    for (;;) {
      for (let a = 0; a < thick; a++) for (let b = 0; b < thick; b++) this.set(x0 + a - (thick >> 1), y0 + b - (thick >> 1), col);
      if (x0 === x1 && y0 === y1) break;
      const e2 = 2 * err;
      if (e2 >= dy) { err += dy; x0 += sx; }
      if (e2 <= dx) { err += dx; y0 += sy; }
    }
  }
  rect(x0: number, y0: number, x1: number, y1: number, col: RGB): void {
    this.line(x0, y0, x1, y0, col); this.line(x1, y0, x1, y1, col);
    this.line(x1, y1, x0, y1, col); this.line(x0, y1, x0, y0, col);
  }
  /** Draws text with the 3x5 font (upper case, digits, . - + : / % e), scale s. */
  text(x: number, y: number, s: string, col: RGB, scale = 2): void {
    let cx = x;
    for (const ch of s.toUpperCase()) {
      const g = FONT[ch];
      if (g) for (let r = 0; r < 5; r++) for (let c = 0; c < 3; c++) {
        if (g[r * 3 + c] === '1') for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(cx + c * scale + a, y + r * scale + b, col);
      }
      cx += 4 * scale;
    }
  }
  save(file: string): Promise<void> {
    return writePng(file, this.data, { width: this.width, height: this.height, channels: 3 });
  }
}

// 3x5 glyphs, rows top to bottom.
const FONT: Record<string, string> = {
  '0': '111101101101111', '1': '010110010010111', '2': '111001111100111', '3': '111001111001111', '4': '101101111001001',
  '5': '111100111001111', '6': '111100111101111', '7': '111001001010010', '8': '111101111101111', '9': '111101111001111',
  '.': '000000000000010', '-': '000000111000000', '+': '000010111010000', ':': '000010000010000', '/': '001001010100100',
  '%': '101001010100101', ' ': '000000000000000', '(': '010100100100010', ')': '010001001001010', '=': '000111000111000',
  A: '010101111101101', B: '110101110101110', C: '011100100100011', D: '110101101101110', E: '111100110100111',
  F: '111100110100100', G: '011100101101011', H: '101101111101101', I: '111010010010111', J: '001001001101010',
  K: '101101110101101', L: '100100100100111', M: '101111111101101', N: '110101101101101', O: '010101101101010',
  P: '110101110100100', Q: '010101101110011', R: '110101110101101', S: '011100010001110', T: '111010010010010',
  U: '101101101101111', V: '101101101101010', W: '101101111111101', X: '101101010101101', Y: '101101010010010',
  Z: '111001010100111',
};

export interface Series {
  label: string;
  values: number[];
  color: RGB;
}

const fmt = (v: number): string => {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-2 || a >= 1e4)) return v.toExponential(1);
  return v.toFixed(a < 1 ? 3 : 2);
};

/** Draws one panel (axes box, min/max labels, title, legend, lines) into a canvas region. */
export function drawPanel(cv: Canvas, x0: number, y0: number, w: number, h: number, title: string, series: Series[], logScale = false, range?: [number, number]): void {
  const ax0 = x0 + 70, ay0 = y0 + 22, ax1 = x0 + w - 10, ay1 = y0 + h - 18;
  const tr = (v: number) => (logScale ? Math.log10(Math.max(v, 1e-12)) : v);
  const all = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)).map(tr));
  let lo = all.length ? Math.min(...all) : 0;
  let hi = all.length ? Math.max(...all) : 1;
  if (range) [lo, hi] = range;
  if (hi - lo < 1e-12) { hi += 0.5 * (Math.abs(hi) || 1); lo -= 0.5 * (Math.abs(lo) || 1); }
  const n = Math.max(1, ...series.map((s) => s.values.length));
  cv.rect(ax0, ay0, ax1, ay1, [0.3, 0.3, 0.3]);
  for (let k = 1; k < 4; k++) {
    const yy = ay0 + ((ay1 - ay0) * k) / 4;
    for (let xx = ax0 + 2; xx < ax1; xx += 6) cv.set(xx, yy, [0.8, 0.8, 0.8]);
  }
  const inv = (v: number) => (logScale ? Math.pow(10, v) : v);
  cv.text(x0 + 4, ay0, fmt(inv(hi)), [0.2, 0.2, 0.2], 1);
  cv.text(x0 + 4, ay1 - 5, fmt(inv(lo)), [0.2, 0.2, 0.2], 1);
  cv.text(ax0, y0 + 4, title + (logScale ? ' (LOG)' : ''), [0, 0, 0], 2);
  cv.text(ax1 - 40, ay1 + 6, `EPOCH ${n}`, [0.2, 0.2, 0.2], 1);
  let lx = ax0 + 8 + title.length * 8 + (logScale ? 56 : 0) + 20;
  for (const s of series) {
    cv.line(lx, y0 + 9, lx + 14, y0 + 9, s.color, 2);
    cv.text(lx + 18, y0 + 6, s.label, s.color, 1);
    lx += 30 + 4 * s.label.length;
  }
  const px = (i: number) => (n <= 1 ? (ax0 + ax1) / 2 : ax0 + 4 + ((ax1 - ax0 - 8) * i) / (n - 1));
  const py = (v: number) => ay1 - 3 - ((ay1 - ay0 - 6) * (tr(v) - lo)) / (hi - lo);
  for (const s of series) {
    let prev: [number, number] | null = null;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) { prev = null; return; }
      const p: [number, number] = [px(i), py(v)];
      if (prev) cv.line(prev[0], prev[1], p[0], p[1], s.color, 2);
      else cv.line(p[0], p[1], p[0], p[1], s.color, 3);
      prev = p;
    });
  }
}

/** Loss (train/val), Dice (val global and per-image) and learning rate per epoch, stacked. */
export async function plotCurves(file: string, h: { trainLoss: number[]; valLoss: number[]; dice: number[]; diceImg: number[]; lr: number[] }): Promise<void> {
  const W = 640, P = 200;
  const cv = new Canvas(W, 3 * P);
  drawPanel(cv, 0, 0, W, P, 'LOSS', [
    { label: 'TRAIN', values: h.trainLoss, color: [0.1, 0.3, 0.9] },
    { label: 'VAL', values: h.valLoss, color: [0.9, 0.4, 0.0] },
  ]);
  drawPanel(cv, 0, P, W, P, 'DICE', [
    { label: 'GLOBAL', values: h.dice, color: [0.1, 0.6, 0.1] },
    { label: 'PER IMAGE', values: h.diceImg, color: [0.6, 0.1, 0.6] },
  ], false, [0, 1]);
  const pos = h.lr.every((v) => v > 0);
  drawPanel(cv, 0, 2 * P, W, P, 'LR', [{ label: 'LR', values: h.lr, color: [0.8, 0.1, 0.1] }], pos && Math.max(...h.lr) / Math.min(...h.lr) > 20);
  await cv.save(file);
}

/** The image (CHW, 1 or 3 channels, 0..1) as grey: the mean of its channels. */
function greyCanvas(image: Float32Array, channels: number, h: number, w: number): Canvas {
  const cv = new Canvas(w, h);
  const n = h * w;
  for (let i = 0; i < n; i++) {
    let g = 0;
    for (let c = 0; c < channels; c++) g += image[c * n + i];
    g /= channels;
    for (let c = 0; c < 3; c++) cv.data[c * n + i] = g;
  }
  return cv;
}

/**
 * Overlay: the grey image, the predicted mask tinted red, the predicted contour in red and the
 * ground-truth contour in green (when given). `image` is CHW (1 or 3 channels) in 0..1.
 */
export function overlay(image: Float32Array, channels: number, h: number, w: number, pred: Uint8Array, truth?: Uint8Array): Canvas {
  const cv = greyCanvas(image, channels, h, w);
  const n = h * w;
  const edge = (m: Uint8Array, i: number) => {
    if (!m[i]) return false;
    const y = (i / w) | 0, x = i % w;
    return y === 0 || x === 0 || y === h - 1 || x === w - 1 || !m[i - 1] || !m[i + 1] || !m[i - w] || !m[i + w];
  };
  for (let i = 0; i < n; i++) if (pred[i]) cv.set(i % w, (i / w) | 0, [1, 0.15, 0.15], 0.3);
  if (truth) for (let i = 0; i < n; i++) if (edge(truth, i)) cv.set(i % w, (i / w) | 0, [0.1, 1, 0.1]);
  for (let i = 0; i < n; i++) if (edge(pred, i)) cv.set(i % w, (i / w) | 0, [1, 0.1, 0.1]);
  return cv;
}

/** Colours of the classes 1, 2, ... in class overlays (class k uses entry (k - 1) mod length). */
export const CLASS_COLOURS: [number, number, number][] = [[1, 0.15, 0.15], [0.15, 0.45, 1], [1, 0.85, 0.1], [0.85, 0.2, 1], [0.1, 0.9, 0.9], [1, 0.55, 0.1]];

/**
 * A multi-class overlay: the grey image with each predicted foreground class filled in its colour
 * (CLASS_COLOURS, 30 %) and outlined, and the truth's class borders (when given) in green.
 */
export function overlayClasses(image: Float32Array, channels: number, h: number, w: number, pred: Uint8Array, truth?: Uint8Array): Canvas {
  const cv = greyCanvas(image, channels, h, w);
  const n = h * w;
  // A foreground pixel on the image border or next to a pixel of another class.
  const edge = (m: Uint8Array, i: number) => {
    const v = m[i];
    if (!v) return false;
    const y = (i / w) | 0, x = i % w;
    return y === 0 || x === 0 || y === h - 1 || x === w - 1 || m[i - 1] !== v || m[i + 1] !== v || m[i - w] !== v || m[i + w] !== v;
  };
  const colour = (k: number) => CLASS_COLOURS[(k - 1) % CLASS_COLOURS.length];
  for (let i = 0; i < n; i++) if (pred[i]) cv.set(i % w, (i / w) | 0, colour(pred[i]), 0.3);
  if (truth) for (let i = 0; i < n; i++) if (edge(truth, i)) cv.set(i % w, (i / w) | 0, [0.1, 1, 0.1]);
  for (let i = 0; i < n; i++) if (edge(pred, i)) cv.set(i % w, (i / w) | 0, colour(pred[i]));
  return cv;
}
