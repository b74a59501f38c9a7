/**
 * Test-time augmentation: the model runs on transformed copies of the input, each output is turned
 * into probabilities (sigmoid for one channel, softmax over the channels otherwise), mapped back by
 * the inverse transform and averaged. Averaging probabilities rather than logits is what nnU-Net
 * and MONAI do, and it keeps a confident vote from being outweighed by one extreme logit.
 *
 *   'flips'  identity, horizontal, vertical, and both flips (4 passes)
 *   'd4'     the 8 symmetries of the square: 4 rotations by 90 degrees, each with and without a
 *            horizontal flip (8 passes; a non-square input becomes W x H under odd rotations,
 *            which fully convolutional models accept)
 *
 * The transforms run on host arrays (a few copies of the batch), so any model and device works.
 */
import { Tensor, tensor } from '../tensor';
import { tidy } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';

export type TtaMode = 'none' | 'flips' | 'd4';
export const TTA_MODES: readonly TtaMode[] = ['none', 'flips', 'd4'];

/** A symmetry of the square: a horizontal flip (mirror left-right) if `flip`, then `quarter` counter-clockwise quarter turns. */
export interface Dihedral {
  flip: boolean;
  quarter: 0 | 1 | 2 | 3;
}

/** Checks a TTA mode; throws an Error naming the bad value. */
export function parseTtaMode(v: unknown): TtaMode {
  if (typeof v === 'string' && (TTA_MODES as readonly string[]).includes(v)) return v as TtaMode;
  throw new Error(`test-time augmentation must be one of ${TTA_MODES.join(', ')}, got '${String(v)}'`);
}

/** The transforms a mode averages over (the identity first). */
export function ttaTransforms(mode: TtaMode): Dihedral[] {
  const m = parseTtaMode(mode);
  if (m === 'none') return [{ flip: false, quarter: 0 }];
  // A vertical flip is a horizontal flip followed by a half turn; both flips are a half turn.
  if (m === 'flips') return [{ flip: false, quarter: 0 }, { flip: true, quarter: 0 }, { flip: true, quarter: 2 }, { flip: false, quarter: 2 }];
  const all: Dihedral[] = [];
  for (const flip of [false, true]) for (const quarter of [0, 1, 2, 3] as const) all.push({ flip, quarter });
  return all;
}

/** Plane size after the transform: odd quarter turns swap height and width. */
export function transformedSize(h: number, w: number, t: Dihedral): [number, number] {
  return t.quarter % 2 ? [w, h] : [h, w];
}

/** dest[i] = index in the transformed plane of pixel i of an h x w plane. */
function destinationMap(h: number, w: number, t: Dihedral): Int32Array {
  const dest = new Int32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let cy = y, cx = t.flip ? w - 1 - x : x, ch = h, cw = w;
      // One counter-clockwise quarter turn (numpy's rot90): (y, x) in ch x cw -> (cw - 1 - x, y) in cw x ch.
      for (let q = 0; q < t.quarter; q++) {
        const ny = cw - 1 - cx;
        cx = cy;
        cy = ny;
        [ch, cw] = [cw, ch];
      }
      dest[y * w + x] = cy * cw + cx;
    }
  }
  return dest;
}

function checkPlanes(data: ArrayLike<number>, planes: number, h: number, w: number, where: string): void {
  if (!(Number.isInteger(planes) && planes >= 1 && Number.isInteger(h) && h >= 1 && Number.isInteger(w) && w >= 1)) throw new Error(`${where}: bad layout ${planes} planes of ${h}x${w}`);
  if (data.length !== planes * h * w) throw new Error(`${where}: ${data.length} values, expected ${planes} planes of ${h}x${w} = ${planes * h * w}`);
}

/** Applies `t` to each of `planes` h x w planes (e.g. the N*C planes of an NCHW batch). */
export function transformPlanes(data: ArrayLike<number>, planes: number, h: number, w: number, t: Dihedral): { data: Float32Array; height: number; width: number } {
  checkPlanes(data, planes, h, w, 'transformPlanes');
  const dest = destinationMap(h, w, t);
  const hw = h * w;
  const out = new Float32Array(planes * hw);
  for (let p = 0; p < planes; p++) for (let i = 0; i < hw; i++) out[p * hw + dest[i]] = data[p * hw + i];
  const [height, width] = transformedSize(h, w, t);
  return { data: out, height, width };
}

/** Undoes `t`: `data` holds planes transformed from h x w originals; returns planes of h x w. */
export function untransformPlanes(data: ArrayLike<number>, planes: number, h: number, w: number, t: Dihedral): Float32Array {
  const [th, tw] = transformedSize(h, w, t);
  checkPlanes(data, planes, th, tw, 'untransformPlanes');
  const dest = destinationMap(h, w, t);
  const hw = h * w;
  const out = new Float32Array(planes * hw);
  for (let p = 0; p < planes; p++) for (let i = 0; i < hw; i++) out[p * hw + i] = data[p * hw + dest[i]];
  return out;
}

/** Sigmoid for a single channel, softmax over the channel axis otherwise, in place on an NKHW array. */
export function toProbabilities(data: Float32Array, n: number, k: number, hw: number): Float32Array {
  if (k === 1) {
    for (let i = 0; i < data.length; i++) data[i] = 1 / (1 + Math.exp(-data[i]));
    return data;
  }
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < hw; i++) {
      const base = b * k * hw + i;
      let m = -Infinity;
      for (let c = 0; c < k; c++) m = Math.max(m, data[base + c * hw]);
      let s = 0;
      for (let c = 0; c < k; c++) s += Math.exp(data[base + c * hw] - m);
      for (let c = 0; c < k; c++) data[base + c * hw] = Math.exp(data[base + c * hw] - m) / s;
    }
  }
  return data;
}

export interface TtaOptions {
  /** Device the input tensors are created on (default: cpu). */
  device?: 'cpu' | 'cuda';
}

/**
 * Probabilities [n, K, h, w] of `forward` on the NCHW batch `x`, averaged over the mode's
 * transforms ('none' = one plain pass). `forward` maps an NCHW tensor to NKHW logits of the same
 * spatial size; it runs without gradients.
 */
export function ttaProbabilities(forward: (x: Tensor) => Tensor, x: ArrayLike<number>, shape: [number, number, number, number], mode: TtaMode, opts: TtaOptions = {}): { data: Float32Array; channels: number } {
  const transforms = ttaTransforms(mode);
  const [n, c, h, w] = shape;
  checkPlanes(x, n * c, h, w, 'ttaProbabilities');
  let sum: Float32Array | null = null;
  let k = 0;
  for (const t of transforms) {
    const tx = transformPlanes(x, n * c, h, w, t);
    const out = noGrad(() => tidy(() => {
      const y = forward(tensor(tx.data, [n, c, tx.height, tx.width], { device: opts.device ?? 'cpu' }));
      if (y.ndim !== 4 || y.shape[0] !== n || y.shape[2] !== tx.height || y.shape[3] !== tx.width) {
        throw new Error(`test-time augmentation needs a model whose output is [${n}, K, ${tx.height}, ${tx.width}] for an input [${n}, ${c}, ${tx.height}, ${tx.width}], got [${y.shape.join(', ')}]`);
      }
      return { data: Float32Array.from(y.toArray() as ArrayLike<number>), k: y.shape[1] };
    }));
    k = out.k;
    const prob = untransformPlanes(toProbabilities(out.data, n, k, h * w), n * k, h, w, t);
    if (!sum) sum = prob;
    else for (let i = 0; i < sum.length; i++) sum[i] += prob[i];
  }
  const inv = 1 / transforms.length;
  for (let i = 0; i < sum!.length; i++) sum![i] *= inv;
  return { data: sum!, channels: k };
}
