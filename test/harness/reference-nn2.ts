// Plain float64 references for the attention, T-PEN and loss ops, written straight from the
// definitions in the design notes (loops over explicit positions; no shared code with the
// kernels).
import { type Ref, ref } from './reference';

const softplus = (z: number) => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));

/** Single-head attention over vectors at grid positions, with the Manhattan decay. */
function attendVectors(q: number[][], k: number[][], v: number[][], pos: [number, number][], gamma: number): number[][] {
  const d = q[0].length;
  return q.map((qn, n) => {
    const s = k.map((km) => km.reduce((acc, kv, i) => acc + kv * qn[i], 0) / Math.sqrt(d));
    const mx = Math.max(...s);
    const e = s.map((z) => Math.exp(z - mx));
    const z = e.reduce((a, b) => a + b, 0);
    const out = new Array(v[0].length).fill(0);
    e.forEach((em, m) => {
      const a = (em / z) * gamma ** (Math.abs(pos[n][0] - pos[m][0]) + Math.abs(pos[n][1] - pos[m][1]));
      v[m].forEach((vv, i) => (out[i] += a * vv));
    });
    return out;
  });
}

/** decay_attention on [B, L, D] refs, positions row-major on height x width. */
export function decayAttention(q: Ref, k: Ref, v: Ref, gamma: number, height: number, width: number): Ref {
  const [B, L, D] = q.shape;
  const rows = (t: Ref, b: number) => Array.from({ length: L }, (_, n) => Array.from(t.data.subarray((b * L + n) * D, (b * L + n + 1) * D)));
  const pos = Array.from({ length: height * width }, (_, n): [number, number] => [Math.floor(n / width), n % width]);
  const out: number[] = [];
  for (let b = 0; b < B; b++) out.push(...attendVectors(rows(q, b), rows(k, b), rows(v, b), pos, gamma).flat());
  return { shape: [B, L, D], data: Float64Array.from(out) };
}

/** MaSA on x [N, C, H, W] with Linear(C, C) projections (weights [out, in]). */
export function masa(x: Ref, wq: Ref, bq: Ref, wk: Ref, bk: Ref, wv: Ref, bv: Ref, gamma: number, decomposed: boolean): Ref {
  const [N, C, H, W] = x.shape;
  const lin = (w: Ref, b: Ref) => (vec: number[]) => Array.from({ length: C }, (_, o) => b.data[o] + vec.reduce((a, xi, i) => a + w.data[o * C + i] * xi, 0));
  const [pq, pk, pv] = [lin(wq, bq), lin(wk, bk), lin(wv, bv)];
  const attend = (vecs: number[][], pos: [number, number][]) => attendVectors(vecs.map(pq), vecs.map(pk), vecs.map(pv), pos, gamma);
  // feat[n][h][w] is the channel vector of a pixel.
  let feat = Array.from({ length: N }, (_, n) => Array.from({ length: H }, (_, h) => Array.from({ length: W }, (_, w) =>
    Array.from({ length: C }, (_, c) => x.data[((n * C + c) * H + h) * W + w]))));
  for (let n = 0; n < N; n++) {
    if (decomposed) {
      for (let h = 0; h < H; h++) feat[n][h] = attend(feat[n][h], feat[n][h].map((_, w): [number, number] => [0, w]));
      for (let w = 0; w < W; w++) {
        const col = attend(feat[n].map((row) => row[w]), feat[n].map((_, h): [number, number] => [0, h]));
        col.forEach((vec, h) => (feat[n][h][w] = vec));
      }
    } else {
      const pos: [number, number][] = [];
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) pos.push([h, w]);
      const out = attend(feat[n].flat(), pos);
      feat = feat.map((fn, i) => (i === n ? fn.map((row, h) => row.map((_, w) => out[h * W + w])) : fn));
    }
  }
  return ref([N, C, H, W], (i) => {
    const w = i % W, h = Math.floor(i / W) % H, c = Math.floor(i / (W * H)) % C, n = Math.floor(i / (W * H * C));
    return feat[n][h][w][c];
  });
}

/** T-PEN expansion: channel block k-1 of the output holds coeffs[k-1, c] * x^k. */
export function tpen(x: Ref, coeffs: Ref): Ref {
  const [N, C, H, W] = x.shape;
  const K = coeffs.shape[0];
  return ref([N, K * C, H, W], (i) => {
    const hw = i % (H * W), ch = Math.floor(i / (H * W)) % (K * C), n = Math.floor(i / (H * W * K * C));
    const k = Math.floor(ch / C) + 1, c = ch % C;
    return coeffs.data[(k - 1) * C + c] * x.data[(n * C + c) * H * W + hw] ** k;
  });
}

/** -(pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), with pw per element. */
export function bceElements(x: Ref, t: Ref, pw: (i: number) => number): Ref {
  return ref(x.shape, (i) => pw(i) * t.data[i] * softplus(-x.data[i]) + (1 - t.data[i]) * softplus(x.data[i]));
}

export function reduceAll(a: Ref, how: 'mean' | 'sum' | 'none'): Ref {
  if (how === 'none') return a;
  const s = a.data.reduce((p, v) => p + v, 0);
  return ref([], () => (how === 'mean' ? s / a.data.length : s));
}

/** Soft Dice loss from probabilities; per image (then averaged) or over the whole batch. */
export function dice(p: Ref, t: Ref, smooth: number, perImage: boolean): Ref {
  const groups = perImage ? p.shape[0] : 1;
  const per = p.data.length / groups;
  let total = 0;
  for (let g = 0; g < groups; g++) {
    let pt = 0, ps = 0, ts = 0;
    for (let i = g * per; i < (g + 1) * per; i++) { pt += p.data[i] * t.data[i]; ps += p.data[i]; ts += t.data[i]; }
    total += 1 - (2 * pt + smooth) / (ps + ts + smooth);
  }
  return ref([], () => total / groups);
}

/** Tversky loss 1 - (TP + s) / (TP + alpha FP + beta FN + s) from probabilities; per image (averaged) or pooled. */
export function tversky(p: Ref, t: Ref, alpha: number, beta: number, smooth: number, perImage: boolean): Ref {
  const groups = perImage ? p.shape[0] : 1;
  const per = p.data.length / groups;
  let total = 0;
  for (let g = 0; g < groups; g++) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = g * per; i < (g + 1) * per; i++) {
      tp += p.data[i] * t.data[i];
      fp += p.data[i] * (1 - t.data[i]);
      fn += (1 - p.data[i]) * t.data[i];
    }
    total += 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth);
  }
  return ref([], () => total / groups);
}

/** Sigmoid focal loss per element: alpha_t (1 - p_t)^gamma BCE, straight from Lin et al. */
export function focalElements(x: Ref, t: Ref, gamma: number, alpha: number | null): Ref {
  return ref(x.shape, (i) => {
    const p = 1 / (1 + Math.exp(-x.data[i]));
    const y = t.data[i];
    const ce = y * softplus(-x.data[i]) + (1 - y) * softplus(x.data[i]);
    const pt = p * y + (1 - p) * (1 - y);
    const at = alpha === null ? 1 : alpha * y + (1 - alpha) * (1 - y);
    return at * (1 - pt) ** gamma * ce;
  });
}

/** Mean BCE of the ceil(ratio * n) largest per-element losses. */
export function ohemBce(x: Ref, t: Ref, ratio: number, pw: number): Ref {
  const losses = Array.from(bceElements(x, t, () => pw).data).sort((a, b) => b - a);
  const k = Math.max(1, Math.ceil(ratio * losses.length));
  return ref([], () => losses.slice(0, k).reduce((a, b) => a + b, 0) / k);
}

/** softmax(q k^T * scale) v per (b, h) on [B, H, L, D] refs, straight from the definition. */
export function sdpa(q: Ref, k: Ref, v: Ref, scale: number): Ref {
  const [B, H, Lq, D] = q.shape;
  const [Lk, Dv] = [k.shape[2], v.shape[3]];
  const out = new Float64Array(B * H * Lq * Dv);
  for (let bh = 0; bh < B * H; bh++) {
    for (let n = 0; n < Lq; n++) {
      const s: number[] = [];
      for (let m = 0; m < Lk; m++) {
        let d = 0;
        for (let i = 0; i < D; i++) d += q.data[(bh * Lq + n) * D + i] * k.data[(bh * Lk + m) * D + i];
        s.push(d * scale);
      }
      const mx = Math.max(...s);
      const e = s.map((z) => Math.exp(z - mx));
      const z = e.reduce((a, b) => a + b, 0);
      for (let m = 0; m < Lk; m++) {
        for (let j = 0; j < Dv; j++) out[(bh * Lq + n) * Dv + j] += (e[m] / z) * v.data[(bh * Lk + m) * Dv + j];
      }
    }
  }
  return { shape: [B, H, Lq, Dv], data: out };
}
