import { strict as assert } from 'node:assert';
import * as fs from 'fs';
import * as path from 'path';
import * as sc from '../src';

const FIX = path.resolve(__dirname, 'fixtures');
const REF = path.resolve(__dirname, '../../shared/reference');
const HEAVY = process.env.SCALPEL_HEAVY_TESTS === '1';

const EXPECTED: Record<string, number> = {
  'cmunext-s': 417505, cmunext: 3149185, 'cmunext-l': 8286721,
  unet: 31043521, 'unet-bilinear': 17267393,
  nexnet: 17036999, 'nexnet-ae': 22367619, 'nexnet-ssl': 41763914,
  // The CMUNeXt benchmark's table: 34.87 M.
  attunet: 34878573,
  // UNeXt's authors and the CMUNeXt benchmark: 1.47 M.
  unext: 1471921,
  // MedNeXt 2-D at kernel 3, counted from the authors' code: issue 10 quotes 5.47/10.45/17.42/61.56 M.
  'mednext-s': 5472034, 'mednext-b': 10447426, 'mednext-m': 17418242, 'mednext-l': 61556386,
  // SegFormer at 3 input channels and 1 class (the paper's 3.8 / 13.7 / 27.5 M are for 150 classes:
  // see 'models: SegFormer' below).
  'segformer-b0': 3714401, 'segformer-b1': 13677505, 'segformer-b2': 27347393,
};

/** Parses a "name [d0, d1, ...]" state-dict list (lines starting with '#' are comments). */
function readParamsList(file: string): { total: number | null; entries: [string, number[]][] } {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const m = /(\d+) trainable parameters/.exec(lines[0] ?? '');
  const entries: [string, number[]][] = [];
  for (const l of lines) {
    const t = l.trim();
    if (!t || t.startsWith('#')) continue;
    const mm = /^(\S+)\s+\[(.*)\]$/.exec(t);
    assert.ok(mm, `cannot parse line '${t}' of ${file}`);
    entries.push([mm[1], mm[2].trim() ? mm[2].split(',').map((s) => Number(s.trim())) : []]);
  }
  return { total: m ? Number(m[1]) : null, entries };
}

function stateList(m: sc.nn.Module): [string, number[]][] {
  return Object.entries(m.stateDict()).map(([k, t]) => [k, t.shape.slice()]);
}

/** det_init of tools/pytorch/detinit.py, exactly. */
function detInit(m: sc.nn.Module): void {
  const sd = m.stateDict();
  Object.entries(sd).forEach(([name, t], p) => {
    if (name.endsWith('num_batches_tracked') || (t.dtype !== 'float32' && t.dtype !== 'float64')) return;
    const n = t.size;
    const v = new Float32Array(n);
    const fanIn = t.ndim >= 2 ? n / t.shape[0] : 1;
    const scale = 1 / Math.sqrt(fanIn);
    for (let i = 0; i < n; i++) {
      const s = Math.sin((0.7 * i + 1.3 * p) + 0.1);
      let x: number;
      if (name.endsWith('.running_mean')) x = 0.05 * s;
      else if (name.endsWith('.running_var')) x = 1 + 0.5 * (s * s);
      else if (t.ndim >= 2) x = scale * s;
      else if (t.ndim === 1 && name.endsWith('.weight')) x = 1 + 0.1 * s;
      else x = 0.1 * s;
      v[i] = Math.fround(x);
    }
    const src = sc.fromTyped(v, t.shape.slice(), 'float32', 'cpu');
    sc.nn.copyInto(t, src);
    src.dispose();
  });
}

function sinInput(shape: number[], a = 0.37, mul = 0.5, add = 0.5): sc.Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.fround(Math.sin(a * i) * mul + add);
  return sc.fromTyped(v, shape, 'float32', 'cpu');
}

function maxRelErr(got: ArrayLike<number>, want: number[]): { maxRel: number; at: number } {
  assert.equal(got.length, want.length);
  let scale = 0;
  for (const w of want) scale = Math.max(scale, Math.abs(w));
  let maxRel = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    // Relative to max(|want_i|, 1e-3 * max|want|): elements near zero compare on the output's scale.
    const rel = Math.abs(Number(got[i]) - want[i]) / Math.max(Math.abs(want[i]), 1e-3 * scale);
    if (rel > maxRel) { maxRel = rel; at = i; }
  }
  return { maxRel, at };
}

const relClose = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol * Math.abs(b), `${what}: ${a} vs ${b} (rel ${(Math.abs(a - b) / Math.abs(b)).toExponential(2)})`);

describe('models: registry', () => {
  it('lists every model with a description and default input size', () => {
    const names = sc.models.list().map((m) => m.name);
    assert.deepEqual(names, ['unet', 'unet-bilinear', 'unetpp', 'attunet', 'unext', 'mednext-s', 'mednext-b', 'mednext-m', 'mednext-l', 'cmunext-s', 'cmunext', 'cmunext-l', 'segformer-b0', 'segformer-b1', 'segformer-b2', 'transunet', 'nexnet', 'nexnet-ae', 'nexnet-ssl']);
    for (const m of sc.models.list()) {
      assert.ok(m.description.length > 10);
      assert.equal(m.inputSize.length, 3);
    }
  });
  it('rejects unknown names and bad options with clear errors', () => {
    assert.throws(() => sc.models.create('unet3d'), /unknown model "unet3d"; valid names: unet, unet-bilinear, unetpp, attunet, unext, mednext-s, mednext-b, mednext-m, mednext-l, cmunext-s/);
    assert.throws(() => sc.models.create('cmunext-s', { inChannels: 0 }), /option 'inChannels' must be a positive integer, got 0/);
    assert.throws(() => sc.models.create('cmunext-s', { numClasses: 1.5 }), /option 'numClasses' must be a positive integer/);
    assert.throws(() => sc.models.create('cmunext', { deepSupervision: true }), /unknown option 'deepSupervision'; valid options: inChannels, numClasses$/);
    assert.throws(() => sc.models.create('nexnet', { gamma: 2 }), /option 'gamma' must be a number in \[0, 1\]/);
    assert.throws(() => sc.models.create('nexnet', { freezeEncoder: true }), /unknown option 'freezeEncoder'/);
    const unext = sc.models.create('unext');
    assert.throws(() => sc.tidy(() => unext.forward(sc.zeros([1, 3, 48, 48]))), /UNeXt: expected an input \[N, C, H, W\] with H and W multiples of 32/);
    unext.dispose();
  });
  it('honours inChannels / numClasses', () => {
    const m = sc.models.create('cmunext-s', { inChannels: 1, numClasses: 4 });
    const sd = m.stateDict();
    assert.deepEqual(sd['stem.conv.0.weight'].shape, [8, 1, 3, 3]);
    assert.deepEqual(sd['Conv_1x1.weight'].shape, [4, 8, 1, 1]);
    m.dispose();
  });
});

describe('models: parameter counts and state-dict names', () => {
  for (const name of Object.keys(EXPECTED)) {
    it(`${name}: ${EXPECTED[name].toLocaleString('en-US')} parameters, names/shapes/order as the params file`, () => {
      const m = sc.models.create(name);
      try {
        assert.equal(m.numParameters(), EXPECTED[name]);
        const want = readParamsList(path.join(FIX, 'params', `${name}.params.txt`));
        assert.equal(want.total, EXPECTED[name]);
        const got = stateList(m);
        assert.deepEqual(got.map(([n]) => n), want.entries.map(([n]) => n));
        assert.deepEqual(got, want.entries);
        for (const [k, t] of Object.entries(m.stateDict())) {
          if (k.endsWith('num_batches_tracked')) {
            assert.equal(t.dtype, 'int64');
            assert.deepEqual(t.shape, []);
          } else assert.equal(t.dtype, 'float32');
        }
      } finally {
        m.dispose();
      }
    });
  }
  it('MedNeXt: kernel 5 / 7 and deep supervision counts as the authors\' code, five outputs, bad options', () => {
    // Counts of tools/pytorch/models.py MedNeXt (the authors' 2-D configuration) per size and kernel.
    const want: Record<string, [number, number]> = { 'mednext-s': [5542178, 5647394], 'mednext-b': [10517570, 10622786], 'mednext-m': [17534466, 17708802], 'mednext-l': [61754530, 62051746] };
    for (const [name, [k5, k7]] of Object.entries(want)) {
      for (const [k, n] of [[5, k5], [7, k7]] as const) {
        const m = sc.models.create(name, { kernelSize: k });
        assert.equal(m.numParameters(), n, `${name} k${k}`);
        m.dispose();
      }
    }
    const ds = sc.models.create('mednext-s', { deepSupervision: true });
    assert.equal(ds.numParameters(), 5472998);
    assert.deepEqual(Object.keys(ds.stateDict()).slice(0, 2), ['dummy_tensor', 'stem.weight']);
    assert.ok(Object.keys(ds.stateDict()).includes('out_4.conv_out.weight'));
    const ys = sc.tidy(() => sc.noGrad(() => (ds as sc.models.MedNeXt).forwardAll(sc.rand([1, 3, 32, 32])).map((t) => t.shape.join('x'))));
    assert.deepEqual(ys, ['1x1x32x32', '1x1x16x16', '1x1x8x8', '1x1x4x4', '1x1x2x2']);
    // forward is the full-resolution head alone (what evaluate / predict / export use).
    sc.tidy(() => sc.noGrad(() => {
      const x = sc.rand([1, 3, 32, 32]);
      const full = ds.forward(x) as sc.Tensor;
      assert.ok(full instanceof sc.Tensor);
      assert.deepEqual(Array.from(full.toArray() as Float32Array), Array.from((ds as sc.models.MedNeXt).forwardAll(x)[0].toArray() as Float32Array));
    }));
    assert.throws(() => sc.tidy(() => ds.forward(sc.zeros([1, 3, 40, 40]))), /MedNeXt: expected an input \[N, C, H, W\] with H and W multiples of 16/);
    ds.dispose();
    assert.throws(() => sc.models.create('mednext-b', { kernelSize: 4 as never }), /option 'kernelSize' must be 3, 5 or 7/);
  });
  it('UNet++: the standard configuration (filters 32..512) and deep supervision heads', () => {
    const m = sc.models.create('unetpp');
    const ds = sc.models.create('unetpp', { deepSupervision: true });
    assert.equal(m.numParameters(), 9163329);
    assert.equal(ds.numParameters(), 9163329 + 3 * 33);
    const names = Object.keys(m.stateDict());
    assert.equal(names[0], 'conv0_0.conv1.weight');
    assert.ok(names.includes('conv0_4.bn2.num_batches_tracked') && names.includes('final.weight'));
    assert.ok(Object.keys(ds.stateDict()).includes('final4.bias'));
    m.dispose();
    ds.dispose();
  });
  for (const [name, file] of [['cmunext-s', 'cmunext_s'], ['cmunext', 'cmunext'], ['cmunext-l', 'cmunext_l']]) {
    it(`${name}: names/shapes/order as the authors' code (shared/reference/${file}.params.txt)`, function () {
      const f = path.join(REF, `${file}.params.txt`);
      if (!fs.existsSync(f)) {
        console.log(`      (skipped: ${f} not present)`);
        this.skip();
      }
      const m = sc.models.create(name);
      const want = readParamsList(f);
      assert.equal(want.total, EXPECTED[name]);
      assert.deepEqual(stateList(m), want.entries);
      m.dispose();
    });
  }
});

// Allowed error against float64, in multiples of PyTorch float32's own, where it is not 2x: the
// bilinear UNet's logits reach ~120 under det_init, and its 3x3 convolutions on the fixture's 32
// and 64 px maps (64-256 channels) run on the Winograd F(4x4, 3x3) kernel, whose transforms cost
// about two bits against the direct sum (conv_winograd.cc); measured 1.7e-4 and 2.3e-4 (1.4e-6 and 1.9e-6 of max |y|) on
// two builds that round differently, against PyTorch float32's 1.0e-4 (8.3e-7 of max |y|).
const WINOGRAD_DEEP: Record<string, number> = { 'unet-bilinear': 3 };

describe('models: PyTorch fixtures (det_init, eval)', () => {
  // TransUNet's position embedding fixes its input size at construction: built for the fixture's 64 px.
  const cases: [string, string, sc.models.CreateOptions?][] = [['cmunext-s', 'cmunext_s'], ['cmunext', 'cmunext'], ['nexnet', 'nexnet'], ['unet-bilinear', 'unet_bilinear'], ['unet', 'unet'], ['attunet', 'attunet'], ['unext', 'unext'], ['mednext-s', 'mednext_s'], ['segformer-b0', 'segformer_b0'], ['transunet', 'transunet', { imgSize: 64 }]];
  for (const [name, file, opts] of cases) {
    const fx = path.join(FIX, `${file}_forward.json`);
    it(`${name}: logits match ${file}_forward.json (1e-4 relative, or as close to float64 as PyTorch float32)`, function () {
      if (!fs.existsSync(fx)) this.skip();
      this.timeout(120000);
      const ref = JSON.parse(fs.readFileSync(fx, 'utf8'));
      const m = sc.models.create(name, opts);
      detInit(m);
      m.eval();
      const y = sc.tidy(() => sc.noGrad(() => (m.forward(sinInput(ref.input.shape)) as sc.Tensor)));
      try {
        assert.deepEqual(y.shape, ref.output.shape);
        const got = y.toArray() as Float32Array;
        if (ref.output_float64) {
          // Where PyTorch's own float32 output is measurably off its float64 one (the fixture then
          // carries output_float64), scalpel's float32 must be as close to float64 as PyTorch's
          // float32 is: max |error| within 2x PyTorch's.
          const want: number[] = ref.output_float64.values;
          const maxAbs = (a: ArrayLike<number>) => want.reduce((m, w, i) => Math.max(m, Math.abs(Number(a[i]) - w)), 0);
          const mine = maxAbs(got), torch32 = maxAbs(ref.output.values);
          const factor = WINOGRAD_DEEP[name] ?? 2;
          console.log(`      ${name}: max |error| vs float64 ${mine.toExponential(2)} (PyTorch float32: ${torch32.toExponential(2)})`);
          assert.ok(mine <= factor * torch32, `max |error| ${mine} vs PyTorch float32's ${torch32} (allowed ${factor}x)`);
        } else {
          const { maxRel, at } = maxRelErr(got, ref.output.values);
          console.log(`      ${name}: max relative error ${maxRel.toExponential(2)}`);
          assert.ok(maxRel <= 1e-4, `max relative error ${maxRel} at ${at}`);
        }
      } finally {
        y.dispose();
        m.dispose();
      }
    });
  }

  /**
   * One SGD step of det_init CMUNeXt-S in train mode, as in tools/pytorch/make_fixtures.py's
   * train_fixture, with the model, input and target in `dtype`. Returns everything the fixture
   * records, and the model (still alive) for further checks.
   */
  function cmunextStep(dtype: 'float32' | 'float64') {
    const m = sc.models.create('cmunext-s');
    detInit(m);
    m.to(dtype).train();
    const x = sc.tidy(() => sinInput([2, 3, 64, 64]).to(dtype));
    const t = sc.tidy(() => sinInput([2, 1, 64, 64], 0.21, 1, 0).gt(0.3).to(dtype));
    const lossOf = (y: sc.Tensor) => {
      const bce = sc.F.bceWithLogits(y, t);
      const dice = sc.F.diceLoss(y, t);
      const total = sc.F.add(bce, dice);
      return { loss: total.item(), bce: bce.item(), dice: dice.item(), total };
    };
    const opt = new sc.optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    const before = sc.tidy(() => {
      const l = lossOf(m.forward(x) as sc.Tensor);
      opt.zeroGrad();
      l.total.backward();
      return { loss: l.loss, bce: l.bce, dice: l.dice };
    });
    const statsAfterForward = Object.fromEntries(Object.entries(m.stateDict())
      .filter(([k]) => !k.endsWith('num_batches_tracked'))
      .map(([k, v]) => [k, sc.tidy(() => v.sum().item())]));
    const gradAbsSum = Object.fromEntries(m.namedParameters().map(([k, p]) => [k, sc.tidy(() => p.grad!.abs().sum().item())]));
    opt.step();
    const paramAfter = Object.fromEntries(m.namedParameters().map(([k, p]) =>
      [k, sc.tidy(() => ({ sum: p.sum().item(), absSum: p.abs().sum().item() }))]));
    const after = sc.tidy(() => {
      const l = lossOf(m.forward(x) as sc.Tensor);
      return { loss: l.loss, bce: l.bce, dice: l.dice };
    });
    const positives = sc.tidy(() => t.sum().item());
    t.dispose();
    return { m, x, positives, before, after, statsAfterForward, gradAbsSum, paramAfter };
  }

  it('cmunext-s: one SGD step in float64 matches PyTorch float64 (cmunext_s_train.json) to 1e-6', function () {
    this.timeout(60000);
    const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'cmunext_s_train.json'), 'utf8')).float64;
    const r = cmunextStep('float64');
    try {
      // The fixture rounds to 7 significant digits: 1e-6 relative is its resolution.
      for (const k of ['loss', 'bce', 'dice'] as const) {
        relClose(r.before[k], ref.before[k], 1e-6, `${k} before`);
        relClose(r.after[k], ref.after[k], 1e-6, `${k} after`);
      }
      let worst = 0;
      for (const [k, g] of Object.entries(r.gradAbsSum)) {
        const want = ref.grad_stats[k].abs_sum;
        // Conv biases right before a batch norm have a zero gradient mathematically: rounding noise.
        if (want < 1e-9) { assert.ok(g < 1e-9, `${k}: gradient abs-sum ${g} vs ${want}`); continue; }
        relClose(g, want, 1e-6, `${k} gradient abs-sum`);
        worst = Math.max(worst, Math.abs(g - want) / want);
      }
      for (const [k, p] of Object.entries(r.paramAfter)) {
        const want = ref.param_after_step[k];
        relClose(p.absSum, want.abs_sum, 1e-6, `${k} after step (abs-sum)`);
        assert.ok(Math.abs(p.sum - want.sum) <= 1e-6 * want.abs_sum, `${k} after step: sum ${p.sum} vs ${want.sum}`);
      }
      console.log(`      gradient abs-sum worst rel err ${worst.toExponential(2)}`);
    } finally {
      r.x.dispose();
      r.m.dispose();
    }
  });

  it('cmunext-s: one SGD step in float32 matches cmunext_s_train.json (as close to float64 as PyTorch float32)', function () {
    this.timeout(60000);
    const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'cmunext_s_train.json'), 'utf8'));
    const r = cmunextStep('float32');
    const { m, x } = r;
    try {
      assert.deepEqual(m.namedParameters().map(([n]) => n), ref.param_names);
      assert.equal(r.positives, ref.target.positives);
      for (const k of ['loss', 'bce', 'dice'] as const) relClose(r.before[k], ref.before[k], 1e-5, `${k} before`);
      // running stats after the first train-mode forward
      for (const [k, v] of Object.entries(ref.running_stats_after_first_forward as Record<string, { sum: number }>)) {
        const s = r.statsAfterForward[k];
        assert.ok(Math.abs(s - v.sum) <= 1e-4 * Math.max(1, Math.abs(v.sum)), `${k}: ${s} vs ${v.sum}`);
      }
      // Gradients, compared by their abs-sums with the float64 step. The det_init network's logits
      // are nearly constant (std/mean ~ 5e-3), so train-mode BN backward cancels heavily and float32
      // gradients are noisy: PyTorch's own float32 ones are 0.2 % off its float64 ones in RMS over
      // the parameters and up to 1.2 % on one. Which parameter is worst is chance: between PyTorch
      // and scalpel single parameters differ 3-30x either way (L2 errors of Up2.up.2.bias 1.5e-4 vs
      // 4.7e-3, stem.conv.1.bias 3.7e-3 vs 7e-4). So scalpel's float32 must be as accurate as
      // PyTorch's in aggregate: RMS error within 2x PyTorch's, and no parameter over 3x PyTorch's
      // worst. (A wrong term anywhere is orders of magnitude beyond; the float64 test above is the
      // exact check.)
      const names: string[] = [], errs: number[] = [], torchErrs: number[] = [];
      for (const [k, g] of Object.entries(r.gradAbsSum)) {
        const want = ref.float64.grad_stats[k].abs_sum;
        // Conv biases right before a batch norm have a zero gradient mathematically: rounding noise.
        if (want < 1e-9) { assert.ok(g < 1e-4, `${k}: gradient abs-sum ${g} vs ${want}`); continue; }
        names.push(k);
        errs.push(Math.abs(g - want) / want);
        torchErrs.push(Math.abs(ref.grad_stats[k].abs_sum - want) / want);
      }
      const rms = (v: number[]) => Math.sqrt(v.reduce((a, e) => a + e * e, 0) / v.length);
      const [mine, torch32] = [rms(errs), rms(torchErrs)];
      assert.ok(mine <= 2 * torch32, `gradient abs-sums vs float64: RMS relative error ${mine.toExponential(2)}, PyTorch float32 ${torch32.toExponential(2)}`);
      const [worst, torchWorst] = [Math.max(...errs), Math.max(...torchErrs)];
      assert.ok(worst <= 3 * torchWorst, `gradient abs-sums vs float64: worst relative error ${worst.toExponential(2)} (${names[errs.indexOf(worst)]}), PyTorch float32's worst ${torchWorst.toExponential(2)}`);
      for (const [k, p] of Object.entries(r.paramAfter)) {
        const want = ref.param_after_step[k];
        relClose(p.absSum, want.abs_sum, 1e-4, `${k} after step (abs-sum)`);
        assert.ok(Math.abs(p.sum - want.sum) <= 1e-4 * want.abs_sum, `${k} after step: sum ${p.sum} vs ${want.sum}`);
      }
      // The loss after the step is ill-conditioned in float32 (the stem's weight gradient cancels
      // over 8192 positions): PyTorch float32 is 1.9e-4 from its float64 run, scalpel 6e-5.
      for (const k of ['loss', 'bce', 'dice'] as const) {
        relClose(r.after[k], ref.after[k], 5e-4, `${k} after (vs float32 PyTorch)`);
        relClose(r.after[k], ref.float64.after[k], 2e-4, `${k} after (vs float64 PyTorch)`);
      }
      assert.equal(Number(m.stateDict()['stem.conv.1.num_batches_tracked'].item()), 2);
      m.eval();
      const ye = sc.tidy(() => sc.noGrad(() => m.forward(x) as sc.Tensor));
      const { maxRel } = maxRelErr((ye.toArray() as Float32Array).slice(0, 16), ref.eval_after.output_first_16);
      ye.dispose();
      assert.ok(maxRel <= 1e-3, `eval after step: ${maxRel}`);
      console.log(`      gradient abs-sums vs float64: RMS ${mine.toExponential(2)} (PyTorch float32 ${torch32.toExponential(2)}), worst ${worst.toExponential(2)} (${torchWorst.toExponential(2)}); eval-after max rel err ${maxRel.toExponential(2)}`);
    } finally {
      x.dispose();
      m.dispose();
    }
  });
});

describe('models: forward + backward at small sizes', () => {
  // UNeXt halves five times, and batch norm in training needs more than one value per channel.
  const sizes: Record<string, number> = { nexnet: 64, 'nexnet-ae': 64, 'nexnet-ssl': 64, unext: 64 };
  for (const name of [...Object.keys(EXPECTED), 'unetpp']) {
    it(`${name}`, function () {
      this.timeout(60000);
      const s = sizes[name] ?? 32;
      sc.manualSeed(1);
      const m = sc.models.create(name);
      m.train();
      try {
        sc.tidy(() => {
          const x = sc.rand([1, 3, s, s]);
          const y = m.forward(x) as sc.Tensor;
          assert.deepEqual(y.shape, [1, name === 'nexnet-ae' ? 3 : 1, s, s]);
          const loss = name === 'nexnet-ae' ? sc.F.mseLoss(y, x) : sc.F.bceWithLogits(y, sc.zerosLike(y));
          loss.backward();
          assert.ok(Number.isFinite(loss.item()));
          const ps = m.namedParameters().filter(([, p]) => p.requiresGrad);
          const missing = ps.filter(([, p]) => !p.grad).map(([n]) => n);
          // NExNet Seg does not use its last block's att branch (as in the authors' code).
          // MedNeXt's dummy_tensor is its authors' unused parameter (kept for their checkpoints).
          const allowed = missing.filter((n) => !(name === 'nexnet' && n.startsWith('enc.5.att.')) && !(name.startsWith('mednext') && n === 'dummy_tensor'));
          assert.deepEqual(allowed, [], 'parameters without gradient');
          for (const [n, p] of ps) if (p.grad) assert.ok(Number.isFinite(p.grad.abs().sum().item()), `${n}: non-finite grad`);
        });
        if (name === 'nexnet-ssl') {
          const ae = (m as sc.models.NExNetSeg).ae!;
          assert.ok(ae.parameters().every((p) => !p.requiresGrad && !p.grad), 'frozen autoencoder');
          assert.ok(!ae.training, 'frozen autoencoder stays in eval mode');
          assert.equal(m.numParameters(true), EXPECTED['nexnet-ssl'] - EXPECTED['nexnet-ae']);
        }
      } finally {
        m.zeroGrad();
        m.dispose();
      }
    });
  }
  it('nexnet-ssl with freezeEncoder: false trains the autoencoder too', function () {
    this.timeout(60000);
    const m = sc.models.create('nexnet-ssl', { freezeEncoder: false }) as sc.models.NExNetSeg;
    assert.equal(m.numParameters(true), EXPECTED['nexnet-ssl']);
    sc.tidy(() => {
      const y = m.forward(sc.rand([1, 3, 64, 64]));
      y.sum().backward();
    });
    assert.ok(m.ae!.enc.items[0].conv1.weight.grad, 'autoencoder encoder gets gradients');
    m.zeroGrad();
    m.dispose();
  });
});

describe('models: SegFormer', () => {
  // tools/pytorch/models.py SegFormer at 150 classes (ADE20K); the paper rounds these to 3.8 / 13.7 / 27.5 M.
  const at150: Record<string, number> = { 'segformer-b0': 3752694, 'segformer-b1': 13715798, 'segformer-b2': 27461974 };
  for (const [name, n] of Object.entries(at150)) {
    it(`${name}: ${n.toLocaleString('en-US')} parameters at 150 classes, only the prediction layer changes`, () => {
      const m = sc.models.create(name, { numClasses: 150 });
      try {
        assert.equal(m.numParameters(), n);
        const want = readParamsList(path.join(FIX, 'params', `${name}.params.txt`)).entries.map(([k, shape]): [string, number[]] =>
          [k, k === 'decode_head.linear_pred.weight' ? [150, ...shape.slice(1)] : k === 'decode_head.linear_pred.bias' ? [150] : shape]);
        assert.deepEqual(stateList(m), want);
      } finally {
        m.dispose();
      }
    });
  }
  it('names the authors\' modules: spatial-reduction attention, Mix-FFN, decoder', () => {
    const m = sc.models.create('segformer-b0');
    const names = Object.keys(m.stateDict());
    for (const k of ['backbone.patch_embed1.proj.weight', 'backbone.block1.0.attn.q.weight', 'backbone.block1.0.attn.kv.weight',
      'backbone.block1.0.attn.sr.weight', 'backbone.block1.0.attn.norm.bias', 'backbone.block1.1.mlp.dwconv.dwconv.weight',
      'backbone.norm4.weight', 'decode_head.linear_c4.proj.weight', 'decode_head.linear_fuse.conv.weight',
      'decode_head.linear_fuse.bn.running_var', 'decode_head.linear_pred.weight']) assert.ok(names.includes(k), k);
    // Stage 4 (ratio 1) has no reduction conv; the fuse conv has no bias.
    assert.ok(!names.includes('backbone.block4.0.attn.sr.weight') && !names.includes('decode_head.linear_fuse.conv.bias'));
    assert.deepEqual(m.stateDict()['backbone.block1.0.attn.sr.weight'].shape, [32, 32, 8, 8]);
    assert.deepEqual(m.stateDict()['decode_head.linear_fuse.conv.weight'].shape, [256, 1024, 1, 1]);
    m.dispose();
  });
  it('rejects H or W not a multiple of 32 and a wrong channel count, naming the shape', () => {
    const m = sc.models.create('segformer-b0');
    assert.throws(() => sc.tidy(() => m.forward(sc.zeros([1, 3, 48, 64]))), /SegFormer: expected an input \[N, C, H, W\] with H and W positive multiples of 32 \(the encoder's 1\/32 stage\), got \[1, 3, 48, 64\]/);
    assert.throws(() => sc.tidy(() => m.forward(sc.zeros([1, 3, 64]))), /multiples of 32.*got \[1, 3, 64\]/);
    assert.throws(() => sc.tidy(() => m.forward(sc.zeros([1, 1, 64, 64]))), /SegFormer: expected 3 input channels, got \[1, 1, 64, 64\]/);
    m.dispose();
  });
  it('segformer-b0 at 512x512 with 150 classes: 8.39 GMAC, the paper\'s 8.4 G (ADE20K Table 1)', function () {
    this.timeout(120000);
    const m = sc.models.create('segformer-b0', { numClasses: 150 });
    const s = sc.summary(m, [3, 512, 512]);
    console.log(`      segformer-b0: ${s.totals.gmac.toFixed(3)} GMAC at 512, 150 classes`);
    assert.ok(Math.abs(s.totals.gmac - 8.4) <= 0.01 * 8.4, `GMAC ${s.totals.gmac}`);
    // The attention module's own row is the fused op (q k^T and P v): stage 1 at 512 has 128*128
    // queries, 16*16 keys, d = 32; with its children: q and proj on the full map, the 8x8 stride-8
    // reduction conv, kv on the reduced map.
    const attn = s.rows.find((r) => r.path === 'backbone.block1.0.attn')!;
    assert.equal(attn.macs, 128 * 128 * 256 * (32 + 32));
    const children = 128 * 128 * 32 * 32 * 2 + 16 * 16 * 32 * (32 * 64) + 16 * 16 * 32 * 64;
    assert.equal(attn.totalMacs, attn.macs + children);
    m.dispose();
  });
  it('drop path and decoder dropout act in training only; eval is deterministic', function () {
    this.timeout(60000);
    sc.manualSeed(3);
    const m = sc.models.create('segformer-b0');
    const x = sc.rand([2, 3, 64, 64]);
    sc.tidy(() => {
      m.train();
      // Each training forward draws new masks: the outputs differ.
      const a = (m.forward(x) as sc.Tensor).toArray() as Float32Array;
      const b = (m.forward(x) as sc.Tensor).toArray() as Float32Array;
      assert.ok(a.some((v, i) => v !== b[i]), 'training forwards differ');
      m.eval();
      const c = sc.noGrad(() => (m.forward(x) as sc.Tensor).toArray() as Float32Array);
      const d = sc.noGrad(() => (m.forward(x) as sc.Tensor).toArray() as Float32Array);
      assert.deepEqual(Array.from(c), Array.from(d));
    });
    // The stochastic-depth rates rise linearly from 0 to 0.1 over the 8 blocks of B0.
    const rates = (m as sc.models.SegFormer).backbone.blocks.flatMap((l) => l.items.map((b) => b.dropPathRate));
    rates.forEach((r, i) => assert.ok(Math.abs(r - (0.1 * i) / 7) < 1e-12, `block ${i}: ${r}`));
    x.dispose();
    m.dispose();
  });
});

function overfit(name: string, size: number, steps: number, lr: number): number {
  sc.manualSeed(0);
  const m = sc.models.create(name);
  m.train();
  // Two images: bright disc / square on a noisy background; target = the shape.
  const N = 2, H = size, W = size;
  const xv = new Float32Array(N * 3 * H * W), tv = new Float32Array(N * H * W);
  for (let n = 0; n < N; n++) for (let yy = 0; yy < H; yy++) for (let xx = 0; xx < W; xx++) {
    const inside = n === 0 ? (yy - H * 0.45) ** 2 + (xx - W * 0.55) ** 2 < (H * 0.25) ** 2 : Math.abs(yy - H * 0.6) < H * 0.2 && Math.abs(xx - W * 0.4) < W * 0.15;
    tv[(n * H + yy) * W + xx] = inside ? 1 : 0;
    for (let c = 0; c < 3; c++) xv[((n * 3 + c) * H + yy) * W + xx] = (inside ? 0.7 : 0.3) + 0.15 * Math.sin(0.9 * xx + 1.7 * yy + c);
  }
  const x = sc.fromTyped(xv, [N, 3, H, W], 'float32', 'cpu');
  const t = sc.fromTyped(tv, [N, 1, H, W], 'float32', 'cpu');
  const opt = new sc.optim.Adam(m.parameters(), { lr });
  let dice = 0;
  for (let step = 0; step < steps; step++) {
    sc.tidy(() => {
      const y = m.forward(x) as sc.Tensor;
      const loss = sc.F.add(sc.F.bceWithLogits(y, t), sc.F.diceLoss(y, t));
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });
    if (step % 20 === 19 || step === steps - 1) {
      m.eval();
      dice = sc.tidy(() => sc.noGrad(() => {
        const p = (m.forward(x) as sc.Tensor).gt(0).to('float32');
        return (2 * p.mul(t).sum().item()) / (p.sum().item() + t.sum().item() + 1e-9);
      }));
      m.train();
      if (dice > 0.97) break;
    }
  }
  x.dispose();
  t.dispose();
  m.dispose();
  return dice;
}

describe('models: overfitting two images', () => {
  it('cmunext-s reaches Dice > 0.95 at 64x64', function () {
    this.timeout(120000);
    const t0 = Date.now();
    const dice = overfit('cmunext-s', 64, 300, 1e-2);
    console.log(`      cmunext-s: Dice ${dice.toFixed(4)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(dice > 0.95, `Dice ${dice}`);
  });
  const heavy: [string, number, number][] = [
    ['unet-bilinear', 64, 3e-3], ['unet', 64, 3e-3], ['unetpp', 64, 3e-3], ['cmunext', 64, 3e-3], ['nexnet', 64, 1e-3], ['segformer-b0', 64, 1e-3],
    ['attunet', 64, 3e-3], ['unext', 64, 3e-3], ['mednext-s', 64, 1e-3],
  ];
  for (const [name, size, lr] of heavy) {
    it(`${name} reaches Dice > 0.95 (SCALPEL_HEAVY_TESTS=1)`, function () {
      if (!HEAVY) this.skip();
      this.timeout(1800000);
      const t0 = Date.now();
      const dice = overfit(name, size, 300, lr);
      console.log(`      ${name}: Dice ${dice.toFixed(4)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      assert.ok(dice > 0.95, `Dice ${dice}`);
    });
  }
});

describe('summary', () => {
  it('CMUNeXt-S at 3x256x256: 1.01 GMAC, 417,505 params, per-module rows', function () {
    this.timeout(60000);
    const m = sc.models.create('cmunext-s');
    const s = sc.summary(m, [3, 256, 256]);
    console.log(`      cmunext-s: ${s.totals.gmac.toFixed(4)} GMAC, activations ${(s.totals.activationBytes / 2 ** 20).toFixed(1)} MiB`);
    assert.equal(s.totals.params, 417505);
    assert.equal(s.totals.trainableParams, 417505);
    assert.ok(Math.abs(s.totals.gmac - 1.01) <= 0.0101, `GMAC ${s.totals.gmac}`);
    assert.equal(s.totals.gflops, 2 * s.totals.gmac);
    assert.deepEqual(s.outputShape, [1, 1, 256, 256]);
    const stem = s.rows.find((r) => r.path === 'stem.conv.0')!;
    assert.equal(stem.type, 'Conv2d');
    assert.deepEqual(stem.outputShape, [1, 8, 256, 256]);
    assert.equal(stem.params, 8 * 3 * 9 + 8);
    assert.equal(stem.macs, 256 * 256 * 8 * 27);
    assert.equal(s.rows.find((r) => r.path === 'Up5.up.0')!.type, 'Upsample');
    assert.equal(s.rows.reduce((a, r) => a + r.macs, 0), s.totals.macs);
    assert.equal(s.rows[0].totalMacs, s.totals.macs);
    assert.equal(s.rows.reduce((a, r) => a + r.params, 0), 417505);
    assert.ok(s.totals.activationBytes > 1e6);
    assert.ok(m.training, 'training flag restored');
    const text = sc.formatSummary(s, { maxDepth: 1 });
    assert.match(text, /encoder1\s+CMUNeXtStage\s+\[1, 8, 256, 256\]/);
    assert.match(text, /MACs: 1\.0\d\d G/);
    m.dispose();
  });
  it('counts attention and linear MACs (NExNet Seg at 64x64 equals its conv + bmm + attention sum)', function () {
    this.timeout(60000);
    const m = sc.models.create('nexnet');
    const s = sc.summary(m, [3, 64, 64]);
    const masa = s.rows.find((r) => r.path === 'enc.0.att.masa')!;
    // 64x64 map, d = 32: three projections (3 * 4096 * 32 * 32) + 2 passes of 2*L*L*D over 64 rows / 64 columns.
    assert.equal(masa.macs, 2 * 3 * 4096 * 32 * 32 + 2 * 2 * 64 * 64 * 64 * 32);
    assert.equal(s.rows.find((r) => r.path === 'enc.5.att')!.outputShape, null, 'last att branch does not run');
    m.dispose();
  });
  it('GMACs of every model at its default input size (SCALPEL_HEAVY_TESTS=1)', function () {
    if (!HEAVY) this.skip();
    this.timeout(600000);
    // models.md: NExNet Seg 16.5 GMAC. That figure includes the last NEx block's att branch
    // (DoubleConv 512 + MaSA at 7x7, 0.309 GMAC), whose output the non-SSL model never uses; like
    // tools/pytorch/models.py, our forward skips it: 16.159 GMAC, exactly what a hook counter over
    // the PyTorch reference forward gives (16.468 with that branch computed).
    // TransUNet: 38.384 counted from the ops (conv, linear and attention products), 38.52 published.
    const want: Record<string, number> = { 'cmunext-s': 1.01, cmunext: 7.23, 'cmunext-l': 16.85, nexnet: 16.159, unet: 48.2, 'unet-bilinear': 40.0, attunet: 66.63, transunet: 38.52 };
    // UNeXt: 0.562 GMAC counted from the ops at 256; the papers' 0.58 comes from a counter that also
    // counts its LayerNorms and activations, so it is printed above, not asserted.
    for (const info of sc.models.list()) {
      const m = sc.models.create(info.name);
      const s = sc.summary(m, info.inputSize);
      console.log(`      ${info.name} at ${info.inputSize.join('x')}: ${s.totals.gmac.toFixed(3)} GMAC, ${s.totals.params} params`);
      if (want[info.name]) assert.ok(Math.abs(s.totals.gmac - want[info.name]) <= 0.01 * want[info.name], `${info.name}: ${s.totals.gmac}`);
      m.dispose();
    }
  });
});
