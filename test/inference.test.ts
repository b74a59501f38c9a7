// sc.inference.optimize: fused conv -> BN -> activation chains give the plain eval forward's
// output on every model, are dropped when the weights may change, and refuse a forward that no
// longer follows the traced dataflow; the recorded forward replays the same values.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

/** Non-trivial batch-norm statistics and affine parameters, so folding them is really tested. */
function randomiseBatchNorms(model: sc.nn.Module, seed = 1): void {
  const g = new sc.Generator(seed);
  sc.noGrad(() => {
    for (const [, m] of model.namedModules()) {
      if (!(m instanceof sc.nn.BatchNorm2d)) continue;
      const c = m.numFeatures;
      const set = (t: sc.Tensor | null, f: () => number) => t && sc.nn.copyInto(t, sc.tensor(Array.from({ length: c }, f), [c]));
      set(m.runningMean, () => 0.3 * g.normal());
      set(m.runningVar, () => 0.5 + 1.5 * g.next());
      set(m.weight, () => 0.5 + g.next());
      set(m.bias, () => 0.2 * g.normal());
    }
  });
}

function maxRelDiff(a: sc.Tensor, b: sc.Tensor): number {
  const x = a.toArray() as Float32Array, y = b.toArray() as Float32Array;
  let d = 0, m = 0;
  for (let i = 0; i < x.length; i++) {
    d = Math.max(d, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  return d / Math.max(m, 1e-6);
}

const outputsOf = (v: unknown): sc.Tensor[] =>
  v instanceof sc.Tensor ? [v] : Array.isArray(v) ? v.flatMap(outputsOf) : v && typeof v === 'object' ? Object.values(v).flatMap(outputsOf) : [];

describe('inference plans (sc.inference.optimize)', function () {
  this.timeout(120000);

  for (const info of sc.models.list()) {
    it(`${info.name}: optimised and plain eval forward agree`, () => {
      // A model whose input size is fixed at construction (TransUNet's position embedding) is built for 64 px.
      const model = sc.models.create(info.name, info.options.includes('imgSize') ? { imgSize: 64 } : {});
      randomiseBatchNorms(model);
      model.eval();
      const x = sc.randn([2, info.inputSize[0], 64, 64], { generator: new sc.Generator(7) });
      const plain = sc.tidy(() => sc.noGrad(() => outputsOf(model.forward(x)).map((t) => t.clone())));
      const report = sc.inference.optimize(model, [1, info.inputSize[0], 64, 64]);
      assert.ok(report.fused > 0 && report.fused <= report.convs, `nothing fused: ${JSON.stringify(report)}`);
      const fused = sc.tidy(() => sc.noGrad(() => outputsOf(model.forward(x)).map((t) => t.clone())));
      assert.equal(fused.length, plain.length);
      for (let i = 0; i < plain.length; i++) {
        assert.deepEqual(fused[i].shape, plain[i].shape);
        const d = maxRelDiff(fused[i], plain[i]);
        assert.ok(d < 2e-4, `${info.name} output ${i}: max difference ${d} of the output's range`);
      }
      // The second call with this shape is recorded, the third replayed: the same kernels, so
      // the same values to the bit, in outputs of the same structure.
      const recorded = sc.tidy(() => sc.noGrad(() => outputsOf(model.forward(x)).map((t) => t.clone())));
      const replayed = sc.noGrad(() => outputsOf(model.forward(x)));
      const rinfo = sc.inference.replayInfo(model);
      assert.ok(rinfo.recorded && rinfo.replays === 1, `${info.name}: not replayed: ${JSON.stringify(rinfo)}`);
      for (let i = 0; i < plain.length; i++) {
        assert.deepEqual(replayed[i].shape, fused[i].shape);
        assert.deepEqual(replayed[i].toArray(), fused[i].toArray(), `${info.name} output ${i}: the replayed forward differs from the optimised one`);
        assert.deepEqual(recorded[i].toArray(), fused[i].toArray());
      }
      sc.dispose([...plain, ...fused, ...recorded, ...replayed, x]);
      model.dispose();
    });
  }

  it('fuses every conv -> act -> BN and conv -> BN -> ReLU chain of CMUNeXt-S', () => {
    const model = sc.models.create('cmunext-s');
    const r = sc.inference.optimize(model, [1, 3, 32, 32]);
    // 38 convolutions; all but the 1x1 head are followed by BN and an activation.
    assert.deepEqual(r, { convs: 38, fused: 37, batchNormsFolded: 37, activationsFused: 37 });
    model.dispose();
  });

  it('applies only in eval mode without gradients, and train() drops the plan', () => {
    const model = sc.models.create('cmunext-s');
    randomiseBatchNorms(model);
    sc.inference.optimize(model, [1, 3, 32, 32]);
    const x = sc.randn([1, 3, 32, 32]);
    // With gradients recorded, the plain path runs (the fused op has no backward).
    const withGrad = model.forward(x) as sc.Tensor;
    assert.ok(withGrad.requiresGrad);
    const plain = sc.noGrad(() => model.forward(x) as sc.Tensor);
    assert.ok(maxRelDiff(plain, withGrad.detach()) < 2e-4);
    model.train();
    const conv = model.namedModules().find(([, m]) => m instanceof sc.nn.Conv2d)![1] as sc.nn.Conv2d;
    assert.equal(conv.fused, null);
    sc.dispose([x, withGrad, plain]);
    model.dispose();
  });

  it('an optimised forward frees its intermediates at once in a plain loop (no tidy of the caller)', () => {
    const model = sc.models.create('cmunext-s');
    sc.inference.optimize(model, [1, 3, 32, 32]);
    const x = sc.randn([1, 3, 32, 32]);
    const live = () => sc.memory().liveTensors;
    sc.noGrad(() => model.forward(x) as sc.Tensor).dispose();
    const before = live();
    for (let i = 0; i < 5; i++) sc.noGrad(() => model.forward(x) as sc.Tensor).dispose();
    assert.equal(live(), before, 'intermediates of the optimised eval forward outlived it');
    // The returned tensor survives, and in training mode nothing is disposed behind autograd's back.
    const y = sc.noGrad(() => model.forward(x) as sc.Tensor);
    assert.equal(y.shape[1], 1);
    y.dispose();
    sc.inference.release(model);
    assert.ok(!Object.prototype.hasOwnProperty.call(model, 'forward'), 'release() left the tidy wrapper installed');
    const grow = live();
    sc.noGrad(() => model.forward(x) as sc.Tensor).dispose();
    assert.ok(live() > grow, 'a plain (released) forward leaves intermediates to the GC; the test above relies on the wrapper');
    x.dispose();
    model.dispose();
  });

  it('refuses a forward that no longer follows the traced dataflow', () => {
    const conv = new sc.nn.Conv2d(2, 3, 3, { padding: 1 });
    const bn = new sc.nn.BatchNorm2d(3);
    class Branchy extends sc.nn.Module {
      readonly c = this.add('c', conv);
      readonly b = this.add('b', bn);
      mode = 0;
      forward(x: sc.Tensor): sc.Tensor {
        const y = this.c.forward(x);
        return this.mode === 0 ? this.b.forward(y) : this.b.forward(y.add(1));
      }
    }
    const m = new Branchy();
    const r = sc.inference.optimize(m, [1, 2, 5, 5]);
    assert.equal(r.fused, 1);
    const x = sc.randn([1, 2, 5, 5]);
    sc.noGrad(() => sc.tidy(() => void m.forward(x)));
    m.mode = 1;
    assert.throws(() => sc.noGrad(() => sc.tidy(() => void m.forward(x))), /'b' was fused into the convolution 'c'.*does not follow the traced plan/);
    sc.inference.release(m);
    assert.equal(conv.fused, null);
    sc.noGrad(() => sc.tidy(() => void m.forward(x)));
    x.dispose();
    m.dispose();
  });

  it('does not fuse a convolution whose output has another consumer', () => {
    class Skip extends sc.nn.Module {
      readonly c = this.add('c', new sc.nn.Conv2d(2, 2, 3, { padding: 1 }));
      readonly a = this.add('a', sc.nn.ReLU());
      forward(x: sc.Tensor): sc.Tensor {
        const y = this.c.forward(x);
        return this.a.forward(y).add(y);
      }
    }
    const m = new Skip();
    assert.equal(sc.inference.optimize(m, [1, 2, 4, 4]).fused, 0);
    m.dispose();
  });

  it('conv2dFused refuses inputs that require gradients outside noGrad', () => {
    const w = sc.randn([2, 2, 3, 3]).requiresGrad_();
    const x = sc.randn([1, 2, 4, 4]);
    assert.throws(() => sc.F.conv2dFused(x, w, null, { act: 'relu' }), /conv2dFused: has no gradient/);
    sc.dispose([w, x]);
  });
});
