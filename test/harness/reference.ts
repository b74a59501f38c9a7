// Plain, obviously-correct reference implementations (float64, row-major) that every backend
// is compared against. Speed does not matter here; clarity does.

export interface Ref {
  data: Float64Array;
  shape: number[];
}

export const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
export const strides = (s: number[]) => {
  const st = new Array(s.length).fill(1);
  for (let i = s.length - 2; i >= 0; i--) st[i] = st[i + 1] * s[i + 1];
  return st;
};
export const ref = (shape: number[], f: (i: number) => number = () => 0): Ref => ({ shape, data: Float64Array.from({ length: numel(shape) }, (_, i) => f(i)) });

/** Multi-index of flat index i in shape. */
export function unravel(i: number, shape: number[]): number[] {
  const idx = new Array(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** Value of a (broadcastable) ref at the multi-index of a larger output shape. */
export function bget(a: Ref, outIdx: number[]): number {
  const st = strides(a.shape);
  let off = 0;
  const lead = outIdx.length - a.shape.length;
  for (let d = 0; d < a.shape.length; d++) off += (a.shape[d] === 1 ? 0 : outIdx[d + lead]) * st[d];
  return a.data[off];
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    return x === 1 ? y : x;
  });
}

export function map(a: Ref, f: (v: number) => number): Ref {
  return { shape: a.shape.slice(), data: a.data.map(f) };
}

export function zip(a: Ref, b: Ref, f: (x: number, y: number) => number): Ref {
  const shape = broadcastShape(a.shape, b.shape);
  return ref(shape, (i) => {
    const idx = unravel(i, shape);
    return f(bget(a, idx), bget(b, idx));
  });
}

export const erf = (x: number) => {
  // Abramowitz-Stegun 7.1.26 is too coarse for references; use a series / continued fraction.
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = 0, term = t;
    for (let n = 0; n < 80; n++) {
      sum += term / (2 * n + 1);
      term *= (-t * t) / (n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for larger |x|
  let f = 0;
  for (let k = 60; k >= 1; k--) f = (k / 2) / (t + f);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
  return Math.sign(x) * (1 - erfc);
};
export const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
export const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export function reduce(a: Ref, axes: number[], keepdim: boolean, init: number, f: (acc: number, v: number) => number, fin: (acc: number, n: number) => number = (x) => x): Ref {
  const outShapeKeep = a.shape.map((s, i) => (axes.includes(i) ? 1 : s));
  const out = ref(outShapeKeep, () => init);
  const cnt = numel(axes.map((d) => a.shape[d]));
  const ost = strides(outShapeKeep);
  for (let i = 0; i < a.data.length; i++) {
    const idx = unravel(i, a.shape);
    let o = 0;
    idx.forEach((v, d) => (o += (axes.includes(d) ? 0 : v) * ost[d]));
    out.data[o] = f(out.data[o], a.data[i]);
  }
  out.data = out.data.map((v) => fin(v, cnt));
  out.shape = keepdim ? outShapeKeep : a.shape.filter((_, i) => !axes.includes(i));
  return out;
}

export function permute(a: Ref, dims: number[]): Ref {
  const shape = dims.map((d) => a.shape[d]);
  const st = strides(a.shape);
  return ref(shape, (i) => {
    const idx = unravel(i, shape);
    let off = 0;
    idx.forEach((v, k) => (off += v * st[dims[k]]));
    return a.data[off];
  });
}

export function softmax(a: Ref, dim: number, log: boolean): Ref {
  const out = ref(a.shape.slice());
  const st = strides(a.shape);
  const D = a.shape[dim];
  for (let i = 0; i < a.data.length; i++) {
    const idx = unravel(i, a.shape);
    if (idx[dim] !== 0) continue;
    const offs = Array.from({ length: D }, (_, k) => i + k * st[dim]);
    const m = Math.max(...offs.map((o) => a.data[o]));
    const s = offs.reduce((acc, o) => acc + Math.exp(a.data[o] - m), 0);
    for (const o of offs) out.data[o] = log ? a.data[o] - m - Math.log(s) : Math.exp(a.data[o] - m) / s;
  }
  return out;
}

export function matmul(a: Ref, b: Ref): Ref {
  // a [..., M, K], b [..., K, N] with equal batch dims
  const M = a.shape[a.shape.length - 2], K = a.shape[a.shape.length - 1], N = b.shape[b.shape.length - 1];
  const batch = a.shape.slice(0, -2);
  const B = numel(batch);
  const out = ref([...batch, M, N]);
  for (let z = 0; z < B; z++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[z * M * K + i * K + k] * b.data[z * K * N + k * N + j];
        out.data[z * M * N + i * N + j] = s;
      }
  return out;
}

export function conv2d(x: Ref, w: Ref, b: Ref | null, stride: number[], pad: number[], dil: number[], groups: number): Ref {
  const [N, C, H, W] = x.shape;
  const [OC, Cg, KH, KW] = w.shape;
  const OH = Math.floor((H + 2 * pad[0] - dil[0] * (KH - 1) - 1) / stride[0]) + 1;
  const OW = Math.floor((W + 2 * pad[1] - dil[1] * (KW - 1) - 1) / stride[1]) + 1;
  const out = ref([N, OC, OH, OW]);
  const ocg = OC / groups;
  for (let n = 0; n < N; n++)
    for (let oc = 0; oc < OC; oc++) {
      const g = Math.floor(oc / ocg);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = b ? b.data[oc] : 0;
          for (let c = 0; c < Cg; c++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++) {
                const ih = oh * stride[0] - pad[0] + kh * dil[0];
                const iw = ow * stride[1] - pad[1] + kw * dil[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += x.data[((n * C + g * Cg + c) * H + ih) * W + iw] * w.data[((oc * Cg + c) * KH + kh) * KW + kw];
              }
          out.data[((n * OC + oc) * OH + oh) * OW + ow] = s;
        }
    }
  return out;
}

/** Transposed convolution by its definition: every input pixel scatters a weighted kernel. */
export function convTranspose2d(x: Ref, w: Ref, b: Ref | null, stride: number, pad: number, groups: number): Ref {
  const [N, C, H, W] = x.shape;
  const [, OCg, KH, KW] = w.shape;
  const OC = OCg * groups, Cg = C / groups;
  const OH = (H - 1) * stride - 2 * pad + KH, OW = (W - 1) * stride - 2 * pad + KW;
  const out = ref([N, OC, OH, OW], (i) => (b ? b.data[Math.floor(i / (OH * OW)) % OC] : 0));
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++) {
      const g = Math.floor(c / Cg);
      for (let ih = 0; ih < H; ih++)
        for (let iw = 0; iw < W; iw++)
          for (let o = 0; o < OCg; o++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++) {
                const oh = ih * stride - pad + kh, ow = iw * stride - pad + kw;
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                out.data[((n * OC + g * OCg + o) * OH + oh) * OW + ow] += x.data[((n * C + c) * H + ih) * W + iw] * w.data[((c * OCg + o) * KH + kh) * KW + kw];
              }
    }
  return out;
}
