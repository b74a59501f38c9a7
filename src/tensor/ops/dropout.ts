// Dropout and channel dropout. The kernel draws its mask from a counter-based hash of (seed,
// element or channel index), so a seed fully determines the mask on every backend; the seed
// is an attribute, which makes the backward (the same op on the gradient) and finite
// differences reuse the mask.
import { apply1, defineOp, OpDef } from '../op';
import { shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { defaultGenerator, Generator } from '../random';
import { reshape } from './view';
import { checkFloat } from './run';

type DropoutAttrs = { p: number; seed: number; group: number };

export const dropoutOp: OpDef<DropoutAttrs> = defineOp<DropoutAttrs>({
  name: 'dropout',
  infer([x]) {
    checkFloat(x, 'dropout');
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  backward({ attrs }, [g]) {
    // y = x * mask / (1 - p) is linear in x: the gradient goes through the same mask.
    return [g ? apply1(dropoutOp, [g], attrs) : null];
  },
});

export interface DropoutOptions {
  /** Fixes the mask (an integer in [0, 2^53)); default: drawn from the generator. */
  seed?: number;
  generator?: Generator;
}

function drawSeed(where: string, opts: DropoutOptions): number {
  if (opts.seed !== undefined) {
    if (!Number.isSafeInteger(opts.seed) || opts.seed < 0) throw new Error(`${where}: seed must be a non-negative safe integer, got ${opts.seed}`);
    return opts.seed;
  }
  const g = opts.generator ?? defaultGenerator;
  return g.nextU32() * 2 ** 21 + (g.nextU32() >>> 11); // 53 random bits
}

function dropoutImpl(where: string, x: Tensor, p: number, training: boolean, group: number, opts: DropoutOptions): Tensor {
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new Error(`${where}: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return reshape(x, x.shape.slice());
  return apply1(dropoutOp, [x], { p, seed: drawSeed(where, opts), group });
}

/** Zeroes elements with probability p and scales the rest by 1/(1-p); identity unless training. */
export function dropout(x: Tensor, p = 0.5, training = true, opts: DropoutOptions = {}): Tensor {
  return dropoutImpl('dropout', x, p, training, 1, opts);
}

/** Zeroes whole channels of [N, C, ...] with probability p and scales the rest by 1/(1-p). */
export function dropout2d(x: Tensor, p = 0.5, training = true, opts: DropoutOptions = {}): Tensor {
  if (x.ndim < 3) throw new Error(`dropout2d: input must be [N, C, H, W] (at least 3-D), got ${shapeStr(x.shape)}`);
  return dropoutImpl('dropout2d', x, p, training, x.shape.slice(2).reduce((a, b) => a * b, 1), opts);
}

/**
 * Stochastic depth ("drop path", timm's DropPath): zeroes each sample of the batch (dim 0)
 * with probability p and scales the others by 1/(1-p); identity unless training. The same
 * dropout kernel with one mask entry per sample (a group spans all of a sample's elements).
 */
export function dropPath(x: Tensor, p: number, training = true, opts: DropoutOptions = {}): Tensor {
  if (x.ndim < 1 || x.shape[0] < 1) throw new Error(`dropPath: input must have a batch dimension, got ${shapeStr(x.shape)}`);
  return dropoutImpl('dropPath', x, p, training, Math.max(1, x.size / x.shape[0]), opts);
}
