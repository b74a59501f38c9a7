// Cases for the core ops: elementwise, views, reductions, softmax, matmul, conv2d.
import * as sc from '../../../src';
import type { OpCase } from '../case';
import * as R from '../reference';

const unaryRefs: [string, (x: sc.Tensor) => sc.Tensor, (v: number) => number, 'randn' | 'positive'][] = [
  ['neg', (x) => x.neg(), (v) => -v, 'randn'],
  ['exp', (x) => x.exp(), Math.exp, 'randn'],
  ['log', (x) => x.log(), Math.log, 'positive'],
  ['sqrt', (x) => x.sqrt(), Math.sqrt, 'positive'],
  ['abs', (x) => x.abs(), Math.abs, 'randn'],
  ['relu', (x) => x.relu(), (v) => Math.max(0, v), 'randn'],
  ['gelu', (x) => x.gelu(), R.gelu, 'randn'],
  ['sigmoid', (x) => x.sigmoid(), R.sigmoid, 'randn'],
  ['tanh', (x) => x.tanh(), Math.tanh, 'randn'],
  ['square', (x) => x.square(), (v) => v * v, 'randn'],
  ['pow 3', (x) => x.pow(3), (v) => v ** 3, 'randn'],
  ['pow 0.7', (x) => x.pow(0.7), (v) => v ** 0.7, 'positive'],
  ['clamp', (x) => x.clamp(-0.5, 0.7), (v) => Math.min(0.7, Math.max(-0.5, v)), 'randn'],
  ['affine', (x) => x.mul(2.5).add(-1), (v) => 2.5 * v - 1, 'randn'],
  ['reciprocal', (x) => sc.F.div(sc.onesLike(x), x), (v) => 1 / v, 'positive'],
];

const binaryRefs: [string, (a: sc.Tensor, b: sc.Tensor) => sc.Tensor, (x: number, y: number) => number, 'randn' | 'positive'][] = [
  ['add', (a, b) => a.add(b), (x, y) => x + y, 'randn'],
  ['sub', (a, b) => a.sub(b), (x, y) => x - y, 'randn'],
  ['mul', (a, b) => a.mul(b), (x, y) => x * y, 'randn'],
  ['div', (a, b) => a.div(b), (x, y) => x / y, 'positive'],
  ['pow', (a, b) => a.pow(b), (x, y) => x ** y, 'positive'],
  ['maximum', (a, b) => a.maximum(b), Math.max, 'randn'],
  ['minimum', (a, b) => a.minimum(b), Math.min, 'randn'],
];

const shapesBinary: [number[], number[], string][] = [
  [[3, 5], [3, 5], 'same'],
  [[2, 3, 7], [7], 'row broadcast'],
  [[4, 1, 5], [1, 3, 1], 'both broadcast'],
  [[1], [2, 3], 'scalar-like'],
];

export const coreCases: OpCase[] = [
  ...unaryRefs.map(([name, f, r, kind]): OpCase => ({
    name: `unary ${name}`,
    ops: ['unary'],
    inputs: [{ shape: [3, 17], kind, noncontig: true }],
    run: ([x]) => f(x),
    ref: ([x]) => R.map(x, r),
  })),
  {
    name: 'unary on odd size 1-D', ops: ['unary'], inputs: [{ shape: [1031] }],
    run: ([x]) => x.gelu(), ref: ([x]) => R.map(x, R.gelu),
  },
  ...binaryRefs.flatMap(([name, f, r, kind]) =>
    shapesBinary.map(([sa, sb, label]): OpCase => ({
      name: `binary ${name} ${label}`,
      ops: ['binary'],
      inputs: [{ shape: sa, kind }, { shape: sb, kind }],
      run: ([a, b]) => f(a, b),
      ref: ([a, b]) => R.zip(a, b, r),
    }))),
  {
    name: 'binary mul non-contiguous', ops: ['binary'], inputs: [{ shape: [4, 6], noncontig: true }, { shape: [4, 6], noncontig: true }],
    run: ([a, b]) => a.mul(b), ref: ([a, b]) => R.zip(a, b, (x, y) => x * y),
  },
  {
    name: 'comparisons', ops: ['binary', 'cast'], grad: false, inputs: [{ shape: [3, 4] }, { shape: [4] }],
    run: ([a, b]) => a.gt(b).to('float32').add(a.le(b).to('float32').mul(2)).add(a.eq(a).to('float32').mul(4)),
    ref: ([a, b]) => R.zip(a, b, (x, y) => (x > y ? 1 : 0) + (x <= y ? 2 : 0) + 4),
  },
  {
    name: 'where broadcast', ops: ['where', 'binary'], inputs: [{ shape: [3, 1], grad: false }, { shape: [3, 4] }, { shape: [4] }],
    run: ([c, a, b]) => sc.F.where(c.gt(0), a, b),
    ref: ([c, a, b]) => {
      const shape = [3, 4];
      return R.ref(shape, (i) => { const idx = R.unravel(i, shape); return R.bget(c, idx) > 0 ? R.bget(a, idx) : R.bget(b, idx); });
    },
  },
  {
    name: 'cast float64 round trip', ops: ['cast'], inputs: [{ shape: [5, 3] }],
    run: ([x]) => x.to('float64').mul(3).to(x.dtype), ref: ([x]) => R.map(x, (v) => 3 * v),
  },
  {
    name: 'reshape/permute/transpose/contiguous', ops: ['reshape', 'permute', 'contiguous'], inputs: [{ shape: [2, 3, 4] }],
    run: ([x]) => x.permute(2, 0, 1).contiguous().reshape(4, 6).transpose(0, 1).mul(1),
    ref: ([x]) => { const p = R.permute(R.permute(x, [2, 0, 1]), [0, 1, 2]); return R.permute({ data: p.data, shape: [4, 6] }, [1, 0]); },
  },
  // Permuted views made contiguous at sizes that cross the CPU copy's transpose tiles (16 x 64,
  // ragged edges): a batched [B, N, C] transpose and both directions of NCHW <-> NHWC.
  ...([[[3, 37, 70], [0, 2, 1]], [[2, 19, 9, 11], [0, 2, 3, 1]], [[2, 9, 11, 19], [0, 3, 1, 2]]] as [number[], number[]][]).map(([shape, perm]): OpCase => ({
    name: `permute [${perm}] of [${shape}] made contiguous`, ops: ['permute', 'contiguous'], inputs: [{ shape }],
    run: ([x]) => x.permute(...perm).contiguous().mul(1),
    ref: ([x]) => R.permute(x, perm),
  })),
  {
    name: 'narrow/slice', ops: ['narrow'], inputs: [{ shape: [5, 7] }],
    run: ([x]) => x.narrow(1, 2, 3).slice(0, 1, -1).mul(2),
    ref: ([x]) => R.ref([3, 3], (i) => 2 * x.data[(1 + Math.floor(i / 3)) * 7 + 2 + (i % 3)]),
  },
  {
    name: 'expand/squeeze/unsqueeze', ops: ['expand', 'reshape'], inputs: [{ shape: [3, 1] }],
    run: ([x]) => x.expand(2, 3, 4).unsqueeze(0).squeeze(0).mul(1),
    ref: ([x]) => R.ref([2, 3, 4], (i) => x.data[Math.floor(i / 4) % 3]),
  },
  ...([[[1], false], [[0, 2], true], [null, false]] as [number[] | null, boolean][]).flatMap(([axes, keep]) =>
    (['sum', 'mean', 'max', 'min'] as const).map((op): OpCase => ({
      name: `reduce ${op} axes=${JSON.stringify(axes)} keepdim=${keep}`,
      ops: ['reduce'],
      inputs: [{ shape: [3, 5, 4], noncontig: true }],
      run: ([x]) => x[op](axes, keep),
      ref: ([x]) => {
        const ax = axes ?? [0, 1, 2];
        if (op === 'sum') return R.reduce(x, ax, keep, 0, (a, v) => a + v);
        if (op === 'mean') return R.reduce(x, ax, keep, 0, (a, v) => a + v, (a, n) => a / n);
        if (op === 'max') return R.reduce(x, ax, keep, -Infinity, Math.max);
        return R.reduce(x, ax, keep, Infinity, Math.min);
      },
    }))),
  // Sum / mean over leading axes of a contiguous tensor (the bias-gradient path): 900 rows cross
  // its 256-row chunks, 37 columns.
  ...(['sum', 'mean'] as const).map((op): OpCase => ({
    name: `reduce ${op} over leading axes of [3, 300, 37]`, ops: ['reduce'], inputs: [{ shape: [3, 300, 37] }], tol: 1e-9,
    run: ([x]) => x[op]([0, 1]),
    ref: ([x]) => (op === 'sum' ? R.reduce(x, [0, 1], false, 0, (a, v) => a + v) : R.reduce(x, [0, 1], false, 0, (a, v) => a + v, (a, n) => a / n)),
  })),
  {
    name: 'reduce sum large (parallel path)', ops: ['reduce'], inputs: [{ shape: [300, 301] }], tol: 1e-9,
    run: ([x]) => x.sum(), ref: ([x]) => R.reduce(x, [0, 1], false, 0, (a, v) => a + v), gradTol: { atol: 1e-4 },
  },
  {
    name: 'argmax/argmin', ops: ['reduce'], grad: false, inputs: [{ shape: [4, 6] }],
    run: ([x]) => x.argmax(1).to('float32').add(x.argmin(0).to('float32').sum()),
    ref: ([x]) => {
      const am = R.ref([4], (r) => { let b = 0; for (let j = 1; j < 6; j++) if (x.data[r * 6 + j] > x.data[r * 6 + b]) b = j; return b; });
      let s = 0;
      for (let c = 0; c < 6; c++) { let b = 0; for (let r = 1; r < 4; r++) if (x.data[r * 6 + c] < x.data[b * 6 + c]) b = r; s += b; }
      return R.map(am, (v) => v + s);
    },
  },
  {
    name: 'var unbiased', ops: ['reduce', 'binary', 'unary'], inputs: [{ shape: [4, 9] }],
    run: ([x]) => x.var(1),
    ref: ([x]) => { const m = R.reduce(x, [1], true, 0, (a, v) => a + v, (a, n) => a / n); return R.reduce(R.zip(x, m, (a, b) => (a - b) ** 2), [1], false, 0, (a, v) => a + v, (a, n) => a / (n - 1)); },
  },
  ...([[1, false], [0, false], [2, true]] as [number, boolean][]).map(([dim, log]): OpCase => ({
    name: `${log ? 'logSoftmax' : 'softmax'} dim ${dim}`,
    ops: ['softmax', 'softmax_backward'],
    inputs: [{ shape: [3, 7, 5] }],
    run: ([x]) => (log ? x.logSoftmax(dim) : x.softmax(dim)),
    ref: ([x]) => R.softmax(x, dim, log),
  })),
  {
    name: 'matmul 2-D odd', ops: ['bmm'], inputs: [{ shape: [7, 13] }, { shape: [13, 5] }],
    run: ([a, b]) => a.matmul(b), ref: ([a, b]) => R.matmul(a, b),
  },
  {
    name: 'matmul batched broadcast', ops: ['bmm', 'expand'], inputs: [{ shape: [2, 3, 4, 6] }, { shape: [6, 5] }],
    run: ([a, b]) => a.matmul(b),
    ref: ([a, b]) => R.matmul(a, { shape: [2, 3, 6, 5], data: Float64Array.from({ length: 180 }, (_, i) => b.data[i % 30]) }),
  },
  {
    name: 'matmul non-contiguous', ops: ['bmm'], inputs: [{ shape: [9, 4], noncontig: true }, { shape: [4, 9], noncontig: true }],
    run: ([a, b]) => a.matmul(b), ref: ([a, b]) => R.matmul(a, b),
  },
  {
    name: 'linear', ops: ['bmm', 'binary'], inputs: [{ shape: [2, 3, 8] }, { shape: [5, 8] }, { shape: [5] }],
    run: ([x, w, b]) => sc.F.linear(x, w, b),
    ref: ([x, w, b]) => {
      const y = R.zip(R.matmul({ data: x.data, shape: [6, 8] }, R.permute(w, [1, 0])), b, (u, v) => u + v);
      return { data: y.data, shape: [2, 3, 5] };
    },
  },
  ...([
    ['conv2d 3x3 pad 1', [2, 3, 9, 8], [4, 3, 3, 3], 1, 1, 1, 1, true],
    ['conv2d stride 2 no bias', [1, 4, 11, 10], [6, 4, 3, 3], 2, 1, 1, 1, false],
    ['conv2d dilation 2 pad 2', [1, 3, 10, 9], [5, 3, 3, 3], 1, 2, 2, 1, true],
    ['conv2d 1x1', [2, 6, 5, 7], [3, 6, 1, 1], 1, 0, 1, 1, true],
    // Above 8 output channels per group a plain 1x1 is a GEMM per (image, group).
    ['conv2d 1x1 wide groups 2', [2, 8, 5, 7], [20, 4, 1, 1], 1, 0, 1, 2, true],
    ['conv2d groups 2', [1, 4, 7, 7], [6, 2, 3, 3], 1, 1, 1, 2, true],
    ['conv2d depthwise k7', [2, 5, 12, 11], [5, 1, 7, 7], 1, 3, 1, 5, true],
    ['conv2d depthwise k9', [1, 3, 10, 10], [3, 1, 9, 9], 1, 4, 1, 3, true],
    ['conv2d depthwise k31', [1, 2, 33, 31], [2, 1, 31, 31], 1, 15, 1, 2, false],
  ] as [string, number[], number[], number, number, number, number, boolean][]).map(([name, xs, ws, s, p, d, g, bias]): OpCase => ({
    name,
    ops: ['conv2d', 'conv2d_backward_input', 'conv2d_backward_weight'],
    inputs: bias ? [{ shape: xs }, { shape: ws }, { shape: [ws[0]] }] : [{ shape: xs }, { shape: ws }],
    run: ([x, w, b]) => sc.F.conv2d(x, w, b, { stride: s, padding: p, dilation: d, groups: g }),
    ref: ([x, w, b]) => R.conv2d(x, w, b ?? null, [s, s], [p, p], [d, d], g),
    gradTol: { atol: 1e-4 },
  })),
  {
    // relu(a + b) fused (residual joins); broadcasting b. ReLU's kink: generic inputs.
    name: 'addRelu with broadcasting', ops: ['add_relu', 'binary'],
    inputs: [{ shape: [2, 3, 4] }, { shape: [3, 1] }],
    run: ([a, b]) => sc.F.addRelu(a, b),
    ref: ([a, b]) => R.map(R.zip(a, b, (u, v) => u + v), (v) => Math.max(0, v)),
  },
  // GELU -> conv as one training op (GELU's output recomputed in backward); the reference is
  // the plain composition.
  ...([
    ['conv2d with GELU before, 1x1', [2, 6, 5, 7], [4, 6, 1, 1], 1, 0, 1, true],
    ['conv2d with GELU before, 3x3 groups 2 no bias', [1, 4, 7, 9], [6, 2, 3, 3], 1, 1, 2, false],
  ] as [string, number[], number[], number, number, number, boolean][]).map(([name, xs, ws, s, p, g, bias]): OpCase => ({
    name,
    ops: ['act_conv2d', 'conv2d_backward_input', 'conv2d_backward_weight'],
    inputs: bias ? [{ shape: xs }, { shape: ws }, { shape: [ws[0]] }] : [{ shape: xs }, { shape: ws }],
    run: ([x, w, b]) => sc.F.conv2d(x, w, b, { stride: s, padding: p, groups: g, preActivation: 'gelu' }),
    ref: ([x, w, b]) => R.conv2d(R.map(x, R.gelu), w, b ?? null, [s, s], [p, p], [1, 1], g),
    gradTol: { atol: 1e-4 },
  })),
  {
    name: 'conv2d with GELU before and a residual, 1x1 (MedNeXt block tail)',
    ops: ['act_conv2d', 'binary', 'conv2d_backward_input', 'conv2d_backward_weight'],
    inputs: [{ shape: [2, 6, 4, 5] }, { shape: [3, 6, 1, 1] }, { shape: [3] }, { shape: [2, 3, 4, 5] }],
    run: ([x, w, b, r]) => sc.F.conv2d(x, w, b, { preActivation: 'gelu', residual: r }),
    ref: ([x, w, b, r]) => R.zip(R.conv2d(R.map(x, R.gelu), w, b, [1, 1], [0, 0], [1, 1], 1), r, (u, v) => u + v),
    gradTol: { atol: 1e-4 },
  },
  // Fused inference convolution: the direct kernel's epilogue (3x3 and narrow 1x1 at stride 1)
  // and the GEMM path plus a separate epilogue (stride 2, depthwise, wide 1x1).
  ...([
    ['conv2d_fused 3x3 bias relu affine', [2, 5, 9, 19], [7, 5, 3, 3], 1, 1, 1, true, 'relu', true],
    ['conv2d_fused 3x3 gelu no bias', [1, 4, 8, 33], [6, 4, 3, 3], 1, 1, 1, false, 'gelu', false],
    ['conv2d_fused 1x1 gelu affine', [2, 8, 4, 16], [10, 8, 1, 1], 1, 0, 1, true, 'gelu', true],
    ['conv2d_fused 1x1 wide none affine', [1, 6, 5, 5], [80, 6, 1, 1], 1, 0, 1, true, 'none', true],
    // Rows of whole vectors: the fast whole-tile path (GELU and the affine after the tiles) next
    // to a partial channel block that takes the general tile.
    ['conv2d_fused 1x1 whole tiles gelu affine', [2, 12, 3, 48], [10, 12, 1, 1], 1, 0, 1, true, 'gelu', true],
    ['conv2d_fused 3x3 whole tiles relu affine', [1, 6, 5, 48], [10, 6, 3, 3], 1, 1, 1, true, 'relu', true],
    ['conv2d_fused stride 2 relu', [1, 3, 11, 10], [4, 3, 3, 3], 2, 1, 1, true, 'relu', false],
    ['conv2d_fused depthwise k7 gelu affine', [2, 5, 12, 11], [5, 1, 7, 7], 1, 3, 5, true, 'gelu', true],
  ] as [string, number[], number[], number, number, number, boolean, 'none' | 'relu' | 'gelu', boolean][]).map(([name, xs, ws, s, p, g, bias, act, affine]): OpCase => {
    const oc = ws[0];
    const inputs = [{ shape: xs }, { shape: ws }];
    if (bias) inputs.push({ shape: [oc] });
    if (affine) inputs.push({ shape: [oc] }, { shape: [oc] });
    const actFn = act === 'relu' ? (v: number) => Math.max(v, 0) : act === 'gelu' ? R.gelu : (v: number) => v;
    return {
      name,
      ops: ['conv2d_fused'],
      inputs,
      grad: false,
      run: (t) => sc.F.conv2dFused(t[0], t[1], bias ? t[2] : null, {
        stride: s, padding: p, groups: g, act,
        scale: affine ? t[t.length - 2] : null, shift: affine ? t[t.length - 1] : null,
      }),
      ref: (r) => {
        const y = R.conv2d(r[0], r[1], bias ? r[2] : null, [s, s], [p, p], [1, 1], g);
        const P = y.shape[2] * y.shape[3];
        const sc_ = affine ? r[r.length - 2].data : null, sh = affine ? r[r.length - 1].data : null;
        const data = y.data.map((v, i) => {
          const c = Math.floor(i / P) % oc;
          const a = actFn(v);
          return sc_ && sh ? a * sc_[c] + sh[c] : a;
        });
        return { data, shape: y.shape };
      },
    };
  }),
  ...([
    ['convTranspose2d k2 s2 (UNet up)', [1, 6, 4, 5], [6, 3, 2, 2], 2, 0, 1, true],
    ['convTranspose2d k3 s2 pad 1 groups 2', [2, 4, 3, 3], [4, 2, 3, 3], 2, 1, 2, false],
  ] as [string, number[], number[], number, number, number, boolean][]).map(([name, xs, ws, s, p, g, bias]): OpCase => ({
    name,
    ops: ['conv_transpose2d'],
    inputs: bias ? [{ shape: xs }, { shape: ws }, { shape: [ws[1] * g] }] : [{ shape: xs }, { shape: ws }],
    run: ([x, w, b]) => sc.F.convTranspose2d(x, w, b, { stride: s, padding: p, groups: g }),
    ref: ([x, w, b]) => R.convTranspose2d(x, w, b ?? null, s, p, g),
    gradTol: { atol: 1e-4 },
  })),
];
