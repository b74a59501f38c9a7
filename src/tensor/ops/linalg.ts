// Matrix products: bmm (the kernel, with transposition flags so backward needs no copies),
// matmul with batch broadcasting, and linear.
import { apply1, defineOp } from '../op';
import { broadcastShapes, numel, shapeStr } from '../shape';
import { Tensor } from '../tensor';
import { add } from './elementwise';
import { expand, reshape } from './view';

type BmmAttrs = { transA: boolean; transB: boolean };

export const bmmOp = defineOp<BmmAttrs>({
  name: 'bmm',
  infer([a, b], { transA, transB }) {
    if (a.ndim !== 3 || b.ndim !== 3) throw new Error(`bmm: expected 3-D tensors, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
    if (a.dtype !== b.dtype) throw new Error(`bmm: dtypes differ (${a.dtype} and ${b.dtype})`);
    if (a.dtype !== 'float32' && a.dtype !== 'float64') throw new Error(`bmm: expected float tensors, got ${a.dtype}`);
    const [B, M, K] = transA ? [a.shape[0], a.shape[2], a.shape[1]] : a.shape;
    const [B2, K2, N] = transB ? [b.shape[0], b.shape[2], b.shape[1]] : b.shape;
    if (B !== B2) throw new Error(`bmm: batch sizes differ (${B} and ${B2})`);
    if (K !== K2) throw new Error(`bmm: inner dimensions differ: ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} @ ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''} (${K} vs ${K2})`);
    return [{ shape: [B, M, N], dtype: a.dtype }];
  },
  kernelAttrs: ({ transA, transB }) => ({ transA: transA ? 1 : 0, transB: transB ? 1 : 0 }),
  // B*M*N*K: out [B, M, N], each element a K-long dot product.
  macs: ([a], [y], { transA }) => y.size * (transA ? a.shape[1] : a.shape[2]),
  backward({ inputs: [a, b], attrs: { transA: tA, transB: tB } }, [g]) {
    if (!g) return [null, null];
    const ga = a.requiresGrad ? (tA ? bmm(b, g, tB, true) : bmm(g, b, false, !tB)) : null;
    const gb = b.requiresGrad ? (tB ? bmm(g, a, true, tA) : bmm(a, g, !tA, false)) : null;
    return [ga, gb];
  },
});

export function bmm(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  return apply1(bmmOp, [a, b], { transA, transB });
}

/** Matrix product with NumPy semantics (1-D operands, broadcast batch dimensions). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0) throw new Error('matmul: operands must have at least one dimension');
  const a2 = a.ndim === 1 ? reshape(a, [1, a.shape[0]]) : a;
  const b2 = b.ndim === 1 ? reshape(b, [b.shape[0], 1]) : b;
  const [M, K] = a2.shape.slice(-2);
  const [K2, N] = b2.shape.slice(-2);
  if (K !== K2) throw new Error(`matmul: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} cannot be multiplied (${K} vs ${K2})`);
  const batch = broadcastShapes(a2.shape.slice(0, -2), b2.shape.slice(0, -2), 'matmul');
  const B = numel(batch);
  const a3 = reshape(expand(a2, [...batch, M, K]), [B, M, K]);
  const b3 = reshape(expand(b2, [...batch, K, N]), [B, K, N]);
  let out = reshape(bmm(a3, b3), [...batch, M, N]);
  if (a.ndim === 1) out = reshape(out, [...batch, N]);
  if (b.ndim === 1) out = reshape(out, out.shape.slice(0, -1));
  return out;
}

/** y = x W^T + b, with W of shape [out, in] (PyTorch layout). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.ndim !== 2) throw new Error(`linear: weight must be 2-D [out, in], got ${shapeStr(weight.shape)}`);
  const [O, I] = weight.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== I) throw new Error(`linear: input has ${x.shape[x.ndim - 1]} features but weight expects ${I} (input ${shapeStr(x.shape)}, weight ${shapeStr(weight.shape)})`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O)) throw new Error(`linear: bias must be [${O}], got ${shapeStr(bias.shape)}`);
  const lead = x.shape.slice(0, -1);
  const x3 = reshape(x, [1, numel(lead), I]);
  const y = bmm(x3, reshape(weight, [1, O, I]), false, true);
  const y2 = reshape(y, [...lead, O]);
  if (!bias) return y2;
  const out = add(y2, bias);
  // The product without the bias is read by nothing later (bmm differentiates from its inputs,
  // add from its gradient alone): free it now instead of holding it, with the biased copy,
  // until backward (PyTorch's addmm never materialises it).
  for (const t of [y2, y]) t.releaseData('linear: the product before the bias is freed once the bias is added');
  return out;
}
