// Recorded kernel sequences (src/tensor/replay.ts) and the recorded forward of optimized models:
// replays compute from the new input, return fresh tensors, plan their intermediates onto few
// buffers, decline what a recording cannot repeat, and are dropped when what they read goes.
import { strict as assert } from 'node:assert';
import * as sc from '../src';
import { KernelPlan } from '../src/tensor/replay';
import { applyInto } from '../src/tensor/op';
import { unaryOp } from '../src/tensor/ops/elementwise';

/** y = ((x * 2 + 1) * 2 + 1) ... : `steps` elementwise kernels pairs, each making a new tensor. */
const chain = (x: sc.Tensor, steps: number): sc.Tensor => {
  let y = x;
  for (let i = 0; i < steps; i++) y = y.mul(2).add(1);
  return y;
};

const expectChain = (x: number, steps: number) => {
  let y = x;
  for (let i = 0; i < steps; i++) y = Math.fround(Math.fround(y * 2) + 1);
  return y;
};

describe('recorded kernel sequences (KernelPlan)', function () {
  it('replays on new input values into fresh outputs, with intermediates on reused buffers', () => {
    const x = sc.fullOf([1000], 1);
    const { result, plan, declined } = sc.tidy(() => sc.noGrad(() => KernelPlan.capture(() => chain(x, 10), [x])));
    assert.equal(declined, null);
    assert.ok(plan);
    assert.equal(plan.kernels, 20);
    // 19 intermediates of 4000 bytes, but at most two are alive at once.
    assert.ok(plan.bufferBytes <= 2 * 4000, `intermediates were not planned onto reused buffers: ${plan.bufferBytes} bytes`);
    assert.equal((result as sc.Tensor).toArray()[0], expectChain(1, 10));
    const x2 = sc.fullOf([1000], -3);
    const a = plan.run([x2]) as sc.Tensor;
    const b = plan.run([sc.fullOf([1000], 0.5)]) as sc.Tensor;
    assert.notEqual(a.storage, b.storage, 'a replay reused the storage of an earlier result');
    assert.ok((a.toArray() as Float32Array).every((v) => v === expectChain(-3, 10)));
    assert.ok((b.toArray() as Float32Array).every((v) => v === expectChain(0.5, 10)));
    assert.throws(() => plan.run([sc.fullOf([999], 1)]), /recorded for inputs \[1000\] float32 cpu, got \[999\] float32 cpu/);
    plan.dispose();
    assert.throws(() => plan.run([x2]), /can no longer run \(it was disposed\)/);
    sc.dispose([x, x2, a, b, result as sc.Tensor]);
  });

  it('takes non-contiguous inputs and views of a larger storage at replay', () => {
    const x = sc.arange(0, 12).reshape([3, 4]);
    const { plan } = sc.tidy(() => sc.noGrad(() => KernelPlan.capture(() => x.mul(x), [x])));
    assert.ok(plan);
    const big = sc.arange(0, 24).reshape([6, 4]);
    const view = big.slice(0, 3, 6); // rows 3..5: an offset into big's storage
    const t = sc.arange(0, 12).reshape([4, 3]).transpose(0, 1); // not contiguous
    const y1 = plan.run([view]) as sc.Tensor, y2 = plan.run([t]) as sc.Tensor;
    assert.deepEqual(Array.from(y1.toArray()), Array.from({ length: 12 }, (_, i) => (i + 12) ** 2));
    assert.deepEqual(Array.from(y2.toArray()), Array.from(t.contiguous().toArray(), (v) => v * v));
    plan.dispose();
    sc.dispose([x, big, view, t, y1, y2]);
  });

  it('writes the inputs of a batch-1 concatenation in place, unless one is written after it', () => {
    const x = sc.randn([1, 2, 3]);
    const catThen = (t: sc.Tensor) => sc.F.cat([t.mul(2), t.add(1)], 1).mul(3);
    const { plan } = sc.tidy(() => sc.noGrad(() => KernelPlan.capture(() => catThen(x), [x])));
    assert.ok(plan);
    assert.equal(plan.concatsElided, 1);
    assert.equal(plan.kernels, 3, 'mul, add and mul: the cat is gone');
    const x2 = sc.randn([1, 2, 3], { generator: new sc.Generator(5) });
    const y = plan.run([x2]) as sc.Tensor, ref = sc.noGrad(() => catThen(x2));
    assert.deepEqual(Array.from(y.toArray()), Array.from(ref.toArray()));
    plan.dispose();
    // An input changed in place after the cat: the cat must stay a copy of what it was.
    const reluAfter = (t: sc.Tensor) => {
      const a = t.mul(-1);
      const c = sc.F.cat([a, t.add(1)], 1);
      applyInto(unaryOp, [a], { op: 'relu' }, a);
      return [c.mul(1), a.mul(1)];
    };
    const r = sc.tidy(() => sc.noGrad(() => KernelPlan.capture(() => reluAfter(x), [x])));
    assert.ok(r.plan);
    assert.equal(r.plan.concatsElided, 0);
    const [c2, a2] = r.plan.run([x2]) as sc.Tensor[];
    const [cr, ar] = sc.noGrad(() => reluAfter(x2));
    assert.deepEqual(Array.from(c2.toArray()), Array.from(cr.toArray()));
    assert.deepEqual(Array.from(a2.toArray()), Array.from(ar.toArray()));
    assert.ok((cr.toArray() as Float32Array).some((v) => v < 0), 'the test needs negative values in the copy');
    r.plan.dispose();
    sc.dispose([x, x2, y, ref, c2, a2, cr, ar, ...(r.result as sc.Tensor[])]);
  });

  it('declines forwards it could not repeat, naming why', () => {
    const x = sc.randn([4]);
    const declined = (fn: () => unknown) => sc.tidy(() => sc.noGrad(() => KernelPlan.capture(fn, [x]))).declined;
    assert.match(declined(() => x.mul(x.sum().item()))!, /reads tensor values on the host \(copyOut\)/);
    assert.match(declined(() => x.add(sc.rand([4])))!, /writes host data into a tensor \(copyIn/);
    assert.match(declined(() => sc.F.dropout(x, 0.5, true))!, /random kernel 'dropout'/);
    assert.match(declined(() => x)!, /ran no kernel/);
    const w = sc.randn([4]);
    assert.match(declined(() => [x.mul(2), w])!, /returns a tensor it did not compute/);
    assert.match(declined(() => new Map([['y', x.mul(2)]]))!, /returns a value other than tensors in arrays and plain objects/);
    assert.equal(declined(() => ({ y: [x.mul(2)], n: 1, s: 'a', z: null })), null);
    sc.dispose([x, w]);
  });

  it('is invalidated when a tensor it reads from outside is disposed', () => {
    const x = sc.randn([8]), w = sc.randn([8]);
    const { plan } = sc.tidy(() => sc.noGrad(() => KernelPlan.capture(() => x.mul(w).add(1), [x])));
    assert.ok(plan && plan.isValid && plan.bufferBytes > 0);
    w.dispose();
    assert.equal(plan.isValid, false);
    assert.equal(plan.bufferBytes, 0, 'an invalid plan keeps its buffers');
    assert.throws(() => plan.run([x]), /a tensor it reads .* was disposed/);
    plan.dispose();
    x.dispose();
  });
});

describe('recorded forward of an optimized model', function () {
  this.timeout(60000);

  class Scaled extends sc.nn.Module {
    readonly conv = this.add('conv', new sc.nn.Conv2d(3, 4, 3, { padding: 1 }));
    readonly bn = this.add('bn', new sc.nn.BatchNorm2d(4));
    readonly act = this.add('act', sc.nn.ReLU());
    scale: sc.Tensor = sc.fullOf([1, 4, 1, 1], 2);
    forward(x: sc.Tensor): sc.Tensor {
      return this.act.forward(this.bn.forward(this.conv.forward(x))).mul(this.scale);
    }
  }
  const eager = (m: Scaled, x: sc.Tensor) => sc.tidy(() => sc.noGrad(() => sc.F.relu(m.bn.forward(m.conv.forward(x))).mul(m.scale)));

  it('CMUNeXt-S at batch 1: decoder concatenations written in place, the same values to the bit', () => {
    const m = sc.models.create('cmunext-s');
    sc.inference.optimize(m, [1, 3, 32, 32], { replay: false });
    const x = sc.randn([1, 3, 32, 32]);
    const ref = sc.noGrad(() => m.forward(x) as sc.Tensor);
    sc.inference.optimize(m, [1, 3, 32, 32]);
    for (let i = 0; i < 2; i++) sc.noGrad(() => m.forward(x) as sc.Tensor).dispose();
    const y = sc.noGrad(() => m.forward(x) as sc.Tensor);
    const info = sc.inference.replayInfo(m);
    assert.equal(info.replays, 1);
    assert.equal(info.concatsElided, 4);
    assert.deepEqual(Array.from(y.toArray()), Array.from(ref.toArray()));
    sc.dispose([x, ref, y]);
    m.dispose();
  });

  it('records the second call of a shape, replays the next ones, and re-records for a new shape', () => {
    const m = new Scaled();
    sc.inference.optimize(m, [1, 3, 8, 8]);
    const x = sc.randn([1, 3, 8, 8]);
    const run = (t: sc.Tensor) => sc.noGrad(() => m.forward(t));
    run(x).dispose();
    assert.equal(sc.inference.replayInfo(m).recorded, false);
    run(x).dispose();
    assert.deepEqual(sc.inference.replayInfo(m).inputShapes, [[1, 3, 8, 8]]);
    const live = sc.memory().liveTensors, bytes = sc.memory().cpu.bytesInUse;
    for (let i = 0; i < 20; i++) run(x).dispose();
    assert.equal(sc.inference.replayInfo(m).replays, 20);
    assert.equal(sc.memory().liveTensors, live, 'replays leaked tensors');
    assert.equal(sc.memory().cpu.bytesInUse, bytes, 'replays leaked memory');
    // Another shape runs normally until it is seen twice in a row, then replaces the recording.
    const big = sc.randn([2, 3, 16, 16]);
    const y = run(big), ref = eager(m, big);
    assert.deepEqual(Array.from(y.toArray()), Array.from(ref.toArray()));
    run(big).dispose();
    assert.deepEqual(sc.inference.replayInfo(m).inputShapes, [[2, 3, 16, 16]]);
    const z = run(big);
    assert.deepEqual(Array.from(z.toArray()), Array.from(ref.toArray()));
    assert.equal(sc.inference.replayInfo(m).replays, 21);
    sc.dispose([x, big, y, ref, z]);
    m.dispose();
  });

  it('reads the weights live, and drops the recording on train(), loadStateDict() and release()', () => {
    const m = new Scaled();
    sc.inference.optimize(m, [1, 3, 8, 8]);
    const x = sc.randn([1, 3, 8, 8]);
    const run = () => sc.noGrad(() => m.forward(x));
    run().dispose();
    run().dispose();
    assert.ok(sc.inference.replayInfo(m).recorded);
    sc.noGrad(() => sc.nn.copyInto(m.scale, sc.fullOf([1, 4, 1, 1], -1)));
    const y = run(), ref = eager(m, x);
    assert.deepEqual(Array.from(y.toArray()), Array.from(ref.toArray()), 'the replay did not read the tensor it multiplies by live');
    // A module that swaps a tensor it reads (and disposes the old one) invalidates the recording.
    const old = m.scale;
    m.scale = sc.fullOf([1, 4, 1, 1], 3);
    old.dispose();
    const replays = sc.inference.replayInfo(m).replays;
    const y2 = run(), ref2 = eager(m, x);
    assert.deepEqual(Array.from(y2.toArray()), Array.from(ref2.toArray()));
    // That call ran normally and was recorded again (the shape was already known).
    assert.equal(sc.inference.replayInfo(m).replays, replays);
    assert.ok(sc.inference.replayInfo(m).recorded);
    m.loadStateDict(m.stateDict());
    assert.equal(sc.inference.replayInfo(m).recorded, false);
    sc.inference.optimize(m, [1, 3, 8, 8]);
    run().dispose();
    run().dispose();
    assert.ok(sc.inference.replayInfo(m).recorded);
    m.train();
    assert.match(sc.inference.replayInfo(m).declined!, /not optimized for replay/);
    sc.dispose([x, y, ref, y2, ref2]);
    m.dispose();
  });

  it('keeps running normally, and says why, when the forward cannot be recorded', () => {
    class Thresholded extends Scaled {
      forward(x: sc.Tensor): sc.Tensor {
        const y = super.forward(x);
        return y.sum().item() > 0 ? y : y.neg(); // data-dependent: must not be frozen
      }
    }
    const m = new Thresholded();
    sc.inference.optimize(m, [1, 3, 8, 8]);
    for (let i = 0; i < 4; i++) {
      const x = sc.randn([1, 3, 8, 8], { generator: new sc.Generator(i) });
      const y = sc.noGrad(() => m.forward(x));
      const ref = sc.tidy(() => {
        const e = eager(m, x);
        return e.sum().item() > 0 ? e : e.neg();
      });
      assert.deepEqual(Array.from(y.toArray()), Array.from(ref.toArray()));
      sc.dispose([x, y, ref]);
    }
    const info = sc.inference.replayInfo(m);
    assert.equal(info.recorded, false);
    assert.match(info.declined!, /reads tensor values on the host/);
    m.dispose();
  });

  it('optimize(model, example, { replay: false }) keeps the fused forward only', () => {
    const m = new Scaled();
    sc.inference.optimize(m, [1, 3, 8, 8], { replay: false });
    const x = sc.randn([1, 3, 8, 8]);
    for (let i = 0; i < 3; i++) sc.noGrad(() => m.forward(x)).dispose();
    assert.equal(sc.inference.replayInfo(m).recorded, false);
    x.dispose();
    m.dispose();
  });
});
