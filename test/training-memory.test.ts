// What a training step keeps for backward: activation checkpointing (sc.checkpoint,
// sc.nn.checkpointModules), the fused GELU -> BN / BN -> ReLU / GELU -> conv pairs, and backward freeing
// gradients as it goes. Each must give the same gradients as the plain path and keep less.
import { strict as assert } from 'node:assert';
import * as sc from '../src';

const MB = 2 ** 20;

/** One training step's gradients, running statistics and loss, and the bytes kept after forward. */
function step(model: sc.nn.Module, x: sc.Tensor, t: sc.Tensor, backwardOpts: sc.BackwardOptions = {}) {
  model.train();
  for (const p of model.parameters()) p.grad?.dispose(), (p.grad = null);
  let keptAfterForward = 0, peakDuringBackward = 0, loss = 0;
  const base = sc.memory().cpu.bytesInUse;
  sc.resetPeakMemory();
  sc.tidy(() => {
    const out = model.forward(x) as sc.Tensor;
    const l = sc.F.add(sc.F.bceWithLogits(out, t), sc.F.diceLoss(out, t));
    keptAfterForward = sc.memory().cpu.bytesInUse - base;
    loss = l.item();
    l.backward(null, backwardOpts);
  });
  peakDuringBackward = sc.memory().cpu.peakBytesInUse - base;
  const grads = model.namedParameters().map(([n, p]) => [n, p.grad ? Array.from(p.grad.toArray() as Float32Array) : null] as const);
  const buffers = model.namedBuffers().map(([n, b]) => [n, Array.from(b.toArray() as ArrayLike<number>, Number)] as const);
  return { grads, buffers, loss, keptAfterForward, peakDuringBackward };
}

function maxRelDiff(a: readonly (readonly [string, number[] | null])[], b: readonly (readonly [string, number[] | null])[]): { diff: number; name: string } {
  let worst = { diff: 0, name: '' };
  a.forEach(([name, va], i) => {
    const vb = b[i][1];
    assert.equal(b[i][0], name);
    assert.equal(!va, !vb, `${name}: gradient present in one run only`);
    if (!va || !vb) return;
    let scale = 1e-3;
    for (const v of va) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < va.length; j++) {
      const d = Math.abs(va[j] - vb[j]) / scale;
      if (d > worst.diff) worst = { diff: d, name };
    }
  });
  return worst;
}

/** fn's result and how many times each top-level op ran during it, by op name. */
function countingOps<T>(fn: () => T): [T, Map<string, number>] {
  const seen = new Map<string, number>();
  const stop = sc.observeOps((op, _i, _o, _a, nested) => { if (!nested) seen.set(op.name, (seen.get(op.name) ?? 0) + 1); });
  try {
    return [fn(), seen];
  } finally {
    stop();
  }
}

function twin(name: string, opts: sc.models.CreateOptions = {}): [sc.nn.Module, sc.nn.Module] {
  sc.manualSeed(7);
  const a = sc.models.create(name, opts);
  const b = sc.models.create(name, opts);
  b.loadStateDict(a.stateDict());
  return [a, b];
}

describe('training memory', () => {
  describe('sc.checkpoint', () => {
    it('gives the plain gradients for inputs and the parameters the function closes over, and dropout draws the same mask', () => {
      sc.manualSeed(3);
      const lin = new sc.nn.Linear(6, 5);
      const x = sc.randn([4, 6]);
      x.requiresGrad = true;
      const f = (a: sc.Tensor) => sc.F.dropout(sc.F.gelu(lin.forward(a)), 0.3, true).mul(a.sum(1, true));
      const run = (ck: boolean) => {
        x.grad?.dispose(); x.grad = null;
        lin.parameters().forEach((p) => { p.grad?.dispose(); p.grad = null; });
        sc.manualSeed(11);
        sc.tidy(() => (ck ? sc.checkpoint(f, x) : f(x)).square().sum().backward());
        return [x, ...lin.parameters()].map((p) => Array.from(p.grad!.toArray() as Float32Array));
      };
      const plain = run(false), ck = run(true);
      plain.forEach((g, i) => g.forEach((v, j) => assert.ok(Math.abs(v - ck[i][j]) <= 1e-6 * Math.max(1, Math.abs(v)), `grad ${i}[${j}]: ${v} vs ${ck[i][j]}`)));
      // The recomputation must not move the random stream: the next draw is the same in both.
      sc.manualSeed(11);
      sc.tidy(() => f(x));
      const after = sc.rand([3]).toArray();
      sc.manualSeed(11);
      sc.tidy(() => sc.checkpoint(f, x).square().sum().backward());
      assert.deepEqual(Array.from(sc.rand([3]).toArray()), Array.from(after));
    });

    it('refuses a function that reads a tensor needing grad computed outside it, or returns no tensor', () => {
      const w = sc.randn([3, 3]);
      w.requiresGrad = true;
      const outside = w.mul(2);
      assert.throws(() => sc.checkpoint((a) => a.matmul(outside), sc.randn([2, 3])), /computed outside it; pass it to checkpoint as an input/);
      assert.throws(() => sc.checkpoint((() => 3) as never, sc.randn([2])), /must return a Tensor or an array holding tensors/);
      assert.throws(() => sc.checkpoint((a) => a, 'x' as never), /input 0 must be a Tensor/);
      // Without autograd it is just the function.
      const y = sc.noGrad(() => sc.checkpoint((a) => a.mul(2), w));
      assert.equal(y.gradFn, null);
    });

    it('checkpointModules on CMUNeXt-S: same gradients and running statistics, less kept after forward', function () {
      this.timeout(60000);
      const [plain, ck] = twin('cmunext-s');
      const names = sc.nn.checkpointModules(ck);
      assert.ok(names.includes('encoder1') && names.includes('Up_conv2'), `wrapped: ${names.join(', ')}`);
      sc.manualSeed(5);
      const x = sc.randn([2, 3, 64, 64]);
      const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
      const a = step(plain, x, t), b = step(ck, x, t);
      assert.ok(Math.abs(a.loss - b.loss) < 1e-6, `loss ${a.loss} vs ${b.loss}`);
      const g = maxRelDiff(a.grads, b.grads);
      assert.ok(g.diff < 1e-4, `gradient of ${g.name} differs by ${g.diff}`);
      const r = maxRelDiff(a.buffers, b.buffers);
      assert.ok(r.diff < 1e-6, `buffer ${r.name} differs by ${r.diff} (running statistics must move once per step)`);
      assert.ok(b.keptAfterForward < 0.5 * a.keptAfterForward, `kept after forward: ${(b.keptAfterForward / MB).toFixed(1)} MB checkpointed vs ${(a.keptAfterForward / MB).toFixed(1)} MB plain`);
    });

    it('checkpointModules works on every model that trains at 64 px, with the plain gradients', function () {
      this.timeout(300000);
      // The large models are covered at the same code path by the smaller ones of their family.
      const names = ['unet-bilinear', 'unetpp', 'attunet', 'unext', 'mednext-s', 'cmunext', 'nexnet'];
      for (const name of names) {
        const [plain, ck] = twin(name);
        sc.nn.checkpointModules(ck);
        sc.manualSeed(5);
        const x = sc.randn([2, 3, 64, 64]);
        const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
        const a = step(plain, x, t), b = step(ck, x, t);
        const g = maxRelDiff(a.grads, b.grads);
        assert.ok(g.diff < 1e-3, `${name}: gradient of ${g.name} differs by ${g.diff}`);
        assert.ok(b.keptAfterForward < a.keptAfterForward, `${name}: kept after forward ${(b.keptAfterForward / MB).toFixed(1)} vs ${(a.keptAfterForward / MB).toFixed(1)} MB`);
        x.dispose(); t.dispose();
      }
    });
  });

  describe('fused activation + batch norm while training', () => {
    it('CMUNeXt-S trains through act_batch_norm and keeps less than the separate ops would', function () {
      this.timeout(60000);
      sc.manualSeed(2);
      const m = sc.models.create('cmunext-s');
      const x = sc.randn([2, 3, 32, 32]);
      const t = sc.rand([2, 1, 32, 32]).gt(0.5).to('float32');
      let [, seen] = countingOps(() => step(m, x, t));
      // 14 GELU -> BN pairs and 14 BN -> ReLU pairs in CMUNeXt-S; no separate gelu left.
      assert.ok((seen.get('act_batch_norm') ?? 0) >= 20, `act_batch_norm ran ${seen.get('act_batch_norm')} times`);
      assert.equal(seen.get('batch_norm') ?? 0, 0, 'every BN of CMUNeXt-S is paired with an activation');
      // Eval forwards keep the separate ops (what inference plans and ONNX export trace).
      m.eval();
      [, seen] = countingOps(() => sc.noGrad(() => sc.tidy(() => { m.forward(x); })));
      assert.equal(seen.get('act_batch_norm') ?? 0, 0);
      assert.ok((seen.get('batch_norm') ?? 0) > 0);
    });
  });

  describe('fused GELU -> conv (+ residual) while training', () => {
    it('MedNeXt-S trains through act_conv2d with the separate ops\' gradients and keeps less', function () {
      this.timeout(120000);
      const [fused, separate] = twin('mednext-s');
      // A GELU module whose activation tag is cleared is an ordinary function module:
      // Conv2d.forwardAfter then runs GELU, conv and add as separate ops.
      let blocks = 0;
      for (const [, m] of separate.namedModules()) {
        if (m instanceof sc.nn.Lambda && m.activation === 'gelu') (m.activation = null), blocks++;
      }
      assert.ok(blocks >= 20, `${blocks} GELU modules`);
      sc.manualSeed(8);
      const x = sc.randn([2, 3, 64, 64]);
      const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
      const [a, seen] = countingOps(() => step(fused, x, t));
      assert.equal(seen.get('act_conv2d'), blocks, 'every block runs GELU -> conv3 as one op');
      const b = step(separate, x, t);
      assert.ok(Math.abs(a.loss - b.loss) < 1e-5, `loss ${a.loss} vs ${b.loss}`);
      const g = maxRelDiff(a.grads, b.grads);
      assert.ok(g.diff < 1e-4, `gradient of ${g.name} differs by ${g.diff}`);
      // Per block the separate ops keep the GELU output (r x channels) and conv3's output.
      assert.ok(a.keptAfterForward < 0.85 * b.keptAfterForward, `kept after forward: ${(a.keptAfterForward / MB).toFixed(1)} MB fused vs ${(b.keptAfterForward / MB).toFixed(1)} MB separate`);
      x.dispose(); t.dispose();
    });
  });

  describe('fused GN -> ReLU and add -> ReLU while training', () => {
    it('TransUNet (narrow) trains through them with the separate ops\' gradients and keeps less', function () {
      this.timeout(120000);
      const cfg = { imgSize: 32, config: { hidden: 64, layers: 2, heads: 4, mlp: 128, resnetUnits: [1, 2, 1], width: 32, headChannels: 64, decoderChannels: [32, 32, 32, 16] } };
      sc.manualSeed(9);
      const fused = new sc.models.TransUNet(3, 1, cfg);
      const separate = new sc.models.TransUNet(3, 1, cfg);
      separate.loadStateDict(fused.stateDict());
      let units = 0;
      for (const [name, m] of separate.namedModules()) {
        if (m instanceof sc.nn.Lambda && m.activation === 'relu' && /body\.block\d\.unit\d+\.relu$/.test(name)) (m.activation = null), units++;
      }
      assert.equal(units, 4, 'ResNet units');
      sc.manualSeed(10);
      const x = sc.randn([2, 3, 32, 32]);
      const t = sc.rand([2, 1, 32, 32]).gt(0.6).to('float32');
      sc.manualSeed(11);  // the same dropout masks in both runs
      const [a, seen] = countingOps(() => step(fused, x, t));
      assert.equal(seen.get('add_relu'), units);
      sc.manualSeed(11);
      const b = step(separate, x, t);
      assert.ok(Math.abs(a.loss - b.loss) < 1e-5, `loss ${a.loss} vs ${b.loss}`);
      const g = maxRelDiff(a.grads, b.grads);
      assert.ok(g.diff < 1e-4, `gradient of ${g.name} differs by ${g.diff}`);
      assert.ok(a.keptAfterForward < b.keptAfterForward, `kept after forward: ${(a.keptAfterForward / MB).toFixed(2)} MB fused vs ${(b.keptAfterForward / MB).toFixed(2)} MB separate`);
      x.dispose(); t.dispose();
    });
  });

  describe('intermediates no backward reads are freed while training (decoder joins, attention gates, linear bias)', () => {
    it('same gradients as keeping them, less kept after forward, on each model that does it', function () {
      this.timeout(300000);
      const proto = sc.Tensor.prototype as unknown as { releaseData: (reason: string) => void };
      const release = proto.releaseData;
      for (const name of ['unet', 'unet-bilinear', 'attunet', 'unetpp', 'nexnet', 'segformer-b0', 'unext']) {
        const [freed, kept] = twin(name);
        sc.manualSeed(12);
        const x = sc.randn([2, 3, 64, 64]);
        const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
        sc.manualSeed(13);
        const a = step(freed, x, t);
        proto.releaseData = () => {};  // the baseline: every intermediate held to the step's end
        let b: ReturnType<typeof step>;
        try {
          sc.manualSeed(13);
          b = step(kept, x, t);
        } finally {
          proto.releaseData = release;
        }
        assert.ok(Math.abs(a.loss - b.loss) < 1e-6, `${name}: loss ${a.loss} vs ${b.loss}`);
        const g = maxRelDiff(a.grads, b.grads);
        assert.equal(g.diff, 0, `${name}: gradient of ${g.name} differs by ${g.diff}`);
        assert.ok(a.keptAfterForward < b.keptAfterForward, `${name}: kept after forward ${(a.keptAfterForward / MB).toFixed(2)} vs ${(b.keptAfterForward / MB).toFixed(2)} MB`);
        x.dispose(); t.dispose();
      }
    });

    it('a released tensor says so when read', () => {
      const x = sc.randn([2, 3]);
      (x as unknown as { releaseData: (r: string) => void }).releaseData('freed for the test');
      assert.throws(() => x.toArray(), /toArray: tensor \[2, 3\] float32 was used after its values were released \(freed for the test\)/);
      assert.throws(() => x.add(1), /was used after its values were released/);
      assert.match(String(x), /values released/);
      x.dispose();
      assert.throws(() => x.toArray(), /used after dispose\(\)/);
    });
  });

  describe('backward', () => {
    it('freeActivations: same gradients, a lower peak, and a freed intermediate says so when read', function () {
      this.timeout(60000);
      const [plain, freed] = twin('unet-bilinear');
      sc.manualSeed(6);
      const x = sc.randn([2, 3, 64, 64]);
      const t = sc.rand([2, 1, 64, 64]).gt(0.6).to('float32');
      step(plain, x, t); step(freed, x, t, { freeActivations: true }); // warm-up: .grad exists
      const a = step(plain, x, t), b = step(freed, x, t, { freeActivations: true });
      const g = maxRelDiff(a.grads, b.grads);
      assert.equal(g.diff, 0, `gradient of ${g.name} differs by ${g.diff}`);
      assert.ok(b.peakDuringBackward < a.peakDuringBackward - 0.25 * a.keptAfterForward,
        `peak ${(b.peakDuringBackward / MB).toFixed(1)} MB with freeActivations vs ${(a.peakDuringBackward / MB).toFixed(1)} MB without (forward kept ${(a.keptAfterForward / MB).toFixed(1)} MB)`);
      sc.tidy(() => {
        const out = freed.forward(x) as sc.Tensor;
        const hidden = out.mul(2);
        const l = hidden.sum();
        l.backward(null, { freeActivations: true });
        assert.throws(() => hidden.toArray(), /used after dispose\(\) \(backward\(\{ freeActivations: true \}\) freed it/);
        assert.ok(Number.isFinite(l.item()), 'the root stays');
        assert.throws(() => l.backward(null, { retainGraph: true, freeActivations: true }), /exclude each other/);
      });
    });

    it('frees gradients as it goes: the peak during backward stays near what forward kept', function () {
      this.timeout(60000);
      sc.manualSeed(4);
      const m = sc.models.create('cmunext-s');
      const x = sc.randn([4, 3, 64, 64]);
      const t = sc.rand([4, 1, 64, 64]).gt(0.6).to('float32');
      step(m, x, t); // warm-up: parameter gradients exist from now on
      const r = step(m, x, t);
      // Holding every gradient of the graph until the end roughly doubled the peak.
      const extra = r.peakDuringBackward - r.keptAfterForward;
      assert.ok(extra < 0.5 * r.keptAfterForward, `backward needed ${(extra / MB).toFixed(1)} MB beyond the ${(r.keptAfterForward / MB).toFixed(1)} MB forward kept`);
    });
  });
});
