// Manhattan-decay attention (MaSA): the fused decay_attention kernel with its dedicated backward
// kernel, and masa(), the layer's functional form (q/k/v projections, decomposed or full).
import { apply, apply1, defineOp } from '../op';
import { shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { linear } from './linalg';
import { contiguous, permute, reshape } from './view';

export type DecayAttentionAttrs = { gamma: number; height: number; width: number };

function checkAttention([q, k, v]: Tensor[], { gamma, height, width }: DecayAttentionAttrs): void {
  if (q.ndim !== 3) throw new Error(`decay_attention: q must be 3-D [B, L, D], got ${shapeStr(q.shape)}`);
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    if (t.shape.join() !== q.shape.join()) throw new Error(`decay_attention: ${name} is ${shapeStr(t.shape)} but q is ${shapeStr(q.shape)}; q, k, v must have the same shape`);
    if (t.dtype !== q.dtype) throw new Error(`decay_attention: dtypes differ (q ${q.dtype}, ${name} ${t.dtype})`);
  }
  if (q.dtype !== 'float32' && q.dtype !== 'float64') throw new Error(`decay_attention: expected float tensors, got ${q.dtype}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) throw new Error(`decay_attention: height and width must be positive integers, got ${height} and ${width}`);
  if (height * width !== q.shape[1]) throw new Error(`decay_attention: height*width = ${height}*${width} = ${height * width} does not match the sequence length L = ${q.shape[1]}`);
  if (!Number.isFinite(gamma) || gamma < 0) throw new Error(`decay_attention: gamma must be a finite number >= 0, got ${gamma}`);
  if (q.shape[2] < 1) throw new Error(`decay_attention: the feature size D must be >= 1, got ${shapeStr(q.shape)}`);
}

export const decayAttentionBackwardOp = defineOp<DecayAttentionAttrs>({
  name: 'decay_attention_backward',
  infer([q]) {
    return [0, 1, 2].map(() => ({ shape: q.shape.slice(), dtype: q.dtype }));
  },
});

export const decayAttentionOp = defineOp<DecayAttentionAttrs>({
  name: 'decay_attention',
  infer(inputs, attrs) {
    checkAttention(inputs, attrs);
    return [{ shape: inputs[0].shape.slice(), dtype: inputs[0].dtype }];
  },
  // q k^T (B*L*L*D) and A v (B*L*L*D); softmax and the decay product are not counted.
  macs: ([q]) => 2 * q.shape[0] * q.shape[1] * q.shape[1] * q.shape[2],
  backward({ inputs, attrs }, [g]) {
    if (!g) return [null, null, null];
    return apply(decayAttentionBackwardOp, [...inputs, g], attrs).map((t, i) => (inputs[i].requiresGrad ? t : null));
  },
});

/**
 * softmax(q k^T / sqrt(D)) * Dm, then times v, for q, k, v of shape [B, L, D] with L = height *
 * width and Dm[n, m] = gamma^(Manhattan distance of positions n and m on the height x width
 * grid). height = 1 gives the 1-D decay gamma^|i - j|.
 */
export function decayAttention(q: Tensor, k: Tensor, v: Tensor, { gamma, height = 1, width }: { gamma: number; height?: number; width?: number }): Tensor {
  const w = width ?? (q.ndim === 3 ? q.shape[1] / height : NaN);
  return apply1(decayAttentionOp, [q, k, v], { gamma, height, width: w });
}

export interface MasaParams {
  wq: Tensor; bq: Tensor;
  wk: Tensor; bk: Tensor;
  wv: Tensor; bv: Tensor;
}

/** Projects [B, L, C] sequences with the shared q/k/v Linear layers and attends. */
function attend(seq: Tensor, p: MasaParams, gamma: number, height: number, width: number): Tensor {
  return decayAttention(linear(seq, p.wq, p.bq), linear(seq, p.wk, p.bk), linear(seq, p.wv, p.bv), { gamma, height, width });
}

/**
 * Manhattan self-attention on x [N, C, H, W] (single head, d = C). Decomposed (default): a
 * 1-D pass within each image row, then a 1-D pass within each column on the row pass's output,
 * both with the same projections. Full: one attention over all H*W positions with the 2-D decay.
 */
export function masa(x: Tensor, params: MasaParams, { gamma = 0.9, decomposed = true }: { gamma?: number; decomposed?: boolean } = {}): Tensor {
  if (x.ndim !== 4) throw new Error(`masa: input must be 4-D [N, C, H, W], got ${shapeStr(x.shape)}`);
  const [N, C, H, W] = x.shape;
  for (const k of ['wq', 'wk', 'wv'] as const) {
    const w = params[k];
    if (!(w instanceof Tensor) || w.shape.join() !== `${C},${C}`) throw new Error(`masa: ${k} must be [${C}, ${C}] for ${C} channels, got ${w instanceof Tensor ? shapeStr(w.shape) : typeof w}`);
  }
  const nhwc = permute(x, [0, 2, 3, 1]);
  if (!decomposed) {
    const out = attend(reshape(contiguous(nhwc), [N, H * W, C]), params, gamma, H, W);
    return permute(reshape(out, [N, H, W, C]), [0, 3, 1, 2]);
  }
  const rows = attend(reshape(contiguous(nhwc), [N * H, W, C]), params, gamma, 1, W);
  const cols = contiguous(permute(reshape(rows, [N, H, W, C]), [0, 2, 1, 3]));  // [N, W, H, C]
  const out = attend(reshape(cols, [N * W, H, C]), params, gamma, 1, H);
  return permute(reshape(out, [N, W, H, C]), [0, 3, 2, 1]);
}
