// Attention ops. scaledDotProductAttention: the fused softmax(q k^T * scale) v kernel with a
// dedicated backward kernel (flash-style: only the row log-sum-exp is kept for backward).
// Manhattan-decay attention (MaSA): the fused decay_attention kernel with its dedicated backward
// kernel, and masa(), the layer's functional form (q/k/v projections, decomposed or full).
import { isGradEnabled } from '../grad-mode';
import { apply, apply1, defineOp } from '../op';
import { runOutputs } from './run';
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

// ---- scaled dot-product attention -----------------------------------------------------------

export type SdpaAttrs = { scale: number };

function checkSdpa([q, k, v]: Tensor[], { scale }: SdpaAttrs): void {
  const where = 'scaledDotProductAttention';
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.ndim !== 4) throw new Error(`${where}: ${name} must be 4-D [B, H, L, D], got ${name} ${shapeStr(t.shape)}`);
  }
  if (q.dtype !== 'float32' && q.dtype !== 'float64') throw new Error(`${where}: expected float32 or float64 tensors, got q ${q.dtype}`);
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    if (t.dtype !== q.dtype) throw new Error(`${where}: dtypes differ (q ${q.dtype}, ${name} ${t.dtype})`);
  }
  const [B, H, , D] = q.shape;
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D) {
    throw new Error(`${where}: k must be [B, H, Lk, D] = [${B}, ${H}, Lk, ${D}] for q ${shapeStr(q.shape)}, got k ${shapeStr(k.shape)}`);
  }
  if (v.shape[0] !== B || v.shape[1] !== H || v.shape[2] !== k.shape[2]) {
    throw new Error(`${where}: v must be [B, H, Lk, Dv] = [${B}, ${H}, ${k.shape[2]}, Dv] for k ${shapeStr(k.shape)}, got v ${shapeStr(v.shape)}`);
  }
  if (k.shape[2] < 1) throw new Error(`${where}: there must be at least one key (Lk >= 1), got k ${shapeStr(k.shape)}`);
  if (D < 1 || v.shape[3] < 1) throw new Error(`${where}: feature sizes must be >= 1, got q ${shapeStr(q.shape)} and v ${shapeStr(v.shape)}`);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new Error(`${where}: scale must be a finite number, got ${scale}`);
}

/** q, k, v, the forward's output and row log-sum-exp, dOut -> dq, dk, dv. */
export const sdpaBackwardOp = defineOp<SdpaAttrs>({
  name: 'scaled_dot_product_attention_backward',
  infer([q, k, v]) {
    return [q, k, v].map((t) => ({ shape: t.shape.slice(), dtype: t.dtype }));
  },
});

export const sdpaOp = defineOp<SdpaAttrs>({
  name: 'scaled_dot_product_attention',
  infer(inputs, attrs) {
    checkSdpa(inputs, attrs);
    const [q, , v] = inputs;
    const [B, H, Lq] = q.shape;
    // The output, and the row log-sum-exp of the scaled scores (what backward needs).
    return [{ shape: [B, H, Lq, v.shape[3]], dtype: q.dtype }, { shape: [B, H, Lq], dtype: q.dtype }];
  },
  forward(inputs, attrs, saved) {
    const [out, lse] = runOutputs(sdpaOp as never, inputs, sdpaOp.infer!(inputs, attrs), attrs);
    if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) saved.lse = lse;
    else lse.dispose();
    return [out];
  },
  // q k^T (Lq*Lk*D) and P v (Lq*Lk*Dv) per (b, h); the softmax is not counted.
  macs: ([q, k, v]) => q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3]),
  backward({ inputs, outputs, attrs, saved }, [g]) {
    if (!g) return [null, null, null];
    return apply(sdpaBackwardOp, [...inputs, outputs[0], saved.lse as Tensor, g], attrs).map((t, i) => (inputs[i].requiresGrad ? t : null));
  },
});

/**
 * softmax(q k^T * scale) v over the last two dimensions: q [B, H, Lq, D], k [B, H, Lk, D],
 * v [B, H, Lk, Dv] -> [B, H, Lq, Dv]; scale defaults to 1 / sqrt(D). Lq may differ from Lk
 * (e.g. SegFormer's spatially reduced keys) and Dv from D. One fused kernel on each backend;
 * the Lq x Lk score matrix is never stored.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, { scale }: { scale?: number } = {}): Tensor {
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (!(t instanceof Tensor)) throw new Error(`scaledDotProductAttention: ${name} must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  }
  for (const [name, t] of [['k', k], ['v', v]] as const) {
    if (t.device !== q.device) throw new Error(`scaledDotProductAttention: q is on ${q.device} but ${name} is on ${t.device}; move them to one device`);
  }
  const s = scale ?? (q.ndim === 4 ? 1 / Math.sqrt(q.shape[3]) : NaN);
  return apply1(sdpaOp, [q, k, v], { scale: s });
}
