// Cases for the network ops: pooling, interpolation, cat/stack/split/pad, batch/layer norm,
// dropout. References are plain loops in float64.
import * as sc from '../../../src';
import type { OpCase } from '../case';
import * as R from '../reference';

// ---- references -----------------------------------------------------------------------------

function pool(x: R.Ref, k: number[], s: number[], p: number[], kind: 'max' | 'avg', includePad = true): R.Ref {
  const [N, C, H, W] = x.shape;
  const OH = Math.floor((H + 2 * p[0] - k[0]) / s[0]) + 1, OW = Math.floor((W + 2 * p[1] - k[1]) / s[1]) + 1;
  const out = R.ref([N, C, OH, OW]);
  for (let nc = 0; nc < N * C; nc++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let m = -Infinity, sum = 0, cnt = 0;
        for (let i = 0; i < k[0]; i++)
          for (let j = 0; j < k[1]; j++) {
            const h = oh * s[0] - p[0] + i, w = ow * s[1] - p[1] + j;
            const inPadded = h < H + p[0] && w < W + p[1];
            if (h < 0 || w < 0 || h >= H || w >= W) { if (includePad && inPadded) cnt++; continue; }
            const v = x.data[(nc * H + h) * W + w];
            m = Math.max(m, v); sum += v; cnt++;
          }
        out.data[(nc * OH + oh) * OW + ow] = kind === 'max' ? m : sum / cnt;
      }
  return out;
}

function adaptive(x: R.Ref, oh: number, ow: number): R.Ref {
  const [N, C, H, W] = x.shape;
  const out = R.ref([N, C, oh, ow]);
  for (let nc = 0; nc < N * C; nc++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        const h0 = Math.floor((i * H) / oh), h1 = Math.ceil(((i + 1) * H) / oh);
        const w0 = Math.floor((j * W) / ow), w1 = Math.ceil(((j + 1) * W) / ow);
        let s = 0;
        for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) s += x.data[(nc * H + h) * W + w];
        out.data[(nc * oh + i) * ow + j] = s / ((h1 - h0) * (w1 - w0));
      }
  return out;
}

// PyTorch's source coordinate for one axis (scale: the given factor, or 0 for an explicit size).
function source(o: number, inN: number, outN: number, factor: number, mode: string, align: boolean): [number, number, number] {
  if (mode === 'nearest') {
    const sc32 = Math.fround(factor ? 1 / factor : inN / outN);
    const i = Math.min(Math.floor(Math.fround(o * sc32)), inN - 1);
    return [i, i, 0];
  }
  const scale = align ? (outN > 1 ? (inN - 1) / (outN - 1) : 0) : factor ? 1 / factor : inN / outN;
  const src = Math.max(0, align ? scale * o : scale * (o + 0.5) - 0.5);
  const i0 = Math.min(Math.floor(src), inN - 1);
  return [i0, Math.min(i0 + 1, inN - 1), src - i0];
}

function interp(x: R.Ref, OH: number, OW: number, factors: number[], mode: string, align: boolean): R.Ref {
  const [N, C, H, W] = x.shape;
  const out = R.ref([N, C, OH, OW]);
  for (let nc = 0; nc < N * C; nc++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++) {
        const [h0, h1, lh] = source(i, H, OH, factors[0], mode, align);
        const [w0, w1, lw] = source(j, W, OW, factors[1], mode, align);
        const at = (h: number, w: number) => x.data[(nc * H + h) * W + w];
        out.data[(nc * OH + i) * OW + j] = (1 - lh) * ((1 - lw) * at(h0, w0) + lw * at(h0, w1)) + lh * ((1 - lw) * at(h1, w0) + lw * at(h1, w1));
      }
  return out;
}

function cat(xs: R.Ref[], dim: number): R.Ref {
  const shape = xs[0].shape.slice();
  shape[dim] = xs.reduce((a, x) => a + x.shape[dim], 0);
  return R.ref(shape, (i) => {
    const idx = R.unravel(i, shape);
    let k = 0;
    while (idx[dim] >= xs[k].shape[dim]) idx[dim] -= xs[k++].shape[dim];
    return xs[k].data[idx.reduce((o, v, d) => o * xs[k].shape[d] + v, 0)];
  });
}

function pad(x: R.Ref, pads: number[], mode: string, value: number): R.Ref {
  const nd = x.shape.length;
  const before = x.shape.map((_, d) => (d >= nd - pads.length / 2 ? pads[2 * (nd - 1 - d)] : 0));
  const after = x.shape.map((_, d) => (d >= nd - pads.length / 2 ? pads[2 * (nd - 1 - d) + 1] : 0));
  const shape = x.shape.map((s, d) => s + before[d] + after[d]);
  return R.ref(shape, (i) => {
    const idx = R.unravel(i, shape).map((o, d) => {
      const n = x.shape[d];
      let j = o - before[d];
      if (mode === 'reflect') j = j < 0 ? -j : j >= n ? 2 * (n - 1) - j : j;
      if (mode === 'replicate') j = Math.min(n - 1, Math.max(0, j));
      return j;
    });
    if (idx.some((j, d) => j < 0 || j >= x.shape[d])) return value;
    return x.data[idx.reduce((o, v, d) => o * x.shape[d] + v, 0)];
  });
}

/** Normalises groups of x: group(i) names the statistics group of flat index i, param(i) the affine index. */
function normalise(x: R.Ref, group: (i: number) => number, nGroups: number, eps: number, w: R.Ref | null, b: R.Ref | null, param: (i: number) => number, stats?: { mean: number[]; var: number[] }): R.Ref {
  const s = new Array(nGroups).fill(0), ss = new Array(nGroups).fill(0), n = new Array(nGroups).fill(0);
  x.data.forEach((v, i) => { s[group(i)] += v; n[group(i)]++; });
  const mean = stats ? stats.mean : s.map((v, g) => v / n[g]);
  x.data.forEach((v, i) => { ss[group(i)] += (v - mean[group(i)]) ** 2; });
  const vr = stats ? stats.var : ss.map((v, g) => v / n[g]);
  return R.ref(x.shape.slice(), (i) => {
    const g = group(i);
    const y = (x.data[i] - mean[g]) / Math.sqrt(vr[g] + eps);
    return y * (w ? w.data[param(i)] : 1) + (b ? b.data[param(i)] : 0);
  });
}

/** The documented dropout hash, in BigInt: keep element i when (mix(seed*golden + i + 1) >> 11) / 2^53 >= p. */
export function dropoutKeep(seed: number, i: number, p: number): boolean {
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(i) + 1n) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  z = z ^ (z >> 31n);
  return Number(z >> 11n) / 2 ** 53 >= p;
}

// ---- cases ----------------------------------------------------------------------------------

const poolCases: [string, number[], number, number, number][] = [
  ['k2 s2', [2, 3, 8, 6], 2, 2, 0],
  ['k3 s2 p1 odd', [1, 4, 9, 7], 3, 2, 1],
  ['k3 s1 p1', [2, 2, 5, 6], 3, 1, 1],
  ['k2 s2 odd (floor)', [1, 3, 7, 5], 2, 2, 0],
];

const interpCases: [string, number[], sc.F.InterpolateOptions, number[], number[]][] = [
  ['bilinear x2', [2, 3, 4, 5], { scaleFactor: 2, mode: 'bilinear' }, [8, 10], [2, 2]],
  ['bilinear x2 alignCorners', [1, 2, 4, 5], { scaleFactor: 2, mode: 'bilinear', alignCorners: true }, [8, 10], [2, 2]],
  ['bilinear 4x3 -> 7x5', [2, 2, 4, 3], { size: [7, 5], mode: 'bilinear' }, [7, 5], [0, 0]],
  ['bilinear 4x3 -> 7x5 alignCorners', [2, 2, 4, 3], { size: [7, 5], mode: 'bilinear', alignCorners: true }, [7, 5], [0, 0]],
  ['bilinear down 9x7 -> 4x3', [1, 3, 9, 7], { size: [4, 3], mode: 'bilinear' }, [4, 3], [0, 0]],
  ['bilinear scale 1.5 (factor mapping)', [1, 2, 5, 3], { scaleFactor: 1.5, mode: 'bilinear' }, [7, 4], [1.5, 1.5]],
  ['bilinear scale 0.5 odd', [1, 2, 7, 9], { scaleFactor: 0.5, mode: 'bilinear' }, [3, 4], [0.5, 0.5]],
  ['nearest x2', [2, 3, 3, 4], { scaleFactor: 2, mode: 'nearest' }, [6, 8], [2, 2]],
  ['nearest 4x3 -> 7x5', [1, 2, 4, 3], { size: [7, 5], mode: 'nearest' }, [7, 5], [0, 0]],
  ['nearest scale 1.5', [1, 2, 5, 3], { scaleFactor: 1.5, mode: 'nearest' }, [7, 4], [1.5, 1.5]],
  ['nearest down 9x7 -> 4x3', [1, 1, 9, 7], { size: [4, 3], mode: 'nearest' }, [4, 3], [0, 0]],
];

const padCases: [string, number[], number[], 'constant' | 'reflect' | 'replicate', number][] = [
  ['constant 2-D', [2, 3, 4, 5], [1, 2, 0, 3], 'constant', 0.5],
  ['constant last dim', [3, 5], [2, 1], 'constant', 0],
  ['constant negative (crop)', [2, 3, 6, 5], [-1, 2, 1, -2], 'constant', 0],
  ['reflect 2-D', [2, 2, 5, 4], [1, 3, 2, 1], 'reflect', 0],
  ['reflect 1-D', [2, 3, 6], [2, 3], 'reflect', 0],
  ['replicate 2-D', [1, 3, 4, 5], [2, 1, 3, 2], 'replicate', 0],
];

export const nn1Cases: OpCase[] = [
  ...poolCases.flatMap(([label, shape, k, s, p]): OpCase[] => [
    {
      name: `maxPool2d ${label}`, ops: ['max_pool2d', 'max_pool2d_backward'], inputs: [{ shape }],
      run: ([x]) => sc.F.maxPool2d(x, { kernelSize: k, stride: s, padding: p }),
      ref: ([x]) => pool(x, [k, k], [s, s], [p, p], 'max'),
    },
    {
      name: `avgPool2d ${label}`, ops: ['avg_pool2d', 'avg_pool2d_backward'], inputs: [{ shape }],
      run: ([x]) => sc.F.avgPool2d(x, { kernelSize: k, stride: s, padding: p }),
      ref: ([x]) => pool(x, [k, k], [s, s], [p, p], 'avg'),
    },
  ]),
  {
    name: 'maxPool2d non-square kernel, non-contiguous input', ops: ['max_pool2d', 'max_pool2d_backward'], inputs: [{ shape: [1, 2, 7, 7], noncontig: true }],
    run: ([x]) => sc.F.maxPool2d(x, { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0] }),
    ref: ([x]) => pool(x, [3, 2], [2, 1], [1, 0], 'max'),
  },
  {
    name: 'avgPool2d countIncludePad=false', ops: ['avg_pool2d', 'avg_pool2d_backward'], inputs: [{ shape: [1, 3, 6, 5] }],
    run: ([x]) => sc.F.avgPool2d(x, { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false }),
    ref: ([x]) => pool(x, [3, 3], [2, 2], [1, 1], 'avg', false),
  },
  ...([[1, 1], [3, 2], [4, 4], [5, 3]] as [number, number][]).map(([oh, ow]): OpCase => ({
    name: `adaptiveAvgPool2d 7x6 -> ${oh}x${ow}`, ops: ['adaptive_avg_pool2d', 'adaptive_avg_pool2d_backward'], inputs: [{ shape: [2, 3, 7, 6] }],
    run: ([x]) => sc.F.adaptiveAvgPool2d(x, [oh, ow]),
    ref: ([x]) => adaptive(x, oh, ow),
  })),
  ...interpCases.map(([label, shape, opts, size, factors]): OpCase => ({
    name: `interpolate ${label}`, ops: ['interpolate', 'interpolate_backward'], inputs: [{ shape }],
    run: ([x]) => sc.F.interpolate(x, opts),
    ref: ([x]) => interp(x, size[0], size[1], factors, opts.mode!, !!opts.alignCorners),
  })),
  {
    name: 'cat three inputs dim 1', ops: ['cat'], inputs: [{ shape: [2, 3, 4] }, { shape: [2, 1, 4], noncontig: true }, { shape: [2, 5, 4] }],
    run: (xs) => sc.F.cat(xs, 1), ref: (xs) => cat(xs, 1),
  },
  {
    name: 'cat dim 0 and last', ops: ['cat'], inputs: [{ shape: [3, 5] }, { shape: [2, 5] }, { shape: [5, 2] }],
    run: ([a, b, c]) => sc.F.cat([sc.F.cat([a, b], 0), c], -1), ref: ([a, b, c]) => cat([cat([a, b], 0), c], 1),
  },
  {
    name: 'stack dim 1', ops: ['cat', 'reshape'], inputs: [{ shape: [3, 4] }, { shape: [3, 4] }],
    run: (xs) => sc.F.stack(xs, 1),
    ref: ([a, b]) => R.ref([3, 2, 4], (i) => { const [r, k, c] = R.unravel(i, [3, 2, 4]); return (k ? b : a).data[r * 4 + c]; }),
  },
  {
    name: 'split sizes and chunks recombined', ops: ['narrow', 'cat'], inputs: [{ shape: [4, 7] }],
    run: ([x]) => { const p = sc.F.split(x, [2, 4, 1], 1); const q = sc.F.split(x, 3, 1); return sc.F.cat([p[2], p[0], q[2], q[1]], 1); },
    ref: ([x]) => R.ref([4, 7], (i) => { const r = Math.floor(i / 7), c = [6, 0, 1, 6, 3, 4, 5][i % 7]; return x.data[r * 7 + c]; }),
  },
  ...padCases.map(([label, shape, pads, mode, value]): OpCase => ({
    name: `pad ${label}`, ops: mode === 'constant' ? ['pad'] : ['pad', 'pad_backward'], inputs: [{ shape }],
    run: ([x]) => sc.F.pad(x, pads, { mode, value }),
    ref: ([x]) => pad(x, pads, mode, value),
  })),
  ...([
    ['training affine 4-D', [3, 4, 5, 3], true, true],
    ['training no affine 4-D', [2, 3, 4, 4], true, false],
    ['training affine [N, C]', [6, 5], true, true],
  ] as [string, number[], boolean, boolean][]).map(([label, shape, training, affine]): OpCase => ({
    name: `batchNorm ${label}`, ops: ['batch_norm', 'batch_norm_backward'],
    inputs: affine ? [{ shape }, { shape: [shape[1]] }, { shape: [shape[1]] }] : [{ shape }],
    tol: 1e-9,
    // Running statistics live inside run: training output does not depend on them.
    run: ([x, w, b]) => sc.F.batchNorm(x, sc.zeros([shape[1]], { dtype: x.dtype, device: x.device }), sc.ones([shape[1]], { dtype: x.dtype, device: x.device }), w ?? null, b ?? null, { training }),
    ref: ([x, w, b]) => {
      const S = shape.slice(2).reduce((a, c) => a * c, 1), C = shape[1];
      const ch = (i: number) => Math.floor(i / S) % C;
      return normalise(x, ch, C, 1e-5, w ?? null, b ?? null, ch);
    },
  })),
  // The fused activation variants keep fewer tensors for backward; the reference is the plain
  // composition. ReLU's kink is avoided by the gradcheck's inputs being generic.
  ...([
    ['GELU before, training', [3, 4, 5, 3], 'gelu', undefined, true],
    ['ReLU after, training', [2, 3, 4, 4], undefined, 'relu', true],
    ['GELU before and ReLU after, [N, C]', [6, 5], 'gelu', 'relu', true],
    ['ReLU after, eval', [2, 3, 4, 5], undefined, 'relu', false],
    ['GELU before, eval', [2, 3, 4, 5], 'gelu', undefined, false],
    // 667 values per image: the CPU kernel's 512-value blocks, one of them ragged.
    ['GELU before and ReLU after, training, 23x29', [2, 3, 23, 29], 'gelu', 'relu', true],
  ] as [string, number[], 'gelu' | undefined, 'relu' | undefined, boolean][]).map(([label, shape, pre, post, training]): OpCase => ({
    name: `batchNorm fused activation: ${label}`, ops: ['act_batch_norm', 'batch_norm_backward'],
    inputs: [{ shape }, { shape: [shape[1]] }, { shape: [shape[1]] }],
    tol: 1e-9,
    run: ([x, w, b]) => {
      const C = shape[1], opts = { dtype: x.dtype, device: x.device };
      // eval: fixed running statistics (mean 0.1, var 1.5) so the reference can use them.
      const rm = training ? sc.zeros([C], opts) : sc.fullOf([C], 0.1, opts), rv = training ? sc.ones([C], opts) : sc.fullOf([C], 1.5, opts);
      return sc.F.batchNorm(x, rm, rv, w, b, { training, preActivation: pre, postActivation: post });
    },
    ref: ([x, w, b]) => {
      const S = shape.slice(2).reduce((a, c) => a * c, 1), C = shape[1];
      const ch = (i: number) => Math.floor(i / S) % C;
      const a = pre ? R.map(x, R.gelu) : x;
      const stats = training ? undefined : { mean: new Array(C).fill(0.1), var: new Array(C).fill(1.5) };
      const y = normalise(a, ch, C, 1e-5, w, b, ch, stats);
      return post ? R.map(y, (v) => Math.max(0, v)) : y;
    },
  })),
  // Group norm: the group_norm_fused kernels (statistics per (image, group), affine, ReLU).
  ...([
    ['2 groups affine 4-D', [2, 4, 3, 5], 2, true],
    ['one group per channel (MedNeXt) affine', [2, 3, 4, 4], 3, true],
    ['one group no affine [N, C]', [3, 6], 1, false],
    // 667 values per row: the kernels' 512-value blocks, one of them ragged.
    ['one group per channel affine 23x29', [2, 2, 23, 29], 2, true],
  ] as [string, number[], number, boolean][]).map(([label, shape, groups, affine]): OpCase => ({
    name: `groupNorm ${label}`, ops: ['group_norm', 'group_norm_fused', 'group_norm_fused_backward'],
    inputs: affine ? [{ shape }, { shape: [shape[1]] }, { shape: [shape[1]] }] : [{ shape }],
    tol: 1e-9,
    run: ([x, w, b]) => sc.F.groupNorm(x, groups, w ?? null, b ?? null),
    ref: ([x, w, b]) => {
      const S = shape.slice(2).reduce((a, c) => a * c, 1), C = shape[1], Cg = C / groups;
      const ch = (i: number) => Math.floor(i / S) % C;
      const grp = (i: number) => Math.floor(i / (S * C)) * groups + Math.floor(ch(i) / Cg);
      return normalise(x, grp, shape[0] * groups, 1e-5, w ?? null, b ?? null, ch);
    },
  })),
  // GN -> ReLU fused (TransUNet's trunk); the reference is the plain composition. 23 x 29: the
  // kernels' 512-value blocks with the ReLU mask, one of them ragged.
  ...([
    ['4 groups affine', [2, 8, 3, 3], 4],
    ['2 groups affine 23x29', [2, 4, 23, 29], 2],
  ] as [string, number[], number][]).map(([label, shape, groups]): OpCase => ({
    name: `groupNorm with ReLU after, ${label}`, ops: ['group_norm', 'group_norm_fused', 'group_norm_fused_backward'],
    inputs: [{ shape }, { shape: [shape[1]] }, { shape: [shape[1]] }],
    tol: 1e-9,
    run: ([x, w, b]) => sc.F.groupNorm(x, groups, w, b, 1e-5, { postActivation: 'relu' }),
    ref: ([x, w, b]) => {
      const S = shape[2] * shape[3], C = shape[1], Cg = C / groups;
      const ch = (i: number) => Math.floor(i / S) % C;
      const grp = (i: number) => Math.floor(i / (S * C)) * groups + Math.floor(ch(i) / Cg);
      return R.map(normalise(x, grp, shape[0] * groups, 1e-5, w, b, ch), (v) => Math.max(0, v));
    },
  })),
  {
    name: 'batchNorm eval with running stats', ops: ['batch_norm', 'batch_norm_backward'],
    inputs: [{ shape: [2, 3, 4, 5] }, { shape: [3], grad: false }, { shape: [3], kind: 'positive', grad: false }, { shape: [3] }, { shape: [3] }],
    run: ([x, rm, rv, w, b]) => sc.F.batchNorm(x, rm, rv, w, b, { training: false }),
    ref: ([x, rm, rv, w, b]) => {
      const ch = (i: number) => Math.floor(i / 20) % 3;
      return normalise(x, ch, 3, 1e-5, w, b, ch, { mean: Array.from(rm.data), var: Array.from(rv.data) });
    },
  },
  {
    name: 'batchNorm training without running stats or affine', ops: ['batch_norm', 'batch_norm_backward'], inputs: [{ shape: [4, 2, 3] }], tol: 1e-9,
    run: ([x]) => sc.F.batchNorm(x, null, null, null, null, { training: false }),
    ref: ([x]) => { const ch = (i: number) => Math.floor(i / 3) % 2; return normalise(x, ch, 2, 1e-5, null, null, ch); },
  },
  ...([
    ['last dim affine', [3, 4, 7], [7], true],
    ['two dims affine', [2, 3, 4, 5], [4, 5], true],
    ['no affine', [5, 6], [6], false],
    ['two dims affine 23x29 (several 512-value blocks per row)', [2, 23, 29], [23, 29], true],
    ['no affine 23x29', [2, 23, 29], [23, 29], false],
    // The CPU backward's two ways to sum the parameter gradients: 150 short rows in fixed chunks
    // of 64, and rows longer than 1024 reduced by column ranges.
    ['150 rows of 37, affine', [150, 37], [37], true],
    ['rows of 1100, affine', [3, 1100], [1100], true],
  ] as [string, number[], number[], boolean][]).map(([label, shape, ns, affine]): OpCase => ({
    name: `layerNorm ${label}`, ops: ['layer_norm', 'layer_norm_backward'],
    inputs: affine ? [{ shape }, { shape: ns }, { shape: ns }] : [{ shape }],
    tol: 1e-9,
    run: ([x, w, b]) => sc.F.layerNorm(x, ns, w ?? null, b ?? null),
    ref: ([x, w, b]) => {
      const D = ns.reduce((a, c) => a * c, 1);
      return normalise(x, (i) => Math.floor(i / D), x.data.length / D, 1e-5, w ?? null, b ?? null, (i) => i % D);
    },
  })),
  {
    name: 'dropout p=0.3 fixed seed', ops: ['dropout'], inputs: [{ shape: [4, 37] }],
    run: ([x]) => sc.F.dropout(x, 0.3, true, { seed: 12345 }),
    ref: ([x]) => R.ref(x.shape, (i) => (dropoutKeep(12345, i, 0.3) ? x.data[i] / 0.7 : 0)),
  },
  {
    name: 'dropout2d p=0.5 fixed seed', ops: ['dropout'], inputs: [{ shape: [3, 4, 3, 5] }],
    run: ([x]) => sc.F.dropout2d(x, 0.5, true, { seed: 2 ** 40 + 7 }),
    ref: ([x]) => R.ref(x.shape, (i) => (dropoutKeep(2 ** 40 + 7, Math.floor(i / 15), 0.5) ? x.data[i] / 0.5 : 0)),
  },
  {
    name: 'dropout eval is identity', ops: ['dropout', 'reshape'], inputs: [{ shape: [3, 5] }],
    run: ([x]) => sc.F.dropout(x, 0.5, false).mul(1), ref: ([x]) => x,
  },
];
