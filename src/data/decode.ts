/**
 * Image and mask decoding to plain typed arrays, and atomic PNG writing.
 *
 * sharp (libvips) decodes PNG, JPEG and TIFF; it has no BMP reader, so BMP is
 * decoded by the small reader below. Resizing is done here in JS rather than by
 * sharp so that every format goes through the same, documented interpolation:
 * half-pixel-centred bilinear for images (same convention as OpenCV INTER_LINEAR
 * and PyTorch align_corners=false, no antialiasing) and nearest neighbour for masks.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic as writeAtomic } from '../io/atomic';
import sharp = require('sharp');

/** Error raised for any data problem; `file` names the offending path when there is one. */
export class DataError extends Error {
  constructor(
    message: string,
    readonly code: 'missing' | 'corrupt' | 'unsupported' | 'layout' | 'split' | 'size' | 'io',
    readonly file?: string,
  ) {
    super(message);
    this.name = 'DataError';
  }
}

/** Extensions accepted for images and masks (lower case, without dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['png', 'jpg', 'jpeg', 'bmp', 'tif', 'tiff'];

export interface DecodedImage {
  /** CHW, values in 0..1. */
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
  /** Size of the file's pixels before any resize. */
  sourceHeight: number;
  sourceWidth: number;
}

export interface ReadImageOptions {
  /** Output channels: 1 = grey (ITU-R 601 luma from colour input), 3 = RGB (grey input replicated). */
  channels?: 1 | 3;
  /** Output size [height, width]; omitted = native size. */
  size?: [number, number];
}

/** Interleaved (HWC) 8-bit-range pixels as decoded from a file. */
interface RawPixels {
  /** Values on the 0..255 scale (16-bit input is rescaled), interleaved HWC. 8-bit input stays
   * the decoder's bytes: the same values, without a full-image Float32 copy. */
  data: Float32Array | Uint8Array;
  width: number;
  height: number;
  channels: number;
}

function extensionOf(file: string): string {
  return path.extname(file).slice(1).toLowerCase();
}

async function readFileChecked(file: string): Promise<Buffer> {
  const ext = extensionOf(file);
  if (!IMAGE_EXTENSIONS.includes(ext)) {
    throw new DataError(`${file}: unsupported extension '.${ext}' (supported: ${IMAGE_EXTENSIONS.join(', ')})`, 'unsupported', file);
  }
  try {
    return await fs.promises.readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new DataError(`${file}: file not found`, 'missing', file);
    throw new DataError(`${file}: cannot read (${err.message})`, 'io', file);
  }
}

/** Decode any supported file to interleaved pixels on a 0..255 scale. */
async function decodeRaw(file: string): Promise<RawPixels> {
  const buf = await readFileChecked(file);
  if (buf.length === 0) throw new DataError(`${file}: empty file (corrupt or truncated image)`, 'corrupt', file);
  // Decide by content for BMP (magic 'BM') so a mis-named BMP still decodes; sharp handles the rest.
  if (buf[0] === 0x42 && buf[1] === 0x4d) {
    try {
      return decodeBmp(buf);
    } catch (e) {
      throw new DataError(`${file}: cannot decode BMP (${(e as Error).message})`, 'corrupt', file);
    }
  }
  if (extensionOf(file) === 'bmp') throw new DataError(`${file}: not a BMP file (missing 'BM' signature)`, 'corrupt', file);
  try {
    const { data, info } = await sharp(buf, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
    const n = info.width * info.height * info.channels;
    // sharp keeps the source sample depth for raw output; normalise to 0..255 so
    // 16-bit PNG/TIFF behave like 8-bit ones.
    const bytesPerSample = data.length / n;
    if (bytesPerSample === 1) return { data: new Uint8Array(data.buffer, data.byteOffset, n), width: info.width, height: info.height, channels: info.channels };
    const out = new Float32Array(n);
    if (bytesPerSample === 2) {
      const v = new Uint16Array(data.buffer, data.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = v[i] / 257;
    } else if (bytesPerSample === 4) {
      const v = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
      for (let i = 0; i < n; i++) out[i] = v[i] <= 1 ? v[i] * 255 : v[i];
    } else {
      throw new Error(`unexpected sample size ${bytesPerSample} bytes`);
    }
    return { data: out, width: info.width, height: info.height, channels: info.channels };
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`${file}: cannot decode image (corrupt or not a ${extensionOf(file).toUpperCase()}): ${(e as Error).message}`, 'corrupt', file);
  }
}

/**
 * Minimal BMP reader: BITMAPINFOHEADER-family headers, uncompressed 1/4/8-bit
 * palette, 16-bit (555 or bitfields), 24-bit and 32-bit (BI_RGB or BI_BITFIELDS),
 * bottom-up or top-down. RLE compression is rejected. Output is RGB or RGBA
 * (RGBA only when a real alpha mask is declared).
 */
export function decodeBmp(buf: Buffer): RawPixels {
  if (buf.length < 26 || buf.readUInt16LE(0) !== 0x4d42) throw new Error('missing BM signature');
  const dataOffset = buf.readUInt32LE(10);
  const headerSize = buf.readUInt32LE(14);
  let width: number;
  let height: number;
  let bpp: number;
  let compression = 0;
  let paletteCount = 0;
  if (headerSize === 12) {
    width = buf.readUInt16LE(18);
    height = buf.readInt16LE(20);
    bpp = buf.readUInt16LE(24);
  } else if (headerSize >= 40) {
    if (buf.length < 54) throw new Error('truncated header');
    width = buf.readInt32LE(18);
    height = buf.readInt32LE(22);
    bpp = buf.readUInt16LE(28);
    compression = buf.readUInt32LE(30);
    paletteCount = buf.readUInt32LE(46);
  } else {
    throw new Error(`unsupported header size ${headerSize}`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0 || width > 65535 || height > 65535) throw new Error(`bad dimensions ${width}x${height}`);
  if (compression !== 0 && compression !== 3) throw new Error(`unsupported compression ${compression} (only uncompressed BMP is read)`);

  // Channel bit masks for 16/32-bit images.
  let masks: [number, number, number, number];
  if (compression === 3) {
    // Masks follow a 40-byte header, or live inside V4/V5 headers at the same offset.
    const mo = 14 + 40;
    if (buf.length < mo + 12) throw new Error('truncated bitfield masks');
    masks = [buf.readUInt32LE(mo), buf.readUInt32LE(mo + 4), buf.readUInt32LE(mo + 8), headerSize >= 56 ? buf.readUInt32LE(mo + 12) : 0];
  } else if (bpp === 16) {
    masks = [0x7c00, 0x03e0, 0x001f, 0];
  } else {
    masks = [0x00ff0000, 0x0000ff00, 0x000000ff, 0];
  }
  const hasAlpha = (bpp === 32 || bpp === 16) && masks[3] !== 0;
  const channels = hasAlpha ? 4 : 3;

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const entries = paletteCount || 1 << bpp;
    const entrySize = headerSize === 12 ? 3 : 4;
    const po = 14 + headerSize;
    if (buf.length < po + entries * entrySize) throw new Error('truncated palette');
    palette = new Uint8Array(entries * 3);
    for (let i = 0; i < entries; i++) {
      palette[i * 3] = buf[po + i * entrySize + 2];
      palette[i * 3 + 1] = buf[po + i * entrySize + 1];
      palette[i * 3 + 2] = buf[po + i * entrySize];
    }
  } else if (bpp !== 16 && bpp !== 24 && bpp !== 32) {
    throw new Error(`unsupported bit depth ${bpp}`);
  }
  if (bpp !== 1 && bpp !== 4 && bpp !== 8 && bpp !== 16 && bpp !== 24 && bpp !== 32) throw new Error(`unsupported bit depth ${bpp}`);

  const rowSize = Math.floor((bpp * width + 31) / 32) * 4;
  if (buf.length < dataOffset + rowSize * height) throw new Error('truncated pixel data');
  const out = new Float32Array(width * height * channels);
  const fieldOf = (v: number, m: number): number => {
    if (m === 0) return 255;
    // Index of the lowest set bit of the mask: the field's shift.
    const low = 31 - Math.clz32(m & -m);
    const max = m >>> low;
    return (((v & m) >>> low) * 255) / max;
  };
  for (let r = 0; r < height; r++) {
    const y = topDown ? r : height - 1 - r;
    const row = dataOffset + r * rowSize;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      if (palette) {
        let idx: number;
        if (bpp === 8) idx = buf[row + x];
        else if (bpp === 4) idx = (buf[row + (x >> 1)] >> (x & 1 ? 0 : 4)) & 0x0f;
        else idx = (buf[row + (x >> 3)] >> (7 - (x & 7))) & 1;
        if (idx * 3 + 2 >= palette.length) throw new Error(`palette index ${idx} out of range`);
        out[o] = palette[idx * 3];
        out[o + 1] = palette[idx * 3 + 1];
        out[o + 2] = palette[idx * 3 + 2];
      } else if (bpp === 24) {
        const p = row + x * 3;
        out[o] = buf[p + 2];
        out[o + 1] = buf[p + 1];
        out[o + 2] = buf[p];
      } else {
        const v = bpp === 32 ? buf.readUInt32LE(row + x * 4) : buf.readUInt16LE(row + x * 2);
        out[o] = fieldOf(v, masks[0]);
        out[o + 1] = fieldOf(v, masks[1]);
        out[o + 2] = fieldOf(v, masks[2]);
        if (hasAlpha) out[o + 3] = fieldOf(v, masks[3]);
      }
    }
  }
  return { data: out, width, height, channels };
}

/** Collapse interleaved pixels (0..255) to `channels` output planes (CHW, 0..1). */
function toPlanes(raw: RawPixels, channels: 1 | 3): Float32Array {
  const { width, height } = raw;
  const n = width * height;
  const src = raw.data;
  const sc = raw.channels;
  // Alpha is ignored: medical images do not use transparency meaningfully.
  const colour = sc >= 3;
  const out = new Float32Array(channels * n);
  const k = 1 / 255;
  for (let i = 0; i < n; i++) {
    const p = i * sc;
    if (channels === 1) {
      out[i] = (colour ? 0.299 * src[p] + 0.587 * src[p + 1] + 0.114 * src[p + 2] : src[p]) * k;
    } else if (colour) {
      out[i] = src[p] * k;
      out[n + i] = src[p + 1] * k;
      out[2 * n + i] = src[p + 2] * k;
    } else {
      const v = src[p] * k;
      out[i] = v;
      out[n + i] = v;
      out[2 * n + i] = v;
    }
  }
  return out;
}

/**
 * toPlanes then resizeBilinear, with the same result, but converting only the source pixels the
 * resize reads (four per output pixel and channel at most) instead of the whole image first,
 * and resizing a grey image's plane once when three channels are asked for.
 */
function resizedPlanes(raw: RawPixels, channels: 1 | 3, oh: number, ow: number): Float32Array {
  const { width: w, height: h } = raw;
  if (oh === h && ow === w) return toPlanes(raw, channels);
  const src = raw.data;
  const sc = raw.channels;
  const colour = sc >= 3;
  const k = 1 / 255;
  const { x0s, x1s, fxs } = bilinearColumns(w, ow);
  const out = new Float32Array(channels * oh * ow);
  // Plane values (as toPlanes stores them, rounded to float32) of the four taps of one output row.
  const a0 = new Float32Array(ow), a1 = new Float32Array(ow), b0 = new Float32Array(ow), b1 = new Float32Array(ow);
  const gather = (dst: Float32Array, row: number, cols: Int32Array, ch: number): void => {
    const base = row * w;
    for (let x = 0; x < ow; x++) {
      const p = (base + cols[x]) * sc;
      dst[x] = channels === 1 && colour ? (0.299 * src[p] + 0.587 * src[p + 1] + 0.114 * src[p + 2]) * k : src[p + (colour ? ch : 0)] * k;
    }
  };
  // Grey input to three channels: the planes are equal, so resize one and copy it.
  const computed = colour ? channels : 1;
  const sy = h / oh;
  for (let ch = 0; ch < computed; ch++) {
    const ob = ch * oh * ow;
    for (let y = 0; y < oh; y++) {
      const { y0, y1, wy } = bilinearRow(y, sy, h);
      gather(a0, y0, x0s, ch);
      gather(a1, y0, x1s, ch);
      gather(b0, y1, x0s, ch);
      gather(b1, y1, x1s, ch);
      const o = ob + y * ow;
      for (let x = 0; x < ow; x++) {
        const a = a0[x] + (a1[x] - a0[x]) * fxs[x];
        const b = b0[x] + (b1[x] - b0[x]) * fxs[x];
        out[o + x] = a + (b - a) * wy;
      }
    }
  }
  for (let ch = computed; ch < channels; ch++) out.copyWithin(ch * oh * ow, 0, oh * ow);
  return out;
}

/** Source columns and weights of a half-pixel-centred bilinear resize from w to ow columns. */
function bilinearColumns(w: number, ow: number): { x0s: Int32Array; x1s: Int32Array; fxs: Float32Array } {
  const sx = w / ow;
  const x0s = new Int32Array(ow);
  const x1s = new Int32Array(ow);
  const fxs = new Float32Array(ow);
  for (let x = 0; x < ow; x++) {
    let fx = (x + 0.5) * sx - 0.5;
    if (fx < 0) fx = 0;
    const x0 = Math.min(Math.floor(fx), w - 1);
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, w - 1);
    fxs[x] = fx - x0;
  }
  return { x0s, x1s, fxs };
}

/** Source rows and weight of output row y (sy = in / out rows). */
function bilinearRow(y: number, sy: number, h: number): { y0: number; y1: number; wy: number } {
  let fy = (y + 0.5) * sy - 0.5;
  if (fy < 0) fy = 0;
  const y0 = Math.min(Math.floor(fy), h - 1);
  return { y0, y1: Math.min(y0 + 1, h - 1), wy: fy - y0 };
}

/**
 * Bilinear resize of CHW planes, half-pixel centres (src = (dst + 0.5) * in/out - 0.5,
 * clamped at the borders). No antialiasing, like OpenCV's INTER_LINEAR used by the
 * usual albumentations Resize in segmentation repos.
 */
export function resizeBilinear(src: Float32Array, c: number, h: number, w: number, oh: number, ow: number): Float32Array {
  if (oh === h && ow === w) return Float32Array.from(src);
  const out = new Float32Array(c * oh * ow);
  const sy = h / oh;
  const { x0s, x1s, fxs } = bilinearColumns(w, ow);
  for (let ch = 0; ch < c; ch++) {
    const sb = ch * h * w;
    const ob = ch * oh * ow;
    for (let y = 0; y < oh; y++) {
      const { y0, y1, wy } = bilinearRow(y, sy, h);
      const r0 = sb + y0 * w;
      const r1 = sb + y1 * w;
      for (let x = 0; x < ow; x++) {
        const a = src[r0 + x0s[x]] + (src[r0 + x1s[x]] - src[r0 + x0s[x]]) * fxs[x];
        const b = src[r1 + x0s[x]] + (src[r1 + x1s[x]] - src[r1 + x0s[x]]) * fxs[x];
        out[ob + y * ow + x] = a + (b - a) * wy;
      }
    }
  }
  return out;
}

/** Nearest-neighbour resize of a single-channel plane (pixel-centre sampling). */
export function resizeNearest<A extends Uint8Array | Float32Array>(src: A, h: number, w: number, oh: number, ow: number): A {
  const out = new (src.constructor as { new (n: number): A })(oh * ow);
  const pick = nearestIndices(h, w, oh, ow);
  if (!pick) out.set(src.subarray(0, oh * ow));
  else for (let i = 0; i < out.length; i++) out[i] = src[pick[i]];
  return out;
}

/** The source pixel of each output pixel of a nearest-neighbour resize; null when the size is kept. */
function nearestIndices(h: number, w: number, oh: number, ow: number): Int32Array | null {
  if (oh === h && ow === w) return null;
  const xs = new Int32Array(ow);
  for (let x = 0; x < ow; x++) xs[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow));
  const pick = new Int32Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    for (let x = 0; x < ow; x++) pick[y * ow + x] = sy * w + xs[x];
  }
  return pick;
}

function checkSize(size: [number, number] | undefined, file: string): void {
  if (size === undefined) return;
  const [h, w] = size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) {
    throw new DataError(`${file}: invalid target size [${size.join(', ')}]`, 'io', file);
  }
}

/** Decode an image file to CHW float planes in 0..1, optionally resized (bilinear). */
export async function readImage(file: string, opts: ReadImageOptions = {}): Promise<DecodedImage> {
  const channels = opts.channels ?? 1;
  checkSize(opts.size, file);
  const raw = await decodeRaw(file);
  const [height, width] = opts.size ?? [raw.height, raw.width];
  const data = opts.size ? resizedPlanes(raw, channels, height, width) : toPlanes(raw, channels);
  return { data, channels, height, width, sourceHeight: raw.height, sourceWidth: raw.width };
}

export interface DecodedMask {
  /** HW, 0/1. */
  data: Uint8Array;
  height: number;
  width: number;
  /** Size of the file's pixels before any resize. */
  sourceHeight: number;
  sourceWidth: number;
}

/**
 * Decode a mask to 0/1. A pixel is foreground when its largest colour channel is
 * >= threshold on the 0..255 scale (default 128), so grey 0/255 masks and
 * coloured masks both work. Note that label-map masks stored as 0/1 need
 * `threshold: 1`. Resizing is nearest neighbour so the mask stays binary.
 */
export async function readMaskInfo(file: string, size?: [number, number], threshold = 128): Promise<DecodedMask> {
  checkSize(size, file);
  const raw = await decodeRaw(file);
  const sc = raw.channels;
  const colourChannels = sc >= 3 ? 3 : 1;
  const [height, width] = size ?? [raw.height, raw.width];
  // Thresholds only the pixels the nearest-neighbour resize picks (the same result as
  // thresholding the whole mask first).
  const pick = nearestIndices(raw.height, raw.width, height, width);
  const data = new Uint8Array(height * width);
  for (let i = 0; i < data.length; i++) {
    const p = (pick ? pick[i] : i) * sc;
    let v = raw.data[p];
    for (let k = 1; k < colourChannels; k++) v = Math.max(v, raw.data[p + k]);
    data[i] = v >= threshold ? 1 : 0;
  }
  return { data, height, width, sourceHeight: raw.height, sourceWidth: raw.width };
}

/** Decode a mask to a 0/1 Uint8Array (HW), see readMaskInfo for the rules. */
export async function readMask(file: string, size?: [number, number], threshold = 128): Promise<Uint8Array> {
  return (await readMaskInfo(file, size, threshold)).data;
}

/** Writes `data` to `file` atomically (src/io/atomic.ts); failures are DataErrors naming the file. */
export function writeFileAtomicSync(file: string, data: Buffer | string): void {
  try {
    writeAtomic(file, data);
  } catch (e) {
    throw new DataError(`${file}: write failed (${(e as Error).message})`, 'io', file);
  }
}

/** Promise form of writeFileAtomicSync (for callers in async pipelines). */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  writeFileAtomicSync(file, data);
}

export interface PngShape {
  width: number;
  height: number;
  /** 1 (grey), 3 (RGB) or 4 (RGBA); data is CHW. */
  channels: number;
}

/**
 * Encode CHW planes as an 8-bit PNG and write it atomically.
 * Float32Array data is taken as 0..1 (clamped, scaled by 255, rounded);
 * Uint8Array data is taken as 0..255 as-is. Use writeMaskPng for 0/1 masks.
 */
export async function writePng(file: string, data: Float32Array | Uint8Array, shape: PngShape): Promise<void> {
  const { width, height, channels } = shape;
  if (![1, 3, 4].includes(channels)) throw new DataError(`${file}: PNG needs 1, 3 or 4 channels, got ${channels}`, 'unsupported', file);
  const n = width * height;
  if (data.length !== n * channels) {
    throw new DataError(`${file}: data has ${data.length} values, expected ${channels}x${height}x${width}`, 'io', file);
  }
  const hwc = Buffer.alloc(n * channels);
  const isFloat = data instanceof Float32Array;
  for (let ch = 0; ch < channels; ch++) {
    for (let i = 0; i < n; i++) {
      const v = data[ch * n + i];
      hwc[i * channels + ch] = isFloat ? Math.round(Math.min(1, Math.max(0, v)) * 255) : v;
    }
  }
  let png: Buffer;
  try {
    png = await sharp(hwc, { raw: { width, height, channels: channels as 1 | 3 | 4 } }).png().toBuffer();
  } catch (e) {
    throw new DataError(`${file}: PNG encoding failed (${(e as Error).message})`, 'io', file);
  }
  await writeFileAtomic(file, png);
}

/** Write a 0/1 (or 0..1 probability, thresholded at 0.5) mask as a 0/255 grey PNG, atomically. */
export async function writeMaskPng(file: string, mask: Uint8Array | Float32Array, width: number, height: number): Promise<void> {
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = mask[i] > 0.5 ? 255 : 0;
  await writePng(file, out, { width, height, channels: 1 });
}

/**
 * Write a class-index map (values 0..255 as they are, e.g. 0..classes-1) as a single-channel 8-bit
 * grey PNG, atomically: label-map readers take the pixel value as the class, so the file must not
 * be expanded to RGB as writePng's sharp pipeline does for one channel.
 */
export async function writeClassPng(file: string, labels: Uint8Array, width: number, height: number): Promise<void> {
  if (labels.length !== width * height) throw new DataError(`${file}: ${labels.length} labels, expected ${height}x${width}`, 'io', file);
  let png: Buffer;
  try {
    png = await sharp(Buffer.from(labels.buffer, labels.byteOffset, labels.byteLength), { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toBuffer();
  } catch (e) {
    throw new DataError(`${file}: PNG encoding failed (${(e as Error).message})`, 'io', file);
  }
  await writeFileAtomic(file, png);
}

/**
 * Decode a class-index mask (multi-class segmentation): each pixel's first channel is its class,
 * 0 = background, 1..classes-1 = structures (grey PNGs written as label maps, e.g. 0/1/2). A value
 * of classes or above is a DataError naming the file, the value and its pixel, since it usually
 * means a 0/255 binary mask was given with classes > 2. Resizing is nearest neighbour.
 */
export async function readClassMask(file: string, classes: number, size?: [number, number]): Promise<DecodedMask> {
  if (!(Number.isInteger(classes) && classes >= 2 && classes <= 256)) throw new DataError(`${file}: classes must be an integer in [2, 256], got ${classes}`, 'unsupported', file);
  checkSize(size, file);
  const raw = await decodeRaw(file);
  const n = raw.width * raw.height;
  let data = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = raw.data[i * raw.channels];
    if (v >= classes) {
      throw new DataError(`${file}: pixel (${Math.floor(i / raw.width)}, ${i % raw.width}) has class ${v}, expected 0..${classes - 1} (a class-index mask; 0/255 masks are binary)`, 'corrupt', file);
    }
    data[i] = v;
  }
  let height = raw.height;
  let width = raw.width;
  if (size) {
    data = resizeNearest(data, height, width, size[0], size[1]);
    [height, width] = size;
  }
  return { data, height, width, sourceHeight: raw.height, sourceWidth: raw.width };
}
