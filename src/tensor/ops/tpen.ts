// T-PEN power expansion (NExNet's trainable progressively expanded neuron, before its 1x1
// mixing conv): a fused kernel and a dedicated backward kernel.
import { apply, apply1, defineOp } from '../op';
import { shapeStr } from '../shape';
import { Tensor } from '../tensor';

export const MAX_TPEN_ORDER = 5;

export const tpenBackwardOp = defineOp({
  name: 'tpen_backward',
  infer([x, coeffs]) {
    return [{ shape: x.shape.slice(), dtype: x.dtype }, { shape: coeffs.shape.slice(), dtype: x.dtype }];
  },
});

export const tpenOp = defineOp({
  name: 'tpen',
  infer([x, coeffs]) {
    if (x.ndim !== 4) throw new Error(`tpen: input must be 4-D [N, C, H, W], got ${shapeStr(x.shape)}`);
    if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`tpen: expected a float tensor, got ${x.dtype}`);
    if (coeffs.dtype !== x.dtype) throw new Error(`tpen: dtypes differ (input ${x.dtype}, coeffs ${coeffs.dtype})`);
    const C = x.shape[1];
    if (coeffs.ndim !== 2 || coeffs.shape[1] !== C) throw new Error(`tpen: coeffs must be [order, ${C}] for ${C} channels, got ${shapeStr(coeffs.shape)}`);
    const order = coeffs.shape[0];
    if (order < 1 || order > MAX_TPEN_ORDER) throw new Error(`tpen: expansion order must be 1..${MAX_TPEN_ORDER}, got ${order}`);
    return [{ shape: [x.shape[0], order * C, x.shape[2], x.shape[3]], dtype: x.dtype }];
  },
  backward({ inputs: [x, coeffs] }, [g]) {
    if (!g) return [null, null];
    const [dx, dc] = apply(tpenBackwardOp, [x, coeffs, g], {});
    return [x.requiresGrad ? dx : null, coeffs.requiresGrad ? dc : null];
  },
});

/**
 * out [N, order*C, H, W] = concat over k = 1..order of coeffs[k-1, c] * x^k, for x [N, C, H, W]
 * and coeffs [order, C]: channel block k-1 holds the k-th power.
 */
export function tpen(x: Tensor, coeffs: Tensor): Tensor {
  return apply1(tpenOp, [x, coeffs], {});
}
