// Cases for Manhattan-decay attention (kernel and MaSA layer), the T-PEN expansion and the
// segmentation losses.
import * as sc from '../../../src';
import type { OpCase } from '../case';
import * as R from '../reference';
import * as N from '../reference-nn2';

const attn = ['decay_attention', 'decay_attention_backward'];

const attentionCases: [string, number, number, number, number, number][] = [
  // name, B, D, gamma, height, width
  ['1-D row', 2, 3, 0.8, 1, 7],
  ['1-D column layout', 2, 8, 0.9, 5, 1],
  ['2-D 3x4', 2, 5, 0.7, 3, 4],
  ['2-D 2x3 gamma 1', 1, 4, 1, 2, 3],
  // Rows longer than the CPU softmax's vector width with a tail (23 = 2 x 8 + 7; 5 x 7 = 35),
  // and decay runs on both sides of each query.
  ['1-D row of 23', 2, 4, 0.85, 1, 23],
  ['2-D 5x7', 1, 3, 0.75, 5, 7],
  // Heads of whole vectors take the CPU's register-tiled forward (6 query rows per tile, a tail
  // of rows, keys past the last whole vector).
  ['1-D row of 37, head of 32', 3, 32, 0.9, 1, 37],
  ['2-D 5x7, head of 16', 2, 16, 0.8, 5, 7],
];

const sdpaOps = ['scaled_dot_product_attention', 'scaled_dot_product_attention_backward'];
const sdpaCases: [string, number, number, number, number, number, number, number | undefined][] = [
  // name, B, H, Lq, Lk, D, Dv, scale (undefined: the default 1/sqrt(D))
  ['Lq = Lk, D = Dv', 2, 2, 5, 5, 4, 4, undefined],
  ['Lq != Lk, D != Dv (spatial reduction)', 1, 3, 7, 3, 4, 6, undefined],
  ['one query, explicit scale', 2, 1, 1, 9, 3, 2, 0.7],
  ['one key (softmax of one score)', 1, 2, 4, 1, 3, 5, undefined],
  // Past one 64-row query block and one 64-row key block of the CPU kernel, over the 128-row
  // query chunk of its backward, and over several 32-row CUDA tiles.
  ['block boundaries Lq 130 Lk 66', 1, 1, 130, 66, 2, 3, 0.9],
];

const masaParams = (C: number) => [[C, C], [C], [C, C], [C], [C, C], [C]].map((shape) => ({ shape }));

export const nn2Cases: OpCase[] = [
  ...attentionCases.map(([label, B, D, gamma, height, width]): OpCase => ({
    name: `decay_attention ${label}`,
    ops: attn,
    inputs: [0, 1, 2].map(() => ({ shape: [B, height * width, D] })),
    run: ([q, k, v]) => sc.F.decayAttention(q, k, v, { gamma, height, width }),
    ref: ([q, k, v]) => N.decayAttention(q, k, v, gamma, height, width),
  })),
  {
    name: 'decay_attention non-contiguous inputs', ops: attn,
    inputs: [0, 1, 2].map(() => ({ shape: [2, 6, 4], noncontig: true })),
    run: ([q, k, v]) => sc.F.decayAttention(q.mul(2), k, v, { gamma: 0.85, height: 2, width: 3 }),
    ref: ([q, k, v]) => N.decayAttention(R.map(q, (x) => 2 * x), k, v, 0.85, 2, 3),
  },
  ...sdpaCases.map(([label, B, H, Lq, Lk, D, Dv, scale]): OpCase => ({
    name: `scaled_dot_product_attention ${label}`,
    ops: sdpaOps,
    inputs: [{ shape: [B, H, Lq, D] }, { shape: [B, H, Lk, D] }, { shape: [B, H, Lk, Dv] }],
    run: ([q, k, v]) => sc.F.scaledDotProductAttention(q, k, v, scale === undefined ? {} : { scale }),
    ref: ([q, k, v]) => N.sdpa(q, k, v, scale ?? 1 / Math.sqrt(D)),
  })),
  {
    name: 'scaled_dot_product_attention non-contiguous inputs, scaled scores up to ~40',
    ops: sdpaOps,
    inputs: [{ shape: [2, 2, 6, 5], noncontig: true }, { shape: [2, 2, 4, 5], noncontig: true }, { shape: [2, 2, 4, 3], noncontig: true }],
    // Large scores: a softmax without the max subtraction would lose the small probabilities.
    run: ([q, k, v]) => sc.F.scaledDotProductAttention(q.mul(3), k, v, { scale: 2 }),
    ref: ([q, k, v]) => N.sdpa(R.map(q, (x) => 3 * x), k, v, 2),
  },
  // End to end through the q/k/v Linear layers (these need the bmm kernel).
  ...[true, false].map((decomposed): OpCase => ({
    name: `masa ${decomposed ? 'decomposed' : 'full'} [1, 4, 3, 5]`,
    ops: [...attn, 'bmm', 'permute', 'reshape', 'contiguous'],
    inputs: [{ shape: [1, 4, 3, 5] }, ...masaParams(4)],
    run: ([x, wq, bq, wk, bk, wv, bv]) => sc.F.masa(x, { wq, bq, wk, bk, wv, bv }, { gamma: 0.8, decomposed }),
    ref: ([x, wq, bq, wk, bk, wv, bv]) => N.masa(x, wq, bq, wk, bk, wv, bv, 0.8, decomposed),
  })),
  ...[3, 2, 5].map((order): OpCase => ({
    name: `tpen order ${order}`,
    ops: ['tpen', 'tpen_backward'],
    inputs: [{ shape: [2, 3, 4, 5] }, { shape: [order, 3] }],
    run: ([x, a]) => sc.F.tpen(x, a),
    ref: ([x, a]) => N.tpen(x, a),
  })),
  ...(['mean', 'sum', 'none'] as const).map((reduction): OpCase => ({
    name: `bceWithLogits ${reduction}`,
    ops: ['bce_with_logits', 'bce_with_logits_backward', 'reduce'],
    inputs: [{ shape: [2, 3, 5] }, { shape: [2, 3, 5], kind: 'unit', grad: false }],
    run: ([x, t]) => sc.F.bceWithLogits(x, t, { reduction }),
    ref: ([x, t]) => N.reduceAll(N.bceElements(x, t, () => 1), reduction),
  })),
  {
    name: 'bceWithLogits posWeight number, extreme logits', ops: ['bce_with_logits', 'bce_with_logits_backward'],
    inputs: [{ shape: [2, 1, 4, 5] }, { shape: [2, 1, 4, 5], kind: 'mask', grad: false }],
    // Logits up to about +-50: exp(-x) would overflow float32 in a naive formula.
    run: ([x, t]) => sc.F.bceWithLogits(x.mul(20), t, { posWeight: 2.5, reduction: 'none' }),
    ref: ([x, t]) => N.bceElements(R.map(x, (v) => 20 * v), t, () => 2.5),
  },
  {
    name: 'bceWithLogits logits +-30 exactly', ops: ['bce_with_logits'],
    inputs: [{ shape: [4, 3], kind: 'mask' }, { shape: [4, 3], kind: 'mask', grad: false }],
    run: ([s, t]) => sc.F.bceWithLogits(s.mul(60).add(-30), t, { posWeight: 3, reduction: 'sum' }),
    ref: ([s, t]) => N.reduceAll(N.bceElements(R.map(s, (v) => 60 * v - 30), t, () => 3), 'sum'),
  },
  {
    name: 'bceWithLogits posWeight tensor broadcast', ops: ['bce_with_logits', 'bce_with_logits_backward'],
    inputs: [{ shape: [2, 3, 5] }, { shape: [2, 3, 5], kind: 'unit', grad: false }, { shape: [5], kind: 'positive', grad: false }],
    run: ([x, t, pw]) => sc.F.bceWithLogits(x, t, { posWeight: pw }),
    ref: ([x, t, pw]) => N.reduceAll(N.bceElements(x, t, (i) => pw.data[i % 5]), 'mean'),
  },
  ...(['batch', 'per-image'] as const).map((reduction): OpCase => ({
    name: `diceLoss ${reduction}`,
    ops: ['unary', 'binary', 'reduce'],
    inputs: [{ shape: [3, 1, 4, 4] }, { shape: [3, 1, 4, 4], kind: 'mask', grad: false }],
    run: ([x, t]) => sc.F.diceLoss(x, t, { reduction }),
    ref: ([x, t]) => N.dice(R.map(x, R.sigmoid), t, 1, reduction === 'per-image'),
  })),
  {
    name: 'diceLoss from probabilities', ops: ['binary', 'reduce'],
    inputs: [{ shape: [2, 6, 5], kind: 'unit' }, { shape: [2, 6, 5], kind: 'mask', grad: false }],
    run: ([p, t]) => sc.F.diceLoss(p, t, { fromLogits: false, smooth: 0.5 }),
    ref: ([p, t]) => N.dice(p, t, 0.5, false),
  },
  ...([['batch', 0.3, 0.7], ['per-image', 0.3, 0.7], ['batch', 0.5, 0.5], ['per-image', 0.9, 0.1]] as const).map(([reduction, alpha, beta]): OpCase => ({
    name: `tverskyLoss ${reduction} alpha ${alpha} beta ${beta}`,
    ops: ['unary', 'binary', 'reduce'],
    inputs: [{ shape: [3, 1, 4, 4] }, { shape: [3, 1, 4, 4], kind: 'mask', grad: false }],
    run: ([x, t]) => sc.F.tverskyLoss(x, t, { alpha, beta, reduction }),
    ref: ([x, t]) => N.tversky(R.map(x, R.sigmoid), t, alpha, beta, 1, reduction === 'per-image'),
  })),
  {
    name: 'tverskyLoss from probabilities, soft targets', ops: ['binary', 'reduce'],
    inputs: [{ shape: [2, 6, 5], kind: 'unit' }, { shape: [2, 6, 5], kind: 'unit', grad: false }],
    run: ([p, t]) => sc.F.tverskyLoss(p, t, { fromLogits: false, alpha: 0.4, beta: 0.8, smooth: 0.5 }),
    ref: ([p, t]) => N.tversky(p, t, 0.4, 0.8, 0.5, false),
  },
  ...([[2, null, 'mean'], [2, 0.25, 'none'], [1.5, 0.75, 'sum'], [1, null, 'mean'], [0, null, 'mean']] as const).map(([gamma, alpha, reduction]): OpCase => ({
    name: `focalLoss gamma ${gamma} alpha ${alpha ?? 'none'} ${reduction}`,
    ops: ['bce_with_logits', 'bce_with_logits_backward', 'unary', 'binary', 'reduce'],
    inputs: [{ shape: [2, 1, 3, 4] }, { shape: [2, 1, 3, 4], kind: 'mask', grad: false }],
    // Logits up to about +-6, so confident pixels (1 - p_t near 0) are included.
    run: ([x, t]) => sc.F.focalLoss(x.mul(3), t, { gamma, alpha: alpha ?? undefined, reduction }),
    ref: ([x, t]) => N.reduceAll(N.focalElements(R.map(x, (v) => 3 * v), t, gamma, alpha), reduction),
  })),
  {
    name: 'focalLoss soft targets', ops: ['bce_with_logits', 'bce_with_logits_backward', 'unary', 'binary', 'reduce'],
    inputs: [{ shape: [3, 5] }, { shape: [3, 5], kind: 'unit', grad: false }],
    run: ([x, t]) => sc.F.focalLoss(x, t, { gamma: 2, alpha: 0.3 }),
    ref: ([x, t]) => N.reduceAll(N.focalElements(x, t, 2, 0.3), 'mean'),
  },
  ...([[0.25, 1], [0.1, 2.5], [1, 1]] as const).map(([ratio, pw]): OpCase => ({
    name: `ohemBce ratio ${ratio} posWeight ${pw}`,
    ops: ['bce_with_logits', 'bce_with_logits_backward', 'binary', 'reduce'],
    inputs: [{ shape: [2, 1, 4, 5] }, { shape: [2, 1, 4, 5], kind: 'mask', grad: false }],
    run: ([x, t]) => sc.F.ohemBce(x, t, { ratio, posWeight: pw }),
    ref: ([x, t]) => N.ohemBce(x, t, ratio, pw),
  })),
  ...(['mean', 'sum', 'none'] as const).map((reduction): OpCase => ({
    name: `mseLoss ${reduction}`,
    ops: ['binary', 'unary', 'reduce'],
    inputs: [{ shape: [3, 7] }, { shape: [3, 7] }],
    run: ([a, b]) => sc.F.mseLoss(a, b, { reduction }),
    ref: ([a, b]) => N.reduceAll(R.zip(a, b, (x, y) => (x - y) ** 2), reduction),
  })),
  {
    // The recomputation in backward must give the plain composition's gradients for the input
    // and for the parameter the function closes over (w is found by watching fn's ops).
    name: 'checkpoint of gelu(x w) * x-sum', ops: ['checkpoint', 'bmm', 'unary', 'binary', 'reduce'],
    inputs: [{ shape: [3, 4] }, { shape: [4, 5] }],
    run: ([x, w]) => sc.checkpoint((a) => sc.F.gelu(a.matmul(w)).mul(a.sum(1, true)), x),
    ref: ([x, w]) => {
      const h = R.map(R.matmul(x, w), R.gelu), s = R.reduce(x, [1], true, 0, (acc, v) => acc + v);
      return R.ref(h.shape.slice(), (i) => h.data[i] * s.data[Math.floor(i / 5)]);
    },
  },
];
