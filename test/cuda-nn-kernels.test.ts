// The NN-level CUDA kernels (optimisers, decay attention, T-PEN, BCE with logits, and the ops1
// family when present) called directly through the native addon and compared against the same
// call on the CPU backend. With SCALPEL_FLAVOUR=emu the `cuda` backend is the CPU emulator; run
// under SCALPEL_EMU_SCHEDULE=forward|reverse|random.
import { strict as assert } from 'node:assert';
import { native } from '../src/native';

type Arr = Float32Array | Float64Array;
type DT = 'f32' | 'f64';
type AnyArr = Arr | Int32Array;
interface In { data: AnyArr; shape: number[]; strides?: number[] }
interface Out { shape: number[]; init?: Arr; i32?: boolean }

const CPU = 0, CUDA = 1;

function contiguousStrides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}
function rand(n: number, dt: DT, seed: number, lo = -1, hi = 1): Arr {
  const r = rng(seed);
  const a = dt === 'f32' ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

function runOn(backend: number, kernel: string, dt: DT, ins: In[], outs: Out[], attrs: Record<string, unknown>): AnyArr[] {
  const dtype = dt === 'f32' ? 0 : 1;
  const es = dt === 'f32' ? 4 : 8;
  const handles: unknown[] = [];
  try {
    const inArgs = ins.map((t) => {
      const h = native.alloc(backend, Math.max(8, t.data.byteLength));
      handles.push(h);
      if (t.data.length) native.copyIn(h, 0, t.data);
      return [h, 0, t.data instanceof Int32Array ? 2 : dtype, t.shape, t.strides ?? contiguousStrides(t.shape)] as [unknown, number, number, number[], number[]];
    });
    const outArgs = outs.map((o) => {
      const n = numel(o.shape);
      const h = native.alloc(backend, Math.max(8, n * (o.i32 ? 4 : es)));
      handles.push(h);
      if (o.init && n) native.copyIn(h, 0, o.init);
      return [h, 0, o.i32 ? 2 : dtype, o.shape, contiguousStrides(o.shape)] as [unknown, number, number, number[], number[]];
    });
    native.run(kernel, backend, inArgs, outArgs, attrs);
    return outs.map((o, i) => {
      const n = numel(o.shape);
      const buf = n ? native.copyOut(outArgs[i][0], 0, n * (o.i32 ? 4 : es)) : new ArrayBuffer(0);
      if (o.i32) return new Int32Array(buf);
      return dt === 'f32' ? new Float32Array(buf) : new Float64Array(buf);
    });
  } finally {
    for (const h of handles) native.release(h);
  }
}

function compare(kernel: string, dt: DT, ins: In[], outs: Out[], attrs: Record<string, unknown>, tol?: number): AnyArr[] {
  const want = runOn(CPU, kernel, dt, ins, outs, attrs);
  const got = runOn(CUDA, kernel, dt, ins, outs, attrs);
  const t = tol ?? (dt === 'f32' ? 2e-4 : 1e-9);
  want.forEach((w, k) => {
    assert.equal(got[k].length, w.length);
    let scale = 1e-30;
    for (let i = 0; i < w.length; i++) scale = Math.max(scale, Math.abs(w[i]));
    for (let i = 0; i < w.length; i++) {
      const err = Math.abs(got[k][i] - w[i]);
      if (!(err <= t * (Math.abs(w[i]) + Math.min(1, scale)))) {
        assert.fail(`${kernel} output ${k} [${i}]: cuda ${got[k][i]} vs cpu ${w[i]} (attrs ${JSON.stringify(attrs)})`);
      }
    }
  });
  return want;
}
const has = (name: string) => native.kernels(CUDA).includes(name) && native.kernels(CPU).includes(name);

const available = (() => {
  try {
    return native.backendInfo(CUDA).available;
  } catch {
    return false;
  }
})();

describe('NN CUDA kernels vs CPU (native addon)', function () {
  this.timeout(600_000);
  before(function () {
    if (!available) {
      console.log(`      skipped: the cuda backend is not available (${native.backendInfo(CUDA).reason}); ` +
        'run with SCALPEL_FLAVOUR=emu to use the emulator');
      this.skip();
    }
  });

  for (const dt of ['f32', 'f64'] as DT[]) {
    describe(dt, function () {
      it('sgd_step (momentum, dampening, nesterov, first, weight decay)', function () {
        const n = 1037;
        const configs = [
          { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: 0, first: 1 },
          { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 1e-2, nesterov: 0, first: 1 },
          { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 1e-2, nesterov: 0, first: 0 },
          { lr: 0.01, momentum: 0.8, dampening: 0, weightDecay: 0, nesterov: 1, first: 0 },
        ];
        for (const a of configs) {
          compare('sgd_step', dt, [{ data: rand(n, dt, 1), shape: [n] }],
            [{ shape: [n], init: rand(n, dt, 2) }, { shape: [n], init: rand(n, dt, 3) }], a);
        }
      });

      it('adam_step (Adam, AdamW, steps 1 and 7)', function () {
        const n = 999;
        for (const decoupled of [0, 1]) {
          for (const step of [1, 7]) {
            const a = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, decoupled };
            compare('adam_step', dt, [{ data: rand(n, dt, 4), shape: [n] }],
              [{ shape: [n], init: rand(n, dt, 5) }, { shape: [n], init: rand(n, dt, 6, -0.1, 0.1) },
                { shape: [n], init: rand(n, dt, 7, 0, 0.01) }], a);
          }
        }
      });

      const attnCases: Array<{ B: number; H: number; W: number; D: number; gamma: number }> = [
        { B: 2, H: 1, W: 7, D: 5, gamma: 0.9 },
        { B: 1, H: 3, W: 5, D: 33, gamma: 0.75 },
        { B: 2, H: 6, W: 7, D: 16, gamma: 0.95 },
        { B: 1, H: 1, W: 1, D: 3, gamma: 0.5 },
        { B: 1, H: 2, W: 3, D: 4, gamma: 0 },
        { B: 1, H: 17, W: 19, D: 8, gamma: 0.97 },  // L = 323
      ];
      it('decay_attention forward', function () {
        for (const c of attnCases) {
          const L = c.H * c.W, n = c.B * L * c.D, shape = [c.B, L, c.D];
          compare('decay_attention', dt,
            [{ data: rand(n, dt, 11), shape }, { data: rand(n, dt, 12), shape }, { data: rand(n, dt, 13), shape }],
            [{ shape }], { gamma: c.gamma, height: c.H, width: c.W });
        }
      });
      it('decay_attention backward', function () {
        for (const c of attnCases) {
          const L = c.H * c.W, n = c.B * L * c.D, shape = [c.B, L, c.D];
          compare('decay_attention_backward', dt,
            [{ data: rand(n, dt, 21), shape }, { data: rand(n, dt, 22), shape }, { data: rand(n, dt, 23), shape },
              { data: rand(n, dt, 24), shape }],
            [{ shape }, { shape }, { shape }], { gamma: c.gamma, height: c.H, width: c.W });
        }
      });
      if (dt === 'f32') {
        it('decay_attention multi-pass path (L = 3136 keys: scores do not fit in shared memory)', function () {
          const c = { B: 1, H: 56, W: 56, D: 2, gamma: 0.9 };
          const L = c.H * c.W, n = c.B * L * c.D, shape = [c.B, L, c.D];
          const ins = [{ data: rand(n, dt, 31), shape }, { data: rand(n, dt, 32), shape }, { data: rand(n, dt, 33), shape }];
          compare('decay_attention', dt, ins, [{ shape }], { gamma: c.gamma, height: c.H, width: c.W }, 1e-3);
          compare('decay_attention_backward', dt, [...ins, { data: rand(n, dt, 34), shape }],
            [{ shape }, { shape }, { shape }], { gamma: c.gamma, height: c.H, width: c.W }, 1e-3);
        });
      }

      // Scaled dot-product attention: Lq != Lk, D != Dv, a feature size over one warp, key
      // counts over several 32-row tiles, and a head dim whose tiles must shrink to fit shared memory.
      const sdpaCases: Array<{ B: number; H: number; Lq: number; Lk: number; D: number; Dv: number }> = [
        { B: 2, H: 3, Lq: 7, Lk: 5, D: 4, Dv: 6 },
        { B: 1, H: 2, Lq: 70, Lk: 33, D: 33, Dv: 8 },
        { B: 1, H: 1, Lq: 1, Lk: 1, D: 3, Dv: 2 },
        { B: 2, H: 1, Lq: 64, Lk: 16, D: 32, Dv: 32 },   // SegFormer-B0 stage-1 shape, scaled down
        { B: 1, H: 1, Lq: 5, Lk: 40, D: 200, Dv: 150 },  // tiles of fewer than 32 rows
      ];
      const sdpaIns = (c: typeof sdpaCases[number], seed: number) => {
        const [qs, ks, vs] = [[c.B, c.H, c.Lq, c.D], [c.B, c.H, c.Lk, c.D], [c.B, c.H, c.Lk, c.Dv]];
        return [qs, ks, vs].map((shape, i) => ({ data: rand(numel(shape), dt, seed + i, -2, 2), shape }));
      };
      it('scaled_dot_product_attention forward (output and row log-sum-exp)', function () {
        for (const c of sdpaCases) {
          compare('scaled_dot_product_attention', dt, sdpaIns(c, 41), [{ shape: [c.B, c.H, c.Lq, c.Dv] }, { shape: [c.B, c.H, c.Lq] }], { scale: 1 / Math.sqrt(c.D) });
        }
      });
      it('scaled_dot_product_attention backward', function () {
        // With one key, dq and dk are exactly zero (P = 1, dS = dO.v - dO.o = 0) and both
        // backends return rounding noise there, which a relative comparison cannot judge.
        for (const c of sdpaCases.filter((x) => x.Lk > 1)) {
          const ins = sdpaIns(c, 51);
          const attrs = { scale: 0.8 / Math.sqrt(c.D) };
          // The backward reads the forward's output and log-sum-exp: take them from the CPU.
          const [o, lse] = runOn(CPU, 'scaled_dot_product_attention', dt, ins, [{ shape: [c.B, c.H, c.Lq, c.Dv] }, { shape: [c.B, c.H, c.Lq] }], attrs) as Arr[];
          compare('scaled_dot_product_attention_backward', dt,
            [...ins, { data: o, shape: [c.B, c.H, c.Lq, c.Dv] }, { data: lse, shape: [c.B, c.H, c.Lq] },
              { data: rand(c.B * c.H * c.Lq * c.Dv, dt, 59), shape: [c.B, c.H, c.Lq, c.Dv] }],
            [{ shape: ins[0].shape }, { shape: ins[1].shape }, { shape: ins[2].shape }], attrs);
        }
      });

      const tpenCases = [
        { N: 2, C: 3, H: 5, W: 7, K: 3 },
        { N: 1, C: 5, H: 9, W: 11, K: 6 },
        { N: 3, C: 1, H: 1, W: 1, K: 1 },
        { N: 2, C: 4, H: 16, W: 17, K: 2 },
      ];
      it('tpen forward', function () {
        for (const c of tpenCases) {
          const xs = [c.N, c.C, c.H, c.W];
          compare('tpen', dt, [{ data: rand(numel(xs), dt, 41), shape: xs }, { data: rand(c.K * c.C, dt, 42), shape: [c.K, c.C] }],
            [{ shape: [c.N, c.K * c.C, c.H, c.W] }], {});
        }
      });
      it('tpen backward (dx, dcoeffs)', function () {
        for (const c of tpenCases) {
          const xs = [c.N, c.C, c.H, c.W], os = [c.N, c.K * c.C, c.H, c.W];
          compare('tpen_backward', dt,
            [{ data: rand(numel(xs), dt, 43), shape: xs }, { data: rand(c.K * c.C, dt, 44), shape: [c.K, c.C] },
              { data: rand(numel(os), dt, 45), shape: os }],
            [{ shape: xs }, { shape: [c.K, c.C] }], {}, dt === 'f32' ? 1e-3 : undefined);
        }
      });

      it('bce_with_logits and backward (scalar posWeight, broadcast posWeight tensor, broadcast target)', function () {
        const shape = [3, 5, 7], n = numel(shape);
        const x = { data: rand(n, dt, 51, -30, 30), shape };
        const t = { data: rand(n, dt, 52, 0, 1), shape };
        const g = { data: rand(n, dt, 53), shape };
        const pwB = { data: rand(7, dt, 54, 0.5, 3), shape, strides: [0, 0, 1] };
        const tB = { data: rand(35, dt, 55, 0, 1), shape, strides: [0, 7, 1] };
        for (const pw of [1, 2.5]) {
          compare('bce_with_logits', dt, [x, t], [{ shape }], { posWeight: pw });
          compare('bce_with_logits_backward', dt, [g, x, t], [{ shape }], { posWeight: pw });
          compare('bce_with_logits', dt, [x, tB], [{ shape }], { posWeight: pw });
        }
        compare('bce_with_logits', dt, [x, t, pwB], [{ shape }], { posWeight: 1 });
        compare('bce_with_logits_backward', dt, [g, x, tB, pwB], [{ shape }], { posWeight: 1 });
      });

      it('dropout / dropout2d (same mask as the CPU backend)', function () {
        if (!has('dropout')) this.skip();
        const shape = [2, 3, 5, 7], n = numel(shape), x = { data: rand(n, dt, 61), shape };
        for (const p of [0, 0.3, 0.9]) {
          for (const group of [1, 35]) compare('dropout', dt, [x], [{ shape }], { p, seed: 12345 + group, group }, 0);
        }
      });

      const poolCases = [
        { N: 2, C: 3, H: 7, W: 9, k: [3, 3], s: [2, 2], p: [1, 1] },
        { N: 1, C: 2, H: 8, W: 8, k: [2, 2], s: [2, 2], p: [0, 0] },
        { N: 1, C: 2, H: 11, W: 6, k: [3, 2], s: [1, 2], p: [1, 0] },
        { N: 1, C: 1, H: 5, W: 5, k: [5, 5], s: [3, 3], p: [2, 2] },
      ];
      const outSize = (i: number, k: number, s: number, p: number) => Math.floor((i + 2 * p - k) / s) + 1;
      it('max_pool2d (+indices) and backward', function () {
        if (!has('max_pool2d')) this.skip();
        for (const c of poolCases) {
          const xs = [c.N, c.C, c.H, c.W], os = [c.N, c.C, outSize(c.H, c.k[0], c.s[0], c.p[0]), outSize(c.W, c.k[1], c.s[1], c.p[1])];
          const attrs = { kernelSize: c.k, stride: c.s, padding: c.p };
          const [, ind] = compare('max_pool2d', dt, [{ data: rand(numel(xs), dt, 71), shape: xs }], [{ shape: os }, { shape: os, i32: true }], attrs, 0);
          compare('max_pool2d_backward', dt, [{ data: rand(numel(os), dt, 72), shape: os }, { data: ind, shape: os }], [{ shape: xs }], {});
        }
      });
      it('avg_pool2d and backward (countIncludePad on/off)', function () {
        if (!has('avg_pool2d')) this.skip();
        for (const c of poolCases) {
          const xs = [c.N, c.C, c.H, c.W], os = [c.N, c.C, outSize(c.H, c.k[0], c.s[0], c.p[0]), outSize(c.W, c.k[1], c.s[1], c.p[1])];
          for (const countIncludePad of [1, 0]) {
            const attrs = { kernelSize: c.k, stride: c.s, padding: c.p, countIncludePad };
            compare('avg_pool2d', dt, [{ data: rand(numel(xs), dt, 73), shape: xs }], [{ shape: os }], attrs);
            compare('avg_pool2d_backward', dt, [{ data: rand(numel(os), dt, 74), shape: os }], [{ shape: xs }], attrs);
          }
        }
      });
      it('adaptive_avg_pool2d and backward (down and up)', function () {
        if (!has('adaptive_avg_pool2d')) this.skip();
        for (const [H, W, OH, OW] of [[7, 9, 3, 4], [5, 5, 1, 1], [3, 2, 7, 5], [8, 8, 8, 8], [10, 7, 6, 3]]) {
          const xs = [2, 3, H, W], os = [2, 3, OH, OW];
          compare('adaptive_avg_pool2d', dt, [{ data: rand(numel(xs), dt, 75), shape: xs }], [{ shape: os }], {});
          compare('adaptive_avg_pool2d_backward', dt, [{ data: rand(numel(os), dt, 76), shape: os }], [{ shape: xs }], {});
        }
      });
      it('interpolate and backward (bilinear, alignCorners, nearest, sizes and scales)', function () {
        if (!has('interpolate')) this.skip();
        const cases: Array<[number, number, number, number, string, number, number[]]> = [
          [5, 7, 10, 14, 'bilinear', 0, [2, 2]], [5, 7, 10, 14, 'bilinear', 1, [0, 0]], [6, 4, 3, 9, 'bilinear', 0, [0, 0]],
          [5, 7, 10, 14, 'nearest', 0, [2, 2]], [7, 5, 3, 11, 'nearest', 0, [0, 0]], [4, 4, 1, 1, 'bilinear', 1, [0, 0]],
        ];
        for (const [H, W, OH, OW, mode, alignCorners, scales] of cases) {
          const xs = [2, 3, H, W], os = [2, 3, OH, OW], attrs = { mode, alignCorners, scales };
          compare('interpolate', dt, [{ data: rand(numel(xs), dt, 77), shape: xs }], [{ shape: os }], attrs);
          compare('interpolate_backward', dt, [{ data: rand(numel(os), dt, 78), shape: os }], [{ shape: xs }], attrs);
        }
      });
    });
  }
});
