// Behaviour of the network ops beyond the harness: batch-norm running statistics, dropout
// statistics and reproducibility, and error messages.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

const arr = (t: sc.Tensor) => Array.from(t.toArray() as Float64Array);
const close = (a: number[], b: number[], tol = 1e-6) => a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= tol, `index ${i}: ${v} vs ${b[i]}`));

describe('batchNorm running statistics', () => {
  const x = () => sc.tensor(Float64Array.from({ length: 2 * 3 * 2 * 2 }, (_, i) => Math.sin(i) * 3 + (i % 3)), [2, 3, 2, 2], { dtype: 'float64' });
  function expected(xs: sc.Tensor, rm0: number[], rv0: number[], m: number) {
    const v = arr(xs), C = 3, mean: number[] = [], uvar: number[] = [];
    for (let c = 0; c < C; c++) {
      const vals = v.filter((_, i) => Math.floor(i / 4) % C === c);
      const mu = vals.reduce((a, b) => a + b, 0) / vals.length;
      mean.push(mu);
      uvar.push(vals.reduce((a, b) => a + (b - mu) ** 2, 0) / (vals.length - 1));
    }
    return { rm: rm0.map((r, c) => (1 - m) * r + m * mean[c]), rv: rv0.map((r, c) => (1 - m) * r + m * uvar[c]) };
  }

  it('training updates them in place with the unbiased variance, without autograd', () => {
    const xs = x();
    xs.requiresGrad = true;
    const rm = sc.tensor([0.5, -1, 2], [3], { dtype: 'float64' }), rv = sc.tensor([1, 2, 0.5], [3], { dtype: 'float64' });
    const want = expected(xs, [0.5, -1, 2], [1, 2, 0.5], 0.2);
    const y = sc.F.batchNorm(xs, rm, rv, null, null, { training: true, momentum: 0.2 });
    close(arr(rm), want.rm, 1e-12);
    close(arr(rv), want.rv, 1e-12);
    assert.equal(rm.requiresGrad, false);
    assert.equal(rm.gradFn, null);
    y.sum().backward();
    assert.ok(xs.grad);
  });

  it('updates under noGrad too, and inference reads them without changing them', () => {
    const xs = x();
    const rm = sc.zeros([3], { dtype: 'float64' }), rv = sc.ones([3], { dtype: 'float64' });
    const want = expected(xs, [0, 0, 0], [1, 1, 1], 0.1);
    sc.noGrad(() => sc.F.batchNorm(xs, rm, rv, null, null, { training: true }));
    close(arr(rm), want.rm, 1e-12);
    const before = [...arr(rm), ...arr(rv)];
    const y = sc.F.batchNorm(xs, rm, rv, null, null, { training: false });
    assert.deepEqual([...arr(rm), ...arr(rv)], before);
    const v = arr(xs), out = arr(y);
    out.forEach((o, i) => { const c = Math.floor(i / 4) % 3; assert.ok(Math.abs(o - (v[i] - before[c]) / Math.sqrt(before[3 + c] + 1e-5)) < 1e-12); });
  });

  it('works in float32', () => {
    const xs = sc.randn([4, 2, 3, 3]);
    const rm = sc.zeros([2]), rv = sc.ones([2]);
    sc.F.batchNorm(xs, rm, rv, null, null, { training: true });
    const m = arr(xs.mean([0, 2, 3]));
    close(arr(rm), m.map((v) => 0.1 * v), 1e-6);
  });

  it('float32 statistics stay exact over many uneven blocks with a large mean and shifts between images', () => {
    // The kernel takes each channel's statistics in one pass, a block of 512 values at a time,
    // merging the blocks' means and deviations: rows of 37 x 29 give blocks of 512, 512 and 49,
    // and each image sits 3 apart on top of 1000, so most of the variance is between blocks.
    const [N, C, H, W] = [4, 2, 37, 29], S = H * W;
    const base = sc.randn([N, C, H, W]);
    const vals = Float32Array.from(base.toArray() as Float32Array, (v, i) => 1000 + 3 * Math.floor(i / (C * S)) + v);
    const x = sc.tensor(vals, [N, C, H, W]);
    for (const preActivation of [undefined, 'gelu'] as const) {
      const rm = sc.zeros([C]), rv = sc.zeros([C]);
      const y = sc.noGrad(() => sc.F.batchNorm(x, rm, rv, null, null, { training: true, momentum: 1, preActivation }));
      const got = arr(y);
      for (let c = 0; c < C; c++) {
        const idx: number[] = [];
        for (let n = 0; n < N; n++) for (let i = 0; i < S; i++) idx.push((n * C + c) * S + i);
        // GELU of values near 1000 is the value itself.
        const v = idx.map((i) => vals[i]);
        const mu = v.reduce((a, b) => a + b, 0) / v.length;
        const ss = v.reduce((a, b) => a + (b - mu) ** 2, 0);
        assert.ok(Math.abs(arr(rm)[c] - mu) <= 1e-6 * mu, `${preActivation ?? 'plain'} mean ${arr(rm)[c]} vs ${mu}`);
        assert.ok(Math.abs(arr(rv)[c] - ss / (v.length - 1)) <= 1e-4 * (ss / v.length), `${preActivation ?? 'plain'} variance ${arr(rv)[c]} vs ${ss / (v.length - 1)}`);
        const inv = 1 / Math.sqrt(ss / v.length + 1e-5);
        idx.forEach((i, k) => { if (k % 97 === 0) assert.ok(Math.abs(got[i] - (v[k] - mu) * inv) < 2e-3, `y[${i}] ${got[i]} vs ${(v[k] - mu) * inv}`); });
      }
    }
    // Layer / group norm rows go through the same statistics.
    const g = arr(sc.noGrad(() => sc.F.groupNorm(x, 1)));
    for (let n = 0; n < N; n++) {
      const v = Array.from(vals.subarray(n * C * S, (n + 1) * C * S));
      const mu = v.reduce((a, b) => a + b, 0) / v.length;
      const inv = 1 / Math.sqrt(v.reduce((a, b) => a + (b - mu) ** 2, 0) / v.length + 1e-5);
      for (let k = 0; k < v.length; k += 101) assert.ok(Math.abs(g[n * C * S + k] - (v[k] - mu) * inv) < 2e-3, `groupNorm ${n}:${k}`);
    }
  });

  it('names its errors', () => {
    assert.throws(() => sc.F.batchNorm(sc.randn([4, 3]), sc.zeros([2]), sc.ones([2]), null, null, { training: true }), /runningMean must be \[3\]/);
    assert.throws(() => sc.F.batchNorm(sc.randn([1, 3]), null, null, null, null, { training: true }), /more than 1 value per channel/);
    assert.throws(() => sc.F.batchNorm(sc.randn([4, 3]), sc.zeros([3]), null), /both runningMean and runningVar/);
  });
});

describe('float32 GELU accuracy', () => {
  // The exact GELU in double. JS has no erf: its Taylor series below 3 and its continued
  // fraction above, both far below float32's precision.
  const erf = (x: number): number => {
    const ax = Math.abs(x);
    if (ax < 3) {
      let term = ax, sum = ax;
      for (let n = 1; n < 200; n++) {
        term *= -ax * ax / n;
        const add = term / (2 * n + 1);
        sum += add;
        if (Math.abs(add) < 1e-17) break;
      }
      return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
    }
    let f = 0;
    for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
    return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
  };
  const xs = Float32Array.from({ length: 20001 }, (_, i) => -10 + i / 1000);
  const exact = Array.from(xs, (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)));
  const check = (got: ArrayLike<number>, what: string) => {
    for (let i = 0; i < xs.length; i++) {
      const err = Math.abs(got[i] - exact[i]);
      assert.ok(err <= 1e-6, `${what}: gelu(${xs[i]}) = ${got[i]}, exact ${exact[i]}`);
      if (Math.abs(exact[i]) > 1e-3) assert.ok(err <= 1e-3 * Math.abs(exact[i]), `${what}: gelu(${xs[i]}) relative error ${err / Math.abs(exact[i])}`);
    }
  };
  it('the elementwise GELU and the fused convolution epilogue stay within 1e-6 (and 1e-3 relative) of the exact one', () => {
    sc.noGrad(() => sc.tidy(() => {
      const x = sc.tensor(xs, [1, 1, 1, xs.length]);
      check(sc.F.gelu(x).toArray() as Float32Array, 'F.gelu');
      // A 1x1 identity convolution with GELU fused into its epilogue.
      check(sc.F.conv2dFused(x, sc.ones([1, 1, 1, 1]), null, { act: 'gelu' }).toArray() as Float32Array, 'conv2dFused act gelu');
    }));
  });

  it('its derivative (the GELU op and batch norm with GELU first) stays within 2e-6 of the exact one', () => {
    const dexact = Array.from(xs, (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + x * Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI));
    sc.tidy(() => {
      const x = sc.tensor(xs, [1, 1, 1, xs.length], { requiresGrad: true });
      sc.F.gelu(x).sum().backward();
      const got = x.grad!.toArray() as Float32Array;
      for (let i = 0; i < xs.length; i++) assert.ok(Math.abs(got[i] - dexact[i]) <= 2e-6, `gelu'(${xs[i]}) = ${got[i]}, exact ${dexact[i]}`);
    });
    // Batch norm after GELU recomputes both in its backward; channels of 70 values (tails of the
    // 16-wide vectors in every block) against the float64 path.
    sc.tidy(() => {
      const x64 = sc.randn([3, 2, 5, 14], { dtype: 'float64' }).mul(2);
      const g64 = sc.randn([3, 2, 5, 14], { dtype: 'float64' });
      const grad = (x: sc.Tensor, g: sc.Tensor) => {
        const xl = x.detach().requiresGrad_();
        sc.F.batchNorm(xl, null, null, null, null, { training: true, preActivation: 'gelu' }).mul(g).sum().backward();
        return xl.grad!;
      };
      const want = grad(x64, g64).toArray() as Float64Array;
      const got = grad(x64.to('float32'), g64.to('float32')).toArray() as Float32Array;
      const scale = Math.max(...Array.from(want, Math.abs));
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-5 * scale, `dx[${i}] ${got[i]} vs ${want[i]}`);
    });
  });
});

describe('dropout', () => {
  it('keeps about 1-p of the elements and scales them by 1/(1-p)', () => {
    const x = sc.ones([200, 500]);
    const y = arr(sc.F.dropout(x, 0.3));
    const kept = y.filter((v) => v !== 0);
    assert.ok(Math.abs(kept.length / y.length - 0.7) < 0.01, `kept fraction ${kept.length / y.length}`);
    kept.forEach((v) => assert.ok(Math.abs(v - 1 / 0.7) < 1e-6));
  });

  it('is reproducible for a seed and differs between calls', () => {
    const x = sc.randn([50, 40]);
    sc.manualSeed(5);
    const a = arr(sc.F.dropout(x, 0.5));
    const b = arr(sc.F.dropout(x, 0.5));
    sc.manualSeed(5);
    const c = arr(sc.F.dropout(x, 0.5));
    assert.deepEqual(a, c);
    assert.notDeepEqual(a, b);
    assert.deepEqual(arr(sc.F.dropout(x, 0.5, true, { seed: 9 })), arr(sc.F.dropout(x, 0.5, true, { seed: 9 })));
  });

  it('backward uses the same mask', () => {
    const x = sc.randn([30, 30], { dtype: 'float64', requiresGrad: true });
    const y = sc.F.dropout(x, 0.4);
    y.sum().backward();
    const g = arr(x.grad!), yv = arr(y);
    g.forEach((v, i) => assert.equal(v, yv[i] === 0 ? 0 : 1 / 0.6));
  });

  it('dropout2d drops whole channels', () => {
    const y = sc.F.dropout2d(sc.ones([8, 16, 3, 3]), 0.5);
    const v = arr(y);
    let dropped = 0;
    for (let ch = 0; ch < 8 * 16; ch++) {
      const plane = v.slice(ch * 9, ch * 9 + 9);
      assert.ok(plane.every((p) => p === plane[0]));
      if (plane[0] === 0) dropped++;
      else assert.equal(plane[0], 2);
    }
    assert.ok(dropped > 40 && dropped < 88, `dropped ${dropped} of 128 channels`);
  });

  it('p=0 and eval return the input values as a new tensor; p outside [0, 1) is an error', () => {
    const x = sc.randn([3, 4]);
    for (const y of [sc.F.dropout(x, 0), sc.F.dropout(x, 0.5, false), sc.F.dropout2d(sc.randn([1, 2, 2, 2]), 0.9, false)]) assert.ok(y !== x);
    assert.deepEqual(arr(sc.F.dropout(x, 0.5, false)), arr(x));
    assert.throws(() => sc.F.dropout(x, 1), /p must be in \[0, 1\), got 1/);
    assert.throws(() => sc.F.dropout(x, -0.1), /p must be in \[0, 1\)/);
  });
});

describe('network op errors', () => {
  it('pooling, interpolate, cat and pad name the problem', () => {
    assert.throws(() => sc.F.maxPool2d(sc.randn([3, 4]), { kernelSize: 2 }), /maxPool2d: input must be 4-D \[N, C, H, W\], got \[3, 4\]/);
    assert.throws(() => sc.F.avgPool2d(sc.randn([1, 1, 4, 4]), { kernelSize: 3, padding: 2 }), /padding must be between 0 and half/);
    assert.throws(() => sc.F.interpolate(sc.randn([1, 1, 4, 4]), { size: [8, 8], scaleFactor: 2 }), /give exactly one of size or scaleFactor/);
    assert.throws(() => sc.F.interpolate(sc.randn([1, 1, 4, 4]), { mode: 'bilinear' }), /give exactly one of size or scaleFactor/);
    assert.throws(() => sc.F.cat([sc.randn([2, 3]), sc.randn([3, 3])], 1), /cat: tensor 1 has shape \[3, 3\]/);
    assert.throws(() => sc.F.pad(sc.randn([1, 2, 3]), [3, 0], { mode: 'reflect' }), /reflect padding must be smaller/);
    assert.throws(() => sc.F.layerNorm(sc.randn([2, 5]), [4]), /normalizedShape \[4\] does not match/);
  });

  it('maxPool2d gives the gradient to the argmax', () => {
    const x = sc.tensor([1, 5, 2, 3, 0, 4, 9, 8, 7], [1, 1, 3, 3], { dtype: 'float64', requiresGrad: true });
    sc.F.maxPool2d(x, { kernelSize: 2, stride: 1 }).sum().backward();
    assert.deepEqual(arr(x.grad!), [0, 2, 0, 0, 0, 0, 1, 1, 0]);
  });
});
